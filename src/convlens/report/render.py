"""Render :class:`~convlens.report.data.ReportData` to a static HTML report, atomically.

Pages come from Jinja2 templates (``templates/*.html.j2``) with autoescape on, so every
user-provided string (file names, class names, labels, layer names, the command) is escaped.
Images are written as PNG files beside the HTML under names the renderer chooses; the report
needs no server and nothing from the network, and its pages run no JavaScript. The one page
with a script is the explorer (:mod:`convlens.explore`, its own Content-Security-Policy),
written into every report and linked from the summary.

A layer with many channels is split into pages of :data:`CHANNELS_PER_PAGE` channels with
previous/next and page-number links, and its tiles carry ``loading="lazy"`` with their width
and height, so a VGG16 report with every channel of every conv layer (4,224 channels, 76,032
pictures) opens page by page without the browser fetching tens of thousands of images.
:data:`PAGES_FILE` records each page's weight: its HTML bytes and the images it references.

The whole report is built in a temporary folder next to ``out`` and renamed into place at the
end, so a crash never leaves half a report behind.

>>> import tempfile, pathlib
>>> from convlens.report.data import ReportData, Summary
>>> out = pathlib.Path(tempfile.mkdtemp()) / "report"
>>> write_report(ReportData(Summary("tiny", "none", "convlens report")), out).name
'index.html'
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import jinja2
import numpy as np
from PIL import Image

from convlens.errors import ParameterError, ParameterTypeError, verbatim
from convlens.explore import describe_state, write_explorer
from convlens.io import foreign_files, staged_directory
from convlens.report.data import (
    ChannelBlock,
    CorrespondenceSection,
    DataFile,
    EvolutionSection,
    ExplorerStart,
    FilterSection,
    GeometrySection,
    InvarianceSection,
    LayerSection,
    OcclusionSection,
    Picture,
    ReportData,
    Summary,
    Table,
)

__all__ = [
    "CHANNELS_PER_PAGE",
    "EXPLORER_FILE",
    "MARKER",
    "PAGES_FILE",
    "check_out",
    "format_bytes",
    "layer_filename",
    "layer_page_count",
    "write_report",
]

#: File that marks a folder as a convlens report (an existing one may be replaced).
MARKER = ".convlens-report"

_T = TypeVar("_T")
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")

# Displayed sizes (CSS pixels) of the longer side of an image on each kind of page.
TILE_PX = 56
FILTER_PX = 56
PANEL_PX = 168
THUMB_PX = 32
FIGURE_PX = 960
OVERLAP_PX = 560
#: Widest display (CSS pixels) of an analysis figure (evolution, invariance, correspondence);
#: narrower ones are shown at their own size, however tall.
ANALYSIS_PX = 1300
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_QUERY = re.compile(r"\?[a-z_]+=[0-9a-z,]+(&[a-z_]+=[0-9a-z,]+)*")


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("convlens.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = format_number
    env.filters["seconds"] = format_seconds
    env.filters["bytes"] = format_bytes
    return env


def format_number(value: Any) -> str:
    """Numbers for captions and tables: floats with 4 significant digits, others as text.

    >>> format_number(3.14159), format_number(12), format_number(None), format_number(1e-7)
    ('3.142', '12', '–', '1e-07')
    """
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return str(float(value))
        return f"{float(value):.4g}"
    return str(value)


def format_seconds(value: float) -> str:
    """A duration for people: ``'0.42 s'``, ``'2 min 05 s'``.

    >>> format_seconds(0.4249), format_seconds(125.2)
    ('0.42 s', '2 min 05 s')
    """
    if value < 60:
        return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes} min {seconds:02d} s"


# ---------------------------------------------------------------------------------- images


def to_image(picture: Picture) -> Image.Image:
    """A picture (PNG bytes, PIL image, uint8 array or file path) as a PIL image.

    >>> to_image(np.zeros((2, 3), dtype=np.uint8)).size
    (3, 2)
    """
    if isinstance(picture, Image.Image):
        image = picture
    elif isinstance(picture, (bytes, bytearray)):
        try:
            image = Image.open(io.BytesIO(picture))
            image.load()
        except Exception as exc:
            raise ParameterError("picture", "encoded image bytes", verbatim(str(exc))) from exc
    elif isinstance(picture, np.ndarray):
        ok = picture.dtype == np.uint8 and (
            picture.ndim == 2 or (picture.ndim == 3 and picture.shape[2] in (3, 4))
        )
        if not ok or picture.size == 0:
            raise ParameterError(
                "picture",
                "a non-empty uint8 array of shape (H, W), (H, W, 3) or (H, W, 4)",
                verbatim(f"{picture.dtype} array of shape {tuple(picture.shape)}"),
            )
        image = Image.fromarray(np.ascontiguousarray(picture))
    elif isinstance(picture, (str, os.PathLike)):
        try:
            with Image.open(picture) as opened:
                opened.load()
                image = opened.copy()
        except OSError as exc:
            raise ParameterError(
                "picture", "a readable image file", verbatim(f"{os.fspath(picture)!r} ({exc})")
            ) from exc
    else:
        raise ParameterTypeError(
            "picture", "PNG bytes, a PIL image, a uint8 array or a path", picture
        )
    if image.mode not in ("L", "LA", "RGB", "RGBA", "P", "1"):
        image = image.convert("RGB")
    return image


def display_size(width: int, height: int, target: int) -> tuple[int, int, bool]:
    """Displayed width, height and whether to draw pixels crisply (integer upscaling).

    Small images are enlarged by an integer factor so pixels stay square; large ones shrink
    to ``target`` on their longer side.

    >>> display_size(5, 5, 56), display_size(28, 28, 56), display_size(224, 112, 56)
    ((55, 55, True), (56, 56, True), (56, 28, False))
    """
    longest = max(width, height)
    if longest <= target:
        factor = max(1, target // longest)
        return width * factor, height * factor, True
    scale = target / longest
    return max(1, round(width * scale)), max(1, round(height * scale)), False


@dataclass(frozen=True)
class _Img:
    src: str
    width: int
    height: int
    crisp: bool


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _Assets:
    """Writes pictures under ``root/img`` and hands back their relative URLs.

    Every picture written is logged with its size in bytes, so each page can say which images
    it references (:attr:`log`, read per page by :func:`_render_pages`).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "img").mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.log: list[tuple[str, int]] = []

    def add(self, picture: Picture, name: str, target: int, *, upscale: bool = True) -> _Img:
        image = to_image(picture)  # decoded: a broken picture fails here, never in a browser
        rel = f"img/{name}.png"
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(picture, (bytes, bytearray)) and bytes(picture[:8]) == _PNG_SIGNATURE:
            path.write_bytes(picture)  # already a PNG: the same bytes, no second encoding
        else:
            image.save(path, format="PNG")
        self.count += 1
        self.log.append((rel, path.stat().st_size))
        width, height, crisp = display_size(image.width, image.height, target)
        if not upscale and max(image.width, image.height) <= target:
            width, height, crisp = image.width, image.height, False
        return _Img(rel, width, height, crisp)


# ------------------------------------------------------------------------------------ pages

#: Channels shown on one page of a layer; a layer with more is split into several pages.
CHANNELS_PER_PAGE = 64
#: Name of the file that lists every page's weight (HTML bytes, images and their bytes).
PAGES_FILE = "pages.json"
#: The explorer page written into every report (:func:`convlens.explore.write_explorer`).
EXPLORER_FILE = "explorer.html"


@dataclass(frozen=True)
class _NavLink:
    href: str
    text: str
    key: str


@dataclass
class _PageWeight:
    page: str
    title: str
    html_bytes: int
    images: int
    image_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "page": self.page,
            "title": self.title,
            "html_bytes": self.html_bytes,
            "images": self.images,
            "image_bytes": self.image_bytes,
            "total_bytes": self.html_bytes + self.image_bytes,
        }


def _track(items: Iterable[_T], total: int, description: str, enabled: bool) -> Iterator[_T]:
    if not enabled:
        yield from items
        return
    from rich.progress import track

    yield from track(items, description=description, total=total, transient=False)


def layer_filename(index: int, page: int = 0) -> str:
    """The file of page ``page`` (0-based) of the ``index``-th layer (0-based).

    >>> layer_filename(0), layer_filename(0, 1), layer_filename(11, 7)
    ('layer-01.html', 'layer-01-p2.html', 'layer-12-p8.html')
    """
    return f"layer-{index + 1:02d}.html" if page == 0 else f"layer-{index + 1:02d}-p{page + 1}.html"


def layer_page_count(channels: int, per_page: int = CHANNELS_PER_PAGE) -> int:
    """How many pages a layer showing ``channels`` channels takes (at least one).

    >>> layer_page_count(0), layer_page_count(64), layer_page_count(65), layer_page_count(512)
    (1, 1, 2, 8)
    """
    return max(1, math.ceil(channels / per_page))


def format_bytes(value: int) -> str:
    """A size for people, in decimal units.

    >>> format_bytes(999), format_bytes(48_213), format_bytes(2_345_678)
    ('999 B', '48.2 kB', '2.35 MB')
    """
    if value < 1000:
        return f"{value} B"
    for unit in ("kB", "MB", "GB"):
        value_f = value / 1000
        if value_f < 1000 or unit == "GB":
            return f"{value_f:.3g} {unit}"
        value = round(value_f)
    raise AssertionError("unreachable")  # pragma: no cover


def _table_view(table: Table) -> dict[str, Any]:
    return {"columns": list(table.columns), "rows": [list(row) for row in table.rows]}


def _block_view(block: ChannelBlock, index: int, assets: _Assets) -> dict[str, Any]:
    tiles = []
    for tile in block.tiles:
        stem = f"l{index + 1:02d}/c{block.channel:04d}-{tile.rank:02d}"
        tiles.append(
            {
                "tile": tile,
                "projection": assets.add(tile.projection, stem + "-projection", TILE_PX),
                "patch": assets.add(tile.patch, stem + "-patch", TILE_PX),
            }
        )
    columns = max(1, math.ceil(math.sqrt(len(tiles)))) if tiles else 1
    return {"channel": block.channel, "tiles": tiles, "columns": columns, "note": block.note}


def _layer_views(
    section: LayerSection, index: int, assets: _Assets, per_page: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(file name, template context) of every page of one layer, ``per_page`` channels each;
    the pictures of a page are written when its view is made."""
    chunks = [
        section.blocks[start : start + per_page]
        for start in range(0, max(1, len(section.blocks)), per_page)
    ]
    files = [layer_filename(index, p) for p in range(len(chunks))]
    pager = [
        {
            "number": p + 1,
            "href": files[p],
            "first": chunk[0].channel if chunk else None,
            "last": chunk[-1].channel if chunk else None,
        }
        for p, chunk in enumerate(chunks)
    ]
    where = {block.channel: files[p] for p, chunk in enumerate(chunks) for block in chunk}
    top = max((len(b.tiles) for b in section.blocks), default=0)
    for p, chunk in enumerate(chunks):
        channels = [
            {"channel": c, "href": ("" if f == files[p] else f) + f"#c{c}", "here": f == files[p]}
            for c, f in where.items()
        ]
        yield (
            files[p],
            {
                "section": section,
                "blocks": [_block_view(block, index, assets) for block in chunk],
                "top": top,
                "shown": len(section.blocks),
                "per_page": per_page,
                "page_number": p + 1,
                "pager": pager if len(chunks) > 1 else [],
                "previous": files[p - 1] if p > 0 else None,
                "next": files[p + 1] if p + 1 < len(chunks) else None,
                "channel_links": channels,
            },
        )


def _filters_view(section: FilterSection, assets: _Assets) -> dict[str, Any]:
    filters = []
    for i, picture in enumerate(section.filters):
        caption = section.captions[i] if i < len(section.captions) else str(i)
        filters.append(
            {"img": assets.add(picture, f"filters/f{i:04d}", FILTER_PX), "caption": caption}
        )
    return {
        "section": section,
        "filters": filters,
        "stats": _table_view(section.stats),
    }


def _occlusion_view(section: OcclusionSection, assets: _Assets) -> dict[str, Any]:
    items = []
    for i, item in enumerate(section.items):
        panels = []
        for j, panel in enumerate(item.panels):
            img = assets.add(panel.picture, f"occlusion/i{i:03d}-{j}", PANEL_PX)
            panels.append({"panel": panel, "img": img})
        for entry in item.legend:
            if not _COLOR.fullmatch(entry.color):
                raise ParameterError("legend color", "a colour '#rrggbb'", entry.color)
        items.append({"item": item, "panels": panels})
    return {"section": section, "items": items}


def _geometry_view(section: GeometrySection, assets: _Assets) -> dict[str, Any]:
    for layer in section.layers:
        if layer.explore is not None and not _QUERY.fullmatch(layer.explore):
            raise ParameterError(
                "explore", "an explorer query '?key=value&...'", verbatim(repr(layer.explore))
            )
    aliasing = None
    if section.aliasing is not None:
        a = section.aliasing
        figure = None
        if a.figure is not None:
            figure = assets.add(a.figure, "geometry/aliasing", FIGURE_PX, upscale=False)
        thumbs = [
            assets.add(picture, f"geometry/filter-{i:04d}", THUMB_PX)
            for i, picture in enumerate(a.thumbnails)
        ]
        if thumbs and len(thumbs) != len(a.filters.rows):
            raise ParameterError(
                "aliasing.thumbnails",
                f"one picture per filter row ({len(a.filters.rows)})",
                len(thumbs),
            )
        rows = [
            {"cells": list(row), "thumb": thumbs[i] if thumbs else None}
            for i, row in enumerate(a.filters.rows)
        ]
        aliasing = {
            "section": a,
            "figure": figure,
            "columns": list(a.filters.columns),
            "rows": rows,
        }
    overlaps = [
        {
            "figure": o,
            "img": assets.add(o.picture, f"geometry/overlap-{i:02d}", OVERLAP_PX, upscale=False),
        }
        for i, o in enumerate(section.overlaps)
    ]
    return {
        "section": section,
        "lint": _table_view(section.lint),
        "aliasing": aliasing,
        "overlaps": overlaps,
        "explorer": EXPLORER_FILE,
    }


def _figure(assets: _Assets, picture: Picture, name: str) -> _Img:
    """An analysis figure at its own size, or narrowed to :data:`ANALYSIS_PX` wide."""
    width, height = to_image(picture).size
    target = max(width, height)
    if width > ANALYSIS_PX:
        target = max(1, round(target * ANALYSIS_PX / width))
    return assets.add(picture, name, target, upscale=False)


def _data_files(files: Iterable[DataFile], key: str, root: Path) -> list[dict[str, Any]]:
    """Write an analysis' files under ``data/<key>/`` and return their links."""
    links = []
    seen: set[str] = set()
    for f in files:
        if not isinstance(f, DataFile):
            raise ParameterTypeError("files", "DataFile objects", f)
        if not _FILE_NAME.fullmatch(f.name) or f.name in seen:
            raise ParameterError(
                "file name",
                "a distinct plain file name (letters, digits, '._-')",
                verbatim(repr(f.name)),
            )
        seen.add(f.name)
        rel = f"data/{key}/{f.name}"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(bytes(f.content))
        links.append(
            {"href": rel, "name": f.name, "size": len(f.content), "description": f.description}
        )
    return links


def _evolution_view(section: EvolutionSection, assets: _Assets, root: Path) -> dict[str, Any]:
    patches = section.patches
    return {
        "section": section,
        "figure": _figure(assets, section.figure, "evolution/evolution"),
        "patches": None
        if patches is None
        else _figure(assets, patches, "evolution/evolution_patches"),
        "checkpoints": _table_view(section.checkpoints),
        "labels": [str(row[0]) for row in section.checkpoints.rows],
        "files": _data_files(section.files, "evolution", root),
    }


def _invariance_view(section: InvarianceSection, assets: _Assets, root: Path) -> dict[str, Any]:
    normalized = section.normalized
    return {
        "section": section,
        "figure": _figure(assets, section.figure, "invariance/invariance"),
        "normalized": None
        if normalized is None
        else _figure(assets, normalized, "invariance/invariance_normalized"),
        "images": _table_view(section.images),
        "amounts": _table_view(section.amounts),
        "files": _data_files(section.files, "invariance", root),
    }


def _correspondence_view(
    section: CorrespondenceSection, assets: _Assets, root: Path
) -> dict[str, Any]:
    width = len(section.layers)
    for part in section.parts:
        sizes = {len(v) for v in (part.delta, part.control_mean, part.control_std, part.per_pair,
                                  part.raw, part.raw_control_mean, part.raw_control_std)}  # fmt: skip
        if sizes != {width}:
            raise ParameterError(
                f"part {part.name!r}", f"one value per layer ({width})", sorted(sizes)
            )
    return {
        "section": section,
        "figure": _figure(assets, section.figure, "correspondence/correspondence"),
        "columns": list(range(width)),
        "files": _data_files(section.files, "correspondence", root),
    }


def _write_explorer(root: Path, start: ExplorerStart | None) -> str:
    """Write the explorer page; return what it opens with. Settings the explorer refuses
    (beyond :data:`convlens.explore.LIMITS`, 3-D, ...) fall back to its defaults."""
    if start is not None:
        try:
            write_explorer(root / EXPLORER_FILE, **dict(start.state))
            return start.label
        except ParameterError:
            pass
    write_explorer(root / EXPLORER_FILE)
    return f"its default settings ({describe_state()})"


def _analysis_pages(data: ReportData) -> list[tuple[str, Any]]:
    """The analysis pages this report has: (key, section), in the order of the nav."""
    pages = (
        ("evolution", data.evolution),
        ("invariance", data.invariance),
        ("correspondence", data.correspondence),
    )
    return [(key, section) for key, section in pages if section is not None]


def _render_pages(data: ReportData, root: Path, progress: bool, per_page: int) -> None:
    env = _environment()
    assets = _Assets(root)
    nav = [_NavLink("index.html", "Summary", "index")]
    nav += [
        _NavLink(layer_filename(i), layer.name, f"layer-{i}") for i, layer in enumerate(data.layers)
    ]
    if data.filters is not None:
        nav.append(_NavLink("filters.html", "Filters", "filters"))
    if data.geometry is not None:
        nav.append(_NavLink("geometry.html", "Geometry", "geometry"))
    if data.occlusion is not None:
        nav.append(_NavLink("occlusion.html", "Occlusion", "occlusion"))
    for key, _section in _analysis_pages(data):
        nav.append(_NavLink(f"{key}.html", key.capitalize(), key))
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    from convlens import __version__

    common = {"nav": nav, "title": data.summary.title, "created": created, "version": __version__}
    weights: list[_PageWeight] = []
    logged = [0]  # pictures of earlier pages in assets.log: the rest are this page's

    def page(template: str, filename: str, key: str, title: str, **context: Any) -> None:
        html = env.get_template(template).render(active=key, current=filename, **common, **context)
        raw = html.encode("utf-8")
        (root / filename).write_bytes(raw)
        used = assets.log[logged[0] :]
        logged[0] = len(assets.log)
        weights.append(
            _PageWeight(filename, title, len(raw), len(used), sum(size for _, size in used))
        )

    layer_pages = 0
    for i, layer in _track(
        enumerate(data.layers), len(data.layers), "report: layer pages", progress
    ):
        for filename, view in _layer_views(layer, i, assets, per_page):
            page("layer.html.j2", filename, f"layer-{i}", f"Layer {layer.name}", **view)
            layer_pages += 1
    if data.filters is not None:
        view = _filters_view(data.filters, assets)
        page("filters.html.j2", "filters.html", "filters", "Filters", **view)
    if data.geometry is not None:
        view = _geometry_view(data.geometry, assets)
        page("geometry.html.j2", "geometry.html", "geometry", "Geometry", **view)
    if data.occlusion is not None:
        view = _occlusion_view(data.occlusion, assets)
        page("occlusion.html.j2", "occlusion.html", "occlusion", "Occlusion", **view)
    views: dict[str, Callable[[Any, _Assets, Path], dict[str, Any]]] = {
        "evolution": _evolution_view,
        "invariance": _invariance_view,
        "correspondence": _correspondence_view,
    }
    for key, section in _analysis_pages(data):
        view = views[key](section, assets, root)
        page(f"{key}.html.j2", f"{key}.html", key, key.capitalize(), **view)
    explorer_label = _write_explorer(root, data.explorer)
    weights.append(
        _PageWeight(EXPLORER_FILE, "Explorer", (root / EXPLORER_FILE).stat().st_size, 0, 0)
    )
    heaviest = max(weights, key=lambda w: (w.html_bytes + w.image_bytes, w.images))
    weight = {
        "pages": len(weights),
        "layer_pages": layer_pages,
        "images": sum(w.images for w in weights),
        "bytes": sum(w.html_bytes + w.image_bytes for w in weights),
        "heaviest": heaviest,
        "most_images": max(weights, key=lambda w: w.images),
        "per_page": per_page,
    }
    page(
        "index.html.j2",
        "index.html",
        "index",
        "Summary",
        summary=data.summary,
        layers_table=_table_view(data.summary.layers),
        pages=nav[1:],
        layer_count=len(data.layers),
        explorer=EXPLORER_FILE,
        explorer_label=explorer_label,
        weight=weight,
    )
    style = resources.files("convlens.report").joinpath("static/style.css").read_text("utf-8")
    (root / "style.css").write_text(style, encoding="utf-8")
    manifest = {
        "channels_per_page": per_page,
        "pages": [w.as_dict() for w in weights],
        "total": {
            "pages": len(weights),
            "images": sum(w.images for w in weights),
            "html_bytes": sum(w.html_bytes for w in weights),
            "image_bytes": sum(w.image_bytes for w in weights),
        },
    }
    (root / PAGES_FILE).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------------- writing


def check_out(out: str | os.PathLike[str]) -> None:
    """Raise unless ``out`` may receive a report: new, an empty folder or an earlier report
    that holds nothing but what convlens wrote (its manifest, :func:`convlens.io.foreign_files`)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ParameterError("out", "a directory path", verbatim(f"the file {os.fspath(out)!r}"))
    foreign = foreign_files(out)
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f", ... ({len(foreign)} in all)" if len(foreign) > 5 else ""
        )
        raise ParameterError(
            "out",
            "a new or empty folder, or an earlier convlens report",
            verbatim(f"the non-empty folder {os.fspath(out)!r}"),
            hint=f"it holds files convlens did not write ({shown}), which are never deleted: "
            "choose another --out or move them",
        )


def write_report(
    data: ReportData,
    out: str | os.PathLike[str],
    *,
    progress: bool = False,
    channels_per_page: int = CHANNELS_PER_PAGE,
) -> Path:
    """Write the report for ``data`` into the folder ``out``; return the path of index.html.

    ``out`` must be new, empty, or an earlier convlens report (which is replaced) holding
    nothing convlens did not write. The report is built in a folder beside ``out`` and put in
    place when complete (:func:`convlens.io.staged_directory`, which lists its files in the
    manifest and gives the folder the user's umask). A layer shows ``channels_per_page``
    channels per page (its tiles load lazily as the reader scrolls); :data:`PAGES_FILE` lists
    every page's weight. The explorer page (:data:`EXPLORER_FILE`) opens with
    ``data.explorer``.
    """
    if not isinstance(data, ReportData):
        raise ParameterTypeError("data", "a ReportData", data)
    if isinstance(channels_per_page, bool) or not isinstance(channels_per_page, int):
        raise ParameterTypeError("channels_per_page", "an int", channels_per_page)
    if channels_per_page < 1:
        raise ParameterError("channels_per_page", "an int >= 1", channels_per_page)
    if not isinstance(data.summary, Summary):
        raise ParameterTypeError("data.summary", "a Summary", data.summary)
    out = Path(out).absolute()
    check_out(out)
    with staged_directory(out, replace=True, prefix=".convlens-report-") as built:
        _render_pages(data, built, progress, channels_per_page)
        (built / MARKER).write_text("written by convlens; this folder may be replaced\n")
    return out / "index.html"
