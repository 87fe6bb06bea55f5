"""``convlens arith``: printed numbers against PyTorch, errors as one line with exit status 2."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torchvision

from convlens.arithmetic import LayerSpec
from convlens.cli import main


def _run(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(["arith", *args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _conv_len(i: int, *args, **kwargs) -> int:
    return nn.Conv1d(1, 1, *args, **kwargs)(torch.zeros(1, 1, i)).shape[-1]


def test_conv_prints_size_formula_and_inverse(capsys):
    code, out, _ = _run(
        capsys, "conv", "--input", "5", "--kernel", "3", "--stride", "2", "--padding", "1",
        "--dims", "1",
    )  # fmt: skip
    o = _conv_len(5, 3, stride=2, padding=1)
    assert code == 0
    assert f"input 5 -> output {o}" in out
    assert f"floor((5 + 1 + 1 - 1*(3-1) - 1) / 2) + 1 = {o}" in out
    assert "ConvTranspose1d(kernel_size=3, stride=2, padding=1, output_padding=0)" in out
    back = nn.ConvTranspose1d(1, 1, 3, 2, 1, output_padding=0)(torch.zeros(1, 1, o))
    assert back.shape[-1] == 5
    assert "output_size=[5]" in out


def test_conv_ambiguous_input_names_output_padding_and_collisions(capsys):
    code, out, _ = _run(
        capsys, "conv", "--input", "12", "--kernel", "3", "--stride", "2", "--padding", "1",
        "--dims", "1",
    )  # fmt: skip
    colliding = [i for i in range(1, 20) if _conv_len(i, 3, stride=2, padding=1) == 6]
    assert code == 0
    assert f"conv input sizes giving 6: {', '.join(map(str, colliding))}  (ambiguous)" in out
    assert "output_padding=1)" in out
    assert nn.ConvTranspose1d(1, 1, 3, 2, 1, output_padding=1)(torch.zeros(1, 1, 6)).shape[-1] == 12


def test_conv_per_dimension_lists_and_same_padding(capsys):
    code, out, _ = _run(
        capsys, "conv", "--input", "12,11", "--kernel", "3", "--stride", "2", "--padding", "1"
    )
    assert code == 0
    assert "output_padding=(1, 0)" in out
    assert "input 12 x 11 -> output 6 x 6" in out
    code, out, _ = _run(
        capsys, "conv", "--input", "7", "--kernel", "4", "--padding", "same", "--dims", "1"
    )
    assert code == 0
    assert "drop the last 1" in out
    assert "((1, 2),)" in out


def test_transpose_prints_size_and_collisions(capsys):
    code, out, _ = _run(
        capsys, "transpose", "--input", "6", "--kernel", "3", "--stride", "2", "--padding", "1",
        "--dims", "1",
    )  # fmt: skip
    o = nn.ConvTranspose1d(1, 1, 3, 2, 1)(torch.zeros(1, 1, 6)).shape[-1]
    assert code == 0
    assert f"input 6 -> output {o}" in out
    assert "conv input sizes giving 6: 11, 12  (ambiguous)" in out
    code, out, _ = _run(
        capsys,
        "transpose",
        "--input",
        "6",
        "--kernel",
        "3",
        "--stride",
        "2",
        "--padding",
        "1",
        "--output-size",
        "12",
        "--dims",
        "1",
    )
    assert code == 0
    assert "input 6 -> output 12" in out
    assert "output_padding=1" in out


def test_pool_ceil_mode(capsys):
    code, out, _ = _run(
        capsys,
        "pool",
        "--input",
        "6",
        "--kernel",
        "3",
        "--stride",
        "2",
        "--ceil-mode",
        "--dims",
        "1",
    )
    o = nn.MaxPool1d(3, 2, ceil_mode=True)(torch.zeros(1, 1, 6)).shape[-1]
    assert code == 0
    assert f"input 6 -> output {o}" in out
    code, out, _ = _run(capsys, "pool", "--input", "5", "--kernel", "2", "--avg", "--dims", "2")
    assert code == 0
    assert "input 5 x 5 -> output 2 x 2" in out


def test_a_plain_number_is_2d_as_in_the_library(capsys):
    # one rule (LayerSpec / infer_ndim): --dims, else the longest comma list, else 2-D
    conv = nn.Conv2d(1, 1, 3, stride=2, padding=1)(torch.zeros(1, 1, 5, 5)).shape[-2:]
    code, out, _ = _run(
        capsys, "conv", "--input", "5", "--kernel", "3", "--stride", "2", "--padding", "1"
    )
    assert code == 0
    assert out.splitlines()[0].startswith("conv (2-D)")
    assert f"input 5 x 5 -> output {conv[0]} x {conv[1]}" in out
    assert "ConvTranspose2d(" in out
    assert LayerSpec.conv(3, 2, 1).output_size(5) == tuple(conv)
    t = nn.ConvTranspose2d(1, 1, 3, 2, 1)(torch.zeros(1, 1, 6, 6)).shape[-2:]
    code, out, _ = _run(
        capsys, "transpose", "--input", "6", "--kernel", "3", "--stride", "2", "--padding", "1"
    )
    assert code == 0
    assert f"input 6 x 6 -> output {t[0]} x {t[1]}" in out
    assert "dim 1: conv input sizes giving 6: 11, 12  (ambiguous)" in out
    p = nn.MaxPool2d(3, 2, ceil_mode=True)(torch.zeros(1, 1, 6, 6)).shape[-2:]
    code, out, _ = _run(
        capsys, "pool", "--input", "6", "--kernel", "3", "--stride", "2", "--ceil-mode"
    )
    assert code == 0
    assert f"input 6 x 6 -> output {p[0]} x {p[1]}" in out
    # a comma list still sets the dimensions, and --dims wins
    code, out, _ = _run(capsys, "conv", "--input", "5,6,7", "--kernel", "3")
    assert code == 0
    assert "input 5 x 6 x 7 -> output 3 x 4 x 5" in out
    code, out, _ = _run(capsys, "conv", "--input", "5", "--kernel", "3", "--dims", "3")
    assert "input 5 x 5 x 5 -> output 3 x 3 x 3" in out
    # --output-size with N and C in front does not count as dimensions
    code, out, _ = _run(
        capsys, "transpose", "--input", "6", "--kernel", "3", "--stride", "2", "--padding", "1",
        "--output-size", "1,1,12,11",
    )  # fmt: skip
    t = nn.ConvTranspose2d(1, 1, 3, 2, 1)(torch.zeros(1, 1, 6, 6), output_size=[1, 1, 12, 11])
    assert code == 0
    assert f"input 6 x 6 -> output {t.shape[-2]} x {t.shape[-1]}" in out


def test_model_table_lists_every_conv_and_pool(capsys):
    code, out, _ = _run(capsys, "model", "vgg16", "--input", "64")
    with torch.device("meta"):
        features = torchvision.models.vgg16(weights=None).features
    x = torch.zeros(1, 3, 64, 64, device="meta")
    expected = []
    for name, m in features.named_children():
        x = m(x)
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
            expected.append((f"features.{name}", " x ".join(map(str, x.shape[1:]))))
    assert code == 0
    rows = [line for line in out.splitlines() if "features." in line]
    assert len(rows) == len(expected) == 18
    for row, (path, shape) in zip(rows, expected):
        assert path in row
        assert shape in row
    assert "212 x 212" in rows[-1]
    assert "32 x 32" in rows[-1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["conv", "--input", "5", "--kernel", "0"], "kernel_size: expected positive ints"),
        (["conv", "--input", "5", "--kernel", "3", "--stride", "0"], "stride: expected positive"),
        (["conv", "--input", "5", "--kernel", "3", "--dilation", "0"], "dilation: expected"),
        (["conv", "--input", "5", "--kernel", "3", "--padding", "-1"], "padding: expected non-neg"),
        (["conv", "--input", "3", "--kernel", "5"], "kernel_size: expected an effective kernel"),
        (
            ["conv", "--input", "5", "--kernel", "3", "--stride", "2", "--padding", "same"],
            "stride: expected 1 in every dimension with padding='same'",
        ),
        (["conv", "--input", "x", "--kernel", "3"], "--input: expected an int or a comma list"),
        (
            [
                "transpose",
                "--input",
                "6",
                "--kernel",
                "3",
                "--stride",
                "2",
                "--output-padding",
                "2",
            ],
            "output_padding: expected a value smaller than either stride or dilation",
        ),
        (
            [
                "transpose",
                "--input",
                "6",
                "--kernel",
                "3",
                "--stride",
                "2",
                "--padding",
                "1",
                "--output-size",
                "13",
            ],
            "output_size: expected a size from 11 to 12",
        ),
        (
            ["pool", "--input", "5", "--kernel", "3", "--avg", "--dilation", "2"],
            "dilation: expected 1 for average pooling",
        ),
        (["model", "vgg61"], "model: expected a torchvision architecture name .*vgg16"),
        (["model", "resnet18", "--input", "64"], "module 'layer2.0.downsample.0'"),
    ],
)
def test_errors_are_one_line_and_exit_2(capsys, args, message):
    code, out, err = _run(capsys, *args)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("convlens: error: ")
    assert re.search(message, lines[0])


def test_subprocess_error_has_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "convlens", "arith", "conv", "--input", "2", "--kernel", "3"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("convlens: error: kernel_size: expected")
