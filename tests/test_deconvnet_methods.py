"""``project``'s faster paths equal its full-size reference exactly (float64).

- ``method="crop" | "cone" | "auto"`` for unit targets (given positions and ``"max"``) against
  ``method="full"``, on hypothesis-drawn odd geometries and AlexNet / VGG16 units at the
  border and in the interior; the full-size explicit engine itself is checked against
  autograd (the rules engine and plain ``torch.autograd.grad``) in test_deconvnet_engines.py
  and below.
- The full-size reversed pass in batches sized to ``memory_budget`` against one batch, and
  against plain autograd one target at a time.
- The unpooling by switch grid against autograd's max-pool gradient and the scatter unpooling,
  with states broadcast over T rows.
"""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torchvision.models import alexnet, vgg16

from convlens.deconvnet import RULES, Target, project
from convlens.deconvnet.explicit import (
    PoolState,
    expand_state,
    layer_backward,
    layer_forward,
    max_unpool,
    with_switch_grid,
)
from convlens.errors import ParameterError, ParameterTypeError

D = torch.float64
PROJECT = sys.modules["convlens.deconvnet.project"]


def _output(net: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    seen = []
    handle = dict(net.named_modules())[layer].register_forward_hook(
        lambda m, a, o: seen.append(o.clone())
    )
    with torch.no_grad():
        (net.features if hasattr(net, "features") else net)(x)
    handle.remove()
    return seen[0]


def _unit_targets(y: torch.Tensor, layer: str, count: int, seed: int) -> list[Target]:
    """Corners of the map (borders), the strongest unit, and random units."""
    g = torch.Generator().manual_seed(seed)
    spatial = tuple(y.shape[2:])
    out = [
        Target(layer, 0, tuple(0 for _ in spatial)),
        Target(layer, y.shape[1] - 1, tuple(s - 1 for s in spatial)),
        Target(layer, int(torch.randint(0, y.shape[1], (1,), generator=g))),  # "max"
    ]
    for _ in range(count):
        pos = tuple(int(torch.randint(0, s, (1,), generator=g)) for s in spatial)
        out.append(Target(layer, int(torch.randint(0, y.shape[1], (1,), generator=g)), pos))
    return out


def assert_methods_equal_full(net, x, targets, rule, methods=("crop", "cone", "auto")):
    full = project(net, x, targets, rule=rule, engine="explicit", method="full")
    assert full.methods == ("full",) * len(targets)
    scale = float(full.projections.abs().max()) + 1e-300
    for method in methods:
        got = project(net, x, targets, rule=rule, engine="explicit", method=method)
        if method != "auto":
            assert got.methods == (method,) * len(targets)
        else:  # auto picks among the methods that share the full-size forward pass
            assert set(got.methods) <= {"cone", "full"}
        torch.testing.assert_close(
            got.projections, full.projections, rtol=1e-10, atol=1e-12 * scale
        )
        torch.testing.assert_close(got.values, full.values, rtol=1e-12, atol=1e-12)
        assert torch.equal(got.positions, full.positions)
    return full


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@settings(max_examples=12, deadline=None)
@given(
    k1=st.integers(1, 4),
    s1=st.integers(1, 3),
    d1=st.integers(1, 2),
    p1=st.integers(0, 3),
    pk=st.integers(2, 3),
    ps=st.integers(1, 3),
    pp=st.integers(0, 1),
    ceil=st.booleans(),
    k2=st.integers(1, 3),
    s2=st.integers(1, 2),
    p2=st.integers(0, 2),
    groups=st.sampled_from([1, 2]),
    h=st.integers(14, 22),
    w=st.integers(14, 22),
    rule=st.sampled_from(RULES),
    seed=st.integers(0, 1000),
)
def test_crop_and_cone_equal_full_on_odd_geometries(
    k1, s1, d1, p1, pk, ps, pp, ceil, k2, s2, p2, groups, h, w, rule, seed
):
    torch.manual_seed(seed)
    pp = min(pp, pk // 2)
    bn = nn.BatchNorm2d(4)
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    net = nn.Sequential(
        nn.Conv2d(2, 4, k1, stride=s1, padding=p1, dilation=d1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(pk, ps, padding=pp, ceil_mode=ceil),
        bn,
        nn.Conv2d(4, 4, k2, stride=s2, padding=p2, groups=groups),
        nn.ReLU(),
        nn.Dropout(),
        nn.Conv2d(4, 3, 2, padding="same"),
    ).double()
    x = torch.randn(2, 2, h, w, dtype=D)
    try:
        _output(net, x, "7")
    except RuntimeError:  # a geometry too small for this input: nothing to compare
        assume(False)
    for layer in ("2", "5", "7"):
        y = _output(net, x, layer)
        assert_methods_equal_full(net, x, _unit_targets(y, layer, 3, seed), rule)


def test_crop_and_cone_equal_full_1d_every_unit():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv1d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool1d(3, 2, padding=1, dilation=2, ceil_mode=True),
        nn.Conv1d(3, 2, 5, stride=2, padding=4, dilation=2),
    ).double()
    x = torch.randn(3, 1, 29, dtype=D)
    y = _output(net, x, "3")
    targets = [Target("3", c, (p,)) for c in range(2) for p in range(y.shape[2])]
    assert_methods_equal_full(net, x, targets, "guided")


@pytest.mark.parametrize("layer", ["features.4", "features.7", "features.12"])
def test_crop_and_cone_equal_full_on_alexnet(layer):
    torch.manual_seed(1)
    net = alexnet().double()
    x = torch.randn(2, 3, 99, 99, dtype=D)
    y = _output(net, x, layer)
    assert_methods_equal_full(net, x, _unit_targets(y, layer, 3, 2), "deconvnet")


@pytest.mark.parametrize(("layer", "size"), [("features.15", 56), ("features.16", 40)])
def test_crop_and_cone_equal_full_on_vgg16(layer, size):
    torch.manual_seed(2)
    net = vgg16().features[:17].double()  # conv3_3's ReLU, pool3
    x = torch.randn(2, 3, size, size, dtype=D)
    y = _output(net, x, layer.split(".")[1])
    targets = _unit_targets(y, layer.split(".")[1], 3, 3)
    full = assert_methods_equal_full(net, x, targets, "guided")
    # a unit's projection is zero outside its receptive field (40x40 at conv3_3): the interior
    # unit at (5, 6) of the 14x14 map on 56x56 has its box inside the image
    assert full.projections.abs().sum() > 0


def test_auto_picks_the_cone_where_windows_are_smaller_and_full_otherwise():
    torch.manual_seed(3)
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3, padding=4)
    ).double()
    x = torch.randn(1, 1, 32, 32, dtype=D)
    out = project(net, x, [Target("1", 0), Target("3", 1), Target("1", 1, "map")])
    # ReLU "1": windows 3x3 of 32x32; conv "3": 3x3 of its 16x16 input, 8x8 at the input
    assert out.methods == ("cone", "cone", "full")
    assert out.method == "cone+full"
    # AlexNet's conv5 on a 67x67 input: the cone's windows (with padding) exceed the maps
    net = alexnet().double()
    x = torch.randn(1, 3, 67, 67, dtype=D)
    assert project(net, x, Target("features.10", 3)).methods == ("full",)
    assert project(net, x, Target("features.1", 3)).methods == ("cone",)


def test_rules_engine_runs_full_and_refuses_crop():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Conv2d(2, 2, 3), nn.ReLU()).double()
    x = torch.randn(1, 1, 9, 9, dtype=D)
    assert project(net, x, Target("3", 0)).methods == ("full",)
    with pytest.raises(ParameterError, match="method: expected 'full' or 'auto' with the rules"):
        project(net, x, Target("3", 0), method="cone")


def test_method_errors():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2), nn.ReLU()).double()
    x = torch.randn(1, 1, 10, 10, dtype=D)
    with pytest.raises(ParameterError, match="method: expected one of auto, crop, cone, full"):
        project(net, x, Target("2", 0), method="fast")
    with pytest.raises(ParameterError, match=r"method: expected 'full' or 'auto' for layer '2'"):
        project(net, x, Target("2", 0), method="crop")
    assert project(net, x, Target("2", 0)).methods == ("full",)  # auto: average pool
    with pytest.raises(ParameterError, match="method: expected 'full' or 'auto' for whole-map"):
        project(net, x, Target("0", 0, "map"), method="cone")
    with pytest.raises(ParameterError, match=r"position: expected indices into the map \(8, 8\)"):
        project(net, x, Target("0", 0, (8, 1)), method="crop")
    with pytest.raises(ParameterError, match="position: expected 2 indices"):
        project(net, x, Target("0", 0, (1,)), method="crop")
    with pytest.raises(ParameterTypeError, match="memory_budget: expected a number of bytes"):
        project(net, x, Target("0", 0), memory_budget=1.5)
    with pytest.raises(ParameterError, match="memory_budget: expected a positive"):
        project(net, x, Target("0", 0), memory_budget=0)


def test_a_budget_too_small_for_one_row_is_refused_with_the_estimate():
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU()).double()
    x = torch.randn(1, 1, 16, 16, dtype=D)
    # one row: conv input 256 + output 2048 samples, twice, 8 bytes each = 36864 bytes, plus
    # the conv's input shape in the scratch buffer, 256 x 8 = 2048 bytes
    with pytest.raises(ParameterError, match=r"memory_budget: expected at least 38912 bytes"):
        project(net, x, Target("0", 0, "map"), memory_budget=38911)
    project(net, x, Target("0", 0, "map"), memory_budget=38912)


def test_full_size_batches_sized_to_the_budget_equal_one_batch_and_autograd(monkeypatch):
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 5, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
    ).double()
    x = torch.randn(3, 2, 20, 20, dtype=D)
    targets = [Target("5", c, "map") for c in range(5)] + [Target("4", 1), Target("4", 2, (0, 9))]
    calls = []
    real = PROJECT.backward_chain

    def counting(chain, signal, states, start, rule, scratch=None):
        calls.append(signal.shape[0])
        return real(chain, signal, states, start, rule, scratch)

    monkeypatch.setattr(PROJECT, "backward_chain", counting)
    one = project(net, x, targets, rule="gradient", method="full")
    assert calls == [15, 6]  # one batch per layer: N x T rows
    calls.clear()
    # the largest layer (the first ReLU) plus the scratch of the largest conv input (2 x 400)
    per_row = 2 * 8 * (6 * 400 + 6 * 400) + 8 * 2 * 400
    small = project(net, x, targets, rule="gradient", method="full", memory_budget=2 * per_row)
    assert max(calls) <= 2
    assert sum(calls) == 21
    torch.testing.assert_close(small.projections, one.projections, rtol=1e-13, atol=1e-13)
    calls.clear()
    images = project(net, x, targets, rule="gradient", method="full", memory_budget=per_row * 4)
    assert max(calls) <= 4
    torch.testing.assert_close(images.projections, one.projections, rtol=1e-13, atol=1e-13)
    # the reference: plain autograd, one target at a time
    xr = x.clone().requires_grad_(True)
    outs = {}
    y = xr
    for i, m in enumerate(net):
        y = m(y)
        outs[str(i)] = y
    for t, target in enumerate(targets):
        act = outs[target.layer]
        signal = torch.zeros_like(act)
        for n in range(3):
            if target.position == "map":
                signal[n, target.channel] = act[n, target.channel].detach()
            else:
                pos = tuple(one.positions[n, t].tolist())
                signal[(n, target.channel, *pos)] = act[(n, target.channel, *pos)].detach()
        (grad,) = torch.autograd.grad(act, xr, signal, retain_graph=True)
        torch.testing.assert_close(one.projections[:, t], grad, rtol=1e-12, atol=1e-13)


@st.composite
def pool_case(draw):
    ndim = draw(st.sampled_from([1, 2, 3]))
    k = draw(st.integers(1, 3))
    d = draw(st.integers(1, 2))
    s = draw(st.integers(d * (k - 1) + 1, d * (k - 1) + 2))  # windows never overlap
    p = draw(st.integers(0, k // 2))
    ceil = draw(st.booleans())
    size = draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 9 if ndim < 3 else 5))
    return ndim, k, s, p, d, ceil, size, draw(st.integers(1, 3))


@settings(max_examples=40, deadline=None)
@given(pool_case(), st.booleans())
def test_switch_unpool_is_the_gradient_of_max_pool_for_every_target_row(case, after_relu):
    ndim, k, s, p, d, ceil, size, times = case
    pool = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)[ndim - 1](k, s, p, d, ceil_mode=ceil)
    x = torch.randn(2, 3, *([size] * ndim), dtype=D)
    if after_relu:  # many ties at zero
        x = F.relu(x)
    try:
        y, state = layer_forward(pool, x)
    except RuntimeError:  # PyTorch refuses this geometry
        assume(False)
    assume(bool(torch.isfinite(y).all()))  # a window over padding only
    assert state.switches is None
    state = with_switch_grid(pool, state)
    assert state.switches is not None  # non-overlapping windows: the switch grid path
    signal = torch.randn(2 * times, *y.shape[1:], dtype=D)
    got = layer_backward(pool, signal, state, "deconvnet")  # states broadcast over T rows
    scatter = max_unpool(signal, state.indices, state.input_size, (1,) * ndim)
    repeated = layer_backward(pool, signal, expand_state(state, times), "deconvnet")
    xr = x.repeat_interleave(times, 0).requires_grad_(True)
    (ref,) = torch.autograd.grad(pool(xr), xr, signal)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    torch.testing.assert_close(scatter, ref, rtol=0, atol=0)
    torch.testing.assert_close(repeated, ref, rtol=0, atol=0)


def test_overlapping_pools_keep_the_scatter_and_broadcast_their_indices():
    torch.manual_seed(5)
    pool = nn.MaxPool2d(3, 2, ceil_mode=True)  # AlexNet's overlapping windows
    x = torch.randn(2, 4, 13, 13, dtype=D)
    y, state = layer_forward(pool, x)
    assert with_switch_grid(pool, state).switches is None
    signal = torch.randn(6, *y.shape[1:], dtype=D)
    got = layer_backward(pool, signal, state, "deconvnet")
    xr = x.repeat_interleave(3, 0).requires_grad_(True)
    (ref,) = torch.autograd.grad(pool(xr), xr, signal)
    torch.testing.assert_close(got, ref, rtol=1e-13, atol=1e-13)
    bad = PoolState(state.indices, state.input_size)
    with pytest.raises(ParameterError, match="signal: expected a multiple of the 2 rows"):
        layer_backward(pool, signal[:5], bad, "deconvnet")


@pytest.mark.parametrize("rule", RULES)
def test_backward_chain_never_writes_the_callers_signal(rule):
    from convlens.deconvnet.explicit import backward_chain, chain_of, forward_chain

    torch.manual_seed(6)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Dropout(), nn.Identity()).double()
    chain = chain_of(net.eval())
    x = torch.randn(2, 1, 7, 7, dtype=D)
    outputs, states = forward_chain(chain, x, 3)
    signal = torch.randn(4, *outputs[3].shape[1:], dtype=D)  # two targets per input
    before = signal.clone()
    got = backward_chain(chain, signal, states, 3, rule)
    assert torch.equal(signal, before)
    xr = x.repeat_interleave(2, 0).requires_grad_(True)
    pre = net[0](xr)
    if rule == "gradient":
        (ref,) = torch.autograd.grad(F.relu(pre), xr, before)
    else:
        g = before.clamp(min=0) * ((pre > 0).to(D) if rule == "guided" else 1.0)
        (ref,) = torch.autograd.grad(pre, xr, g)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-13)
