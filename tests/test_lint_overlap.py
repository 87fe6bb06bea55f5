"""Overlap maps against PyTorch: ``conv_transpose`` of ones, autograd of ones, chains of both.

Every expected map comes from torch (``F.conv_transposeNd`` / ``F.convNd`` / ``F.avg_pool2d``
with ones, or autograd through them) in float64, or from a pure-Python brute force of the
index relation ``j = i*s + k*d - p`` written here; never from convlens itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st

from convlens.arithmetic import LayerSpec
from convlens.errors import ParameterError, ParameterTypeError
from convlens.lint import compound_overlap, overlap_map, weighted_overlap

TCONV = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
MODULE = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
D64 = torch.float64


def _ones(*shape: int) -> torch.Tensor:
    return torch.ones(shape, dtype=D64)


def _tconv_ones(x: torch.Tensor, nd: int, k, s, p, op, d, groups=1, c_out=1) -> torch.Tensor:
    w = _ones(x.shape[1], c_out // groups, *k)
    return TCONV[nd](x, w, stride=s, padding=p, output_padding=op, dilation=d, groups=groups)


@st.composite
def tconv_case(draw, max_nd: int = 3):
    nd = draw(st.integers(1, max_nd))
    small = nd == 3
    k = tuple(draw(st.integers(1, 3 if small else 5)) for _ in range(nd))
    s = tuple(draw(st.integers(1, 3 if small else 4)) for _ in range(nd))
    d = tuple(draw(st.integers(1, 2 if small else 3)) for _ in range(nd))
    p = tuple(draw(st.integers(0, 3)) for _ in range(nd))
    op = tuple(draw(st.integers(0, max(a, b) - 1)) for a, b in zip(s, d))
    n = tuple(draw(st.integers(1, 3 if small else 6)) for _ in range(nd))
    groups = draw(st.sampled_from([1, 2]))
    c_in = groups * draw(st.integers(1, 2))
    c_out = groups * draw(st.integers(1, 2))
    return nd, k, s, p, op, d, n, groups, c_in, c_out


def _spec(case) -> LayerSpec:
    nd, k, s, p, op, d, n, g, c_in, c_out = case
    try:
        spec = LayerSpec.conv_transpose(
            k, s, p, op, g, d, in_channels=c_in, out_channels=c_out, ndim=nd
        )
        spec.output_size(n)
    except ParameterError:
        assume(False)
    return spec


@given(tconv_case())
def test_overlap_map_equals_conv_transpose_of_ones(case):
    nd, k, s, p, op, d, n, g, c_in, c_out = case
    spec = _spec(case)
    m = overlap_map(spec, n)
    ref = _tconv_ones(_ones(1, c_in, *n), nd, k, s, p, op, d, g, c_out)[0]
    for c in range(c_out):
        assert np.array_equal(m.channel_counts, ref[c].numpy())
    assert np.array_equal(m.counts * (c_in // g), ref[0].numpy())
    assert m.channel_factor == c_in // g
    assert m.counts.dtype == np.int64


def _python_interior(j: int, n: int, k: int, s: int, p: int, d: int) -> tuple[bool, int]:
    """Brute force of the definition: (every contributing tap inside the input, unbounded count)."""
    taps = [t for t in range(k) if (j + p - t * d) % s == 0]
    inside = all(0 <= (j + p - t * d) // s < n for t in taps)
    return inside, len(taps)


@given(tconv_case(max_nd=1))
def test_interior_and_phase_follow_their_definition(case):
    _, (k,), (s,), (p,), _, (d,), (n,), *_ = case
    m = overlap_map(_spec(case), n)
    (counts,), (mask,), (phase,) = m.axes, m.interior_axes, m.phase_axes
    for j in range(counts.size):
        inside, unbounded = _python_interior(j, n, k, s, p, d)
        assert bool(mask[j]) == inside
        assert phase[j % phase.size] == unbounded
        if inside:
            assert counts[j] == unbounded


@given(tconv_case(max_nd=2))
def test_statistics_equal_dense_brute_force(case):
    nd, k, s, p, op, d, n, *_ = case
    m = overlap_map(_spec(case), n)
    dense = _tconv_ones(_ones(1, 1, *n), nd, k, s, p, op, d)[0, 0].numpy()
    mask = m.interior
    assert m.dead_pixels == int((dense == 0).sum())
    assert (m.min, m.max) == (dense.min(), dense.max())
    if mask.any():
        assert (m.interior_min, m.interior_max) == (dense[mask].min(), dense[mask].max())
    else:
        assert m.interior_min is None
    if (~mask).any():
        assert (m.border_min, m.border_max) == (dense[~mask].min(), dense[~mask].max())
    else:
        assert m.border_min is None
    # the periodic pattern: far from the border of a large input, every value is a phase value
    big = tuple(v + 8 * max(s) * max(k) * max(d) for v in n)
    far = _tconv_ones(_ones(1, 1, *big), nd, k, s, p, op, d)[0, 0].numpy()
    centre = far[tuple(slice(a // 2 - 2 * t, a // 2 + 2 * t) for a, t in zip(far.shape, s))]
    assert (m.phase_min, m.phase_max) == (centre.min(), centre.max())
    assert m.uneven == (centre.min() != centre.max())


@pytest.mark.parametrize(("nd", "ratio"), [(1, 2.0), (2, 4.0)])
def test_distill_kernel3_stride2_checkerboard(nd, ratio):
    # Odena, Dumoulin & Olah, Distill 2016: kernel 3, stride 2 overlaps 2:1 per axis.
    spec = LayerSpec.conv_transpose(3, stride=2, ndim=nd)
    m = overlap_map(spec, 8)
    dense = _tconv_ones(_ones(1, 1, *(8,) * nd), nd, (3,) * nd, 2, 0, 0, 1)[0, 0].numpy()
    inner = dense[(slice(2, -2),) * nd]
    assert inner.max() / inner.min() == ratio
    assert m.ratio == ratio
    assert m.uneven


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_distill_kernel4_stride2_even_interior(nd):
    spec = LayerSpec.conv_transpose(4, stride=2, padding=1, ndim=nd)
    m = overlap_map(spec, 5)
    dense = _tconv_ones(_ones(1, 1, *(5,) * nd), nd, (4,) * nd, 2, 1, 0, 1)[0, 0].numpy()
    assert np.unique(dense[m.interior]).size == 1
    assert not m.uneven
    assert m.ratio == 1.0
    assert m.border_min is not None
    assert m.border_min < m.interior_min


def test_dilation_sharing_a_factor_with_the_stride_leaves_dead_pixels():
    spec = LayerSpec.conv_transpose(3, stride=2, dilation=2, ndim=2)
    m = overlap_map(spec, 5)
    dense = _tconv_ones(_ones(1, 1, 5, 5), 2, (3, 3), 2, 0, 0, 2)[0, 0].numpy()
    assert math.gcd(2, 2) > 1
    assert m.dead_pixels == int((dense == 0).sum()) > 0
    assert m.phase_min == 0
    assert math.isinf(m.ratio)
    # coprime dilation and stride: no holes
    coprime = LayerSpec.conv_transpose(3, stride=2, dilation=3, ndim=2)
    dense3 = _tconv_ones(_ones(1, 1, 5, 5), 2, (3, 3), 2, 0, 0, 3)[0, 0].numpy()
    inner = overlap_map(coprime, 5).interior
    assert (dense3[inner] > 0).all()
    assert overlap_map(coprime, 5).phase_min > 0


@st.composite
def conv_case(draw):
    nd = draw(st.integers(1, 2))
    k = draw(st.integers(1, 5))
    s = draw(st.integers(1, 4))
    d = draw(st.integers(1, 3))
    p = draw(st.integers(0, 3))
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    n = draw(st.integers(1, 9))
    groups = draw(st.sampled_from([1, 2]))
    c_out = groups * draw(st.integers(1, 2))
    return nd, k, s, p, d, mode, n, groups, c_out


@given(conv_case())
def test_conv_gradient_map_equals_autograd_of_ones(case):
    nd, k, s, p, d, mode, n, g, c_out = case
    try:
        spec = LayerSpec.conv(k, s, p, d, g, mode, in_channels=g, out_channels=c_out, ndim=nd)
        spec.output_size(n)
    except ParameterError:
        assume(False)
    conv = MODULE[nd](g, c_out, k, s, p, d, g, bias=False, padding_mode=mode).double()
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = _ones(1, g, *(n,) * nd).requires_grad_(True)
    try:
        y = conv(x)
    except RuntimeError:  # torch refuses a padding the geometry allows: nothing to compare
        assume(False)
    y.backward(torch.ones_like(y))
    m = overlap_map(spec, n)
    assert m.gradient
    assert np.array_equal(m.channel_counts, x.grad[0, 0].numpy())
    assert m.channel_factor == c_out // g


@given(
    k=st.integers(1, 4),
    s=st.integers(1, 4),
    p=st.integers(0, 2),
    n=st.integers(1, 9),
    ceil=st.booleans(),
)
def test_pool_window_coverage_equals_gradient_of_sum_pooling(k, s, p, n, ceil):
    try:
        spec = LayerSpec.avg_pool(k, s, p, ceil_mode=ceil, ndim=2)
        spec.output_size(n)
    except ParameterError:
        assume(False)
    x = _ones(1, 1, n, n).requires_grad_(True)
    y = F.avg_pool2d(x, k, s, p, ceil_mode=ceil, divisor_override=1)
    y.backward(torch.ones_like(y))
    assert np.array_equal(overlap_map(spec, n).counts, x.grad[0, 0].numpy())


@st.composite
def chain_case(draw):
    nd = draw(st.integers(1, 3))
    layers = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["conv_transpose", "conv_transpose", "conv"]))
        k = draw(st.integers(1, 3 if nd == 3 else 4))
        s = draw(st.integers(1, 3)) if kind == "conv_transpose" else 1
        p = draw(st.integers(0, 2))
        d = draw(st.integers(1, 2))
        op = draw(st.integers(0, max(s, d) - 1)) if kind == "conv_transpose" else 0
        layers.append((kind, k, s, p, d, op))
    n = draw(st.integers(1, 3 if nd == 3 else 5))
    return nd, layers, n


@given(chain_case())
def test_compound_equals_the_chain_of_torch_maps(case):
    nd, layers, n = case
    specs = []
    x = _ones(1, 1, *(n,) * nd)
    try:
        for kind, k, s, p, d, op in layers:
            if kind == "conv_transpose":
                specs.append(LayerSpec.conv_transpose(k, s, p, op, 1, d, ndim=nd))
                x = TCONV[nd](
                    x, _ones(1, 1, *(k,) * nd), stride=s, padding=p, output_padding=op, dilation=d
                )
            else:
                specs.append(LayerSpec.conv(k, 1, p, d, ndim=nd))
                x = CONV[nd](x, _ones(1, 1, *(k,) * nd), padding=p, dilation=d)
        m = compound_overlap(specs, n)
    except (ParameterError, RuntimeError):
        assume(False)
    assert np.array_equal(m.counts, x[0, 0].numpy())
    # The interior, per axis: where the count equals the unbounded one. Reference from torch
    # in 1-D (the chain is the same along every axis): a larger input shifts the output by
    # M * prod(strides); the n-D interior is the box (product) of the per-axis ones.
    big_m = 6 * sum(k * d + s + p + op for _, k, s, p, d, op in layers)
    scale = math.prod(s for kind, _, s, *_ in layers if kind == "conv_transpose")
    small, large = _ones(1, 1, n), _ones(1, 1, n + 2 * big_m)
    for kind, k, s, p, d, op in layers:
        if kind == "conv_transpose":
            kw = {"stride": s, "padding": p, "output_padding": op, "dilation": d}
            small, large = (F.conv_transpose1d(t, _ones(1, 1, k), **kw) for t in (small, large))
        else:
            small, large = (
                F.conv1d(t, _ones(1, 1, k), padding=p, dilation=d) for t in (small, large)
            )
    shift = big_m * scale
    line = small[0, 0].numpy()
    inside = line == large[0, 0, shift : shift + line.size].numpy()
    expected = inside
    for _ in range(nd - 1):
        expected = np.logical_and.outer(expected, inside)
    assert np.array_equal(m.interior, expected)


@given(
    ks=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    s=st.integers(1, 3),
    n=st.integers(6, 14),
)
def test_gradient_compound_equals_autograd_through_a_conv_stack(ks, s, n):
    specs = [LayerSpec.conv(k, s, k // 2, ndim=2) for k in ks]
    x = _ones(1, 1, n, n).requires_grad_(True)
    y = x
    try:
        for k in ks:
            y = F.conv2d(y, _ones(1, 1, k, k), stride=s, padding=k // 2)
        m = compound_overlap(specs, n, gradient=True)
    except (ParameterError, RuntimeError):
        assume(False)
    y.backward(torch.ones_like(y))
    assert np.array_equal(m.counts, x.grad[0, 0].numpy())
    assert m.shape == (n, n)


@given(tconv_case(max_nd=2), st.integers(0, 2**31 - 1))
def test_weighted_view_equals_conv_transpose_of_abs_weights(case, seed):
    nd, k, s, p, op, d, n, g, c_in, c_out = case
    spec = _spec(case)
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(c_in, c_out // g, *k, generator=gen, dtype=D64)
    v = weighted_overlap(spec, n, w)
    ref = TCONV[nd](
        _ones(1, c_in, *n), w.abs(), stride=s, padding=p, output_padding=op, dilation=d, groups=g
    )
    np.testing.assert_allclose(v.map, ref[0].numpy(), rtol=1e-12, atol=1e-12)
    # phases: every interior position of a large input holds the value of its tap phase
    big = tuple(v_ + 4 * max(s) * max(k) * max(d) for v_ in n)
    far = TCONV[nd](
        _ones(1, c_in, *big), w.abs(), stride=s, padding=p, output_padding=op, dilation=d, groups=g
    )[0].numpy()
    inner = overlap_map(spec, big).interior
    idx = np.argwhere(inner)
    period = v.phase.shape[1:]
    for pos in idx[:: max(1, len(idx) // 50)]:
        r = tuple(int(a) % t for a, t in zip(pos, period))
        np.testing.assert_allclose(
            far[(slice(None), *pos)], v.phase[(slice(None), *r)], rtol=1e-12, atol=1e-12
        )


def test_weighted_view_of_a_conv_is_the_gradient_through_abs_weights():
    torch.manual_seed(0)
    w = torch.randn(6, 2, 3, 3, dtype=D64)
    spec = LayerSpec.conv(3, stride=2, padding=1, groups=2, in_channels=4, out_channels=6)
    x = _ones(1, 4, 9, 9).requires_grad_(True)
    y = F.conv2d(x, w.abs(), stride=2, padding=1, groups=2)
    y.backward(torch.ones_like(y))
    v = weighted_overlap(spec, 9, w)
    np.testing.assert_allclose(v.map, x.grad[0].numpy(), rtol=1e-12, atol=1e-12)


def test_weighted_view_shows_a_compensated_layer():
    # a kernel 3, stride 2 layer whose middle tap carries the weight of the two outer ones:
    # both phases receive the same |weight| sum, so the weighted view is flat.
    w = torch.tensor([[[0.5, 1.0, 0.5]]], dtype=D64)
    spec = LayerSpec.conv_transpose(3, stride=2, ndim=1)
    v = weighted_overlap(spec, 8, w)
    far = F.conv_transpose1d(_ones(1, 1, 8), w.abs(), stride=2)[0, 0].numpy()
    assert np.unique(far[1:-1]).size == 1
    assert v.ratio == 1.0
    assert v.unweighted.ratio == 2.0


def test_errors_name_the_parameter():
    spec = LayerSpec.conv_transpose(3, stride=2, ndim=3)
    m = overlap_map(spec, 300)  # per-axis counts are cheap
    assert m.shape == (601, 601, 601)
    with pytest.raises(ParameterError, match="input_size"):
        _ = m.counts  # the dense 3-D map would be 1.7 GiB
    with pytest.raises(ParameterTypeError, match="spec"):
        overlap_map("conv", 4)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="chain"):
        compound_overlap([LayerSpec.conv(3, ndim=1), LayerSpec.conv(3, ndim=2)], 4)
    with pytest.raises(ParameterError, match="weight"):
        weighted_overlap(LayerSpec.conv_transpose(3, 2, ndim=1), 4, np.ones((1, 1, 4)))
    with pytest.raises(ParameterError, match="at layer 1"):
        compound_overlap([LayerSpec.conv(3, ndim=1), LayerSpec.conv(5, ndim=1)], 5)


def test_an_absurd_overlap_is_refused_before_allocating():
    """Stride 10**5 would need ~150 GiB of counts: refused with the estimate, nothing built."""
    import tracemalloc

    up = LayerSpec.conv_transpose(3, stride=100_000, ndim=2)
    tracemalloc.start()
    try:
        with pytest.raises(ParameterError, match=r"^max_bytes: expected an overlap map of at most"):
            compound_overlap([up, up], 9)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def test_max_bytes_is_the_limit_and_a_fitting_map_is_exact():
    spec = LayerSpec.conv_transpose(3, stride=2, ndim=1)
    with pytest.raises(ParameterError, match="max_bytes"):
        overlap_map(spec, 8, max_bytes=100)
    counts = overlap_map(spec, 8, max_bytes=10**6).axes[0]
    ref = F.conv_transpose1d(
        torch.ones(1, 1, 8, dtype=torch.float64),
        torch.ones(1, 1, 3, dtype=torch.float64),
        stride=2,
    )
    assert counts.tolist() == ref.flatten().long().tolist()
