"""Symbolic convolution: C, the forward output and the transposed result as sympy matrices.

The symbols follow the seed post: ``x^{(l)}_{ij}`` the input, ``x^{(l+1)}_{ij}`` the output,
``w_{ij}`` the kernel, with channel indices in front when there are several channels
(``x^{(l)}_{c,ij}``, ``w_{o,c,ij}``). C is built straight from the index pattern
(:func:`convlens.arithmetic.layer_entries`, the one index engine) in O(nnz);
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

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import product
from typing import Any, Literal

import numpy as np
import sympy as sp

from convlens.arithmetic import (
    LayerSpec,
    count_layer_entries,
    infer_ndim,
    invert_conv,
    layer_entries,
    layer_triples,
)
from convlens.errors import ParameterError, ParameterTypeError
from convlens.index import AxisTriples, ConvEntries, check_budget
from convlens.symbolic.text import as_matrix, latex_matrix

__all__ = [
    "INPUT",
    "MAX_ENTRIES",
    "OUTPUT",
    "WEIGHT",
    "SymbolicConv",
    "numeric_matrix",
    "symbol_grid",
    "symbolic_conv",
    "symbolic_conv_transpose",
    "symbolic_size",
    "symbolic_undo",
]

Layout = Literal["torch", "row"]
INPUT, OUTPUT, WEIGHT = "x^{(l)}", "x^{(l+1)}", "w"

#: The default limit on the sympy entries (C's non-zeros plus the symbols) one symbolic
#: convolution may build: about ten seconds and a hundred MB of sympy objects.
MAX_ENTRIES = 100_000


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


@dataclass(frozen=True)
class SymbolicConv:
    """The symbolic algebra of one convolution (and of its transpose).

    Build it with :func:`symbolic_conv`, :func:`symbolic_conv_transpose` or
    :func:`symbolic_undo`; ``spec`` is the layer, ``size`` the size it is applied to. Index helpers:
    ``x`` (input symbols, shape ``(C_in, *N)``), ``y`` (output symbols ``(C_out, *O)``),
    ``w`` (weight symbols ``(C_out, C_in/groups, *K)``).

    >>> sc = symbolic_conv(3, 2)
    >>> sc.forward()[0][0, 0]
    w_{11}*x^{(l)}_{11} + w_{12}*x^{(l)}_{12} + w_{21}*x^{(l)}_{21} + w_{22}*x^{(l)}_{22}
    """

    spec: LayerSpec
    size: tuple[int, ...]
    index_base: int = 1

    # ------------------------------------------------------------------ geometry
    @cached_property
    def _triples(self) -> tuple[AxisTriples, ...]:
        return layer_triples(self.spec, self.size)

    @property
    def input_size(self) -> tuple[int, ...]:
        """Spatial size of ``x`` (the conv's input; for a transposed conv, its output)."""
        return tuple(t.in_length for t in self._triples)

    @property
    def output_size(self) -> tuple[int, ...]:
        """Spatial size of ``y`` (the conv's output; for a transposed conv, its input)."""
        return tuple(t.out_length for t in self._triples)

    @property
    def in_channels(self) -> int:
        """Channels of ``x``."""
        c = self.spec.out_channels if self.spec.kind == "conv_transpose" else self.spec.in_channels
        return 1 if c is None else c

    @property
    def out_channels(self) -> int:
        """Channels of ``y``."""
        c = self.spec.in_channels if self.spec.kind == "conv_transpose" else self.spec.out_channels
        return 1 if c is None else c

    # ------------------------------------------------------------------ symbols
    @property
    def x(self) -> np.ndarray:
        return symbol_grid(INPUT, (self.in_channels,), self.input_size, self.index_base)

    @property
    def y(self) -> np.ndarray:
        return symbol_grid(OUTPUT, (self.out_channels,), self.output_size, self.index_base)

    @property
    def w(self) -> np.ndarray:
        shape = (self.out_channels, self.in_channels // self.spec.groups)
        return symbol_grid(WEIGHT, shape, self.spec.kernel_size, self.index_base)

    @cached_property
    def pattern(self) -> ConvEntries:
        """The non-zeros of C, ``C[out, inp] = w.ravel()[weight_index]``, from the index engine."""
        return layer_entries(self.spec, self.size)

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of C in torch layout: (len vec(y), len vec(x))."""
        return self.pattern.shape

    @property
    def output_padding(self) -> tuple[int, ...]:
        """``output_padding`` for which ``F.conv_transposeNd`` gives :meth:`transpose`."""
        if self.spec.kind == "conv_transpose":
            return self.spec.output_padding
        return invert_conv(self.spec, self.size).output_padding

    def torch_kwargs(self, transpose: bool = False) -> dict[str, Any]:
        """Keyword arguments of ``F.convNd`` (or ``F.conv_transposeNd``) for this geometry.

        >>> symbolic_conv(5, 3, stride=2).torch_kwargs(transpose=True)["output_padding"]
        (0, 0)
        """
        g = self.spec
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
        e = self.pattern
        ws = self.w.ravel()
        cells = {
            (o, i): ws[k]
            for o, i, k in zip(e.out.tolist(), e.inp.tolist(), e.weight_index.tolist())
        }
        rows, cols = self.shape
        return sp.SparseMatrix(rows, cols, cells)

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
        e = self.pattern
        xs, ws = self.x.ravel(), self.w.ravel()
        terms: list[list[sp.Expr]] = [[] for _ in range(self.shape[0])]
        for o, i, k in zip(e.out.tolist(), e.inp.tolist(), e.weight_index.tolist()):
            terms[o].append(ws[k] * xs[i])
        return sp.Matrix([sp.Add(*t) for t in terms])

    def transpose_vec(self) -> sp.Matrix:
        """``C^T vec(x^{(l+1)})`` as a column over vec(x): the transposed convolution."""
        e = self.pattern
        ys, ws = self.y.ravel(), self.w.ravel()
        terms: list[list[sp.Expr]] = [[] for _ in range(self.shape[1])]
        for o, i, k in zip(e.out.tolist(), e.inp.tolist(), e.weight_index.tolist()):
            terms[i].append(ws[k] * ys[o])
        return sp.Matrix([sp.Add(*t) for t in terms])

    def forward(self) -> list[sp.Matrix]:
        """The conv output, one matrix per output channel (1-D: a 1×n row)."""
        grid = np.array(list(self.forward_vec()), dtype=object).reshape(self.y.shape)
        return [as_matrix(c) for c in grid]

    def transpose(self) -> list[sp.Matrix]:
        """The transposed-conv result ``C^T vec(x^{(l+1)})``, one matrix per input channel."""
        grid = np.array(list(self.transpose_vec()), dtype=object).reshape(self.x.shape)
        return [as_matrix(c) for c in grid]

    # ------------------------------------------------------------------ cross-check
    def forward_by_sliding(self) -> sp.Matrix:
        """vec(y) computed the seed's way: slide the (dilated) kernel over the zero-padded input.

        Independent of the index pattern: windows are slices of the padded symbol grid.
        """
        g = self.spec
        pad = [(0, 0), *g.padding_pairs()]
        padded = np.pad(self.x, pad, mode="constant", constant_values=sp.Integer(0))
        cin_g, cout_g = self.in_channels // g.groups, self.out_channels // g.groups
        out = []
        for oc in range(self.out_channels):
            grp = oc // cout_g
            chans = padded[grp * cin_g : (grp + 1) * cin_g]
            for pos in product(*[range(o) for o in self.output_size]):
                spans = (
                    slice(q * s, q * s + d * (k - 1) + 1, d)
                    for q, s, d, k in zip(pos, g.stride, g.dilation, g.kernel_size)
                )
                index = (slice(None), *spans)
                window = chans[index]
                out.append(sp.Add(*(window * self.w[oc]).ravel()))
        return sp.Matrix(out)

    def C_by_diff(self, layout: Layout = "torch", *, max_entries: int | None = None) -> sp.Matrix:
        """C as the Jacobian d vec(y) / d vec(x) of :meth:`forward_by_sliding` (the seed's route,
        written with ``Matrix.jacobian``, which works on sympy >= 1.13 where ``Matrix.diff(Matrix)``
        returns an array). Slow: O(len(y) × len(x)) derivatives, refused over ``max_entries``
        (default :data:`MAX_ENTRIES`).
        """
        _check_layout(layout)
        rows, cols = self.shape
        check_budget(
            rows * cols,
            MAX_ENTRIES if max_entries is None else max_entries,
            param="max_entries",
            what="a Jacobian",
            received=f"C_by_diff of a C of shape ({rows}, {cols})",
            unit="derivatives",
        )
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


def _check_padding(padding: Any) -> None:
    if isinstance(padding, str):
        raise ParameterTypeError(
            "padding", "an int or a tuple of ints (the symbolic C pads with zeros by number)",
            padding,
        )  # fmt: skip


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
    max_entries: int | None = None,
) -> SymbolicConv:
    """The symbolic algebra of ``ConvNd(in_channels, out_channels, kernel_size, ...)`` on an
    input of ``input_size`` (zero padding). ``ndim`` comes from the first tuple given, else 2.

    Its size is computed first (:func:`symbolic_size`): more than ``max_entries`` (default
    :data:`MAX_ENTRIES`) non-zeros of C plus symbols is refused before any symbol is made.

    >>> symbolic_conv(5, 3, stride=2, padding=1).output_size
    (3, 3)
    """
    _check_padding(padding)
    spec = LayerSpec.conv(
        kernel_size, stride, padding, dilation, groups,
        in_channels=in_channels, out_channels=out_channels,
        ndim=infer_ndim(input_size, kernel_size, stride, padding, dilation),
    )  # fmt: skip
    return _built(spec, input_size, index_base, max_entries)


def symbolic_size(spec: LayerSpec, input_size: Any) -> tuple[tuple[int, int], int, int]:
    """What a :class:`SymbolicConv` of ``spec`` on ``input_size`` holds, computed without
    building it: C's shape (torch layout), its non-zeros and the number of symbols (input,
    output and kernel).

    >>> symbolic_size(LayerSpec.conv(3), 1000)
    ((996004, 1000000), 8964036, 1996013)
    """
    size = spec.check_input_size(input_size)
    out = spec.output_size(size)  # validates the input size before any symbol is made
    if spec.kind == "conv_transpose":
        size, out = out, size
    sc = SymbolicConv(spec, spec.check_input_size(input_size))
    c_in, c_out = sc.in_channels, sc.out_channels
    rows, cols = c_out * math.prod(out), c_in * math.prod(size)
    weights = c_out * (c_in // spec.groups) * math.prod(spec.kernel_size)
    return (rows, cols), count_layer_entries(spec, input_size), rows + cols + weights


def _built(
    spec: LayerSpec, input_size: Any, index_base: int, max_entries: int | None
) -> SymbolicConv:
    size = spec.check_input_size(input_size)
    base = _check_base(index_base)
    (rows, cols), nnz, symbols = symbolic_size(spec, size)
    check_budget(
        nnz + symbols,
        MAX_ENTRIES if max_entries is None else max_entries,
        param="max_entries",
        what="a symbolic convolution",
        received=(
            f"C of shape ({rows}, {cols}) with {nnz:,} non-zeros and {symbols:,} symbols "
            f"(input {'x'.join(map(str, size))})"
        ),
        unit="entries",
    )
    return SymbolicConv(spec, size, base)


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
    max_entries: int | None = None,
) -> SymbolicConv:
    """The symbolic algebra behind ``ConvTransposeNd(in_channels, out_channels, ...)`` applied
    to an input of ``input_size``: the conv it transposes maps the transposed output
    (size ``(i-1)s - 2p + d(k-1) + output_padding + 1``) back to ``input_size``; its
    :meth:`SymbolicConv.transpose` is the transposed convolution (symbols ``x^{(l+1)}`` in).
    ``max_entries`` as for :func:`symbolic_conv`.

    >>> sc = symbolic_conv_transpose(2, 3, stride=2, output_padding=1)
    >>> sc.input_size, sc.output_padding
    ((6, 6), (1, 1))
    """
    _check_padding(padding)
    spec = LayerSpec.conv_transpose(
        kernel_size, stride, padding, output_padding, groups, dilation,
        in_channels=in_channels, out_channels=out_channels,
        ndim=infer_ndim(input_size, kernel_size, stride, padding, output_padding, dilation),
    )  # fmt: skip
    return _built(spec, input_size, index_base, max_entries)


def symbolic_undo(
    sc: SymbolicConv, output_padding: Any, *, max_entries: int | None = None
) -> SymbolicConv:
    """The symbolic algebra of the ``ConvTranspose(..., output_padding)`` applied to the output
    of the convolution ``sc`` (same kernel, stride, padding, dilation, groups; its input
    channels are the conv's output channels), whose own conv input grows to
    ``(o-1)s - 2p + d(k-1) + output_padding + 1``; ``max_entries`` as for :func:`symbolic_conv`.

    >>> symbolic_undo(symbolic_conv(5, 3, stride=2), 1).input_size
    (6, 6)
    """
    if not isinstance(sc, SymbolicConv) or sc.spec.kind != "conv":
        raise ParameterTypeError("sc", "a SymbolicConv of a convolution", sc)
    c = sc.spec
    spec = LayerSpec.conv_transpose(
        c.kernel_size, c.stride, c.padding, output_padding, c.groups, c.dilation,
        in_channels=sc.out_channels, out_channels=sc.in_channels, ndim=c.ndim,
    )  # fmt: skip
    return _built(spec, sc.output_size, sc.index_base, max_entries)


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
