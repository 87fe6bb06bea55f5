"""A 2-process torchrun on gloo over 127.0.0.1 gives the one-process result, bit for bit."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from convlens.errors import ParameterError
from convlens.scan.distributed import detect, shard_batches
from convlens.scan.run import RESULT_TENSORS, ScanResult

sys.path.insert(0, str(Path(__file__).parent))
from test_scan_faults import FACTORY, _write_images


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scan_args(root: Path, out: Path) -> list[str]:
    return [
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
        "3",
        "--out",
        str(out),
        "--batch-size",
        "3",
        "--no-project",
        "--no-progress",
    ]


def test_two_gloo_processes_equal_one_process(tmp_path):
    root = tmp_path / "images"
    _write_images(root, 23, seed=3)
    (root / "a" / "bad.jpg").write_bytes(b"not a jpeg")
    factory = tmp_path / "factory"
    factory.mkdir()
    (factory / "scanfactory.py").write_text(FACTORY)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(factory), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    one, two = tmp_path / "one", tmp_path / "two"
    done = subprocess.run(
        [sys.executable, *_scan_args(root, one)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--nnodes=1",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
    ]
    done = subprocess.run(
        [*torchrun, *_scan_args(root, two)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert (two / "checkpoint-1-of-2.safetensors").is_file()  # really two ranks
    assert (two / RESULT_TENSORS).read_bytes() == (one / RESULT_TENSORS).read_bytes()
    a, b = ScanResult.load(one), ScanResult.load(two)
    assert a.skipped == b.skipped
    assert [s["path"] for s in a.skipped] == ["a/bad.jpg"]
    assert a.counts == b.counts == {"total": 24, "scanned": 23, "skipped": 1}
    assert b.meta["timings"]["world_size"] == 2


def test_detect_and_shard():
    info = detect({"RANK": "1", "WORLD_SIZE": "3", "LOCAL_RANK": "1"})
    assert (info.rank, info.world_size, info.active, info.is_main) == (1, 3, True, False)
    assert detect({}).world_size == 1
    batches = [shard_batches(10, r, 3) for r in range(3)]
    assert sorted(b for part in batches for b in part) == list(range(10))
    assert batches[1] == [1, 4, 7]
    with pytest.raises(ParameterError, match="RANK: expected 0 <= RANK < WORLD_SIZE=2, received 2"):
        detect({"RANK": "2", "WORLD_SIZE": "2"})
