"""The report's evolution (Fig. 4), invariance (Fig. 5) and correspondence (Table 1) pages.

Every number a page shows is read back with Python's HTML parser and checked against the JSON
the pipeline wrote (shipped in the report's ``data/``) and against an independent
recomputation: the top-1 image of every channel at every checkpoint by brute force (a plain
forward of the scanned images with a hook, weights read straight from the safetensors files),
the true-class probability of the unmodified images and the feature distances of a vertical
translation (a slice copy with the fill, no torchvision), and Table 1 by the formula's double
loop over image pairs on feature signs of the images with their boxes set to the fill. The
demo's part boxes are compared with :data:`convlens.analysis.correspondence.DEMO_PARTS` and
their images with the sample's own labels. Hostile names (files, checkpoints, parts) are
escaped; options are refused before the scan; pages left out are named on the summary.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from convlens.analysis.correspondence import DEMO_PARTS
from convlens.cli import main
from convlens.demo import (
    FASHION_CLASSES,
    WEIGHTS_PATH,
    build_demo_model,
    load_demo_model,
    load_demo_sample,
)
from convlens.demo.model import MEAN, STD
from convlens.demo.train import CHECKPOINTS_PATH
from convlens.errors import ParameterError
from convlens.loaded import LoadedModel
from convlens.report import (
    CorrespondencePart,
    CorrespondenceSection,
    DataFile,
    EvolutionChannel,
    EvolutionLayerTable,
    EvolutionSection,
    InvarianceSection,
    ReportData,
    Summary,
    Table,
    write_report,
)
from convlens.report.analyses import (
    AnalysisOptions,
    default_correspondence_layers,
    default_invariance_layers,
)
from convlens.report.build import run_report
from convlens.scan.data import ImageFolderDataset
from test_report_e2e import CLASSES, _preprocess, tiny_model  # one small classifier factory
from test_report_render import parse

EVIL = "a&b\"<i>'"
EVIL_FILE = "<script>alert(1)</script>"
ANALYSES = {
    "checkpoints": ("demo",),
    "evolution_every": 16,
    "evolution_per_layer": 2,
    "invariance_count": 2,
    "invariance_amounts": {"translate": [-3, 0, 3], "scale": [0.8, 1.0], "rotate": [0, 90]},
    "correspondence_per_part": 3,
    "correspondence_repeats": 3,
}


class Tables(HTMLParser):
    """The tables of a page: per table its class and rows of cells (tag, attributes, text)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[dict[str, Any]] = []
        self.h3: list[str] = []
        self._row: list[dict[str, Any]] | None = None
        self._cell: dict[str, Any] | None = None
        self._in_h3 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self.tables.append({"class": a.get("class") or "", "rows": []})
        elif tag == "tr" and self.tables:
            self._row = []
            self.tables[-1]["rows"].append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = {"tag": tag, "attrs": a, "text": ""}
            self._row.append(self._cell)
        elif tag == "h3":
            self._in_h3 = True
            self.h3.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "h3":
            self._in_h3 = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["text"] += data
        if self._in_h3:
            self.h3[-1] += data

    def of(self, cls: str) -> list[list[list[dict[str, Any]]]]:
        return [t["rows"] for t in self.tables if cls in t["class"].split()]


def tables(path: Path) -> Tables:
    page = Tables()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def text_of(path: Path) -> str:
    return " ".join(" ".join(parse(path).text).split())


def number(text: str) -> float:
    return float(text.replace(",", "").strip())


def close(shown: str, value: float) -> bool:
    """A number shown with 4 significant digits (or as an integer) equals ``value``."""
    return bool(np.isclose(number(shown), value, rtol=1e-3, atol=1e-12))


# ------------------------------------------------------------------------------ the demo run


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("analyses") / "report"
    index = run_report(
        "demo", "demo", out, command="pytest", every=8, channels=(0,), top=2,
        occlusion_images=0, batch_size=128, analyses=ANALYSES,
    )  # fmt: skip
    assert index == out / "index.html"
    return out


def _load(folder: Path, kind: str, name: str) -> Any:
    return json.loads((folder / "data" / kind / name).read_text(encoding="utf-8"))


def _demo_states() -> list[tuple[str, dict[str, torch.Tensor]]]:
    """The demo's checkpoints read straight from the files: epochs 0-5 from the packed
    float16 file (as float32), epoch 10 the shipped weights."""
    packed = load_file(str(CHECKPOINTS_PATH))
    epochs = sorted({int(k.split("/")[0].split("_")[1]) for k in packed})
    states = [
        (f"epoch {e}", {k.split("/", 1)[1]: v.float() for k, v in packed.items()
                        if k.startswith(f"epoch_{e:03d}/")})
        for e in epochs
    ]  # fmt: skip
    return [*states, ("epoch 10", load_file(str(WEIGHTS_PATH)))]


def _peaks(state: dict[str, torch.Tensor], x: torch.Tensor, layer: str) -> torch.Tensor:
    """(images, channels): each feature map's maximum at ``layer``, one plain forward."""
    net = build_demo_model().eval()
    net.load_state_dict(state)
    seen: dict[str, torch.Tensor] = {}
    module = dict(net.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, a, out: seen.__setitem__("y", out.clone()))
    try:
        with torch.no_grad():
            net(x)
    finally:
        handle.remove()
    return seen["y"].flatten(2).amax(2)


def test_the_summary_links_every_analysis_page(report: Path) -> None:
    page = parse(report / "index.html")
    links = page.attrs("a", "href")
    for name in ("evolution.html", "invariance.html", "correspondence.html"):
        assert links.count(name) >= 2  # the nav bar and the list of pages
        assert (report / name).is_file()
    text = text_of(report / "index.html")
    assert "Evolution — feature evolution during training" in text
    assert "not built" not in text
    for step in ("evolution (5 checkpoints)", "invariance (2 images)", "correspondence (5 parts)"):
        assert step in text
    manifest = json.loads((report / "pages.json").read_text())
    assert {"evolution.html", "invariance.html", "correspondence.html"} <= {
        p["page"] for p in manifest["pages"]
    }


def test_evolution_page_matches_its_json_and_a_brute_force_top1(report: Path) -> None:
    doc = _load(report, "evolution", "evolution.json")
    page = tables(report / "evolution.html")
    states = _demo_states()
    # the checkpoint table: labels, sources and the sha256 of the final weights' own bytes
    ck = next(t["rows"] for t in page.tables if t["rows"][0][0]["text"] == "checkpoint")
    shown = [[c["text"] for c in row] for row in ck[1:]]
    assert [row[0] for row in shown] == [label for label, _ in states]
    assert shown == [[c["label"], c["source"], c["sha256"]] for c in doc["checkpoints"]]
    assert shown[-1][1:] == [
        "demo_cnn.safetensors",
        hashlib.sha256(WEIGHTS_PATH.read_bytes()).hexdigest(),
    ]
    assert all("float16" in row[1] for row in shown[:-1])
    # the subsample is stated, and is what was scanned
    text = text_of(report / "evolution.html")
    sample = load_demo_sample()
    scanned = range(0, len(sample), 16)
    assert f"images scanned {len(scanned)} (every 16th image of the dataset" in text
    assert "channel-choice seed 0" in text
    assert doc["meta"]["dataset_size"] == len(scanned)
    x = torch.stack([sample[i][0] for i in scanned])
    grids = page.of("evolution")
    assert [h.split("—")[0].strip() for h in page.h3] == list(doc["layers"])
    assert len(grids) == len(doc["layers"])
    for rows, (layer, ly) in zip(grids, doc["layers"].items()):
        header = [c["text"] for c in rows[0]]
        assert header == ["channel", *(c["label"] for c in doc["checkpoints"]), "changes"]
        assert [int(r[0]["text"]) for r in rows[1:]] == ly["channels"]
        peaks = [_peaks(state, x, layer) for _, state in states]
        for r, row in enumerate(rows[1:]):
            cells = row[1:-1]
            indices = [int(c["text"].lstrip("#")) for c in cells]
            assert indices == [ly["indices"][k][r] for k in range(len(states))]
            changed = ["changed" in (c["attrs"].get("class") or "") for c in cells]
            assert changed == [False] + [
                indices[k] != indices[k - 1] for k in range(1, len(indices))
            ]
            assert int(row[-1]["text"]) == sum(changed) == ly["changes_per_channel"][r]
            channel = ly["channels"][r]
            for k, cell in enumerate(cells):
                column = peaks[k][:, channel]
                # the page's image attains the brute-force maximum (ties: any of them)
                assert float(column[indices[k]]) == pytest.approx(float(column.max()), rel=1e-5)
                value = cell["attrs"]["title"].removeprefix("activation ")
                assert close(value, float(column.max()))


def test_evolution_page_images_are_the_pipeline_figures(report: Path) -> None:
    srcs = parse(report / "evolution.html").attrs("img", "src")
    assert srcs == ["img/evolution/evolution.png", "img/evolution/evolution_patches.png"]
    page = parse(report / "evolution.html")
    sizes = [(a["width"], a["height"]) for t, a in page.tags if t == "img"]
    for src, (w, h) in zip(srcs, sizes):
        with Image.open(report / src) as im:
            assert (int(w or 0), int(h or 0)) == im.size  # shown at its own size
    links = page.attrs("a", "href")
    assert "data/evolution/evolution.json" in links


def test_invariance_page_matches_its_csv_and_a_direct_forward(report: Path) -> None:
    doc = _load(report, "invariance", "invariance.json")
    text = text_of(report / "invariance.html")
    from convlens.analysis.invariance import InvarianceResult

    assert f"policy {InvarianceResult.policy}" in text
    black = (0.0 - MEAN) / STD  # a black pixel through the demo's normalisation
    assert doc["fill"] == [pytest.approx(black, rel=1e-6)]
    assert f"border fill {black:.4g} (requested: black, a black pixel through the model's" in text
    sample = load_demo_sample()
    net = load_demo_model().model
    (images,) = [t["rows"] for t in tables(report / "invariance.html").tables
                 if t["rows"] and t["rows"][0][0]["text"] == "image"]  # fmt: skip
    assert len(images) - 1 == len(doc["images"]) == 2
    for row, index, label in zip(images[1:], doc["images"], doc["labels"]):
        cells = [c["text"] for c in row]
        assert cells[0] == f"#{index}"
        assert label == sample[index][1]  # the dataset's label: the true class of the demo
        assert cells[2] == FASHION_CLASSES[label]
        assert cells[3] == "the dataset's label"
        with torch.no_grad():
            p = net(sample[index][0][None]).softmax(1)[0, label]
        assert close(cells[4], float(p))
    # the CSV linked from the page: its translation rows against a slice copy with the fill
    assert "data/invariance/invariance.csv" in parse(report / "invariance.html").attrs("a", "href")
    rows = list(csv.DictReader(io.StringIO(
        (report / "data/invariance/invariance.csv").read_text())))  # fmt: skip
    amounts = doc["transforms"]
    assert len(rows) == sum(len(t["amounts"]) for t in amounts.values()) * len(doc["images"])
    layers = doc["layers"]
    modules = dict(net.named_modules())
    for row in rows:
        if row["transform"] != "translate":
            continue
        shift = int(float(row["amount"]))
        x = sample[int(row["image"])][0][None]
        moved = torch.full_like(x, black)
        if shift >= 0:
            moved[..., shift:, :] = x[..., : x.shape[-2] - shift, :]
        else:
            moved[..., :shift, :] = x[..., -shift:, :]
        for layer in layers:
            seen: list[torch.Tensor] = []
            h = modules[layer].register_forward_hook(lambda m, a, o, s=seen: s.append(o.clone()))
            try:
                with torch.no_grad():
                    net(torch.cat([x, moved]))
            finally:
                h.remove()
            f = seen[0].flatten(1)
            distance = float((f[0] - f[1]).norm())
            assert float(row[f"distance[{layer}]"]) == pytest.approx(distance, rel=1e-4, abs=1e-5)
        if shift == 0:
            assert all(float(row[f"distance[{ly}]"]) == 0.0 for ly in layers)


def _direct_delta(net: nn.Module, x: torch.Tensor, boxes: list[list[int]], layer: str):
    """Δ (normalised and raw) by the formula's double loop over ordered pairs, sign(0) as
    its own value, on the features of the images and of copies with their box set to 0."""
    hidden = x.clone()
    for img, (top, left, h, w) in zip(hidden, boxes):
        img[:, top : top + h, left : left + w] = 0.0
    seen: list[torch.Tensor] = []
    handle = dict(net.named_modules())[layer].register_forward_hook(
        lambda m, a, o: seen.append(o.clone())
    )
    try:
        with torch.no_grad():
            net(x)
            net(hidden)
    finally:
        handle.remove()
    signs = torch.sign(seen[0].flatten(1) - seen[1].flatten(1))
    normalised = raw = 0.0
    for i in range(len(signs)):
        for j in range(len(signs)):
            if i != j:
                differ = (signs[i] != signs[j]).double()
                normalised += float(differ.mean())
                raw += float(differ.sum())
    return normalised, raw


def test_correspondence_table_is_the_formula_on_the_demo_parts(report: Path) -> None:
    doc = _load(report, "correspondence", "correspondence.json")
    page = tables(report / "correspondence.html")
    main_table, detail = page.of("correspondence")
    layers = doc["layers"]
    assert [c["text"] for c in main_table[0]] == ["part", "images", *layers]
    sample = load_demo_sample()
    labels = [sample[i][1] for i in range(len(sample))]
    net = load_demo_model().model
    body = main_table[1:]
    assert len(body) == 2 * len(DEMO_PARTS) == 2 * len(doc["parts"])
    for k, ((cls, part, box), p) in enumerate(zip(DEMO_PARTS, doc["parts"])):
        # the hand-chosen parts: their boxes, and the first 3 images of their class
        c = FASHION_CLASSES.index(cls)
        first = [i for i, y in enumerate(labels) if y == c][:3]
        assert p["name"] == f"{cls}: {part}"
        assert p["images"] == first
        assert p["boxes"] == [[box.top, box.left, box.height, box.width]] * 3
        part_row, control_row = body[2 * k], body[2 * k + 1]
        assert part_row[0]["text"] == p["name"]
        assert int(part_row[1]["text"]) == 3
        assert control_row[0]["text"] == "random box"
        x = torch.stack([sample[i][0] for i in first])
        for col, layer in enumerate(layers):
            delta, raw = _direct_delta(net, x, p["boxes"], layer)
            assert p["delta"][layer] == pytest.approx(delta, rel=1e-9)
            assert p["delta_raw"][layer] == raw
            assert close(part_row[2 + col]["text"], delta)
            values = np.asarray(p["control_values"][layer])
            mean, std = control_row[2 + col]["text"].split("±")
            assert close(mean, values.mean())
            assert close(std, values.std(ddof=1))
            # per pair, the raw Δ and the raw control
            cells = detail[2 + k][1 + 3 * col : 4 + 3 * col]
            assert close(cells[0]["text"], delta / (3 * 2))
            assert number(cells[1]["text"]) == raw
            raw_values = np.asarray(p["control_raw"][layer])
            raw_mean, raw_std = cells[2]["text"].split("±")
            assert number(raw_mean) == pytest.approx(raw_values.mean(), abs=0.05)
            assert number(raw_std) == pytest.approx(raw_values.std(ddof=1), abs=0.05)
    text = text_of(report / "correspondence.html")
    assert "sign(0) its own value" in text
    assert "random control 3 repeats, seed 0" in text
    (parts,) = page.of("parts")
    for row, (cls, part, box) in zip(parts[1:], DEMO_PARTS):
        bottom, right = box.top + box.height - 1, box.left + box.width - 1
        assert row[0]["text"] == f"{cls}: {part}"
        assert row[1]["text"] == (
            f"rows {box.top}–{bottom}, columns {box.left}–{right} "
            f"({box.height}×{box.width} px), in every image"
        )
    assert "data/correspondence/correspondence.json" in parse(report / "correspondence.html").attrs(
        "a", "href"
    )


# ---------------------------------------------------------------------- a user's model, CLI


def conv_only_model() -> LoadedModel:
    """A model whose output is a feature map, not class scores (no invariance possible)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU()).eval()
    return LoadedModel(net, "maps", _preprocess, (1, 12, 12), None, None, "test")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "images"
    rng = np.random.default_rng(3)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(4):
            # the hostile name holds a "/": a sub-folder "<script>alert(1)<" and a file
            file = root / name / (f"{EVIL_FILE}.png" if (c, i) == (0, 0) else f"img{i}.png")
            file.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(file)
    return root


def _base(folder: Path, out: Path, *extra: str) -> list[str]:
    return [
        "report", "--model", "test_report_analyses:tiny_model", "--data", str(folder),
        "--out", str(out), "--top", "2", "--occlusion-images", "0", "--quiet", *extra,
    ]  # fmt: skip


def test_a_user_model_with_checkpoints_and_parts(folder: Path, tmp_path: Path) -> None:
    state = tiny_model().model.state_dict()
    ckdir = tmp_path / "ck"
    ckdir.mkdir()
    same = ckdir / f"1 {EVIL}.safetensors"
    save_file(state, str(same))
    other = ckdir / "2 later.safetensors"
    save_file({k: v * 1.5 + 0.01 for k, v in state.items()}, str(other))
    parts = tmp_path / "parts.csv"
    with parts.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "top", "left", "height", "width", "part"])
        for i in (0, 1, 2):
            writer.writerow([i, 2, 3, 4, 5, EVIL_FILE])
    out = tmp_path / "report"
    main(_base(folder, out, "--checkpoints", str(same), "--checkpoints", str(same),
               "--checkpoints", str(other), "--parts", str(parts)))  # fmt: skip
    for name in ("evolution.html", "invariance.html", "correspondence.html"):
        raw = (out / name).read_text()
        assert "<script" not in raw
        assert "<i>" not in raw
        assert {t for t, _ in parse(out / name).tags}.isdisjoint({"script", "i"})
    # two checkpoints that are the same file: identical columns, no change between them
    doc = _load(out, "evolution", "evolution.json")
    assert [c["sha256"] for c in doc["checkpoints"]] == [
        hashlib.sha256(p.read_bytes()).hexdigest() for p in (same, same, other)
    ]
    assert list(doc["layers"]) == ["0", "3"]  # the report's layers: every convolution
    page = tables(out / "evolution.html")
    for rows in page.of("evolution"):
        assert [c["text"] for c in rows[0]][1:3] == [same.stem, same.stem]
        for row in rows[1:]:
            assert row[1]["text"] == row[2]["text"]
            assert "changed" not in (row[2]["attrs"].get("class") or "")
    assert f"1 {EVIL}" in text_of(out / "evolution.html")
    assert "1 a&amp;b&#34;&lt;i&gt;&#39;" in (out / "evolution.html").read_text()
    # the invariance layers by default, classes predicted (a folder's labels are not the model's)
    inv = _load(out, "invariance", "invariance.json")
    assert inv["layers"] == list(default_invariance_layers(tiny_model().model)) == ["1", "4"]
    assert inv["meta"]["true_class"] == "predicted"
    rows = tables(out / "invariance.html").tables[0]["rows"]
    assert [r[0]["text"] for r in rows[1:]] == [f"#{i}" for i in inv["images"]]
    assert rows[1][1]["text"] == f"{EVIL}/{EVIL_FILE}.png"  # image 0, its name verbatim
    # the parts from the file, Table 1 on the default layer, against the formula
    cor = _load(out, "correspondence", "correspondence.json")
    assert cor["layers"] == list(default_correspondence_layers(tiny_model().model)) == ["4"]
    (p,) = cor["parts"]
    assert p["name"] == EVIL_FILE
    assert p["images"] == [0, 1, 2]
    files = ImageFolderDataset(folder, _preprocess).paths  # the dataset's order of its files
    x = torch.stack([_preprocess(Image.open(folder / files[i])) for i in (0, 1, 2)])
    delta, raw = _direct_delta(tiny_model().model, x, p["boxes"], "4")
    assert p["delta"]["4"] == pytest.approx(delta, rel=1e-9)
    assert p["delta_raw"]["4"] == raw
    shown = tables(out / "correspondence.html").of("correspondence")[0][1][2]["text"]
    assert close(shown, delta)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (out / "correspondence.html").read_text()
    assert "not built" not in text_of(out / "index.html")


def test_pages_left_out_are_named_on_the_summary(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "plain"
    main(_base(folder, out, "--no-invariance", "--layers", "3", "--channels", "0"))
    text = text_of(out / "index.html")
    assert "Evolution — not built: no checkpoints were given (--checkpoints" in text
    assert "Invariance — not built: turned off (--no-invariance)" in text
    assert "Correspondence — not built: no boxes were given (--parts FILE" in text
    assert sorted(p.name for p in out.glob("*.html")) == [
        "explorer.html", "filters.html", "geometry.html", "index.html", "layer-01.html",
    ]  # fmt: skip
    assert not (out / "data").exists()


def test_an_analysis_that_cannot_run_on_its_defaults_is_named(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "maps"
    argv = _base(folder, out)
    argv[argv.index("test_report_analyses:tiny_model")] = "test_report_analyses:conv_only_model"
    main(argv)
    text = text_of(out / "index.html")
    assert (
        "Invariance — not built: it needs a classifier of images: a model whose output is "
        "(1, 3, 12, 12)" in text
    )
    assert not (out / "invariance.html").exists()
    assert (out / "layer-01.html").is_file()
    # asked for by an option of its own, it is refused before the scan
    parts = tmp_path / "parts.csv"
    parts.write_text("image,top,left,height,width\n0,0,0,2,2\n1,0,0,2,2\n")
    with pytest.raises(SystemExit) as stop:
        main([*argv[:argv.index("--out") + 1], str(tmp_path / "asked"),
              *argv[argv.index("--out") + 2:], "--parts", str(parts)])  # fmt: skip
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert (
        "correspondence options: expected a classifier of images, received a model whose output is (1, 3, 12, 12)"
        in err
    )
    assert not (tmp_path / "asked").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ("--invariance-layers", "1,nope"),
            "invariance layers: expected module paths of the model",
        ),
        (("--invariance-images", "0,99"), "invariance images: expected indices 0..7"),
        (("--checkpoints", "missing.pt"), "checkpoints: expected existing checkpoint files"),
        (("--correspondence-layers", "9", "--parts", "PARTS"), "correspondence layers: expected"),
        (("--parts", "PARTS_OUTSIDE"), "a box inside the 12×12 image"),
    ],
)
def test_options_are_refused_before_the_scan(
    folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: tuple[str, ...],
    message: str,
) -> None:
    from convlens.pipeline import top as pipeline_top

    calls: list[int] = []
    monkeypatch.setattr(pipeline_top, "scan", lambda *a, **k: calls.append(1))
    good, outside = tmp_path / "p.csv", tmp_path / "o.csv"
    good.write_text("image,top,left,height,width\n0,0,0,2,2\n1,0,0,2,2\n")
    outside.write_text("image,top,left,height,width\n0,10,10,4,4\n1,0,0,4,4\n")
    extra = tuple({"PARTS": str(good), "PARTS_OUTSIDE": str(outside)}.get(e, e) for e in extra)
    with pytest.raises(SystemExit) as stop:
        main(_base(folder, tmp_path / "r", *extra))
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("convlens: error: ")
    assert message in err[0], err[0]
    assert calls == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.csv", "p.csv"]


# ------------------------------------------------------------------------- render and layers


def _png(value: int, size: tuple[int, int] = (40, 60)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full(size, value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def fake_analysis_data() -> ReportData:
    """A report with the three analysis pages and hostile strings everywhere."""
    evolution = EvolutionSection(
        figure=_png(90),
        patches=_png(150),
        checkpoints=Table(("checkpoint", "source", "sha256"),
                          ((EVIL, f"{EVIL_FILE}.pt", "ab" * 32), ("late", "x.pt", "cd" * 32))),
        layers=(EvolutionLayerTable("features.<b>0</b>", f"given {EVIL}", (
            EvolutionChannel(3, (5, 7), (1.5, 2.25), (False, True), 1),
        )),),
        facts=((EVIL, EVIL_FILE),),
        notes=(f"note {EVIL}",),
        files=(DataFile("evolution.json", b'{"a": 1}', EVIL),),
    )  # fmt: skip
    invariance = InvarianceSection(
        figure=_png(60, (30, 90)),
        normalized=_png(200, (30, 90)),
        policy=f"policy {EVIL}",
        fill="0.5",
        layers=(EVIL, "b"),
        images=Table(("image", "name"), (("#1", f"{EVIL_FILE}.png"),)),
        amounts=Table(("transformation", "amounts"), (("translate", "-1, 0, 1"),)),
        files=(DataFile("invariance.csv", b"a,b\n1,2\n"),),
    )
    correspondence = CorrespondenceSection(
        figure=_png(120),
        layers=(EVIL,),
        parts=(CorrespondencePart(EVIL_FILE, (0, 1), ("rows 0–1",), (0.5,), (0.75,), (0.125,),
                                  (0.25,), (12.0,), (30.5,), (2.5,), (EVIL, EVIL)),),
        zero="drop", seed=7, repeats=4, boxes_source=EVIL,
    )  # fmt: skip
    return ReportData(
        Summary("m", "d", EVIL, not_built=(("evolution", EVIL),)),
        evolution=evolution,
        invariance=invariance,
        correspondence=correspondence,
    )


def test_render_escapes_every_string_and_ships_the_files(tmp_path: Path) -> None:
    index = write_report(fake_analysis_data(), tmp_path / "r")
    root = index.parent
    for name in ("index.html", "evolution.html", "invariance.html", "correspondence.html"):
        raw = (root / name).read_text()
        assert "<script" not in raw
        assert "<i>" not in raw
        assert "<b>" not in raw
        assert "a&amp;b&#34;&lt;i&gt;&#39;" in raw
    assert (root / "data/evolution/evolution.json").read_bytes() == b'{"a": 1}'
    assert (root / "data/invariance/invariance.csv").read_bytes() == b"a,b\n1,2\n"
    for src in parse(root / "evolution.html").attrs("img", "src"):
        Image.open(root / src).verify()
    text = text_of(root / "correspondence.html")
    assert "0.75 ± 0.125" in text
    assert "12" in text
    assert "30.5 ± 2.5" in text
    assert "sign(0) is dropped" in text
    assert "Evolution — not built: a&b\"<i>'" in text_of(index)


def test_render_refuses_bad_files_and_ragged_parts(tmp_path: Path) -> None:
    data = fake_analysis_data()
    assert data.evolution is not None
    assert data.correspondence is not None
    import dataclasses

    bad = dataclasses.replace(data.evolution, files=(DataFile("../x.json", b"{}"),))
    with pytest.raises(ParameterError, match="file name"):
        write_report(dataclasses.replace(data, evolution=bad), tmp_path / "a")
    part = dataclasses.replace(data.correspondence.parts[0], delta=(0.5, 0.1))
    ragged = dataclasses.replace(data.correspondence, parts=(part,))
    with pytest.raises(ParameterError, match="one value per layer"):
        write_report(dataclasses.replace(data, correspondence=ragged), tmp_path / "b")
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "b").exists()


def test_default_layers_of_known_architectures() -> None:
    """The paper's layers 1 and 7 on VGG16 (its first ReLU and fc7's), the demo's presets,
    and ResNet's pooled features (no linear layer but the classifier)."""
    import torchvision

    from convlens.pipeline.analyze import DEMO_INVARIANCE_LAYERS

    assert default_invariance_layers(build_demo_model()) == DEMO_INVARIANCE_LAYERS
    vgg = torchvision.models.vgg16()
    assert default_invariance_layers(vgg) == ("features.1", "classifier.4")
    assert isinstance(vgg.classifier[4], nn.ReLU)
    assert isinstance(vgg.classifier[6], nn.Linear)
    assert default_correspondence_layers(vgg) == ("features.29", "classifier.4")
    assert default_invariance_layers(torchvision.models.resnet18()) == ("conv1", "avgpool")
    with pytest.raises(ParameterError, match="conv layer"):
        default_invariance_layers(nn.Sequential(nn.Linear(2, 2)))


def test_analysis_options_refuse_unknown_names() -> None:
    with pytest.raises(ParameterError, match="analyses"):
        AnalysisOptions.from_mapping({"checkpoint": ["demo"]})
    assert AnalysisOptions.from_mapping({"invariance_layers": "a"}).invariance_layers == ("a",)
