"""conv_matrix and conv_bias_vector against torch.nn.functional, autograd and brute force."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import convlens
from convlens.errors import ParameterError, ParameterTypeError, UnsupportedModuleError
from convlens.matrix import (
    clear_pattern_cache,
    conv_bias_vector,
    conv_geometry,
    conv_matrix,
    nnz_zero_padding,
)

# PyTorch warns that 'same' with an even kernel may copy the input; irrelevant here
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
MODULE = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
MODULE_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
MAX_SIDE = {1: 9, 2: 6, 3: 4}


@st.composite
def conv_case(draw, modes=("zeros",), allow_strings=True):
    """A valid convolution: weight, input size and the F.convNd keyword arguments."""
    n = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    c_in = groups * draw(st.integers(1, 2))
    c_out = groups * draw(st.integers(1, 2))
    mode = draw(st.sampled_from(modes))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(n))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(n))
    kind = draw(st.sampled_from(["int", "same", "valid"] if allow_strings else ["int"]))
    if kind == "int":
        stride = tuple(draw(st.integers(1, 3)) for _ in range(n))
        padding: tuple[int, ...] | str = tuple(draw(st.integers(0, 2)) for _ in range(n))
    else:
        stride, padding = (1,) * n, kind
    sizes = []
    for j in range(n):
        extent = dilation[j] * (kernel[j] - 1) + 1
        pad = 0 if kind != "int" else padding[j]  # type: ignore[index]
        low = max(1, extent - (2 * pad if kind == "int" else extent - 1 if kind == "same" else 0))
        if mode == "reflect":
            low = max(low, pad + 1, extent // 2 + 1 if kind == "same" else 1)
        if mode == "circular":
            low = max(low, pad, extent // 2 + 1 if kind == "same" else 1)
        sizes.append(draw(st.integers(low, max(low, MAX_SIDE[n]))))
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(c_out, c_in // groups, *kernel, generator=gen, dtype=torch.float64)
    kwargs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    return weight, tuple(sizes), kwargs, mode, gen


def _dense(c: torch.Tensor) -> torch.Tensor:
    return c.to_dense() if c.layout != torch.strided else c


@given(conv_case(), st.sampled_from(["csr", "coo", "dense"]), st.booleans())
def test_matrix_times_vec_equals_conv(case, fmt, batched_x):
    weight, size, kw, _, gen = case
    x = torch.randn(weight.shape[1] * kw["groups"], *size, generator=gen, dtype=torch.float64)
    c = conv_matrix(weight, size, format=fmt, **kw)
    ref = CONV[weight.dim() - 2](x[None], weight, **kw)[0]
    assert c.shape == (ref.numel(), x.numel())
    assert c.dtype == torch.float64
    assert torch.allclose(c @ x.reshape(-1), ref.reshape(-1), atol=1e-12)


@given(conv_case(), st.sampled_from(["csr", "coo", "dense"]))
def test_row_layout_is_the_transpose(case, fmt):
    weight, size, kw, _, gen = case
    x = torch.randn(weight.shape[1] * kw["groups"], *size, generator=gen, dtype=torch.float64)
    c_torch = _dense(conv_matrix(weight, size, format=fmt, **kw))
    c_row = conv_matrix(weight, size, layout="row", format=fmt, **kw)
    ref = CONV[weight.dim() - 2](x[None], weight, **kw)[0].reshape(-1)
    assert torch.equal(_dense(c_row), c_torch.t())
    # the seed's convention: vec(y) = vec(x) @ C
    assert torch.allclose((c_row.t() @ x.reshape(-1)), ref, atol=1e-12)
    assert torch.allclose(x.reshape(-1) @ _dense(c_row), ref, atol=1e-12)


@given(conv_case(modes=("zeros", "reflect", "replicate", "circular")))
def test_every_padding_mode_matches_the_module(case):
    weight, size, kw, mode, gen = case
    n, g = weight.dim() - 2, kw["groups"]
    c_in, c_out = weight.shape[1] * g, weight.shape[0]
    module = MODULE[n](c_in, c_out, weight.shape[2:], **kw, padding_mode=mode, bias=True)
    module = module.double()
    with torch.no_grad():
        module.weight.copy_(weight)
    x = torch.randn(2, c_in, *size, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        ref = module(x).reshape(2, -1)
    c = conv_matrix(module, size)
    b = conv_bias_vector(module, size)
    assert torch.allclose((c @ x.reshape(2, -1).t()).t() + b, ref, atol=1e-12)
    # the same matrix from the weight and keywords
    c_kw = conv_matrix(weight, size, padding_mode=mode, **kw)
    assert torch.equal(c_kw.to_dense(), c.to_dense())


@given(conv_case(modes=("zeros", "reflect", "replicate", "circular")))
def test_dense_matrix_is_the_autograd_jacobian(case):
    weight, size, kw, mode, _ = case
    n, g = weight.dim() - 2, kw["groups"]
    c_in = weight.shape[1] * g
    module = MODULE[n](c_in, weight.shape[0], weight.shape[2:], **kw, padding_mode=mode).double()
    with torch.no_grad():
        module.weight.copy_(weight)
    x0 = torch.zeros(c_in * math.prod(size), dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(
        lambda v: module(v.reshape(1, c_in, *size)).reshape(-1), x0
    )
    assert torch.allclose(conv_matrix(module, size, format="dense"), jac, atol=1e-12)


@given(conv_case(allow_strings=False))
def test_transpose_times_vec_is_conv_transpose_and_input_gradient(case):
    weight, size, kw, _, gen = case
    n = weight.dim() - 2
    c = conv_matrix(weight, size, **kw)
    x = torch.randn(weight.shape[1] * kw["groups"], *size, generator=gen, dtype=torch.float64)
    x.requires_grad_(True)
    y = CONV[n](x[None], weight, **kw)
    gy = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    (grad,) = torch.autograd.grad(y, x, gy)
    out = c.t() @ gy.reshape(-1)
    assert torch.allclose(out, grad.reshape(-1), atol=1e-12)
    # F.conv_transpose with the output_padding that restores the input size
    op = tuple(
        i - ((o - 1) * s - 2 * p + d * (k - 1) + 1)
        for i, o, s, p, d, k in zip(
            size, y.shape[2:], kw["stride"], kw["padding"], kw["dilation"], weight.shape[2:]
        )
    )
    ref = (
        CONV_T[n](gy, weight, output_padding=op, **kw)
        if all(o < s or o < d for o, s, d in zip(op, kw["stride"], kw["dilation"]))
        else grad[None]
    )
    assert torch.allclose(out, ref.reshape(-1), atol=1e-12)


@st.composite
def conv_transpose_case(draw):
    n = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 2))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(n))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(n))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(n))
    padding = tuple(draw(st.integers(0, 2)) for _ in range(n))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    sizes = []
    for j in range(n):
        # the output (i-1)s - 2p + d(k-1) + op + 1 must be positive
        low = 1
        while (low - 1) * stride[j] - 2 * padding[j] + dilation[j] * (kernel[j] - 1) + (
            output_padding[j]
        ) + 1 < 1:
            low += 1
        sizes.append(draw(st.integers(low, low + MAX_SIDE[n] - 3)))
    module = MODULE_T[n](
        c_in, c_out, kernel, stride, padding, output_padding, groups, True, dilation
    ).double()
    return module, tuple(sizes), draw(st.integers(0, 2**16))


@given(conv_transpose_case())
def test_conv_transpose_module_matrix(case):
    module, size, seed = case
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(module.in_channels, *size, generator=gen, dtype=torch.float64)
    c = conv_matrix(module, size)
    b = conv_bias_vector(module, size)
    with torch.no_grad():
        ref = module(x[None])[0]
    assert torch.allclose(c @ x.reshape(-1) + b, ref.reshape(-1), atol=1e-12)
    # the transpose of the matching conv's matrix (conv input = the transposed conv's output),
    # restricted to the transposed conv's input positions (output_padding >= stride adds more)
    geom = conv_geometry(
        tuple(module.weight.shape), ref.shape[1:], stride=module.stride,
        padding=module.padding, dilation=module.dilation, groups=module.groups,
    )  # fmt: skip
    conv_c = conv_matrix(
        module.weight, ref.shape[1:], stride=module.stride, padding=module.padding,
        dilation=module.dilation, groups=module.groups, format="dense",
    )  # fmt: skip
    keep = torch.zeros(module.in_channels, *geom.size_out, dtype=torch.bool)
    keep[(slice(None), *(slice(0, i) for i in size))] = True
    assert torch.equal(c.to_dense(), conv_c[keep.reshape(-1)].t())
    assert torch.equal(conv_matrix(module, size, layout="row").to_dense(), conv_c[keep.reshape(-1)])
    if all(o == i for o, i in zip(geom.size_out, size)):
        assert torch.equal(c.to_dense(), conv_c.t())


def _brute_force_nnz(weight_shape, size, kw):
    """Count non-zeros of C by looping over every (output, input, tap) triple."""
    n = len(size)
    stride, padding, dilation = (kw[k] for k in ("stride", "padding", "dilation"))
    kernel = weight_shape[2:]
    if padding == "valid":
        lo = (0,) * n
    elif padding == "same":
        lo = tuple((d * (k - 1)) // 2 for d, k in zip(dilation, kernel))
    else:
        lo = padding
    out = [len(range(0, i + 2 * p - d * (k - 1), s)) for i, p, d, k, s in zip(
        size, (0,) * n if isinstance(padding, str) else padding, dilation, kernel, stride
    )]  # fmt: skip
    if padding == "same":
        out = list(size)
    per_axis = 1
    for j in range(n):
        per_axis *= sum(
            1
            for o in range(out[j])
            for k in range(kernel[j])
            if 0 <= o * stride[j] + k * dilation[j] - lo[j] < size[j]
        )
    return weight_shape[0] * weight_shape[1] * per_axis


@given(conv_case())
def test_exact_nnz_for_zero_padding(case):
    weight, size, kw, _, _ = case
    c = conv_matrix(weight, size, **kw)
    expected = _brute_force_nnz(tuple(weight.shape), size, kw)
    assert c._nnz() == expected
    assert nnz_zero_padding(conv_geometry(tuple(weight.shape), size, **kw)) == expected
    assert int((conv_matrix(weight, size, format="dense", **kw) != 0).sum()) <= expected


def test_dense_matrix_equals_explicit_loop_1d():
    """The textbook picture: each row holds the kernel, shifted by the stride."""
    w = torch.tensor([[[1.0, 2.0, 3.0]]], dtype=torch.float64)
    c = conv_matrix(w, 7, stride=2, padding=1, format="dense")
    expected = torch.zeros(4, 7, dtype=torch.float64)
    for o, k in itertools.product(range(4), range(3)):
        i = 2 * o + k - 1
        if 0 <= i < 7:
            expected[o, i] = w[0, 0, k]
    assert torch.equal(c, expected)


def test_csr_uses_int32_indices_and_coo_is_coalesced():
    w = torch.randn(4, 2, 3, 3)
    c = conv_matrix(w, 8, padding=1)
    assert c.layout == torch.sparse_csr
    assert c.crow_indices().dtype == torch.int32
    assert c.col_indices().dtype == torch.int32
    coo = conv_matrix(w, 8, padding=1, format="coo")
    assert coo.is_coalesced()
    assert torch.equal(coo.to_dense(), c.to_dense())
    assert torch.equal(coo.coalesce().indices(), coo.indices())


def test_int64_indices_when_int32_would_overflow(monkeypatch):
    import convlens.matrix as matrix

    monkeypatch.setattr(matrix, "_INT32_MAX", 100)
    clear_pattern_cache()
    try:
        w = torch.randn(4, 1, 3, 3, dtype=torch.float64)
        x = torch.randn(2, 6, 6, dtype=torch.float64)
        c = conv_matrix(w, 6, padding=1, groups=2)
        assert c.col_indices().dtype == torch.int64
        ref = F.conv2d(x, w, padding=1, groups=2).reshape(-1)
        assert torch.allclose(c @ x.reshape(-1), ref, atol=1e-12)
    finally:
        clear_pattern_cache()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_result_has_the_weights_dtype_and_no_grad(dtype):
    w = torch.randn(3, 2, 3, dtype=dtype, requires_grad=True)
    c = conv_matrix(w, 6)
    assert c.dtype == dtype
    assert c.device == w.device
    assert not c.requires_grad
    x = torch.randn(2, 6, dtype=dtype)
    ref = F.conv1d(x[None], w.detach())[0].reshape(-1)
    assert torch.allclose(c.to_dense().float() @ x.reshape(-1).float(), ref.float(), atol=0.05)


def test_pattern_is_cached_and_a_new_weight_is_one_gather():
    clear_pattern_cache()
    w1, w2 = torch.randn(5, 3, 3, 3), torch.randn(5, 3, 3, 3)
    c1 = conv_matrix(w1, 9, padding=1)
    c2 = conv_matrix(w2, 9, padding=1)
    assert c1.col_indices().data_ptr() == c2.col_indices().data_ptr()
    assert c1.crow_indices().data_ptr() == c2.crow_indices().data_ptr()
    x = torch.randn(3, 9, 9)
    assert torch.allclose(c2 @ x.reshape(-1), F.conv2d(x, w2, padding=1).reshape(-1), atol=1e-5)


def test_non_contiguous_weight():
    base = torch.randn(3, 4, 2, 3, dtype=torch.float64)
    w = base.transpose(0, 1)  # (4, 3, 2, 3), not contiguous
    assert not w.is_contiguous()
    x = torch.randn(3, 5, 6, dtype=torch.float64)
    c = conv_matrix(w, (5, 6), padding=(1, 0))
    assert torch.allclose(c @ x.reshape(-1), F.conv2d(x, w, padding=(1, 0)).reshape(-1))


def test_depthwise_vgg_like_shapes():
    w = torch.randn(6, 1, 3, 3, dtype=torch.float64)
    x = torch.randn(6, 7, 7, dtype=torch.float64)
    c = conv_matrix(w, 7, padding="same", groups=6)
    assert torch.allclose(c @ x.reshape(-1), F.conv2d(x, w, padding="same", groups=6).reshape(-1))
    # no cross-channel entries: the matrix is block diagonal
    dense = c.to_dense().reshape(6, 49, 6, 49)
    off = dense.clone()
    off[torch.arange(6), :, torch.arange(6), :] = 0
    assert torch.count_nonzero(off) == 0


def test_bias_vector_from_a_weight():
    w, b = torch.randn(3, 2, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    x = torch.randn(2, 8, dtype=torch.float64)
    c = conv_matrix(w, 8, stride=2)
    off = conv_bias_vector(w, 8, bias=b, stride=2)
    assert torch.allclose(c @ x.reshape(-1) + off, F.conv1d(x, w, b, stride=2).reshape(-1))
    assert torch.equal(conv_bias_vector(w, 8, stride=2), torch.zeros_like(off))


def test_top_level_exports():
    assert convlens.conv_matrix is conv_matrix
    assert convlens.conv_bias_vector is conv_bias_vector
    assert {"conv_matrix", "conv_bias_vector"} <= set(convlens.__all__)


# ----------------------------------------------------------------------------- errors


def test_error_kernel_larger_than_input():
    with pytest.raises(ParameterError, match=r"kernel_size: expected an effective kernel"):
        conv_matrix(torch.randn(1, 1, 5, 5), 3)


def test_error_reflect_padding_not_smaller_than_input():
    with pytest.raises(ParameterError, match=r"padding: expected a value smaller than the input"):
        conv_matrix(torch.randn(1, 1, 3), 2, padding=2, padding_mode="reflect")


def test_error_groups_do_not_divide_out_channels():
    with pytest.raises(ParameterError, match=r"groups: expected a divisor of the weight's C_out=5"):
        conv_matrix(torch.randn(5, 1, 3, 3), 8, groups=2)


def test_error_weight_dimensions():
    with pytest.raises(ParameterError, match=r"weight: expected a tensor of shape"):
        conv_matrix(torch.randn(3, 3), 8)


def test_error_input_size_length():
    with pytest.raises(
        ParameterError, match=r"input_size: expected an int or a sequence of 2 ints"
    ):
        conv_matrix(torch.randn(2, 3, 3, 3), (3, 8, 8))


def test_error_same_with_stride():
    with pytest.raises(ParameterError, match=r"stride: expected 1 in every dimension"):
        conv_matrix(torch.randn(2, 3, 3, 3), 8, padding="same", stride=2)


def test_error_bad_padding_mode_layout_and_format():
    w = torch.randn(2, 3, 3, 3)
    with pytest.raises(ParameterError, match=r"padding_mode: expected one of zeros"):
        conv_matrix(w, 8, padding_mode="mirror")
    with pytest.raises(ParameterError, match=r"layout: expected one of 'torch', 'row'"):
        conv_matrix(w, 8, layout="col")
    with pytest.raises(ParameterError, match=r"format: expected one of 'csr', 'coo', 'dense'"):
        conv_matrix(w, 8, format="csc")


def test_error_transposed_module_with_reflect_padding():
    module = nn.ConvTranspose2d(2, 2, 3)
    module.padding_mode = "reflect"  # PyTorch refuses this at construction and in forward
    with pytest.raises(ParameterError, match=r"padding_mode: expected 'zeros' for a transposed"):
        conv_matrix(module, 5)


def test_error_module_with_geometry_keywords():
    with pytest.raises(ParameterError, match=r"stride: expected the default 1 when a module"):
        conv_matrix(nn.Conv2d(1, 1, 3), 8, stride=2)


def test_error_unsupported_module_and_type():
    with pytest.raises(UnsupportedModuleError, match=r"expected one of Conv1d.*received Linear"):
        conv_matrix(nn.Linear(3, 3), 8)
    with pytest.raises(ParameterTypeError, match=r"weight: expected a torch.Tensor"):
        conv_matrix([[1.0]], 8)


def test_error_bias_shape():
    with pytest.raises(ParameterError, match=r"bias: expected a tensor of shape \(2,\)"):
        conv_bias_vector(torch.randn(2, 1, 3), 5, bias=torch.randn(3))
