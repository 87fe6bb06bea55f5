"""Benchmark of :func:`convlens.deconvnet.project` against zennit and Captum, in one process.

Workloads (random weights, seeded; 2 random 224×224 images; float32; 16 unit targets: channels
0..15 of the layer, each at its strongest unit per image, the deconvnet rule):

1. VGG16 ``features.15`` (conv3_3's ReLU), explicit engine, ``method="auto"`` (the cone).
2. VGG16 ``features.29`` (conv5_3's ReLU), the same.
3. ResNet-18 ``layer3``, rules engine (on a CPU one ``autograd.grad`` per target through one
   forward pass), and the same engine with all targets in one vmapped backward pass
   (``torch.func``, its path off the CPU); the same two on ResNet-50 ``layer3``.
4. The full-size explicit engine (``method="full"``, rule ``gradient``) against plain autograd
   on the same chain (VGG16 ``features[:16]``): one forward pass, one ``autograd.grad`` per
   target, and ``autograd.grad(..., is_grads_batched=True)``.
5. Peak memory (the peak resident set of a child process, above the model): all 256 channels of VGG16
   ``features.15`` on 2 images, ``method="full"`` and ``"auto"``, and the rules engine.

Peers: zennit's ``DeconvNet`` composite on the whole model and on the model truncated after the
layer (one forward pass, one ``autograd.grad`` per target from the layer's output); Captum's
``NeuronDeconvolution`` once per target with a per-image neuron selector (it runs the whole
model). The peers get the targets' positions for free (computed before their clocks start);
convlens finds them itself (``position="max"``). Each row prints medians of repeats, the ratio
to convlens from the same run and the largest relative difference of the projections
(``max |a - b| / max |b|``; Captum seeds 1 where the others seed the activation, so its
attribution is scaled by the activation). The load average is printed before and after.

    python benchmarks/bench_project.py [--quick] [--threads 2] [--repeats 3]

Needs the ``bench`` extra (zennit, Captum): ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
import torchvision

from convlens.deconvnet import Target, project

PROJECT = sys.modules["convlens.deconvnet.project"]
RULES = sys.modules["convlens.deconvnet.rules"]


# ---------------------------------------------------------------------------- helpers
def load() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``repeats`` calls after one warm-up call, and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def vgg16() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.vgg16(weights=None).eval()


def resnet(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():  # non-trivial running statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return model.eval()


def out_of_place(model: nn.Module) -> nn.Module:
    """A copy with out-of-place ReLUs (the peers' hooks need them)."""
    twin = copy.deepcopy(model)
    for m in twin.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    return twin.eval()


def truncated(model: nn.Module, layer: str) -> nn.Module:
    """The model up to ``layer`` (inclusive) as a Sequential."""
    if hasattr(model, "features"):
        return model.features[: int(layer.split(".")[1]) + 1]
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    return nn.Sequential(*[getattr(model, n) for n in names[: names.index(layer) + 1]])


def layer_output(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    seen = {}
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, a, o: seen.__setitem__("a", o.clone()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen["a"]


def argmax_positions(act: torch.Tensor, channels: Sequence[int]) -> torch.Tensor:
    """(N, T, 2): the strongest unit of each channel per image (first in C order on ties)."""
    n, _, _, w = act.shape
    flat = act[:, list(channels)].reshape(n, len(channels), -1).argmax(2)
    return torch.stack([flat // w, flat % w], 2)


def one_hot(act: torch.Tensor, channel: int, pos: torch.Tensor) -> torch.Tensor:
    signal = torch.zeros_like(act)
    rows = torch.arange(act.shape[0])
    unit = (rows, channel, pos[:, 0], pos[:, 1])
    signal[unit] = act.detach()[unit]
    return signal


def grads_from_layer(model, module, x, channels, positions, context=None) -> torch.Tensor:
    """One forward pass (inside ``context``), one ``autograd.grad`` per target from the
    output of ``module``: (N, T, *x.shape[1:])."""
    seen = {}
    handle = module.register_forward_hook(lambda m, a, o: seen.__setitem__("a", o))
    xr = x.clone().requires_grad_(True)
    try:
        with context if context is not None else torch.enable_grad():
            model(xr)
            act = seen["a"]
            out = []
            for t, c in enumerate(channels):
                signal = one_hot(act, c, positions[:, t])
                (g,) = torch.autograd.grad(act, xr, signal, retain_graph=t < len(channels) - 1)
                out.append(g)
    finally:
        handle.remove()
    return torch.stack(out, 1)


def zennit_run(model, layer, x, channels, positions) -> torch.Tensor:
    from zennit.composites import DeconvNet

    composite = DeconvNet()
    module = dict(model.named_modules())[layer]
    return grads_from_layer(model, module, x, channels, positions, composite.context(model))


def captum_run(model, layer, x, channels, positions) -> torch.Tensor:
    from captum.attr import NeuronDeconvolution

    deconv = NeuronDeconvolution(model, dict(model.named_modules())[layer])
    rows = torch.arange(x.shape[0])
    out = []
    for t, c in enumerate(channels):
        pos = positions[:, t]

        def selector(o: torch.Tensor, c: int = c, pos: torch.Tensor = pos) -> torch.Tensor:
            return o[rows, c, pos[:, 0], pos[:, 1]]

        out.append(deconv.attribute(x.clone().requires_grad_(True), selector).detach())
    return torch.stack(out, 1)


def row(name: str, seconds: float, base: float | None, diff: float | None, note: str = "") -> str:
    ratio = "" if base is None else f"{seconds / base:7.2f}x"
    agree = "" if diff is None else f"{diff:.1e}"
    return f"| {name:<52} | {seconds:8.3f} s | {ratio:>9} | {agree:>8} | {note}"


def header(title: str) -> None:
    print(f"\n### {title}  (load {load()})")
    print(f"| {'run':<52} | {'median':>10} | {'÷ convlens':>9} | {'max diff':>8} | note")


# ---------------------------------------------------------------------------- workloads
def bench_chain(model, layer, x, channels, repeats, captum_targets, captum_repeats) -> None:
    targets = [Target(layer, c) for c in channels]
    t_ours, ours = timed(lambda: project(model, x, targets), repeats)
    act = layer_output(model, x, layer)
    positions = argmax_positions(act, channels)
    assert torch.equal(ours.positions, positions), "convlens and the peers project other units"
    header(f"VGG16 {layer}, {len(channels)} unit targets, {x.shape[0]} images")
    print(row(f"convlens project (method {ours.method})", t_ours, t_ours, None))
    twin = out_of_place(model)
    t_z, z = timed(lambda: zennit_run(twin, layer, x, channels, positions), repeats)
    print(row("zennit DeconvNet, whole model", t_z, t_ours, rel_diff(ours.projections, z)))
    short = truncated(twin, layer)
    short_layer = str(len(short) - 1)
    t_zt, zt = timed(lambda: zennit_run(short, short_layer, x, channels, positions), repeats)
    print(row("zennit DeconvNet, truncated model", t_zt, t_ours, rel_diff(ours.projections, zt)))
    if captum_targets:
        sub = list(channels)[:captum_targets]
        t_c, c = timed(
            lambda: captum_run(twin, layer, x, sub, positions[:, : len(sub)]), captum_repeats
        )
        scaled = c * ours.values[:, : len(sub), None, None, None]
        per = t_c * len(channels) / len(sub)
        note = (
            f"{len(sub)} targets timed, x{len(channels) / len(sub):g}"
            if len(sub) < len(channels)
            else ""
        )
        print(
            row(
                "Captum NeuronDeconvolution, whole model",
                per,
                t_ours,
                rel_diff(ours.projections[:, : len(sub)], scaled),
                note,
            )
        )


def rules_with(model, x, targets, batched: bool) -> Any:
    """``project`` with the rules engine backpropagating in vmapped batches or one
    ``autograd.grad`` per target (the default on a CPU)."""
    old = PROJECT.batched_vjp
    PROJECT.batched_vjp = lambda m, i, counts, rule, cot, budget, _b: old(
        m, i, counts, rule, cot, budget, batched
    )
    try:
        return project(model, x, targets, engine="rules")
    finally:
        PROJECT.batched_vjp = old


def bench_resnet(name, x, channels, repeats, peers: bool, captum_targets: int) -> None:
    model = resnet(name)
    layer = "layer3"
    targets = [Target(layer, c) for c in channels]
    t_ours, ours = timed(lambda: project(model, x, targets), repeats)
    header(f"{name} {layer}, {len(channels)} unit targets, {x.shape[0]} images, rules engine")
    print(row("convlens project (CPU: one autograd.grad per target)", t_ours, t_ours, None))
    t_vmap, vmap = timed(lambda: rules_with(model, x, targets, True), repeats)
    print(
        row(
            "convlens, all targets in one vmapped backward pass",
            t_vmap,
            t_ours,
            rel_diff(ours.projections, vmap.projections),
        )
    )
    if not peers:
        return
    positions = ours.positions
    twin = out_of_place(model)
    t_z, z = timed(lambda: zennit_run(twin, layer, x, channels, positions), repeats)
    print(row("zennit DeconvNet, whole model", t_z, t_ours, rel_diff(ours.projections, z)))
    short = truncated(twin, layer)
    t_zt, zt = timed(lambda: zennit_run(short, "6", x, channels, positions), repeats)
    print(row("zennit DeconvNet, truncated model", t_zt, t_ours, rel_diff(ours.projections, zt)))
    if captum_targets:
        sub = list(channels)[:captum_targets]
        t_c, c = timed(lambda: captum_run(twin, layer, x, sub, positions[:, : len(sub)]), 1)
        scaled = c * ours.values[:, : len(sub), None, None, None]
        per = t_c * len(channels) / len(sub)
        print(
            row(
                "Captum NeuronDeconvolution, whole model",
                per,
                t_ours,
                rel_diff(ours.projections[:, : len(sub)], scaled),
                f"{len(sub)} targets timed" if len(sub) < len(channels) else "",
            )
        )


def bench_full_vs_autograd(model, x, channels, repeats) -> None:
    layer = "features.15"
    chain = model.features[:16]
    targets = [Target(layer, c) for c in channels]
    header(f"full-size explicit engine vs autograd, VGG16 features[:16], {len(channels)} targets")
    t_ours, ours = timed(
        lambda: project(model, x, targets, rule="gradient", method="full"), repeats
    )
    print(row("convlens project(method='full', rule='gradient')", t_ours, t_ours, None))
    t_dec, _ = timed(lambda: project(model, x, targets, method="full"), repeats)
    print(row("convlens project(method='full', rule='deconvnet')", t_dec, t_ours, None))
    positions = ours.positions
    module = chain[15]
    t_ag, ag = timed(lambda: grads_from_layer(chain, module, x, channels, positions), repeats)
    print(
        row(
            "autograd: one forward, one autograd.grad per target",
            t_ag,
            t_ours,
            rel_diff(ours.projections, ag),
        )
    )

    def batched() -> torch.Tensor:
        xr = x.clone().requires_grad_(True)
        act = chain(xr)
        signals = torch.stack([one_hot(act, c, positions[:, t]) for t, c in enumerate(channels)])
        (g,) = torch.autograd.grad(act, xr, signals, is_grads_batched=True)
        return g.transpose(0, 1)

    t_b, b = timed(batched, repeats)
    print(row("autograd.grad(is_grads_batched=True)", t_b, t_ours, rel_diff(ours.projections, b)))


def peak_rss() -> int:
    """This process's peak resident set in bytes: ``VmHWM`` of /proc/self/status (Linux), whose
    mark starts fresh at ``exec``, unlike ``ru_maxrss``, which a child inherits from the (large)
    benchmark process that forked it; ``ru_maxrss`` where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_child(mode: str, channels: int) -> None:
    """Run in a child process: peak RSS above the model for all ``channels`` of
    ``features.15`` on 2 images."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    with torch.device("meta"):
        model = torchvision.models.vgg16(weights=None)
    model.classifier = nn.Identity()  # targets in features: the classifier is not run
    model.to_empty(device="cpu")
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    model.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    base = peak_rss()
    targets = [Target("features.15", c) for c in range(channels)]
    t0 = time.perf_counter()
    if mode == "rules":
        out = project(model, x, targets, engine="rules")
    else:
        out = project(model, x, targets, method=mode)
    seconds = time.perf_counter() - t0
    peak = peak_rss()
    result = out.projections.numel() * out.projections.element_size()
    print(json.dumps({"base": base, "peak": peak, "result": result, "seconds": seconds}))


def bench_memory(channels: int, threads: int) -> None:
    header(f"peak memory above the model: VGG16 features.15, {channels} channels, 2 images")
    print("| run | peak RSS above the model | of which the result | seconds |")
    for mode in ("full", "auto", "rules"):
        env = dict(os.environ, BENCH_THREADS=str(threads))
        done = subprocess.run(
            [sys.executable, __file__, "--memory-child", mode, str(channels)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        r = json.loads(done.stdout.strip().splitlines()[-1])
        gb = (r["peak"] - r["base"]) / 1e9
        print(
            f"| {'rules engine' if mode == 'rules' else f'method={mode!r}'} | {gb:.2f} GB | "
            f"{r['result'] / 1e9:.2f} GB | {r['seconds']:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--captum-targets", type=int, default=None, help="targets Captum runs")
    parser.add_argument("--memory-channels", type=int, default=None)
    parser.add_argument("--skip", default="", help="comma list of: vgg15,vgg29,resnet,full,mem")
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child[0], int(args.memory_child[1]))
        return
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (1 if args.quick else 3)
    captum_targets = (
        args.captum_targets if args.captum_targets is not None else (2 if args.quick else 16)
    )
    skip = set(filter(None, args.skip.split(",")))
    channels = list(range(16))
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, 2 images 224x224, "
        f"float32, medians of {repeats} (after one warm-up), load average {load()}"
    )
    if not {"vgg15", "vgg29", "full"} <= skip:
        model = vgg16()
        if "vgg15" not in skip:
            bench_chain(model, "features.15", x, channels, repeats, captum_targets, 1)
        if "vgg29" not in skip:
            bench_chain(model, "features.29", x, channels, repeats, min(captum_targets, 4), 1)
        if "full" not in skip:
            bench_full_vs_autograd(model, x, channels, repeats)
        del model
    if "resnet" not in skip:
        bench_resnet("resnet18", x, channels, repeats, True, min(captum_targets, 4))
        if not args.quick:
            bench_resnet("resnet50", x, channels, repeats, False, 0)
    if "mem" not in skip:
        bench_memory(args.memory_channels or (32 if args.quick else 256), args.threads)
    print(f"\nload average at the end {load()}")


if __name__ == "__main__":
    main()
