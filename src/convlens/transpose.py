"""Transposed convolution, four ways, each equal to ``F.conv_transposeNd``.

A transposed convolution is multiplication by ``C^T``, the transpose of the matrix of the
matching convolution (the one whose weight has the same shape and whose input has the transposed
conv's output size), i.e. the gradient of that convolution with respect to its input. The four
routes here compute it from four pictures (Dumoulin & Visin, *A guide to convolution arithmetic
for deep learning*, arXiv:1603.07285, §4; Zeiler et al., *Deconvolutional networks*, CVPR 2010):

1. :func:`conv_transpose_matmul`: ``vec(y) = C^T vec(x)`` with the sparse matrix of
   :func:`convlens.conv_matrix`;
2. :func:`conv_transpose_scatter`: every input pixel adds its kernel-weighted value into each
   output pixel it reaches (``index_add_``; the output pixel -> input pixel picture read backwards);
3. :func:`conv_transpose_fractional`: insert ``stride - 1`` zeros between input pixels, pad by
   ``dilation*(k-1) - padding`` (plus ``output_padding`` at the end; negative amounts crop), and
   run an ordinary convolution with the spatially flipped, in/out-swapped kernel;
4. :func:`conv_transpose_autograd`: the input-gradient of ``F.convNd``.

All four take exactly the arguments of ``F.conv_transpose1d/2d/3d``; the number of spatial
dimensions follows from ``weight.dim()``, and the input may be batched ``(N, C, *spatial)`` or
unbatched ``(C, *spatial)``. Input, weight and bias must share one dtype and one device; the
dtypes are the floating-point and complex ones (:data:`DTYPES`; integer and bool tensors are
refused by every route, as autograd cannot differentiate them). The matmul route computes
float16 and bfloat16 in float32 (sparse matmul has no half-precision kernel on the CPU) and
rounds the result once.

>>> import torch, torch.nn.functional as F
>>> x, w = torch.randn(1, 2, 5, 5), torch.randn(2, 3, 3, 3)
>>> ref = F.conv_transpose2d(x, w, stride=2, padding=1)
>>> all(torch.allclose(f(x, w, stride=2, padding=1), ref, atol=1e-5) for f in ROUTES.values())
True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from convlens._utils import as_tuple, check_int
from convlens.arithmetic import LayerSpec
from convlens.errors import ParameterError, ParameterTypeError
from convlens.index import check_budget, default_max_bytes, exclusive_cumsum, grid_triples
from convlens.matrix import Geometry, assemble, conv_matrix_nbytes, conv_transpose_geometry

__all__ = [
    "DTYPES",
    "ROUTES",
    "RouteCheck",
    "conv_transpose_autograd",
    "conv_transpose_fractional",
    "conv_transpose_matmul",
    "conv_transpose_scatter",
    "verify_nbytes",
    "verify_routes",
]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}

IntOrTuple = int | tuple[int, ...]

#: The dtypes every route accepts (the same for input, weight and bias).
DTYPES: tuple[torch.dtype, ...] = (
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.complex64,
    torch.complex128,
)
_HALF = (torch.float16, torch.bfloat16)
_DTYPE_NAMES = ", ".join(str(d).removeprefix("torch.") for d in DTYPES)


def _check_tensor(value: Any, name: str, weight: torch.Tensor | None) -> None:
    """One dtype and one device for input, weight and bias (``weight`` None: the weight)."""
    dtype = str(value.dtype).removeprefix("torch.")
    if value.dtype not in DTYPES:
        raise ParameterTypeError(
            name, f"a floating-point or complex tensor ({_DTYPE_NAMES})", value,
            hint=f"{name} has dtype {dtype}",
        )  # fmt: skip
    if weight is not None and value.dtype != weight.dtype:
        raise ParameterTypeError(
            name, f"a tensor of the weight's dtype {str(weight.dtype).removeprefix('torch.')}",
            value, hint=f"{name} has dtype {dtype}",
        )  # fmt: skip
    if weight is not None and value.device != weight.device:
        raise ParameterTypeError(
            name, f"a tensor on the weight's device {weight.device}", value,
            hint=f"{name} is on device {value.device}",
        )  # fmt: skip
    if value.device.type == "meta":
        raise ParameterTypeError(
            name, "a tensor with values (not on the meta device)", value,
            hint=f"{name} is on device {value.device}",
        )  # fmt: skip


@dataclass(frozen=True)
class _Call:
    """A validated transposed-convolution call, input made batched."""

    x: torch.Tensor  # (N, C_in, *i)
    weight: torch.Tensor  # (C_in, C_out/groups, *k)
    bias: torch.Tensor | None
    geom: Geometry  # of the matching convolution (input: our output, output: our input)
    batched: bool

    @property
    def output_padding(self) -> tuple[int, ...]:
        return self.geom.spec.output_padding

    @property
    def ndim(self) -> int:
        return self.weight.dim() - 2

    def finish(self, y: torch.Tensor, *, add_bias: bool = True) -> torch.Tensor:
        if add_bias and self.bias is not None:
            y = y + self.bias.reshape(1, -1, *([1] * self.ndim))
        return y if self.batched else y.squeeze(0)


def _prepare(
    input: Any,
    weight: Any,
    bias: Any,
    stride: Any,
    padding: Any,
    output_padding: Any,
    groups: Any,
    dilation: Any,
) -> _Call:
    if not isinstance(weight, torch.Tensor):
        raise ParameterTypeError("weight", "a torch.Tensor", weight)
    if not isinstance(input, torch.Tensor):
        raise ParameterTypeError("input", "a torch.Tensor", input)
    if weight.dim() not in (3, 4, 5):
        raise ParameterError(
            "weight", "a tensor (C_in, C_out/groups, *kernel) with 1-3 spatial dims",
            tuple(weight.shape),
        )  # fmt: skip
    n = weight.dim() - 2
    if input.dim() not in (n + 1, n + 2):
        raise ParameterError(
            "input", f"(N, C, *{n} spatial) or (C, *{n} spatial) for a {n}-D weight",
            tuple(input.shape),
        )  # fmt: skip
    batched = input.dim() == n + 2
    x = input if batched else input.unsqueeze(0)
    if x.shape[1] != weight.shape[0]:
        raise ParameterError(
            "input", f"{weight.shape[0]} channels (the weight's dim 0)", x.shape[1],
            hint=f"input shape {tuple(input.shape)}, weight shape {tuple(weight.shape)}",
        )  # fmt: skip
    _check_tensor(weight, "weight", None)
    _check_tensor(input, "input", weight)
    geom = conv_transpose_geometry(
        tuple(weight.shape), tuple(x.shape[2:]), stride=stride, padding=padding,
        output_padding=output_padding, groups=groups, dilation=dilation,
    )  # fmt: skip
    c_out = geom.in_channels
    if bias is not None:
        if not isinstance(bias, torch.Tensor):
            raise ParameterTypeError("bias", "a torch.Tensor or None", bias)
        _check_tensor(bias, "bias", weight)
        if tuple(bias.shape) != (c_out,):
            raise ParameterError("bias", f"a tensor of shape ({c_out},)", tuple(bias.shape))
    return _Call(x, weight, bias, geom, batched)


def conv_transpose_matmul(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    *,
    max_bytes: int | None = None,
) -> torch.Tensor:
    """Transposed convolution as ``vec(y) = C^T vec(x)``, with the sparse conv matrix.

    ``C`` is the matrix of the matching convolution restricted to the input's positions (the
    ``output_padding`` rows are inputs of ``C`` that no output reaches). Gradients flow to
    ``input`` and ``bias``, not to ``weight`` (the matrix is built from its values).
    float16 and bfloat16 are computed in float32 and rounded once. A ``C`` estimated over
    ``max_bytes`` (default 2 GiB, or half the available memory) is refused before it is built.
    Dumoulin & Visin, arXiv:1603.07285, §4.1.

    >>> import torch, torch.nn.functional as F
    >>> x, w = torch.randn(2, 4, 4), torch.randn(2, 1, 3, 3)
    >>> torch.allclose(conv_transpose_matmul(x, w, stride=2), F.conv_transpose2d(x, w, stride=2), atol=1e-5)
    True
    """
    call = _prepare(input, weight, bias, stride, padding, output_padding, groups, dilation)
    dtype = call.x.dtype
    work = torch.float32 if dtype in _HALF else dtype
    # (C_out * out, C_in * in)
    c_t = assemble(call.weight.to(work), call.geom, transposed=True, max_bytes=max_bytes)
    n = call.x.shape[0]
    y = (c_t @ call.x.to(work).reshape(n, c_t.shape[1]).t()).t()
    y = y.reshape(n, call.geom.in_channels, *call.geom.size_in)
    if call.bias is not None:
        y = y + call.bias.to(work).reshape(1, -1, *([1] * call.ndim))
    return call.finish(y.to(dtype), add_bias=False)


@functools.lru_cache(maxsize=64)
def _scatter_index(
    geom: Geometry, max_bytes: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Where each (kernel tap, input pixel) pair lands, grouped by tap, from the index engine.

    Returns ``src`` (``tap * P + pixel``, P input pixels), ``tgt`` (the flat output pixel) for the
    pairs that land inside the output, and ``bounds`` (where each tap's pairs start and end).
    The conv's (output, tap, input) triples read backwards: the transposed conv's input pixel
    is the conv's output, the pixel it reaches the conv's input. Built under ``max_bytes``.
    """
    grid = grid_triples(geom.triples_within(max_bytes), max_bytes=max_bytes)
    n_in, n_k = math.prod(grid.out_shape), math.prod(grid.kernel_shape)
    order = np.argsort(grid.tap, kind="stable")  # by tap, then input pixel
    tap = grid.tap[order]
    src = tap * n_in + grid.out[order]
    tgt = grid.inp[order]
    bounds = exclusive_cumsum(np.bincount(tap, minlength=n_k)).tolist()
    return torch.from_numpy(src), torch.from_numpy(np.ascontiguousarray(tgt)), bounds


def conv_transpose_scatter(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    *,
    max_bytes: int | None = None,
) -> torch.Tensor:
    """Transposed convolution by scattering: each input pixel adds into the pixels it reaches.

    For every kernel tap ``k``, input pixel ``n`` sends ``w[:, :, k]``-weighted copies of its
    channel vector to output pixel ``n * stride + k * dilation - padding`` (``index_add_``);
    contributions that land outside the output (cropped by ``padding``) are dropped. This is
    the "output pixel -> input pixel" picture of the convolution read backwards (Dumoulin &
    Visin, arXiv:1603.07285, §4; Zeiler et al., CVPR 2010). The (tap, pixel) index pairs
    estimated over ``max_bytes`` (default 2 GiB, or half the available memory) are refused
    before they are built.

    >>> import torch, torch.nn.functional as F
    >>> x, w = torch.randn(1, 2, 3), torch.randn(2, 2, 3)
    >>> torch.allclose(conv_transpose_scatter(x, w, stride=2), F.conv_transpose1d(x, w, stride=2), atol=1e-5)
    True
    """
    call = _prepare(input, weight, bias, stride, padding, output_padding, groups, dilation)
    geom, g = call.geom, call.geom.groups
    n = call.x.shape[0]
    c_in_g = geom.out_channels // g  # the transposed conv's input channels per group
    c_out_g = geom.in_channels // g
    x = call.x.reshape(n, g, c_in_g, math.prod(geom.size_out))
    w = call.weight.reshape(g, c_in_g, c_out_g, math.prod(geom.kernel))
    n_in, n_k = x.shape[-1], w.shape[-1]
    out = x.new_zeros(n, g, c_out_g, math.prod(geom.size_in))
    src, tgt, bounds = _scatter_index(geom, max_bytes)
    src, tgt = src.to(x.device), tgt.to(x.device)
    # taps in chunks so that the weighted copies stay below ~2**24 elements
    per_tap = n * g * c_out_g * n_in
    chunk = max(1, min(n_k, 2**24 // max(1, per_tap)))
    for k0 in range(0, n_k, chunk):
        k1 = min(n_k, k0 + chunk)
        # every input pixel's channel vector weighted by every tap: (N, G, C_out/G, taps * P)
        copies = torch.einsum("ngcp,gcdk->ngdkp", x, w[..., k0:k1])
        copies = copies.reshape(n, g, c_out_g, (k1 - k0) * n_in)
        lo, hi = bounds[k0], bounds[k1]
        # ... each added into the output pixel it reaches (dropped where padding crops)
        out.index_add_(3, tgt[lo:hi], copies.index_select(3, src[lo:hi] - k0 * n_in))
    return call.finish(out.reshape(n, geom.in_channels, *geom.size_in))


def conv_transpose_fractional(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> torch.Tensor:
    """Transposed convolution as a fractionally strided convolution.

    Insert ``stride - 1`` zeros between input pixels, pad each side by
    ``dilation*(k-1) - padding`` (and ``output_padding`` more at the end; where the amount is
    negative, crop instead), then run ``F.convNd`` with stride 1, the same dilation, and the
    kernel flipped in space with its in/out channels swapped inside each group. Dumoulin &
    Visin, arXiv:1603.07285, §4.5-4.6.

    >>> import torch, torch.nn.functional as F
    >>> x, w = torch.randn(1, 2, 4, 4), torch.randn(2, 3, 3, 3)
    >>> y = conv_transpose_fractional(x, w, stride=2, padding=1, output_padding=1)
    >>> torch.allclose(y, F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1), atol=1e-5)
    True
    """
    call = _prepare(input, weight, bias, stride, padding, output_padding, groups, dilation)
    geom, g, nd = call.geom, call.geom.groups, call.ndim
    x = call.x
    n = x.shape[0]
    dilated = [(i - 1) * s + 1 for i, s in zip(geom.size_out, geom.stride)]
    z = x.new_zeros(n, x.shape[1], *dilated)
    every: tuple[slice, ...] = (slice(None), slice(None))
    z[every + tuple(slice(None, None, s) for s in geom.stride)] = x
    pads: list[int] = []
    for k, d, p, op in reversed(
        list(zip(geom.kernel, geom.dilation, geom.pad_lo, call.output_padding))
    ):
        q = d * (k - 1) - p
        pads += [q, q + op]  # negative amounts crop
    z = F.pad(z, pads)
    c_in_g, c_out_g = geom.out_channels // g, geom.in_channels // g
    w = call.weight.reshape(g, c_in_g, c_out_g, *geom.kernel).transpose(1, 2)
    w = w.reshape(geom.in_channels, c_in_g, *geom.kernel).flip(list(range(2, 2 + nd)))
    y = _CONV[nd](z, w, call.bias, stride=1, padding=0, dilation=geom.dilation, groups=g)
    return call.finish(y, add_bias=False)


def conv_transpose_autograd(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> torch.Tensor:
    """Transposed convolution as the input-gradient of ``F.convNd``.

    The matching convolution runs on an input of the transposed conv's output size (which is
    how ``output_padding`` enters), and ``torch.autograd.grad`` pulls ``input`` back through it
    as the output gradient. Differentiable (``create_graph``) when gradients are being recorded.
    Complex tensors: autograd's pull-back is ``C^H`` (PyTorch's conjugate Wirtinger
    convention), so the route returns ``conj(C^H conj(x)) = C^T x``, as ``F.conv_transposeNd``.

    >>> import torch, torch.nn.functional as F
    >>> x, w = torch.randn(1, 2, 3, 3, 3), torch.randn(2, 1, 2, 2, 2)
    >>> torch.allclose(conv_transpose_autograd(x, w, stride=2), F.conv_transpose3d(x, w, stride=2), atol=1e-5)
    True
    """
    call = _prepare(input, weight, bias, stride, padding, output_padding, groups, dilation)
    geom, x = call.geom, call.x
    create_graph = torch.is_grad_enabled() and (x.requires_grad or call.weight.requires_grad)
    with torch.enable_grad():
        probe = x.new_zeros(x.shape[0], geom.in_channels, *geom.size_in, requires_grad=True)
        y = _CONV[call.ndim](
            probe, call.weight, None, stride=geom.stride, padding=geom.pad_lo,
            dilation=geom.dilation, groups=geom.groups,
        )  # fmt: skip
        # with output_padding >= stride the conv yields extra trailing outputs: zero gradient
        pads = []
        for have, want in reversed(list(zip(y.shape[2:], geom.size_out))):
            pads += [0, have - want]
        grad_out = F.pad(x, pads) if any(pads) else x
        if x.is_complex():  # autograd pulls back with C^H (conjugate Wirtinger): C^T x = conj
            grad_out = grad_out.conj()  # of C^H conj(x)
        (grad,) = torch.autograd.grad(y, probe, grad_outputs=grad_out, create_graph=create_graph)
    return call.finish(grad.conj() if x.is_complex() else grad)


#: The four routes by name (the CLI and the tests iterate over this).
ROUTES: dict[str, Callable[..., torch.Tensor]] = {
    "matmul": conv_transpose_matmul,
    "scatter": conv_transpose_scatter,
    "fractional": conv_transpose_fractional,
    "autograd": conv_transpose_autograd,
}


@dataclass(frozen=True)
class RouteCheck:
    """One route compared with ``F.conv_transposeNd``."""

    route: str
    max_abs_diff: float
    ok: bool


def _check_tol(tol: Any) -> float:
    if isinstance(tol, bool) or not isinstance(tol, Real):
        raise ParameterTypeError("tol", "a finite number >= 0", tol)
    value = float(tol)
    if not (math.isfinite(value) and value >= 0):
        raise ParameterError("tol", "a finite number >= 0", tol)
    return value


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ParameterTypeError("seed", "an int", seed)
    if not -(2**63) <= seed < 2**64:
        raise ParameterError("seed", "an int from -2**63 to 2**64 - 1 (torch.manual_seed)", seed)
    return seed


def verify_nbytes(geom: Geometry, batch: int) -> int:
    """An upper estimate of what :func:`verify_routes` allocates for ``geom`` (float64):
    input, weight, the reference and each route's output and temporaries, ``C`` of the
    matmul route and the scatter route's index pairs.

    >>> g = conv_transpose_geometry((2, 2, 3, 3), 5, stride=2, padding=1)
    >>> verify_nbytes(g, 2) < 2**30
    True
    """
    c_in, c_out = geom.out_channels, geom.in_channels  # the transposed conv's
    x = batch * c_in * math.prod(geom.size_out)
    y = batch * c_out * math.prod(geom.size_in)
    w = c_in * (c_out // geom.groups) * math.prod(geom.kernel)
    canvas = (
        batch
        * c_in
        * math.prod(
            (i - 1) * s + 1 + 2 * d * (k - 1)
            for i, s, d, k in zip(geom.size_out, geom.stride, geom.dilation, geom.kernel)
        )
    )
    pairs = math.prod(geom.size_out) * math.prod(geom.kernel)
    return (
        8 * (2 * x + w + 6 * y + canvas + 2**24)
        + 16 * pairs
        + conv_matrix_nbytes(geom, torch.float64)
    )


def verify_routes(
    input_size: IntOrTuple,
    kernel_size: IntOrTuple,
    *,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    channels: int | tuple[int, ...] | None = None,
    dims: int = 2,
    batch: int = 2,
    seed: int = 0,
    tol: float = 1e-9,
    max_bytes: int | None = None,
) -> tuple[tuple[int, ...], list[RouteCheck]]:
    """Run the four routes against ``F.conv_transposeNd`` on random float64 data.

    ``channels`` is ``C`` or ``(C_in, C_out)`` of the transposed conv (default ``2*groups``);
    ``tol`` a finite number >= 0. Every argument is checked and the memory the run needs
    estimated (:func:`verify_nbytes`) before any tensor is made; over ``max_bytes`` (default
    2 GiB, or half the available memory) the run is refused. Returns the reference output
    shape and one :class:`RouteCheck` per route.

    >>> shape, checks = verify_routes(5, 3, stride=2, padding=1)
    >>> shape, all(c.ok for c in checks)
    ((2, 2, 9, 9), True)
    """
    if isinstance(dims, bool) or dims not in (1, 2, 3):
        raise ParameterError("dims", "1, 2 or 3", dims)
    tol = _check_tol(tol)
    seed = _check_seed(seed)
    spec = LayerSpec.conv_transpose(
        kernel_size, stride, padding, output_padding, groups, dilation, ndim=dims
    )
    c_in, c_out = as_tuple(2 * groups if channels is None else channels, 2, "channels")
    if not (c_in >= 1 and c_out >= 1 and c_in % groups == 0 and c_out % groups == 0):
        raise ParameterError("channels", f"positive multiples of groups={groups}", (c_in, c_out))
    check_int(batch, "batch")
    size, kernel = spec.check_input_size(input_size), spec.kernel_size
    w_shape = (c_in, c_out // groups, *kernel)
    geom = conv_transpose_geometry(
        w_shape, size, stride=stride, padding=padding, output_padding=output_padding,
        groups=groups, dilation=dilation,
    )  # fmt: skip
    limit = default_max_bytes() if max_bytes is None else max_bytes
    check_budget(
        verify_nbytes(geom, batch),
        limit,
        param="max_bytes",
        what="a verification run",
        received=(
            f"batch {batch}, {c_in} -> {c_out} channels, input {'x'.join(map(str, size))} -> "
            f"output {'x'.join(map(str, geom.size_in))} in float64"
        ),
    )
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, c_in, *size, generator=gen, dtype=torch.float64)
    w = torch.randn(*w_shape, generator=gen, dtype=torch.float64)
    b = torch.randn(c_out, generator=gen, dtype=torch.float64)
    args = (b, stride, padding, output_padding, groups, dilation)
    _prepare(x, w, *args)
    ref = _CONV_T[dims](x, w, *args)
    checks = []
    for name, route in ROUTES.items():
        kw = {"max_bytes": limit} if name in ("matmul", "scatter") else {}
        diff = (route(x, w, *args, **kw) - ref).abs().max().item()
        checks.append(RouteCheck(name, diff, diff <= tol))
    return tuple(ref.shape), checks
