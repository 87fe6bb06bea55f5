"""Issue 15, messages that mislead: what differs on a refused resume, a resume that finds no
checkpoint, a checkpoint of another number of processes, a corrupt file reported as corrupt
(not as an interruption), ``--out`` named (not an internal temporary file) when it cannot be
written. References: the settings the test changed, read back in the message.
"""

from __future__ import annotations

import gzip
import re

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from convlens.cli import main
from convlens.errors import ParameterError
from convlens.io import atomic_write_bytes, atomic_write_text, run_folder
from convlens.scan.run import ScanNote, ScanResult, checkpoint_path, scan


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU())


def _data(n: int = 7) -> list[tuple[torch.Tensor, int]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(1, 8, 8, generator=g), 0) for _ in range(n)]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"top": 3}, r"different top \(checkpoint 2, now 3\)"),
        ({"batch_size": 3}, r"different batch_size \(checkpoint 2, now 3\)"),
        ({"layers": ["0", "1"]}, r'different layers \(checkpoint \["1"\], now \["0", "1"\]\)'),
        ({"dataset": 8}, r"different dataset \(checkpoint \{.*\}, now \{.*\}\)"),
    ],
)
def test_a_refused_resume_names_the_setting_that_differs(tmp_path, change, named):
    scan(_net(), _data(), ["1"], top=2, batch_size=2, out=tmp_path / "run", progress=False)
    options = {"top": 2, "batch_size": 2, "layers": ["1"], "dataset": 7, **change}
    data = _data(options.pop("dataset"))
    layers = options.pop("layers")
    with pytest.raises(ParameterError) as refused:
        scan(_net(), data, layers, out=tmp_path / "run", resume=True, progress=False, **options)
    text = str(refused.value)
    assert text.startswith("resume: expected the settings of the interrupted scan, received ")
    assert re.search(named, text), text
    assert text.count("(checkpoint") == 1  # only what differs
    other_weights = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU())
    with pytest.raises(ParameterError, match=r"different state_sha256 \(checkpoint [0-9a-f]{12}…"):
        scan(other_weights, _data(), ["1"], top=2, batch_size=2, out=tmp_path / "run",
             resume=True, progress=False)  # fmt: skip


def test_resume_without_a_checkpoint_says_so_and_starts_fresh(tmp_path, capsys):
    notes: list[str] = []
    out = tmp_path / "run"
    result = scan(_net(), _data(), ["1"], top=2, out=out, resume=True, progress=False,
                  note=notes.append)  # fmt: skip
    assert notes == [f"resume: no checkpoint found in {str(out)!r}, starting fresh"]
    assert result.meta["timings"]["resumed"] is False
    with pytest.warns(ScanNote, match="no checkpoint found"):
        scan(_net(), _data(), ["1"], top=2, out=tmp_path / "other", resume=True, progress=False)
    main(["scan", "--data", "demo", "--layers", "features.0", "--top", "2", "--out",
          str(tmp_path / "cli"), "--resume", "--no-project", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert "convlens: resume: no checkpoint found in" in err
    assert "starting fresh" in err


def test_a_checkpoint_of_another_number_of_processes_is_refused(tmp_path):
    out = tmp_path / "run"
    scan(_net(), _data(), ["1"], top=2, batch_size=2, out=out, progress=False)
    blob = checkpoint_path(out).read_bytes()
    checkpoint_path(out).unlink()
    with run_folder(out, reuse="continue"):  # as a job of 2 processes would have left it
        for rank in (0, 1):
            atomic_write_bytes(checkpoint_path(out, rank, 2), blob)
    with pytest.raises(
        ParameterError,
        match=r"resume: expected a checkpoint written by 1 process\(es\), as this run has, "
        r"received checkpoints of 2 process\(es\) in '.*run'\. resume with the same number",
    ):
        scan(_net(), _data(), ["1"], top=2, batch_size=2, out=out, resume=True, progress=False)


def test_corrupt_files_are_reported_as_corrupt_not_as_interrupted(tmp_path, capsys):
    out = tmp_path / "run"
    scan(_net(), _data(), ["1"], top=2, out=out, progress=False)
    text = (out / "scan.json").read_text()
    (out / "scan.json").write_text(text[: len(text) // 2])  # truncated
    with pytest.raises(ParameterError, match=r"run folder: expected a readable scan\.json .*corrupt "
                                             r"or truncated \(JSONDecodeError"):  # fmt: skip
        ScanResult.load(out)
    # a truncated image in a dataset: skipped and listed as such; the scan ends normally
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(np.full((28, 28), 40 * i, np.uint8)).save(images / f"{i}.png")
    whole = (images / "2.png").read_bytes()
    (images / "2.png").write_bytes(whole[: len(whole) // 2])
    main(["scan", "--data", str(images), "--layers", "features.0", "--out", str(tmp_path / "s"),
          "--top", "2", "--no-project", "--no-progress"])  # fmt: skip
    skipped = ScanResult.load(tmp_path / "s").skipped
    assert [s["path"] for s in skipped] == ["2.png"]
    assert "image: expected a file Pillow can decode" in skipped[0]["error"]
    # a truncated gzip file (EOFError) read by a command: an error, exit 2, not 'interrupted'
    weights = tmp_path / "w.pt"
    torch.save(_net().state_dict(), weights)
    with gzip.open(tmp_path / "w.gz", "wb") as f:
        f.write(weights.read_bytes())
    (tmp_path / "bad.pt").write_bytes((tmp_path / "w.gz").read_bytes()[:40])
    with pytest.raises(SystemExit) as stop:
        main(["project", str(images / "0.png"), "--layer", "features.0", "--channel", "0",
              "--weights", str(tmp_path / "bad.pt"), "--out", str(tmp_path / "p")])  # fmt: skip
    assert stop.value.code == 2
    assert "weights: expected a PyTorch (torch.save) or safetensors" in capsys.readouterr().err


def test_an_unwritable_out_names_out_not_a_temporary_file(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = blocker / "run"  # a folder below a file can never be made
    for argv in (
        ["scan", "--data", "demo", "--layers", "features.0", "--out", str(out), "--no-project",
         "--no-progress"],
        ["project", str(tmp_path / "a-file"), "--layer", "features.0", "--channel", "0",
         "--out", str(out)],
    ):  # fmt: skip
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert err.startswith("convlens: error: ")
        assert ".tmp" not in err
        assert "out:" in err or "image:" in err
    with pytest.raises(ParameterError) as refused:
        atomic_write_text(blocker / "x.txt", "y", param="out")
    assert str(refused.value).startswith("out: expected a folder convlens can write to, received")
    assert ".tmp" not in str(refused.value)
