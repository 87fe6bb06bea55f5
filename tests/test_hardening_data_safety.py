"""Issue 15, never silently wrong, never a user's file lost: ownership of output folders,
locks, seeded random weights, the dataset's class names, non-8-bit images, devices and dtypes.

References: file listings taken before and after each run; weights compared with
``torch.equal`` against a network built by hand under ``torch.manual_seed``; pixel values
against NumPy arithmetic on the array written to the file; labels against the folder names.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from convlens.cli import main
from convlens.errors import ConvLensError, ParameterError
from convlens.io import LOCK, MANIFEST, foreign_files, run_folder, written_files
from convlens.models import faithful_image, load_image, load_model, state_sha256
from convlens.scan.data import ImageFolderDataset
from convlens.scan.run import ScanResult, scan

FACTORIES = """
import torch, torch.nn as nn

def unseeded():  # draws its weights from the global generator: convlens seeds it
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 5, 3), nn.ReLU())
"""


def _listing(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else b"<dir>")
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "images"
    rng = np.random.default_rng(5)
    for i in range(8):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    factory = tmp_path / "factories"
    factory.mkdir()
    (factory / "hardening_factories.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(factory))
    return root


def _scan_cli(images: Path, out: Path, *extra: str) -> list[str]:
    return [
        "scan", "--model", "hardening_factories:unseeded", "--data", str(images),
        "--layers", "1,4", "--top", "2", "--out", str(out), "--batch-size", "3",
        "--no-project", "--no-progress", *extra,
    ]  # fmt: skip


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("convlens: error: ")
    return lines[0]


# ------------------------------------------------------------------------ report folders


def _report_cli(images: Path, out: Path, *extra: str) -> list[str]:
    return [
        "report", "--model", "hardening_factories:unseeded", "--data", str(images),
        "--out", str(out), "--layers", "1", "--channels", "0", "--top", "2",
        "--occlusion-images", "0", "--quiet", *extra,
    ]  # fmt: skip


def test_report_never_deletes_a_user_folder_named_out_scan(images, tmp_path, capsys):
    out = tmp_path / "report"
    mine = tmp_path / "report.scan"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    before = _listing(tmp_path / "report.scan")
    err = _fails(_report_cli(images, out), capsys)
    assert re.search(r"out: expected a free report\.scan beside the report .* thesis\.tex", err)
    assert _listing(mine) == before
    assert not out.exists()


def test_report_keeps_an_empty_out_scan_the_user_made(images, tmp_path):
    out = tmp_path / "report"
    (tmp_path / "report.scan").mkdir()
    main(_report_cli(images, out))
    assert (out / "index.html").is_file()
    # convlens wrote its scan there and removed exactly that; the folder is the user's
    assert (tmp_path / "report.scan").is_dir()
    assert list((tmp_path / "report.scan").iterdir()) == []


def test_report_removes_the_scan_folder_it_made(images, tmp_path):
    out = tmp_path / "report"
    main(_report_cli(images, out))
    assert not (tmp_path / "report.scan").exists()
    assert foreign_files(out) == []
    assert "index.html" in written_files(out)


def test_a_user_file_named_out_scan_is_one_line_and_kept(images, tmp_path, capsys):
    out = tmp_path / "report"
    (tmp_path / "report.scan").write_text("my notes")
    err = _fails(_report_cli(images, out), capsys)
    assert re.search(r"out: expected a folder, received the file '.*report\.scan'", err)
    assert (tmp_path / "report.scan").read_text() == "my notes"
    assert not out.exists()


def test_a_regenerated_report_keeps_a_file_the_user_put_in_it(images, tmp_path, capsys):
    out = tmp_path / "report"
    main(_report_cli(images, out))
    (out / "notes.txt").write_text("mine")
    before = _listing(out)
    err = _fails(_report_cli(images, out), capsys)
    assert "files convlens did not write (notes.txt)" in err
    assert _listing(out) == before
    (out / "notes.txt").unlink()
    main(_report_cli(images, out))  # its own report alone: replaced
    assert (out / "index.html").is_file()


def test_an_interrupted_report_scan_needs_resume(images, tmp_path, capsys, monkeypatch):
    from convlens.pipeline import top as pipeline_top

    out = tmp_path / "report"

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(pipeline_top, "project_in_chunks", crash)
        with pytest.raises(SystemExit) as stop:
            main(_report_cli(images, out))
        assert stop.value.code == 130
    work = tmp_path / "report.scan"
    assert (work / "scan.json").is_file()
    before = _listing(work)
    capsys.readouterr()
    err = _fails(_report_cli(images, out), capsys)
    assert "--resume continues that scan" in err
    assert _listing(work) == before
    main(_report_cli(images, out, "--resume"))
    assert (out / "index.html").is_file()
    assert not work.exists()


# -------------------------------------------------------------------------- scan folders


def test_scan_refuses_a_used_out_without_resume_or_overwrite(images, tmp_path, capsys):
    out = tmp_path / "run"
    main(_scan_cli(images, out))
    before = _listing(out)
    err = _fails(_scan_cli(images, out), capsys)
    assert re.search(r"out: expected a new or empty folder, received the folder .* with an "
                     r"earlier run .*--resume continues it; --overwrite starts over", err)  # fmt: skip
    assert _listing(out) == before


def test_overwrite_removes_only_the_earlier_runs_files(images, tmp_path):
    out = tmp_path / "run"
    with_grids = [a for a in _scan_cli(images, out) if a != "--no-project"]
    main([*with_grids, "--channels", "0"])
    assert (out / "grid_4.png").is_file()
    assert (out / "figures.json").is_file()
    one_layer = ["1" if a == "1,4" else a for a in _scan_cli(images, out, "--overwrite")]
    main(one_layer)
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert names == {"scan.json", "scan.safetensors", "checkpoint-0-of-1.safetensors", MANIFEST}
    assert ScanResult.load(out).meta["layers"] == ["1"]
    assert written_files(out) == names - {MANIFEST}


def test_scan_refuses_a_folder_with_files_of_the_user(images, tmp_path, capsys):
    out = tmp_path / "home"
    out.mkdir()
    (out / "photo.jpg").write_bytes(b"jpeg")
    for extra in ((), ("--overwrite",), ("--resume",)):
        err = _fails(_scan_cli(images, out, *extra), capsys)
        assert "with files convlens did not write: photo.jpg" in err
    assert sorted(p.name for p in out.iterdir()) == ["photo.jpg"]


def test_a_live_lock_refuses_and_a_stale_one_is_taken_over(images, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = {"pid": sleeper.pid, "host": socket.gethostname(), "started": "then"}
        (out / LOCK).write_text(json.dumps(lock))
        err = _fails(_scan_cli(images, out), capsys)
        assert f"locked by a run in process {sleeper.pid} on host {socket.gethostname()}" in err
        assert sorted(p.name for p in out.iterdir()) == [LOCK]
    finally:
        sleeper.kill()
        sleeper.wait()
    main(_scan_cli(images, out))  # its process is gone: a stale lock
    assert (out / "scan.json").is_file()
    assert not (out / LOCK).exists()


def test_two_scans_at_once_into_one_folder(images, tmp_path):
    """A second scan (another thread) while the first one runs is refused by the lock."""
    out = tmp_path / "run"
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU())
    data = ImageFolderDataset(images, lambda im: torch.zeros(3, 6, 6))
    inside, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        def wait(batch: int) -> None:
            inside.set()
            release.wait(30)

        try:
            scan(net, data, ["1"], top=2, batch_size=2, out=out, progress=False, on_batch=wait)
        except BaseException as exc:  # pragma: no cover (reported below)
            errors.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert inside.wait(30)
        with pytest.raises(ParameterError, match="a folder that no other convlens run is using"):
            scan(net, data, ["1"], top=2, batch_size=2, out=out, resume=True, progress=False)
    finally:
        release.set()
        thread.join(60)
    assert errors == []
    assert ScanResult.load(out).counts["scanned"] == 8


def test_a_refused_run_leaves_no_folder_and_no_lock(images, tmp_path):
    out = tmp_path / "new"
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU())
    data = ImageFolderDataset(images, lambda im: torch.zeros(3, 6, 6))
    with pytest.raises(ParameterError), run_folder(out):
        raise ParameterError("x", "y", "z")
    assert not out.exists()
    with pytest.raises(ParameterError, match="channels"):
        scan(net, data, ["1"], out=out, progress=False,
             validate=lambda counts: (_ for _ in ()).throw(ParameterError("channels", "a", 1)))  # fmt: skip
    assert not out.exists()


# -------------------------------------------------------------------------- random weights


def test_random_weights_are_seeded_recorded_and_leave_the_global_generator(tmp_path):
    import torchvision.models as tvm

    state = torch.get_rng_state()
    with pytest.warns(UserWarning, match=r"RANDOM weights .*seed 0"):
        a = load_model("squeezenet1_0", allow_random=True)
    with pytest.warns(UserWarning, match=r"RANDOM weights .*seed 0"):
        b = load_model("squeezenet1_0", allow_random=True, seed=0)
    with pytest.warns(UserWarning, match=r"RANDOM weights .*seed 1"):
        c = load_model("squeezenet1_0", allow_random=True, seed=1)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is untouched
    torch.manual_seed(0)
    by_hand = tvm.get_model("squeezenet1_0", weights=None)  # the independent reference
    for (name, p), q, r in zip(a.model.state_dict().items(), b.model.state_dict().values(),
                               by_hand.state_dict().values()):  # fmt: skip
        assert torch.equal(p, q), name
        assert torch.equal(p, r), name
    assert state_sha256(a.model) == state_sha256(b.model) != state_sha256(c.model)
    assert (a.seed, c.seed) == (0, 1)
    assert "seed 0" in a.source


def test_resume_with_another_seed_is_refused_naming_it(images, tmp_path, capsys):
    out = tmp_path / "run"
    main(_scan_cli(images, out, "--checkpoint-every", "3"))
    first = ScanResult.load(out)
    assert first.meta["model"]["seed"] == 0
    err = _fails(_scan_cli(images, out, "--resume", "--seed", "1"), capsys)
    assert re.search(r"resume: expected the settings of the interrupted scan, received "
                     r"different seed \(checkpoint 0, now 1\); state_sha256 \(checkpoint", err)  # fmt: skip
    main(_scan_cli(images, out, "--resume"))  # the same seed: the same network
    again = ScanResult.load(out)
    assert torch.equal(again.layers["4"].values, first.layers["4"].values)


RANKED = """
import os, torch, torch.nn as nn

def per_rank():  # every process builds other weights: the scan must refuse
    torch.manual_seed(int(os.environ.get("RANK", "0")))
    return nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU())
"""


def test_torchrun_ranks_with_different_weights_are_refused(images, tmp_path):
    factory = tmp_path / "ranked"
    factory.mkdir()
    (factory / "ranked_factory.py").write_text(RANKED)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(factory), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
         "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "convlens", "scan",
         "--model", "ranked_factory:per_rank", "--data", str(images), "--layers", "1",
         "--out", str(out), "--no-project", "--no-progress"],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode != 0
    assert "model: expected the same weights in every process of the torchrun job" in done.stderr
    assert not (out / "scan.json").exists()


# ---------------------------------------------------------------------- dataset class names


def test_a_folder_report_names_its_classes_from_the_folders(tmp_path):
    from test_report_render import parse

    root = tmp_path / "data"
    rng = np.random.default_rng(2)
    for c in ("apple", "pear"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(
                root / c / f"{i}.png"
            )
    out = tmp_path / "report"
    main(["report", "--data", str(root), "--out", str(out), "--layers", "features.0",
          "--channels", "0", "--top", "3", "--occlusion-images", "1", "--quiet"])  # fmt: skip
    titles = " ".join(parse(out / "layer-01.html").attrs("img", "title"))
    labels = set(re.findall(r"label: (\w[\w-]*)", titles))
    assert labels
    assert labels <= {"apple", "pear"}
    from convlens.demo import FASHION_CLASSES

    assert not any(f"label: {name}" in titles for name in FASHION_CLASSES)
    text = " ".join(" ".join(parse(out / "index.html").text).split())
    assert "class names the dataset's: apple, pear (the model's differ: T-shirt/top," in text
    assert "Accuracy" not in text  # the folders are not the model's classes
    occlusion = " ".join(" ".join(parse(out / "occlusion.html").text).split())
    assert "the dataset's classes are not the model's" in occlusion
    shown = re.findall(r"label: (\S+)", occlusion)
    assert shown
    assert set(shown) <= {"apple", "pear"}  # each image's own label, not a predicted class


# ----------------------------------------------------------------------- non-8-bit images


def _raw(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float64).copy())


@pytest.mark.parametrize("kind", ["png16", "tiff16", "tiff_float", "tiff_int32", "pgm16"])
def test_images_of_more_than_8_bits_are_scaled_not_clipped(tmp_path, kind):
    rng = np.random.default_rng(3)
    if kind == "tiff_float":
        array = rng.random((9, 7)).astype(np.float32)
        scale, path = 1.0, tmp_path / "x.tif"
    elif kind == "tiff_int32":
        array = rng.integers(0, 2**31 - 1, (9, 7)).astype(np.int32)
        scale, path = 2.0**32 - 1, tmp_path / "x.tif"
    else:
        array = rng.integers(0, 65536, (9, 7)).astype(np.uint16)
        suffix = {"png16": ".png", "tiff16": ".tif", "pgm16": ".pgm"}[kind]
        scale, path = 65535.0, tmp_path / f"x{suffix}"
    Image.fromarray(array).save(path)
    expected = np.round(array.astype(np.float64) / scale * 255.0)
    if kind == "tiff_int32":  # a 32-bit integer file: bits from its BitsPerSample tag
        assert Image.open(path).tag_v2.get(258) in (32, (32,))
    seen = load_image(path, _raw)
    np.testing.assert_array_equal(seen.numpy(), expected)
    assert seen.max() > 0
    assert seen.max() < 256
    # the old way clipped everything above 255 to white
    if kind in ("png16", "tiff16"):
        assert float((_raw(Image.open(path).convert("L")) == 255).double().mean()) > 0.9
    # the same rule on every path a dataset takes
    (tmp_path / "folder").mkdir()
    path.rename(tmp_path / "folder" / path.name)
    item = ImageFolderDataset(tmp_path / "folder", _raw)[0][0]
    np.testing.assert_array_equal(item.numpy(), expected)


def test_eight_bit_images_pass_unchanged_and_bad_floats_are_refused(tmp_path):
    rgb = np.random.default_rng(4).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    image = Image.fromarray(rgb)
    same, note = faithful_image(image)
    assert same is image
    assert note is None
    floats = np.array([[0.0, 2.0]], dtype=np.float32)
    with pytest.raises(ParameterError, match=r"image: expected F pixel values within the range"):
        faithful_image(Image.fromarray(floats))


def test_project_records_the_bit_depth_of_each_image(tmp_path, monkeypatch):
    from convlens.pipeline import project_images

    sixteen = tmp_path / "deep.png"
    Image.fromarray((np.arange(28 * 28).reshape(28, 28) * 80).astype(np.uint16)).save(sixteen)
    eight = tmp_path / "flat.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(eight)
    run = project_images([sixteen, eight], "demo", layer="features.0", channels=[0],
                         out=tmp_path / "out")  # fmt: skip
    assert run.records[0]["image_depth"] == "16-bit greyscale (I;16) scaled to 8 bits"
    assert "image_depth" not in run.records[1]
    meta = json.loads((tmp_path / "out" / "projections.json").read_text())
    assert "16-bit (I;16) x·255/65535" in meta["image_depth"]


# ------------------------------------------------------------------- devices and dtypes


def test_meta_device_models_are_refused_at_the_door(tmp_path):
    net = nn.Sequential(nn.Conv2d(1, 2, 3, device="meta"), nn.ReLU())
    data = [(torch.randn(1, 6, 6), 0)] * 3
    with pytest.raises(ParameterError, match=r"model: expected a model whose weights hold values"):
        scan(net, data, ["1"], out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_model_and_inputs_on_other_devices_or_dtypes_are_one_error(tmp_path):
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    data = [(torch.randn(1, 6, 6), 0)] * 3
    with pytest.raises(ParameterError, match=r"device: expected "):
        scan(net, data, ["1"], device="meta", progress=False)
    if torch.cuda.is_available():  # weights on the CPU, scan asked on the GPU
        with pytest.raises(ParameterError, match=r"device: expected the device of the model's"):
            scan(net, data, ["1"], device="cuda", out=tmp_path / "gpu", progress=False)
    else:
        with pytest.raises(ParameterError, match=r"device: expected a device this machine has"):
            scan(net, data, ["1"], device="cuda", out=tmp_path / "gpu", progress=False)
    assert not (tmp_path / "gpu").exists()
    double = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()).double()
    with pytest.raises(
        ParameterError,
        match=r"dataset: expected inputs of the model's dtype \(torch.float64\), received "
        r"torch.float32 inputs",
    ):
        scan(double, data, ["1"], out=tmp_path / "f64", progress=False)
    assert not (tmp_path / "f64").exists()
    with pytest.raises(ConvLensError):
        scan(double, data, ["1"], device="cuda:99", progress=False)


def test_the_scan_cli_checks_the_device_before_anything(tmp_path, capsys):
    err = _fails(["scan", "--data", "demo", "--layers", "features.0", "--out",
                  str(tmp_path / "out"), "--device", "cuda:99"], capsys)  # fmt: skip
    assert "device: expected a device this machine has" in err
    assert not (tmp_path / "out").exists()
