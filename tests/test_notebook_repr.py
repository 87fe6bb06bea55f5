"""Rich notebook output (``_repr_html_``, ``_repr_png_``, ``_repr_latex_``) of convlens's results.

Every repr is parsed (``html.parser``, tags balanced), its pictures decoded with Pillow, and the
numbers it shows compared with an independent reference: torch's own layers and forward passes
(output sizes, activations and their argmax), a brute-force top-k over the dataset, the
receptive-field recurrence written out here, ``conv_transpose2d`` of ones for overlap, and the
convolution's index pattern written out for the symbolic matrix. User-controlled names are
checked to come out escaped, and a 4,000-channel result to stay small.
"""

from __future__ import annotations

import base64
import io
import math
import re
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import convlens
from convlens import notebook
from convlens.arithmetic import LayerSpec, ReceptiveFieldTable, receptive_fields
from convlens.deconvnet import Projection, Target, project
from convlens.lint import lint_model
from convlens.scan import LayerProjections, ScanResult, TopK, TopProjections, project_top, scan
from convlens.scan.grid import patch_image, projection_image

EVIL = "<script>alert(1)</script>"
VOID = {"img", "br", "hr", "meta", "input", "col", "area", "base", "link", "source", "wbr"}


class Page(HTMLParser):
    """Collects images, text, and the text of elements by their ``cl-`` classes; records
    unbalanced tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, list[str], list[str]]] = []  # (tag, classes, text)
        self.errors: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.text: list[str] = []
        self.cells: dict[str, list[str]] = {}
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.scripts += tag == "script"
        if tag == "img":
            self.images.append(a)
        if tag not in VOID:
            classes = [c for c in (a.get("class") or "").split() if c.startswith("cl-")]
            self.stack.append((tag, classes, []))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1][0] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1][0] if self.stack else None}")
            return
        _, classes, parts = self.stack.pop()
        for c in classes:
            self.cells.setdefault(c, []).append("".join(parts).strip())

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for _, _, parts in self.stack:
            parts.append(data)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    assert not page.errors, page.errors[:3]
    assert not page.stack, f"unclosed tags: {[t for t, _, _ in page.stack]}"
    assert page.scripts == 0
    return page


def decode(src: str | None) -> Image.Image:
    assert src is not None
    assert src.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    image.load()
    assert image.format == "PNG"
    return image


def numbers(texts: list[str]) -> list[float]:
    return [float(re.match(r"-?[\d.e+-]+", t).group(0)) for t in texts]  # type: ignore[union-attr]


def close(shown: float, exact: float) -> bool:
    """A 4-significant-digit caption matches the exact value."""
    return math.isclose(shown, exact, rel_tol=6e-4, abs_tol=1e-12)


def stretched_pixels(x: torch.Tensor) -> np.ndarray:
    """The paper's display, written out: x / (2 max|x|) + 0.5, grey = channel mean, 8 bits."""
    a = x.detach().double().numpy()
    peak = np.abs(a).max()
    shown = a / (2 * peak) + 0.5 if peak > 0 else np.full_like(a, 0.5)
    if shown.shape[0] != 3:
        shown = shown.mean(0, keepdims=True)
    out = np.clip(np.round(shown * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return out[:, :, 0] if out.shape[2] == 1 else out


def assert_escaped(html: str) -> None:
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# ---------------------------------------------------------------------------- Projection
@pytest.fixture(scope="module")
def chain() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 5, 3), nn.ReLU()
    ).double()


def test_projection_html_tiles_values_and_positions(chain: nn.Sequential) -> None:
    x = torch.randn(3, 1, 12, 12, dtype=torch.float64)
    targets = [Target("4", 2), Target("2", 1), Target("4", 0, "map")]
    out = project(chain, x, targets)
    page = parse(out._repr_html_())
    assert len(page.images) == 3 * 3
    # the activations, from torch's own forward passes
    with torch.no_grad():
        deep, pooled = chain[:5](x), chain[:3](x)
    want = []
    for n in range(3):
        for layer, c, where in ((deep, 2, "max"), (pooled, 1, "max"), (deep, 0, "map")):
            fmap = layer[n, c]
            if where == "map":
                want.append((float(fmap.sum()), None))
            else:
                flat = int(fmap.argmax())
                want.append((float(fmap.max()), divmod(flat, fmap.shape[1])))
    captions = [t.replace("\xa0", " ") for t in page.cells["cl-value"]]
    assert len(captions) == 9
    for shown, (value, _) in zip(numbers(captions), want):
        assert close(shown, value)
    text = "".join(page.text)
    for _, pos in want:
        if pos is not None:
            assert f"at ({pos[0]}, {pos[1]})" in text
    # each tile is the projection, 12x12, stretched as the paper shows it
    for k, img in enumerate(page.images):
        n, t = divmod(k, 3)
        picture = decode(img["src"])
        assert picture.size == (12, 12)
        np.testing.assert_array_equal(np.asarray(picture), stretched_pixels(out.projections[n, t]))
    png = Image.open(io.BytesIO(out._repr_png_()))
    assert png.format == "PNG"
    assert png.size[0] >= 3 * 48
    assert png.size[1] >= 3 * 48


def test_projection_html_1d_strips_and_3d_values() -> None:
    torch.manual_seed(1)
    net1 = nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU())
    x1 = torch.randn(2, 2, 20)
    out1 = project(net1, x1, [Target("1", 0), Target("1", 2)])
    page = parse(out1._repr_html_())
    assert [decode(i["src"]).size for i in page.images] == [(20, 1)] * 4
    with torch.no_grad():
        ref = net1(x1)[:, [0, 2]].amax(-1)
    assert all(close(s, float(r)) for s, r in zip(numbers(page.cells["cl-value"]), ref.flatten()))
    net3 = nn.Sequential(nn.Conv3d(1, 2, 3), nn.ReLU())
    x3 = torch.randn(1, 1, 5, 5, 5)
    out3 = project(net3, x3, Target("1", 1))
    page3 = parse(out3._repr_html_())
    assert page3.images == []
    with torch.no_grad():
        assert close(numbers(page3.cells["cl-value"])[0], float(net3(x3)[0, 1].max()))
    assert out3._repr_png_() is None


def _fake_projection(n: int, t: int, side: int, layer: str = "x") -> Projection:
    g = torch.Generator().manual_seed(3)
    return Projection(
        torch.randn(n, t, 3, side, side, generator=g),
        torch.randn(n, t, generator=g),
        torch.zeros(n, t, 2, dtype=torch.long),
        tuple(Target(layer, c) for c in range(t)),
        "deconvnet",
        "explicit",
    )


def test_projection_html_caps_and_escapes() -> None:
    big = _fake_projection(100, 40, 96, layer=EVIL)
    html = big._repr_html_()
    assert len(html.encode()) < 300_000
    page = parse(html)
    assert 0 < len(page.images) <= notebook.MAX_ROWS * notebook.MAX_COLUMNS
    assert all(max(decode(i["src"]).size) <= notebook.TILE_PX for i in page.images[:3])
    text = " ".join(page.text)
    assert f"… {100 - notebook.MAX_ROWS} more inputs" in text
    assert f"… {40 - notebook.MAX_COLUMNS} more" in text
    assert_escaped(html)
    assert len(big._repr_png_()) < 600_000


# ---------------------------------------------------------------------------- ScanResult
def brute_top(
    net: nn.Module, layer: nn.Module, data: list, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (value desc, index asc) of every channel's map maximum, image by image."""
    seen: list[torch.Tensor] = []
    h = layer.register_forward_hook(lambda m, a, o: seen.append(o.detach()))
    with torch.no_grad():
        for x, _ in data:
            net(x[None])
    h.remove()
    maxima = torch.stack([s[0].flatten(1).amax(1) for s in seen], 1).numpy()  # (C, images)
    order = np.array([sorted(range(len(data)), key=lambda i: (-row[i], i))[:k] for row in maxima])
    return np.take_along_axis(maxima, order, 1), order


@pytest.fixture(scope="module")
def scanned(chain: nn.Sequential) -> tuple[list, ScanResult]:
    g = torch.Generator().manual_seed(5)
    data = [(torch.randn(1, 12, 12, generator=g, dtype=torch.float64), 0) for _ in range(11)]
    return data, scan(chain, data, ["2", "4"], top=4, batch_size=3, progress=False)


def test_scan_html_shows_the_brute_force_top_k(
    chain: nn.Sequential, scanned: tuple[list, ScanResult]
) -> None:
    data, result = scanned
    page = parse(result._repr_html_())
    values, indices = page.cells["cl-value"], page.cells["cl-index"]
    offset = 0
    for name, channels in (("2", 4), ("4", 5)):
        ref_v, ref_i = brute_top(chain, chain[int(name)], data, 4)
        count = channels * 4
        shown_v = numbers(values[offset : offset + count])
        shown_i = [int(s.strip("[]")) for s in indices[offset : offset + count]]
        assert shown_i == ref_i.flatten().tolist()
        assert all(close(s, float(r)) for s, r in zip(shown_v, ref_v.flatten()))
        offset += count
    assert "scanned 11 of 11 images" in " ".join(page.text)


def test_scan_html_4000_channels_stays_small_and_escapes() -> None:
    c, k = 4000, 9
    g = torch.Generator().manual_seed(0)
    top = TopK(torch.rand(c, k, generator=g), torch.randint(0, 10**6, (c, k), generator=g),
               torch.zeros(c, k, 2, dtype=torch.long))  # fmt: skip
    layers = {f"{EVIL}{n}": top for n in range(30)}
    result = ScanResult(layers, [], {"total": 5, "scanned": 5, "skipped": 0}, {"model": EVIL})
    html = result._repr_html_()
    assert len(html.encode()) < 300_000
    page = parse(html)
    text = " ".join(page.text)
    assert f"… {c - notebook.MAX_ROWS} more channels" in text
    assert f"… {30 - notebook.MAX_LAYERS} more layers" in text
    assert (
        len(page.cells["cl-value"])
        == notebook.MAX_LAYERS * notebook.MAX_ROWS * notebook.MAX_COLUMNS
    )
    assert_escaped(html)


def test_scan_html_empty_slots() -> None:
    top = TopK(torch.tensor([[2.5, 0.0]]), torch.tensor([[7, -1]]), torch.zeros(1, 2, 1).long())
    page = parse(ScanResult({"a": top})._repr_html_())
    assert page.cells["cl-index"] == ["[7]"]
    assert numbers(page.cells["cl-value"]) == [2.5]


# ---------------------------------------------------------------------------- TopProjections
def test_top_projections_html_is_the_figure_2_grid(
    chain: nn.Sequential, scanned: tuple[list, ScanResult]
) -> None:
    data, result = scanned
    tp = project_top(chain, data, result, layers=["4"], channels=[0, 3])
    lp = tp.layers["4"]
    page = parse(tp._repr_html_())
    box = tuple(lp.projections.shape[3:])
    assert len(page.images) == 2 * 2 * 4  # channels x k x (projection, patch)
    ref_v, ref_i = brute_top(chain, chain[4], data, 4)
    shown_i = [int(s.strip("[]")) for s in page.cells["cl-index"]]
    assert shown_i == ref_i[[0, 3]].flatten().tolist()
    assert all(
        close(s, float(r)) for s, r in zip(numbers(page.cells["cl-value"]), ref_v[[0, 3]].flatten())
    )
    # tiles in order: per channel the k projections, then the k patches
    tiles = [decode(i["src"]) for i in page.images]
    for ci in range(2):
        for j in range(4):
            proj, patch = tiles[ci * 8 + j], tiles[ci * 8 + 4 + j]
            assert proj.size == patch.size == (box[1], box[0])
            np.testing.assert_array_equal(np.asarray(proj), stretched_pixels(lp.projections[ci, j]))
            # the same picture as the Figure-2 grid that `convlens scan` writes
            ref = np.asarray(patch_image(lp.patches[ci, j], lp.clips[ci, j]))[:, :, 0]
            np.testing.assert_array_equal(np.asarray(patch), ref)
            ref_proj = np.asarray(projection_image(lp.projections[ci, j]))[:, :, 0]
            np.testing.assert_array_equal(np.asarray(proj), ref_proj)
    png = Image.open(io.BytesIO(tp._repr_png_()))
    assert png.format == "PNG"
    assert png.size[0] >= 8 * 48
    assert png.size[1] >= 2 * 48


def test_patch_picture_clip_matches_the_grid() -> None:
    g = torch.Generator().manual_seed(2)
    patch = torch.randn(3, 7, 9, generator=g, dtype=torch.float64)
    clip = torch.tensor([[2, 0], [0, 3]])
    mine = np.asarray(notebook.patch_picture(patch, clip))
    np.testing.assert_array_equal(mine, np.asarray(patch_image(patch, clip)))
    assert (mine[:2] == 128).all()
    assert (mine[:, -3:] == 128).all()


def _fake_top(channels: int, k: int, side: int, name: str) -> TopProjections:
    g = torch.Generator().manual_seed(4)
    shape = (channels, k)
    lp = LayerProjections(
        name,
        list(range(channels)),
        torch.rand(shape, generator=g),
        torch.randint(0, 1000, shape, generator=g),
        torch.zeros((*shape, 2), dtype=torch.long),
        torch.randn((*shape, 3, side, side), generator=g),
        torch.randn((*shape, 3, side, side), generator=g),
        torch.zeros((*shape, 2, 2), dtype=torch.long),
        torch.zeros((*shape, 2, 2), dtype=torch.long),
        "crop",
    )
    return TopProjections({name: lp, f"{name}-b": lp}, "guided")


def test_top_projections_4000_channels_stays_small_and_escapes() -> None:
    tp = _fake_top(4000, 9, 80, EVIL)
    html = tp._repr_html_()
    assert len(html.encode()) < 300_000
    page = parse(html)
    assert 0 < len(page.images) <= notebook.MAX_TILES
    assert all(max(decode(i["src"]).size) <= notebook.TILE_PX for i in page.images[:4])
    text = " ".join(page.text)
    assert f"… {4000 - notebook.MAX_CHANNELS} more channels" in text
    assert "pictures not drawn (size limit" in text  # random noise fills the byte budget
    assert_escaped(html)
    assert len(tp._repr_png_()) < 600_000


def test_top_projections_empty_slot_and_never_active() -> None:
    tp = _fake_top(2, 2, 5, "L")
    lp = tp.layers["L"]
    lp.indices[0, 1] = -1
    lp.indices[1] = -1
    page = parse(TopProjections({"L": lp}, "deconvnet")._repr_html_())
    assert len(page.images) == 2  # one kept item: its projection and patch
    assert "never active" in " ".join(page.text)


# ---------------------------------------------------------------------------- LayerSpec
def _examples(spec: LayerSpec) -> tuple[list[int], list[tuple[int, ...]]]:
    page = parse(spec._repr_html_())
    inputs = [int(s.split("×")[0]) for s in page.cells["cl-input"]]
    outputs = [tuple(int(v) for v in s.split("×")) for s in page.cells["cl-output"]]
    return inputs, outputs


@given(
    k=st.integers(1, 6),
    s=st.integers(1, 3),
    p=st.integers(0, 2),
    d=st.integers(1, 2),
)
def test_layer_spec_html_sizes_are_torchs(k: int, s: int, p: int, d: int) -> None:
    conv = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)
    inputs, outputs = _examples(LayerSpec.from_module(conv))
    assert inputs
    assert len(inputs) == len(outputs)
    with torch.no_grad():
        for i, o in zip(inputs, outputs):
            assert tuple(conv(torch.zeros(1, 1, i, i)).shape[2:]) == o
        if inputs[0] > 1:  # the smallest input shown is the smallest torch accepts
            with pytest.raises(RuntimeError):
                conv(torch.zeros(1, 1, inputs[0] - 1, inputs[0] - 1))


@given(k=st.integers(2, 5), s=st.integers(1, 3), p=st.integers(0, 1), ceil=st.booleans())
def test_layer_spec_html_pool_and_transpose_sizes(k: int, s: int, p: int, ceil: bool) -> None:
    pool = nn.MaxPool2d(k, s, min(p, k // 2), ceil_mode=ceil)
    up = nn.ConvTranspose2d(1, 1, k, s, p, output_padding=s - 1)
    for module in (pool, up):
        inputs, outputs = _examples(LayerSpec.from_module(module))
        with torch.no_grad():
            for i, o in zip(inputs, outputs):
                assert tuple(module(torch.zeros(1, 1, i, i)).shape[2:]) == o


def test_layer_spec_html_formula_and_asymmetric_axes() -> None:
    spec = LayerSpec.from_module(nn.Conv2d(3, 8, (3, 5), stride=(1, 2), padding=(1, 0)))
    html = spec._repr_html_()
    page = parse(html)
    assert "Conv2d(kernel_size=(3, 5), stride=(1, 2), padding=(1, 0))" in html
    assert "3 → 8" in " ".join(page.text)
    assert "per axis" in " ".join(page.text)
    conv = nn.Conv2d(3, 8, (3, 5), stride=(1, 2), padding=(1, 0))
    for i, o in zip(*_examples(spec)):
        assert tuple(conv(torch.zeros(1, 3, i, i)).shape[2:]) == o


# ---------------------------------------------------------------------------- receptive fields
def _recurrence(layers: list[tuple[int, int, int, int]]) -> list[tuple[int, int, float]]:
    """(size, jump, start) per layer of (kernel, stride, padding, dilation), Araujo et al. 2019."""
    size, jump, first, out = 1, 1, 0, []
    for k, s, p, d in layers:
        size += d * (k - 1) * jump
        first -= p * jump
        jump *= s
        out.append((size, jump, first + (size - 1) / 2))
    return out


@given(
    st.lists(
        st.tuples(st.integers(1, 5), st.integers(1, 3), st.integers(0, 2), st.integers(1, 2)),
        min_size=1,
        max_size=5,
    )
)
def test_receptive_field_table_html(layers: list[tuple[int, int, int, int]]) -> None:
    specs = [
        (f"{EVIL}{n}", LayerSpec.conv(k, s, min(p, k - 1), d, ndim=1))
        for n, (k, s, p, d) in enumerate(layers)
    ]
    fields = receptive_fields(specs)
    assert isinstance(fields, ReceptiveFieldTable)
    assert isinstance(fields, list)
    assert fields == list(fields)
    assert fields[:] == list(fields)
    html = fields._repr_html_()
    assert_escaped(html)
    page = parse(html)
    want = _recurrence([(k, s, min(p, k - 1), d) for k, s, p, d in layers])
    assert [int(v) for v in page.cells["cl-size"]] == [w[0] for w in want]
    assert [int(v.strip("()")) for v in page.cells["cl-jump"]] == [w[1] for w in want]
    assert [float(v.strip("()")) for v in page.cells["cl-start"]] == [w[2] for w in want]


def test_receptive_field_table_output_sizes_are_torchs(chain: nn.Sequential) -> None:
    page = parse(receptive_fields(chain, 12)._repr_html_())
    x = torch.zeros(1, 1, 12, 12, dtype=torch.float64)
    want = [tuple(chain[: i + 1](x).shape[2:]) for i in (0, 2, 3)]
    assert [tuple(int(v) for v in s.split("×")) for s in page.cells["cl-output"]] == want


# ---------------------------------------------------------------------------- lint
def test_lint_html_numbers_from_torch_and_escaping() -> None:
    gen = nn.Sequential()
    gen.add_module(EVIL, nn.ConvTranspose2d(4, 2, 3, stride=2))
    gen.add_module("act", nn.ReLU())
    gen.add_module("up", nn.ConvTranspose2d(2, 1, 4, stride=2, padding=1))
    html = lint_model(gen, 5)._repr_html_()
    assert_escaped(html)
    page = parse(html)
    with torch.no_grad():
        mid = gen[0](torch.zeros(1, 4, 5, 5))
        out = gen(torch.zeros(1, 4, 5, 5))
    io_cells = page.cells["cl-io"]
    assert io_cells[0] == f"5×5 → {mid.shape[2]}×{mid.shape[3]}"
    assert io_cells[1] == f"{mid.shape[2]}×{mid.shape[3]} → {out.shape[2]}×{out.shape[3]}"
    # interior overlap of each layer: conv_transpose of ones, away from the border
    ratios = []
    for k, s in ((3, 2), (4, 2)):
        counts = F.conv_transpose2d(torch.ones(1, 1, 16, 16), torch.ones(1, 1, k, k), stride=s)
        inner = counts[0, 0, k:-k, k:-k]
        ratios.append((int(inner.min()), int(inner.max())))
    assert page.cells["cl-overlap"] == [f"{lo}..{hi}" if lo != hi else f"{lo}" for lo, hi in ratios]
    assert numbers(page.cells["cl-ratio"]) == [hi / lo for lo, hi in ratios]
    assert len(page.images) == 2
    assert decode(page.images[0]["src"]).size == (2, 2)  # one period of stride 2
    assert "flagged" in " ".join(page.text)


# ---------------------------------------------------------------------------- symbolic
def test_symbolic_conv_keeps_its_latex() -> None:
    latex = convlens.symbolic_conv(4, 3)._repr_latex_()
    assert latex.startswith("$$C = \\begin{bmatrix}")
    assert latex.endswith("\\end{bmatrix}$$")
    body = latex[len("$$C = \\begin{bmatrix}") : -len("\\end{bmatrix}$$")]
    rows = [r.split(" & ") for r in body.split("\\\\")]
    assert len(rows) == 16
    assert all(len(r) == 4 for r in rows)
    for i, row in enumerate(rows):  # row = input pixel, column = output pixel (the seed's C)
        iy, ix = divmod(i, 4)
        for o, entry in enumerate(row):
            oy, ox = divmod(o, 2)
            a, b = iy - oy, ix - ox
            want = f"w_{{{a + 1}{b + 1}}}" if 0 <= a < 3 and 0 <= b < 3 else "0"
            assert entry == want
