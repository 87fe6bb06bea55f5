"""The render layer of the HTML report: pages, images, escaping, atomic writing.

The data is fake but real: PNG files written by PIL, arrays, bytes; names with HTML special
characters. References: Python's own ``html.parser`` (what a browser's parser sees) and PIL
(reading back every image the report points at).
"""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from convlens.errors import ParameterError
from convlens.report import (
    MARKER,
    ChannelBlock,
    FilterSection,
    LayerSection,
    LegendEntry,
    OcclusionItem,
    OcclusionSection,
    Panel,
    ReportData,
    Summary,
    Table,
    Tile,
    write_report,
)
from convlens.report import render as render_module
from convlens.report.render import display_size, to_image

EVIL_FILE = "<script>alert(1)</script>.png"
EVIL_CLASS = "a&b\"<i>'"
EVIL_LAYER = "features.<b>0</b>"
EVIL_COMMAND = "convlens report --data 'x&y' --out \"<out>\""


class Page(HTMLParser):
    """Collects tags, attributes and text of one page, as a browser's parser would see them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._h1 = False
        self.h1 = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._h1 = self._h1 or tag == "h1"

    def handle_endtag(self, tag: str) -> None:
        if tag == "h1":
            self._h1 = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._h1:
            self.h1 += data

    def attrs(self, tag: str, name: str) -> list[str]:
        return [a[name] or "" for t, a in self.tags if t == tag and name in a]


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def fake_report_data(tmp: Path, *, channels: int = 3, top: int = 9) -> ReportData:
    """A small report touching every feature, with every kind of picture and hostile names."""
    rng = np.random.default_rng(0)
    source = tmp / "source-images"
    source.mkdir(parents=True, exist_ok=True)

    def gray(size: int) -> np.ndarray:
        return rng.integers(0, 256, (size, size), dtype=np.uint8)

    layers = []
    for li, (name, size) in enumerate([("features.0", 5), (EVIL_LAYER, 14)]):
        blocks = []
        for c in range(channels):
            tiles = []
            for k in range(top):
                path = source / f"l{li}c{c}k{k}.png"
                Image.fromarray(gray(size)).save(path)
                projection: object = (
                    _png_bytes(gray(size)) if k % 2 else Image.fromarray(gray(size)).convert("RGB")
                )
                tiles.append(
                    Tile(
                        projection=projection,  # type: ignore[arg-type]
                        patch=path if k % 3 else gray(size),
                        value=float(10 - k) / 3,
                        rank=k,
                        image_name=EVIL_FILE if k == 0 else f"img_{k}.png",
                        label=EVIL_CLASS if k == 1 else ("Sandal" if k % 2 else None),
                        position=(k, c),
                    )
                )
            note = "silent <always> & dead" if c == 1 else None
            blocks.append(ChannelBlock(channel=c * 7, tiles=tuple(tiles), note=note))
        blocks.append(ChannelBlock(channel=99, tiles=()))
        layers.append(
            LayerSection(
                name=name,
                description=f"Conv2d <{li}>",
                channels_total=128,
                blocks=tuple(blocks),
                receptive_field=f"{size}×{size} px",
            )
        )
    filters = FilterSection(
        layer="features.0",
        filters=tuple(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8) for _ in range(8)),
        captions=tuple(str(i) for i in range(8)),
        stats=Table(
            ("layer", "RMS", "note"), (("features.0", 0.125, EVIL_CLASS), (EVIL_LAYER, 2, None))
        ),
    )
    panels = tuple(
        Panel(key, title, rng.integers(0, 256, (28, 28, 3), dtype=np.uint8), caption)
        for key, title, caption in [
            ("a", "input", EVIL_FILE),
            ("b", "total activation", "min 0 max 3"),
            ("c", "projection", ""),
            ("d", f"p({EVIL_CLASS})", "0.01 – 0.99"),
            ("e", "most probable class", ""),
        ]
    )
    occlusion = OcclusionSection(
        layer=EVIL_LAYER,
        square=7,
        stride=2,
        items=(
            OcclusionItem(
                image_name=EVIL_FILE,
                label=EVIL_CLASS,
                panels=panels,
                legend=(LegendEntry("#1f77b4", EVIL_CLASS), LegendEntry("#ff7f0e", "Bag")),
            ),
        ),
    )
    summary = Summary(
        model="demo <ZF-style>",
        dataset=f"folder {EVIL_FILE}",
        command=EVIL_COMMAND,
        images=1234,
        accuracy=0.9123,
        facts=(("weights", "sha256 abc&def"),),
        layers=Table(
            ("layer", "type", "channels"),
            (("features.0", "Conv2d", 32), (EVIL_LAYER, "Conv2d", 64)),
        ),
        timings=(("scan", 1.5), ("project", 75.0)),
        skipped=((f"data/{EVIL_FILE}", "cannot identify image file <broken>"),),
        warnings=("random weights & <nothing learned>",),
    )
    return ReportData(summary=summary, layers=tuple(layers), filters=filters, occlusion=occlusion)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("render")
    return write_report(fake_report_data(tmp), tmp / "out").parent


PAGES = ["index.html", "layer-01.html", "layer-02.html", "filters.html", "occlusion.html"]


def test_every_page_is_written_with_its_heading(report: Path) -> None:
    headings = {name: parse(report / name).h1.strip() for name in PAGES}
    assert headings == {
        "index.html": "Summary",
        "layer-01.html": "Layer features.0",
        "layer-02.html": f"Layer {EVIL_LAYER}",
        "filters.html": "Filters",
        "occlusion.html": "Occlusion sensitivity",
    }
    assert (report / MARKER).is_file()
    assert (report / "style.css").read_text().startswith("/* convlens report")


def test_every_page_links_every_page_and_nothing_external(report: Path) -> None:
    for name in PAGES:
        page = parse(report / name)
        hrefs = page.attrs("a", "href")
        assert set(PAGES) <= set(hrefs)
        local = [h for h in hrefs if not h.startswith("#")]
        assert all((report / h).is_file() for h in local), local
        urls = hrefs + page.attrs("img", "src") + page.attrs("link", "href")
        assert not [u for u in urls if re.match(r"^[a-z]+:|^//", u)]
        assert page.attrs("script", "src") == []
        assert not any(t == "script" for t, _ in page.tags)


def test_images_exist_and_match_the_pictures(report: Path, tmp_path: Path) -> None:
    data = fake_report_data(tmp_path)
    page = parse(report / "layer-01.html")
    srcs = page.attrs("img", "src")
    tiles = [t for b in data.layers[0].blocks for t in b.tiles]
    assert len(srcs) == 2 * len(tiles)
    for src in srcs:
        with Image.open(report / src) as image:
            assert image.format == "PNG"
            assert image.size == (5, 5)
    # the first tile's patch was an array: the PNG holds exactly its pixels
    first = next(s for s in srcs if s.endswith("c0000-00-patch.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(report / first)), tiles[0].patch)
    # a path picture is copied pixel for pixel
    second = next(s for s in srcs if s.endswith("c0000-01-patch.png"))
    np.testing.assert_array_equal(
        np.asarray(Image.open(report / second)),
        np.asarray(Image.open(tiles[1].patch)),  # type: ignore[arg-type]
    )
    all_srcs = [s for name in PAGES for s in parse(report / name).attrs("img", "src")]
    assert len(all_srcs) == len(set(all_srcs))
    assert all((report / s).is_file() for s in all_srcs)
    # displayed sizes: integer upscaling of 5-px tiles, crisp
    imgs = [a for t, a in page.tags if t == "img"]
    assert {(a["width"], a["height"], a["class"]) for a in imgs} == {("55", "55", "crisp")}


def test_values_are_in_the_captions(report: Path, tmp_path: Path) -> None:
    data = fake_report_data(tmp_path)
    text = "".join(parse(report / "layer-01.html").text)
    for tile in data.layers[0].blocks[0].tiles:
        assert render_module.format_number(tile.value) in text
    assert "Showing 4 of 128 channels" in " ".join(text.split())
    assert "never active on this dataset" in text
    assert "silent <always> & dead" in text
    assert "silent &lt;always&gt; &amp; dead" in (report / "layer-01.html").read_text()


def test_user_strings_are_escaped_everywhere(report: Path) -> None:
    raw = {name: (report / name).read_text(encoding="utf-8") for name in PAGES}
    joined = "\n".join(raw.values())
    assert "<script" not in joined
    assert "<b>0</b>" not in joined
    assert "<i>" not in joined
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.png" in raw["layer-01.html"]
    assert "a&amp;b&#34;&lt;i&gt;&#39;" in raw["layer-01.html"]
    assert "features.&lt;b&gt;0&lt;/b&gt;" in raw["index.html"]
    for name in PAGES:
        page = parse(report / name)
        assert {t for t, _ in page.tags}.isdisjoint({"script", "b", "i"})
    # the parser recovers the exact user strings: escaped, not mangled
    index = parse(report / "index.html")
    assert EVIL_COMMAND in "".join(index.text)
    assert f"data/{EVIL_FILE}" in "".join(index.text)
    titles = parse(report / "layer-01.html").attrs("img", "title")
    assert any(t.startswith(EVIL_FILE) for t in titles)
    assert any(EVIL_CLASS in t for t in titles)
    occlusion = parse(report / "occlusion.html")
    assert f"{EVIL_FILE} label: {EVIL_CLASS}" in " ".join("".join(occlusion.text).split())
    assert EVIL_CLASS in occlusion.text


def test_legend_colours_are_validated(tmp_path: Path) -> None:
    data = fake_report_data(tmp_path, channels=1, top=1)
    assert data.occlusion is not None
    item = data.occlusion.items[0]
    bad_item = OcclusionItem(item.image_name, item.label, item.panels, (LegendEntry("red;x", "a"),))
    bad = ReportData(data.summary, occlusion=OcclusionSection("l", 3, 1, (bad_item,)))
    with pytest.raises(
        ParameterError, match=r"legend color: expected a colour '#rrggbb', received 'red;x'"
    ):
        write_report(bad, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_a_failed_render_leaves_nothing_and_keeps_the_old_report(tmp_path: Path) -> None:
    data = fake_report_data(tmp_path, channels=1, top=2)
    out = tmp_path / "out"
    write_report(data, out)
    before = (out / "index.html").read_bytes()
    broken_tile = Tile(np.zeros((3, 3), np.float32), np.zeros((3, 3), np.uint8), 1.0, 0, "x")  # type: ignore[arg-type]
    broken = ReportData(
        data.summary,
        layers=(*data.layers, LayerSection("late", "d", 1, (ChannelBlock(0, (broken_tile,)),))),
    )
    with pytest.raises(
        ParameterError,
        match=r"picture: expected a non-empty uint8 array .* received float32 array of shape \(3, 3\)",
    ):
        write_report(broken, out)
    assert (out / "index.html").read_bytes() == before
    assert not (out / "layer-03.html").exists()
    assert _leftovers(tmp_path) == []
    with pytest.raises(ParameterError):
        write_report(broken, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    assert _leftovers(tmp_path) == []


def test_an_earlier_report_is_replaced(tmp_path: Path) -> None:
    data = fake_report_data(tmp_path, channels=1, top=1)
    out = tmp_path / "out"
    write_report(data, out)
    (out / "stale.txt").write_text("old")
    smaller = ReportData(data.summary)
    index = write_report(smaller, out)
    assert index == out / "index.html"
    assert not (out / "stale.txt").exists()
    assert not (out / "layer-01.html").exists()
    assert _leftovers(tmp_path) == []


def test_a_foreign_folder_or_file_is_never_overwritten(tmp_path: Path) -> None:
    data = ReportData(Summary("m", "d", "c"))
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    with pytest.raises(
        ParameterError,
        match=r"out: expected a new or empty folder, or an earlier convlens report, received the non-empty folder '.*mine'",
    ):
        write_report(data, folder)
    assert (folder / "thesis.tex").read_text() == "precious"
    file = tmp_path / "file.html"
    file.write_text("x")
    with pytest.raises(ParameterError, match=r"out: expected a directory path, received the file"):
        write_report(data, file)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert write_report(data, empty).is_file()


def test_bad_pictures_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(
        ParameterError, match=r"picture: expected a readable image file, received '.*missing.png'"
    ):
        to_image(tmp_path / "missing.png")
    with pytest.raises(ParameterError, match="picture: expected encoded image bytes"):
        to_image(b"not a png")
    with pytest.raises(ParameterError, match=r"received uint8 array of shape \(2, 2, 2\)"):
        to_image(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(
        TypeError,
        match="picture: expected PNG bytes, a PIL image, a uint8 array or a path, received int",
    ):
        to_image(3)  # type: ignore[arg-type]


@given(st.integers(1, 400), st.integers(1, 400), st.integers(8, 200))
def test_display_size_keeps_the_aspect_and_fits(width: int, height: int, target: int) -> None:
    w, h, crisp = display_size(width, height, target)
    longest = max(width, height)
    if crisp:
        factor = w // width
        assert (w, h) == (width * factor, height * factor)
        assert longest * factor <= target < longest * (factor + 1)
    else:
        assert longest > target
        assert max(w, h) == target
        assert abs(w / h - width / height) <= 1 / min(w, h) * (width / height + 1)
