"""End to end: ``convlens report`` on an image folder with hostile names and a corrupt file,
``convlens demo --quick``, and both reports in headless Chromium.

References: the top activations are recomputed by brute force (forward hooks over every
image, every feature map's maximum, sorted); HTML is read back with Python's parser.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from convlens.cli import main
from convlens.models import LoadedModel
from test_report_browser import (  # noqa: F401  (browser: a fixture)
    browser,
    check_images,
    check_report_in_browser,
    severe_console_entries,
)
from test_report_render import parse

EVIL_CLASS = "a&b\"<i>'"
EVIL_FILE = "<script>alert(1)</script>.png"
CLASSES = (EVIL_CLASS, "plain")


def _preprocess(image: Image.Image) -> torch.Tensor:
    pixels = np.asarray(image.convert("L").resize((12, 12)), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels - 0.5).unsqueeze(0)


def tiny_model() -> LoadedModel:
    """A factory for ``--model test_report_e2e:tiny_model`` (random weights, fixed seed)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 5, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5 * 4 * 4, 2),
    ).eval()
    return LoadedModel(net, "tiny <net>", _preprocess, (1, 12, 12), None, CLASSES, "test factory")


def warning_model() -> LoadedModel:
    """A factory that warns like ``load_model`` does for random weights."""
    import warnings

    warnings.warn("tiny <net> runs with RANDOM weights & learns nothing", UserWarning, stacklevel=1)
    return tiny_model()


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "images"
    rng = np.random.default_rng(1)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(6):
            # the hostile name holds a "/": a sub-folder "<script>alert(1)<" and a file
            file = root / name / (EVIL_FILE if (c, i) == (0, 0) else f"img{i}.png")
            file.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(file)
    (root / "plain" / "broken.png").write_bytes(b"\x89PNG but not really")
    return root


@pytest.fixture(scope="module")
def folder_report(image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out") / "report"
    argv = [
        "report", "--model", "test_report_e2e:tiny_model", "--data", str(image_folder),
        "--out", str(out), "--top", "4", "--occlusion-images", "2", "--occlusion-size", "4",
        "--occlusion-stride", "2", "--quiet",
    ]  # fmt: skip
    main(argv)  # returns normally on success
    return out


def _brute_force_top(image_folder: Path, layer: str, k: int) -> list[list[float]]:
    net = tiny_model().model
    files = sorted(p for p in image_folder.rglob("*.png") if p.name != "broken.png")
    captured: list[torch.Tensor] = []
    handle = dict(net.named_modules())[layer].register_forward_hook(
        lambda _m, _i, out: captured.append(out.detach().clone())
    )
    try:
        with torch.no_grad():
            for f in files:
                net(_preprocess(Image.open(f))[None])
    finally:
        handle.remove()
    maxima = torch.cat(captured).flatten(2).amax(2)  # (images, channels)
    return [sorted(maxima[:, c].tolist(), reverse=True)[:k] for c in range(maxima.shape[1])]


def test_folder_report_pages_values_and_skips(
    folder_report: Path, image_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = sorted(p.name for p in folder_report.iterdir())
    assert names == sorted(
        [".convlens-report", ".convlens-written", "data", "explorer.html", "filters.html",
         "geometry.html", "img", "index.html", "invariance.html", "layer-01.html",
         "layer-02.html", "occlusion.html", "pages.json", "style.css"]
    )  # fmt: skip
    for page_name, layer in (("layer-01.html", "0"), ("layer-02.html", "3")):
        page = parse(folder_report / page_name)
        assert page.h1.strip() == f"Layer {layer}"
        raw = (folder_report / page_name).read_text()
        captions = re.findall(r'<figcaption class="value">([^<]*)</figcaption>', raw)
        shown = [float(c) for c in captions]
        expected = [v for row in _brute_force_top(image_folder, layer, 4) for v in row]
        np.testing.assert_allclose(shown, expected, rtol=1e-3)
    index = (folder_report / "index.html").read_text()
    text = " ".join("".join(parse(folder_report / "index.html").text).split())
    assert "plain/broken.png" in text
    # the pages that need inputs of their own; invariance reads its images again and skips
    # the unreadable one, naming it on its page
    assert "Evolution — not built: no checkpoints were given" in text
    assert "Correspondence — not built: no boxes were given" in text
    assert "Invariance — invariance of features" in text
    invariance = " ".join("".join(parse(folder_report / "invariance.html").text).split())
    assert "unreadable images, skipped" in invariance
    assert "plain/broken.png" in invariance
    assert "Accuracy" in text
    assert "tiny &lt;net&gt;" in index
    assert "--model test_report_e2e:tiny_model" in text


def test_folder_report_escapes_file_and_class_names(folder_report: Path) -> None:
    for page_name in ("index.html", "layer-01.html", "layer-02.html", "occlusion.html"):
        raw = (folder_report / page_name).read_text()
        assert "<script" not in raw
        assert "<i>" not in raw
        page = parse(folder_report / page_name)
        assert {t for t, _ in page.tags}.isdisjoint({"script", "i"})
    titles = parse(folder_report / "layer-01.html").attrs("img", "title")
    assert any(t.startswith(f"{EVIL_CLASS}/{EVIL_FILE}") for t in titles)
    assert any(f"label: {EVIL_CLASS}" in t for t in titles)
    assert (
        "a&amp;b&#34;&lt;i&gt;&#39;/&lt;script&gt;alert(1)&lt;/script&gt;.png"
        in (folder_report / "occlusion.html").read_text()
    )


def test_folder_report_in_the_browser(folder_report: Path, browser) -> None:  # noqa: F811
    seen = check_report_in_browser(browser, folder_report / "index.html")
    assert set(seen) == {
        "index.html",
        "layer-01.html",
        "layer-02.html",
        "filters.html",
        "geometry.html",
        "occlusion.html",
        "invariance.html",
    }


def test_errors_are_one_line_and_leave_nothing(
    image_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from convlens.pipeline import top as pipeline_top  # the pipeline's scan call

    real_scan = pipeline_top.scan
    calls: list[int] = []
    monkeypatch.setattr(pipeline_top, "scan", lambda *a, **k: calls.append(1) or real_scan(*a, **k))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    base = [
        "report",
        "--model",
        "test_report_e2e:tiny_model",
        "--data",
        str(image_folder),
        "--quiet",
    ]
    with pytest.raises(SystemExit) as stop:
        main([*base, "--out", str(mine)])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(
        r"convlens: error: out: expected a new or empty folder, .* received the non-empty folder '.*mine'\. .*",
        err,
    )
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert calls == []  # refused before scanning
    with pytest.raises(SystemExit) as stop:
        main([*base, "--out", str(tmp_path / "new"), "--channels", "2-9"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert (
        "channels: expected indices in 0..3 (layer '0' has 4 channels), received [4, 5, 6, 7, 8, 9]"
        in err
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    assert calls == []  # a bad channel of a conv layer is caught before the scan too


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "convlens-demo"
    main(["demo", "--quick", "--out", str(out), "--quiet"])
    return out


def test_demo_quick_writes_the_whole_report(demo_report: Path) -> None:
    from convlens.demo import load_demo_model, load_demo_sample

    pages = sorted(p.name for p in demo_report.glob("*.html"))
    assert pages == ["correspondence.html", "evolution.html", "explorer.html", "filters.html",
                     "geometry.html", "index.html", "invariance.html", "layer-01.html",
                     "layer-02.html", "layer-03.html", "occlusion.html"]  # fmt: skip
    text = " ".join(" ".join(parse(demo_report / "index.html").text).split())
    # the accuracy shown equals a plain loop over the same images (every 4th of the sample)
    net, sample = load_demo_model().model, load_demo_sample()
    subset = range(0, len(sample), 4)
    with torch.no_grad():
        x = torch.stack([sample[i][0] for i in subset])
        y = torch.tensor([sample[i][1] for i in subset])
        accuracy = float((net(x).argmax(1) == y).double().mean())
    assert f"Accuracy {accuracy * 100:.2f} %" in text
    assert f"Images scanned {len(subset)}" in text
    assert f"convlens demo --out {demo_report} --quick --device cpu --quiet" in text
    layer = parse(demo_report / "layer-01.html")
    assert layer.h1.strip() == "Layer features.0"
    assert len(layer.attrs("img", "src")) == 8 * 9 * 2  # channels 0-7, top 9, two pictures


def test_demo_quick_in_the_browser(demo_report: Path, browser) -> None:  # noqa: F811
    seen = check_report_in_browser(browser, demo_report / "index.html")
    assert seen["layer-03.html"] == "Layer features.6"
    assert seen["occlusion.html"] == "Occlusion sensitivity"
    # the analysis pages, each reached through the nav bar: every image loaded, no error
    assert seen["evolution.html"] == "Feature evolution during training"
    assert seen["invariance.html"] == "Invariance to translation, scale and rotation"
    assert seen["correspondence.html"] == "Correspondence of object parts"
    for name, count in (("evolution.html", 2), ("invariance.html", 2), ("correspondence.html", 1)):
        browser.get((demo_report / name).as_uri())
        assert check_images(browser) == count
    assert severe_console_entries(browser) == []


def test_load_warnings_reach_the_terminal_and_the_front_page(
    image_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "warned"
    with pytest.warns(UserWarning, match="RANDOM weights"):
        main(["report", "--model", "test_report_e2e:warning_model", "--data", str(image_folder),
              "--out", str(out), "--layers", "3", "--channels", "0-1", "--top", "2",
              "--occlusion-images", "0", "--quiet"])  # fmt: skip
    raw = (out / "index.html").read_text()
    assert "tiny &lt;net&gt; runs with RANDOM weights &amp; learns nothing" in raw
    assert sorted(p.name for p in out.glob("*.html")) == [
        "explorer.html",
        "filters.html",
        "geometry.html",
        "index.html",
        "invariance.html",
        "layer-01.html",
    ]
