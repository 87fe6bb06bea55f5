"""``convlens lint`` and ``convlens figure overlap``: JSON against torch, exit statuses, errors."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from convlens.cli import main

FACTORY = textwrap.dedent(
    """
    import torch.nn as nn

    def generator(k=4, p=1, op=0):
        return nn.Sequential(
            nn.ConvTranspose2d(16, 32, 4, 1, 0), nn.ReLU(),
            nn.ConvTranspose2d(32, 16, k, 2, p, op), nn.ReLU(),
            nn.ConvTranspose2d(16, 3, k, 2, p, op), nn.Tanh(),
        )

    def clean():
        return generator()

    def checkerboard():
        return generator(3, 1, 1)
    """
)


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "lint_factories.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "lint_factories"


def _run(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _tconv_ones(n: int, k: int, s: int, p: int, op: int) -> np.ndarray:
    x = torch.ones(1, 1, n, n, dtype=torch.float64)
    w = torch.ones(1, 1, k, k, dtype=torch.float64)
    return F.conv_transpose2d(x, w, stride=s, padding=p, output_padding=op)[0, 0].numpy()


def test_clean_generator_exits_0_with_the_json_fields(capsys, factories):
    code, out, err = _run(capsys, "lint", f"{factories}:clean", "--input", "1", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["flagged"] is False
    keys = {"path", "type", "output_size", "overlap_min", "overlap_max", "uneven", "dead_pixels"}
    for row in data["layers"]:
        assert keys | {"ambiguous_inputs", "suggestion"} <= set(row)
        assert row["uneven"] is False
        assert row["suggestion"] is None
    assert [row["output_size"] for row in data["layers"]] == [[4, 4], [8, 8], [16, 16]]
    assert data["compound"]["uneven"] is False
    assert data["compound"]["output_size"] == [16, 16]


def test_checkerboard_generator_exits_1_with_its_ratio(capsys, factories):
    code, out, _ = _run(
        capsys, "lint", f"{factories}:checkerboard", "--input", "1", "--format", "json"
    )
    assert code == 1
    data = json.loads(out)
    for row in data["layers"][1:]:
        inner = _tconv_ones(row["input_size"][0], 3, 2, 1, 1)[2:-2, 2:-2]
        assert row["uneven"] is True
        assert (row["overlap_min"], row["overlap_max"]) == (inner.min(), inner.max())
        assert row["ratio"] == inner.max() / inner.min()
        assert "kernel_size=4" in row["suggestion"]
        sizes = [e["size"] for e in row["ambiguous_inputs"][0]]
        assert row["output_size"][0] in sizes
    assert data["compound"]["uneven"] is True
    code, out, _ = _run(capsys, "lint", f"{factories}:checkerboard", "--input", "1")
    assert code == 1
    assert "FLAG" in out
    assert "verdict: flagged" in out


def test_torchvision_model_and_model_option(capsys):
    code, out, err = _run(capsys, "lint", "--model", "resnet18", "--allow-random", "--input", "32")
    assert code == 0, err
    assert "layer2.0.downsample.0" in out
    assert "first layer conv1" in out
    assert "random" in err.lower()
    code, _, _ = _run(
        capsys, "lint", "--model", "resnet18", "--allow-random", "--input", "32", "--strict"
    )
    assert code == 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("lint", "no_such_model", "--input", "8"), "model"),
        (("lint", "demo", "--input", "3"), "--input"),
        (("lint", "demo", "--input", "0"), "--input"),
        (("lint", "alexnet", "--model", "vgg11", "--input", "8"), "MODEL"),
    ],
)
def test_bad_input_is_one_line_with_exit_2(capsys, args, needle):
    code, _out, err = _run(capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("convlens: error: ")
    assert needle in lines[0]
    assert "Traceback" not in err


def test_too_small_input_names_the_layer(capsys):
    code, _, err = _run(capsys, "lint", "demo", "--input", "3")
    assert code == 2
    assert "--input" in err
    assert "layer 'features." in err


def test_figure_overlap_writes_a_png(capsys, tmp_path):
    out = tmp_path / "overlap.png"
    code, text, err = _run(
        capsys,
        "figure",
        "overlap",
        "--kernel",
        "3",
        "--stride",
        "2",
        "--layers",
        "2",
        "--out",
        str(out),
    )
    assert code == 0, err
    assert str(out) in text
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert image.width > image.height > 100
    code, _, err = _run(
        capsys, "figure", "overlap", "--kernel", "3", "--out", str(tmp_path / "x.gif")
    )
    assert code == 2
    assert "out" in err


@pytest.mark.parametrize(("k", "s", "p", "d"), [(3, 2, 0, 1), (4, 2, 1, 1), (3, 2, 0, 2)])
def test_arith_transpose_prints_the_overlap_line(capsys, k, s, p, d):
    code, out, err = _run(
        capsys,
        "arith",
        "transpose",
        "--dims",
        "1",
        "--input",
        "6",
        "--kernel",
        str(k),
        "--stride",
        str(s),
        "--padding",
        str(p),
        "--dilation",
        str(d),
    )
    assert code == 0, err
    line = next(text for text in out.splitlines() if text.startswith("overlap:"))
    x = torch.ones(1, 1, 40, dtype=torch.float64)
    w = torch.ones(1, 1, k, dtype=torch.float64)
    far = F.conv_transpose1d(x, w, stride=s, padding=p, dilation=d)[0, 0, 20:-20].numpy()
    small = F.conv_transpose1d(x[..., :6], w, stride=s, padding=p, dilation=d)[0, 0].numpy()
    lo, hi = int(far.min()), int(far.max())
    assert (f"{lo}..{hi} " if lo != hi else f" {lo} ") in line
    assert f"; {int((small == 0).sum())} dead pixels" in line
    assert ("(even)" in line) == (lo == hi)
