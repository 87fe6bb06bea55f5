"""The two engines give the same projections on chain models (float64, relative error < 1e-6):
torchvision AlexNet and VGG16 with random weights, a chain with dilation, groups, BatchNorm,
average pooling and ceil-mode max pooling, and random chains drawn by hypothesis."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from convlens.deconvnet import RULES, Target, project

D = torch.float64


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def assert_engines_agree(model, x, targets, rules=RULES):
    for rule in rules:
        a = project(model, x, targets, rule=rule, engine="explicit")
        b = project(model, x, targets, rule=rule, engine="rules")
        assert a.engine == "explicit"
        assert b.engine == "rules"
        assert a.projections.shape == (x.shape[0], len(targets), *x.shape[1:])
        assert rel_err(a.projections, b.projections) < 1e-6, rule
        assert torch.equal(a.positions, b.positions)
        torch.testing.assert_close(a.values, b.values, rtol=1e-12, atol=1e-12)
        assert b.projections.abs().sum() > 0


def randomize_bn(model: nn.Module) -> None:
    gen = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            m.weight.data.copy_(torch.randn(m.weight.shape, generator=gen))
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=gen))


def test_alexnet_random_weights():
    torch.manual_seed(0)
    model = torchvision.models.alexnet(weights=None)
    model.classifier = nn.Identity()  # keep the float64 copy small; targets are in features
    model = model.double()
    x = torch.randn(2, 3, 80, 80, dtype=D)
    targets = [
        Target("features.12", 5),
        Target("features.10", 7, (1, 2)),
        Target("features.8", 11, "map"),
        Target("features.4", 3, "map"),
        Target("features.2", 1),
        Target("features.1", 60, (4, 4)),
        Target("features.0", 2),
    ]
    assert_engines_agree(model, x, targets)
    assert project(model, x, targets).engine == "explicit"


def random_vgg16() -> nn.Module:
    """torchvision's VGG16 with its own random init of the convs; the 100M-weight classifier
    (not needed for targets in ``features``) is built on the meta device and dropped."""
    with torch.device("meta"):
        model = torchvision.models.vgg16(weights=None)
    model.classifier = nn.Identity()
    model.to_empty(device="cpu")
    for m in model.modules():
        if isinstance(m, nn.Conv2d):  # torchvision's VGG init
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return model.double()


def test_vgg16_random_weights():
    torch.manual_seed(1)
    model = random_vgg16()
    x = torch.randn(1, 3, 64, 64, dtype=D)
    targets = [
        Target("features.28", 12),
        Target("features.30", 40, (1, 0)),
        Target("features.23", 100, "map"),
        Target("features.9", 7),
    ]
    assert_engines_agree(model, x, targets, rules=("deconvnet",))


def small_chain() -> nn.Sequential:
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=2, dilation=2),
        nn.BatchNorm2d(6),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Conv2d(6, 8, 3, stride=2, padding=1, groups=2),
        nn.ReLU(),
        nn.AvgPool2d(2, ceil_mode=True, padding=1, count_include_pad=False),
        nn.Dropout(0.3),
        nn.Conv2d(8, 4, 2, padding="same", dilation=1),
        nn.Identity(),
        nn.ReLU(),
    ).double()
    randomize_bn(net)
    return net


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_small_chain_dilation_groups_batchnorm_avgpool_ceil():
    torch.manual_seed(2)
    net = small_chain()
    x = torch.randn(3, 3, 19, 17, dtype=D)
    targets = [
        Target("10", 1),
        Target("8", 3, (1, 1)),
        Target("6", 2, "map"),
        Target("3", 0),
        Target("1", 5, (4, 9)),
    ]
    assert_engines_agree(net, x, targets)


def test_conv1d_chain():
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Conv1d(2, 4, 5, stride=2, padding=2),
        nn.BatchNorm1d(4),
        nn.ReLU(),
        nn.MaxPool1d(3, 2, padding=1, dilation=1, ceil_mode=True),
        nn.Conv1d(4, 4, 3, dilation=2, groups=4),
        nn.ReLU(),
        nn.AvgPool1d(3, 2, padding=1),
    ).double()
    randomize_bn(net)
    x = torch.randn(2, 2, 40, dtype=D)
    assert_engines_agree(net, x, [Target("6", 2), Target("4", 1, (3,)), Target("2", 0, "map")])


@st.composite
def random_chain(draw):
    ndim = draw(st.sampled_from([1, 2]))
    conv = nn.Conv1d if ndim == 1 else nn.Conv2d
    maxp = nn.MaxPool1d if ndim == 1 else nn.MaxPool2d
    avgp = nn.AvgPool1d if ndim == 1 else nn.AvgPool2d
    bn = nn.BatchNorm1d if ndim == 1 else nn.BatchNorm2d
    channels = 2
    layers: list[nn.Module] = []
    for _ in range(draw(st.integers(1, 4))):
        groups = draw(st.sampled_from([1, 2] if channels % 2 == 0 else [1]))
        out = groups * draw(st.integers(1, 3))
        k = draw(st.integers(1, 3))
        layers.append(
            conv(
                channels,
                out,
                k,
                stride=draw(st.integers(1, 2)),
                padding=draw(st.integers(0, 1)),
                dilation=draw(st.integers(1, 2)),
                groups=groups,
            )
        )
        channels = out
        if draw(st.booleans()):
            layers.append(bn(channels))
        layers.append(nn.ReLU(inplace=draw(st.booleans())))
        kind = draw(st.sampled_from(["max", "avg", "none"]))
        pk = draw(st.integers(2, 3))
        if kind == "max":
            layers.append(maxp(pk, draw(st.integers(1, 2)), pk // 2, ceil_mode=draw(st.booleans())))
        elif kind == "avg":
            layers.append(
                avgp(
                    pk,
                    draw(st.integers(1, 2)),
                    draw(st.integers(0, pk // 2)),
                    ceil_mode=draw(st.booleans()),
                    count_include_pad=draw(st.booleans()),
                )
            )
    return ndim, nn.Sequential(*layers).double()


@settings(max_examples=25)
@given(random_chain(), st.sampled_from(RULES), st.integers(0, 10_000))
def test_random_chains_agree(chain_case, rule, seed):
    ndim, net = chain_case
    torch.manual_seed(seed)
    randomize_bn(net)
    x = torch.randn(2, 2, *([15] * ndim), dtype=D)
    try:
        with torch.no_grad():
            out = net(x)
    except RuntimeError:  # PyTorch refuses this geometry (output too small)
        assume(False)
    assume(bool(torch.isfinite(out).all()))
    last = str(len(net) - 1)
    targets = [
        Target(last, 0),
        Target(last, out.shape[1] - 1, "map"),
        Target("0", 1 % net[0].out_channels),
    ]
    a = project(net, x, targets, rule=rule, engine="explicit")
    b = project(net, x, targets, rule=rule, engine="rules")
    assume(bool(b.projections.abs().sum() > 0))
    assert rel_err(a.projections, b.projections) < 1e-6


def test_auto_picks_rules_when_the_chain_has_other_modules():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Conv2d(2, 2, 1), nn.ReLU()).double()
    x = torch.randn(1, 1, 6, 6, dtype=D)
    assert project(net, x, Target("0", 1)).engine == "explicit"  # before the Tanh
    auto = project(net, x, Target("3", 1))
    assert auto.engine == "rules"
    ref = project(net, x, Target("3", 1), engine="rules")
    assert torch.equal(auto.projections, ref.projections)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("engine", ["explicit", "rules"])
def test_training_flags_restored(engine):
    net = small_chain().train()
    net[7].eval()
    project(net, torch.randn(1, 3, 12, 12, dtype=D), Target("5", 0), engine=engine)
    assert net.training
    assert net[1].training
    assert not net[7].training


def test_demo_architecture_engines_agree():
    from convlens.demo import build_demo_model

    torch.manual_seed(8)
    model = build_demo_model().double()
    x = torch.randn(2, 1, 28, 28, dtype=D)
    targets = [Target("features.8", 100), Target("features.6", 5, "map"), Target("features.2", 3)]
    assert_engines_agree(model, x, targets)
    assert project(model, x, targets).engine == "explicit"
