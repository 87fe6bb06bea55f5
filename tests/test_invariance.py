"""Invariance (Zeiler & Fergus Fig. 5): distances, probabilities, transforms.

References: a plain forward pass and ``torch.softmax`` (identity), ``torch.roll`` of the
feature map of a conv-only circular-padding model (translation equivariance), ``torch.rot90``
(rotation by multiples of 90°), direct norms (distances).
"""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from convlens.analysis.invariance import (
    IDENTITY,
    default_amounts,
    invariance,
    invariance_figure,
    layer_features,
    transform_images,
)
from convlens.cli import main
from convlens.errors import ParameterError


def _classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(3 * 6 * 6, 4),
    ).double()


def _equivariant() -> nn.Module:
    """Conv-only, stride 1, circular padding: translation-equivariant on the torus."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular"),
        nn.ReLU(),
        nn.Conv2d(2, 3, 5, padding=2, padding_mode="circular"),
        nn.ReLU(),
        nn.Flatten(),
    ).double()


def test_identity_gives_zero_distance_and_the_unmodified_probability() -> None:
    net = _classifier()
    x = torch.rand(3, 1, 12, 12, dtype=torch.float64)
    labels = torch.tensor([0, 3, 1])
    amounts = {"translate": [0, 3], "scale": [0.8, 1.0], "rotate": [45, 0]}
    res = invariance(net, x, labels, ["1", "4"], amounts=amounts, batch_size=2)
    expected = torch.softmax(net(x), dim=1)[torch.arange(3), labels].detach()
    for kind, values in amounts.items():
        a = values.index(IDENTITY[kind])
        for layer in ("1", "4"):
            assert torch.equal(res.distance[kind][layer][a], torch.zeros(3, dtype=torch.float64))
            assert torch.equal(res.normalized[kind][layer][a], torch.zeros(3, dtype=torch.float64))
        torch.testing.assert_close(res.probability[kind][a], expected, rtol=0, atol=1e-12)
    # every other number against a direct computation
    feats = net[:2](x).flatten(1).detach()
    for a, t in enumerate(amounts["scale"]):
        moved = transform_images(x, "scale", t, 0.0)
        direct = (net[:2](moved).flatten(1) - feats).norm(dim=1).detach()
        torch.testing.assert_close(res.distance["scale"]["1"][a], direct)
        torch.testing.assert_close(res.normalized["scale"]["1"][a], direct / feats.norm(dim=1))
        prob = torch.softmax(net(moved), 1)[torch.arange(3), labels].detach()
        torch.testing.assert_close(res.probability["scale"][a], prob)


@given(shift=st.integers(-3, 3), size=st.integers(10, 14), seed=st.integers(0, 2**16))
def test_translation_shifts_the_feature_map_of_an_equivariant_model_exactly(
    shift: int, size: int, seed: int
) -> None:
    net = _equivariant()
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros(2, 1, size, size, dtype=torch.float64)
    x[:, :, 3 : size - 3, 1 : size - 1] = torch.rand(2, 1, size - 6, size - 2, generator=gen)
    moved = transform_images(x, "translate", shift, fill=0.0)
    assert torch.equal(moved, torch.roll(x, shift, dims=2))  # zero border: a shift is a roll
    feats, _ = layer_features(net, torch.cat([x, moved]), ["3"])
    fmap = feats["3"].view(4, 3, size, size)
    torch.testing.assert_close(fmap[2:], torch.roll(fmap[:2], shift, dims=2), rtol=0, atol=1e-12)


def test_invariance_distance_of_the_equivariant_model_is_that_of_the_rolled_map() -> None:
    net, size = _equivariant(), 12
    x = torch.zeros(2, 1, size, size, dtype=torch.float64)
    x[:, :, 3:9, 2:10] = torch.rand(2, 1, 6, 8, generator=torch.Generator().manual_seed(3))
    res = invariance(
        nn.Sequential(net, nn.Linear(3 * size * size, 2).double()),
        x,
        [0, 1],
        ["0.3"],
        amounts={"translate": [-3, 2]},
    )
    fmap = net[:4](x)
    for a, shift in enumerate((-3, 2)):
        direct = (torch.roll(fmap, shift, dims=2) - fmap).flatten(1).norm(dim=1).detach()
        torch.testing.assert_close(
            res.distance["translate"]["0.3"][a], direct, rtol=1e-9, atol=1e-9
        )


def test_translation_fill_and_rotation_by_quarter_turns() -> None:
    x = torch.arange(2 * 25, dtype=torch.float32).view(2, 1, 5, 5)
    up = transform_images(x, "translate", -2, fill=-7.0)
    assert torch.equal(up[:, :, :3], x[:, :, 2:])
    assert (up[:, :, 3:] == -7.0).all()
    for angle, k in ((90, 1), (180, 2), (270, 3)):
        turned = transform_images(x, "rotate", angle, fill=0.0)  # counter-clockwise
        torch.testing.assert_close(turned, torch.rot90(x, k, dims=(2, 3)), rtol=0, atol=1e-3)
    big = transform_images(torch.ones(1, 1, 8, 8), "scale", 0.5, fill=0.0)
    assert big[0, 0, 4, 4] == 1.0
    assert big[0, 0, 0, 0] == 0.0
    with pytest.raises(ParameterError, match="whole pixels"):
        transform_images(x, "translate", 0.5)
    with pytest.raises(ParameterError, match="positive"):
        transform_images(x, "scale", 0.0)
    with pytest.raises(ParameterError, match="transform"):
        transform_images(x, "shear", 1.0)
    assert default_amounts((28, 28))["translate"] == [float(t) for t in range(-7, 8)]


def test_rows_csv_json_and_figure() -> None:
    net = _classifier()
    x = torch.rand(2, 1, 12, 12, dtype=torch.float64)
    res = invariance(
        net,
        x,
        [1, 2],
        ["1", "4"],
        amounts={"rotate": [0, 90], "scale": [1, 2]},
        image_ids=[10, 20],
        class_names=["a", "b", "c", "d"],
    )
    rows = list(csv.DictReader(io.StringIO(res.csv_text())))
    assert len(rows) == 2 * 2 * 2
    assert rows[0]["transform"] == "rotate"
    assert rows[0]["image"] == "10"
    assert float(rows[1]["probability"]) == pytest.approx(float(res.probability["rotate"][0, 1]))
    doc = json.loads(json.dumps(res.summary()))
    assert doc["transforms"]["scale"]["amounts"] == [1.0, 2.0]
    assert doc["fill"] == [0.0]
    fig = invariance_figure(res)
    assert len(fig.axes) == 3 * 2  # (two layers + probability) x two transforms
    assert [ln.get_label() for ln in fig.axes[-1].get_lines()] == ["#10 (b)", "#20 (c)"]
    with pytest.raises(ParameterError, match="labels"):
        invariance(net, x, [0, 9], ["1"])


def test_cli_invariance_on_the_demo(tmp_path, capsys) -> None:
    out = tmp_path / "inv"
    main(
        [
            "invariance",
            "--images",
            "0,3",
            "--translate",
            "-2,0,2",
            "--scale",
            "1,1.5",
            "--rotate",
            "0,180",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    printed = capsys.readouterr().out
    assert "translate (3 amounts)" in printed
    assert "rotate (2 amounts)" in printed
    doc = json.loads((out / "invariance.json").read_text())
    assert doc["layers"] == ["features.1", "classifier.3"]
    assert doc["meta"]["true_class"] == "dataset"
    assert doc["fill"] == [pytest.approx((0 - 0.2860) / 0.3530, abs=1e-6)]  # a black pixel
    for kind, a in (("translate", 1), ("scale", 0), ("rotate", 0)):
        assert doc["transforms"][kind]["distance"]["classifier.3"][a] == [0.0, 0.0]
    for name in ("invariance.png", "invariance_normalized.png", "invariance.csv"):
        assert (out / name).stat().st_size > 0
    with pytest.raises(SystemExit) as exit_info:
        main(["invariance", "--fill", "grey", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "--fill" in err
    assert len(err.strip().splitlines()) == 1
