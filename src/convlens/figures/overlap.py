"""Heat maps of overlap (checkerboard) maps, with the counts written in the cells for small maps.

Takes plain arrays (the per-pixel counts of :mod:`convlens.lint`, or any 1-D/2-D map) so that
it depends on nothing above the figures; matplotlib is imported inside the functions (Agg
canvas, no pyplot state). Border cells (outside the interior mask) are drawn hatched; the
colour scale runs from 0 so that dead pixels are the darkest cells. Odena, Dumoulin & Olah,
*Deconvolution and Checkerboard Artifacts*, Distill 2016.

>>> import numpy as np
>>> png = overlap_png([OverlapPanel("k3 s2", np.array([[1, 2], [2, 4]]))])
>>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
True
"""

from __future__ import annotations

import io
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convlens.errors import ParameterError, ParameterTypeError
from convlens.io import atomic_write_bytes

__all__ = ["ANNOTATE_MAX", "OverlapPanel", "overlap_figure", "overlap_png", "save_overlap_figure"]

#: Maps with at most this many cells per side get their counts written in the cells.
ANNOTATE_MAX = 24


@dataclass(frozen=True)
class OverlapPanel:
    """One heat map: a title, a 1-D or 2-D map of counts and an optional interior mask."""

    title: str
    counts: Any
    interior: Any = None


def _grid(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.size == 0:
        raise ParameterError(name, "a non-empty 1-D or 2-D map", tuple(arr.shape))
    return arr


def overlap_figure(panels: Sequence[OverlapPanel], *, annotate_max: int = ANNOTATE_MAX) -> Any:
    """A matplotlib ``Figure`` with one heat map per panel, side by side, each with a colour bar.

    Cells carry their count when the map has at most ``annotate_max`` cells per side.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not isinstance(panels, Sequence) or not panels:
        raise ParameterTypeError("panels", "a non-empty sequence of OverlapPanel", panels)
    grids = []
    for n, panel in enumerate(panels):
        if not isinstance(panel, OverlapPanel):
            raise ParameterTypeError(f"panels[{n}]", "an OverlapPanel", panel)
        counts = _grid(panel.counts, f"panels[{n}].counts")
        mask = None
        if panel.interior is not None:
            mask = _grid(panel.interior, f"panels[{n}].interior").astype(bool)
            if mask.shape != counts.shape:
                raise ParameterError(
                    f"panels[{n}].interior", f"a mask of shape {counts.shape}", mask.shape
                )
        grids.append((panel.title, counts, mask))
    cell = 0.42
    flat = all(g[1].shape[0] == 1 for g in grids)  # 1-D maps: one strip per row
    limit = annotate_max * 2 if flat else annotate_max
    if flat:
        width = max(4.0, max(g[1].shape[1] for g in grids) * cell * 0.75) + 1.2
        fig = Figure(figsize=(width, 1.25 * len(grids) + 0.4), dpi=110)
        spec = fig.add_gridspec(len(grids), 1)
        slots = [spec[n, 0] for n in range(len(grids))]
    else:
        widths = [max(2.2, g[1].shape[1] * cell) for g in grids]
        height = max(max(g[1].shape[0] for g in grids) * cell, 1.0) + 1.3
        fig = Figure(figsize=(sum(widths) + 1.3 * len(grids), height), dpi=110)
        spec = fig.add_gridspec(1, len(grids), width_ratios=widths)
        slots = [spec[0, n] for n in range(len(grids))]
    FigureCanvasAgg(fig)
    for slot, (title, counts, mask) in zip(slots, grids):
        ax = fig.add_subplot(slot)
        top = max(float(counts.max()), 1.0)
        image = ax.imshow(counts, cmap="viridis", vmin=0, vmax=top, interpolation="nearest")
        rows, cols = counts.shape
        if mask is not None:
            for r, c in zip(*np.nonzero(~mask)):
                ax.add_patch(_hatch(r, c))
        if max(rows, cols) <= limit:
            for r in range(rows):
                for c in range(cols):
                    v = counts[r, c]
                    text = f"{v:g}" if isinstance(v, (float, np.floating)) else str(int(v))
                    ax.text(
                        c,
                        r,
                        text,
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="black" if v / top > 0.6 else "white",
                    )
        chars = max(24, int(ax.get_position().width * fig.get_figwidth() * 11))
        ax.set_title("\n".join(textwrap.wrap(title, chars)), fontsize=9)
        ax.set_xticks([] if cols > limit else range(cols))
        ax.set_yticks([] if rows > limit or rows == 1 else range(rows))
        ax.tick_params(labelsize=7)
        if flat:
            ax.set_aspect("auto")
        else:
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=7)
    if any(g[2] is not None and not g[2].all() for g in grids):
        fig.text(0.01, 0.01, "hatched: border (not every tap inside the input)", fontsize=7)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def _hatch(r: int, c: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle(
        (c - 0.5, r - 0.5), 1, 1, fill=False, hatch="///", edgecolor=(1, 1, 1, 0.55), lw=0
    )


def overlap_png(panels: Sequence[OverlapPanel], *, annotate_max: int = ANNOTATE_MAX) -> bytes:
    """The PNG bytes of :func:`overlap_figure` (for a report page)."""
    buffer = io.BytesIO()
    overlap_figure(panels, annotate_max=annotate_max).savefig(buffer, format="png")
    return buffer.getvalue()


def save_overlap_figure(
    panels: Sequence[OverlapPanel],
    out: str | os.PathLike[str],
    *,
    annotate_max: int = ANNOTATE_MAX,
) -> Path:
    """Write :func:`overlap_figure` to ``out`` (``.png`` or ``.svg``), atomically."""
    path = Path(out)
    ext = path.suffix.lower()
    if ext not in (".png", ".svg"):
        raise ParameterError("out", "a path ending in .png or .svg", str(out))
    if not path.parent.is_dir():
        raise ParameterError("out", "a path in an existing folder", str(out))
    buffer = io.BytesIO()
    overlap_figure(panels, annotate_max=annotate_max).savefig(buffer, format=ext[1:])
    atomic_write_bytes(path, buffer.getvalue())
    return path
