"""Issue 15, also: output folders with the user's umask, the Ctrl-C fault test with SIGINT
ignored in the parent, :func:`convlens.loaded.eval_mode` (every module's own training flag
restored) and train-demo's plain progress lines in a log. References: ``0o777 & ~umask`` computed here, ``os.stat``; the flags read before.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from convlens.loaded import eval_mode
from convlens.scan.checkpoint import load_state
from convlens.scan.run import RESULT_TENSORS, checkpoint_path

sys.path.insert(0, str(Path(__file__).parent))
from test_scan_faults import _cli, _env, _interrupt, _run, image_root, reference  # noqa: F401


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_output_folders_honour_the_umask(tmp_path, umask):
    from convlens.cli import main

    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    old = os.umask(umask)
    try:
        main(["project", str(image), "--layer", "features.0", "--channel", "0",
              "--out", str(tmp_path / "project")])  # fmt: skip
        main(["scan", "--data", "demo", "--layers", "features.0", "--top", "1", "--out",
              str(tmp_path / "scan"), "--no-project", "--no-progress"])  # fmt: skip
        from convlens.report import ReportData, Summary, write_report

        write_report(ReportData(Summary("m", "d", "c")), tmp_path / "report")
    finally:
        os.umask(old)
    want = 0o777 & ~umask
    for name in ("project", "scan", "report"):
        assert oct(_mode(tmp_path / name)) == oct(want), name
    assert oct(_mode(tmp_path / "project" / "projections.json")) == oct(0o666 & ~umask)


def test_ctrl_c_works_when_the_parent_ignores_sigint(image_root, reference, tmp_path):  # noqa: F811
    """As when pytest runs as a background job: SIGINT is ignored here and in every child
    that does not reset it (the fault helper's child resets it to the default)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        stopped = tmp_path / "stopped"
        _interrupt(image_root, stopped, signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
    _, state = load_state(checkpoint_path(stopped))
    assert state["done"] == 4  # the child took Ctrl-C as Ctrl-C: a checkpoint, then it ended
    _run(_cli(image_root, stopped, "--resume"), _env(image_root))
    assert (stopped / RESULT_TENSORS).read_bytes() == (reference / RESULT_TENSORS).read_bytes()


def test_eval_mode_restores_every_flag_also_on_an_error():
    net = nn.Sequential(nn.Dropout(), nn.Sequential(nn.BatchNorm1d(2), nn.Dropout()), nn.ReLU())
    net.train()
    net[1][0].eval()  # a mixed model: one module already in eval mode
    before = [m.training for m in net.modules()]
    with eval_mode(net) as inside:
        assert inside is net
        assert not any(m.training for m in net.modules())
    assert [m.training for m in net.modules()] == before
    with pytest.raises(RuntimeError, match="boom"), eval_mode(net):
        raise RuntimeError("boom")
    assert [m.training for m in net.modules()] == before
    # net.train(was) would have lost the mixed state
    flat = [m.training for m in net.train(True).modules()]
    assert flat != before
    assert torch.is_grad_enabled()  # eval mode, not no_grad: autograd is the caller's choice


def test_train_demo_prints_a_plain_line_per_epoch_when_stderr_is_no_terminal(capsys):
    from convlens.demo.train import train_demo

    _, metrics = train_demo(epochs=2, limit=128, eval_limit=64, progress=True)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2  # pytest's capture is no terminal: no bar, one line per epoch
    for line, entry in zip(err, metrics["history"]):
        assert line.startswith(f"train-demo: epoch {entry['epoch']}/2: ")
        assert f"test accuracy {entry['test_accuracy']:.4f}" in line
        assert f"train loss {entry['train_loss']:.4f}" in line
    train_demo(epochs=1, limit=128, eval_limit=64, progress=False)
    assert capsys.readouterr().err == ""  # --quiet: nothing
