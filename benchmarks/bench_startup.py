"""Start-up time of the CLI against a bare ``python -c "import click, numpy"``.

A calculator such as ``convlens arith conv`` should cost little more than starting Python with
click and NumPy (target: within 2x). Every command runs in a fresh process; the rounds interleave
the commands so that load changes hit all of them alike. Printed: median and minimum wall time
of each, the ratio of medians to the bare import, and the load average before and after.

    python benchmarks/bench_startup.py               # 9 rounds
    python benchmarks/bench_startup.py --runs 15 --importtime

``--importtime`` adds, per command, the total of ``python -X importtime`` (the sum of the
top-level cumulative times) and the heavy packages it loaded.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("torch", "sympy", "matplotlib", "torchvision", "safetensors")
ARITH = ["arith", "conv", "--input", "12", "--kernel", "3", "--stride", "2", "--padding", "1"]


def commands() -> dict[str, list[str]]:
    """Label -> argv. ``convlens`` is the installed console script next to this Python."""
    script = Path(sys.executable).with_name("convlens")
    convlens = [str(script)] if script.exists() else [sys.executable, "-m", "convlens"]
    return {
        'python -c "import click, numpy"': [sys.executable, "-c", "import click, numpy"],
        'python -c "import convlens"': [sys.executable, "-c", "import convlens"],
        "convlens --help": [*convlens, "--help"],
        "convlens " + " ".join(ARITH): [*convlens, *ARITH],
    }


def wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def importtime(argv: list[str]) -> tuple[float, list[str]]:
    """Total ``-X importtime`` (ms, top-level cumulative) and the heavy packages imported."""
    if argv[0] != sys.executable:  # the console script: run its entry point under -X importtime
        argv = [sys.executable, "-m", "convlens", *argv[1:]]
    proc = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    total, heavy = 0, set()
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match is None:
            continue
        if len(match.group(2)) <= 1:  # top level: its cumulative time includes its children
            total += int(match.group(1))
        if match.group(3).split(".")[0] in HEAVY:
            heavy.add(match.group(3).split(".")[0])
    return total / 1000, sorted(heavy)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=9, help="rounds (>= 7 for a stable median)")
    ap.add_argument("--importtime", action="store_true", help="add -X importtime totals")
    args = ap.parse_args()
    runs = max(1, args.runs)
    table = commands()
    load_before = os.getloadavg()
    for argv in table.values():  # warm the file cache once
        wall(argv)
    times: dict[str, list[float]] = {label: [] for label in table}
    for _ in range(runs):
        for label, argv in table.items():
            times[label].append(wall(argv))
    load_after = os.getloadavg()

    base_label = next(iter(table))
    base = statistics.median(times[base_label])
    width = max(map(len, table))
    print(f"{runs} rounds, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(
        f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
        f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
    )
    header = f"{'command':<{width}}  {'median s':>9}  {'min s':>7}  {'ratio':>6}"
    if args.importtime:
        header += f"  {'importtime ms':>13}  heavy packages loaded"
    print(header)
    for label, argv in table.items():
        median = statistics.median(times[label])
        row = f"{label:<{width}}  {median:9.3f}  {min(times[label]):7.3f}  {median / base:5.2f}x"
        if args.importtime:
            total, heavy = importtime(argv)
            row += f"  {total:13.1f}  {', '.join(heavy) or '-'}"
        print(row)
    arith = statistics.median(times[list(table)[-1]])
    verdict = "within" if arith <= 2 * base else "NOT within"
    print(f"convlens arith conv is {arith / base:.2f}x the bare import: {verdict} the 2x target")


if __name__ == "__main__":
    main()
