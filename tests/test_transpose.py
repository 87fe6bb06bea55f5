"""The four transposed-convolution routes against F.conv_transposeNd, autograd and each other."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import convlens
from convlens.cli import main
from convlens.errors import ParameterError, ParameterTypeError
from convlens.transpose import (
    ROUTES,
    conv_transpose_autograd,
    conv_transpose_fractional,
    conv_transpose_matmul,
    conv_transpose_scatter,
    verify_routes,
)

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
MAX_SIDE = {1: 8, 2: 5, 3: 3}


@st.composite
def transpose_case(draw):
    """A valid F.conv_transposeNd call in float64: (input, weight, positional arguments)."""
    n = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 4 if n < 3 else 3)) for _ in range(n))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(n))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(n))
    padding = tuple(draw(st.integers(0, 3)) for _ in range(n))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    sizes = []
    for j in range(n):
        low = 1
        while (low - 1) * stride[j] - 2 * padding[j] + dilation[j] * (kernel[j] - 1) + (
            output_padding[j]
        ) + 1 < 1:
            low += 1
        sizes.append(draw(st.integers(low, low + MAX_SIDE[n])))
    batched = draw(st.booleans())
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    shape = (2, c_in, *sizes) if batched else (c_in, *sizes)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    w = torch.randn(c_in, c_out // groups, *kernel, generator=gen, dtype=torch.float64)
    b = torch.randn(c_out, generator=gen, dtype=torch.float64) if draw(st.booleans()) else None

    # sometimes pass tuples of length n, sometimes ints where all are equal
    def compact(t):
        return t[0] if len(set(t)) == 1 and draw(st.booleans()) else t

    args = (b, compact(stride), compact(padding), compact(output_padding), groups)
    return x, w, (*args, compact(dilation))


@pytest.mark.parametrize("route", list(ROUTES))
@given(case=transpose_case())
def test_route_equals_conv_transpose(route, case):
    x, w, args = case
    ref = CONV_T[w.dim() - 2](x, w, *args)
    out = ROUTES[route](x, w, *args)
    assert out.shape == ref.shape
    assert out.dtype == ref.dtype
    assert torch.allclose(out, ref, atol=1e-11, rtol=0)


@given(case=transpose_case())
def test_routes_are_the_input_gradient_of_the_conv(case):
    """Independent of F.conv_transpose: the vjp of F.convNd on an input of the output's size."""
    x, w, (_, stride, padding, output_padding, groups, dilation) = case
    n = w.dim() - 2
    xb = x if x.dim() == n + 2 else x[None]
    ref = CONV_T[n](xb, w, None, stride, padding, output_padding, groups, dilation)
    probe = torch.zeros(ref.shape, dtype=torch.float64, requires_grad=True)
    y = CONV[n](probe, w, None, stride, padding, dilation, groups)
    grad_out = torch.zeros(y.shape, dtype=torch.float64)
    grad_out[tuple(slice(0, s) for s in xb.shape)] = xb  # extra outputs: zero gradient
    (grad,) = torch.autograd.grad(y, probe, grad_out)
    for route in ROUTES.values():
        out = route(xb, w, None, stride, padding, output_padding, groups, dilation)
        assert torch.allclose(out, grad, atol=1e-11, rtol=0)


@given(case=transpose_case())
@settings(max_examples=15)
def test_matmul_route_is_adjoint_of_the_conv(case):
    """<conv(u), x> == <u, conv_transpose(x)> for random u: the defining property of C^T."""
    x, w, (_, stride, padding, output_padding, groups, dilation) = case
    n = w.dim() - 2
    xb = x if x.dim() == n + 2 else x[None]
    yt = conv_transpose_matmul(xb, w, None, stride, padding, output_padding, groups, dilation)
    u = torch.randn(yt.shape, dtype=torch.float64)
    cu = CONV[n](u, w, None, stride, padding, dilation, groups)
    cu = cu[tuple(slice(0, s) for s in xb.shape)]
    assert torch.allclose((cu * xb).sum(), (u * yt).sum(), atol=1e-10)


def _small_case(dtype=torch.float64):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 3, 4, generator=gen, dtype=dtype)
    w = torch.randn(4, 3, 3, 2, generator=gen, dtype=dtype)
    b = torch.randn(6, generator=gen, dtype=dtype)
    return x, w, b, {"stride": (2, 1), "padding": (1, 0), "output_padding": (1, 0), "groups": 2,
                     "dilation": (1, 2)}  # fmt: skip


@pytest.mark.parametrize("route", ["scatter", "fractional", "autograd"])
def test_gradcheck_input_weight_bias(route):
    x, w, b, kw = _small_case()
    x = x[:1, :, :2, :3].clone().requires_grad_(True)
    w.requires_grad_(True)
    b.requires_grad_(True)
    fn = ROUTES[route]
    assert torch.autograd.gradcheck(lambda x, w, b: fn(x, w, b, **kw), (x, w, b))


def test_gradcheck_matmul_input_and_bias():
    x, w, b, kw = _small_case()
    x = x[:1, :, :2, :3].clone().requires_grad_(True)
    b.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, b: conv_transpose_matmul(x, w, b, **kw), (x, b))


def test_gradients_equal_those_of_conv_transpose():
    x, w, b, kw = _small_case()
    ref_x, ref_w = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    F.conv_transpose2d(ref_x, ref_w, b, **kw).square().sum().backward()
    for route in ("scatter", "fractional", "autograd"):
        xr, wr = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        ROUTES[route](xr, wr, b, **kw).square().sum().backward()
        assert torch.allclose(xr.grad, ref_x.grad, atol=1e-10)
        assert torch.allclose(wr.grad, ref_w.grad, atol=1e-10)


def test_non_contiguous_input_and_weight():
    x, w, b, kw = _small_case()
    xt = x.transpose(2, 3).contiguous().transpose(2, 3)  # same values, not contiguous
    wt = w.transpose(2, 3).contiguous().transpose(2, 3)
    assert not xt.is_contiguous()
    assert not wt.is_contiguous()
    ref = F.conv_transpose2d(x, w, b, **kw)
    for route in ROUTES.values():
        assert torch.allclose(route(xt, wt, b, **kw), ref, atol=1e-12)


def test_unbatched_input_and_float32():
    x, w, b, kw = _small_case(torch.float32)
    ref = F.conv_transpose2d(x[0], w, b, **kw)
    for route in ROUTES.values():
        out = route(x[0], w, b, **kw)
        assert out.shape == ref.shape
        assert out.dtype == torch.float32
        assert torch.allclose(out, ref, atol=1e-4)


def test_empty_batch():
    x, w, b, kw = _small_case()
    ref = F.conv_transpose2d(x[:0], w, b, **kw)
    for route in ROUTES.values():
        out = route(x[:0], w, b, **kw)
        assert out.shape == ref.shape


def test_routes_work_under_no_grad():
    x, w, b, kw = _small_case()
    with torch.no_grad():
        ref = F.conv_transpose2d(x, w, b, **kw)
        for route in ROUTES.values():
            out = route(x, w, b, **kw)
            assert not out.requires_grad
            assert torch.allclose(out, ref, atol=1e-12)


def test_top_level_exports():
    for name in ("matmul", "scatter", "fractional", "autograd"):
        assert getattr(convlens, f"conv_transpose_{name}") is ROUTES[name]
    assert conv_transpose_scatter is ROUTES["scatter"]
    assert conv_transpose_fractional is ROUTES["fractional"]
    assert conv_transpose_autograd is ROUTES["autograd"]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("route", list(ROUTES))
def test_error_channel_mismatch(route):
    with pytest.raises(ParameterError, match=r"input: expected 4 channels \(the weight's dim 0\)"):
        ROUTES[route](torch.randn(1, 3, 5, 5), torch.randn(4, 2, 3, 3))


@pytest.mark.parametrize("route", list(ROUTES))
def test_error_output_padding_too_large(route):
    with pytest.raises(ParameterError, match=r"output_padding: expected a value smaller than"):
        ROUTES[route](torch.randn(1, 2, 5, 5), torch.randn(2, 2, 3, 3), stride=2, output_padding=2)


def test_error_groups_do_not_divide_channels():
    with pytest.raises(ParameterError, match=r"groups: expected a divisor of the weight's C_in=3"):
        conv_transpose_scatter(torch.randn(1, 3, 5), torch.randn(3, 1, 3), groups=2)


def test_error_empty_output():
    # LayerSpec (or, failing that, convlens.matrix) refuses the geometry by name
    with pytest.raises(ParameterError, match=r"expected .*(at least one output|non-empty)"):
        conv_transpose_fractional(torch.randn(1, 1, 1), torch.randn(1, 1, 2), padding=1)


def test_error_string_padding_dtype_and_shapes():
    x, w = torch.randn(1, 2, 5), torch.randn(2, 2, 3)
    with pytest.raises(ParameterError, match=r"padding: expected ints for a transposed conv"):
        conv_transpose_matmul(x, w, padding="same")
    with pytest.raises(
        ParameterTypeError,
        match=r"input: expected a tensor of the weight's dtype float32.*input has dtype float64",
    ):
        conv_transpose_autograd(x.double(), w)
    with pytest.raises(ParameterError, match=r"input: expected \(N, C, \*1 spatial\)"):
        conv_transpose_scatter(torch.randn(1, 1, 2, 5), w)
    with pytest.raises(ParameterError, match=r"weight: expected a tensor \(C_in, C_out/groups"):
        conv_transpose_scatter(x, torch.randn(2, 2))
    with pytest.raises(ParameterError, match=r"bias: expected a tensor of shape \(2,\)"):
        conv_transpose_scatter(x, w, torch.randn(3))
    with pytest.raises(ParameterTypeError, match=r"input: expected a torch.Tensor"):
        conv_transpose_matmul([1.0], w)


# ----------------------------------------------------------------------------- verify + CLI


def test_verify_routes_reports_each_route():
    shape, checks = verify_routes(
        (4, 5), (3, 2), stride=2, padding=1, output_padding=1, dilation=(1, 2), groups=2
    )
    ref = F.conv_transpose2d(torch.zeros(2, 4, 4, 5), torch.zeros(4, 2, 3, 2), None, 2, 1, 1, 2,
                             (1, 2))  # fmt: skip
    assert shape == tuple(ref.shape)
    assert [c.route for c in checks] == list(ROUTES)
    assert all(c.ok and c.max_abs_diff < 1e-12 for c in checks)


def test_cli_verify_prints_a_table_and_exits_zero(capsys):
    main(
        [
            "transpose", "verify", "--input", "5", "--kernel", "3", "--stride", "2",
            "--padding", "1", "--dims", "3", "--channels", "2,3", "--seed", "1",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    for name in ROUTES:
        assert f"\n{name} " in out
    assert "output shape (2, 3, 9, 9, 9)" in out
    assert out.count(" ok") == 4


def test_cli_verify_exits_one_when_a_route_differs(capsys, monkeypatch):
    right = ROUTES["scatter"]
    monkeypatch.setitem(ROUTES, "scatter", lambda *a, **k: right(*a, **k) + 1e-3)
    with pytest.raises(SystemExit) as exc:
        main(["transpose", "verify"])
    assert exc.value.code == 1
    out = capsys.readouterr().out
    assert out.count("DIFFERS") == 1
    assert re.search(r"scatter\s+0\.001\s+DIFFERS", out)


def test_cli_verify_bad_geometry_is_one_line_and_exit_two(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["transpose", "verify", "--stride", "2", "--output-padding", "2"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.count("\n") == 1
    assert "output_padding: expected a value smaller than either stride or dilation" in err
