"""Faults: corrupt images, kill -9 and Ctrl-C mid-scan followed by --resume, bad resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convlens.errors import ParameterError
from convlens.io import LOCK, MANIFEST
from convlens.scan.checkpoint import load_state
from convlens.scan.data import ImageFolderDataset
from convlens.scan.run import RESULT_TENSORS, ScanResult, checkpoint_path, scan

# A model factory for the CLI (``--model scanfactory:make``). With CONVLENS_TEST_BLOCK_AT=B
# set, its forward pass sleeps forever at its B-th call: the process is then certainly in
# the middle of the scan when the test kills it (no race on timing). The scan's probe (one
# item through the model before the scan) is the first call, so batch b is call b + 1.
FACTORY = """
import os, time, torch, torch.nn as nn

class Net(nn.Sequential):
    calls = 0

    def forward(self, x):
        Net.calls += 1
        block = os.environ.get("CONVLENS_TEST_BLOCK_AT")
        if block is not None and Net.calls >= int(block):
            open(os.environ["CONVLENS_TEST_READY"], "w").close()
            while True:
                time.sleep(0.05)
        return super().forward(x)

def make():
    torch.manual_seed(0)
    return Net(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
               nn.Conv2d(6, 8, 3), nn.ReLU())
"""


def _write_images(root: Path, n: int, size: int = 12, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:03d}.png")


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    _write_images(root, 40)
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (root / "factory").mkdir()
    (root / "factory" / "scanfactory.py").write_text(FACTORY)
    return root


def _env(root: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root / "factory"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def _cli(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "convlens",
        "scan",
        "--model",
        "scanfactory:make",
        "--data",
        str(root),
        "--layers",
        "1,4",
        "--top",
        "4",
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--checkpoint-every",
        "8",
        "--no-project",
        "--no-progress",
        *extra,
    ]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def _interrupt(root: Path, out: Path, sig: int) -> subprocess.CompletedProcess | None:
    ready = out.parent / f"ready-{out.name}"
    env = _env(root, CONVLENS_TEST_BLOCK_AT="6", CONVLENS_TEST_READY=str(ready))  # batch 5
    # The child gets the default SIGINT action even when pytest runs with SIGINT ignored (a
    # background job): an ignored signal is inherited across exec, and Python then installs
    # no KeyboardInterrupt handler, so Ctrl-C would do nothing.
    proc = subprocess.Popen(
        _cli(root, out),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    try:
        deadline = time.monotonic() + 90
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the scan never reached the blocking batch"
            time.sleep(0.05)
        os.kill(proc.pid, sig)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return None


def test_corrupt_file_is_reported_and_the_rest_scanned(image_root, tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    data = ImageFolderDataset(
        image_root,
        lambda im: torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32).copy()).permute(
            2, 0, 1
        ),
    )
    broken = data.paths.index("a/broken.png")
    result = scan(net, data, ["1"], top=3, batch_size=5, progress=False, out=tmp_path)
    assert result.counts == {"total": 41, "scanned": 40, "skipped": 1}
    assert len(result.skipped) == 1
    entry = result.skipped[0]
    assert entry["index"] == broken
    assert entry["path"] == "a/broken.png"
    assert "UnidentifiedImageError" in entry["error"] or "cannot identify" in entry["error"]
    saved = json.loads((tmp_path / "scan.json").read_text())
    assert saved["skipped"] == result.skipped
    # the rest: identical to a scan of the good images alone, indices mapped back
    good = [i for i in range(len(data)) if i != broken]
    ref = scan(net, [data[i] for i in good], ["1"], top=3, batch_size=5, progress=False)
    mapped = torch.tensor(good)[ref.layers["1"].indices]
    assert torch.equal(result.layers["1"].indices, mapped)
    # other batches, so equal up to rounding (the forward pass is not batch-invariant)
    torch.testing.assert_close(result.layers["1"].values, ref.layers["1"].values)
    assert result.meta["dataset"]["kind"] == "folder"
    assert len(result.meta["dataset"]["sha256"]) == 64


@pytest.fixture(scope="module")
def reference(image_root, tmp_path_factory):
    """An uninterrupted CLI scan of the image folder."""
    out = tmp_path_factory.mktemp("reference")
    _run(_cli(image_root, out), _env(image_root))
    return out


def test_kill_9_mid_scan_then_resume_is_bit_identical(image_root, reference, tmp_path):
    killed = tmp_path / "killed"
    _interrupt(image_root, killed, signal.SIGKILL)
    ckpt = checkpoint_path(killed)
    _, state = load_state(ckpt)
    assert state["done"] == 4  # 2 checkpoints of 8 images each, batch 5 never finished
    assert not (killed / RESULT_TENSORS).exists()
    _run(_cli(image_root, killed, "--resume"), _env(image_root))
    assert (killed / RESULT_TENSORS).read_bytes() == (reference / RESULT_TENSORS).read_bytes()
    a, b = ScanResult.load(killed), ScanResult.load(reference)
    assert a.skipped == b.skipped
    assert len(a.skipped) == 1
    assert a.counts == b.counts
    assert a.meta["timings"]["resumed"] is True


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_writes_a_checkpoint_then_resume_is_identical(image_root, reference, tmp_path, sig):
    stopped = tmp_path / "stopped"
    _interrupt(image_root, stopped, sig)
    _, state = load_state(checkpoint_path(stopped))
    assert state["done"] == 4
    _run(_cli(image_root, stopped, "--resume"), _env(image_root))
    assert (stopped / RESULT_TENSORS).read_bytes() == (reference / RESULT_TENSORS).read_bytes()


def test_resume_with_other_settings_is_refused(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
    data = [(torch.randn(1, 6, 6), 0) for _ in range(6)]
    scan(net, data, ["1"], top=2, batch_size=2, out=tmp_path, progress=False)
    with pytest.raises(
        ParameterError, match="resume: expected the settings of the interrupted scan"
    ):
        scan(net, data, ["1"], top=3, batch_size=2, out=tmp_path, resume=True, progress=False)


def test_resume_of_a_finished_scan_gives_the_same_result(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
    data = [(torch.randn(1, 6, 6), 0) for _ in range(7)]
    first = scan(net, data, ["1"], top=2, batch_size=2, out=tmp_path, progress=False)
    again = scan(net, data, ["1"], top=2, batch_size=2, out=tmp_path, resume=True, progress=False)
    assert torch.equal(first.layers["1"].indices, again.layers["1"].indices)
    assert torch.equal(first.layers["1"].values, again.layers["1"].values)
    assert again.counts == first.counts


def test_checkpoint_is_written_atomically(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))
    data = [(torch.randn(1, 6, 6), 0) for _ in range(9)]
    seen = []

    def look(batch_no: int) -> None:  # convlens's own lock and manifest aside
        names = sorted(p.name for p in tmp_path.iterdir() if p.name not in (LOCK, MANIFEST))
        seen.append(names)

    scan(
        net,
        data,
        ["0"],
        top=2,
        batch_size=2,
        checkpoint_every=2,
        out=tmp_path,
        progress=False,
        on_batch=look,
    )
    assert all(not any(n.endswith(".tmp") for n in names) for names in seen)
    assert all(names == ["checkpoint-0-of-1.safetensors"] for names in seen)
    _, state = load_state(checkpoint_path(tmp_path))
    assert state["done"] == 5
    assert state["scanned"] == 9
