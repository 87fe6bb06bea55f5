"""The static HTML report: Zeiler & Fergus (arXiv:1311.2901) Figures 2, 6 and 7 for a model.

:mod:`~convlens.report.data` holds plain dataclasses and :mod:`~convlens.report.render` turns
them into pages (Jinja2 with autoescape, images beside the HTML, written atomically);
:mod:`~convlens.report.assemble` fills them from the pipeline's results
(:mod:`convlens.pipeline`) through :mod:`~convlens.report.sections` and
:mod:`~convlens.report.pictures` (the geometry page: :mod:`~convlens.report.geometry`; the
evolution, invariance and correspondence pages: :mod:`~convlens.report.analyses`), and
:mod:`~convlens.report.build` runs it all
(``convlens report`` and ``convlens demo``).

>>> from convlens.report import ReportData, Summary
>>> ReportData(Summary(model="demo", dataset="sample", command="convlens demo")).layers
()
"""

from convlens.report.analyses import AnalysisOptions, add_analyses, plan_analyses
from convlens.report.assemble import assemble_report
from convlens.report.build import build_report, run_demo, run_report, scan_work_dir
from convlens.report.data import (
    AliasingSection,
    ChannelBlock,
    CorrespondencePart,
    CorrespondenceSection,
    DataFile,
    EvolutionChannel,
    EvolutionLayerTable,
    EvolutionSection,
    ExplorerStart,
    FilterSection,
    GeometryLayer,
    GeometrySection,
    InvarianceSection,
    LayerSection,
    LegendEntry,
    OcclusionItem,
    OcclusionSection,
    OverlapFigure,
    Panel,
    Picture,
    ReportData,
    Summary,
    Table,
    Tile,
)
from convlens.report.geometry import geometry_section
from convlens.report.render import CHANNELS_PER_PAGE, MARKER, write_report

__all__ = [
    "CHANNELS_PER_PAGE",
    "MARKER",
    "AliasingSection",
    "AnalysisOptions",
    "ChannelBlock",
    "CorrespondencePart",
    "CorrespondenceSection",
    "DataFile",
    "EvolutionChannel",
    "EvolutionLayerTable",
    "EvolutionSection",
    "ExplorerStart",
    "FilterSection",
    "GeometryLayer",
    "GeometrySection",
    "InvarianceSection",
    "LayerSection",
    "LegendEntry",
    "OcclusionItem",
    "OcclusionSection",
    "OverlapFigure",
    "Panel",
    "Picture",
    "ReportData",
    "Summary",
    "Table",
    "Tile",
    "add_analyses",
    "assemble_report",
    "build_report",
    "geometry_section",
    "plan_analyses",
    "run_demo",
    "run_report",
    "scan_work_dir",
    "write_report",
]
