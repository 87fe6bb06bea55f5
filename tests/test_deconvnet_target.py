"""Targets, the zero-all-but-one signal, the Projection layout, display stretching, and the
errors for bad layers, channels and positions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given
from hypothesis import strategies as st

from convlens.deconvnet import Target, project, stretch, to_image
from convlens.deconvnet.target import select
from convlens.errors import ParameterError, ParameterTypeError

D = torch.float64


def test_target_validation_messages():
    assert Target("a", 1, [2, 3]).position == (2, 3)
    with pytest.raises(ParameterError, match="channel: expected a non-negative int, received -1"):
        Target("a", -1)
    with pytest.raises(ParameterTypeError, match="channel: expected a non-negative int"):
        Target("a", 1.5)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="position: expected 'max', 'map' or a tuple"):
        Target("a", 1, "top")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match=r"position: expected .*non-negative ints"):
        Target("a", 1, (1, -2))


@given(
    st.integers(1, 3),
    st.integers(1, 4),
    st.lists(st.integers(1, 4), min_size=0, max_size=2),
    st.integers(0, 1000),
)
def test_select_matches_brute_force(n, c, spatial, seed):
    gen = torch.Generator().manual_seed(seed)
    act = torch.randint(-3, 4, (n, c, *spatial), generator=gen).to(D)  # ties on purpose
    targets = [Target("l", c - 1), Target("l", 0, "map")]
    if spatial:
        targets.append(Target("l", c // 2, tuple(s - 1 for s in spatial)))
    signal, values, positions = select(act, targets)
    signal = signal.reshape(n, len(targets), *act.shape[1:])
    for i, (k, target) in itertools.product(range(n), enumerate(targets)):
        expected = torch.zeros_like(act[i])
        fmap = act[i, target.channel]
        if target.position == "map":
            expected[target.channel] = fmap
            assert values[i, k] == fmap.sum()
            assert positions[i, k].tolist() == [-1] * len(spatial)
        else:
            cells = list(itertools.product(*[range(s) for s in spatial]))
            if target.position == "max":
                best = max(fmap[cell].item() for cell in cells)
                pos = next(cell for cell in cells if fmap[cell].item() == best)  # first max
            else:
                pos = target.position
            expected[(target.channel, *pos)] = fmap[pos]
            assert values[i, k] == fmap[pos]
            assert tuple(positions[i, k].tolist()) == tuple(pos)
        assert torch.equal(signal[i, k], expected)


def test_select_errors_name_the_layer():
    act = torch.zeros(1, 4, 3, 3)
    with pytest.raises(
        ParameterError,
        match=r"channel: expected a channel of layer 'f.1', which "
        r"has 4 \(0..3\), received 4",
    ):
        select(act, [Target("f.1", 4)])
    with pytest.raises(
        ParameterError,
        match=r"position: expected an index into the spatial size "
        r"\(3, 3\) of layer 'f.1', received \(3, 0\)",
    ):
        select(act, [Target("f.1", 0, (3, 0))])
    with pytest.raises(ParameterError, match="position: expected an index"):
        select(act, [Target("f.1", 0, (1,))])


def test_project_layout_values_and_errors():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.MaxPool2d(2)).double()
    x = torch.randn(3, 2, 9, 9, dtype=D)
    targets = [Target("2", 3), Target("0", 1, (2, 5)), Target("1", 0, "map")]
    out = project(net, x, targets)
    assert out.projections.shape == (3, 3, 2, 9, 9)
    with torch.no_grad():
        a0, a2 = net[0](x), net(x)
    torch.testing.assert_close(out.values[:, 0], a2[:, 3].flatten(1).max(1).values)
    torch.testing.assert_close(out.values[:, 1], a0[:, 1, 2, 5])
    torch.testing.assert_close(out.values[:, 2], torch.relu(a0[:, 0]).flatten(1).sum(1))
    assert out.positions[:, 1].tolist() == [[2, 5]] * 3
    assert out.targets == tuple(targets)
    assert out.rule == "deconvnet"
    with pytest.raises(
        ParameterError,
        match=r"layer: expected a module path of the model, one "
        r"of: 0, 1, 2, received '3'",
    ):
        project(net, x, Target("3", 0))
    with pytest.raises(ParameterError, match="channel: expected a channel of layer '0'"):
        project(net, x, Target("0", 4))
    with pytest.raises(ParameterError, match="rule: expected one of deconvnet, guided, gradient"):
        project(net, x, Target("0", 0), rule="lrp")
    with pytest.raises(ParameterError, match="engine: expected one of auto, explicit, rules"):
        project(net, x, Target("0", 0), engine="fast")
    with pytest.raises(ParameterError, match="targets: expected a Target or a non-empty"):
        project(net, x, [])
    with pytest.raises(ParameterTypeError, match="inputs: expected a tensor"):
        project(net, [1.0], Target("0", 0))  # type: ignore[arg-type]


@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=12))
def test_stretch_puts_zero_at_mid_grey(values):
    x = torch.tensor(values, dtype=D)
    shown = stretch(x)
    peak = max(abs(v) for v in values)
    for v, s in zip(values, shown.tolist()):
        expected = 0.5 if peak == 0 else v / (2 * peak) + 0.5
        assert s == pytest.approx(expected, abs=1e-12)
        assert 0.0 <= s <= 1.0


def test_to_image_modes_and_values():
    proj = torch.zeros(3, 2, 2, dtype=D)
    proj[0, 0, 0] = 2.0
    proj[1, 1, 1] = -2.0
    image = to_image(proj)
    assert image.mode == "RGB"
    assert image.size == (2, 2)
    assert image.getpixel((0, 0)) == (255, 128, 128)  # 2 -> 1.0, 0 -> 0.5
    assert image.getpixel((1, 1)) == (128, 0, 128)
    grey = to_image(torch.ones(1, 3, 4), scale=3)
    assert grey.mode == "L"
    assert grey.size == (12, 9)
    assert set(np.asarray(grey).flatten().tolist()) == {255}
    with pytest.raises(ParameterError, match="scale: expected a positive int"):
        to_image(proj, scale=0)
