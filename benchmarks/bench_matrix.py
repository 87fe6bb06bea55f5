"""Benchmarks for convlens.matrix and convlens.transpose, as ratios within one run.

    python benchmarks/bench_matrix.py            # the full run (a few minutes on 2 cores)
    python benchmarks/bench_matrix.py --quick    # smaller sizes, fewer repeats

1. The direct builder ``conv_matrix`` against the dense Jacobian from ``torch.func.jacrev``
   (cold = pattern cache cleared, warm = cached pattern and a new weight: one gather).
2. VGG16's first conv (3->64, k3, p1) at 224x224: build time and peak resident memory, measured
   in a fresh subprocess from ``/proc/self/status`` (VmHWM, reset via ``/proc/self/clear_refs``
   after the model is built), against the size of the CSR result.
3. The four transposed-convolution routes against native ``F.conv_transpose2d`` at real sizes.

Every figure is the median of several repeats. Timings on a shared machine are noisy; ratios
measured in the same run are the figures to compare.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from convlens.matrix import clear_pattern_cache, conv_matrix
from convlens.transpose import ROUTES


def median_time(fn: Callable[[], object], repeats: int, setup: Callable[[], None] | None = None):
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


# ----------------------------------------------------------------------------- 1. vs jacrev


def bench_jacrev(cases, repeats: int) -> None:
    print("\n## 1. conv_matrix vs torch.func.jacrev (dense Jacobian), float32, k3 p1")
    print("| layer | C shape | nnz | jacrev | builder cold | builder warm | cold speed-up |")
    print("|---|---|---|---|---|---|---|")
    for c_in, c_out, side in cases:
        print(_jacrev_row(c_in, c_out, side, repeats))
        gc.collect()


def _jacrev_row(c_in: int, c_out: int, side: int, repeats: int) -> str:
    w = torch.randn(c_out, c_in, 3, 3)
    x = torch.randn(c_in, side, side)
    shape = (c_out * side * side, c_in * side * side)
    dense_bytes = shape[0] * shape[1] * 4
    if dense_bytes > 2 * 2**30:
        return (
            f"| {c_in}->{c_out} {side}x{side} | {shape} | - | skipped: the dense Jacobian alone "
            f"is {dense_bytes / 2**30:.1f} GiB and jacrev's vmapped intermediates several times "
            "that (OOM-killed on this machine) | - | - | - |"
        )

    def conv(v: torch.Tensor) -> torch.Tensor:
        return F.conv2d(v.reshape(1, c_in, side, side), w, padding=1).reshape(-1)

    jac_fn = torch.func.jacrev(conv)
    jac = jac_fn(x.reshape(-1))
    t_jac = median_time(lambda: jac_fn(x.reshape(-1)), repeats)
    mat = conv_matrix(w, side, padding=1)
    if not torch.allclose(mat.to_dense(), jac, atol=1e-5):
        raise SystemExit("conv_matrix disagrees with jacrev")
    del jac
    t_cold = median_time(lambda: conv_matrix(w, side, padding=1), repeats, clear_pattern_cache)
    w2 = torch.randn_like(w)
    t_warm = median_time(lambda: conv_matrix(w2, side, padding=1), repeats)
    return (
        f"| {c_in}->{c_out} {side}x{side} | {shape} | {mat._nnz():,} | "
        f"{fmt_s(t_jac)} | {fmt_s(t_cold)} | {fmt_s(t_warm)} | {t_jac / t_cold:,.0f}x |"
    )


# ----------------------------------------------------------------------------- 2. VGG16


_VGG_CHILD = r"""
import json, sys, time, gc
import torch, torchvision
from convlens.matrix import conv_matrix
side = int(sys.argv[1])
if int(sys.argv[2]):
    torch.set_num_threads(int(sys.argv[2]))
torch.manual_seed(0)
model = torchvision.models.vgg16(weights=None)
layer = model.features[0]
del model
gc.collect()
def status():
    vals = {}
    for line in open("/proc/self/status"):
        if line.startswith(("VmHWM", "VmRSS")):
            key, value = line.split(":")
            vals[key] = int(value.split()[0]) * 1024
    return vals
open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark
before = status()
t0 = time.perf_counter()
c = conv_matrix(layer, side)
seconds = time.perf_counter() - t0
after = status()
csr = sum(t.numel() * t.element_size() for t in (c.crow_indices(), c.col_indices(), c.values()))
print(json.dumps({"layer": repr(layer), "shape": list(c.shape), "nnz": c._nnz(),
                  "seconds": seconds, "rss_before": before["VmRSS"], "hwm": after["VmHWM"],
                  "csr_bytes": csr, "index_dtype": str(c.col_indices().dtype)}))
"""


def bench_vgg(side: int, repeats: int, threads: int | None) -> None:
    print(f"\n## 2. VGG16 features[0] (3->64, k3, p1) at {side}x{side}, float32 CSR")
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", _VGG_CHILD, str(side), str(threads or 0)],
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    r = runs[0]
    seconds = statistics.median(x["seconds"] for x in runs)
    extra = statistics.median(x["hwm"] - x["rss_before"] for x in runs)
    hwm = statistics.median(x["hwm"] for x in runs)
    mib = 2**20
    print(f"layer {r['layer']}; C shape {tuple(r['shape'])}; nnz {r['nnz']:,}; ")
    print(f"indices {r['index_dtype']}; CSR size {r['csr_bytes'] / mib:.0f} MiB")
    print(f"- build time (median of {repeats} fresh processes, cold cache): {seconds:.2f} s")
    print(
        f"- peak RSS during the build above the process's RSS before it: {extra / mib:.0f} MiB "
        f"= {extra / r['csr_bytes']:.2f}x the CSR size"
    )
    print(
        f"- peak RSS of the whole process (torch itself ~{r['rss_before'] / mib:.0f} MiB): "
        f"{hwm / mib:.0f} MiB = {hwm / r['csr_bytes']:.2f}x the CSR size"
    )


# ----------------------------------------------------------------------------- 3. routes


def bench_routes(cases, repeats: int) -> None:
    print("\n## 3. transposed-convolution routes vs native F.conv_transpose2d, float32")
    names = list(ROUTES)
    print("| case | input | native | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for label, shape, w_shape, kw in cases:
        print(_route_row(label, shape, w_shape, kw, repeats))
        gc.collect()


def _route_row(label: str, shape: tuple, w_shape: tuple, kw: dict, repeats: int) -> str:
    x, w = torch.randn(shape), torch.randn(w_shape)
    ref = F.conv_transpose2d(x, w, **kw)
    cells = []
    with torch.no_grad():
        t_native = median_time(lambda: F.conv_transpose2d(x, w, **kw), repeats)
        for name, route in ROUTES.items():
            out = route(x, w, **kw)  # warm-up (and the matmul route's cached pattern)
            if not torch.allclose(out, ref, atol=1e-3, rtol=1e-4):
                raise SystemExit(f"route {name} disagrees with F.conv_transpose2d")
            t = median_time(lambda route=route: route(x, w, **kw), repeats)
            cells.append(f"{fmt_s(t)} ({t / t_native:.1f}x)")
    return f"| {label} | {tuple(shape)} | {fmt_s(t_native)} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    parser.add_argument(
        "--only", choices=["jacrev", "vgg", "routes"], default=None, help="run one section"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else 5
    torch.manual_seed(0)
    print(f"# convlens matrix benchmarks ({'quick' if args.quick else 'full'})")
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; torch {torch.__version__}; "
        f"{platform.processor() or platform.machine()}; {os.cpu_count()} CPUs visible, "
        f"torch threads {torch.get_num_threads()}"
    )
    if args.quick:
        jac_cases = [(3, 4, 16), (3, 8, 32), (3, 16, 64)]
    else:
        jac_cases = [(3, 4, 16), (3, 8, 32), (8, 8, 32), (3, 16, 64)]
    if args.only in (None, "jacrev"):
        bench_jacrev(jac_cases, repeats)
    if args.only in (None, "vgg"):
        bench_vgg(112 if args.quick else 224, 1 if args.quick else 3, args.threads)
    route_cases = [
        ("DCGAN up 128->64 k4 s2 p1", (8, 128, 16, 16), (128, 64, 4, 4),
         {"stride": 2, "padding": 1}),
        ("U-Net up 128->64 k2 s2", (4, 128, 28, 28), (128, 64, 2, 2), {"stride": 2}),
        ("ZF conv1^T 96->3 k7 s2 p1", (1, 96, 110, 110), (96, 3, 7, 7),
         {"stride": 2, "padding": 1, "output_padding": 1}),
        ("VGG conv1_1^T 64->3 k3 p1", (1, 64, 224, 224), (64, 3, 3, 3), {"padding": 1}),
    ]  # fmt: skip
    if args.quick:
        route_cases = [
            (label, (shape[0], shape[1], max(4, shape[2] // 2), max(4, shape[3] // 2)), w, kw)
            for label, shape, w, kw in route_cases
        ]
    if args.only in (None, "routes"):
        bench_routes(route_cases, repeats)


if __name__ == "__main__":
    main()
