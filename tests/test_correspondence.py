"""Correspondence (Zeiler & Fergus §4.3, Table 1): Δ_l = Σ_{i≠j} H(sign ε_i, sign ε_j).

References: a direct double loop over pairs and positions (the formula), a toy model whose
features react only to a part (Δ = 0 exactly when the part is occluded everywhere), the
occluded pixels read back from the images.
"""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from convlens.analysis.correspondence import (
    DEMO_PARTS,
    Box,
    Part,
    correspondence,
    correspondence_figure,
    correspondence_table,
    demo_parts,
    read_parts,
    sign_change,
)
from convlens.cli import main
from convlens.errors import ParameterError


def _direct(signs: list[list[int]], normalize: bool, zero: str) -> float:
    total = 0.0
    for i, a in enumerate(signs):
        for j, b in enumerate(signs):
            if i == j:
                continue
            pairs = [(u, v) for u, v in zip(a, b) if zero == "value" or (u != 0 and v != 0)]
            h = sum(1 for u, v in pairs if u != v)
            if normalize:
                total += h / len(pairs) if pairs else 0.0
            else:
                total += h
    return total


@given(
    signs=st.integers(2, 6).flatmap(
        lambda n: st.integers(1, 12).flatmap(
            lambda d: st.lists(
                st.lists(st.sampled_from([-1, 0, 1]), min_size=d, max_size=d),
                min_size=n,
                max_size=n,
            )
        )
    ),
    normalize=st.booleans(),
    zero=st.sampled_from(["value", "drop"]),
)
def test_sign_change_is_the_double_loop(signs: list[list[int]], normalize: bool, zero: str) -> None:
    got = sign_change(torch.tensor(signs, dtype=torch.float64), normalize=normalize, zero=zero)
    assert got == pytest.approx(_direct(signs, normalize, zero), abs=1e-12)


def _part_detector() -> nn.Module:
    """Four channels that fire only on a 3×3 block of bright pixels (the part; background
    noise below 0.2 never reaches the thresholds), then a global max: position-free."""
    conv = nn.Conv2d(1, 4, 3)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.copy_(torch.tensor([-6.0, -5.0, -7.0, -4.0]))
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten()).double()


def _part_images(n: int = 6, size: int = 16, part: int = 5) -> tuple[list, list[Box]]:
    gen = torch.Generator().manual_seed(0)
    data, boxes = [], []
    for i in range(n):
        x = 0.2 * torch.rand(1, size, size, generator=gen, dtype=torch.float64)
        top, left = (int(v) for v in torch.randint(0, size - part + 1, (2,), generator=gen))
        x[:, top : top + part, left : left + part] = 1.0
        data.append((x, i))
        boxes.append(Box(top, left, part, part))
    return data, boxes


def test_occluding_the_part_everywhere_gives_zero_and_random_boxes_more() -> None:
    net = _part_detector()
    data, boxes = _part_images()
    part = Part("the block", tuple(range(len(data))), tuple(boxes))
    res = correspondence(net, data, [part], ["3"], repeats=6, seed=1, fill=0.0)
    assert res.delta["the block"]["3"] == 0.0
    assert res.raw["the block"]["3"] == 0.0
    control = torch.tensor(res.control["the block"]["3"])
    assert control.mean() > 0
    assert (control >= 0).all()
    # the same boxes drawn again (the seed is recorded) give the same control
    again = correspondence(net, data, [part], ["3"], repeats=6, seed=1, fill=0.0)
    assert again.control == res.control
    # every ε has a positive sign on every channel: the feature reacts to the part
    feats = net(torch.stack([x for x, _ in data]))
    assert (feats > 0).all()


def test_table_json_and_figure_of_the_demo_parts() -> None:
    import convlens

    sample = convlens.load_demo_sample()
    parts = demo_parts(sample.labels.tolist(), sample.class_names, per_part=3)
    assert [p.name.split(":")[0] for p in parts] == [cls for cls, _, _ in DEMO_PARTS]
    for p in parts:  # each part's images are of its class
        cls = p.name.split(":")[0]
        assert {sample.class_names[int(sample.labels[i])] for i in p.images} == {cls}
    res = correspondence(convlens.load_model("demo"), sample, parts[:2], ["features.7"], repeats=3)
    table = correspondence_table(res)
    lines = table.splitlines()
    assert "mean ± std over 3 repeats (seed 0)" in lines[0]
    assert lines[2].startswith("T-shirt/top: neckline")
    assert "±" in lines[3]
    doc = json.loads(json.dumps(res.summary()))
    assert doc["parts"][0]["boxes"] == [[0, 8, 6, 12]] * 3
    per_pair = doc["parts"][0]["delta_per_pair"]["features.7"]
    assert per_pair == pytest.approx(doc["parts"][0]["delta"]["features.7"] / 6)
    fig = correspondence_figure(res, sample)
    assert len(fig.axes) == 2 + 1  # two part pictures, one layer's bars


def test_boxes_from_csv_and_json_and_refusals(tmp_path) -> None:
    csv_file = tmp_path / "boxes.csv"
    csv_file.write_text(
        "image,top,left,height,width,part\n0,1,1,2,2,eye\n3,0,2,2,2,eye\n"
        "1,0,0,3,3,nose\n2,1,1,3,3,nose\n"
    )
    parts = read_parts(csv_file)
    assert [(p.name, p.images, p.size) for p in parts] == [
        ("eye", (0, 3), (2, 2)),
        ("nose", (1, 2), (3, 3)),
    ]
    json_file = tmp_path / "boxes.json"
    json_file.write_text(
        json.dumps(
            [{"image": "a.png", "box": [0, 0, 2, 2]}, {"image": "b.png", "box": [1, 1, 2, 2]}]
        )
    )
    parts = read_parts(json_file, resolve={"a.png": 4, "b.png": 7}.__getitem__)
    assert parts[0].images == (4, 7)
    assert parts[0].boxes[1] == Box(1, 1, 2, 2)
    with pytest.raises(ParameterError, match="one size"):
        Part("x", (0, 1), (Box(0, 0, 2, 2), Box(0, 0, 3, 3)))
    data, _ = _part_images(n=2, size=8)
    outside = Part("x", (0, 1), (Box(6, 6, 3, 3), Box(0, 0, 3, 3)))
    with pytest.raises(ParameterError, match="inside"):
        correspondence(_part_detector(), data, [outside], ["3"])
    with pytest.raises(ParameterError, match="zero"):
        correspondence(_part_detector(), data, [], ["3"], zero="ignore")


def test_cli_correspondence_on_the_demo(tmp_path, capsys) -> None:
    out = tmp_path / "corr"
    main(
        [
            "correspondence",
            "--layers",
            "classifier.3",
            "--repeats",
            "2",
            "--per-part",
            "3",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    printed = capsys.readouterr().out
    assert "Ankle boot: heel" in printed
    assert "random 9×9 box" in printed
    doc = json.loads((out / "correspondence.json").read_text())
    assert doc["seed"] == 0
    assert doc["zero"] == "value"
    assert len(doc["parts"]) == len(DEMO_PARTS)
    assert (out / "correspondence.txt").read_text().startswith("Mean feature sign change")
    with pytest.raises(SystemExit) as exit_info:
        main(["correspondence", "--layers", "classifier.3", "--out", str(out)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith("convlens: error: out:")
    assert len(err.strip().splitlines()) == 1
