"""The README's Python tour runs as written, and every command it shows exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from convlens.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_python_tour_runs(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = _blocks("python")
    assert len(blocks) >= 5
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "w₁₁" in printed  # the unicode C of the seed's 4x4 / 3x3 example
    assert "\\begin{bmatrix}" in printed


def test_every_cli_line_names_a_real_command(capsys: pytest.CaptureFixture[str]) -> None:
    lines = [
        line.split("#")[0].strip()
        for block in _blocks("bash")
        for line in block.splitlines()
        if line.strip().startswith(("convlens ", "torchrun "))
    ]
    assert len(lines) >= 10
    for line in lines:
        words = shlex.split(line)
        words = words[words.index("convlens") + 1 :] if "convlens" in words else words
        command = [w for w in words if not w.startswith("-")][:2]
        # --help is eager: a real command (or group + subcommand) prints its help and returns;
        # an unknown one exits with status 2
        main([*command, "--help"])
    assert "Usage:" in capsys.readouterr().out
