"""Issue 15, guards before the work: every option is checked before the first image is read
(or, for a layer whose channel count only a forward pass tells, before the second), and a
refusal leaves the output folder as it was: missing when it was missing, unchanged when it
existed. References: a counting dataset (how many items were read) and file listings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn

from convlens.errors import ConvLensError, ParameterError
from convlens.pipeline import top_projections
from convlens.report.assemble import assemble_report
from convlens.scan.run import scan


class Counting:
    """A dataset of ``n`` random images that counts the items read."""

    def __init__(self, n: int = 6, channels: int = 3) -> None:
        g = torch.Generator().manual_seed(0)
        self.items = [(torch.randn(channels, 10, 10, generator=g), i % 2) for i in range(n)]
        self.reads = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        self.reads += 1
        return self.items[i]


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 128, 3), nn.ReLU(), nn.Conv2d(128, 4, 3), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))  # fmt: skip


def _listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


# (options, the message, how many items may be read: 0 before any image, 1 for the probe)
CASES: dict[str, tuple[dict[str, Any], str, int]] = {
    "channels on a conv": ({"layers": "0", "channels": [200]},
                           r"channels: expected indices in 0\.\.127 \(layer '0' has 128", 0),
    "channels on a ReLU": ({"layers": "1", "channels": [200]},
                           r"channels: expected indices in 0\.\.127 \(layer '1' has 128", 1),
    "no such layer": ({"layers": "9"}, r"layers: expected a module path of the model", 0),
    "a layer that never runs": ({"layers": "0", "model": "unused"},
                                r"layers: expected modules that run in the model's forward", 1),
    "top 0": ({"layers": "0", "top": 0}, r"top: expected a positive int, received 0", 0),
    "bad rule": ({"layers": "0", "rule": "nope"}, r"rule: expected one of deconvnet, guided", 0),
    "bad method": ({"layers": "0", "method": "nope"}, r"method: expected one of auto, crop", 0),
    "batch size": ({"layers": "0", "batch_size": 0}, r"batch_size: expected a positive int", 0),
    "resume and overwrite": ({"layers": "0", "resume": True, "overwrite": True},
                             r"overwrite: expected not together with resume", 0),
    "channels not ints": ({"layers": "0", "channels": ["0"]},
                          r"channels: expected channel indices \(ints\)", 0),
}  # fmt: skip


class _WithUnused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = _net()
        self.spare = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.mark.parametrize("exists", [False, True], ids=["new", "existing"])
@pytest.mark.parametrize("case", list(CASES))
def test_every_refusal_comes_before_the_work_and_leaves_out_as_it_was(tmp_path, case, exists):
    options, message, reads = CASES[case]
    options = dict(options)
    net = _WithUnused() if options.pop("model", None) else _net()
    if isinstance(net, _WithUnused) and options["layers"] == "0":
        options["layers"] = "spare"
    out = tmp_path / "out"
    if exists:
        out.mkdir()
    data = Counting()
    with pytest.raises(ConvLensError, match=message):
        top_projections(net, data, out=out, progress=False, **options)
    assert data.reads <= reads
    assert (_listing(out) == []) if exists else not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == (["out"] if exists else [])


def test_a_refused_resume_leaves_the_run_as_it_was(tmp_path):
    out, data = tmp_path / "run", Counting()
    scan(_net(), data, ["0"], top=2, batch_size=2, out=out, progress=False)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ParameterError, match=r"resume: expected the settings"):
        scan(_net(), data, ["0"], top=3, batch_size=2, out=out, resume=True, progress=False)
    with pytest.raises(ParameterError, match=r"channels: expected indices in 0\.\.127"):
        top_projections(_net(), data, "1", channels=[500], out=out, resume=True, progress=False)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("occlusion_images", -1, r"occlusion_images: expected a non-negative int"),
        ("occlusion_size", 0, r"occlusion_size: expected a positive int or None"),
        ("occlusion_stride", 1.5, r"occlusion_stride: expected a positive int or None"),
        ("batch_size", 0, r"batch_size: expected a positive int"),
        ("channels", [999], r"channels: expected indices in 0\.\.127"),
    ],
)
def test_report_options_are_checked_before_the_scan(tmp_path, option, value, message):
    data = Counting()
    with pytest.raises(ParameterError, match=message):
        assemble_report(_net(), data, command="c", dataset_name="d", layers=["0"],
                        scan_dir=tmp_path / "scan", **{option: value})  # fmt: skip
    assert data.reads == 0
    assert not (tmp_path / "scan").exists()


def test_project_options_are_checked_before_the_images_are_read(tmp_path, monkeypatch):
    from convlens.pipeline import commands

    read: list[object] = []
    monkeypatch.setattr(commands, "load_image_noting", lambda *a, **k: read.append(a))
    cases = [
        ({"scale": 0}, r"scale: expected a positive int, received 0"),
        ({"rule": "nope"}, r"rule: expected one of"),
        ({"engine": "nope"}, r"engine: expected one of auto, explicit, rules"),
        ({"layer": "features.99"}, r"layer: expected a module path of the model"),
        ({"channels": [64]}, r"channels: expected indices in 0\.\.31 \(layer 'features\.0'"),
    ]
    for change, message in cases:
        options = {"layer": "features.0", "channels": [0], "out": tmp_path / "out", **change}
        with pytest.raises(ParameterError, match=message):
            commands.project_images([tmp_path / "x.png"], "demo", **options)
    assert read == []
    assert not (tmp_path / "out").exists()
