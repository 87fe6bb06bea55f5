"""The index engine (convlens.index, convlens.arithmetic.layer_triples) against independent
references: a brute-force loop over np.pad's index mapping, and the Jacobians of nn.ConvNd
(every padding mode), F.conv_transposeNd and the pooling functions, in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from convlens.arithmetic import LayerSpec, layer_triples
from convlens.errors import ParameterError, ParameterTypeError
from convlens.index import (
    PADDING_MODES,
    axis_triples,
    conv_entries,
    count_axis_triples,
    grid_triples,
)

NP_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}
CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def brute_axis(n, k, s, lo, hi, d, mode, m):
    """Every (o, tap) read by loops, the input position from np.pad's own index mapping."""
    padded = (
        np.pad(np.arange(n), (lo, hi), constant_values=-1)
        if mode == "zeros"
        else np.pad(np.arange(n), (lo, hi), mode=NP_MODE[mode])
    )
    out = []
    for o in range(m):
        for t in range(k):
            q = o * s + t * d
            i = int(padded[q]) if q < padded.size else -1
            if i >= 0:
                out.append((o, t, i))
    return out


@st.composite
def axis_case(draw):
    mode = draw(st.sampled_from(PADDING_MODES))
    k, s, d = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    lo, hi = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    low = max(1, d * (k - 1) + 1 - lo - hi)
    if mode == "reflect":
        low = max(low, lo + 1, hi + 1)
    if mode == "circular":
        low = max(low, lo, hi)
    n = draw(st.integers(low, low + 8))
    return n, k, s, (lo, hi), d, mode


@given(axis_case())
def test_axis_triples_equal_brute_force(case):
    n, k, s, pad, d, mode = case
    t = axis_triples(n, k, s, pad, d, mode)
    natural = (n + pad[0] + pad[1] - d * (k - 1) - 1) // s + 1
    assert (t.out_length, t.in_length, t.kernel) == (natural, n, k)
    got = list(zip(t.out.tolist(), t.tap.tolist(), t.inp.tolist()))
    assert got == brute_axis(n, k, s, *pad, d, mode, natural)
    assert all(a.dtype == np.int64 and not a.flags.writeable for a in (t.out, t.tap, t.inp))


@given(axis_case(), st.integers(-3, 3))
def test_axis_triples_out_length_keeps_or_adds_outputs(case, delta):
    n, k, s, pad, d, mode = case
    natural = (n + pad[0] + pad[1] - d * (k - 1) - 1) // s + 1
    m = max(1, natural + delta)
    if mode != "zeros" and m > natural:
        with pytest.raises(ParameterError, match="out_length"):
            axis_triples(n, k, s, pad, d, mode, out_length=m)
        return
    t = axis_triples(n, k, s, pad, d, mode, out_length=m)
    got = list(zip(t.out.tolist(), t.tap.tolist(), t.inp.tolist()))
    assert got == brute_axis(n, k, s, *pad, d, mode, m)


@given(axis_case(), st.integers(-3, 3))
def test_count_axis_triples_is_the_brute_force_count(case, delta):
    n, k, s, pad, d, mode = case
    natural = (n + pad[0] + pad[1] - d * (k - 1) - 1) // s + 1
    m = max(1, natural + delta)
    if mode != "zeros":
        m = min(m, natural)
    got = count_axis_triples(n, k, s, pad, d, mode, out_length=m)
    assert got == len(brute_axis(n, k, s, *pad, d, mode, m))
    assert got == len(axis_triples(n, k, s, pad, d, mode, out_length=m))


def test_count_axis_triples_of_huge_axes_in_closed_form():
    # no padding: every output reads all k taps
    assert count_axis_triples(10**15, 3, 7) == ((10**15 - 3) // 7 + 1) * 3
    assert count_axis_triples(10**18, 10**17, 3) == ((10**18 - 10**17) // 3 + 1) * 10**17
    # 'same' padding p = (k-1)/2, stride 1: each border loses 1 + 2 + ... + p taps
    for k in (3, 5, 7):
        p = (k - 1) // 2
        assert count_axis_triples(10**15, k, 1, (p, p)) == k * 10**15 - p * (p + 1)
        assert count_axis_triples(10, k, 1, (p, p)) == len(
            brute_axis(10, k, 1, p, p, 1, "zeros", 10)
        )
    # the arguments are checked as axis_triples checks them
    with pytest.raises(ParameterError, match="kernel: expected an effective kernel"):
        count_axis_triples(3, 5)


def test_axis_triples_is_cached():
    assert axis_triples(7, 3, 2, (1, 1)) is axis_triples(7, 3, 2, (1, 1))


@pytest.mark.parametrize(
    ("kwargs", "error", "param"),
    [
        ({"in_length": 0, "kernel": 3}, ParameterError, "in_length"),
        ({"in_length": True, "kernel": 3}, ParameterTypeError, "in_length"),
        ({"in_length": 5, "kernel": 2.0}, ParameterTypeError, "kernel"),
        ({"in_length": 5, "kernel": 3, "stride": 0}, ParameterError, "stride"),
        ({"in_length": 5, "kernel": 3, "padding": (1, -1)}, ParameterError, "padding"),
        ({"in_length": 5, "kernel": 3, "padding": 1}, ParameterError, "padding"),
        ({"in_length": 5, "kernel": 3, "padding_mode": "same"}, ParameterError, "padding_mode"),
        ({"in_length": 2, "kernel": 5}, ParameterError, "kernel"),
        (
            {"in_length": 2, "kernel": 3, "padding": (2, 2), "padding_mode": "reflect"},
            ParameterError,
            "padding",
        ),
    ],
)
def test_axis_triples_errors_name_the_parameter(kwargs, error, param):
    with pytest.raises(error) as exc:
        axis_triples(**kwargs)
    assert str(exc.value).startswith(f"{param}: expected ")


# --------------------------------------------------------------------------- against torch


def dense_from_entries(entries, weight):
    c = torch.zeros(entries.shape, dtype=torch.float64)
    w = weight.reshape(-1)
    c.index_put_(
        (torch.tensor(entries.out), torch.tensor(entries.inp)),
        w[torch.tensor(entries.weight_index)],
        accumulate=True,
    )
    return c


@st.composite
def conv_module_case(draw):
    n = draw(st.integers(1, 3))
    mode = draw(st.sampled_from(PADDING_MODES))
    groups = draw(st.integers(1, 2))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    k = tuple(draw(st.integers(1, 3)) for _ in range(n))
    s = tuple(draw(st.integers(1, 2)) for _ in range(n))
    d = tuple(draw(st.integers(1, 2)) for _ in range(n))
    p = tuple(draw(st.integers(0, 2)) for _ in range(n))
    side = {1: 7, 2: 5, 3: 4}[n]
    size = []
    for j in range(n):
        low = max(1, d[j] * (k[j] - 1) + 1 - 2 * p[j], p[j] + 1 if mode != "zeros" else 1)
        size.append(draw(st.integers(low, max(low, side))))
    return n, mode, groups, c_in, c_out, k, s, d, p, tuple(size)


@given(conv_module_case())
def test_layer_triples_of_a_conv_are_nn_convs_jacobian(case):
    n, mode, groups, c_in, c_out, k, s, d, p, size = case
    torch.manual_seed(0)
    conv = CONV[n](c_in, c_out, k, s, p, d, groups, bias=False, padding_mode=mode).double()
    spec = LayerSpec.from_module(conv)
    entries = conv_entries(grid_triples(layer_triples(spec, size)), c_in, c_out, groups)
    x = torch.zeros(1, c_in, *size, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: conv(v).reshape(-1), x).reshape(
        -1, x.numel()
    )
    assert entries.shape == tuple(jac.shape)
    torch.testing.assert_close(dense_from_entries(entries, conv.weight.detach()), jac)


@st.composite
def transpose_case(draw):
    n = draw(st.integers(1, 3))
    k = tuple(draw(st.integers(1, 3)) for _ in range(n))
    s = tuple(draw(st.integers(1, 3)) for _ in range(n))
    d = tuple(draw(st.integers(1, 2)) for _ in range(n))
    p = tuple(draw(st.integers(0, 2)) for _ in range(n))
    op = tuple(draw(st.integers(0, max(s[j], d[j]) - 1)) for j in range(n))
    size = tuple(draw(st.integers(1, {1: 6, 2: 4, 3: 3}[n])) for _ in range(n))
    return n, k, s, d, p, op, size


@given(transpose_case())
def test_layer_triples_of_a_transposed_conv_are_its_jacobian(case):
    n, k, s, d, p, op, size = case
    spec = LayerSpec.conv_transpose(k, s, p, op, 1, d, ndim=n)
    try:
        out = spec.output_size(size)
    except ParameterError:  # padding leaves no output: nothing to compare
        return
    torch.manual_seed(1)
    w = torch.randn(1, 1, *k, dtype=torch.float64)
    x = torch.zeros(1, 1, *size, dtype=torch.float64)

    def f(v):
        return CONV_T[n](v, w, stride=s, padding=p, output_padding=op, dilation=d).reshape(-1)

    jac = torch.autograd.functional.jacobian(f, x).reshape(-1, x.numel())  # (out, in)
    axes = layer_triples(spec, size)
    assert tuple(a.in_length for a in axes) == out
    assert tuple(a.out_length for a in axes) == size
    entries = conv_entries(grid_triples(axes))  # the adjoint conv: (transposed input, output)
    torch.testing.assert_close(dense_from_entries(entries, w).T, jac)


@st.composite
def pool_case(draw):
    n = draw(st.integers(1, 3))
    k = tuple(draw(st.integers(1, 3)) for _ in range(n))
    s = tuple(draw(st.integers(1, 3)) for _ in range(n))
    p = tuple(draw(st.integers(0, kk // 2)) for kk in k)
    d = tuple(draw(st.integers(1, 2)) for _ in range(n))
    ceil = draw(st.booleans())
    size = tuple(draw(st.integers(max(1, d[j] * (k[j] - 1) + 1 - 2 * p[j]), 7)) for j in range(n))
    return n, k, s, p, d, ceil, size


@given(pool_case())
def test_layer_triples_of_max_pooling_are_its_windows(case):
    n, k, s, p, d, ceil, size = case
    spec = LayerSpec.max_pool(k, s, p, d, ceil, ndim=n)
    g = grid_triples(layer_triples(spec, size))
    x = torch.randperm(math.prod(size), generator=torch.Generator().manual_seed(2))
    x = x.double().reshape(1, 1, *size)
    ref = MAX_POOL[n](x, k, s, p, d, ceil_mode=ceil).reshape(-1)
    assert g.out_shape == spec.output_size(size)
    flat = x.reshape(-1).numpy()
    got = np.full(math.prod(g.out_shape), -np.inf)
    np.maximum.at(got, g.out, flat[g.inp])
    np.testing.assert_array_equal(got, ref.numpy())


@given(pool_case())
def test_layer_triples_of_avg_pooling_are_its_jacobians_support(case):
    n, k, s, p, _, ceil, size = case
    if n == 3 and any(i < kk for i, kk in zip(size, k)):
        return  # PyTorch's 3-D average pooling refuses a kernel larger than the input
    spec = LayerSpec.avg_pool(k, s, p, ceil, ndim=n)
    g = grid_triples(layer_triples(spec, size))
    x = torch.zeros(1, 1, *size, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(
        lambda v: AVG_POOL[n](v, k, s, p, ceil_mode=ceil).reshape(-1), x
    ).reshape(-1, x.numel())
    support = np.zeros(tuple(jac.shape), dtype=bool)
    support[g.out, g.inp] = True
    np.testing.assert_array_equal(support, (jac != 0).numpy())


def test_transposed_overlap_count_is_the_contract_example():
    (t,) = layer_triples(LayerSpec.conv_transpose(3, stride=2, ndim=1), 3)
    ones = F.conv_transpose1d(
        torch.ones(1, 1, 3, dtype=torch.float64), torch.ones(1, 1, 3, dtype=torch.float64), stride=2
    )
    counts = np.bincount(t.inp, minlength=t.in_length)
    np.testing.assert_array_equal(counts, ones.reshape(-1).numpy())


def test_layer_triples_refuses_a_non_spec():
    with pytest.raises(ParameterTypeError, match="spec: expected a LayerSpec"):
        layer_triples((3, 3), 5)  # type: ignore[arg-type]
