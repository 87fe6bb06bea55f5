"""The analyses' run folders (evolution, invariance, correspondence) held through
``convlens.io``, and invariance on models and image folders it cannot fully use.

References: the folder's bytes read back before and after every refusal (a snapshot of every
path and its content), a second process that holds the folder for real, the manifest read
with ``convlens.io.written_files``, and for the picked images a direct loop over the image
files (Pillow + the model's preprocessing, a plain forward, ``argmax``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from convlens.analysis.outputs import RunFolder
from convlens.cli import main
from convlens.errors import ParameterError
from convlens.io import LOCK, MANIFEST, foreign_files, written_files
from convlens.loaded import LoadedModel
from convlens.pipeline.analyze import run_invariance

AMOUNTS = ["--translate", "-1,0,1", "--scale", "1,1.2", "--rotate", "0,90"]


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for a folder)."""
    return {
        p.relative_to(root).as_posix(): (None if p.is_dir() else p.read_bytes())
        for p in sorted(root.rglob("*"))
    }


def _preprocess(image: Image.Image) -> torch.Tensor:
    pixels = np.asarray(image.convert("L").resize((8, 8)), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels - 0.5).unsqueeze(0)


def classifier() -> LoadedModel:
    """``--model test_analysis_folders:classifier``: a seeded classifier of 8x8 images."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 8 * 8, 2)
    ).eval()
    return LoadedModel(net, "tiny", _preprocess, (1, 8, 8), None, ("a", "b"), "test")


def conv_only() -> LoadedModel:
    """``--model test_analysis_folders:conv_only``: its output is a feature map."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU()).eval()
    return LoadedModel(net, "maps", _preprocess, (1, 8, 8), None, None, "test")


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """Two classes of four 8x8 images; the first file of class ``a`` is not an image."""
    root = tmp_path / "images"
    rng = np.random.default_rng(5)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(
                root / name / f"{i}.png"
            )
    (root / "a" / "0.png").write_bytes(b"not a png at all")
    return root


def test_refusals_change_nothing_and_name_out(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with RunFolder.claim(out, "invariance") as run:
        run.write_json("invariance.json", {"x": 1})
    assert written_files(out) == {".convlens-invariance", "invariance.json"}
    before = _snapshot(out)
    cases = [
        ("invariance", {}, "earlier invariance run.*--resume"),
        ("evolution", {}, "a convlens invariance run"),
        ("evolution", {"overwrite": True}, "a convlens invariance run"),
        ("correspondence", {"resume": True}, "a convlens invariance run"),
        ("invariance", {"resume": True, "overwrite": True}, "not both"),
    ]
    for kind, flags, message in cases:
        with (
            pytest.raises(ParameterError, match=message) as info,
            RunFolder.claim(out, kind, **flags),
        ):
            pass
        assert str(info.value).startswith(("out:", "overwrite:"))
        assert _snapshot(out) == before
    # a folder with a user's file: refused, whatever the flags
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("mine")
    for flags in ({}, {"resume": True}, {"overwrite": True}):
        with (
            pytest.raises(ParameterError, match=r"thesis\.tex"),
            RunFolder.claim(mine, "invariance", **flags),
        ):
            pass
    assert _snapshot(mine) == {"thesis.tex": b"mine"}
    # a file where the folder should be
    with (
        pytest.raises(ParameterError, match="out: expected a folder"),
        RunFolder.claim(mine / "thesis.tex", "invariance"),
    ):
        pass


def _crash(out: Path, step: Callable[[RunFolder], object]) -> None:
    """Claim ``out`` for evolution, do ``step``, then fail as a crash would."""
    with RunFolder.claim(out, "evolution") as run:
        step(run)
        raise RuntimeError("boom")


def test_a_failed_run_leaves_the_folder_as_it_found_it(tmp_path: Path) -> None:
    def make_room(run: RunFolder) -> object:  # room made for a nested scan, then a crash
        return run.nested("scans/00-x", ["scan.json"])

    new = tmp_path / "new"
    with pytest.raises(RuntimeError):
        _crash(new, make_room)
    assert not new.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RuntimeError):
        _crash(empty, make_room)
    assert list(empty.iterdir()) == []
    # a run that wrote a result before failing keeps it, owned, for --resume
    with pytest.raises(RuntimeError):
        _crash(empty, lambda run: run.write_text("part.txt", "1"))
    assert foreign_files(empty) == []
    with RunFolder.claim(empty, "evolution", resume=True) as run:
        assert (run.path / "part.txt").read_text() == "1"


def test_two_runs_at_once_into_one_folder_the_second_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    held, release = threading.Event(), threading.Event()

    def first() -> None:
        with RunFolder.claim(out, "invariance") as run:
            run.write_text("invariance.csv", "a\n")
            held.set()
            release.wait(30)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert held.wait(30)
        before = _snapshot(out)
        with (
            pytest.raises(ParameterError, match="no other convlens run is using"),
            RunFolder.claim(out, "invariance", resume=True),
        ):
            pass
        assert _snapshot(out) == before
    finally:
        release.set()
        thread.join()
    assert not (out / LOCK).exists()


def test_a_run_in_another_process_keeps_the_cli_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, ready = tmp_path / "inv", tmp_path / "ready"
    holder = textwrap.dedent(
        f"""
        import pathlib, time
        from convlens.analysis.outputs import RunFolder
        with RunFolder.claim({os.fspath(out)!r}, "invariance") as run:
            run.write_text("invariance.csv", "a\\n")
            pathlib.Path({os.fspath(ready)!r}).write_text("held")
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", holder])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists()
        before = _snapshot(out)
        with pytest.raises(SystemExit) as stop:
            main(["invariance", "--images", "0,3", *AMOUNTS, "--resume", "--out", str(out)])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("convlens: error: out: expected a folder that no other convlens")
        assert f"process {proc.pid}" in err
        assert len(err.strip().splitlines()) == 1
        assert _snapshot(out) == before
    finally:
        proc.kill()
        proc.wait()


def test_invariance_files_are_those_written(tmp_path: Path) -> None:
    out = tmp_path / "inv"
    run = run_invariance(
        "demo", "demo", out, images=[0, 1], amounts={"translate": [0, 1], "rotate": [0, 90]}
    )
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {p.relative_to(out).as_posix() for p in run.files} == on_disk - {
        MANIFEST,
        ".convlens-invariance",
    }
    assert written_files(out) == on_disk - {MANIFEST}


def test_cli_invariance_on_a_model_that_is_no_classifier(
    tmp_path: Path, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "inv"
    for extra in ((), ("--images", "1,2")):
        with pytest.raises(SystemExit) as stop:
            main(
                ["invariance", "--model", "test_analysis_folders:conv_only", "--data",
                 str(images), "--layers", "0,1", *extra, *AMOUNTS, "--out", str(out)]
            )  # fmt: skip
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("convlens: error: --model: expected a classifier")
        assert "(1, 3, 8, 8)" in err
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
        assert not out.exists()


def test_cli_invariance_names_an_unknown_layer_as_the_option(
    tmp_path: Path, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "inv"
    with pytest.raises(SystemExit) as stop:
        main(
            ["invariance", "--model", "test_analysis_folders:conv_only", "--data", str(images),
             "--layers", "0,nope", *AMOUNTS, "--out", str(out)]
        )  # fmt: skip
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("convlens: error: --layers: expected a module path of the model")
    assert err.strip().endswith("received 'nope'")
    assert not out.exists()


def test_invariance_skips_and_lists_an_unreadable_image(
    tmp_path: Path, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "inv"
    main(
        ["invariance", "--model", "test_analysis_folders:classifier", "--data", str(images),
         "--layers", "0,1", "--true-class", "dataset", *AMOUNTS, "--out", str(out),
         "--no-progress"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "skipped 1 unreadable image: a/0.png" in printed
    doc = json.loads((out / "invariance.json").read_text())
    assert [f["path"] for f in doc["meta"]["skipped"]] == ["a/0.png"]
    # reference: per class, the first image the model classifies correctly, else the first
    # image that can be read (a plain loop over the files)
    net = classifier().model
    files = sorted(p.relative_to(images).as_posix() for p in images.rglob("*.png"))
    expected = []
    for label, name in enumerate(("a", "b")):
        readable = []
        for index, rel in enumerate(files):
            if not rel.startswith(f"{name}/"):
                continue
            try:
                x = _preprocess(Image.open(images / rel))
            except Exception:
                continue
            readable.append((index, int(net(x.unsqueeze(0)).argmax(1)) == label))
        expected.append(next((i for i, ok in readable if ok), readable[0][0]))
    assert doc["images"] == expected
    assert doc["labels"] == [0, 1]
    # asked for by index, an unreadable image is refused, naming it
    with pytest.raises(SystemExit) as stop:
        main(
            ["invariance", "--model", "test_analysis_folders:classifier", "--data", str(images),
             "--layers", "0,1", "--images", "0,5", *AMOUNTS, "--out", str(tmp_path / "x")]
        )  # fmt: skip
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("convlens: error: --images: expected images that can be read")
    assert "#0 a/0.png" in err
    assert not (tmp_path / "x").exists()


def test_invariance_on_a_folder_of_no_readable_image_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk" / "a"
    junk.mkdir(parents=True)
    for i in range(2):
        (junk / f"{i}.png").write_bytes(b"no image")
    with pytest.raises(SystemExit) as stop:
        main(
            ["invariance", "--model", "test_analysis_folders:classifier", "--data",
             str(junk.parent), "--layers", "0,1", "--out", str(tmp_path / "out")]
        )  # fmt: skip
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("convlens: error: --data: expected a dataset with readable images")
    assert "2 unreadable images: a/0.png" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
