"""Output shapes against real PyTorch modules on a dense grid of 1-D, 2-D and 3-D layers.

Every property builds the layer twice, as a :class:`LayerSpec` and as the PyTorch module, and
demands the same verdict: the same output size, or both refusing the input. Round trips
conv -> transposed conv return the input size, and the transposed conv is checked value for
value against autograd (it is the conv's adjoint for zero padding).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from convlens.arithmetic import (
    LayerSpec,
    colliding_input_sizes,
    input_sizes_for,
    invert_conv,
    output_padding_for,
    spec_from_module,
    transpose_size_range,
)
from convlens.errors import ParameterError

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
TCONV = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
MAX = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
AVG = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
F_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
F_TCONV = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _run(module: nn.Module, size: tuple[int, ...], **kwargs) -> tuple[int, ...] | None:
    """Spatial output size of ``module`` on a 1-channel input, or None where torch refuses."""
    try:
        out = module(torch.zeros(1, 1, *size), **kwargs)
    except (RuntimeError, ValueError):
        return None
    # ConvTranspose3d returns an empty tensor where ConvTranspose1d/2d refuse a 0 output size;
    # convlens refuses it in every dimension count.
    return None if 0 in out.shape[2:] else tuple(out.shape[2:])


def _ours(spec_fn, size: tuple[int, ...]) -> tuple[int, ...] | None:
    try:
        return spec_fn().output_size(size)
    except ParameterError:
        return None


@st.composite
def dims(draw, lo: int, hi: int, ndim: int) -> tuple[int, ...]:
    return tuple(draw(st.integers(lo, hi)) for _ in range(ndim))


@st.composite
def conv_cases(draw):
    n = draw(st.sampled_from([1, 2, 3]))
    top = 9 if n < 3 else 6
    size = draw(dims(1, top, n))
    kernel = draw(dims(1, 4, n))
    dilation = draw(dims(1, 3, n))
    mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    kind = draw(st.sampled_from(["ints", "ints", "same", "valid"]))
    stride = (1,) * n if kind == "same" else draw(dims(1, 3, n))
    padding = {"same": "same", "valid": "valid"}.get(kind) or draw(dims(0, 3, n))
    return n, size, kernel, stride, padding, dilation, mode


@given(conv_cases())
def test_conv_shape_matches_torch(case):
    n, size, kernel, stride, padding, dilation, mode = case
    module = CONV[n](1, 1, kernel, stride, padding, dilation, padding_mode=mode, bias=False)
    expected = _run(module, size)
    got = _ours(lambda: LayerSpec.conv(kernel, stride, padding, dilation, 1, mode, ndim=n), size)
    assert got == expected
    assert spec_from_module(module) == LayerSpec.conv(
        kernel, stride, padding, dilation, 1, mode, in_channels=1, out_channels=1, ndim=n
    )


@st.composite
def transpose_cases(draw):
    n = draw(st.sampled_from([1, 2, 3]))
    size = draw(dims(1, 5 if n < 3 else 3, n))
    kernel = draw(dims(1, 4, n))
    stride = draw(dims(1, 3, n))
    dilation = draw(dims(1, 3, n))
    padding = draw(dims(0, 3, n))
    out_pad = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    return n, size, kernel, stride, padding, dilation, out_pad


@given(transpose_cases())
def test_conv_transpose_shape_matches_torch(case):
    n, size, kernel, stride, padding, dilation, out_pad = case
    module = TCONV[n](1, 1, kernel, stride, padding, out_pad, dilation=dilation, bias=False)
    expected = _run(module, size)
    got = _ours(
        lambda: LayerSpec.conv_transpose(kernel, stride, padding, out_pad, 1, dilation, ndim=n),
        size,
    )
    assert got == expected
    assert spec_from_module(module).output_padding == out_pad


@given(transpose_cases(), st.integers(-2, 4))
def test_output_size_argument_matches_torch(case, shift):
    """output_padding_for agrees with ConvTransposeNd.forward(..., output_size=...)."""
    n, size, kernel, stride, padding, dilation, _ = case
    module = TCONV[n](1, 1, kernel, stride, padding, dilation=dilation, bias=False)
    spec = LayerSpec.conv_transpose(kernel, stride, padding, 0, 1, dilation, ndim=n)
    base = _ours(lambda: spec, size)
    if base is None:
        assert _run(module, size) is None
        return
    want = tuple(b + shift for b in base)
    if min(want) < 1:
        want = base
    expected = _run(module, size, output_size=list(want))
    if expected is None:
        with pytest.raises(ParameterError, match="output_size: expected a size from"):
            output_padding_for(spec, size, want)
        return
    pads = output_padding_for(spec, size, want)
    assert expected == want
    assert spec.replace(output_padding=pads).output_size(size) == want
    assert all(lo <= w <= hi for w, (lo, hi) in zip(want, transpose_size_range(spec, size)))


@st.composite
def pool_cases(draw):
    n = draw(st.sampled_from([1, 2, 3]))
    size = draw(dims(1, 9 if n < 3 else 6, n))
    kernel = draw(dims(1, 4, n))
    stride = draw(dims(1, 3, n))
    padding = draw(dims(0, 2, n))
    dilation = draw(dims(1, 2, n))
    ceil = draw(st.booleans())
    avg = draw(st.booleans())
    return n, size, kernel, stride, padding, dilation, ceil, avg


@given(pool_cases())
def test_pool_shape_matches_torch(case):
    n, size, kernel, stride, padding, dilation, ceil, avg = case
    if avg:
        module = AVG[n](kernel, stride, padding, ceil_mode=ceil)
        make = lambda: LayerSpec.avg_pool(kernel, stride, padding, ceil, ndim=n)  # noqa: E731
    else:
        module = MAX[n](kernel, stride, padding, dilation, ceil_mode=ceil)
        make = lambda: LayerSpec.max_pool(kernel, stride, padding, dilation, ceil, ndim=n)  # noqa: E731
    expected = _run(module, size)
    assert _ours(make, size) == expected
    if expected is not None:
        assert spec_from_module(module) == make()


def _valid_conv(case) -> tuple[LayerSpec, tuple[int, ...]] | None:
    n, size, kernel, stride, padding, dilation, mode = case
    spec = LayerSpec.conv(kernel, stride, padding, dilation, 1, mode, ndim=n)
    return None if _ours(lambda: spec, size) is None else (spec, size)


@given(conv_cases())
def test_round_trip_returns_the_input_size(case):
    """conv -> invert_conv's transposed conv (cropped) is the conv's adjoint, on the input size."""
    valid = _valid_conv(case)
    if valid is None:
        return
    spec, size = valid
    n = spec.ndim
    inv = invert_conv(spec, size)
    x = torch.randn(1, 1, *size, dtype=torch.float64, requires_grad=True)
    w = torch.randn(1, 1, *spec.kernel_size, dtype=torch.float64)
    conv = CONV[n](1, 1, spec.kernel_size, spec.stride, spec.padding, spec.dilation, bias=False)
    conv = conv.double()
    conv.padding_mode = spec.padding_mode
    if spec.padding_mode != "zeros":
        conv = CONV[n](
            1,
            1,
            spec.kernel_size,
            spec.stride,
            spec.padding,
            spec.dilation,
            bias=False,
            padding_mode=spec.padding_mode,
        ).double()
    conv.weight.data.copy_(w)
    y = conv(x)
    assert tuple(y.shape[2:]) == inv.conv_output_size
    t = inv.transpose
    tconv = TCONV[n](
        1, 1, t.kernel_size, t.stride, t.padding, t.output_padding, 1, False, t.dilation
    )
    tconv = tconv.double()
    tconv.weight.data.copy_(w)
    back = tconv(y.detach())
    crop = tuple(slice(lo, back.shape[2 + d] - hi) for d, (lo, hi) in enumerate(inv.crop))
    back = back[(..., *crop)]
    assert tuple(back.shape[2:]) == size
    if inv.output_size is not None:
        plain = TCONV[n](1, 1, t.kernel_size, t.stride, t.padding, 0, 1, False, t.dilation)
        assert tuple(plain(y.detach().float(), output_size=list(size)).shape[2:]) == size
    if inv.adjoint:
        g = torch.randn_like(y)
        (grad,) = torch.autograd.grad(y, x, g)
        back_g = F_TCONV[n](g, w, None, t.stride, t.padding, t.output_padding, 1, t.dilation)
        torch.testing.assert_close(back_g[(..., *crop)], grad)


@given(conv_cases())
def test_colliding_sizes_match_brute_force(case):
    valid = _valid_conv(case)
    if valid is None:
        return
    spec, size = valid
    n = spec.ndim
    out = spec.output_size(size)
    sizes = colliding_input_sizes(spec, size)
    module = CONV[n](
        1,
        1,
        spec.kernel_size,
        spec.stride,
        spec.padding,
        spec.dilation,
        bias=False,
        padding_mode=spec.padding_mode,
    )
    for dim in range(n):
        brute = []
        for j in range(1, size[dim] + 2 * max(spec.stride) + 2):
            probe = tuple(j if d == dim else size[d] for d in range(n))
            if (r := _run(module, probe)) is not None and r[dim] == out[dim]:
                brute.append(j)
        assert sizes[dim] == tuple(brute)
        assert size[dim] in sizes[dim]


@given(pool_cases())
def test_pool_colliding_sizes_match_brute_force(case):
    _n, size, kernel, stride, padding, dilation, ceil, _ = case
    size, kernel, stride, padding, dilation = (
        size[:1],
        kernel[:1],
        stride[:1],
        padding[:1],
        dilation[:1],
    )
    module = nn.MaxPool1d(kernel, stride, padding, dilation, ceil_mode=ceil)
    out = _run(module, size)
    if out is None:
        return
    spec = LayerSpec.max_pool(kernel, stride, padding, dilation, ceil, ndim=1)
    brute = tuple(j for j in range(1, size[0] + 3 * stride[0] + 3) if _run(module, (j,)) == out)
    assert input_sizes_for(spec, out) == (brute,)


@given(transpose_cases())
def test_transpose_collisions_are_the_sizes_output_size_reaches(case):
    _n, size, kernel, stride, padding, dilation, _ = case
    size, kernel, stride, padding, dilation = (
        size[:1],
        kernel[:1],
        stride[:1],
        padding[:1],
        dilation[:1],
    )
    spec = LayerSpec.conv_transpose(kernel, stride, padding, 0, 1, dilation, ndim=1)
    if _ours(lambda: spec, size) is None:
        return
    ((lo, hi),) = transpose_size_range(spec, size)
    conv = nn.Conv1d(1, 1, kernel, stride, padding, dilation, bias=False)
    brute = tuple(j for j in range(1, hi + stride[0] + 2) if _run(conv, (j,)) == size)
    assert colliding_input_sizes(spec, size) == (brute,)
    assert brute == tuple(range(max(lo, 1), hi + 1))


def test_collision_example_of_the_issue():
    assert colliding_input_sizes(LayerSpec.conv_transpose(3, 2, 1, ndim=1), 6) == ((11, 12),)
    inv = invert_conv(LayerSpec.conv(3, 2, 1, ndim=1), 12)
    assert inv.ambiguous
    assert inv.output_padding == (1,)
    assert nn.ConvTranspose1d(1, 1, 3, 2, 1, 1)(torch.zeros(1, 1, 6)).shape[-1] == 12


@pytest.mark.parametrize(("kernel", "dilation"), [(2, 1), (4, 1), (2, 3), (4, 2), (3, 2)])
def test_same_padding_even_kernels_is_asymmetric_like_torch(kernel, dilation):
    """PyTorch puts the smaller half of 'same' padding first; compare values, not just shapes."""
    spec = LayerSpec.conv(kernel, padding="same", dilation=dilation, ndim=1)
    ((lo, hi),) = spec.padding_pairs()
    x = torch.randn(1, 1, 9, dtype=torch.float64)
    w = torch.randn(1, 1, kernel, dtype=torch.float64)
    same = F.conv1d(x, w, padding="same", dilation=dilation)
    manual = F.conv1d(F.pad(x, (lo, hi)), w, dilation=dilation)
    torch.testing.assert_close(same, manual)
    inv = invert_conv(spec, 9)
    assert inv.crop == ((0, hi - lo),)
    assert (inv.output_size is None) == (hi != lo)


def test_groups_and_channels_match_torch():
    spec = LayerSpec.conv(3, 2, 1, groups=2, in_channels=4, out_channels=6)
    module = nn.Conv2d(4, 6, 3, 2, 1, groups=2)
    assert spec.output_shape((1, 4, 9, 7)) == tuple(module(torch.zeros(1, 4, 9, 7)).shape)
    assert spec_from_module(module) == spec
    inv = invert_conv(spec, (9, 7))
    t = inv.transpose
    tconv = nn.ConvTranspose2d(6, 4, 3, 2, 1, t.output_padding, groups=2)
    assert t.in_channels == 6
    assert t.out_channels == 4
    assert tuple(tconv(module(torch.zeros(1, 4, 9, 7))).shape) == (1, 4, 9, 7)
