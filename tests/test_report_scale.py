"""The report at VGG16 size: every channel of its 13 conv layers (4,224 channels, 9 tiles each,
76,032 pictures) in headless Chromium.

The render layer is what scales, so the report data is built directly with tiny PNG tiles (the
real thing, from a VGG16 with seeded random weights, is ``benchmarks/bench_report.py``).
Checked: each layer is split into pages of :data:`~convlens.report.render.CHANNELS_PER_PAGE`
channels; no page references more than 2 × 9 × that many images; every image of every page
resolves in the browser; at load the browser has fetched only part of a full page's images (the
rest are lazy); ``pages.json`` agrees with the files. Load times are the benchmark's business,
not a test's.
"""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.common.by import By

from convlens.report import ChannelBlock, LayerSection, ReportData, Summary, Tile, write_report
from convlens.report.render import CHANNELS_PER_PAGE, PAGES_FILE, layer_filename
from test_report_browser import browser, check_images, severe_console_entries  # noqa: F401
from test_report_render import parse

#: VGG16's conv layers (torchvision paths) and their channels: 4,224 in all.
VGG16_CONVS = {
    "features.0": 64,
    "features.2": 64,
    "features.5": 128,
    "features.7": 128,
    "features.10": 256,
    "features.12": 256,
    "features.14": 256,
    "features.17": 512,
    "features.19": 512,
    "features.21": 512,
    "features.24": 512,
    "features.26": 512,
    "features.28": 512,
}
TOP = 9
#: The most images one page may reference: a projection and a patch per tile of its channels.
MAX_IMAGES = 2 * TOP * CHANNELS_PER_PAGE


def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def big_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pngs = [_png(v) for v in range(256)]
    layers = []
    for name, count in VGG16_CONVS.items():
        blocks = tuple(
            ChannelBlock(
                c,
                tuple(
                    Tile(pngs[(c + k) % 256], pngs[(7 * c + k) % 256], 9.0 - k, k, f"im{k}.png")
                    for k in range(TOP)
                ),
            )
            for c in range(count)
        )
        layers.append(LayerSection(name, "Conv2d", count, blocks, receptive_field="3×3 px"))
    data = ReportData(Summary("vgg16 (tiles only)", "none", "test"), layers=tuple(layers))
    return write_report(data, tmp_path_factory.mktemp("scale") / "report").parent


def _layer_pages() -> list[str]:
    return [
        layer_filename(i, p)
        for i, count in enumerate(VGG16_CONVS.values())
        for p in range(math.ceil(count / CHANNELS_PER_PAGE))
    ]


def test_the_report_is_split_into_pages_none_over_the_image_limit(big_report: Path) -> None:
    assert sum(VGG16_CONVS.values()) == 4224
    expected = _layer_pages()
    assert len(expected) == 66
    assert sorted(p.name for p in big_report.glob("layer-*.html")) == sorted(expected)
    total = 0
    for name in expected:
        srcs = parse(big_report / name).attrs("img", "src")
        assert 0 < len(srcs) <= MAX_IMAGES, name
        assert len(set(srcs)) == len(srcs)
        total += len(srcs)
    assert total == 2 * TOP * 4224 == len(list((big_report / "img").rglob("*.png")))
    manifest = json.loads((big_report / PAGES_FILE).read_text())
    pages = {p["page"]: p for p in manifest["pages"]}
    assert max(p["images"] for p in pages.values()) == MAX_IMAGES
    assert sum(pages[n]["images"] for n in expected) == total
    assert all(pages[n]["html_bytes"] == (big_report / n).stat().st_size for n in expected)


def test_every_page_opens_and_every_image_resolves(
    browser: webdriver.Chrome,  # noqa: F811
    big_report: Path,
) -> None:
    browser.get_log("browser")
    names = ["index.html", *_layer_pages()]
    partial = 0
    for name in names:
        browser.get((big_report / name).as_uri())
        images = browser.execute_script("return document.images.length;")
        if images == MAX_IMAGES:
            # at load, the lazy tiles far below the window have not been fetched
            fetched = browser.execute_script(
                "return Array.from(document.images).filter(i => i.complete).length;"
            )
            partial += fetched < images
        assert check_images(browser) == images <= MAX_IMAGES, name
        assert browser.execute_script("return document.scripts.length;") == 0
        if name != "index.html":
            nav = browser.find_element(By.CSS_SELECTOR, "header nav a.active")
            first_page = re.sub(r"-p[0-9]+\.html$", ".html", name)
            assert (nav.get_attribute("href") or "").endswith("/" + first_page)
    assert partial == sum(1 for n in names if n.startswith("layer-"))
    assert severe_console_entries(browser) == []
