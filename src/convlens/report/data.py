"""Plain data the HTML report is rendered from: no torch, no computation.

The assemble layer (:mod:`convlens.report.assemble`) fills these from a scan, the deconvnet
projections, the filters and occlusion maps; the render layer (:mod:`convlens.report.render`)
turns them into pages. Every string here is user-visible text and is escaped on output.

A *picture* is PNG bytes, a ``PIL.Image.Image``, a uint8 numpy array ``(H, W)`` or
``(H, W, 3)``, or the path of an image file; the renderer writes it beside the HTML under a
name of its own choosing (never a user-provided file name).

>>> table = Table(("layer", "channels"), (("features.0", 32),))
>>> table.rows[0][1]
32
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
from PIL import Image

__all__ = [
    "AliasingSection",
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
]

#: What the report accepts as an image.
Picture = Union[bytes, Image.Image, np.ndarray, str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Table:
    """A table of text and numbers; floats are shown with 4 significant digits."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...] = ()


@dataclass(frozen=True)
class Tile:
    """One of a channel's top-k: the deconvnet projection beside the input patch that caused it.

    ``value`` is the activation (the feature map's maximum in that image), ``rank`` its place
    in the top-k (0 = strongest), ``position`` the unit's index in the feature map.
    """

    projection: Picture
    patch: Picture
    value: float
    rank: int
    image_name: str
    label: str | None = None
    position: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ChannelBlock:
    """One channel of a layer: its top-k tiles, strongest first (Zeiler & Fergus, Fig. 2)."""

    channel: int
    tiles: tuple[Tile, ...]
    note: str | None = None


@dataclass(frozen=True)
class LayerSection:
    """A page of the report: the Figure-2 blocks of one layer."""

    name: str
    description: str
    channels_total: int
    blocks: tuple[ChannelBlock, ...]
    receptive_field: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class FilterSection:
    """The first layer's filters as images (Fig. 6) and statistics of every layer's filters."""

    layer: str
    filters: tuple[Picture, ...]
    captions: tuple[str, ...] = ()
    stats: Table = field(default_factory=lambda: Table(()))
    note: str | None = None


@dataclass(frozen=True)
class Panel:
    """One panel of an occlusion figure, e.g. key ``"b"`` with its picture and caption."""

    key: str
    title: str
    picture: Picture
    caption: str = ""


@dataclass(frozen=True)
class LegendEntry:
    """A colour (``#rrggbb``) and the class it stands for in the most-probable-class map."""

    color: str
    name: str


@dataclass(frozen=True)
class OcclusionItem:
    """Figure 7 for one image: panels (a)–(e) and the legend of panel (e)."""

    image_name: str
    label: str | None
    panels: tuple[Panel, ...]
    legend: tuple[LegendEntry, ...] = ()
    note: str | None = None


@dataclass(frozen=True)
class OcclusionSection:
    """Occlusion sensitivity (Zeiler & Fergus, Sec. 4.2, Fig. 7) for a few images."""

    layer: str
    square: int
    stride: int
    items: tuple[OcclusionItem, ...]
    note: str | None = None


@dataclass(frozen=True)
class GeometryLayer:
    """One executed conv, transposed conv or pooling layer on the geometry page.

    Sizes are spatial, as text (``"224×224"``). ``receptive_field``, ``jump`` and ``start``:
    the layer's receptive field on the input (``None`` where the model is not a chain).
    ``explore``: the explorer's URL query for this layer (``"?mode=conv&..."``) and
    ``explore_note`` what it changes (the input size it draws), or ``None`` where the
    explorer cannot show the layer.
    """

    path: str
    module_type: str
    geometry: str
    input_size: str
    output_size: str
    receptive_field: str | None = None
    jump: str | None = None
    start: str | None = None
    explore: str | None = None
    explore_note: str | None = None


@dataclass(frozen=True)
class OverlapFigure:
    """A heat map of an overlap (checkerboard) map with its title and a caption."""

    title: str
    picture: Picture
    caption: str = ""


@dataclass(frozen=True)
class AliasingSection:
    """First-layer aliasing (Zeiler & Fergus, Sec. 4.1): per filter the share of its spectral
    energy above the stride's Nyquist frequency, its low/mid/high band shares and RMS.

    ``filters``: one row per filter; ``thumbnails``: the filters as pictures (same order);
    ``figure``: a chart of the shares; ``facts``: stride, Nyquist, means, dead filters.
    """

    layer: str
    facts: tuple[tuple[str, str], ...]
    filters: Table
    figure: Picture | None = None
    thumbnails: tuple[Picture, ...] = ()
    dead: tuple[int, ...] = ()
    note: str | None = None


@dataclass(frozen=True)
class ExplorerStart:
    """The settings the report's explorer page opens with (keys of
    :func:`convlens.explore.initial_state`) and a line saying what they show."""

    state: tuple[tuple[str, Any], ...]
    label: str


@dataclass(frozen=True)
class GeometrySection:
    """The geometry page: every conv/pool layer with its receptive field, the lint of the
    strided, pooling and transposed layers, first-layer aliasing and overlap maps.

    ``explorer``: where the report's explorer starts (the first conv it can draw).
    """

    input_shape: str
    layers: tuple[GeometryLayer, ...] = ()
    lint: Table = field(default_factory=lambda: Table(()))
    flagged: bool = False
    aliasing: AliasingSection | None = None
    overlaps: tuple[OverlapFigure, ...] = ()
    has_transposed: bool = False
    notes: tuple[str, ...] = ()
    explorer: ExplorerStart | None = None


@dataclass(frozen=True)
class DataFile:
    """A file the report ships beside its pages and links to (an analysis' JSON or CSV):
    ``name`` a plain file name (letters, digits, ``._-``), ``content`` its bytes."""

    name: str
    content: bytes
    description: str = ""


@dataclass(frozen=True)
class EvolutionChannel:
    """One channel's row of Fig. 4: per checkpoint the dataset index of its top-1 image
    (-1: none), that activation and whether the image changed since the previous checkpoint;
    ``changes`` how often it changed."""

    channel: int
    indices: tuple[int, ...]
    values: tuple[float, ...]
    changed: tuple[bool, ...]
    changes: int


@dataclass(frozen=True)
class EvolutionLayerTable:
    """The chosen channels of one layer on the evolution page and how they were chosen."""

    layer: str
    choice: str
    channels: tuple[EvolutionChannel, ...]


@dataclass(frozen=True)
class EvolutionSection:
    """Feature evolution during training (Zeiler & Fergus, Fig. 4): the grid of projections
    (``figure``) and of image patches (``patches``), the checkpoints (label, source, sha256),
    each layer's top-1 images per checkpoint, ``facts`` (data scanned, seed, rule) and the
    files shipped (``evolution.json``)."""

    figure: Picture
    checkpoints: Table
    layers: tuple[EvolutionLayerTable, ...]
    patches: Picture | None = None
    facts: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()
    files: tuple[DataFile, ...] = ()


@dataclass(frozen=True)
class InvarianceSection:
    """Invariance to translation, scale and rotation (Zeiler & Fergus, Fig. 5): the plots
    (``figure``, ``normalized``), the transform ``policy`` and ``fill`` in words, the images
    with their true classes, the amounts, ``facts`` and the files shipped (CSV, JSON)."""

    figure: Picture
    policy: str
    fill: str
    layers: tuple[str, ...]
    images: Table
    amounts: Table
    normalized: Picture | None = None
    facts: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()
    files: tuple[DataFile, ...] = ()


@dataclass(frozen=True)
class CorrespondencePart:
    """One part of Table 1: its images and boxes (in words), and per layer (in the order of
    :attr:`CorrespondenceSection.layers`) Δ, the random control's mean and std, Δ per ordered
    pair and the raw counts (Δ and the control's mean and std)."""

    name: str
    images: tuple[int, ...]
    boxes: tuple[str, ...]
    delta: tuple[float, ...]
    control_mean: tuple[float, ...]
    control_std: tuple[float, ...]
    per_pair: tuple[float, ...]
    raw: tuple[float, ...]
    raw_control_mean: tuple[float, ...]
    raw_control_std: tuple[float, ...]
    image_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class CorrespondenceSection:
    """Correspondence of object parts (Zeiler & Fergus, §4.3, Table 1): the bar chart, the
    table per part and layer, how sign(0) counts (``zero``), the seed and repeats of the
    random control, where the boxes come from, and the files shipped."""

    figure: Picture
    layers: tuple[str, ...]
    parts: tuple[CorrespondencePart, ...]
    zero: str
    seed: int
    repeats: int
    boxes_source: str
    facts: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()
    files: tuple[DataFile, ...] = ()


@dataclass(frozen=True)
class Summary:
    """The front page: what was run, on what, how long it took and what was skipped
    (``not_built``: the pages left out, with why)."""

    model: str
    dataset: str
    command: str
    images: int | None = None
    accuracy: float | None = None
    facts: tuple[tuple[str, str], ...] = ()
    layers: Table = field(default_factory=lambda: Table(()))
    timings: tuple[tuple[str, float], ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()
    title: str = "convlens report"
    not_built: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ReportData:
    """Everything one report shows.

    ``geometry``: the geometry page (none without it). ``explorer``: the settings the
    explorer page (written into every report) opens with; ``None``: its defaults.
    ``evolution``, ``invariance``, ``correspondence``: the pages of Fig. 4, Fig. 5 and
    Table 1 (:mod:`convlens.report.analyses`), each only where it was built.
    """

    summary: Summary
    layers: tuple[LayerSection, ...] = ()
    filters: FilterSection | None = None
    occlusion: OcclusionSection | None = None
    geometry: GeometrySection | None = None
    explorer: ExplorerStart | None = None
    evolution: EvolutionSection | None = None
    invariance: InvarianceSection | None = None
    correspondence: CorrespondenceSection | None = None
