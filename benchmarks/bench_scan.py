"""Benchmark of ``convlens.scan`` on VGG16 with random weights and 224×224 inputs.

1. Scan throughput against a bare forward pass of the same layers over the same images
   (same batches, no hooks, ``torch.no_grad``): target ratio >= 0.85.
2. Projecting the top-9 of every channel of conv3_3 (``features.14``) and conv5_3
   (``features.28``) with :func:`convlens.scan.project_top`, against Captum's
   ``NeuronDeconvolution`` called once per channel with a per-image neuron selector (the
   channel's 9 images as one batch). Captum is timed on a subset of channels (it is slow) and
   compared per channel. Same projections up to the activation's scale (Captum seeds 1,
   convlens seeds the activation): relative difference < 1e-4.

Prints medians and ratios. ``--quick`` for a smoke run. Needs the ``bench`` extra (captum).

    python benchmarks/bench_scan.py [--quick] [--images N] [--threads T]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn as nn
from torchvision.models import vgg16

from convlens.scan.crop import project_top
from convlens.scan.run import scan

LAYERS = {"conv3_3": "features.14", "conv5_3": "features.28"}


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_throughput(model: nn.Module, data: list, batch: int, repeats: int) -> dict:
    inputs = torch.stack([x for x, _ in data])
    upto = max(int(p.split(".")[1]) for p in LAYERS.values())
    trunk = model.features[: upto + 1]

    def bare() -> None:
        with torch.no_grad():
            for lo in range(0, len(inputs), batch):
                trunk(inputs[lo : lo + batch])

    def scanned() -> None:
        scan(model, data, list(LAYERS.values()), top=9, batch_size=batch, progress=False)

    bare()  # warm-up
    t_bare = _median_time(bare, repeats)
    t_scan = _median_time(scanned, repeats)
    return {
        "images": len(data),
        "bare_s": t_bare,
        "scan_s": t_scan,
        "bare_img_s": len(data) / t_bare,
        "scan_img_s": len(data) / t_scan,
        "ratio": t_bare / t_scan,
    }


def _captum_model(model: nn.Module) -> nn.Module:
    twin = copy.deepcopy(model)
    for m in twin.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False  # Captum's ReLU hooks need out-of-place ReLUs
    return twin.eval()


class _AsDouble:
    """The same dataset in float64."""

    def __init__(self, data: list) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        x, y = self.data[i]
        return x.double(), y


def _captum(twin, layer, data, top, channels):
    """Captum's NeuronDeconvolution once per channel on its kept images; (seconds, attrs)."""
    from captum.attr import NeuronDeconvolution

    deconv = NeuronDeconvolution(twin, dict(twin.named_modules())[layer])
    seconds, attrs = 0.0, {}
    for c in channels:
        idx = [i for i in top.indices[c].tolist() if i >= 0]
        pos = top.positions[c][: len(idx)]
        inputs = torch.stack([data[i][0] for i in idx]).requires_grad_(True)
        rows = torch.arange(len(idx))

        def selector(
            out: torch.Tensor, c: int = c, pos: torch.Tensor = pos, rows: torch.Tensor = rows
        ) -> torch.Tensor:
            return out[rows, c, pos[:, 0], pos[:, 1]]

        t0 = time.perf_counter()
        attrs[c] = deconv.attribute(inputs, neuron_selector=selector).detach()
        seconds += time.perf_counter() - t0
    return seconds, attrs


def _max_rel_diff(lp, attrs, size: int) -> float:
    """convlens (seeded with the activation) against Captum (seeded with 1) times the
    activation, on the box; Captum's mass outside the box counts as difference too."""
    worst = 0.0
    for row, c in enumerate(lp.channels):
        if c not in attrs:
            continue
        for j in range(attrs[c].shape[0]):
            a, b = lp.boxes[row, j, :, 0].tolist(), lp.boxes[row, j, :, 1].tolist()
            cut = torch.zeros_like(lp.projections[row, j])
            sy, sx, ey, ex = max(a[0], 0), max(a[1], 0), min(b[0], size), min(b[1], size)
            cut[:, sy - a[0] : ey - a[0], sx - a[1] : ex - a[1]] = attrs[c][j, :, sy:ey, sx:ex]
            outside = (attrs[c][j].abs().sum() - cut.abs().sum()) / attrs[c][j].abs().sum()
            ref = cut * lp.values[row, j]
            diff = (lp.projections[row, j] - ref).abs().max() / ref.abs().max()
            worst = max(worst, float(diff), float(outside.abs()))
    return worst


def bench_projection(model, data, result, name, layer, ours_channels, captum_channels, check):
    top = result.layers[layer]
    n_ch = top.values.shape[0]
    ours_set = list(range(n_ch)) if ours_channels is None else list(range(min(ours_channels, n_ch)))
    t0 = time.perf_counter()
    ours = project_top(model, data, result, layers=[layer], channels=ours_set)
    t_ours = time.perf_counter() - t0
    lp = ours.layers[layer]
    t_captum, attrs = _captum(_captum_model(model), layer, data, top, range(captum_channels))
    diff32 = _max_rel_diff(lp, attrs, 224)
    # the same comparison in float64, where near-ties in max pooling cannot flip a switch
    model64 = copy.deepcopy(model).double()
    data64 = _AsDouble(data)
    lp64 = project_top(model64, data64, result, layers=[layer], channels=list(range(check)))
    _, attrs64 = _captum(_captum_model(model64), layer, data64, top, range(check))
    diff64 = _max_rel_diff(lp64.layers[layer], attrs64, 224)
    per_ours = t_ours / len(ours_set)
    per_captum = t_captum / captum_channels
    return {
        "layer": f"{name} ({layer})",
        "method": lp.method,
        "ours_channels": len(ours_set),
        "ours_s": t_ours,
        "ours_per_channel_s": per_ours,
        "captum_channels": captum_channels,
        "captum_per_channel_s": per_captum,
        "speedup": per_captum / per_ours,
        "max_rel_diff_f32": diff32,
        "max_rel_diff_f64": diff64,
        "check_channels": check,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--images", type=int, default=None, help="images scanned")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--captum-channels", type=int, default=None)
    parser.add_argument(
        "--check-channels", type=int, default=2, help="channels compared with Captum in float64"
    )
    parser.add_argument(
        "--ours-channels",
        type=int,
        default=None,
        help="channels projected by convlens (default: all)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.images or (12 if args.quick else 32)
    repeats = args.repeats or (1 if args.quick else 3)
    captum_channels = args.captum_channels or (2 if args.quick else 4)
    ours_channels = args.ours_channels or (16 if args.quick else None)
    torch.manual_seed(0)
    model = vgg16(weights=None).eval()
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(3, 224, 224, generator=g), 0) for _ in range(n)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {n} images 224x224")

    tp = bench_throughput(model, data, args.batch_size, repeats)
    print(
        f"scan throughput: bare forward {tp['bare_img_s']:.2f} img/s, scan {tp['scan_img_s']:.2f} "
        f"img/s, ratio {tp['ratio']:.3f} (target >= 0.85; medians of {repeats})"
    )
    result = scan(
        model, data, list(LAYERS.values()), top=9, batch_size=args.batch_size, progress=False
    )
    for name, layer in LAYERS.items():
        r = bench_projection(
            model, data, result, name, layer, ours_channels, captum_channels, args.check_channels
        )
        print(
            f"{r['layer']}: convlens [{r['method']}] {r['ours_per_channel_s'] * 1e3:.1f} ms/channel "
            f"({r['ours_channels']} channels in {r['ours_s']:.1f} s), Captum "
            f"{r['captum_per_channel_s'] * 1e3:.1f} ms/channel ({r['captum_channels']} channels), "
            f"speedup {r['speedup']:.1f}x; max relative difference to Captum: float32 "
            f"{r['max_rel_diff_f32']:.1e}, float64 {r['max_rel_diff_f64']:.1e} "
            f"({r['check_channels']} channels)"
        )


if __name__ == "__main__":
    main()
