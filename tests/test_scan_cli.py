"""``convlens scan`` end to end: scan, project, grids and per-item pictures; clear errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from convlens.cli import main
from convlens.scan.crop import project_top
from convlens.scan.data import ImageFolderDataset
from convlens.scan.run import ScanResult, scan

sys.path.insert(0, str(Path(__file__).parent))
from test_scan_faults import FACTORY, _write_images


@pytest.fixture
def setup(tmp_path, monkeypatch):
    root = tmp_path / "images"
    _write_images(root, 10, size=14, seed=7)
    factory = tmp_path / "factory"
    factory.mkdir()
    (factory / "scanfactory_cli.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(factory))
    return root


def test_cli_scans_projects_and_draws(setup, tmp_path):
    out = tmp_path / "run"
    main(
        [
            "scan", "--model", "scanfactory_cli:make", "--data", str(setup), "--layers", "1,4",
            "--top", "4", "--out", str(out), "--batch-size", "3", "--channels", "0,2",
            "--no-progress", "--rule", "guided",
        ]
    )  # fmt: skip
    result = ScanResult.load(out)
    assert result.counts == {"total": 10, "scanned": 10, "skipped": 0}
    assert result.meta["model"]["name"] == "scanfactory_cli:make"
    assert "RGB" in result.meta["preprocessing"]
    figures = json.loads((out / "figures.json").read_text())
    assert figures["rule"] == "guided"
    for layer in ("1", "4"):
        entry = figures["layers"][layer]
        assert Image.open(out / entry["grid"]).size[0] > 0
        assert {item["channel"] for item in entry["items"]} == {0, 2}
        assert len(entry["items"]) == 8
        first = entry["items"][0]
        assert (out / first["projection"]).is_file()
        assert first["projection"].startswith(f"layers/{layer}/ch0/")
    # the projections drawn are those of the library call on the same data
    from convlens.models import load_model

    loaded = load_model("scanfactory_cli:make")
    data = ImageFolderDataset(setup, loaded.preprocess)
    again = scan(loaded, data, ["1", "4"], top=4, batch_size=3, progress=False)
    assert torch.equal(again.layers["4"].indices, result.layers["4"].indices)
    tp = project_top(loaded, data, again, rule="guided", channels=[0, 2])
    item = figures["layers"]["4"]["items"][0]
    assert item["index"] == int(tp.layers["4"].indices[0, 0])
    assert item["box"] == tp.layers["4"].boxes[0, 0].tolist()


def test_cli_errors_are_one_line_with_status_2(setup, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "scan", "--model", "scanfactory_cli:make", "--data", str(setup), "--layers",
                "nope", "--out", str(tmp_path / "r"), "--no-progress",
            ]
        )  # fmt: skip
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("convlens: error: layers: expected a module path of the model, one of: ")
    assert err.endswith("received 'nope'")
    assert len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as exc:
        main(["scan", "--data", str(tmp_path / "missing"), "--layers", "1", "--out", str(tmp_path / "r"),
              "--model", "scanfactory_cli:make"])  # fmt: skip
    assert exc.value.code == 2
    assert "--data: expected a folder of images or 'demo'" in capsys.readouterr().err
