"""The rules engine's two ways to backpropagate many targets through one forward pass: all
targets of a layer in vmapped batches (``torch.func``; off the CPU) and one ``autograd.grad``
per target (on a CPU, and the fallback where torch.func refuses a model). Equal to each other
and to a reference written here with plain autograd and a hand-written ReLU rule."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn as nn
import torchvision

from convlens.deconvnet import RULES, Target, project
from convlens.deconvnet.rules import batched_vjp
from convlens.errors import ParameterError

D = torch.float64
RULES_MODULE = sys.modules["convlens.deconvnet.rules"]
PROJECT = sys.modules["convlens.deconvnet.project"]


def small_resnet() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return model.double().eval()


TARGETS = [
    Target("layer3", 5),
    Target("layer3", 9, (1, 0)),
    Target("layer3", 2, "map"),
    Target("layer2.0.bn2", 7, (2, 3)),
    Target("layer1.1.conv2", 3),
    Target("fc", 4),
]


def rules_path(monkeypatch, model, x, targets, rule, batched):
    """``project`` with the rules engine forced to one of its two paths."""
    real = RULES_MODULE.batched_vjp
    seen = []

    def forced(model, inputs, counts, rule, cotangents_of, memory_budget, _batched):
        seen.append(_batched)
        return real(model, inputs, counts, rule, cotangents_of, memory_budget, batched)

    with monkeypatch.context() as m:
        m.setattr(PROJECT, "batched_vjp", forced)
        out = project(model, x, targets, rule=rule, engine="rules")
    assert seen == [False]  # a CPU tensor: the per-target path is the default
    return out


@pytest.mark.parametrize("rule", RULES)
def test_vmapped_batches_equal_one_autograd_grad_per_target(monkeypatch, rule):
    model = small_resnet()
    x = torch.randn(2, 3, 32, 32, dtype=D)
    used = []
    real = RULES_MODULE._loop_vjp
    monkeypatch.setattr(RULES_MODULE, "_loop_vjp", lambda *a: used.append(1) or real(*a))
    got = rules_path(monkeypatch, model, x, TARGETS, rule, batched=True)
    assert not used  # the vmapped path ran, no fallback
    assert got.engine == "rules"
    ref = rules_path(monkeypatch, model, x, TARGETS, rule, batched=False)
    assert used
    torch.testing.assert_close(got.projections, ref.projections, rtol=1e-10, atol=1e-13)
    assert torch.equal(got.positions, ref.positions)
    torch.testing.assert_close(got.values, ref.values, rtol=0, atol=0)
    default = project(model, x, TARGETS, rule=rule)
    torch.testing.assert_close(default.projections, ref.projections, rtol=0, atol=0)


def test_batches_sized_to_the_budget_equal_one_batch(monkeypatch):
    model = small_resnet()
    x = torch.randn(2, 3, 32, 32, dtype=D)
    sizes = []
    real_vmap = torch.func.vmap

    def spy(fn, in_dims=0, **kw):
        inner = real_vmap(fn, in_dims=in_dims, **kw)

        def run(*args):
            sizes.append(next(a.shape[0] for a, d in zip(args, in_dims) if d == 0))
            return inner(*args)

        return run

    monkeypatch.setattr(torch.func, "vmap", spy)

    def ones(layer, act, rows):
        return act.new_ones((len(range(6)[rows]), *act.shape))

    one = batched_vjp(model, x, {"layer2": 6}, "guided", ones)
    assert sizes == [6]
    # largest module output per sample: the stem conv, 64 x 16 x 16; sixteen copies, 8 bytes
    per_target = 16 * 8 * 64 * 16 * 16 * 2
    sizes.clear()
    two = batched_vjp(model, x, {"layer2": 6}, "guided", ones, 2 * per_target + 1)
    assert sizes == [2, 2, 2]
    torch.testing.assert_close(two["layer2"], one["layer2"], rtol=1e-12, atol=1e-14)
    loop = batched_vjp(model, x, {"layer2": 6}, "guided", ones, batched=False)
    torch.testing.assert_close(loop["layer2"], one["layer2"], rtol=1e-10, atol=1e-13)
    with pytest.raises(ParameterError, match=f"memory_budget: expected at least {per_target}"):
        batched_vjp(model, x, {"layer2": 6}, "guided", ones, per_target - 1)


class _Twice(torch.autograd.Function):
    """An old-style custom Function (no setup_context): torch.func refuses it."""

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        return grad * 2


class _Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.act = nn.ReLU()
        self.out = nn.Conv2d(3, 2, 3)

    def forward(self, x):
        return self.out(self.act(_Twice.apply(self.conv(x))) + 0.0)


def test_models_that_torch_func_refuses_run_per_target(monkeypatch):
    torch.manual_seed(2)
    model = _Custom().double()
    x = torch.randn(2, 1, 9, 9, dtype=D)
    targets = [Target("out", 1), Target("out", 0, (2, 2))]
    used = []
    real = RULES_MODULE._loop_vjp
    monkeypatch.setattr(RULES_MODULE, "_loop_vjp", lambda *a: used.append(1) or real(*a))
    got = rules_path(monkeypatch, model, x, targets, "guided", batched=True)
    assert used  # torch.func refused the model: one autograd.grad per target
    # reference: the same model, the guided rule written out at the ReLU by hand
    xr = x.clone().requires_grad_(True)
    pre = _Twice.apply(model.conv(xr))
    mask = (pre > 0).to(D)

    class Guided(torch.autograd.Function):
        @staticmethod
        def forward(ctx, v):
            return v.clamp(min=0)

        @staticmethod
        def backward(ctx, g):
            return g.clamp(min=0) * mask

    out = model.out(Guided.apply(pre))
    for t, channel in enumerate([1, 0]):
        signal = torch.zeros_like(out)
        for n in range(2):
            unit = (n, channel, *got.positions[n, t].tolist())
            signal[unit] = out[unit].detach()
        (grad,) = torch.autograd.grad(out, xr, signal, retain_graph=True)
        torch.testing.assert_close(got.projections[:, t], grad, rtol=1e-12, atol=1e-14)


def test_batched_vjp_errors_of_the_model_are_not_swallowed():
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom inside the model")

    # not swallowed, not a fallback to autograd: one error naming the model, torch's words kept
    with pytest.raises(ParameterError, match=r"^model: .*boom inside the model"):
        batched_vjp(Broken(), torch.ones(1, 1, 2), {"": 1}, "deconvnet", lambda _l, a, _r: a[None])
