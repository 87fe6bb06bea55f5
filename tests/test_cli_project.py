"""``convlens project``: files written, their pixels recomputed from the library's projection
with the documented stretch, the metadata, and every bad input as one error line with nothing
written to the output folder."""

from __future__ import annotations

import json
import pickle
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from convlens.cli import main
from convlens.deconvnet import Target, project
from convlens.io import MANIFEST, written_files
from convlens.models import load_image, load_model

FACTORY = textwrap.dedent(
    """
    import torch, torch.nn as nn
    from convlens.models import LoadedModel, default_preprocess

    def chain():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(4, 6, 3), nn.ReLU())

    def small():
        return LoadedModel(chain(), "small", default_preprocess(36, 32), (32, 32), None, None,
                           "test factory")

    def tanh():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Conv2d(4, 2, 1))
        return LoadedModel(net, "tanh", default_preprocess(36, 32), (32, 32), None, None, "t")
    """
)


@pytest.fixture
def env(tmp_path, monkeypatch):
    (tmp_path / "cli_project_factory.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (45, 45), np.uint8)).save(tmp_path / "b.jpg")
    yield tmp_path
    sys.modules.pop("cli_project_factory", None)


def run(argv, capsys):
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_writes_pngs_and_metadata(env, capsys):
    out_dir = env / "out"
    images = [env / "a.png", env / "b.jpg"]
    code, _out, err = run(
        [
            "project",
            *images,
            "--model",
            "cli_project_factory:small",
            "--layer",
            "3",
            "--channel",
            "1",
            "--channel",
            "5",
            "--rule",
            "guided",
            "--out",
            out_dir,
        ],
        capsys,
    )
    assert code == 0, err
    meta = json.loads((out_dir / "projections.json").read_text())
    assert meta["model"] == "small"
    assert meta["rule"] == "guided"
    assert meta["layer"] == "3"
    assert meta["engine"] == "explicit"
    assert meta["weights_sha256"] is None
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        [r["file"] for r in meta["projections"]] + ["projections.json", MANIFEST]
    )
    assert written_files(out_dir) == {r["file"] for r in meta["projections"]} | {"projections.json"}
    loaded = load_model("cli_project_factory:small")
    batch = torch.stack([load_image(p, loaded.preprocess) for p in images])
    ref = project(loaded.model, batch, [Target("3", 1), Target("3", 5)], rule="guided")
    assert ref.projections.abs().amax((2, 3, 4)).min() > 0
    records = iter(meta["projections"])
    for n in range(2):
        for t, channel in enumerate((1, 5)):
            record = next(records)
            assert record["channel"] == channel
            assert record["image"] == str(images[n])
            assert record["value"] == pytest.approx(float(ref.values[n, t]))
            assert record["position"] == ref.positions[n, t].tolist()
            x = ref.projections[n, t].double().numpy()
            expected = np.round((x / (2 * np.abs(x).max()) + 0.5) * 255).astype(np.uint8)
            assert expected.min() == 0 or expected.max() == 255  # stretched to its own peak
            pixels = np.asarray(Image.open(out_dir / record["file"]))
            assert np.array_equal(pixels, expected.transpose(1, 2, 0))


def test_signal_seed_one_is_what_runs_and_is_recorded(env, capsys):
    out_dir = env / "one"
    argv = ["project", env / "a.png", "--model", "cli_project_factory:small", "--layer", "3"]
    argv += ["--channel", "2", "--position", "1,1", "--signal-seed", "one", "--out", out_dir]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert out.startswith("engine: explicit: a plain nn.Sequential")
    meta = json.loads((out_dir / "projections.json").read_text())
    assert meta["signal_seed"] == "one"
    assert meta["engine_note"].startswith("explicit: a plain nn.Sequential")
    loaded = load_model("cli_project_factory:small")
    batch = load_image(env / "a.png", loaded.preprocess)[None]
    one = project(loaded.model, batch, Target("3", 2, (1, 1)), seed="one").projections[0, 0]
    value = project(loaded.model, batch, Target("3", 2, (1, 1))).projections[0, 0]
    assert not torch.allclose(one, value)  # a conv output: the seeds give other pictures
    x = one.double().numpy()
    expected = np.round((x / (2 * np.abs(x).max()) + 0.5) * 255).astype(np.uint8)
    pixels = np.asarray(Image.open(out_dir / meta["projections"][0]["file"]))
    assert np.array_equal(pixels, expected.transpose(1, 2, 0))
    code, _, err = run([*argv[:-3], "--signal-seed", "1", "--out", env / "bad"], capsys)
    assert code == 2
    assert "--signal-seed" in err
    assert not (env / "bad").exists()


def test_position_and_existing_out_folder(env, capsys):
    out_dir = env / "existing"
    out_dir.mkdir()
    code, _, err = run(
        [
            "project",
            env / "a.png",
            "--model",
            "cli_project_factory:small",
            "--layer",
            "0",
            "--channel",
            "2",
            "--position",
            "3,4",
            "--engine",
            "rules",
            "--out",
            out_dir,
        ],
        capsys,
    )
    assert code == 0, err
    meta = json.loads((out_dir / "projections.json").read_text())
    assert meta["projections"][0]["position"] == [3, 4]
    assert meta["engine"] == "rules"
    assert [p.name for p in out_dir.iterdir() if p.name.startswith(".")] == [MANIFEST]


def test_random_weights_warning_is_printed(env, capsys):
    code, _, err = run(
        [
            "project",
            env / "a.png",
            "--model",
            "squeezenet1_1",
            "--allow-random",
            "--layer",
            "features.0",
            "--channel",
            "0",
            "--out",
            env / "rnd",
        ],
        capsys,
    )
    assert code == 0
    assert "convlens: warning: squeezenet1_1 runs with RANDOM weights" in err
    assert json.loads((env / "rnd" / "projections.json").read_text())["random_weights"] is True


def bad_weights(env):
    state = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2)).state_dict()
    path = env / "short.pt"
    torch.save(state, path)
    return path


def pickled(env):
    path = env / "model.pt"
    torch.save(nn.Conv2d(1, 1, 1), path)
    return path


def arbitrary(env):
    path = env / "arbitrary.pkl"
    with open(path, "wb") as f:
        pickle.dump({"weights": np.zeros(3)}, f)
    return path


CASES = {
    "unknown layer": (
        ["--layer", "9"],
        r"layer: expected a module path of the model, one of: 0, 1, 2, 3, 4",
    ),
    "channel out of range": (
        ["--channel", "7"],
        r"channel: expected a channel of layer '4', which has 6 \(0..5\)",
    ),
    "undecodable image": (["IMAGE:broken.png"], r"image: expected a file Pillow can decode"),
    "weights mismatch": (["--weights", bad_weights], r"missing keys \[3.weight, 3.bias\]"),
    "pickled model": (["--weights", pickled], r"plain weights .*never unpickled"),
    "arbitrary pickle": (["--weights", arbitrary], r"plain weights .*never unpickled"),
    "unsupported module": (
        ["--model", "cli_project_factory:tanh", "--layer", "2", "--engine", "explicit"],
        r"module '1': expected one of .* for the explicit deconvnet, received Tanh",
    ),
    "bad position": (["--position", "a,b"], r"--position: expected 'max', 'map' or indices"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("out_exists", [False, True])
def test_bad_input_is_one_error_line_and_nothing_written(env, capsys, case, out_exists):
    changes, pattern = CASES[case]
    (env / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    options = {"--model": "cli_project_factory:small", "--layer": "4", "--channel": "1"}
    image = env / "a.png"
    extra = []
    for i in range(0, len(changes), 2):
        if changes[i].startswith("IMAGE:"):
            image = env / changes[i].split(":", 1)[1]
            continue
        value = changes[i + 1]
        value = value(env) if callable(value) else value
        if changes[i] in options:
            options[changes[i]] = value
        else:
            extra += [changes[i], value]
    out_dir = env / "out"
    if out_exists:
        out_dir.mkdir()
    argv = ["project", image, *[v for kv in options.items() for v in kv], *extra, "--out", out_dir]
    code, _out, err = run(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("convlens: error: ")
    assert __import__("re").search(pattern, lines[0]), lines[0]
    assert (list(out_dir.iterdir()) == []) if out_exists else not out_dir.exists()
    assert not [p for p in env.iterdir() if p.name.startswith(".convlens")]
