"""Convolution as a matrix: ``vec(y) = C vec(x) + b``.

A convolution is linear in its input, so for one sample it is a matrix ``C`` (the Jacobian of the
convolution with respect to its input) plus the bias as an affine offset ``b``. :func:`conv_matrix`
builds ``C`` straight from index arithmetic: every non-zero ``C[row, col]`` is one kernel weight,
``row`` an output pixel ``(c_out, *o)`` and ``col`` the input pixel ``(c_in, *i)`` with
``i = o * stride + k * dilation - padding``. Transposed convolution is multiplication by ``C^T``
(Dumoulin & Visin, *A guide to convolution arithmetic for deep learning*, arXiv:1603.07285, §4).

``vec()`` flattens one sample over ``(channel, *spatial)`` in C order (``x.reshape(-1)`` of a
``(C, *spatial)`` tensor). ``layout="torch"`` gives ``C`` of shape ``(out, in)`` with
``vec(y) = C @ vec(x)``; ``layout="row"`` gives its transpose, ``(in, out)`` with
``vec(y) = vec(x) @ C``.

The weight-independent index pattern (which weight lands where) is computed once per geometry,
vectorised and in O(nnz), and cached; a new weight then costs one gather.

>>> import torch
>>> w = torch.arange(1.0, 4.0).view(1, 1, 3)
>>> conv_matrix(w, 4, format="dense")
tensor([[1., 2., 3., 0.],
        [0., 1., 2., 3.]])
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn as nn

from convlens._utils import check_int
from convlens.arithmetic import LayerSpec, count_layer_entries, layer_triples
from convlens.errors import ParameterError, ParameterTypeError, UnsupportedModuleError
from convlens.index import (
    AxisTriples,
    check_budget,
    default_max_bytes,
    exclusive_cumsum,
    flat_index,
    row_product,
)

__all__ = [
    "FORMATS",
    "LAYOUTS",
    "Geometry",
    "assemble",
    "clear_pattern_cache",
    "conv_bias_vector",
    "conv_geometry",
    "conv_matrix",
    "conv_matrix_nbytes",
    "conv_transpose_geometry",
    "nnz_upper_bound",
    "nnz_zero_padding",
]

Layout = Literal["torch", "row"]
Format = Literal["csr", "coo", "dense"]
LAYOUTS: tuple[str, ...] = ("torch", "row")
FORMATS: tuple[str, ...] = ("csr", "coo", "dense")
_INT32_MAX = 2**31 - 1

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TCONV_TYPES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_SUPPORTED = [t.__name__ for t in (*_CONV_TYPES, *_TCONV_TYPES)]


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Geometry:
    """A conv or transposed-conv :class:`LayerSpec` (channels known) on one input size.

    A thin view for the matrix engine, validated by the spec: the ``size_*``/channel
    properties describe the *convolution* whose ``C`` is built (for a transposed conv, its
    adjoint: ``size_in`` is the transposed conv's output, ``size_out`` its input, so a
    transposed conv with ``output_padding`` is the transpose of the conv restricted to its
    first ``size_out`` output positions).
    """

    spec: LayerSpec
    input_size: tuple[int, ...]

    @property
    def transposed(self) -> bool:
        """Whether the spec is a transposed convolution (its matrix is ``C^T``)."""
        return self.spec.kind == "conv_transpose"

    @functools.cached_property
    def triples(self) -> tuple[AxisTriples, ...]:
        """Per axis, the (output, tap, input) triples of the convolution."""
        return layer_triples(self.spec, self.input_size)

    def triples_within(self, max_bytes: int | None) -> tuple[AxisTriples, ...]:
        """:attr:`triples`, built (the first time) under the limit ``max_bytes``."""
        if "triples" not in self.__dict__:
            self.__dict__["triples"] = layer_triples(
                self.spec, self.input_size, max_bytes=max_bytes
            )
        return self.triples

    @functools.cached_property
    def _sizes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(the conv's input size, its output size), from the spec's arithmetic alone (no
        triples are built, so an absurd size costs nothing until it is refused)."""
        out = self.spec.output_size(self.input_size)
        return (out, self.input_size) if self.transposed else (self.input_size, out)

    @property
    def size_in(self) -> tuple[int, ...]:
        return self._sizes[0]

    @property
    def size_out(self) -> tuple[int, ...]:
        return self._sizes[1]

    @property
    def kernel(self) -> tuple[int, ...]:
        return self.spec.kernel_size

    @property
    def stride(self) -> tuple[int, ...]:
        return self.spec.stride

    @property
    def dilation(self) -> tuple[int, ...]:
        return self.spec.dilation

    @property
    def pad_lo(self) -> tuple[int, ...]:
        return tuple(lo for lo, _ in self.spec.padding_pairs())

    @property
    def padding_mode(self) -> str:
        return self.spec.padding_mode

    @property
    def groups(self) -> int:
        return self.spec.groups

    @property
    def in_channels(self) -> int:
        c = self.spec.out_channels if self.transposed else self.spec.in_channels
        assert c is not None  # conv_geometry and conv_transpose_geometry set the channels
        return c

    @property
    def out_channels(self) -> int:
        c = self.spec.in_channels if self.transposed else self.spec.out_channels
        assert c is not None
        return c

    @property
    def shape(self) -> tuple[int, int]:
        """``(out, in)``: the shape of ``C`` in ``layout='torch'``."""
        return (
            self.out_channels * math.prod(self.size_out),
            self.in_channels * math.prod(self.size_in),
        )


def _of(spec: LayerSpec, input_size: Any) -> Geometry:
    return _geometry(spec, spec.check_input_size(input_size))


@functools.lru_cache(maxsize=256)
def _geometry(spec: LayerSpec, size: tuple[int, ...]) -> Geometry:
    geom = Geometry(spec, size)
    geom.size_in  # noqa: B018 - validates the input size (spec.output_size), builds nothing
    return geom


def _check_weight_shape(
    weight_shape: tuple[int, ...], groups: Any, lead: str, per_group: str
) -> tuple[int, int, int]:
    """Check a (transposed) conv weight shape ``(lead, per_group/groups, *kernel)`` against
    ``groups``; return the spatial dims and the two channel counts as stored."""
    if len(weight_shape) not in (3, 4, 5):
        raise ParameterError(
            "weight",
            f"a tensor of shape ({lead}, {per_group}/groups, *kernel) with 1-3 spatial dims",
            tuple(weight_shape),
        )
    c_lead, c_group = int(weight_shape[0]), int(weight_shape[1])
    check_int(groups, "groups")
    if c_lead % groups:
        raise ParameterError(
            "groups",
            f"a divisor of the weight's {lead}={c_lead}",
            groups,
            hint=f"weight shape {tuple(weight_shape)}",
        )
    if c_lead < 1 or c_group < 1:
        raise ParameterError("weight", "at least one input and one output channel", weight_shape)
    return len(weight_shape) - 2, c_lead, c_group


def conv_geometry(
    weight_shape: tuple[int, ...],
    input_size: Any,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> Geometry:
    """A convolution's arguments, validated by :class:`LayerSpec`, as a :class:`Geometry`.

    >>> conv_geometry((8, 3, 3, 3), 32, padding=1).size_out
    (32, 32)
    """
    n, c_out, c_in_g = _check_weight_shape(weight_shape, groups, "C_out", "C_in")
    spec = LayerSpec.conv(
        tuple(weight_shape[2:]), stride, padding, dilation, groups, padding_mode,
        in_channels=c_in_g * groups, out_channels=c_out, ndim=n,
    )  # fmt: skip
    return _of(spec, input_size)


def conv_transpose_geometry(
    weight_shape: tuple[int, ...],
    input_size: Any,
    *,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    groups: int = 1,
    dilation: Any = 1,
) -> Geometry:
    """Geometry of the convolution whose transpose is this transposed convolution.

    ``weight_shape`` is the transposed conv's ``(C_in, C_out/groups, *k)``, which is the matching
    convolution's ``(C_out, C_in/groups, *k)``; ``input_size`` is the transposed conv's input
    (the conv's output) and the conv's input size is the transposed conv's output size.

    >>> g = conv_transpose_geometry((4, 2, 3, 3), 5, stride=2, padding=1, output_padding=1)
    >>> g.size_in, g.size_out, g.in_channels, g.out_channels
    ((10, 10), (5, 5), 2, 4)
    """
    n, c_in, c_out_g = _check_weight_shape(weight_shape, groups, "C_in", "C_out")
    spec = LayerSpec.conv_transpose(
        tuple(weight_shape[2:]), stride, padding, output_padding, groups, dilation,
        in_channels=c_in, out_channels=c_out_g * groups, ndim=n,
    )  # fmt: skip
    return _of(spec, input_size)


# --------------------------------------------------------------------------- index pattern


# The per-geometry index arithmetic runs in NumPy: it is many small array operations, which are
# cheap single-threaded and slow when a busy machine makes torch's intra-op threads wait.
_I64 = np.int64


def _axis(t: AxisTriples, transposed: bool) -> dict[str, np.ndarray]:
    """One spatial axis: its (output, tap, input) triples grouped by row of ``C`` (or ``C^T``).

    Rows are output positions (``transposed=False``) or input positions (``True``). Padding
    modes other than zeros map several kernel taps onto one ``(row, col)``; ``u`` numbers the
    distinct ``(row, col)`` pairs, which are sorted by row, then col.
    """
    row, col = (t.inp, t.out) if transposed else (t.out, t.inp)
    n_rows, n_cols = (t.in_length, t.out_length) if transposed else (t.out_length, t.in_length)
    order = np.argsort((row * n_cols + col) * t.kernel + t.tap, kind="stable")
    row, col, kk = row[order], col[order], t.tap[order]
    uniq, inverse = np.unique(row * n_cols + col, return_inverse=True)
    return {
        "row": row,
        "k": kk,
        "u": inverse.reshape(-1).astype(_I64),
        "cnt": np.bincount(row, minlength=n_rows).astype(_I64),
        "urow": uniq // n_cols,
        "ucol": uniq % n_cols,
        "ucnt": np.bincount(uniq // n_cols, minlength=n_rows).astype(_I64),
    }


@dataclass(frozen=True)
class _Block:
    """Index pattern of the rows of one row-channel (weight-independent, shared by all)."""

    crow: torch.Tensor  # (R_sp + 1,) int64, offsets inside the block
    col: torch.Tensor  # (nnz_block,) int64, columns for a row-channel of group 0
    kidx: torch.Tensor  # (raw_block,) int64 into the (row-channel, C_c * K) weight
    dest: torch.Tensor | None  # (raw_block,) int64 into the block, None when raw == unique


@functools.lru_cache(maxsize=64)
def _block(geom: Geometry, transposed: bool) -> _Block:
    axes = [_axis(t, transposed) for t in geom.triples]
    cols_sp = geom.size_out if transposed else geom.size_in
    c_c = (geom.out_channels if transposed else geom.in_channels) // geom.groups
    n_cols_sp, n_k = math.prod(cols_sp), math.prod(geom.kernel)
    ucnt, urows, ucomp = row_product([a["ucnt"] for a in axes])
    col_sp = flat_index([a["ucol"][c] for a, c in zip(axes, ucomp)], cols_sp)
    uptr = exclusive_cumsum(ucnt)
    has_dups = any(a["u"].size != a["urow"].size for a in axes)
    if has_dups:
        rcnt, rrows, rcomp = row_product([a["cnt"] for a in axes])
        # position of each raw entry's (row, col) among the unique entries of its row
        local = np.zeros_like(rrows)
        for j, (a, c) in enumerate(zip(axes, rcomp)):
            uptr_j = exclusive_cumsum(a["ucnt"])
            radix = np.ones_like(rrows)
            for b, cb in zip(axes[j + 1 :], rcomp[j + 1 :]):
                radix = radix * b["ucnt"][b["row"][cb]]
            local += (a["u"][c] - uptr_j[a["row"][c]]) * radix
    else:
        rcnt, rrows, rcomp, local = ucnt, urows, ucomp, np.zeros(0, dtype=_I64)
    k_sp = flat_index([a["k"][c] for a, c in zip(axes, rcomp)], geom.kernel)

    # one row-channel's block: rows r, then column channels cc, then the row's entries
    def expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        blk = counts * c_c
        rows = np.repeat(np.arange(counts.size, dtype=_I64), blk)
        t = np.arange(rows.size, dtype=_I64) - exclusive_cumsum(blk)[rows]
        per = counts[rows]
        return rows, t // per, t % per

    rows, cc, el = expand(ucnt)
    col = cc * n_cols_sp + col_sp[uptr[rows] + el]
    rows_r, cc_r, el_r = expand(rcnt)
    rptr = exclusive_cumsum(rcnt)
    kidx = cc_r * n_k + k_sp[rptr[rows_r] + el_r]
    dest = None
    if has_dups:
        dest = c_c * uptr[rows_r] + cc_r * ucnt[rows_r] + local[rptr[rows_r] + el_r]
    return _Block(
        crow=torch.from_numpy(c_c * uptr),
        col=torch.from_numpy(col),
        kidx=torch.from_numpy(kidx),
        dest=None if dest is None else torch.from_numpy(dest),
    )


@dataclass(frozen=True)
class _Pattern:
    crow: torch.Tensor
    col: torch.Tensor
    block: _Block
    shape: tuple[int, int]


@functools.lru_cache(maxsize=4)
def _pattern(geom: Geometry, transposed: bool, device: torch.device) -> _Pattern:
    """The full CSR index pattern of ``C`` (``transposed=False``) or ``C^T``; int32 if it fits."""
    block = _block(geom, transposed)
    out, inp = geom.shape
    shape = (inp, out) if transposed else (out, inp)
    row_ch = geom.out_channels if not transposed else geom.in_channels
    col_ch = geom.in_channels if not transposed else geom.out_channels
    per_group_rows, per_group_cols = row_ch // geom.groups, col_ch // geom.groups
    n_cols_sp = shape[1] // col_ch
    nnz_block = block.col.numel()
    nnz = row_ch * nnz_block
    itype = torch.int32 if max(nnz, shape[0], shape[1]) <= _INT32_MAX else torch.int64
    ch = np.arange(row_ch, dtype=_I64)
    crow_np = np.empty(row_ch * (block.crow.numel() - 1) + 1, dtype=_I64)
    crow_np[:-1] = (ch[:, None] * nnz_block + block.crow.numpy()[None, :-1]).reshape(-1)
    crow_np[-1] = nnz
    crow = torch.from_numpy(crow_np).to(itype)
    offsets = torch.from_numpy((ch // per_group_rows) * (per_group_cols * n_cols_sp)).to(itype)
    col = block.col.to(itype)[None, :] + offsets[:, None]  # built in the index dtype
    return _Pattern(
        crow=crow.to(device).reshape(-1),
        col=col.reshape(-1).to(device),
        block=_Block(
            crow=block.crow,
            col=block.col,
            kidx=block.kidx.to(device),
            dest=None if block.dest is None else block.dest.to(device),
        ),
        shape=shape,
    )


def clear_pattern_cache() -> None:
    """Forget the cached index patterns.

    The full pattern of the last four geometries (per device) stays cached, shared with the
    matrices built from it; for a big layer that is the size of the CSR indices (345 MB of
    int32 columns for VGG16's first conv at 224x224). This frees it once those matrices are gone.
    """
    _pattern.cache_clear()
    _block.cache_clear()
    _geometry.cache_clear()


# --------------------------------------------------------------------------- assembly


def _values(
    weight: torch.Tensor, geom: Geometry, pattern: _Pattern, transposed: bool
) -> torch.Tensor:
    """Gather the kernel weights into the pattern's order (summing taps that coincide)."""
    w = weight.detach()
    g, n_k = geom.groups, math.prod(geom.kernel)
    if transposed:  # rows are input channels: (G, C_in/G, C_out/G * K)
        c_out_g, c_in_g = geom.out_channels // g, geom.in_channels // g
        w2 = w.reshape(g, c_out_g, c_in_g, n_k).transpose(1, 2).reshape(geom.in_channels, -1)
    else:
        w2 = w.reshape(geom.out_channels, -1)
    vals = w2.index_select(1, pattern.block.kidx)
    if pattern.block.dest is not None:
        summed = vals.new_zeros(vals.shape[0], pattern.block.col.numel())
        vals = summed.index_add_(1, pattern.block.dest, vals)
    return vals.reshape(-1)


def conv_matrix_nbytes(
    geom: Geometry, dtype: torch.dtype = torch.float32, format: str = "csr"
) -> int:
    """An upper estimate of the bytes that building ``C`` of ``geom`` allocates, from the index
    engine's closed-form counts (nothing is built): the values and indices of
    :func:`nnz_upper_bound` non-zeros, the row offsets, the per-channel index pattern, and the
    dense array for ``format="dense"``.

    >>> conv_matrix_nbytes(conv_geometry((64, 3, 3, 3), 224, padding=1)) // 2**20  # MiB
    776
    """
    _check_choice(format, "format", FORMATS)
    itemsize = torch.empty((), dtype=dtype).element_size()
    rows, cols = geom.shape
    nnz = nnz_upper_bound(geom)
    index = 4 if max(nnz, rows, cols) <= _INT32_MAX else 8
    row_ch = geom.out_channels
    total = nnz * (itemsize + index) + (rows + 1) * (index + 8)
    total += (nnz // row_ch) * 64  # the per-channel pattern and its NumPy temporaries
    total += sum(48 * m * k for m, k in zip(geom.size_out, geom.kernel))  # the axis triples
    if format == "coo":
        total += nnz * 24  # int64 row and column indices, and the row expansion
    if format == "dense":
        total += rows * cols * itemsize
    return total


def _check_size(
    geom: Geometry, dtype: torch.dtype, format: str, transposed: bool, max_bytes: Any
) -> int:
    limit = default_max_bytes() if max_bytes is None else max_bytes
    rows, cols = geom.shape[::-1] if transposed else geom.shape
    return check_budget(
        conv_matrix_nbytes(geom, dtype, format),
        limit,
        param="max_bytes",
        what="a conv matrix",
        received=(
            f"C{'^T' if transposed else ''} of shape ({rows}, {cols}) with up to "
            f"{nnz_upper_bound(geom):,} non-zeros ({geom.in_channels} -> {geom.out_channels} "
            f"channels, {_show(geom.size_in)} -> {_show(geom.size_out)}; "
            f"{str(dtype).removeprefix('torch.')}, {format})"
        ),
    )


def _show(size: tuple[int, ...]) -> str:
    return "x".join(map(str, size))


def assemble(
    weight: torch.Tensor,
    geom: Geometry,
    *,
    transposed: bool = False,
    format: str = "csr",
    max_bytes: int | None = None,
) -> torch.Tensor:
    """``C`` (or ``C^T`` with ``transposed``) of a validated :class:`Geometry`, from ``weight``.

    The engine under :func:`conv_matrix` and the matmul route of transposed convolution.
    Refuses (before allocating) a matrix whose :func:`conv_matrix_nbytes` exceeds
    ``max_bytes`` (default :func:`convlens.index.default_max_bytes`).

    >>> import torch
    >>> g = conv_geometry((1, 1, 2), 3)
    >>> assemble(torch.tensor([[[1.0, 2.0]]]), g, transposed=True, format="dense")
    tensor([[1., 0.],
            [2., 1.],
            [0., 2.]])
    """
    _check_choice(format, "format", FORMATS)
    limit = _check_size(geom, weight.dtype, format, transposed, max_bytes)
    geom.triples_within(limit)
    pattern = _pattern(geom, transposed, weight.device)
    values = _values(weight, geom, pattern, transposed)
    if format == "coo":
        counts = pattern.crow[1:].to(torch.int64) - pattern.crow[:-1].to(torch.int64)
        rows = torch.repeat_interleave(torch.arange(pattern.shape[0], device=weight.device), counts)
        indices = torch.stack([rows, pattern.col.to(torch.int64)])
        return torch.sparse_coo_tensor(
            indices, values, pattern.shape, is_coalesced=True, check_invariants=False
        )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        csr = torch.sparse_csr_tensor(
            pattern.crow, pattern.col, values, pattern.shape, check_invariants=False
        )
    return csr.to_dense() if format == "dense" else csr


def _check_choice(value: Any, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ParameterError(name, f"one of {', '.join(map(repr, choices))}", value)


_GEOMETRY_DEFAULTS = {
    "stride": 1,
    "padding": 0,
    "dilation": 1,
    "groups": 1,
    "padding_mode": "zeros",
}


def _resolve(
    weight_or_module: Any, input_size: Any, geometry: dict[str, Any]
) -> tuple[torch.Tensor, Geometry, bool, torch.Tensor | None]:
    """(weight, conv geometry, whether the operator is the conv's transpose, bias)."""
    if isinstance(weight_or_module, nn.Module):
        module = weight_or_module
        if not isinstance(module, (*_CONV_TYPES, *_TCONV_TYPES)):
            raise UnsupportedModuleError("module", type(module).__name__, _SUPPORTED, "conv_matrix")
        for name, default in _GEOMETRY_DEFAULTS.items():
            if geometry[name] != default:
                raise ParameterError(
                    name, f"the default {default!r} when a module is given (it has its own)",
                    geometry[name],
                )  # fmt: skip
        geom = _of(LayerSpec.from_module(module), input_size)
        m: Any = module
        return m.weight, geom, geom.transposed, m.bias
    if not isinstance(weight_or_module, torch.Tensor):
        raise ParameterTypeError(
            "weight", "a torch.Tensor or an nn.Conv/ConvTranspose module", weight_or_module
        )
    geom = conv_geometry(tuple(weight_or_module.shape), input_size, **geometry)
    return weight_or_module, geom, False, None


def conv_matrix(
    weight_or_module: torch.Tensor | nn.Module,
    input_size: int | tuple[int, ...],
    *,
    stride: int | tuple[int, ...] = 1,
    padding: int | tuple[int, ...] | str = 0,
    dilation: int | tuple[int, ...] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    layout: Layout = "torch",
    format: Format = "csr",
    max_bytes: int | None = None,
) -> torch.Tensor:
    """The matrix ``C`` of a convolution: ``vec(conv(x)) = C @ vec(x) + b`` for one sample.

    ``C`` is the *linear part* only; the bias is the affine offset ``b``, given separately by
    :func:`conv_bias_vector`. ``weight_or_module`` is a weight ``(C_out, C_in/groups, *k)`` with
    the geometry as keywords (exactly as ``F.convNd`` takes it: 1-3 spatial dims, groups,
    dilation, ints / ``'same'`` / ``'valid'`` padding, any ``padding_mode``), or an
    ``nn.Conv1/2/3d`` (its own geometry) or an ``nn.ConvTranspose1/2/3d``, whose matrix is the
    transpose of the matching convolution's, ``output_padding`` included. ``input_size`` is the
    spatial size of one input sample (for a transposed conv, the size of *its* input).

    Non-zero padding modes are linear too, ``C = C_valid · P`` with ``P`` the 0/1 matrix that
    pads; the pattern maps padded positions back into the input, so coinciding taps sum.

    ``vec()`` flattens ``(channel, *spatial)`` in C order. ``layout="torch"``: shape
    ``(out, in)``, ``vec(y) = C @ vec(x)``; ``layout="row"``: ``(in, out)``, ``vec(x) @ C``.
    ``format`` is ``"csr"`` (int32 indices when they fit), ``"coo"`` or ``"dense"``. The result
    has the weight's device and dtype and does not track gradients. See Dumoulin & Visin,
    arXiv:1603.07285, §2 and §4.

    Before anything is built, the bytes ``C`` needs are estimated from the index engine's
    counts (:func:`conv_matrix_nbytes`); over ``max_bytes`` (default: 2 GiB, or half the
    available memory if less) the call is refused with the sizes and the estimate.

    >>> import torch, torch.nn.functional as F
    >>> w, x = torch.randn(4, 3, 3, 3), torch.randn(3, 6, 6)
    >>> C = conv_matrix(w, (6, 6), stride=2, padding=1)
    >>> C.shape, torch.allclose(C @ x.reshape(-1), F.conv2d(x, w, stride=2, padding=1).reshape(-1), atol=1e-5)
    (torch.Size([36, 108]), True)
    """
    _check_choice(layout, "layout", LAYOUTS)
    _check_choice(format, "format", FORMATS)
    geometry = {
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
        "padding_mode": padding_mode,
    }
    weight, geom, is_transpose, _ = _resolve(weight_or_module, input_size, geometry)
    # layout="torch" of a conv is C; of a transposed conv, C^T; "row" flips either.
    return assemble(
        weight,
        geom,
        transposed=is_transpose != (layout == "row"),
        format=format,
        max_bytes=max_bytes,
    )


def conv_bias_vector(
    weight_or_module: torch.Tensor | nn.Module,
    input_size: int | tuple[int, ...],
    *,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, ...] = 1,
    padding: int | tuple[int, ...] | str = 0,
    dilation: int | tuple[int, ...] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """The affine offset ``b`` with ``vec(y) = C @ vec(x) + b``: each channel's bias, repeated.

    Takes the same arguments as :func:`conv_matrix`, plus ``bias`` for a weight (a module uses
    its own). Without a bias the offset is zero.

    >>> import torch
    >>> conv_bias_vector(torch.zeros(2, 1, 3), 4, bias=torch.tensor([1.0, -1.0]))
    tensor([ 1.,  1., -1., -1.])
    """
    geometry = {
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
        "padding_mode": padding_mode,
    }
    weight, geom, is_transpose, module_bias = _resolve(weight_or_module, input_size, geometry)
    if isinstance(weight_or_module, nn.Module):
        if bias is not None:
            raise ParameterError("bias", "None when a module is given (it has its own)", bias)
        bias = module_bias
    channels, size = (
        (geom.in_channels, geom.size_in) if is_transpose else (geom.out_channels, geom.size_out)
    )
    if bias is None:
        return weight.new_zeros(channels * math.prod(size)).detach()
    if not isinstance(bias, torch.Tensor):
        raise ParameterTypeError("bias", "a torch.Tensor of shape (C_out,)", bias)
    if tuple(bias.shape) != (channels,):
        raise ParameterError("bias", f"a tensor of shape ({channels},)", tuple(bias.shape))
    return bias.detach().repeat_interleave(math.prod(size))


def nnz_zero_padding(geom: Geometry) -> int:
    """The number of non-zeros of ``C`` for zero padding (the same layer with
    ``padding_mode='zeros'``), from the index engine without building ``C``.

    ``C_out · (C_in/groups) · ∏_j #{(o, k): 0 ≤ o·s + k·d − p < i}`` per spatial axis ``j``,
    counted in closed form (:func:`convlens.arithmetic.count_layer_entries`).

    >>> nnz_zero_padding(conv_geometry((64, 3, 3, 3), 224, padding=1))
    86188800
    """
    return _nnz(geom, "zeros")


def nnz_upper_bound(geom: Geometry) -> int:
    """At most this many non-zeros in ``C`` (exact for zero padding; with other padding modes
    the taps that coincide near the borders make fewer), in closed form, building nothing.

    >>> nnz_upper_bound(conv_geometry((1, 1, 3), 5, padding=1, padding_mode="reflect"))
    15
    """
    return _nnz(geom, geom.padding_mode)


def _nnz(geom: Geometry, mode: str) -> int:
    spec = geom.spec
    if spec.kind == "conv" and spec.padding_mode != mode:
        spec = spec.replace(padding_mode=mode)
    return count_layer_entries(spec, geom.input_size)
