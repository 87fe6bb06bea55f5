"""The explicit engine's per-layer functions against independent references: autograd of the
forward op, dense matrices built from the forward alone, and brute-force loops."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st

from convlens.deconvnet.explicit import (
    RULES,
    SUPPORTED,
    ConvState,
    PoolState,
    ReluState,
    backward_chain,
    chain_of,
    conv_backward,
    expand_state,
    forward_chain,
    layer_backward,
    layer_forward,
    max_unpool,
    relu_backward,
)
from convlens.errors import ParameterError, UnsupportedModuleError

D = torch.float64


def vjp(fn, x, signal):
    """Reference: the vector-Jacobian product of ``fn`` at ``x`` by autograd."""
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(x), x, signal)
    return g


def dense_matrix(fn, shape):
    """Reference: the matrix of a linear ``fn`` built from the forward alone (basis vectors)."""
    size = int(torch.tensor(shape).prod())
    cols = [fn(torch.eye(size, dtype=D)[i].reshape(1, *shape)).flatten() for i in range(size)]
    return torch.stack(cols, 1)


@st.composite
def conv_case(draw):
    ndim = draw(st.sampled_from([1, 2]))
    groups = draw(st.sampled_from([1, 2]))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    k = draw(st.integers(1, 4))
    s = draw(st.integers(1, 3))
    d = draw(st.integers(1, 2))
    same = draw(st.booleans()) and s == 1
    p = "same" if same else draw(st.integers(0, 2))
    size = draw(st.integers(d * (k - 1) + 1, 11))
    return ndim, cin, cout, k, s, p, d, groups, size


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@given(conv_case())
def test_conv_backward_is_the_gradient_of_the_conv(case):
    ndim, cin, cout, k, s, p, d, groups, size = case
    cls = nn.Conv1d if ndim == 1 else nn.Conv2d
    torch.manual_seed(0)
    conv = cls(cin, cout, k, stride=s, padding=p, dilation=d, groups=groups).double()
    x = torch.randn(2, cin, *([size] * ndim), dtype=D)
    y, state = layer_forward(conv, x)
    signal = torch.randn_like(y)
    got = layer_backward(conv, signal, state, "deconvnet")
    assert got.shape == x.shape
    torch.testing.assert_close(got, vjp(conv, x, signal), rtol=1e-12, atol=1e-12)


@given(conv_case())
def test_conv_backward_equals_conv_transpose_with_output_padding(case):
    ndim, cin, cout, k, s, p, d, groups, size = case
    if p == "same":
        p = 0
    cls = nn.Conv1d if ndim == 1 else nn.Conv2d
    conv = cls(cin, cout, k, stride=s, padding=p, dilation=d, groups=groups, bias=False).double()
    x = torch.randn(1, cin, *([size] * ndim), dtype=D)
    y = conv(x)
    leftover = [size + 2 * p - d * (k - 1) - 1 - (o - 1) * s for o in y.shape[2:]]
    tconv = F.conv_transpose1d if ndim == 1 else F.conv_transpose2d
    ref = tconv(y, conv.weight, None, s, p, tuple(leftover), groups, d)
    torch.testing.assert_close(conv_backward(y, conv, x.shape[2:]), ref, rtol=1e-12, atol=1e-12)


def test_conv_backward_is_the_transposed_dense_matrix():
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1, dilation=1, bias=False).double()
    shape = (2, 7, 6)
    matrix = dense_matrix(conv, shape)
    signal = torch.randn(1, *conv(torch.zeros(1, *shape, dtype=D)).shape[1:], dtype=D)
    got = conv_backward(signal, conv, shape[1:]).flatten()
    torch.testing.assert_close(got, matrix.T @ signal.flatten(), rtol=1e-12, atol=1e-12)


@st.composite
def pool_case(draw):
    ndim = draw(st.sampled_from([1, 2]))
    k = draw(st.integers(1, 4))
    s = draw(st.integers(1, 3))
    p = draw(st.integers(0, k // 2))
    d = draw(st.integers(1, 2))
    ceil = draw(st.booleans())
    size = draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 10))
    return ndim, k, s, p, d, ceil, size


@given(pool_case(), st.booleans())
def test_max_unpool_is_the_gradient_of_max_pool(case, after_relu):
    ndim, k, s, p, d, ceil, size = case
    cls = nn.MaxPool1d if ndim == 1 else nn.MaxPool2d
    pool = cls(k, s, p, d, ceil_mode=ceil)
    x = torch.randn(2, 3, *([size] * ndim), dtype=D)
    if after_relu:  # many ties at zero
        x = F.relu(x)
    try:
        y, state = layer_forward(pool, x)
    except RuntimeError:  # PyTorch refuses this geometry
        assume(False)
    assume(bool(torch.isfinite(y).all()))  # a window over padding only: PyTorch's own bug
    signal = torch.randn_like(y)
    got = layer_backward(pool, signal, state, "deconvnet")
    torch.testing.assert_close(got, vjp(pool, x, signal), rtol=1e-12, atol=1e-12)


def test_max_unpool_adds_repeated_switches_like_a_loop_and_deterministically():
    torch.manual_seed(1)
    x = torch.randn(2, 4, 13, 13, dtype=D)
    pool = nn.MaxPool2d(3, 2, ceil_mode=True)  # AlexNet's overlapping windows
    y, state = layer_forward(pool, x)
    signal = torch.randn_like(y)
    ref = torch.zeros(2, 4, 13 * 13, dtype=D)
    flat_idx, flat_sig = state.indices.flatten(2), signal.flatten(2)
    for n, c, j in itertools.product(range(2), range(4), range(flat_idx.shape[2])):
        ref[n, c, flat_idx[n, c, j]] += flat_sig[n, c, j]
    rows = state.indices.flatten(2).reshape(8, -1).tolist()
    assert any(len(set(row)) < len(row) for row in rows)  # repeats do occur
    results = [layer_backward(pool, signal, state, "deconvnet") for _ in range(3)]
    torch.testing.assert_close(results[0], ref.reshape(x.shape), rtol=1e-13, atol=1e-13)
    assert all(torch.equal(results[0], r) for r in results[1:])
    scattered = F.max_unpool2d(signal, state.indices, 2, output_size=x.shape[2:])
    assert not torch.allclose(scattered, results[0])  # scatter keeps one repeat only


def test_max_unpool_docstring_case_sums():
    out = max_unpool(torch.tensor([[[1.0, 2.0]]]), torch.tensor([[[1, 1]]]), (3,), (2,))
    assert out.tolist() == [[[0.0, 3.0, 0.0]]]


@given(pool_case(), st.booleans())
def test_avg_unpool_is_the_transposed_dense_matrix(case, include_pad):
    ndim, k, s, p, _, ceil, size = case
    cls = nn.AvgPool1d if ndim == 1 else nn.AvgPool2d
    pool = cls(k, s, p, ceil_mode=ceil, count_include_pad=include_pad)
    shape = (1, *([min(size, 7)] * ndim))
    try:
        matrix = dense_matrix(pool, shape)
    except RuntimeError:  # PyTorch refuses this geometry
        assume(False)
    y, state = layer_forward(pool, torch.randn(1, *shape, dtype=D))
    signal = torch.randn_like(y)
    got = layer_backward(pool, signal, state, "deconvnet").flatten()
    torch.testing.assert_close(got, matrix.T @ signal.flatten(), rtol=1e-12, atol=1e-12)


def test_batchnorm_backward_is_its_linear_part():
    bn = nn.BatchNorm2d(3).double().eval()
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.3, 2.0)
    bn.weight.data.normal_()
    bn.bias.data.normal_()
    x = torch.randn(2, 3, 4, 5, dtype=D)
    y, state = layer_forward(bn, x)
    torch.testing.assert_close(y, bn(x))
    signal = torch.randn_like(y)
    got = layer_backward(bn, signal, state, "guided")
    torch.testing.assert_close(got, vjp(bn, x, signal), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("module", [nn.Dropout(0.5), nn.Identity(), nn.Dropout2d()])
def test_pass_through_layers(module):
    x = torch.randn(2, 3, 4, 4, dtype=D)
    y, state = layer_forward(module, x)
    assert torch.equal(y, x)
    assert torch.equal(layer_backward(module, x, state, "deconvnet"), x)


@given(st.lists(st.floats(-5, 5), min_size=1, max_size=8), st.data())
def test_relu_rules_elementwise(signal_values, data):
    signal = torch.tensor(signal_values, dtype=D)
    x = torch.tensor(
        data.draw(
            st.lists(st.floats(-5, 5), min_size=len(signal_values), max_size=len(signal_values))
        ),
        dtype=D,
    )
    _, state = layer_forward(nn.ReLU(inplace=True), x.clone())
    for rule in RULES:
        got = relu_backward(signal, state.positive, rule)
        for g, sv, xv in zip(got.tolist(), signal_values, x.tolist()):
            expected = {
                "deconvnet": max(sv, 0.0),
                "guided": max(sv, 0.0) if xv > 0 else 0.0,
                "gradient": sv if xv > 0 else 0.0,
            }[rule]
            assert g == expected


def test_relu_gradient_rule_matches_autograd():
    x = torch.randn(3, 5, dtype=D)
    signal = torch.randn(3, 5, dtype=D)
    _, state = layer_forward(nn.ReLU(), x)
    got = layer_backward(nn.ReLU(), signal, state, "gradient")
    torch.testing.assert_close(got, vjp(F.relu, x, signal))


def test_inplace_relu_forward_leaves_input_alone():
    x = torch.randn(2, 3, dtype=D)
    before = x.clone()
    layer_forward(nn.ReLU(inplace=True), x)
    assert torch.equal(x, before)


def test_expand_state_repeats_rows_sample_major():
    positive = torch.tensor([[True, False], [False, True]])
    idx = torch.tensor([[[0]], [[1]]])
    assert (
        expand_state(ReluState(positive), 3).positive.tolist()
        == [[True, False]] * 3 + [[False, True]] * 3
    )
    assert expand_state(PoolState(idx, (2,)), 2).indices.flatten().tolist() == [0, 0, 1, 1]
    assert expand_state(ConvState((4,)), 5) == ConvState((4,))
    assert expand_state(None, 5) is None


def test_backward_chain_with_targets_batched_equals_one_at_a_time():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Conv2d(4, 3, 2))
    chain = chain_of(net.double())
    x = torch.randn(2, 2, 12, 12, dtype=D)
    outputs, states = forward_chain(chain, x, 3)
    signals = torch.randn(2, 3, *outputs[3].shape[1:], dtype=D)  # T = 3 per sample
    batched = backward_chain(chain, signals.reshape(6, *outputs[3].shape[1:]), states, 3, "guided")
    for t in range(3):
        single = backward_chain(chain, signals[:, t], states, 3, "guided")
        torch.testing.assert_close(batched.reshape(2, 3, *x.shape[1:])[:, t], single)


def test_chain_of_paths_match_named_modules():
    net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Sequential(nn.ReLU(), nn.MaxPool1d(2)))
    names = dict(net.named_modules())
    chain = chain_of(net)
    assert [p for p, _ in chain] == ["0", "1.0", "1.1"]
    assert all(names[p] is m for p, m in chain)
    vgg_like = nn.Module()
    vgg_like.features = nn.Sequential(nn.Conv2d(1, 1, 1))
    assert [p for p, _ in chain_of(vgg_like)] == ["features.0"]
    assert [p for p, _ in chain_of([nn.ReLU(), nn.Identity()])] == ["0", "1"]


def test_unsupported_module_error_names_path_type_and_supported():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh())
    with pytest.raises(
        UnsupportedModuleError,
        match=r"module '1': expected one of .*Conv2d.*"
        r"MaxPool2d.*for the explicit deconvnet, received Tanh",
    ):
        forward_chain(chain_of(net), torch.randn(1, 1, 5, 5), 1)
    assert "BatchNorm2d" in SUPPORTED
    assert "AvgPool1d" in SUPPORTED
    reflect = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(UnsupportedModuleError, match="padding_mode='reflect'"):
        forward_chain(chain_of(reflect), torch.randn(1, 1, 5, 5), 0)
    with pytest.raises(ParameterError, match="rule: expected one of deconvnet, guided, gradient"):
        backward_chain(chain_of(net), torch.randn(1, 2, 3, 3), [None, None], 0, "lrp")
