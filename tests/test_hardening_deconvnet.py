"""Issue 15, the deconvnet's part: ``project`` never silently wrong, and clear at its door.

Grouped by class: (1) ``engine="auto"`` never changes what is computed: a model whose own
``forward`` does not run its ``features`` as the chain (it flips, scales, branches, reuses a
layer, stops early) gets the rules engine, whose result is checked against plain autograd;
``engine="explicit"`` is refused for it; the scan's ``project_top`` falls back the same way;
(2) tensors refused at the library door with one ``ParameterError`` naming ``inputs`` (no batch
dimension, wrong channels, dtype, meta, too small), on both engines; (3) the rules engine's
ReLU forward is ``torch.relu`` bit for bit (-inf, -0.0, NaN); (4) ``seed="value" | "one"``
against autograd and a reversed pass written out by hand.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from convlens.deconvnet import Target, project
from convlens.deconvnet.explicit import chain_of
from convlens.deconvnet.rules import RuleReLU, relu_rule
from convlens.deconvnet.verify import chain_mismatch
from convlens.errors import ConvLensError, ParameterError
from convlens.scan import project_top, scan

D = torch.float64


def _features() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3),
        nn.ReLU(inplace=True),
    ).to(D)


class _Wrapped(nn.Module):
    """A VGG-like model: ``features`` then a head; ``how`` says what forward does first."""

    def __init__(self, how: str):
        super().__init__()
        self.features = _features()
        self.how = how

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features
        if self.how == "plain":
            y = f(x)
        elif self.how == "flip":
            y = f(x.flip(-1))
        elif self.how == "scale":
            y = f(2.0 * x)
        elif self.how == "branch":  # something between two layers of the chain
            y = f[4](f[3](1.5 * f[2](f[1](f[0](x)))))
        elif self.how == "reuse":  # a layer called twice
            y = f[4](f[3](f[2](f[1](f[0](x)))))
            y = f[4](y)
        elif self.how == "skip-layer":
            y = f[4](f[3](f[2](f[0](x))))
        elif self.how == "early":
            return f[0](x)
        elif self.how == "raise":
            raise RuntimeError("the model's own forward fails")
        else:
            raise AssertionError(self.how)
        return y.flatten(1).sum(1, keepdim=True)


def _autograd_gradient(model: nn.Module, x: torch.Tensor, layer: str, channel: int, pos):
    """The plain gradient of one unit of ``layer`` through the model's own forward."""
    seen = {}
    module = dict(model.named_modules())[layer]

    def keep(_m, _a, out):
        seen.setdefault("y", out.clone())  # returns None: the model goes on with its own output

    handle = module.register_forward_hook(keep)
    xs = x.clone().requires_grad_(True)
    try:
        with torch.enable_grad(), contextlib.suppress(RuntimeError):
            model(xs)
    finally:
        handle.remove()
    y = seen["y"]
    unit = y[(0, channel, *pos)]
    (g,) = torch.autograd.grad(unit, xs)
    return g, float(unit.detach())


# ---------------------------------------------------------------- (1) auto never changes results
@pytest.mark.parametrize("how", ["flip", "scale", "branch", "skip-layer"])
def test_auto_picks_rules_when_forward_is_not_the_chain_and_matches_autograd(how):
    model = _Wrapped(how).eval()
    x = torch.randn(1, 1, 10, 10, dtype=D, generator=torch.Generator().manual_seed(1))
    pos = (1, 2)
    out = project(model, x, Target("features.3", 2, pos), rule="gradient", seed="one")
    assert out.engine == "rules"
    assert "not the chain" in out.engine_note
    ref, value = _autograd_gradient(model, x, "features.3", 2, pos)
    torch.testing.assert_close(out.projections[0, 0], ref[0], rtol=1e-12, atol=1e-12)
    assert float(out.values[0, 0]) == pytest.approx(value, rel=1e-12)
    # the chain alone computes something else here: the check is what saved the result
    chain_only = project(model.features, x, Target("3", 2, pos), rule="gradient", seed="one")
    assert chain_only.engine == "explicit"
    assert not torch.allclose(chain_only.projections, out.projections)


@pytest.mark.parametrize(
    "how", ["flip", "scale", "branch", "reuse", "skip-layer", "early", "raise"]
)
def test_explicit_is_refused_for_a_forward_that_is_not_the_chain(how):
    model = _Wrapped(how)
    x = torch.randn(1, 1, 10, 10, dtype=D)
    with pytest.raises(ParameterError, match=r"^engine: expected 'rules' or 'auto'.*on this batch"):
        project(model, x, Target("features.4", 0), engine="explicit")


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("flip", "'features.0' is called on a tensor other than the batch"),
        ("scale", "'features.0' is called on a tensor other than the batch"),
        ("branch", "'features.3' is called on a tensor other than the output of 'features.2'"),
        ("skip-layer", "'features.2' is called out of the chain's order"),
        ("reuse", "'features.4' is called again after the chain"),
        ("early", "never reached layer 'features.4'"),
        ("raise", "raised RuntimeError"),
    ],
)
def test_chain_mismatch_names_the_reason(how, reason):
    model = _Wrapped(how)
    found = chain_mismatch(model, chain_of(model), torch.randn(1, 1, 10, 10, dtype=D), 4)
    assert found is not None
    assert reason in found
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


class _BadHead(nn.Module):
    """``features`` then a head made for another input size: it fails after the chain."""

    def __init__(self):
        super().__init__()
        self.features = _features()
        self.fc = nn.Linear(999, 2).to(D)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


def test_a_forward_that_fails_after_the_chain_still_verifies_it():
    model = _BadHead()
    x = torch.randn(1, 1, 10, 10, dtype=D)
    assert chain_mismatch(model, chain_of(model), x, 4) is None
    assert project(model, x, Target("features.4", 1)).engine == "explicit"


def test_a_model_whose_forward_is_the_chain_keeps_the_explicit_engine_with_same_numbers():
    model = _Wrapped("plain")
    x = torch.randn(2, 1, 10, 10, dtype=D)
    targets = [Target("features.4", 1), Target("features.2", 0, "map")]
    auto = project(model, x, targets)
    rules = project(model, x, targets, engine="rules")
    assert auto.engine == "explicit"
    assert "checked on this batch" in auto.engine_note
    torch.testing.assert_close(auto.projections, rules.projections, rtol=1e-10, atol=1e-12)


def test_torchvision_vgg_is_known_and_a_changed_vgg_is_checked():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    vgg = torchvision.models.vgg11(weights=None).eval()
    out = project(vgg, x, Target("features.5", 3))
    assert out.engine == "explicit"
    assert "torchvision's VGG.forward" in out.engine_note

    class FlippedVGG(torchvision.models.VGG):
        def forward(self, x):
            return super().forward(x.flip(-1))

    flipped = FlippedVGG(vgg.features).eval()
    out = project(flipped, x, Target("features.5", 3))
    assert out.engine == "rules"
    assert "'features.0' is called on a tensor other than the batch" in out.engine_note
    # a layer of the chain reused by the head: forward is run, and the reuse found
    shared = torchvision.models.vgg11(weights=None).eval()
    shared.classifier[1] = shared.features[4]
    out = project(shared, x, Target("features.5", 3))
    assert out.engine == "rules"
    assert "'features.4' is called again after the chain" in out.engine_note


def test_a_plain_sequential_is_not_run_an_extra_time():
    def calls(model: nn.Module, first: nn.Module, layer: str):
        count = []
        handle = first.register_forward_hook(lambda *_: count.append(1))
        try:
            out = project(model, torch.randn(1, 1, 10, 10, dtype=D), Target(layer, 0))
        finally:
            handle.remove()
        return out, len(count)

    wrapped = _Wrapped("plain")
    seq = nn.Sequential(nn.Sequential(*_features()))
    out_seq, n_seq = calls(seq, seq[0][0], "0.4")
    out_wrapped, n_wrapped = calls(wrapped, wrapped.features[0], "features.4")
    assert out_seq.engine == out_wrapped.engine == "explicit"
    assert "plain nn.Sequential" in out_seq.engine_note
    assert n_wrapped == n_seq + 1  # the check ran the model's forward once; the plain one not


def test_a_sequential_subclass_with_its_own_forward_is_checked():
    class Flipping(nn.Sequential):
        def forward(self, x):
            return super().forward(x.flip(-1))

    torch.manual_seed(0)
    net = Flipping(nn.Conv2d(1, 2, 3), nn.ReLU()).to(D)
    x = torch.randn(1, 1, 8, 8, dtype=D)
    out = project(net, x, Target("1", 1, (2, 3)), rule="gradient", seed="one")
    assert out.engine == "rules"
    ref, _ = _autograd_gradient(net, x, "1", 1, (2, 3))
    torch.testing.assert_close(out.projections[0, 0], ref[0])


def test_project_top_falls_back_when_the_chain_is_not_the_forward():
    model = _Wrapped("flip").eval()
    g = torch.Generator().manual_seed(3)
    data = [(torch.randn(1, 12, 12, dtype=D, generator=g), 0) for _ in range(6)]
    res = scan(model, data, ["features.4"], top=2, progress=False)
    tp = project_top(model, data, res, channels=[0, 1])
    layer = tp.layers["features.4"]
    assert layer.method == "full"
    for ci, c in enumerate([0, 1]):
        for j in range(2):
            idx = int(layer.indices[ci, j])
            if idx < 0:
                continue
            pos = tuple(int(v) for v in layer.positions[ci, j])
            ref = project(model, data[idx][0][None], Target("features.4", c, pos), engine="rules")
            (y0, y1), (x0, x1) = (tuple(int(v) for v in b) for b in layer.boxes[ci, j])
            window = ref.projections[0, 0][:, max(y0, 0) : y1, max(x0, 0) : x1]
            got = layer.projections[ci, j]
            got = got[:, max(0, -y0) : got.shape[1] - max(0, y1 - 12), max(0, -x0) :]
            got = got[:, :, : got.shape[2] - max(0, x1 - 12)]
            torch.testing.assert_close(got, window)
    with pytest.raises(ParameterError, match=r"^method: expected 'full' or 'auto'.*differ"):
        project_top(model, data, res, channels=[0], method="crop")


# ---------------------------------------------------------------- (2) tensors at the door
_BAD = {
    "no batch dimension": (
        torch.randn(1, 10, 10, dtype=D),
        r"4-D, received a 3-D tensor.*unsqueeze",
    ),
    "5-D": (torch.randn(1, 1, 2, 10, 10, dtype=D), r"4-D, received a 5-D tensor"),
    "wrong channels": (torch.randn(1, 3, 10, 10, dtype=D), r"1 channel\(s\)"),
    "float32": (torch.randn(1, 1, 10, 10), r"the model's dtype \(torch.float64\)"),
    "integers": (torch.zeros(1, 1, 10, 10, dtype=torch.long), r"a floating-point tensor"),
    "meta": (torch.empty(1, 1, 10, 10, dtype=D, device="meta"), r"not on the meta device"),
    "empty batch": (torch.randn(0, 1, 10, 10, dtype=D), r"N >= 1"),
    "not a tensor": ([[1.0]], r"a tensor \(N, C, \*spatial\)"),
}


@pytest.mark.parametrize("engine", ["explicit", "rules", "auto"])
@pytest.mark.parametrize("case", sorted(_BAD))
def test_bad_tensors_are_one_error_naming_inputs(engine, case):
    x, message = _BAD[case]
    with pytest.raises(ConvLensError, match=r"^inputs: expected .*" + message):
        project(_features(), x, Target("4", 0), engine=engine)


@pytest.mark.parametrize("engine", ["explicit", "rules"])
def test_inputs_too_small_for_the_model_name_the_model_and_the_inputs(engine):
    with pytest.raises(ParameterError, match=r"^model: expected a forward pass .*\(1, 1, 2, 2\)"):
        project(_features(), torch.randn(1, 1, 2, 2, dtype=D), Target("4", 0), engine=engine)


def test_a_meta_model_is_refused_before_any_work():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()).to("meta")
    with pytest.raises(ParameterError, match=r"^model: expected a model whose weights hold values"):
        project(net, torch.randn(1, 1, 8, 8), Target("1", 0))


# ---------------------------------------------------------------- (3) the ReLU forward
def test_rule_relu_forward_is_torch_relu_bit_for_bit():
    x = torch.tensor([-float("inf"), -3.0, -0.0, 0.0, float("nan"), 2.5, float("inf")])
    want = torch.relu(x)
    with relu_rule("deconvnet"):
        got = F.relu(x.clone())
    for y in (got, RuleReLU.apply(x.clone(), "guided")):
        assert torch.equal(y.isnan(), want.isnan())
        assert torch.equal(y.nan_to_num(7.0), want.nan_to_num(7.0))
        assert torch.equal(y.signbit(), want.signbit())


def test_masked_inputs_of_minus_infinity_give_the_models_own_values():
    class Masked(nn.Module):  # attention-style: masked positions are -inf before a ReLU
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(1, 2, 1, bias=False)
            self.act = nn.ReLU()

        def forward(self, x):
            y = self.conv(x).masked_fill(x < 0, -float("inf"))
            return self.act(y)

    torch.manual_seed(0)
    net = Masked().to(D)
    x = torch.tensor([[[1.0, -1.0, 2.0, -2.0]]], dtype=D)
    out = project(net, x, Target("act", 0, "map"), engine="rules", rule="gradient", seed="one")
    with torch.no_grad():
        want = net(x)[0, 0].sum()
    assert torch.isfinite(out.values).all()
    assert float(out.values[0, 0]) == float(want)


# ---------------------------------------------------------------- (4) the seed
def _hand_deconvnet(net: nn.Sequential, x: torch.Tensor, channel: int, pos, seed: float):
    """conv -> relu -> conv by hand: unit of the second conv's output, deconvnet rule."""
    w1, w2 = net[0].weight, net[2].weight
    with torch.no_grad():
        y = net(x)
        s = torch.zeros_like(y)
        s[(0, channel, *pos)] = seed
        s = F.conv_transpose2d(s, w2)
        s = F.relu(s)  # Zeiler & Fergus: rectify the reconstruction
        return F.conv_transpose2d(s, w1, padding=1), float(y[(0, channel, *pos)])


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(0, 3), st.integers(0, 5), st.integers(0, 5))
def test_seeds_against_a_reversed_pass_by_hand(seed, channel, i, j):
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 3)).to(D)
    for p in net.parameters():
        p.data = torch.randn(p.shape, dtype=D, generator=g)
    x = torch.randn(1, 1, 8, 8, dtype=D, generator=g)
    pos = (i, j)
    ref_one, value = _hand_deconvnet(net, x, channel, pos, 1.0)
    ref_value, _ = _hand_deconvnet(net, x, channel, pos, value)
    target = Target("2", channel, pos)
    for engine, method in [
        ("explicit", "full"),
        ("explicit", "crop"),
        ("explicit", "cone"),
        ("rules", "full"),
    ]:
        one = project(net, x, target, engine=engine, method=method, seed="one")
        val = project(net, x, target, engine=engine, method=method)
        assert (one.seed, val.seed) == ("one", "value")
        torch.testing.assert_close(one.projections[0, 0], ref_one[0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(val.projections[0, 0], ref_value[0], rtol=1e-10, atol=1e-12)
        assert float(one.values[0, 0]) == pytest.approx(value)  # values are the activation


def test_seed_one_with_the_gradient_rule_is_autograd_and_value_is_its_multiple():
    torch.manual_seed(2)
    net = _features()
    x = torch.randn(1, 1, 10, 10, dtype=D)
    target = Target("3", 1, (2, 1))
    ref, value = _autograd_gradient(net, x, "3", 1, (2, 1))
    one = project(net, x, target, rule="gradient", seed="one")
    val = project(net, x, target, rule="gradient")
    torch.testing.assert_close(one.projections[0, 0], ref[0])
    torch.testing.assert_close(val.projections[0, 0], value * ref[0])


def test_for_a_negative_unit_the_seeds_differ_by_more_than_a_scale():
    g = torch.Generator().manual_seed(5)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 3)).to(D)
    for p in net.parameters():
        p.data = torch.randn(p.shape, dtype=D, generator=g)
    x = torch.randn(1, 1, 8, 8, dtype=D, generator=g)
    with torch.no_grad():
        y = net(x)
    flat = int(y[0, 0].argmin())
    pos = divmod(flat, y.shape[-1])
    assert float(y[(0, 0, *pos)]) < 0
    one = project(net, x, Target("2", 0, pos), seed="one").projections.flatten()
    val = project(net, x, Target("2", 0, pos)).projections.flatten()
    scale = float(val @ one) / float(one @ one)
    assert not torch.allclose(val, scale * one)


def test_bad_seed_is_refused():
    with pytest.raises(ParameterError, match=r"^seed: expected one of value, one, received 1"):
        project(_features(), torch.randn(1, 1, 8, 8, dtype=D), Target("4", 0), seed=1)


# ---------------------------------------------------------------- (5) a module called twice
def _reused_relu_resnet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=4).double().eval()


def _relu_calls(model: nn.Module, path: str, x: torch.Tensor) -> int:
    calls = []
    handle = dict(model.named_modules())[path].register_forward_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return len(calls)


def test_a_module_called_twice_is_refused_by_project_naming_its_block():
    model = _reused_relu_resnet()
    x = torch.randn(1, 3, 32, 32, dtype=D)
    assert _relu_calls(model, "layer3.1.relu", x) == 2  # the reference: a plain hook counts
    for rule in ("deconvnet", "gradient"):
        with pytest.raises(
            ParameterError,
            match=r"^layer: expected a module that one forward pass calls once, received "
            r"'layer3.1.relu' \(called 2 times\)\. .*'layer3.1' \(the enclosing block\)",
        ):
            project(model, x, Target("layer3.1.relu", 0), rule=rule)
    # the module called once is fine, and its block output equals the relu's last call
    out = project(model, x, Target("layer3.1", 0, (0, 0)), rule="gradient", seed="one")
    ref, _ = _autograd_gradient(model, x, "layer3.1", 0, (0, 0))
    torch.testing.assert_close(out.projections[0, 0], ref[0])


def test_a_module_called_twice_is_refused_by_the_scan_before_any_work(tmp_path):
    model = _reused_relu_resnet()
    data = [(torch.randn(3, 32, 32, dtype=D), 0) for _ in range(3)]
    with pytest.raises(ParameterError, match=r"^layers: .*'layer1.0.relu' \(called 2 times\)"):
        scan(model, data, ["layer1.0", "layer1.0.relu"], top=2, progress=False, out=tmp_path / "s")
    assert not (tmp_path / "s").exists()
    res = scan(model, data, ["layer1.0"], top=2, progress=False)
    assert res.layers["layer1.0"].values.shape == (64, 2)


def test_the_scan_probe_runs_the_whole_forward_but_a_head_failing_after_the_layers_is_fine():
    data = [(torch.randn(1, 10, 10, dtype=D), 0) for _ in range(3)]
    res = scan(_BadHead(), data, ["features.4"], top=2, progress=False)
    with torch.no_grad():
        maxima = torch.stack([_features()(x[None])[0].amax((1, 2)) for x, _ in data], 1)
    torch.testing.assert_close(res.layers["features.4"].values, maxima.sort(1, True).values[:, :2])


def test_invariance_features_refuse_a_module_called_twice():
    from convlens.analysis.invariance import layer_features

    model = _reused_relu_resnet()
    with pytest.raises(ParameterError, match=r"'layer2.1.relu' \(called 2 times\)"):
        layer_features(model, torch.randn(2, 3, 32, 32, dtype=D), ["layer2.1.relu"])


def test_occlusion_refuses_a_module_called_twice():
    from convlens.analysis.occlusion import occlusion_maps

    model = _reused_relu_resnet()
    image = torch.randn(3, 32, 32, dtype=D)
    with pytest.raises(ParameterError, match=r"'layer4.0.relu' \(called 2 times\)"):
        occlusion_maps(model, image, 0, layer="layer4.0.relu", size=8, stride=8)
    maps = occlusion_maps(model, image, 0, layer="layer4.0", size=8, stride=8)
    assert maps.positions.shape[0] == 16  # a 4x4 grid of 8-px patches on 32x32


def test_the_engine_note_says_why_for_every_choice():
    x = torch.randn(1, 3, 32, 32, dtype=D)
    resnet = project(_reused_relu_resnet(), x, Target("layer1.0", 0))
    assert resnet.engine == "rules"
    assert resnet.engine_note.startswith("rules: the explicit engine does not apply (model: ")
    net = _features()
    y = torch.randn(1, 1, 10, 10, dtype=D)
    assert project(net, y, Target("4", 0), engine="rules").engine_note == "rules: asked for"
    classifier = _BadHead()
    classifier.fc = nn.Linear(36, 2).to(D)  # the head made for 10x10 inputs
    head = project(classifier, y, Target("fc", 0))
    assert head.engine_note == (
        "rules: the explicit engine does not apply (layer 'fc' is not in the chain it reverses)"
    )
    chain = project(list(net), y, Target("4", 0))
    assert (chain.engine, chain.engine_note) == ("explicit", "explicit: the chain of modules given")


def test_a_sequential_that_places_one_relu_twice_keeps_both_in_the_chain():
    # named_children() lists a reused module once: the chain lost the second ReLU, and the
    # explicit engine projected through a network without it
    torch.manual_seed(0)
    relu = nn.ReLU()
    net = nn.Sequential(nn.Conv2d(1, 2, 3), relu, nn.Conv2d(2, 3, 3), relu, nn.Conv2d(3, 2, 3))
    net = net.to(D)
    assert [p for p, _ in chain_of(net)] == ["0", "1", "2", "3", "4"]
    x = torch.randn(1, 1, 12, 12, dtype=D)
    ref, _ = _autograd_gradient(net, x, "4", 1, (1, 1))
    for engine in ("auto", "explicit", "rules"):
        out = project(net, x, Target("4", 1, (1, 1)), engine=engine, rule="gradient", seed="one")
        torch.testing.assert_close(out.projections[0, 0], ref[0], rtol=1e-12, atol=1e-12)
        with pytest.raises(ParameterError, match=r"'1' \(called 2 times\)"):
            project(net, x, Target("1", 0), engine=engine)
