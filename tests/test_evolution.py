"""Feature evolution (Zeiler & Fergus Fig. 4): checkpoints, one scan each, projections.

References: a brute-force top-1 over the dataset (a plain forward per image with a hook),
:func:`convlens.project` at full size cut to the receptive-field box, ``torch.equal`` of the
shipped weights file.
"""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import convlens
from convlens.analysis.evolution import (
    Checkpoint,
    checkpoint_files,
    choose_channels,
    demo_checkpoints,
    evolution_figure,
    read_checkpoints,
)
from convlens.analysis.outputs import RunFolder
from convlens.cli import main
from convlens.demo import WEIGHTS_PATH
from convlens.demo.train import CHECKPOINT_EPOCHS
from convlens.errors import ParameterError
from convlens.io import MANIFEST, foreign_files, written_files
from convlens.pipeline.evolution import feature_evolution


def _toy() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 5, 3), nn.ReLU()
    )


def _data(n: int = 12, size: int = 10) -> list[tuple[torch.Tensor, int]]:
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(1, size, size, generator=gen), i % 3) for i in range(n)]


def _brute_top1(model: nn.Module, data, layer: str, channel: int) -> tuple[int, float]:
    """Index and value of the image with the largest activation of ``channel`` at ``layer``
    (one plain forward of the whole dataset; ties to the lowest index)."""
    seen = {}
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, a, out: seen.__setitem__("y", out.clone()))
    try:
        with torch.no_grad():
            model(torch.stack([x for x, _ in data]))
    finally:
        handle.remove()
    peaks = seen["y"][:, channel].flatten(1).max(1).values
    index = int(torch.nonzero(peaks == peaks.max())[0])
    return index, float(peaks[index])


def _cut(full: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """``full`` (C, H, W) on the (possibly partly outside) box, zero outside the image."""
    (r0, r1), (c0, c1) = box.tolist()
    pad = max(0, -r0, -c0, r1 - full.shape[1], c1 - full.shape[2])
    padded = torch.nn.functional.pad(full, (pad, pad, pad, pad))
    return padded[:, r0 + pad : r1 + pad, c0 + pad : c1 + pad]


def test_two_identical_checkpoint_files_give_identical_columns(tmp_path) -> None:
    net = _toy()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    save_file(state, str(tmp_path / "a.safetensors"))
    torch.save(state, tmp_path / "b.pt")
    ckpts = read_checkpoints([tmp_path / "a.safetensors", tmp_path / "b.pt"])
    assert [c.label for c in ckpts] == ["a", "b"]
    data = _data()
    evo = feature_evolution(_toy(), ckpts, data, {"1": [0, 2, 3], "4": None}, per_layer=2)
    for name, layer in evo.layers.items():
        assert torch.equal(layer.projections[0], layer.projections[1]), name
        assert torch.equal(layer.patches[0], layer.patches[1]), name
        assert torch.equal(layer.indices[0], layer.indices[1]), name
        assert not layer.changed.any()
        for r, c in enumerate(layer.channels):  # the top-1 is the brute-force argmax
            index, value = _brute_top1(net, data, name, c)
            assert int(layer.indices[0, r]) == index
            assert float(layer.values[0, r]) == pytest.approx(value, rel=1e-6)
    assert evo.layers["4"].channels == choose_channels({"4": 5}, 2, 0)["4"]


def test_changed_marks_a_new_argmax_and_the_figure_draws_every_cell(tmp_path) -> None:
    net, data = _toy(), _data()
    other = {k: -v for k, v in net.state_dict().items()}  # other weights, other argmax
    ckpts = [
        Checkpoint.from_state("one", net.state_dict()),
        Checkpoint.from_state("two", other),
        Checkpoint.from_state("three", other),
    ]
    evo = feature_evolution(net, ckpts, data, {"1": [0, 1, 2, 3]})
    ly = evo.layers["1"]
    expected = torch.zeros_like(ly.changed)
    expected[1:] = ly.indices[1:] != ly.indices[:-1]
    assert torch.equal(ly.changed, expected)
    assert ly.changed[1].any()
    assert not ly.changed[2].any()
    for k, state in enumerate([net.state_dict(), other, other]):
        model = _toy()
        model.load_state_dict(state)
        for r, c in enumerate(ly.channels):
            assert int(ly.indices[k, r]) == _brute_top1(model, data, "1", c)[0]
    fig = evolution_figure(evo, tile=20)
    captions = [t.get_text() for t in fig.axes[0].texts if t.get_text().startswith("#")]
    assert captions == [f"#{int(ly.indices[k, r])}" for r in range(4) for k in range(3)]
    canvas = torch.as_tensor(fig.axes[0].images[0].get_array())
    red = (canvas - torch.tensor([0.84, 0.15, 0.16], dtype=canvas.dtype)).abs().sum(-1) < 1e-9
    assert int(red.sum()) == int(ly.changed.sum()) * ((20 + 2 * 3) ** 2 - 20**2)  # 3-px frames


def test_demo_checkpoints_last_is_the_shipped_file_and_projects_like_project() -> None:
    ckpts = demo_checkpoints()
    assert [c.label for c in ckpts] == [f"epoch {e}" for e in CHECKPOINT_EPOCHS]
    shipped = load_file(str(WEIGHTS_PATH))
    assert ckpts[-1].state.keys() == shipped.keys()
    assert all(torch.equal(ckpts[-1].state[k], shipped[k]) for k in shipped)
    assert all(v.dtype == torch.float32 for c in ckpts for v in c.state.values())
    assert len({c.sha256 for c in ckpts}) == len(ckpts)  # five different sets of weights
    sample = convlens.load_demo_sample()
    data = [sample[i] for i in range(0, len(sample), 16)]  # 125 images
    loaded = convlens.load_model("demo")
    evo = feature_evolution(loaded, ckpts, data, {"features.3": [0, 5], "features.6": [7]})
    final = convlens.load_model("demo").model
    for name, ly in evo.layers.items():
        for r, c in enumerate(ly.channels):
            index, value = _brute_top1(final, data, name, c)
            assert int(ly.indices[-1, r]) == index
            pos = tuple(int(p) for p in ly.positions[-1, r])
            ref = convlens.project(
                final, data[index][0].unsqueeze(0), [convlens.Target(name, c, pos)]
            )
            assert float(ref.values[0, 0]) == pytest.approx(value, rel=1e-6)
            expected = _cut(ref.projections[0, 0], ly.boxes[-1, r])
            torch.testing.assert_close(ly.projections[-1, r], expected, rtol=1e-5, atol=1e-6)


def test_checkpoint_folders_in_natural_order_and_unsafe_files_refused(tmp_path) -> None:
    net = _toy()
    for name in ("epoch_10.pt", "epoch_2.pt", "epoch_1.safetensors"):
        if name.endswith(".pt"):
            torch.save(net.state_dict(), tmp_path / name)
        else:
            save_file(dict(net.state_dict()), str(tmp_path / name))
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    assert [p.name for p in checkpoint_files([tmp_path])] == [
        "epoch_1.safetensors",
        "epoch_2.pt",
        "epoch_10.pt",
    ]
    pickled = tmp_path / "model.pt"
    with open(pickled, "wb") as f:
        pickle.dump({"weight": torch.zeros(1), "evil": object}, f)
    with pytest.raises(ParameterError):
        read_checkpoints([pickled])
    with pytest.raises(ParameterError, match="checkpoints"):
        checkpoint_files([tmp_path / "missing"])
    wrong = Checkpoint.from_state("wrong", {"0.weight": torch.zeros(1)})
    with pytest.raises(ParameterError, match="weights"):
        feature_evolution(net, [wrong], _data(), ["1"])


def test_run_folder_resume_overwrite_and_foreign_files(tmp_path) -> None:
    net, data = _toy(), _data()
    ckpts = [Checkpoint.from_state("a", net.state_dict())]
    out = tmp_path / "run"
    first = feature_evolution(net, ckpts, data, {"1": [0, 1]}, out=out)
    assert foreign_files(out) == []  # the nested scan's files are listed as convlens's too
    assert "scans/00-a/scan.json" in written_files(out)
    with pytest.raises(ParameterError, match="--resume"), RunFolder.claim(out, "evolution"):
        pass
    again = feature_evolution(net, ckpts, data, {"1": [0, 1]}, out=out, resume=True)
    assert torch.equal(first.layers["1"].projections, again.layers["1"].projections)
    summary = json.loads((out / "evolution.json").read_text())
    assert summary["layers"]["1"]["channels"] == [0, 1]
    # a file of the user's in the folder: neither resumed nor overwritten, nothing deleted
    (out / "mine.txt").write_text("the user's")
    for flags in ({"resume": True}, {"overwrite": True}):
        with (
            pytest.raises(ParameterError, match="convlens never deletes"),
            RunFolder.claim(out, "evolution", **flags),
        ):
            pass
        assert (out / "evolution.json").is_file()
    assert (out / "mine.txt").read_text() == "the user's"
    (out / "mine.txt").unlink()
    with RunFolder.claim(out, "evolution", overwrite=True) as run:
        assert not (out / "evolution.json").exists()
        assert not (out / "scans/00-a/scan.json").exists()
        assert run.written() == []
    assert [p.name for p in out.rglob("*")] == [MANIFEST]  # its files and folders removed
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x").write_text("x")
    with pytest.raises(ParameterError, match="convlens never deletes"):
        feature_evolution(net, ckpts, data, ["1"], out=foreign)
    assert [p.name for p in foreign.iterdir()] == ["x"]


def test_cli_evolution_two_identical_files_and_one_line_errors(tmp_path, capsys) -> None:
    out = tmp_path / "evo"
    args = [
        "evolution",
        "--checkpoints",
        str(WEIGHTS_PATH),
        "--checkpoints",
        str(WEIGHTS_PATH),
        "--layers",
        "features.0",
        "--channels",
        "features.3=1,4",
        "--every",
        "40",
        "--out",
        str(out),
        "--no-progress",
    ]
    main(args)
    printed = capsys.readouterr().out
    assert "features.3: top-1 image changes over 2 checkpoints: ch 1: 0, ch 4: 0" in printed
    doc = json.loads((out / "evolution.json").read_text())
    assert doc["meta"]["seed"] == 0
    assert doc["layers"]["features.0"]["changes_per_channel"] == [0] * 6
    assert (out / "evolution.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith("convlens: error: out:")
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["evolution", "--layers", "features.99", "--out", str(tmp_path / "x")])
    assert capsys.readouterr().err.startswith("convlens: error:")


def test_saving_checkpoints_leaves_the_final_weights_bit_identical_and_packs_exactly(
    tmp_path,
) -> None:
    from convlens.demo.train import (
        pack_checkpoints,
        read_packed_checkpoints,
        save_weights,
        train_demo,
    )

    kwargs = {"epochs": 2, "limit": 128, "eval_limit": 32, "progress": False}
    plain, _ = train_demo(**kwargs)
    saved, _ = train_demo(**kwargs, save_epochs=(0, 1, 2), save_dir=tmp_path / "ckpts")
    assert all(torch.equal(v, saved.state_dict()[k]) for k, v in plain.state_dict().items())
    final = tmp_path / "final.safetensors"
    save_weights(saved, final)
    packed = tmp_path / "packed.safetensors"
    info = pack_checkpoints(tmp_path / "ckpts", packed, final=final, evaluate_initial=False)
    assert info["epochs"] == [0, 1]
    assert info["final_epoch"] == 2
    assert info["dtype"] == "float16"
    read = read_packed_checkpoints(packed, final=final)
    assert [epoch for epoch, *_ in read] == [0, 1, 2]
    for epoch, state, _, _ in read[:-1]:
        orig = load_file(str(tmp_path / "ckpts" / f"epoch_{epoch:03d}.safetensors"))
        assert all(torch.equal(state[k], orig[k].half().float()) for k in orig)
    assert all(torch.equal(read[-1][1][k], v) for k, v in saved.state_dict().items())
    with pytest.raises(ParameterError, match="bit-identical"):
        pack_checkpoints(tmp_path / "ckpts", tmp_path / "x.safetensors", final=WEIGHTS_PATH)
    with pytest.raises(ParameterError, match="save_epochs"):
        train_demo(**kwargs, save_epochs=(3,), save_dir=tmp_path)
