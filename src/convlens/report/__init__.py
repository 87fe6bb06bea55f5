"""The static HTML report: Zeiler & Fergus (arXiv:1311.2901) Figures 2, 6 and 7 for a model.

Two layers: :mod:`~convlens.report.data` holds plain dataclasses, :mod:`~convlens.report.render`
turns them into pages (Jinja2 with autoescape, images beside the HTML, written atomically).

>>> from convlens.report import ReportData, Summary
>>> ReportData(Summary(model="demo", dataset="sample", command="convlens demo")).layers
()
"""

from convlens.report.data import (
    ChannelBlock,
    FilterSection,
    LayerSection,
    LegendEntry,
    OcclusionItem,
    OcclusionSection,
    Panel,
    Picture,
    ReportData,
    Summary,
    Table,
    Tile,
)
from convlens.report.render import MARKER, write_report

__all__ = [
    "MARKER",
    "ChannelBlock",
    "FilterSection",
    "LayerSection",
    "LegendEntry",
    "OcclusionItem",
    "OcclusionSection",
    "Panel",
    "Picture",
    "ReportData",
    "Summary",
    "Table",
    "Tile",
    "write_report",
]
