"""What the pictures show, as data: the cells each animation frame highlights, and the colour
of every entry of C. Pure functions of the geometry (no matplotlib), so tests can check the
content of a figure, not only that a file exists. 2-D, one channel; sizes are ints or pairs.

The three views follow Dumoulin & Visin, *A guide to convolution arithmetic for deep
learning*, arXiv:1603.07285: the kernel sliding over the padded input (conv), each input pixel
stamping the kernel into the output (transposed conv as scatter), and the flipped kernel sliding
over the zero-inserted, padded input (transposed conv as a fractionally strided conv).

>>> f = conv_frames(4, 3)
>>> f.n_frames, f.windows[1][:3]
(4, ((0, 1), (0, 2), (0, 3)))
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import product

import numpy as np

from convlens.arithmetic import LayerSpec, count_layer_entries, layer_entries, layer_triples
from convlens.errors import ParameterError, ParameterTypeError
from convlens.index import axis_triples, check_budget, grid_triples

__all__ = [
    "MAX_CELLS",
    "MAX_MATRIX_CELLS",
    "ConvFrames",
    "FractionalFrames",
    "ScatterFrames",
    "connections",
    "conv_frames",
    "fractional_frames",
    "kernel_colours",
    "matrix_colours",
    "matrix_entries",
    "transpose_output_size",
    "transpose_scatter_frames",
]

Cell = tuple[int, int]
_TWO_D = "an int or a pair of ints (figures are 2-D)"

#: The default limit on the cells a grid picture draws (input canvas, kernel and output
#: together; a connection picture: its lines and points), about a second per frame.
MAX_CELLS = 10_000
#: The default limit on the entries of C drawn as pixels by the matrix picture.
MAX_MATRIX_CELLS = 1_000_000


def _check_cells(cells: int, max_cells: int | None, default: int, received: str) -> None:
    """Refuse a picture of more than ``max_cells`` cells before anything is built."""
    check_budget(
        cells,
        default if max_cells is None else max_cells,
        param="max_cells",
        what="a figure",
        received=received,
        unit="cells",
    )


def _grids(*shapes: tuple[int, ...]) -> tuple[int, str]:
    """Cells of the grids drawn side by side, and how to say it."""
    cells = sum(a * b for a, b in shapes)
    return cells, " + ".join(f"{a}x{b}" for a, b in shapes) + " grids"


def _two(value: object, name: str) -> object:
    """Refuse what is not 2-D (the figures' scope); LayerSpec checks the values."""
    if isinstance(value, str):
        raise ParameterTypeError(name, _TWO_D, value)
    if isinstance(value, (tuple, list)) and len(value) != 2:
        raise ParameterError(name, _TWO_D, value)
    return value


def _cell(values: tuple[int, ...]) -> Cell:
    return (values[0], values[1])


def _pad_lo(spec: LayerSpec) -> Cell:
    """The padding before each dimension (figures pad with int padding, the same after)."""
    (lo0, _), (lo1, _) = spec.padding_pairs()
    return (lo0, lo1)


def _conv_spec(kernel_size: object, stride: object, padding: object, dilation: object) -> LayerSpec:
    return LayerSpec.conv(
        _two(kernel_size, "kernel_size"), _two(stride, "stride"), _two(padding, "padding"),
        _two(dilation, "dilation"), ndim=2,
    )  # fmt: skip


def _transpose_spec(
    kernel_size: object, stride: object, padding: object, output_padding: object, dilation: object
) -> LayerSpec:
    return LayerSpec.conv_transpose(
        _two(kernel_size, "kernel_size"), _two(stride, "stride"), _two(padding, "padding"),
        _two(output_padding, "output_padding"), dilation=_two(dilation, "dilation"), ndim=2,
    )  # fmt: skip


def _windows(
    canvas: tuple[int, ...], spec: LayerSpec, out: tuple[int, ...], stride: tuple[int, ...]
) -> tuple[tuple[Cell, ...], ...]:
    """Per output (C order), the canvas cells its kernel taps meet (C order): the engine's
    triples of an unpadded conv with ``stride`` over the whole ``canvas``."""
    grid = grid_triples(
        [
            axis_triples(c, k, s, (0, 0), d, out_length=o)
            for c, k, s, d, o in zip(canvas, spec.kernel_size, stride, spec.dilation, out)
        ]
    )
    n_k = spec.kernel_size[0] * spec.kernel_size[1]
    rows, cols = np.divmod(grid.inp, canvas[1])
    cells = list(zip(rows.tolist(), cols.tolist()))
    return tuple(tuple(cells[j : j + n_k]) for j in range(0, len(cells), n_k))


def _cells(shape: tuple[int, ...]) -> list[Cell]:
    return [(a, b) for a, b in product(range(shape[0]), range(shape[1]))]


def _unpad(cells: tuple[Cell, ...], padding: Cell, size: Cell) -> set[Cell]:
    """``cells`` of a canvas padded by ``padding`` (at the start) as coordinates of the
    unpadded grid of ``size``, dropping those that fall in the padding."""
    return {
        (r - padding[0], c - padding[1])
        for r, c in cells
        if 0 <= r - padding[0] < size[0] and 0 <= c - padding[1] < size[1]
    }


@dataclass(frozen=True)
class ConvFrames:
    """Frames of the conv animation: one per output pixel (C order).

    ``windows[k][t]`` is the cell of the padded canvas (input cell ``(i, j)`` sits at
    ``(i + padding[0], j + padding[1])``) that kernel entry ``t`` (C order) meets for output ``k``.
    """

    input_size: Cell
    kernel_size: Cell
    stride: Cell
    padding: Cell
    dilation: Cell
    output_size: Cell
    canvas_size: Cell
    windows: tuple[tuple[Cell, ...], ...]

    @property
    def n_frames(self) -> int:
        return len(self.windows)

    def reads(self, k: int) -> set[Cell]:
        """Input cells (input coordinates) that output ``k`` reads: the window minus padding."""
        return _unpad(self.windows[k], self.padding, self.input_size)


@lru_cache(maxsize=64)
def _conv_frames(spec: LayerSpec, n: tuple[int, ...]) -> ConvFrames:
    out = spec.output_size(n)
    p = _pad_lo(spec)
    canvas = (n[0] + 2 * p[0], n[1] + 2 * p[1])
    windows = _windows(canvas, spec, out, spec.stride)
    return ConvFrames(
        _cell(n), _cell(spec.kernel_size), _cell(spec.stride), p, _cell(spec.dilation),
        _cell(out), canvas, windows,
    )  # fmt: skip


def conv_frames(
    input_size: object,
    kernel_size: object,
    *,
    stride: object = 1,
    padding: object = 0,
    dilation: object = 1,
    max_cells: int | None = None,
) -> ConvFrames:
    """The conv animation's content: which padded-input cells each output pixel reads.

    The picture's cells (padded input, kernel and output) are counted first: more than
    ``max_cells`` (default :data:`MAX_CELLS`) is refused before anything is built.

    >>> sorted(conv_frames(5, 3, stride=2, padding=1).reads(0))
    [(0, 0), (0, 1), (1, 0), (1, 1)]
    """
    spec = _conv_spec(kernel_size, stride, padding, dilation)
    n = spec.check_input_size(_two(input_size, "input_size"))
    out, p = spec.output_size(n), _pad_lo(spec)
    cells, what = _grids((n[0] + 2 * p[0], n[1] + 2 * p[1]), spec.kernel_size, out)
    _check_cells(cells, max_cells, MAX_CELLS, f"the conv picture's {what}")
    return _conv_frames(spec, n)


def transpose_output_size(
    input_size: object,
    kernel_size: object,
    *,
    stride: object = 1,
    padding: object = 0,
    output_padding: object = 0,
    dilation: object = 1,
) -> Cell:
    """Output size of ``ConvTranspose2d``: ``(i-1)s - 2p + d(k-1) + output_padding + 1``.

    >>> transpose_output_size(2, 3, stride=2, padding=1, output_padding=1)
    (4, 4)
    """
    spec = _transpose_spec(kernel_size, stride, padding, output_padding, dilation)
    return _cell(spec.output_size(_two(input_size, "input_size")))


@dataclass(frozen=True)
class ScatterFrames:
    """Frames of the scatter view: one per input pixel of the transposed conv (C order).

    ``stamps[k][t]`` is the cell of the uncropped output canvas (size ``full_size``) that kernel
    entry ``t`` lands on; the final output is the canvas cropped by ``padding`` at the start
    (and to ``output_size``), so canvas cell ``(r, c)`` is output ``(r - p0, c - p1)``.
    """

    input_size: Cell
    kernel_size: Cell
    stride: Cell
    padding: Cell
    output_padding: Cell
    dilation: Cell
    output_size: Cell
    full_size: Cell
    stamps: tuple[tuple[Cell, ...], ...]

    @property
    def n_frames(self) -> int:
        return len(self.stamps)

    def writes(self, k: int) -> set[Cell]:
        """Output cells (final coordinates) that input pixel ``k`` contributes to."""
        return _unpad(self.stamps[k], self.padding, self.output_size)


def transpose_scatter_frames(
    input_size: object,
    kernel_size: object,
    *,
    stride: object = 1,
    padding: object = 0,
    output_padding: object = 0,
    dilation: object = 1,
    max_cells: int | None = None,
) -> ScatterFrames:
    """The scatter view's content: where each input pixel stamps the (dilated) kernel.

    Over ``max_cells`` cells (input, kernel, uncropped output; default :data:`MAX_CELLS`) is
    refused before anything is built.

    >>> f = transpose_scatter_frames(2, 3, stride=2)
    >>> f.output_size, f.stamps[1][:2]
    ((5, 5), ((0, 2), (0, 3)))
    """
    spec = _transpose_spec(kernel_size, stride, padding, output_padding, dilation)
    i = spec.check_input_size(_two(input_size, "input_size"))
    out = spec.output_size(i)
    p = _pad_lo(spec)
    full = (out[0] + 2 * p[0], out[1] + 2 * p[1])
    cells, what = _grids(i, spec.kernel_size, full)
    _check_cells(cells, max_cells, MAX_CELLS, f"the scatter picture's {what}")
    # input pixel a stamps the kernel at a*s + t*d of the uncropped canvas: the adjoint conv's
    # (output, tap, input) triples over that canvas
    stamps = _windows(full, spec, i, spec.stride)
    return ScatterFrames(
        _cell(i), _cell(spec.kernel_size), _cell(spec.stride), p, _cell(spec.output_padding),
        _cell(spec.dilation), _cell(out), full, stamps,
    )  # fmt: skip


@dataclass(frozen=True)
class FractionalFrames:
    """Frames of the fractionally strided view: one per output pixel of the transposed conv.

    The canvas holds the input with ``stride - 1`` zeros inserted between pixels and
    ``dilation*(kernel-1)`` zeros around it (plus ``output_padding`` at the end); input pixel
    ``(a, b)`` sits at ``input_cells[a * i1 + b]``. Output ``k`` reads ``windows[k][t]`` with the
    *flipped* kernel: cell ``t`` is multiplied by kernel entry ``kernel_entry[t]`` (C order).
    Canvas cells before ``padding`` and after ``canvas - padding`` are never read (cropped).
    """

    input_size: Cell
    kernel_size: Cell
    stride: Cell
    padding: Cell
    output_padding: Cell
    dilation: Cell
    output_size: Cell
    canvas_size: Cell
    input_cells: tuple[Cell, ...]
    windows: tuple[tuple[Cell, ...], ...]
    kernel_entry: tuple[int, ...]

    @property
    def n_frames(self) -> int:
        return len(self.windows)

    def reads(self, k: int) -> dict[Cell, int]:
        """Input pixels under output ``k``'s window, each with the kernel entry it meets."""
        e, s, i = self.edge, self.stride, self.input_size
        out = {}
        for t, (r, c) in enumerate(self.windows[k]):
            (a, ra), (b, rb) = divmod(r - e[0], s[0]), divmod(c - e[1], s[1])
            if ra == 0 and rb == 0 and 0 <= a < i[0] and 0 <= b < i[1]:
                out[(a, b)] = self.kernel_entry[t]
        return out

    @property
    def edge(self) -> Cell:
        """Zeros around the zero-inserted input on each side: ``dilation * (kernel - 1)``."""
        return (
            self.dilation[0] * (self.kernel_size[0] - 1),
            self.dilation[1] * (self.kernel_size[1] - 1),
        )


def fractional_frames(
    input_size: object,
    kernel_size: object,
    *,
    stride: object = 1,
    padding: object = 0,
    output_padding: object = 0,
    dilation: object = 1,
    max_cells: int | None = None,
) -> FractionalFrames:
    """The fractionally strided view's content (zero insertion, padding, flipped kernel).

    Over ``max_cells`` cells (canvas, kernel, output; default :data:`MAX_CELLS`) is refused
    before anything is built.

    >>> f = fractional_frames(2, 3, stride=2)
    >>> f.canvas_size, f.input_cells, f.kernel_entry[0]
    ((7, 7), ((2, 2), (2, 4), (4, 2), (4, 4)), 8)
    """
    spec = _transpose_spec(kernel_size, stride, padding, output_padding, dilation)
    i = spec.check_input_size(_two(input_size, "input_size"))
    out = spec.output_size(i)
    k, s, d, op = (
        _cell(v) for v in (spec.kernel_size, spec.stride, spec.dilation, spec.output_padding)
    )
    p = _pad_lo(spec)
    edge = (d[0] * (k[0] - 1), d[1] * (k[1] - 1))
    canvas = (
        (i[0] - 1) * s[0] + 1 + 2 * edge[0] + op[0],
        (i[1] - 1) * s[1] + 1 + 2 * edge[1] + op[1],
    )
    cells, what = _grids(canvas, k, out)
    _check_cells(cells, max_cells, MAX_CELLS, f"the fractional picture's {what}")
    input_cells = tuple((edge[0] + a * s[0], edge[1] + b * s[1]) for a, b in _cells(i))
    # output a reads canvas cells p + a + t*d: a stride-1 conv over the canvas past the crop
    cropped = _windows((canvas[0] - p[0], canvas[1] - p[1]), spec, out, (1, 1))
    windows = tuple(tuple((r + p[0], c + p[1]) for r, c in w) for w in cropped)
    n_k = k[0] * k[1]
    flipped = tuple(n_k - 1 - t for t in range(n_k))
    return FractionalFrames(
        _cell(i), k, s, p, op, d, _cell(out), canvas, input_cells, windows, flipped
    )


# ---------------------------------------------------------------------- the matrix C
def matrix_entries(
    input_size: object,
    kernel_size: object,
    *,
    stride: object = 1,
    padding: object = 0,
    dilation: object = 1,
    layout: str = "torch",
    max_cells: int | None = None,
) -> np.ndarray:
    """C with each entry replaced by its kernel entry's number (1-based, C order), 0 where C is 0.

    ``layout="torch"``: shape (out, in) as the guide's 4×16 picture; ``"row"``: (in, out).
    A dense C of more than ``max_cells`` entries (default :data:`MAX_MATRIX_CELLS`) is refused
    before it is allocated.

    >>> matrix_entries(3, 2)[0].tolist()
    [1, 2, 0, 3, 4, 0, 0, 0, 0]
    """
    if layout not in ("torch", "row"):
        raise ParameterError("layout", "'torch' or 'row'", layout)
    spec = _conv_spec(kernel_size, stride, padding, dilation)
    n = spec.check_input_size(_two(input_size, "input_size"))
    out = spec.output_size(n)
    rows, cols = out[0] * out[1], n[0] * n[1]
    _check_cells(
        rows * cols,
        max_cells,
        MAX_MATRIX_CELLS,
        f"the matrix picture's C of shape ({rows}, {cols})",
    )
    e = layer_entries(spec, n)
    m = np.zeros(e.shape, dtype=np.int64)
    m[e.out, e.inp] = e.weight_index + 1
    return m if layout == "torch" else m.T


def kernel_colours(n: int) -> np.ndarray:
    """``n`` distinct RGB colours in [0, 1], one per kernel entry (tab10, tab20, then HSV).

    >>> kernel_colours(9).shape
    (9, 3)
    """
    from matplotlib import colormaps, colors

    if n <= 20:
        name, m = ("tab10", 10) if n <= 10 else ("tab20", 20)
        return np.asarray(colormaps[name](np.arange(n) / m + 0.5 / m), dtype=np.float64)[:, :3]
    hues = np.linspace(0, 1, n, endpoint=False)
    return np.asarray([colors.hsv_to_rgb((h, 0.75, 0.85)) for h in hues], dtype=np.float64)


def matrix_colours(entries: np.ndarray, n_kernel: int | None = None) -> np.ndarray:
    """RGB picture of C from :func:`matrix_entries`: white for 0, kernel entry ``e`` in
    ``kernel_colours(n_kernel)[e - 1]``.

    >>> matrix_colours(matrix_entries(3, 2)).shape
    (4, 9, 3)
    """
    n = int(entries.max()) if n_kernel is None else n_kernel
    palette = np.vstack([np.ones((1, 3)), kernel_colours(max(n, 1))])
    return palette[entries]


def connections(
    input_size: object,
    kernel_size: object,
    *,
    stride: object = 1,
    padding: object = 0,
    dilation: object = 1,
    max_cells: int | None = None,
) -> list[tuple[Cell, Cell, int]]:
    """The seed's connection view as data: ``(input pixel, output pixel, kernel entry)`` for every
    non-zero of C (kernel entry 0-based, C order). More than ``max_cells`` lines and points
    (default :data:`MAX_CELLS`) is refused before anything is built.

    >>> connections(3, 2)[:2]
    [((0, 0), (0, 0), 0), ((0, 1), (0, 0), 1)]
    """
    spec = _conv_spec(kernel_size, stride, padding, dilation)
    n = spec.check_input_size(_two(input_size, "input_size"))
    out = spec.output_size(n)
    lines = count_layer_entries(spec, n)
    points = n[0] * n[1] + out[0] * out[1]
    _check_cells(
        lines + points,
        max_cells,
        MAX_CELLS,
        f"the connection picture's {lines:,} lines and {points:,} points",
    )
    grid = grid_triples(layer_triples(spec, n))
    i_r, i_c = np.divmod(grid.inp, n[1])
    o_r, o_c = np.divmod(grid.out, grid.out_shape[1])
    return [
        ((a, b), (c, d), t)
        for a, b, c, d, t in zip(
            i_r.tolist(), i_c.tolist(), o_r.tolist(), o_c.tolist(), grid.tap.tolist()
        )
    ]
