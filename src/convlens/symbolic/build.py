"""Symbolic convolution: C, the forward output and the transposed result as sympy matrices.

The symbols follow the seed post: ``x^{(l)}_{ij}`` the input, ``x^{(l+1)}_{ij}`` the output,
``w_{ij}`` the kernel, with channel indices in front when there are several channels
(``x^{(l)}_{c,ij}``, ``w_{o,c,ij}``). C is built straight from the index pattern in O(nnz);
:meth:`SymbolicConv.C_by_diff` derives it the seed's way (slide, then differentiate) as a
cross-check. The transposed convolution is ``C^T vec(x^{(l+1)})``, "the gradient of Conv2d
with respect to its input" (PyTorch docs; Dumoulin & Visin, arXiv:1603.07285, section 4).

>>> sc = symbolic_conv(4, 3)
>>> sc.C(layout="row").shape, sc.C(layout="row")[1, 0]
((16, 4), w_{12})
>>> sc.transpose()[0][0, 1]
w_{11}*x^{(l+1)}_{12} + w_{12}*x^{(l+1)}_{11}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import product
from typing import Any, Literal

import numpy as np
import sympy as sp

from convlens.errors import ParameterError, ParameterTypeError
from convlens.symbolic._pattern import (
    ConvGeometry,
    Pattern,
    _sizes,
    conv_pattern,
    make_geometry,
)

__all__ = [
    "INPUT",
    "OUTPUT",
    "WEIGHT",
    "SymbolicConv",
    "numeric_matrix",
    "symbol_grid",
    "symbolic_conv",
    "symbolic_conv_transpose",
]

Layout = Literal["torch", "row"]
INPUT, OUTPUT, WEIGHT = "x^{(l)}", "x^{(l+1)}", "w"


@lru_cache(maxsize=64)
def symbol_grid(
    base: str, channels: tuple[int, ...], size: tuple[int, ...], index_base: int = 1
) -> np.ndarray:
    """Object array of shape ``(*channels, *size)`` of symbols ``base_{channels,spatial}``.

    Channel indices are comma-separated in front; the spatial indices are written without
    separator (``x_{12}``) when every index is a single digit, else with commas (``x_{1,12}``).
    Channel indices are left out of the names when every channel dimension has length 1.

    >>> symbol_grid("w", (), (2, 2))[1, 0]
    w_{21}
    >>> symbol_grid("x", (2,), (3,), 0)[1, 2]
    x_{1,2}
    """
    compact = all(s - 1 + index_base <= 9 for s in size)
    sep = "" if compact else ","
    shown = list(range(len(channels))) if any(c > 1 for c in channels) else []
    out = np.empty((*channels, *size), dtype=object)
    for idx in product(*[range(c) for c in (*channels, *size)]):
        ch = [str(idx[i] + index_base) for i in shown]
        sp_idx = sep.join(str(i + index_base) for i in idx[len(channels) :])
        out[idx] = sp.Symbol(f"{base}_{{{','.join([*ch, sp_idx])}}}")
    out.flags.writeable = False
    return out


def _as_matrix(grid: np.ndarray) -> sp.Matrix:
    """A 1-D grid as a 1×n row, a 2-D grid as it is; 3-D grids are stacked along rows."""
    if grid.ndim == 1:
        return sp.Matrix(1, grid.shape[0], list(grid))
    return sp.Matrix(grid.reshape(-1, grid.shape[-1]).tolist())


@dataclass(frozen=True)
class SymbolicConv:
    """The symbolic algebra of one convolution (and of its transpose).

    Build it with :func:`symbolic_conv` or :func:`symbolic_conv_transpose`. Index helpers:
    ``x`` (input symbols, shape ``(C_in, *N)``), ``y`` (output symbols ``(C_out, *O)``),
    ``w`` (weight symbols ``(C_out, C_in/groups, *K)``).

    >>> sc = symbolic_conv(3, 2)
    >>> sc.forward()[0][0, 0]
    w_{11}*x^{(l)}_{11} + w_{12}*x^{(l)}_{12} + w_{21}*x^{(l)}_{21} + w_{22}*x^{(l)}_{22}
    """

    geometry: ConvGeometry
    index_base: int = 1

    # ------------------------------------------------------------------ symbols
    @property
    def x(self) -> np.ndarray:
        g = self.geometry
        return symbol_grid(INPUT, (g.in_channels,), g.input_size, self.index_base)

    @property
    def y(self) -> np.ndarray:
        g = self.geometry
        return symbol_grid(OUTPUT, (g.out_channels,), g.output_size, self.index_base)

    @property
    def w(self) -> np.ndarray:
        g = self.geometry
        shape = (g.out_channels, g.in_channels // g.groups)
        return symbol_grid(WEIGHT, shape, g.kernel_size, self.index_base)

    @property
    def pattern(self) -> Pattern:
        g = self.geometry
        return conv_pattern(
            g.input_size,
            g.output_size,
            g.kernel_size,
            g.stride,
            g.padding,
            g.dilation,
            g.in_channels,
            g.out_channels,
            g.groups,
        )

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of C in torch layout: (len vec(y), len vec(x))."""
        return int(self.y.size), int(self.x.size)

    @property
    def output_padding(self) -> tuple[int, ...]:
        """``output_padding`` for which ``F.conv_transposeNd`` gives :meth:`transpose`."""
        return self.geometry.output_padding

    def torch_kwargs(self, transpose: bool = False) -> dict[str, Any]:
        """Keyword arguments of ``F.convNd`` (or ``F.conv_transposeNd``) for this geometry.

        >>> symbolic_conv(5, 3, stride=2).torch_kwargs(transpose=True)["output_padding"]
        (0, 0)
        """
        g = self.geometry
        kw: dict[str, Any] = {
            "stride": g.stride,
            "padding": g.padding,
            "dilation": g.dilation,
            "groups": g.groups,
        }
        if transpose:
            kw["output_padding"] = self.output_padding
        return kw

    # ------------------------------------------------------------------ matrices
    @cached_property
    def _C_torch(self) -> sp.SparseMatrix:
        p = self.pattern
        ws = self.w.ravel()
        entries = {(int(o), int(i)): ws[k] for o, i, k in zip(p.out_index, p.in_index, p.w_index)}
        rows, cols = self.shape
        return sp.SparseMatrix(rows, cols, entries)

    def C(self, layout: Layout = "torch") -> sp.SparseMatrix:
        """The conv matrix, built from the index pattern in O(nnz).

        ``layout="torch"``: shape (out, in), ``vec(y) = C vec(x)``; ``layout="row"``: the seed's
        (in, out), ``vec(x)^T C``.

        >>> symbolic_conv(4, 3).C().shape
        (4, 16)
        """
        _check_layout(layout)
        return self._C_torch if layout == "torch" else self._C_torch.T

    def forward_vec(self) -> sp.Matrix:
        """vec(y) as a column: each output the sum of its weight × input products."""
        p = self.pattern
        xs, ws = self.x.ravel(), self.w.ravel()
        terms: list[list[sp.Expr]] = [[] for _ in range(self.shape[0])]
        for o, i, k in zip(p.out_index.tolist(), p.in_index.tolist(), p.w_index.tolist()):
            terms[o].append(ws[k] * xs[i])
        return sp.Matrix([sp.Add(*t) for t in terms])

    def transpose_vec(self) -> sp.Matrix:
        """``C^T vec(x^{(l+1)})`` as a column over vec(x): the transposed convolution."""
        p = self.pattern
        ys, ws = self.y.ravel(), self.w.ravel()
        terms: list[list[sp.Expr]] = [[] for _ in range(self.shape[1])]
        for o, i, k in zip(p.out_index.tolist(), p.in_index.tolist(), p.w_index.tolist()):
            terms[i].append(ws[k] * ys[o])
        return sp.Matrix([sp.Add(*t) for t in terms])

    def forward(self) -> list[sp.Matrix]:
        """The conv output, one matrix per output channel (1-D: a 1×n row)."""
        grid = np.array(list(self.forward_vec()), dtype=object).reshape(self.y.shape)
        return [_as_matrix(c) for c in grid]

    def transpose(self) -> list[sp.Matrix]:
        """The transposed-conv result ``C^T vec(x^{(l+1)})``, one matrix per input channel."""
        grid = np.array(list(self.transpose_vec()), dtype=object).reshape(self.x.shape)
        return [_as_matrix(c) for c in grid]

    # ------------------------------------------------------------------ cross-check
    def forward_by_sliding(self) -> sp.Matrix:
        """vec(y) computed the seed's way: slide the (dilated) kernel over the zero-padded input.

        Independent of the index pattern: windows are slices of the padded symbol grid.
        """
        g = self.geometry
        pad = [(0, 0)] + [(p, p) for p in g.padding]
        padded = np.pad(self.x, pad, mode="constant", constant_values=sp.Integer(0))
        cin_g, cout_g = g.in_channels // g.groups, g.out_channels // g.groups
        out = []
        for oc in range(g.out_channels):
            grp = oc // cout_g
            chans = padded[grp * cin_g : (grp + 1) * cin_g]
            for pos in product(*[range(o) for o in g.output_size]):
                spans = (
                    slice(q * s, q * s + d * (k - 1) + 1, d)
                    for q, s, d, k in zip(pos, g.stride, g.dilation, g.kernel_size)
                )
                index = (slice(None), *spans)
                window = chans[index]
                out.append(sp.Add(*(window * self.w[oc]).ravel()))
        return sp.Matrix(out)

    def C_by_diff(self, layout: Layout = "torch") -> sp.Matrix:
        """C as the Jacobian d vec(y) / d vec(x) of :meth:`forward_by_sliding` (the seed's route,
        written with ``Matrix.jacobian``, which works on sympy >= 1.13 where ``Matrix.diff(Matrix)``
        returns an array). Slow: O(len(y) × len(x)) derivatives.
        """
        _check_layout(layout)
        jac = self.forward_by_sliding().jacobian(sp.Matrix(self.x.ravel()))
        return jac if layout == "torch" else jac.T

    # ------------------------------------------------------------------ numbers
    def values(
        self, *, weight: Any = None, input: Any = None, output: Any = None
    ) -> dict[sp.Symbol, sp.Expr]:
        """A substitution map from tensors (or arrays) of numbers to the symbols, exact:
        every float becomes the sympy Rational of its binary value.

        >>> import torch
        >>> sc = symbolic_conv(2, 1)
        >>> sc.forward()[0].xreplace(sc.values(weight=torch.full((1, 1, 1, 1), 2.0),
        ...                                     input=torch.ones(1, 1, 2, 2)))
        Matrix([
        [2, 2],
        [2, 2]])
        """
        out: dict[sp.Symbol, sp.Expr] = {}
        for name, syms, value in (
            ("weight", self.w, weight),
            ("input", self.x, input),
            ("output", self.y, output),
        ):
            if value is None:
                continue
            arr = _to_numpy(value, name)
            if arr.size != syms.size:
                raise ParameterError(
                    name, f"{syms.size} numbers (shape {syms.shape})", f"shape {arr.shape}"
                )
            for s, v in zip(syms.ravel(), arr.ravel().tolist()):
                out[s] = sp.Integer(int(v)) if float(v).is_integer() else sp.Rational(v)
        return out

    # ------------------------------------------------------------------ display
    def _repr_latex_(self) -> str:
        from convlens.symbolic.render import latex_matrix

        return f"$$C = {latex_matrix(self.C(layout='row'), max_rows=32, max_cols=16)}$$"


def _to_numpy(value: Any, name: str) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().double().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterTypeError(name, "a tensor or array of numbers", value) from None


def _check_layout(layout: str) -> None:
    if layout not in ("torch", "row"):
        raise ParameterError("layout", "'torch' or 'row'", layout)


def _check_base(index_base: int) -> int:
    if index_base not in (0, 1):
        raise ParameterError("index_base", "0 or 1", index_base)
    return index_base


def symbolic_conv(
    input_size: int | tuple[int, ...],
    kernel_size: int | tuple[int, ...],
    *,
    stride: int | tuple[int, ...] = 1,
    padding: int | tuple[int, ...] = 0,
    dilation: int | tuple[int, ...] = 1,
    in_channels: int = 1,
    out_channels: int = 1,
    groups: int = 1,
    index_base: int = 1,
) -> SymbolicConv:
    """The symbolic algebra of ``ConvNd(in_channels, out_channels, kernel_size, ...)`` on an
    input of ``input_size`` (zero padding). ``ndim`` comes from the first tuple given, else 2.

    >>> symbolic_conv(5, 3, stride=2, padding=1).geometry.output_size
    (3, 3)
    """
    geom = make_geometry(
        input_size,
        kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        in_channels=in_channels,
        out_channels=out_channels,
        groups=groups,
    )
    return SymbolicConv(geom, _check_base(index_base))


def symbolic_conv_transpose(
    input_size: int | tuple[int, ...],
    kernel_size: int | tuple[int, ...],
    *,
    stride: int | tuple[int, ...] = 1,
    padding: int | tuple[int, ...] = 0,
    output_padding: int | tuple[int, ...] = 0,
    dilation: int | tuple[int, ...] = 1,
    in_channels: int = 1,
    out_channels: int = 1,
    groups: int = 1,
    index_base: int = 1,
) -> SymbolicConv:
    """The symbolic algebra behind ``ConvTransposeNd(in_channels, out_channels, ...)`` applied
    to an input of ``input_size``: the conv it transposes maps the transposed output
    (size ``(i-1)s - 2p + d(k-1) + output_padding + 1``) back to ``input_size``; its
    :meth:`SymbolicConv.transpose` is the transposed convolution (symbols ``x^{(l+1)}`` in).

    >>> sc = symbolic_conv_transpose(2, 3, stride=2, output_padding=1)
    >>> sc.geometry.input_size, sc.output_padding
    ((6, 6), (1, 1))
    """
    ndim = 2
    for v in (input_size, kernel_size, stride, padding, output_padding, dilation):
        if isinstance(v, (tuple, list)):
            ndim = len(v)
            break
    i = _sizes(input_size, ndim, "input_size")
    k = _sizes(kernel_size, ndim, "kernel_size")
    s = _sizes(stride, ndim, "stride")
    p = _sizes(padding, ndim, "padding", allow_zero=True)
    op = _sizes(output_padding, ndim, "output_padding", allow_zero=True)
    d = _sizes(dilation, ndim, "dilation")
    if any(not (a < b or a < c) for a, b, c in zip(op, s, d)):
        raise ParameterError(
            "output_padding",
            f"a value smaller than either stride or dilation in each dimension "
            f"(stride={s}, dilation={d})",
            output_padding,
        )
    big = tuple(
        (ii - 1) * ss - 2 * pp + dd * (kk - 1) + oo + 1
        for ii, kk, ss, pp, dd, oo in zip(i, k, s, p, d, op)
    )
    if any(b < 1 for b in big):
        raise ParameterError(
            "padding",
            f"a padding that leaves the transposed convolution a positive output size "
            f"(it gives {big})",
            padding,
        )
    geom = make_geometry(
        big,
        k,
        stride=s,
        padding=p,
        dilation=d,
        in_channels=out_channels,
        out_channels=in_channels,
        groups=groups,
        output_size=i,
    )
    return SymbolicConv(geom, _check_base(index_base))


def numeric_matrix(matrix: sp.MatrixBase, values: Mapping[sp.Symbol, sp.Expr]) -> np.ndarray:
    """A sympy matrix with numbers substituted, as float64 numpy (raises if a symbol is left).

    >>> sc = symbolic_conv(2, 1)
    >>> numeric_matrix(sc.C(), sc.values(weight=[[[[3.0]]]])).tolist()
    [[3.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0], [0.0, 0.0, 0.0, 3.0]]
    """
    out = np.zeros(matrix.shape, dtype=np.float64)
    items = matrix.todok().items() if hasattr(matrix, "todok") else None
    if items is None:
        items = ((ij, matrix[ij]) for ij in product(*map(range, matrix.shape)))
    for (r, c), e in items:
        v = sp.sympify(e).xreplace(dict(values))
        if v.free_symbols:
            raise ParameterError(
                "values",
                "a number for every symbol",
                f"no value for {sorted(map(str, v.free_symbols))}",
            )
        out[r, c] = float(v)
    return out
