"""The backward-rule engine against independent references, its ReLU catching, and cleanup.

References: plain autograd for ``gradient``; for ``deconvnet``/``guided`` the same model with
every ReLU swapped for a custom autograd Function written here (deep copy for nn.ReLU
modules; a reference switch in the functional model)."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from convlens.deconvnet import RULES, Target, project
from convlens.deconvnet.rules import capture_outputs, relu_rule
from convlens.errors import ParameterError

D = torch.float64


class RefRule(torch.autograd.Function):
    """The rules written out once more, independently of convlens."""

    @staticmethod
    def forward(ctx, x, rule):
        ctx.save_for_backward(x)
        ctx.rule = rule
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        if ctx.rule == "deconvnet":
            return g.clamp(min=0), None
        if ctx.rule == "guided":
            return g.clamp(min=0) * (x > 0).to(g.dtype), None
        return torch.where(x > 0, g, torch.zeros_like(g)), None


class RefReLU(nn.Module):
    def __init__(self, rule):
        super().__init__()
        self.rule = rule

    def forward(self, x):
        return RefRule.apply(x, self.rule)


def swap_relus(model: nn.Module, rule: str) -> nn.Module:
    ref = copy.deepcopy(model)
    for parent in list(ref.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(parent, name, RefReLU(rule))
    return ref


def reference_projections(model, x, targets):
    """Brute force: layer outputs by plain hooks, each signal by a Python loop over
    the map (first maximum), one autograd.grad per target through one forward."""
    seen = {}
    modules = dict(model.named_modules())

    def make_hook(name):
        def hook(_m, _a, out):
            seen[name] = out
            return out.clone()

        return hook

    handles = [modules[t.layer].register_forward_hook(make_hook(t.layer)) for t in targets]
    xr = x.detach().clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            model(xr)
    finally:
        for handle in handles:
            handle.remove()
    grads = []
    for target in targets:
        act = seen[target.layer]
        signal = torch.zeros_like(act)
        for n in range(act.shape[0]):
            fmap = act[n, target.channel].detach()
            if target.position == "map":
                signal[n, target.channel] = fmap
                continue
            if target.position == "max":
                flat = fmap.flatten().tolist()
                best = max(range(len(flat)), key=lambda i, f=flat: (f[i], -i))
                pos = []
                for size in reversed(fmap.shape):
                    pos.append(best % size)
                    best //= size
                pos = tuple(reversed(pos))
            else:
                pos = target.position
            signal[(n, target.channel, *pos)] = fmap[pos]
        (g,) = torch.autograd.grad(act, xr, signal, retain_graph=True)
        grads.append(g)
    return grads


class FunctionalNet(nn.Module):
    """ReLUs spelled every way: F.relu, torch.relu, Tensor.relu, the inplace forms, and one
    reused inplace nn.ReLU module called twice. ``ref`` routes all of them to RefRule."""

    SPELLINGS = ("F", "torch", "method", "F_inplace", "method_", "torch_", "module", "module")

    def __init__(self, ref: str | None = None):
        super().__init__()
        self.convs = nn.ModuleList(
            [nn.Conv2d(3 if i == 0 else 6, 6, 3, padding=1) for i in range(len(self.SPELLINGS))]
        )
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.ref = ref
        self.count = 0

    def relu(self, x, how):
        self.count += 1
        if self.ref is not None:
            return RefRule.apply(x, self.ref)
        if how == "F":
            return F.relu(x)
        if how == "torch":
            return torch.relu(x)
        if how == "method":
            return x.relu()
        if how == "F_inplace":
            return F.relu(x, inplace=True)
        if how == "method_":
            x.relu_()
            return x
        if how == "torch_":
            torch.relu_(x)
            return x
        return self.act(x)

    def forward(self, x):
        for i, (conv, how) in enumerate(zip(self.convs, self.SPELLINGS)):
            x = self.relu(conv(x), how)
            if i == 3:
                x = self.pool(x)
        return x


def functional_pair(rule):
    torch.manual_seed(0)
    net = FunctionalNet().double()
    ref = copy.deepcopy(net)
    ref.ref = rule
    return net, ref


def targets_for(layers):
    return [Target(layers[0], 1), Target(layers[1], 2, (1, 2)), Target(layers[2], 0, "map")]


@pytest.mark.parametrize("rule", RULES)
def test_functional_relus_match_reference(rule):
    net, ref = functional_pair(rule)
    if rule == "gradient":
        ref.ref = None  # plain autograd on the unmodified model
    x = torch.randn(2, 3, 10, 10, dtype=D)
    targets = targets_for(["convs.7", "convs.5", "convs.2"])
    got = project(net, x, targets, rule=rule, engine="rules")
    assert got.engine == "rules"
    for t, expected in enumerate(reference_projections(ref, x, targets)):
        torch.testing.assert_close(got.projections[:, t], expected, rtol=1e-10, atol=1e-12)
        assert expected.abs().sum() > 0


def test_every_relu_spelling_caught_exactly_once():
    net, _ = functional_pair("guided")
    net.count = 0
    x = torch.randn(1, 3, 8, 8, dtype=D, requires_grad=True)
    with relu_rule("guided") as mode:
        net(x)
    assert mode.calls == net.count == len(FunctionalNet.SPELLINGS)


def test_rules_differ_where_they_should():
    net, _ = functional_pair("deconvnet")
    x = torch.randn(1, 3, 8, 8, dtype=D)
    out = {r: project(net, x, Target("convs.7", 3), rule=r, engine="rules") for r in RULES}
    assert not torch.allclose(out["deconvnet"].projections, out["gradient"].projections)
    assert not torch.allclose(out["guided"].projections, out["gradient"].projections)


def small_resnet18() -> nn.Module:
    torch.manual_seed(5)
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    gen = torch.Generator().manual_seed(7)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return model.double().eval()


@pytest.mark.parametrize("rule", RULES)
def test_resnet18_matches_reference(rule):
    model = small_resnet18()
    ref = model if rule == "gradient" else swap_relus(model, rule)
    assert not any(isinstance(m, nn.ReLU) for m in ref.modules()) or rule == "gradient"
    x = torch.randn(1, 3, 32, 32, dtype=D)
    targets = [
        Target("layer3.1", 5),  # the block's output: its relu module runs twice
        Target("layer2.0.bn2", 7, (2, 3)),  # followed by an inplace add
        Target("layer1.1", 9, "map"),
        Target("fc", 4),
    ]
    got = project(model, x, targets, rule=rule)
    assert got.engine == "rules"  # auto: ResNet is not a chain
    for t, expected in enumerate(reference_projections(ref, x, targets)):
        torch.testing.assert_close(got.projections[:, t], expected, rtol=1e-9, atol=1e-12)
    assert got.positions[0, 3].tolist() == [-1, -1]  # fc has no spatial dims


def test_resnet18_every_relu_module_call_caught():
    model = small_resnet18()
    calls = []
    handles = [
        m.register_forward_hook(lambda *_: calls.append(1))
        for m in model.modules()
        if isinstance(m, nn.ReLU)
    ]
    try:
        with relu_rule("deconvnet") as mode:
            model(torch.randn(1, 3, 32, 32, dtype=D, requires_grad=True))
    finally:
        for h in handles:
            h.remove()
    assert mode.calls == len(calls) == 1 + 2 * 8  # stem + two per BasicBlock


def no_surgery_left(model: nn.Module) -> bool:
    return torch._C._len_torch_function_stack() == 0 and all(
        not m._forward_hooks and not m._forward_pre_hooks for m in model.modules()
    )


class Exploding(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.act = nn.ReLU()

    def forward(self, x):
        x = self.act(self.conv(x))
        raise RuntimeError("boom inside the model")


def test_no_hooks_or_modes_left_after_normal_and_raising_calls():
    net, _ = functional_pair("guided")
    project(net, torch.randn(1, 3, 8, 8, dtype=D), Target("convs.3", 0), engine="rules")
    assert no_surgery_left(net)
    bad = Exploding().train()
    with pytest.raises(ParameterError, match="boom inside the model"):
        project(bad, torch.randn(1, 1, 5, 5), Target("act", 0), engine="rules")
    assert no_surgery_left(bad)
    assert bad.training
    with pytest.raises(RuntimeError, match="boom"), relu_rule("deconvnet"):
        raise RuntimeError("boom")
    assert torch._C._len_torch_function_stack() == 0


def test_capture_outputs_errors_and_cleanup():
    net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU())
    with (
        pytest.raises(
            ParameterError,
            match=r"layer: expected a module path of the model, one "
            r"of: 0, 1, received 'conv9'",
        ),
        capture_outputs(net, ["conv9"]),
    ):
        pass
    assert no_surgery_left(net)


def test_layer_not_called_by_forward_is_an_error():
    class Skips(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Conv1d(1, 1, 1), nn.Conv1d(1, 1, 1)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(ParameterError, match="a module that the model's forward calls"):
        project(Skips(), torch.randn(1, 1, 4), Target("unused", 0), engine="rules")


def test_torchscript_models_are_refused_by_the_rules_engine():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice
        scripted = torch.jit.script(net)
    with pytest.raises(ParameterError, match="TorchScript code cannot be intercepted"):
        project(scripted, torch.randn(1, 1, 5, 5), Target("1", 0))


def test_layer_with_tuple_output_is_a_clear_error_and_cleaned_up():
    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pair = Pair()
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(self.pair(x)[0])

    net = Net()
    with pytest.raises(ParameterError, match="layer: expected a module whose output is one tensor"):
        project(net, torch.randn(1, 1, 4), Target("pair", 0), engine="rules")
    assert no_surgery_left(net)
