"""Issue 15: where a Python traceback reached the user, one line naming the parameter.

Each case runs the CLI as a user would (``convlens.cli.main``; the console script where the
path matters) and checks: exit status 2, exactly one line ``convlens: error: ...`` naming the
parameter, and nothing written. References: the file listings before and after; the sizes
and limits printed against the numbers the test put in.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from convlens.cli import main
from convlens.errors import ParameterError
from convlens.models import load_model
from convlens.scan.run import MAX_STATE_BYTES, ScanResult, scan

FACTORIES = """
import torch, torch.nn as nn

def raises():
    raise RuntimeError("the weights server is down")

def needs(width, depth=2):
    return nn.Sequential(nn.Conv2d(3, width, 3))

def grey():  # a 1-channel model; the default preprocessing gives RGB
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())

def scripted():
    return torch.jit.script(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()))

def not_a_model():
    return 42
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "factories").mkdir()
    (tmp_path / "factories" / "tb_factories.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path / "factories"))
    rng = np.random.default_rng(0)
    (tmp_path / "data" / "a").mkdir(parents=True)
    for i in range(4):
        image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(image).save(tmp_path / "data" / "a" / f"{i}.png")
    return tmp_path


def _one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in argv])
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("convlens: error: ")
    return lines[0].removeprefix("convlens: error: ")


def _scan(env: Path, model: str, *extra: str) -> list[str]:
    return ["scan", "--model", model, "--data", env / "data", "--layers", "1", "--out",
            env / "out", "--no-project", "--no-progress", *extra]  # fmt: skip


def _project(env: Path, model: str, *extra: str) -> list[str]:
    return ["project", env / "data" / "a" / "0.png", "--model", model, "--layer", "0",
            "--channel", "0", "--out", env / "out", *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("raises", r"model: expected a factory that builds a model, received 'tb_factories:"
                   r"raises'\. tb_factories:raises\(\) raised RuntimeError: the weights server"),
        ("needs", r"model: expected a factory that takes no arguments, received tb_factories:"
                  r"needs needing width\."),
        ("not_a_model", r"model: expected a factory returning an nn\.Module .*received int"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", ["scan", "project"])
def test_a_factory_that_fails_is_one_line(env, capsys, factory, message, command):
    argv = (_scan if command == "scan" else _project)(env, f"tb_factories:{factory}")
    assert __import__("re").match(message, _one_line(argv, capsys))
    assert not (env / "out").exists()


def test_cuda_without_a_gpu_is_one_line(env, capsys):
    absent = "cuda:99"  # no machine has 100 GPUs
    text = _one_line([*_scan(env, "tb_factories:grey"), "--device", absent], capsys)
    assert text.startswith("device: expected a device this machine has")
    assert "received 'cuda:99'" in text
    if not torch.cuda.is_available():
        text = _one_line([*_scan(env, "tb_factories:grey"), "--device", "cuda"], capsys)
        assert "no CUDA GPU (torch.cuda.is_available() is False)" in text
        assert text.endswith("use --device cpu")
    with pytest.raises(ParameterError, match=r"device: expected a torch device such as"):
        load_model("demo", device="gpu please")
    assert not (env / "out").exists()


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_torchscript_in_scan_says_why_as_project_does(env, capsys, tmp_path):
    text = _one_line(_scan(env, "tb_factories:scripted"), capsys)
    assert text.startswith(
        "model: expected a Python nn.Module (TorchScript code cannot be intercepted"
    )
    assert "forward hooks, which TorchScript does not run" in text
    file = tmp_path / "net.pt"
    torch.jit.script(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())).save(str(file))
    text = _one_line(_scan(env, str(file)), capsys)  # a TorchScript file, as --model
    assert text.startswith(
        "model: expected a Python nn.Module (TorchScript code cannot be intercepted"
    )
    from convlens.deconvnet import Target, project

    with pytest.raises(ParameterError) as project_error:
        project(torch.jit.load(str(file)), torch.randn(1, 3, 8, 8), [Target("1", 0)],
                engine="rules")  # fmt: skip
    assert str(project_error.value).startswith(
        "model: expected a Python nn.Module (TorchScript code cannot be intercepted"
    )
    assert not (env / "out").exists()


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims ``width`` × ``height`` pixels (a decompression bomb's look)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def test_a_decompression_bomb_names_the_file_and_the_limit_is_adjustable(env, capsys):
    bomb = env / "bomb.png"
    _png_header_only(bomb, 30_000, 30_000)  # 900 M pixels: beyond twice Pillow's limit
    argv = ["project", bomb, "--layer", "features.0", "--channel", "0", "--out", env / "out"]
    text = _one_line(argv, capsys)
    assert text.startswith("image: expected an image of at most 89478485 pixels")
    assert f"received {str(bomb)!r}" in text
    assert "900000000 pixels" in text
    big = env / "big.png"
    Image.fromarray(np.zeros((60, 50), np.uint8)).save(big)
    small_limit = ["--max-image-pixels", "2999"]
    argv = ["project", big, "--layer", "features.0", "--channel", "0", "--out", env / "out"]
    text = _one_line([*argv, *small_limit], capsys)
    assert text.startswith("image: expected an image of at most 2999 pixels")
    assert not (env / "out").exists()
    main([str(a) for a in argv] + ["--max-image-pixels", "3000"])  # 60 × 50 = 3000: allowed
    assert (env / "out" / "projections.json").is_file()
    assert Image.MAX_IMAGE_PIXELS == 1024 * 1024 * 1024 // 4 // 3  # Pillow's own, restored


def test_top_larger_than_the_dataset_is_clamped_before_allocating(env):
    run = scan(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()),
               [(torch.randn(3, 6, 6), 0) for _ in range(5)], ["1"], top=10**12,
               progress=False)  # fmt: skip
    assert run.layers["1"].values.shape == (4, 5)  # all five images, not 10**12 slots
    assert run.meta["top_requested"] == 10**12
    assert run.meta["top"] == 5

    class Huge:  # a dataset of 10**12 items: the running top-k would not fit in memory
        def __len__(self) -> int:
            return 10**12

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return torch.zeros(3, 6, 6), 0

    net = nn.Sequential(nn.Conv2d(3, 64, 3), nn.ReLU())
    with pytest.raises(ParameterError, match=r"top: expected a top-k whose running state fits in "
                                             r"4 GiB, received top 100000000: [\d.]+ GiB"):  # fmt: skip
        scan(net, Huge(), ["1"], top=10**8, progress=False)
    assert MAX_STATE_BYTES == 4 * 2**30


def test_top_on_the_cli_reaches_the_results(env):
    main(["scan", "--data", str(env / "data"), "--layers", "features.0", "--out",
          str(env / "out"), "--top", "1000000000", "--no-project", "--no-progress"])  # fmt: skip
    result = ScanResult.load(env / "out")
    assert result.top == 4  # the folder's four images
    assert result.meta["top_requested"] == 1_000_000_000


def test_project_inputs_with_the_wrong_channel_count(env, capsys):
    text = _one_line(_project(env, "tb_factories:grey"), capsys)
    assert text.startswith(
        "images: expected inputs of 1 channel(s), as the model's first convolution '0' takes, "
        "received 3 channel(s) from the preprocessing (inputs of shape (1, 3, 224, 224))"
    )
    text = _one_line(_scan(env, "tb_factories:grey"), capsys)
    assert text.startswith("dataset: expected inputs of 1 channel(s)")
    assert not (env / "out").exists()


def test_a_model_module_not_on_the_path_suggests_pythonpath(env, tmp_path):
    """From the console script (no current folder on ``sys.path``), as a user runs it."""
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "mynet.py").write_text("import torch.nn as nn\ndef make():\n"
                                                "    return nn.Conv2d(3, 4, 3)\n")  # fmt: skip
    script = Path(sys.executable).with_name("convlens")
    done = subprocess.run(
        [str(script), "project", str(env / "data" / "a" / "0.png"), "--model", "mynet:make",
         "--layer", "0", "--channel", "0", "--out", str(tmp_path / "out")],
        cwd=tmp_path / "here", capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert (
        "model: expected an importable 'package.module:factory', received 'mynet:make'" in lines[0]
    )
    assert "(mynet is in the current folder)" in lines[0]
    assert "PYTHONPATH=. convlens" in lines[0]
