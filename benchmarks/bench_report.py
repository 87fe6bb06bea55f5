"""The report at VGG16 scale: build it with ``convlens report`` and time every page in Chromium.

    python benchmarks/bench_report.py                  # build, then measure (see below for time)
    python benchmarks/bench_report.py --reuse          # measure the report built last time
    python benchmarks/bench_report.py --layers 2       # a smaller build: the first 2 conv layers
    python benchmarks/bench_report.py --synthetic      # all 4,224 channels, tiles rendered directly

What it builds: torchvision's VGG16 architecture with seeded random weights
(``torch.manual_seed(0)``, ``vgg16()``) saved to a state-dict file, run by
``convlens report --model bench_report:vgg16_small --weights FILE --data DIR`` on ``--images``
seeded random RGB images (NumPy ``default_rng(0)``), every channel of all 13 conv layers
(4,224 channels), 9 tiles each (76,032 pictures). The factory :func:`vgg16_small` is the same
architecture read through a ``--side``-pixel preprocessing (``--model vgg16`` always crops 224
pixels, whose projections would take hours on 2 cores); 32 pixels is the smallest input VGG16's
five poolings take, and it still gives every channel of every layer its 9 images.

What it measures, per page: the HTML bytes, the images it references and their bytes (and that
``pages.json`` says the same), how many images the browser has fetched when the load event
fires (the others are lazy), and the load time in headless Chromium at 1280x900
(``performance.timing.loadEventEnd - navigationStart``), first load and median of 3, and the
time until every image inside the window has loaded (lazy images do not hold the load event
back, so this is what a reader waits for). Target: every page within 2 s. Prints a markdown report and writes ``results.json`` in the work folder.
Timings on a shared machine are noisy: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TARGET_MS = 2000
#: The conv layers of torchvision's VGG16 and their channels.
VGG16_CONVS = (
    ("features.0", 64),
    ("features.2", 64),
    ("features.5", 128),
    ("features.7", 128),
    ("features.10", 256),
    ("features.12", 256),
    ("features.14", 256),
    ("features.17", 512),
    ("features.19", 512),
    ("features.21", 512),
    ("features.24", 512),
    ("features.26", 512),
    ("features.28", 512),
)


def vgg16_small() -> Any:
    """``convlens report --model bench_report:vgg16_small``: torchvision's VGG16 (random
    weights until ``--weights`` replaces them) read at ``CONVLENS_BENCH_SIDE`` pixels."""
    import torch
    import torchvision

    from convlens.loaded import LoadedModel
    from convlens.models.images import default_preprocess

    side = int(os.environ.get("CONVLENS_BENCH_SIDE", "32"))
    torch.manual_seed(0)
    model = torchvision.models.vgg16()
    return LoadedModel(
        model,
        "vgg16",
        default_preprocess(side, side),
        (side, side),
        None,
        None,
        f"torchvision vgg16 architecture at {side}x{side} (benchmarks/bench_report.py)",
    )


def make_inputs(work: Path, images: int, side: int) -> tuple[Path, Path]:
    """Seeded random images and the seeded random VGG16 weights file."""
    import numpy as np
    import torch
    import torchvision
    from PIL import Image

    data = work / "data"
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(images):
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(data / f"random_{i:04d}.png")
    weights = work / "vgg16-seed0.pt"
    torch.manual_seed(0)
    torch.save(torchvision.models.vgg16().state_dict(), weights)
    return data, weights


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def build(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    data, weights = make_inputs(work, args.images, args.side)
    out = work / "report"
    layers = ",".join(name for name, _ in VGG16_CONVS[: args.layers])
    command = [
        sys.executable, "-m", "convlens", "report",
        "--model", "bench_report:vgg16_small", "--weights", str(weights),
        "--data", str(data), "--out", str(out), "--layers", layers,
        "--top", "9", "--occlusion-images", "1", "--batch-size", "64",
    ]  # fmt: skip
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    env["CONVLENS_BENCH_SIDE"] = str(args.side)
    before = load_average()
    start = time.perf_counter()
    log = work / "build.log"  # the progress bars, to follow a long build
    with log.open("w") as sink:
        done = subprocess.run(command, env=env, stdout=sink, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"convlens report failed ({done.returncode}):\n{log.read_text()[-4000:]}")
    return {
        "command": " ".join(command[1:]),
        "seconds": seconds,
        "load_before": before,
        "load_after": load_average(),
        "images": args.images,
        "side": args.side,
        "layers": args.layers,
        "channels": sum(n for _, n in VGG16_CONVS[: args.layers]),
    }


def build_synthetic(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The same report (every channel of the chosen layers, 9 tiles each) without the scan and
    the projections: the tiles are seeded random RGB pixels (PNG cannot compress them: the
    heaviest tiles possible) of the size the real ones have, the layer's receptive field at
    ``--side`` pixels clipped to the image (:func:`convlens.arithmetic.receptive_fields`)."""
    import numpy as np
    import torchvision

    from convlens.arithmetic import receptive_fields
    from convlens.report import ChannelBlock, LayerSection, ReportData, Summary, Tile, write_report

    fields = {f.path: f for f in receptive_fields(torchvision.models.vgg16(), (args.side,) * 2)}
    rng = np.random.default_rng(0)
    layers = []
    for name, count in VGG16_CONVS[: args.layers]:
        h, w = (min(v, args.side) for v in fields[name].size)
        blocks = []
        for c in range(count):
            tiles = tuple(
                Tile(
                    rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
                    rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
                    float(9 - k),
                    k,
                    f"random_{k:04d}.png",
                )
                for k in range(9)
            )
            blocks.append(ChannelBlock(c, tiles))
        rf = "x".join(map(str, fields[name].size)) + " px"
        layers.append(LayerSection(name, "Conv2d", count, tuple(blocks), receptive_field=rf))
    summary = Summary("vgg16 (synthetic tiles)", "none", "benchmarks/bench_report.py --synthetic")
    start = time.perf_counter()
    write_report(ReportData(summary, layers=tuple(layers)), work / "report")
    return {
        "command": "write_report of synthetic tiles",
        "seconds": time.perf_counter() - start,
        "load_before": load_average(),
        "load_after": load_average(),
        "images": 0,
        "side": args.side,
        "layers": args.layers,
        "channels": sum(n for _, n in VGG16_CONVS[: args.layers]),
        "synthetic": True,
    }


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.lazy = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            a = dict(attrs)
            self.srcs.append(a.get("src") or "")
            self.lazy += a.get("loading") == "lazy"


def page_weights(root: Path) -> list[dict[str, Any]]:
    """Every page's weight measured from the files (and checked against pages.json)."""
    listed = {p["page"]: p for p in json.loads((root / "pages.json").read_text())["pages"]}
    rows = []
    for page in sorted(root.glob("*.html")):
        parser = _Images()
        parser.feed(page.read_text(encoding="utf-8"))
        image_bytes = sum((root / s).stat().st_size for s in parser.srcs)
        row = {
            "page": page.name,
            "html_bytes": page.stat().st_size,
            "images": len(parser.srcs),
            "lazy": parser.lazy,
            "image_bytes": image_bytes,
        }
        entry = listed[page.name]
        assert (entry["html_bytes"], entry["images"], entry["image_bytes"]) == (
            row["html_bytes"],
            row["images"],
            row["image_bytes"],
        ), page.name
        rows.append(row)
    return rows


# Lazy tiles do not hold the load event back: wait, frame by frame, until every image in the
# window has loaded; the time since navigation start is what a reader waits to see the page.
_VIEWPORT_COMPLETE = """
const done = arguments[arguments.length - 1];
function check() {
  const shown = Array.from(document.images).filter(i => {
    const r = i.getBoundingClientRect();
    return r.bottom > 0 && r.top < innerHeight && r.right > 0 && r.left < innerWidth;
  });
  if (shown.every(i => i.complete)) done([Math.round(performance.now()), shown.length]);
  else requestAnimationFrame(check);
}
check();
"""


def browser_times(root: Path, rows: list[dict[str, Any]], repeats: int) -> None:
    """Add ``load_ms`` (each load), ``first_ms``, ``median_ms`` and ``fetched`` to each row."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.selenium_manager import SeleniumManager

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Selenium Manager must not run (it would download a driver)")

    SeleniumManager.binary_paths = refuse  # type: ignore[method-assign,assignment]
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="bench-report-chromium-")
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--window-size=1280,900", f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_script_timeout(60)
    try:
        driver.get("about:blank")
        for row in rows:
            times, fetched, visible = [], [], []
            for _ in range(repeats):
                driver.get("about:blank")
                driver.get((root / row["page"]).as_uri())
                t = driver.execute_script(
                    "const t = performance.timing;"
                    "return [t.loadEventEnd - t.navigationStart,"
                    " Array.from(document.images).filter(i => i.complete).length];"
                )
                times.append(int(t[0]))
                fetched.append(int(t[1]))
                visible.append(driver.execute_async_script(_VIEWPORT_COMPLETE))
            row["load_ms"] = times
            row["first_ms"] = times[0]
            row["median_ms"] = statistics.median(times)
            row["fetched"] = max(fetched)
            row["viewport_ms"] = statistics.median(v[0] for v in visible)
            row["viewport_images"] = max(v[1] for v in visible)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def kb(value: int) -> str:
    return f"{value / 1000:,.1f}"


def report(results: dict[str, Any]) -> str:
    rows = results["pages"]
    lines = ["# convlens report at VGG16 scale", ""]
    b = results.get("build")
    if b and b.get("synthetic"):
        lines += [
            f"- built: synthetic tiles (random RGB, the real tile sizes at {b['side']}x"
            f"{b['side']}), {b['layers']} conv layers, {b['channels']:,} channels x 9 tiles; "
            f"write_report took {b['seconds']:.1f} s",
        ]
    elif b:
        lines += [
            f"- built: VGG16, seeded random weights (file), {b['images']} random "
            f"{b['side']}x{b['side']} images, {b['layers']} conv layers, {b['channels']:,} "
            f"channels x 9 tiles; `convlens report` took {b['seconds'] / 60:.1f} min "
            f"(load average {b['load_before']} -> {b['load_after']})",
        ]
    lines += [
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; load average while timing pages: "
        f"{results['load_before']} -> {results['load_after']}",
        f"- pages: {len(rows)}; images: {sum(r['images'] for r in rows):,}; "
        f"bytes: {sum(r['html_bytes'] + r['image_bytes'] for r in rows) / 1e6:,.1f} MB",
        "",
        "| page | HTML kB | images | lazy | image kB | complete at load | load event, first "
        "(ms) | load event, median of 3 (ms) | window's images shown, median of 3 (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['page']} | {kb(r['html_bytes'])} | {r['images']:,} | {r['lazy']:,} "
            f"| {kb(r['image_bytes'])} | {r['fetched']:,} | {r['first_ms']} "
            f"| {r['median_ms']:g} | {r['viewport_ms']:g} ({r['viewport_images']} images) |"
        )
    worst = max(rows, key=lambda r: r["median_ms"])
    slowest_first = max(rows, key=lambda r: r["first_ms"])
    slowest_shown = max(rows, key=lambda r: r["viewport_ms"])
    over = [
        r["page"] for r in rows if max(r["median_ms"], r["viewport_ms"], r["first_ms"]) > TARGET_MS
    ]
    lines += [
        "",
        f"- slowest load event (median of 3): {worst['page']}, {worst['median_ms']:g} ms; slowest "
        f"first load: {slowest_first['page']}, {slowest_first['first_ms']} ms; slowest to show "
        f"the window's images: {slowest_shown['page']}, {slowest_shown['viewport_ms']:g} ms; "
        f"most images on a page: {max(r['images'] for r in rows):,}",
        f"- target (every page's load event and window images within {TARGET_MS} ms): "
        + ("met" if not over else f"MISSED on {len(over)} pages: {', '.join(over)}"),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench-report")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--layers", type=int, default=len(VGG16_CONVS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="measure the last build again")
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="no scan or projections: random tiles of the real sizes, rendered directly",
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    saved = args.work / "results.json"
    if args.reuse:
        if saved.is_file():
            results["build"] = json.loads(saved.read_text()).get("build")
    elif args.synthetic:
        results["build"] = build_synthetic(args.work, args)
    else:
        results["build"] = build(args.work, args)
    root = args.work / "report"
    results["load_before"] = load_average()
    results["pages"] = page_weights(root)
    browser_times(root, results["pages"], args.repeats)
    results["load_after"] = load_average()
    saved.write_text(json.dumps(results, indent=1) + "\n")
    print(report(results))


if __name__ == "__main__":
    main()
