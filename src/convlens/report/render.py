"""Render :class:`~convlens.report.data.ReportData` to a static HTML report, atomically.

Pages come from Jinja2 templates (``templates/*.html.j2``) with autoescape on, so every
user-provided string (file names, class names, labels, layer names, the command) is escaped.
Images are written as PNG files beside the HTML under names the renderer chooses; the report
needs no server, no JavaScript and nothing from the network.

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
import math
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import jinja2
import numpy as np
from PIL import Image

from convlens.errors import ParameterError, ParameterTypeError, verbatim
from convlens.report.data import (
    FilterSection,
    LayerSection,
    OcclusionSection,
    Picture,
    ReportData,
    Summary,
    Table,
)

__all__ = ["MARKER", "check_out", "write_report"]

#: File that marks a folder as a convlens report (an existing one may be replaced).
MARKER = ".convlens-report"

_T = TypeVar("_T")
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")

# Displayed sizes (CSS pixels) of the longer side of an image on each kind of page.
TILE_PX = 56
FILTER_PX = 56
PANEL_PX = 168


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


class _Assets:
    """Writes pictures under ``root/img`` and hands back their relative URLs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "img").mkdir(parents=True, exist_ok=True)
        self.count = 0

    def add(self, picture: Picture, name: str, target: int) -> _Img:
        image = to_image(picture)
        rel = f"img/{name}.png"
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, format="PNG")
        self.count += 1
        width, height, crisp = display_size(image.width, image.height, target)
        return _Img(rel, width, height, crisp)


# ------------------------------------------------------------------------------------ pages


@dataclass(frozen=True)
class _NavLink:
    href: str
    text: str
    key: str


def _track(items: Iterable[_T], total: int, description: str, enabled: bool) -> Iterator[_T]:
    if not enabled:
        yield from items
        return
    from rich.progress import track

    yield from track(items, description=description, total=total, transient=False)


def _layer_filename(index: int) -> str:
    return f"layer-{index + 1:02d}.html"


def _table_view(table: Table) -> dict[str, Any]:
    return {"columns": list(table.columns), "rows": [list(row) for row in table.rows]}


def _layer_view(section: LayerSection, index: int, assets: _Assets) -> dict[str, Any]:
    blocks = []
    for block in section.blocks:
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
        blocks.append(
            {"channel": block.channel, "tiles": tiles, "columns": columns, "note": block.note}
        )
    top = max((len(b.tiles) for b in section.blocks), default=0)
    return {"section": section, "blocks": blocks, "top": top}


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


def _render_pages(data: ReportData, root: Path, progress: bool) -> None:
    env = _environment()
    assets = _Assets(root)
    nav = [_NavLink("index.html", "Summary", "index")]
    nav += [
        _NavLink(_layer_filename(i), layer.name, f"layer-{i}")
        for i, layer in enumerate(data.layers)
    ]
    if data.filters is not None:
        nav.append(_NavLink("filters.html", "Filters", "filters"))
    if data.occlusion is not None:
        nav.append(_NavLink("occlusion.html", "Occlusion", "occlusion"))
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    from convlens import __version__

    common = {"nav": nav, "title": data.summary.title, "created": created, "version": __version__}

    def page(template: str, filename: str, key: str, **context: Any) -> None:
        html = env.get_template(template).render(active=key, **common, **context)
        (root / filename).write_text(html, encoding="utf-8")

    for i, layer in _track(
        enumerate(data.layers), len(data.layers), "report: layer pages", progress
    ):
        view = _layer_view(layer, i, assets)
        page("layer.html.j2", _layer_filename(i), f"layer-{i}", **view)
    if data.filters is not None:
        page("filters.html.j2", "filters.html", "filters", **_filters_view(data.filters, assets))
    if data.occlusion is not None:
        view = _occlusion_view(data.occlusion, assets)
        page("occlusion.html.j2", "occlusion.html", "occlusion", **view)
    page(
        "index.html.j2",
        "index.html",
        "index",
        summary=data.summary,
        layers_table=_table_view(data.summary.layers),
        pages=nav[1:],
        layer_count=len(data.layers),
    )
    style = resources.files("convlens.report").joinpath("static/style.css").read_text("utf-8")
    (root / "style.css").write_text(style, encoding="utf-8")


# ----------------------------------------------------------------------------------- writing


def check_out(out: str | os.PathLike[str]) -> None:
    """Raise unless ``out`` may receive a report: new, an empty folder or an earlier report."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ParameterError("out", "a directory path", verbatim(f"the file {os.fspath(out)!r}"))
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ParameterError(
            "out",
            "a new or empty folder, or an earlier convlens report",
            verbatim(f"the non-empty folder {os.fspath(out)!r}"),
            hint="choose another --out or empty that folder",
        )


def _swap_into_place(built: Path, out: Path) -> None:
    if not out.exists():
        os.rename(built, out)
        return
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(out, old)
    try:
        os.rename(built, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_report(data: ReportData, out: str | os.PathLike[str], *, progress: bool = False) -> Path:
    """Write the report for ``data`` into the folder ``out``; return the path of index.html.

    ``out`` must be new, empty, or an earlier convlens report (which is replaced). The report
    is built in a temporary folder beside ``out`` and renamed into place when complete.
    """
    if not isinstance(data, ReportData):
        raise ParameterTypeError("data", "a ReportData", data)
    if not isinstance(data.summary, Summary):
        raise ParameterTypeError("data.summary", "a Summary", data.summary)
    out = Path(out).absolute()
    check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    built = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        _render_pages(data, built, progress)
        (built / MARKER).write_text("written by convlens; this folder may be replaced\n")
        built.chmod(0o755)
        _swap_into_place(built, out)
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise
    return out / "index.html"
