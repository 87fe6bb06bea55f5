"""The CLI's last line of defence: what reaches a user when a command fails.

Every library error is one line and exit 2; a truncated file read by a command (click turns its
EOFError into Abort) is bad data, not an interruption; an unexpected exception is one line and
exit 1, its traceback only with CONVLENS_DEBUG=1.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from convlens.cli import cli, main

MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def command():
    """Add a throwaway command to the group for one test and remove it afterwards."""
    added: list[str] = []

    def add(name: str, error: BaseException) -> None:
        def run() -> None:
            raise error

        cli.add_command(click.Command(name, callback=run))
        added.append(name)

    yield add
    for name in added:
        cli.commands.pop(name, None)


def _run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    code = exit_info.value.code
    assert isinstance(code, int)
    return code


def test_eof_error_is_bad_data_not_an_interruption(command, capsys):
    command("eof-boom", EOFError("Compressed file ended before the end-of-stream marker"))
    assert _run(["eof-boom"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("convlens: error: unexpected end of data")
    assert "end-of-stream" in err[-1]


def test_ctrl_c_is_an_interruption(command, capsys):
    command("int-boom", KeyboardInterrupt())
    assert _run(["int-boom"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "convlens: interrupted"


def test_os_error_is_one_line(command, capsys):
    command("os-boom", OSError(28, "No space left on device"))
    assert _run(["os-boom"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "convlens: error: [Errno 28] No space left on device"


def test_unexpected_exception_is_one_line_without_traceback(command, capsys, monkeypatch):
    monkeypatch.delenv("CONVLENS_DEBUG", raising=False)
    command("bug-boom", ZeroDivisionError("division by zero"))
    assert _run(["bug-boom"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().startswith("convlens: internal error: ZeroDivisionError: division by zero")


def test_debug_shows_the_traceback(command, monkeypatch):
    monkeypatch.setenv("CONVLENS_DEBUG", "1")
    command("dbg-boom", ZeroDivisionError("division by zero"))
    with pytest.raises(ZeroDivisionError):
        main(["dbg-boom"])


def test_train_demo_on_a_truncated_gz_is_an_error(tmp_path):
    """The real case: a truncated Fashion-MNIST file read by train-demo."""
    data = tmp_path / "data"
    data.mkdir()
    for source in MNIST.glob("*.gz"):
        shutil.copy(source, data / source.name)
    images = data / "train-images-idx3-ubyte.gz"
    raw = images.read_bytes()
    images.write_bytes(raw[: len(raw) // 3])
    with pytest.raises((EOFError, gzip.BadGzipFile)):
        gzip.decompress(images.read_bytes())  # the file really is truncated
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "convlens",
            "train-demo",
            "--data-dir",
            str(data),
            "--epochs",
            "1",
            "--limit",
            "64",
            "--out",
            str(tmp_path / "w.safetensors"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("convlens: error:")
    assert not (tmp_path / "w.safetensors").exists()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["arith", "conv", "--dims", "7", "--input", "3"], "'--dims'"),
        (["arith", "conv", "--bogus"], "'--bogus'"),
        (["nosuch"], "'nosuch'"),
        (["scan", "--batch-size", "abc"], "--batch-size"),
    ],
)
def test_usage_errors_are_one_line(argv, needle, capsys):
    assert _run(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("convlens: error: ")
    assert needle in err[0]
    assert "--help" in err[0]


def test_a_bare_group_prints_its_help(capsys):
    assert _run(["arith"]) == 2
    captured = capsys.readouterr()
    assert "Usage:" in captured.out + captured.err
    assert "conv" in captured.out + captured.err


def test_a_warning_reaches_a_cli_user_as_one_line(tmp_path):
    """In a real process: a model's warning (here a factory's, two lines) is printed as
    ``convlens: warning: <its first line>``, without Python's file:line and source line."""
    (tmp_path / "warning_factory.py").write_text(
        "import warnings\n"
        "import torch.nn as nn\n"
        "def net():\n"
        "    warnings.warn('the factory warns\\nsecond line', UserWarning)\n"
        "    return nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU())\n"
    )
    data = tmp_path / "data" / "a"
    data.mkdir(parents=True)
    from PIL import Image

    for i in range(2):
        Image.new("L", (12, 12), 40 * i).save(data / f"{i}.png")
    proc = subprocess.run(
        [sys.executable, "-m", "convlens", "scan", "--model", "warning_factory:net", "--data",
         str(tmp_path / "data"), "--layers", "1", "--top", "1", "--no-project",
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert "convlens: warning: the factory warns" in lines
    assert "second line" not in proc.stderr
    assert "warning_factory.py" not in proc.stderr  # no file:line, no source line
