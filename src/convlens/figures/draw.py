"""Drawing the frames of :mod:`convlens.figures.frames` with matplotlib (Agg, no pyplot state).

A *scene* draws its grids once; ``scene.show(k)`` recolours them for frame ``k``. Stills are
written as PNG or SVG, animations as GIF (Pillow), the format taken from the file extension.
Files are written atomically (temporary file, then ``os.replace``).

>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "conv.gif"
>>> save_scene(conv_scene(3, 2), out).name
'conv.gif'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convlens.arithmetic import LayerSpec
from convlens.errors import ParameterError, ParameterTypeError
from convlens.figures.frames import (
    Cell,
    ConvFrames,
    FractionalFrames,
    ScatterFrames,
    connections,
    conv_frames,
    fractional_frames,
    kernel_colours,
    matrix_colours,
    matrix_entries,
    transpose_scatter_frames,
)
from convlens.index import check_budget
from convlens.io import atomic_path

if TYPE_CHECKING:  # matplotlib and Pillow are imported when a picture is drawn
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

__all__ = [
    "EXTENSIONS",
    "MAX_FPS",
    "MAX_FRAMES",
    "MIN_FPS",
    "Scene",
    "connection_scene",
    "conv_scene",
    "fractional_scene",
    "matrix_scene",
    "save_scene",
    "scatter_scene",
]

EXTENSIONS = (".png", ".svg", ".gif")
#: The default limit on the frames of a GIF (each frame is drawn: up to a second for the
#: largest pictures :data:`~convlens.figures.frames.MAX_CELLS` allows).
MAX_FRAMES = 300
#: GIF speeds: a GIF holds frame delays of 10 ms to 655 s in centiseconds; 0.01 to 100 fps.
MIN_FPS, MAX_FPS = 0.01, 100.0
PAD = (0.86, 0.86, 0.86)  # padding / cropped cells
INPUT = (0.84, 0.91, 1.0)  # input pixels
ZERO = (1.0, 1.0, 1.0)  # inserted zeros, unread output cells
DONE = (1.0, 0.87, 0.70)  # outputs already computed
CURRENT = (1.0, 0.55, 0.10)  # the output (or input) of this frame


def _lighten(rgb: Any, amount: float = 0.45) -> tuple[float, float, float]:
    r, g, b = (float(v) for v in rgb[:3])
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


def _sym(base: str, r: int, c: int, small: bool) -> str:
    sep = "" if small else ","
    return f"${base}_{{{r + 1}{sep}{c + 1}}}$"


class _Grid:
    """A grid of square cells on an axes, with optional labels; cell (r, c) at row r, column c."""

    def __init__(self, ax: Any, shape: Cell, title: str, labels: dict[Cell, str] | None = None):
        from matplotlib.patches import Rectangle

        self.ax, self.shape = ax, shape
        self.cells: dict[Cell, Rectangle] = {}
        # labels no larger than the cells they sit in (a big canvas shrinks every grid)
        box, (w_in, h_in) = ax.get_position(), ax.figure.get_size_inches()
        cell_pt = 72 * min(
            box.width * w_in / (shape[1] + 0.2), box.height * h_in / (shape[0] + 0.2)
        )
        fontsize = min(max(5.0, min(9.0, 60.0 / max(shape))), 0.3 * cell_pt)
        if fontsize < 3.5:
            labels = None
        for r in range(shape[0]):
            for c in range(shape[1]):
                rect = Rectangle((c, r), 1, 1, facecolor=ZERO, edgecolor="0.55", linewidth=0.6)
                ax.add_patch(rect)
                self.cells[(r, c)] = rect
                if labels and (r, c) in labels:
                    ax.text(
                        c + 0.5,
                        r + 0.5,
                        labels[(r, c)],
                        ha="center",
                        va="center",
                        fontsize=fontsize,
                    )
        ax.set_xlim(-0.1, shape[1] + 0.1)
        ax.set_ylim(shape[0] + 0.1, -0.1)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set_visible(False)
        ax.set_title(title, fontsize=10)

    def paint(self, colours: dict[Cell, Any], edges: dict[Cell, Any] | None = None) -> None:
        for cell, rect in self.cells.items():
            rect.set_facecolor(colours.get(cell, ZERO))
            if edges and cell in edges:
                rect.set_edgecolor(edges[cell])
                rect.set_linewidth(2.2)
                rect.set_zorder(3)
            else:
                rect.set_edgecolor("0.55")
                rect.set_linewidth(0.6)
                rect.set_zorder(1)


def _new_figure(figsize: tuple[float, float]) -> Figure:
    """A matplotlib figure on the Agg canvas (no pyplot state); imports matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=80)
    FigureCanvasAgg(fig)
    return fig


def _figure(widths: list[int], height: int) -> tuple[Figure, list[Any]]:
    unit = min(0.42, 9.0 / max(sum(widths), height))
    fig = _new_figure(
        (max(4.0, unit * sum(widths) + 1.2 * len(widths)), max(2.6, unit * height + 1.2))
    )
    axes = fig.subplots(1, len(widths), gridspec_kw={"width_ratios": widths})
    fig.subplots_adjust(left=0.02, right=0.98, top=0.80, bottom=0.04, wspace=0.15)
    return fig, list(np.atleast_1d(axes))


class Scene:
    """A figure with ``n_frames`` frames; :meth:`show` draws frame ``k`` (base: one still)."""

    n_frames: int = 1
    fig: Figure

    def show(self, k: int = 0) -> None:
        if not 0 <= k < self.n_frames:
            raise ParameterError("frame", f"an int in 0..{self.n_frames - 1}", k)

    def rgb(self, k: int = 0) -> np.ndarray:
        """Frame ``k`` as an (H, W, 3) uint8 array."""
        self.show(k)
        canvas = self.fig.canvas
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()  # type: ignore[attr-defined]


def _kernel_grid(ax: Any, k: Cell, title: str, entry_of_cell: list[int] | None = None) -> _Grid:
    """The kernel with each entry in its colour; ``entry_of_cell[t]`` = entry shown at cell t."""
    n_k = k[0] * k[1]
    entries = entry_of_cell or list(range(n_k))
    small = max(k) <= 9
    labels = {divmod(t, k[1]): _sym("w", *divmod(e, k[1]), small) for t, e in enumerate(entries)}
    grid = _Grid(ax, k, title, labels)
    pal = kernel_colours(n_k)
    grid.paint({divmod(t, k[1]): _lighten(pal[e]) for t, e in enumerate(entries)})
    return grid


class ConvScene(Scene):
    """The kernel sliding over the padded (dilated-kernel) input, one frame per output pixel."""

    def __init__(self, frames: ConvFrames):
        self.frames = f = frames
        self.n_frames = f.n_frames
        h = max(f.canvas_size[0], f.kernel_size[0], f.output_size[0])
        self.fig, axes = _figure([f.canvas_size[1], f.kernel_size[1], f.output_size[1]], h)
        p, n = f.padding, f.input_size
        small = max(n) <= 9
        show_labels = max(f.canvas_size) <= 12
        self.inside = {(r + p[0], c + p[1]) for r in range(n[0]) for c in range(n[1])}
        labels = (
            {
                cell: (
                    _sym("x", cell[0] - p[0], cell[1] - p[1], small) if cell in self.inside else "0"
                )
                for cell in self.frames_cells(f.canvas_size)
            }
            if show_labels
            else None
        )
        self.input = _Grid(axes[0], f.canvas_size, f"input {n[0]}×{n[1]}, padding {p}", labels)
        _kernel_grid(axes[1], f.kernel_size, f"kernel, dilation {f.dilation}")
        o = f.output_size
        out_labels = (
            {(a, b): _sym("y", a, b, max(o) <= 9) for a in range(o[0]) for b in range(o[1])}
            if max(o) <= 12
            else None
        )
        self.output = _Grid(axes[2], o, f"output {o[0]}×{o[1]}, stride {f.stride}", out_labels)
        self.palette = kernel_colours(f.kernel_size[0] * f.kernel_size[1])

    @staticmethod
    def frames_cells(shape: Cell) -> list[Cell]:
        return [(r, c) for r in range(shape[0]) for c in range(shape[1])]

    def colours(self, k: int) -> dict[Cell, Any]:
        """Input-canvas face colours of frame ``k``: window cells in their kernel entry's colour."""
        base: dict[Cell, Any] = {
            cell: (INPUT if cell in self.inside else PAD)
            for cell in self.frames_cells(self.frames.canvas_size)
        }
        for t, cell in enumerate(self.frames.windows[k]):
            base[cell] = _lighten(self.palette[t])
        return base

    def show(self, k: int = 0) -> None:
        super().show(k)
        window = self.frames.windows[k]
        self.input.paint(self.colours(k), {cell: self.palette[t] for t, cell in enumerate(window)})
        o1 = self.frames.output_size[1]
        done = {divmod(j, o1): DONE for j in range(k)}
        done[divmod(k, o1)] = CURRENT
        self.output.paint(done, {divmod(k, o1): "black"})
        a, b = divmod(k, o1)
        self.fig.suptitle(
            f"convolution: output ({a + 1},{b + 1}) = sum of kernel × highlighted input cells",
            fontsize=11,
        )


class ScatterScene(Scene):
    """Transposed conv as scatter: each input pixel stamps the kernel into the output."""

    def __init__(self, frames: ScatterFrames):
        self.frames = f = frames
        self.n_frames = f.n_frames
        h = max(f.input_size[0], f.kernel_size[0], f.full_size[0])
        self.fig, axes = _figure([f.input_size[1], f.kernel_size[1], f.full_size[1]], h)
        i = f.input_size
        in_labels = (
            {(a, b): _sym("y", a, b, max(i) <= 9) for a in range(i[0]) for b in range(i[1])}
            if max(i) <= 12
            else None
        )
        self.input = _Grid(axes[0], i, f"input {i[0]}×{i[1]} (x^(l+1))", in_labels)
        _kernel_grid(axes[1], f.kernel_size, f"kernel, dilation {f.dilation}")
        o, p = f.output_size, f.padding
        self.output = _Grid(
            axes[2],
            f.full_size,
            f"output {o[0]}×{o[1]} (grey: cropped by padding {p})",
        )
        from matplotlib.patches import Rectangle

        axes[2].add_patch(
            Rectangle(
                (p[1], p[0]), o[1], o[0], fill=False, edgecolor="black", linewidth=2.0, zorder=5
            )
        )
        self.kept = {(r + p[0], c + p[1]) for r in range(o[0]) for c in range(o[1])}
        self.palette = kernel_colours(f.kernel_size[0] * f.kernel_size[1])

    def colours(self, k: int) -> dict[Cell, Any]:
        """Output-canvas face colours of frame ``k``: the stamp of input ``k`` in kernel colours,
        earlier stamps darker the more inputs have written to a cell."""
        f = self.frames
        count: dict[Cell, int] = {}
        for j in range(k):
            for cell in f.stamps[j]:
                count[cell] = count.get(cell, 0) + 1
        most = max(count.values(), default=1)
        base: dict[Cell, Any] = {}
        for r in range(f.full_size[0]):
            for c in range(f.full_size[1]):
                cell = (r, c)
                shade = 1.0 - 0.45 * count.get(cell, 0) / most
                base[cell] = (shade, shade, 1.0) if cell in self.kept else PAD
        for t, cell in enumerate(f.stamps[k]):
            base[cell] = _lighten(self.palette[t])
        return base

    def show(self, k: int = 0) -> None:
        super().show(k)
        f = self.frames
        i1 = f.input_size[1]
        self.input.paint(
            {divmod(k, i1): CURRENT, **{divmod(j, i1): DONE for j in range(k)}},
            {divmod(k, i1): "black"},
        )
        self.output.paint(
            self.colours(k), {cell: self.palette[t] for t, cell in enumerate(f.stamps[k])}
        )
        a, b = divmod(k, i1)
        self.fig.suptitle(
            f"transposed conv (scatter): input ({a + 1},{b + 1}) × kernel added to the output, stride {f.stride}",
            fontsize=11,
        )


class FractionalScene(Scene):
    """Transposed conv as a fractionally strided conv: flipped kernel over the zero-inserted input."""

    def __init__(self, frames: FractionalFrames):
        self.frames = f = frames
        self.n_frames = f.n_frames
        h = max(f.canvas_size[0], f.kernel_size[0], f.output_size[0])
        self.fig, axes = _figure([f.canvas_size[1], f.kernel_size[1], f.output_size[1]], h)
        i, k = f.input_size, f.kernel_size
        self.where = {cell: n for n, cell in enumerate(f.input_cells)}
        labels = None
        if max(f.canvas_size) <= 14:
            labels = {cell: "0" for cell in ConvScene.frames_cells(f.canvas_size)}
            for cell, n in self.where.items():
                labels[cell] = _sym("y", *divmod(n, i[1]), max(i) <= 9)
        self.canvas = _Grid(
            axes[0],
            f.canvas_size,
            f"input with {f.stride[0] - 1},{f.stride[1] - 1} zeros inserted, padded",
            labels,
        )
        flipped = [f.kernel_entry[t] for t in range(k[0] * k[1])]
        _kernel_grid(axes[1], k, "flipped kernel", flipped)
        o = f.output_size
        self.output = _Grid(axes[2], o, f"output {o[0]}×{o[1]}")
        self.palette = kernel_colours(k[0] * k[1])
        p, c = f.padding, f.canvas_size
        self.read = {(r, q) for r in range(p[0], c[0] - p[0]) for q in range(p[1], c[1] - p[1])}

    def colours(self, k: int) -> dict[Cell, Any]:
        """Canvas face colours of frame ``k``: window cells in the colour of the kernel entry
        that multiplies them (the flipped kernel)."""
        f = self.frames
        base: dict[Cell, Any] = {}
        for cell in ConvScene.frames_cells(f.canvas_size):
            base[cell] = INPUT if cell in self.where else (ZERO if cell in self.read else PAD)
        for t, cell in enumerate(f.windows[k]):
            base[cell] = _lighten(self.palette[f.kernel_entry[t]])
        return base

    def show(self, k: int = 0) -> None:
        super().show(k)
        f = self.frames
        edges = {cell: self.palette[f.kernel_entry[t]] for t, cell in enumerate(f.windows[k])}
        self.canvas.paint(self.colours(k), edges)
        o1 = f.output_size[1]
        done = {divmod(j, o1): DONE for j in range(k)}
        done[divmod(k, o1)] = CURRENT
        self.output.paint(done, {divmod(k, o1): "black"})
        a, b = divmod(k, o1)
        self.fig.suptitle(
            f"transposed conv (fractionally strided): output ({a + 1},{b + 1}), flipped kernel, stride 1",
            fontsize=11,
        )


class MatrixScene(Scene):
    """C as a picture: its sparsity pattern, every kernel entry in its own colour."""

    def __init__(self, entries: np.ndarray, kernel_size: Cell, layout: str):
        from matplotlib.patches import Patch

        self.entries = entries
        n_k = kernel_size[0] * kernel_size[1]
        self.image = matrix_colours(entries, n_k)
        rows, cols = entries.shape
        unit = min(0.35, 11.0 / max(rows, cols))
        self.fig = _new_figure((max(4.0, unit * cols + 2.8), max(2.5, unit * rows + 1.4)))
        self.ax = ax = self.fig.add_subplot(1, 1, 1)
        ax.imshow(self.image, interpolation="nearest", aspect="equal")
        ax.set_xticks(np.arange(-0.5, cols, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, rows, 1), minor=True)
        if max(rows, cols) <= 64:
            ax.grid(which="minor", color="0.8", linewidth=0.5)
        ax.tick_params(which="minor", length=0)
        what = ("out", "in") if layout == "torch" else ("in", "out")
        ax.set_ylabel(
            f"vec($x^{{(l+1)}}$) index ({what[0]})"
            if layout == "torch"
            else f"vec($x^{{(l)}}$) index ({what[0]})"
        )
        ax.set_xlabel(
            f"vec($x^{{(l)}}$) index ({what[1]})"
            if layout == "torch"
            else f"vec($x^{{(l+1)}}$) index ({what[1]})"
        )
        ax.set_title(f"C, {layout} layout, shape {rows}×{cols}", fontsize=10)
        pal = kernel_colours(n_k)
        small = max(kernel_size) <= 9
        handles = [
            Patch(facecolor=pal[e], label=_sym("w", *divmod(e, kernel_size[1]), small))
            for e in range(n_k)
        ]
        ax.legend(
            handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False
        )
        self.fig.tight_layout()


class ConnectionScene(Scene):
    """The seed's connection view: input pixels (vec order, left) and output pixels (right),
    a line for every non-zero of C, coloured by the kernel entry that links them."""

    def __init__(
        self,
        links: list[tuple[Cell, Cell, int]],
        input_size: Cell,
        output_size: Cell,
        kernel_size: Cell,
    ):
        from matplotlib.patches import Patch

        self.links = links
        n, o = input_size, output_size
        n_in, n_out = n[0] * n[1], o[0] * o[1]
        unit = min(0.28, 12.0 / n_in)
        self.fig = _new_figure((6.0, max(3.0, unit * n_in + 1.2)))
        self.ax = ax = self.fig.add_subplot(1, 1, 1)
        step = n_in / n_out
        self.in_xy = {divmod(j, n[1]): (0.0, j + 0.5) for j in range(n_in)}
        self.out_xy = {divmod(j, o[1]): (1.0, (j + 0.5) * step) for j in range(n_out)}
        pal = kernel_colours(kernel_size[0] * kernel_size[1])
        self.lines: list[Line2D] = []
        for src, dst, t in links:
            (x0, y0), (x1, y1) = self.in_xy[src], self.out_xy[dst]
            (line,) = ax.plot([x0, x1], [y0, y1], color=pal[t], linewidth=1.3, alpha=0.85)
            self.lines.append(line)
        labels = n_in <= 64
        for xy, colour, base, side, ha in (
            (self.in_xy, INPUT, "x^{(l)}", -0.03, "right"),
            (self.out_xy, DONE, "x^{(l+1)}", 1.03, "left"),
        ):
            small = max(n if base == "x^{(l)}" else o) <= 9
            pts = np.array(list(xy.values()))
            ax.scatter(pts[:, 0], pts[:, 1], s=30, color=colour, edgecolor="0.3", zorder=3)
            if labels:
                for (r, c), (_x, y) in xy.items():
                    ax.text(side, y, _sym(base, r, c, small), ha=ha, va="center", fontsize=8)
        ax.set_xlim(-0.35, 1.35)
        ax.set_ylim(n_in + 0.2, -0.2)
        ax.axis("off")
        handles = [
            Patch(
                facecolor=pal[e], label=_sym("w", *divmod(e, kernel_size[1]), max(kernel_size) <= 9)
            )
            for e in range(kernel_size[0] * kernel_size[1])
        ]
        ax.legend(
            handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False
        )
        ax.set_title(
            f"input {n[0]}×{n[1]} → output {o[0]}×{o[1]}: one line per non-zero of C", fontsize=10
        )
        self.fig.tight_layout()


def _check_frames(n_frames: int, max_frames: int | None, what: str) -> None:
    """Refuse an animation of more than ``max_frames`` frames (None: no limit)."""
    if max_frames is not None:
        check_budget(
            n_frames, max_frames, param="max_frames", what="an animation",
            received=what, unit="frames",
        )  # fmt: skip


def conv_scene(
    input_size: object,
    kernel_size: object,
    *,
    stride: object = 1,
    padding: object = 0,
    dilation: object = 1,
    max_cells: int | None = None,
    max_frames: int | None = None,
) -> ConvScene:
    """The conv animation for a geometry (one frame per output pixel).

    Refused before anything is drawn over ``max_cells`` cells (default
    :data:`~convlens.figures.frames.MAX_CELLS`) or, when given, ``max_frames`` frames (pass
    it when every frame will be drawn, as :func:`save_scene` does for a GIF).
    """
    f = conv_frames(
        input_size, kernel_size, stride=stride, padding=padding, dilation=dilation,
        max_cells=max_cells,
    )  # fmt: skip
    _check_frames(f.n_frames, max_frames, f"one frame per output pixel of {_show(f.output_size)}")
    return ConvScene(f)


def _show(size: Cell) -> str:
    return f"{size[0]}x{size[1]}"


def scatter_scene(
    input_size: object,
    kernel_size: object,
    *,
    stride: object = 1,
    padding: object = 0,
    output_padding: object = 0,
    dilation: object = 1,
    max_cells: int | None = None,
    max_frames: int | None = None,
) -> ScatterScene:
    """The transposed conv's scatter view (one frame per input pixel); limits as
    :func:`conv_scene`."""
    f = transpose_scatter_frames(
        input_size, kernel_size, stride=stride, padding=padding,
        output_padding=output_padding, dilation=dilation, max_cells=max_cells,
    )  # fmt: skip
    _check_frames(f.n_frames, max_frames, f"one frame per input pixel of {_show(f.input_size)}")
    return ScatterScene(f)


def fractional_scene(
    input_size: object,
    kernel_size: object,
    *,
    stride: object = 1,
    padding: object = 0,
    output_padding: object = 0,
    dilation: object = 1,
    max_cells: int | None = None,
    max_frames: int | None = None,
) -> FractionalScene:
    """The transposed conv's fractionally strided view (one frame per output pixel); limits
    as :func:`conv_scene`."""
    f = fractional_frames(
        input_size, kernel_size, stride=stride, padding=padding,
        output_padding=output_padding, dilation=dilation, max_cells=max_cells,
    )  # fmt: skip
    _check_frames(f.n_frames, max_frames, f"one frame per output pixel of {_show(f.output_size)}")
    return FractionalScene(f)


def matrix_scene(
    input_size: object,
    kernel_size: object,
    *,
    stride: object = 1,
    padding: object = 0,
    dilation: object = 1,
    layout: str = "torch",
    max_cells: int | None = None,
) -> MatrixScene:
    """C as a coloured sparsity pattern (``layout="torch"``: (out, in) like the guide's 4×16).

    A C of more than ``max_cells`` entries (default
    :data:`~convlens.figures.frames.MAX_MATRIX_CELLS`) is refused before it is built.
    """
    entries = matrix_entries(
        input_size, kernel_size, stride=stride, padding=padding, dilation=dilation,
        layout=layout, max_cells=max_cells,
    )  # fmt: skip
    k = LayerSpec.conv(kernel_size, ndim=2).kernel_size  # validated by matrix_entries
    return MatrixScene(entries, (k[0], k[1]), layout)


def connection_scene(
    input_size: object,
    kernel_size: object,
    *,
    stride: object = 1,
    padding: object = 0,
    dilation: object = 1,
    max_cells: int | None = None,
) -> ConnectionScene:
    """Input pixel ↔ output pixel lines coloured by kernel entry; more than ``max_cells``
    lines and points (default :data:`~convlens.figures.frames.MAX_CELLS`) is refused first."""
    links = connections(
        input_size, kernel_size, stride=stride, padding=padding, dilation=dilation,
        max_cells=max_cells,
    )  # fmt: skip
    spec = LayerSpec.conv(kernel_size, stride, padding, dilation, ndim=2)  # validated above
    n = spec.check_input_size(input_size)
    o, k = spec.output_size(n), spec.kernel_size
    return ConnectionScene(links, (n[0], n[1]), (o[0], o[1]), (k[0], k[1]))


def save_scene(
    scene: Scene,
    out: str | os.PathLike[str],
    *,
    frame: int | None = None,
    fps: float = 2.0,
    max_frames: int | None = MAX_FRAMES,
) -> Path:
    """Write ``scene`` to ``out``: ``.gif`` = every frame; ``.png`` / ``.svg`` = frame ``frame``
    (default 0). Written atomically; returns the path.

    A GIF of more than ``max_frames`` frames (default :data:`MAX_FRAMES`; None: no limit) is
    refused before a frame is drawn; ``fps`` is a number from :data:`MIN_FPS` to :data:`MAX_FPS`.
    """
    path = Path(out)
    ext = path.suffix.lower()
    if ext not in EXTENSIONS:
        raise ParameterError("out", "a path ending in .png, .svg or .gif", str(out))
    if ext == ".gif" and not isinstance(scene, (ConvScene, ScatterScene, FractionalScene)):
        raise ParameterError("out", "a .png or .svg path for a still picture", str(out))
    if ext == ".gif" and frame is not None:
        raise ParameterError("frame", "None for a .gif (it holds every frame)", frame)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)):
        raise ParameterTypeError("fps", f"a number from {MIN_FPS:g} to {MAX_FPS:g}", fps)
    if not MIN_FPS <= fps <= MAX_FPS:  # NaN fails both comparisons
        raise ParameterError("fps", f"a number from {MIN_FPS:g} to {MAX_FPS:g}", fps)
    if ext == ".gif":
        _check_frames(scene.n_frames, max_frames, f"a GIF of {scene.n_frames:,} frames")
    if not path.parent.is_dir():
        raise ParameterError("out", "a path in an existing folder", str(out))
    try:
        with atomic_path(path) as tmp:
            if ext == ".gif":
                from PIL import Image

                images = [Image.fromarray(scene.rgb(k)) for k in range(scene.n_frames)]
                images[0].save(
                    tmp,
                    format="GIF",
                    save_all=True,
                    append_images=images[1:],
                    duration=int(1000 / fps),
                    loop=0,
                    optimize=False,
                )
            else:
                scene.show(0 if frame is None else frame)
                scene.fig.savefig(tmp, format=ext[1:])
    except OSError as exc:  # name --out, not the temporary file beside it
        raise ParameterError(
            "out", "a path in a folder convlens can write", str(out), hint=exc.strerror
        ) from None
    return path
