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
    AliasingSection,
    ChannelBlock,
    ExplorerStart,
    FilterSection,
    GeometryLayer,
    GeometrySection,
    LayerSection,
    LegendEntry,
    OcclusionItem,
    OcclusionSection,
    OverlapFigure,
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
    geometry = GeometrySection(
        input_shape="(1, 3, 28, 28)",
        layers=(
            GeometryLayer(
                "features.0",
                "Conv2d",
                "conv k=(5, 5)",
                "28×28",
                "28×28",
                "5×5 px",
                "1×1",
                "0, 0",
                "?mode=conv&dims=2&input=28&kernel=5&stride=1&padding=2",
            ),
            GeometryLayer(EVIL_LAYER, "MaxPool2d", "max_pool k=(2, 2)", "28×28", "14×14"),
        ),
        lint=Table(("layer", "suggestion"), ((EVIL_LAYER, EVIL_CLASS),)),
        aliasing=AliasingSection(
            layer="features.0",
            facts=(("stride", "2×2"), ("dead filters", EVIL_CLASS)),
            filters=Table(("#", "share"), tuple((i, 0.5 if i != 3 else None) for i in range(8))),
            figure=_png_bytes(rng.integers(0, 256, (40, 300, 3), dtype=np.uint8)),
            thumbnails=tuple(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8) for _ in range(8)),
            dead=(3,),
            note="stride <2>",
        ),
        overlaps=(OverlapFigure(f"{EVIL_LAYER}: ratio 4", _png_bytes(gray(30)), "interior 1–4"),),
        has_transposed=True,
        notes=("traced & <meta>",),
    )
    explorer = ExplorerStart(
        (("mode", "transpose"), ("input", 4), ("kernel", 3), ("stride", 2)), f"{EVIL_LAYER} k3"
    )
    return ReportData(
        summary=summary,
        layers=tuple(layers),
        filters=filters,
        occlusion=occlusion,
        geometry=geometry,
        explorer=explorer,
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("render")
    return write_report(fake_report_data(tmp), tmp / "out").parent


PAGES = [
    "index.html",
    "layer-01.html",
    "layer-02.html",
    "filters.html",
    "geometry.html",
    "occlusion.html",
]


def test_every_page_is_written_with_its_heading(report: Path) -> None:
    headings = {name: parse(report / name).h1.strip() for name in PAGES}
    assert headings == {
        "index.html": "Summary",
        "layer-01.html": "Layer features.0",
        "layer-02.html": f"Layer {EVIL_LAYER}",
        "filters.html": "Filters",
        "geometry.html": "Geometry",
        "occlusion.html": "Occlusion sensitivity",
    }
    assert (report / MARKER).is_file()
    assert (report / "style.css").read_text().startswith("/* convlens report")


def test_every_page_links_every_page_and_nothing_external(report: Path) -> None:
    for name in PAGES:
        page = parse(report / name)
        hrefs = page.attrs("a", "href")
        assert set(PAGES) <= set(hrefs)
        local = [h.split("?")[0].split("#")[0] for h in hrefs if not h.startswith("#")]
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
    broken_tile = Tile(np.zeros((3, 3), np.float32), np.zeros((3, 3), np.uint8), 1.0, 0, "x")
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
    smaller = ReportData(data.summary)
    # a file convlens did not write is never deleted: the report is refused, nothing changes
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ParameterError, match=r"files convlens did not write \(notes.txt\)"):
        write_report(smaller, out)
    assert (out / "layer-01.html").exists()
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    index = write_report(smaller, out)
    assert index == out / "index.html"
    assert not (out / "layer-01.html").exists()
    assert (out / "explorer.html").exists()
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


# ------------------------------------------------------------------ pages of channels, weight


def _layer_of(channels: list[int], top: int = 2) -> LayerSection:
    tiny = _png_bytes(np.full((3, 3), 7, np.uint8))
    blocks = tuple(
        ChannelBlock(c, tuple(Tile(tiny, tiny, float(k), k, f"i{k}.png") for k in range(top)))
        for c in channels
    )
    return LayerSection("conv", "Conv2d", max(channels) + 1, blocks)


def _ids(page: Page) -> list[str]:
    return [a["id"] or "" for t, a in page.tags if t == "section" and "id" in a]


@pytest.mark.parametrize(("count", "per_page"), [(1, 64), (64, 64), (65, 64), (150, 64), (7, 3)])
def test_a_layer_is_split_into_pages_of_channels(tmp_path: Path, count: int, per_page: int) -> None:
    # channels in an order of their own (as --channels gives them), not 0..n-1
    channels = [(c * 37) % 1000 for c in range(count)]
    data = ReportData(Summary("m", "d", "c"), layers=(_layer_of(channels),))
    out = write_report(data, tmp_path / "out", channels_per_page=per_page).parent
    pages = -(-count // per_page)
    names = ["layer-01.html"] + [f"layer-01-p{p}.html" for p in range(2, pages + 1)]
    assert sorted(p.name for p in out.glob("layer-*.html")) == sorted(names)
    assert render_module.layer_page_count(count, per_page) == pages
    where: dict[int, str] = {}
    for number, name in enumerate(names):
        page = parse(out / name)
        expected = channels[number * per_page : (number + 1) * per_page]
        assert _ids(page) == [f"c{c}" for c in expected]  # the chunk, in the order given
        assert len(page.attrs("img", "src")) == 2 * 2 * len(expected)
        where.update({c: name for c in expected})
        links = [(a.get("href"), a.get("rel")) for t, a in page.tags if t == "a"]
        prev = [h for h, r in links if r == "prev"]
        nxt = [h for h, r in links if r == "next"]
        if pages == 1:
            assert prev == nxt == []
            continue
        assert prev == ([names[number - 1]] * 2 if number > 0 else [])  # top and bottom
        assert nxt == ([names[number + 1]] * 2 if number + 1 < pages else [])
        current = [a.get("href") for t, a in page.tags if t == "a" and a.get("class") == "current"]
        assert current == [name, name]
        # the nav bar marks the layer (all its pages); aria-current="page" only on this file
        nav = [(a.get("href"), a.get("aria-current")) for t, a in page.tags if t == "a"
               and a.get("class") == "active"]  # fmt: skip
        assert nav == [("layer-01.html", "page" if number == 0 else "true")]
        text = " ".join("".join(page.text).split())
        assert f"page {number + 1} of {pages}" in text
        assert f"channels {expected[0]}–{expected[-1]}" in text
    # every channel link of every page leads to the page that holds that channel
    for name in names:
        page = parse(out / name)
        targets = [h for h in page.attrs("a", "href") if "#c" in h]
        on_page = [c for c, f in where.items() if f == name]
        # one page: every channel once; several: this page's, then all of the layer's
        assert len(targets) == (0 if count == 1 else count if pages == 1 else len(on_page) + count)
        for href in targets:
            file, _, anchor = href.partition("#")
            assert where[int(anchor[1:])] == (file or name)
            assert anchor in _ids(parse(out / (file or name)))


def test_tiles_load_lazily_with_their_size(report: Path) -> None:
    for name in ("layer-01.html", "layer-02.html"):
        imgs = [a for t, a in parse(report / name).tags if t == "img"]
        assert imgs
        assert all(a.get("loading") == "lazy" for a in imgs)
        for a in imgs:  # the box is reserved: width/height are the displayed size
            with Image.open(report / (a["src"] or "")) as image:
                assert (int(a["width"] or 0), int(a["height"] or 0)) == display_size(
                    image.width, image.height, render_module.TILE_PX
                )[:2]
    index = [a for t, a in parse(report / "index.html").tags if t == "img"]
    assert all("loading" not in a for a in index)


def _measured(root: Path, name: str) -> dict[str, int]:
    srcs = parse(root / name).attrs("img", "src")
    return {
        "html_bytes": (root / name).stat().st_size,
        "images": len(srcs),
        "image_bytes": sum((root / s).stat().st_size for s in srcs),
    }


def test_every_page_weight_is_measured(report: Path) -> None:
    import json

    manifest = json.loads((report / render_module.PAGES_FILE).read_text())
    listed = {p["page"]: p for p in manifest["pages"]}
    assert set(listed) == {p.name for p in report.glob("*.html")}
    for name, entry in listed.items():
        assert {k: entry[k] for k in ("html_bytes", "images", "image_bytes")} == _measured(
            report, name
        ), name
        assert entry["total_bytes"] == entry["html_bytes"] + entry["image_bytes"]
    assert manifest["total"]["images"] == sum(p["images"] for p in manifest["pages"])
    assert manifest["total"]["images"] == len(list((report / "img").rglob("*.png")))
    assert manifest["channels_per_page"] == render_module.CHANNELS_PER_PAGE
    # the summary names the heaviest page and the totals of the others
    others = [p for n, p in listed.items() if n != "index.html"]
    heaviest = max(others, key=lambda p: p["total_bytes"])
    text = " ".join("".join(parse(report / "index.html").text).split())
    assert f"{len(others)} pages besides this one" in text
    assert f"The heaviest page is {heaviest['title']}" in text
    total = sum(p["total_bytes"] for p in others)
    assert f"{render_module.format_bytes(total)} in all" in text


def test_the_explorer_is_in_every_report_and_linked_from_the_summary(
    report: Path, tmp_path: Path
) -> None:
    from convlens.explore import render_explorer

    explorer = report / render_module.EXPLORER_FILE
    # the page explore itself renders for these settings, byte for byte
    start = fake_report_data(tmp_path).explorer
    assert start is not None
    assert explorer.read_text(encoding="utf-8") == render_explorer(**dict(start.state))
    index = parse(report / "index.html")
    links = [(a.get("href"), a) for t, a in index.tags if t == "a"]
    assert render_module.EXPLORER_FILE in [h for h, _ in links]
    text = " ".join("".join(index.text).split())
    assert "Explore conv, transposed conv and C — an interactive page" in text
    assert f"opens on {EVIL_LAYER} k3" in text
    # the geometry page links its layer to the explorer with the layer's settings
    geometry = parse(report / "geometry.html").attrs("a", "href")
    assert "explorer.html?mode=conv&dims=2&input=28&kernel=5&stride=1&padding=2" in geometry
    # the nav bar stays the report's (no page with a script in it): linked from the summary
    assert render_module.EXPLORER_FILE not in parse(report / "layer-01.html").attrs("a", "href")


@pytest.mark.parametrize(
    "state",
    [
        (("input", 224), ("kernel", 3)),  # beyond the explorer's input limit
        (("dims", 3),),  # the explorer draws 1-D and 2-D
        (("mode", "transpose"), ("padding", "same")),
    ],
)
def test_settings_the_explorer_refuses_fall_back_to_its_defaults(
    tmp_path: Path, state: tuple[tuple[str, object], ...]
) -> None:
    from convlens.explore import describe_state, initial_state, render_explorer

    with pytest.raises(ParameterError):
        initial_state(**dict(state))
    data = ReportData(Summary("m", "d", "c"), explorer=ExplorerStart(state, "never shown"))
    out = write_report(data, tmp_path / "out").parent
    assert (out / "explorer.html").read_text(encoding="utf-8") == render_explorer()
    text = " ".join("".join(parse(out / "index.html").text).split())
    assert f"opens on its default settings ({describe_state()})" in text
    assert "never shown" not in text


def test_bad_geometry_queries_and_page_sizes_are_refused(tmp_path: Path) -> None:
    row = GeometryLayer("l", "Conv2d", "g", "1", "1", explore='?x="><b>')
    data = ReportData(Summary("m", "d", "c"), geometry=GeometrySection("(1, 1)", layers=(row,)))
    with pytest.raises(ParameterError, match="explore: expected an explorer query"):
        write_report(data, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    plain = ReportData(Summary("m", "d", "c"))
    with pytest.raises(ParameterError, match="channels_per_page: expected an int >= 1, received 0"):
        write_report(plain, tmp_path / "zero", channels_per_page=0)
    with pytest.raises(TypeError, match="channels_per_page: expected an int"):
        write_report(plain, tmp_path / "float", channels_per_page=1.5)  # type: ignore[arg-type]


def test_the_geometry_page_shows_its_section(report: Path) -> None:
    page = parse(report / "geometry.html")
    text = " ".join("".join(page.text).split())
    assert "input of shape (1, 3, 28, 28)" in text
    assert "traced & <meta>" in text
    assert "stride <2>" in text
    rows = [a for t, a in page.tags if t == "tr" and a.get("class") == "dead"]
    assert len(rows) == 1  # filter 3
    srcs = page.attrs("img", "src")
    assert len(srcs) == 1 + 8 + 1  # chart, thumbnails, one overlap map
    assert all((report / s).is_file() for s in srcs)
    assert f"{EVIL_LAYER}: ratio 4" in text
