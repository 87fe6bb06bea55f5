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

from convlens._utils import as_tuple, check_positive
from convlens.arithmetic import LayerSpec
from convlens.errors import ParameterError
from convlens.symbolic._pattern import conv_pattern, make_geometry

__all__ = [
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


def _pair(value: object, name: str, *, allow_zero: bool = False) -> tuple[int, int]:
    if isinstance(value, (tuple, list)) and len(value) != 2:
        raise ParameterError(name, "an int or a pair of ints (figures are 2-D)", value)
    t = as_tuple(value, 2, name)
    check_positive(t, name, allow_zero=allow_zero)
    return (t[0], t[1])


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
def _conv_frames(n: Cell, k: Cell, s: Cell, p: Cell, d: Cell) -> ConvFrames:
    g = make_geometry(n, k, stride=s, padding=p, dilation=d)
    out = (g.output_size[0], g.output_size[1])
    windows = tuple(
        tuple((a * s[0] + t * d[0], b * s[1] + u * d[1]) for t, u in _cells(k))
        for a, b in _cells(out)
    )
    return ConvFrames(n, k, s, p, d, out, (n[0] + 2 * p[0], n[1] + 2 * p[1]), windows)


def conv_frames(
    input_size: object,
    kernel_size: object,
    *,
    stride: object = 1,
    padding: object = 0,
    dilation: object = 1,
) -> ConvFrames:
    """The conv animation's content: which padded-input cells each output pixel reads.

    >>> sorted(conv_frames(5, 3, stride=2, padding=1).reads(0))
    [(0, 0), (0, 1), (1, 0), (1, 1)]
    """
    return _conv_frames(
        _pair(input_size, "input_size"),
        _pair(kernel_size, "kernel_size"),
        _pair(stride, "stride"),
        _pair(padding, "padding", allow_zero=True),
        _pair(dilation, "dilation"),
    )


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
    spec = LayerSpec.conv_transpose(
        _pair(kernel_size, "kernel_size"),
        _pair(stride, "stride"),
        _pair(padding, "padding", allow_zero=True),
        _pair(output_padding, "output_padding", allow_zero=True),
        dilation=_pair(dilation, "dilation"),
    )
    out = spec.output_size(_pair(input_size, "input_size"))
    return (out[0], out[1])


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
) -> ScatterFrames:
    """The scatter view's content: where each input pixel stamps the (dilated) kernel.

    >>> f = transpose_scatter_frames(2, 3, stride=2)
    >>> f.output_size, f.stamps[1][:2]
    ((5, 5), ((0, 2), (0, 3)))
    """
    i, k = _pair(input_size, "input_size"), _pair(kernel_size, "kernel_size")
    s, d = _pair(stride, "stride"), _pair(dilation, "dilation")
    p = _pair(padding, "padding", allow_zero=True)
    op = _pair(output_padding, "output_padding", allow_zero=True)
    out = transpose_output_size(i, k, stride=s, padding=p, output_padding=op, dilation=d)
    full = (out[0] + 2 * p[0], out[1] + 2 * p[1])
    stamps = tuple(
        tuple((a * s[0] + t * d[0], b * s[1] + u * d[1]) for t, u in _cells(k))
        for a, b in _cells(i)
    )
    return ScatterFrames(i, k, s, p, op, d, out, full, stamps)


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
) -> FractionalFrames:
    """The fractionally strided view's content (zero insertion, padding, flipped kernel).

    >>> f = fractional_frames(2, 3, stride=2)
    >>> f.canvas_size, f.input_cells, f.kernel_entry[0]
    ((7, 7), ((2, 2), (2, 4), (4, 2), (4, 4)), 8)
    """
    i, k = _pair(input_size, "input_size"), _pair(kernel_size, "kernel_size")
    s, d = _pair(stride, "stride"), _pair(dilation, "dilation")
    p = _pair(padding, "padding", allow_zero=True)
    op = _pair(output_padding, "output_padding", allow_zero=True)
    out = transpose_output_size(i, k, stride=s, padding=p, output_padding=op, dilation=d)
    edge = (d[0] * (k[0] - 1), d[1] * (k[1] - 1))
    canvas = tuple((i[n] - 1) * s[n] + 1 + 2 * edge[n] + op[n] for n in range(2))
    input_cells = tuple((edge[0] + a * s[0], edge[1] + b * s[1]) for a, b in _cells(i))
    windows = tuple(
        tuple((a + p[0] + t * d[0], b + p[1] + u * d[1]) for t, u in _cells(k))
        for a, b in _cells(out)
    )
    n_k = k[0] * k[1]
    flipped = tuple(n_k - 1 - t for t in range(n_k))
    return FractionalFrames(
        i, k, s, p, op, d, out, (canvas[0], canvas[1]), input_cells, windows, flipped
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
) -> np.ndarray:
    """C with each entry replaced by its kernel entry's number (1-based, C order), 0 where C is 0.

    ``layout="torch"``: shape (out, in) as the guide's 4×16 picture; ``"row"``: (in, out).

    >>> matrix_entries(3, 2)[0].tolist()
    [1, 2, 0, 3, 4, 0, 0, 0, 0]
    """
    if layout not in ("torch", "row"):
        raise ParameterError("layout", "'torch' or 'row'", layout)
    n, k = _pair(input_size, "input_size"), _pair(kernel_size, "kernel_size")
    g = make_geometry(
        n,
        k,
        stride=_pair(stride, "stride"),
        padding=_pair(padding, "padding", allow_zero=True),
        dilation=_pair(dilation, "dilation"),
    )
    pat = conv_pattern(g.input_size, g.output_size, g.kernel_size, g.stride, g.padding, g.dilation)
    m = np.zeros((int(np.prod(g.output_size)), int(np.prod(g.input_size))), dtype=np.int64)
    m[pat.out_index, pat.in_index] = pat.w_index + 1
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
) -> list[tuple[Cell, Cell, int]]:
    """The seed's connection view as data: ``(input pixel, output pixel, kernel entry)`` for every
    non-zero of C (kernel entry 0-based, C order).

    >>> connections(3, 2)[:2]
    [((0, 0), (0, 0), 0), ((0, 1), (0, 0), 1)]
    """
    f = conv_frames(input_size, kernel_size, stride=stride, padding=padding, dilation=dilation)
    out = []
    p, n = f.padding, f.input_size
    for k, window in enumerate(f.windows):
        o = divmod(k, f.output_size[1])
        for t, (r, c) in enumerate(window):
            if 0 <= r - p[0] < n[0] and 0 <= c - p[1] < n[1]:
                out.append(((r - p[0], c - p[1]), o, t))
    return out
