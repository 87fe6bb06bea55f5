"""The assemble layer: filters, patches, occlusion panels, accuracy and arguments.

References: numpy brute force (filter stretching, RMS, linear pixel maps), a hand-written
occlusion loop through the model, matplotlib's colour maps, and a plain accuracy loop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from matplotlib import colormaps
from torch import nn

from convlens.analysis.filters import conv_layers
from convlens.cli._options import parse_channels
from convlens.errors import ParameterError
from convlens.report.pictures import patch_pictures
from convlens.report.sections import (
    default_occlusion_geometry,
    describe_module,
    filter_section,
    occlusion_section,
)
from convlens.scan.accuracy import dataset_accuracy
from convlens.scan.data import SubsetView
from convlens.scan.data import spread_over_labels as occlusion_indices


def small_net(seed: int = 0, in_channels: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(in_channels, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 3),
    ).double()


def test_conv_layers_and_descriptions() -> None:
    net = small_net()
    assert conv_layers(net) == ["0", "3"]
    assert describe_module(net[0]) == "Conv2d 3→4, kernel 3×3, stride 1, padding 1"
    conv = nn.Conv2d(4, 8, (3, 5), stride=2, padding=(1, 2), dilation=2, groups=2)
    assert describe_module(conv) == (
        "Conv2d 4→8, kernel 3×5, stride 2, padding 1×2, dilation 2, groups 2"
    )


def test_filter_pictures_and_statistics_match_numpy() -> None:
    net = small_net()
    section = filter_section(net)
    assert section is not None
    assert section.layer == "0"
    weight = net[0].weight.detach().numpy()
    assert len(section.filters) == weight.shape[0]
    for picture, w in zip(section.filters, weight):
        hwc = np.transpose(w, (1, 2, 0))
        expected = np.round((hwc - w.min()) / (w.max() - w.min()) * 255).astype(np.uint8)
        np.testing.assert_array_equal(picture, expected)
    rows = {row[0]: row for row in section.stats.rows}
    for name in ("0", "3"):
        w = dict(net.named_modules())[name].weight.detach().numpy()
        rms = np.sqrt((w.reshape(w.shape[0], -1) ** 2).mean(1))
        row = rows[name]
        assert row[2] == "×".join(str(s) for s in w.shape)
        np.testing.assert_allclose(row[4:7], [rms.min(), rms.mean(), rms.max()], rtol=1e-12)
        assert row[9] == f"{(rms > 0.1).mean():.0%}"


def test_filters_with_other_channel_counts_get_a_note_not_pictures() -> None:
    section = filter_section(nn.Sequential(nn.Conv2d(2, 3, 3)))
    assert section is not None
    assert section.filters == ()
    assert section.note is not None
    assert "1 (grey) or 3 (RGB) input channels" in section.note
    assert filter_section(nn.Sequential(nn.Linear(2, 2))) is None


@given(st.floats(-5, 5), st.floats(0.1, 5), st.integers(1, 3).map(lambda c: 1 if c < 3 else 3))
def test_patch_pictures_are_one_linear_map(low: float, span: float, channels: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(low - 1, low + span + 1, size=(2, channels, 3, 4))
    pixels = patch_pictures(torch.from_numpy(x), low, low + span)
    expected = np.clip(np.round((x - low) / span * 255), 0, 255).astype(np.uint8)
    expected = np.transpose(expected, (0, 2, 3, 1))
    if channels == 1:
        expected = expected[..., 0]
    np.testing.assert_array_equal(pixels, expected)


def test_occlusion_panels_equal_a_hand_written_occlusion_loop() -> None:
    net = small_net(1)
    torch.manual_seed(3)
    images = [(torch.randn(3, 8, 8, dtype=torch.float64), label) for label in (2, 2, 0)]
    names = ["<cat>", "dog&", "bird"]
    section = occlusion_section(
        net, images, images=2, size=4, stride=2, class_names=names, value_range=(-2.0, 2.0)
    )
    assert section is not None
    assert (section.square, section.stride) == (4, 2)
    assert [it.image_name for it in section.items] == ["item 0", "item 2"]
    assert [it.label for it in section.items] == ["bird", "<cat>"]
    item = section.items[1]  # dataset index 2: label 0
    image, label = images[2]
    probs, predicted = [], []
    with torch.no_grad():
        for r in range(0, 5, 2):
            for c in range(0, 5, 2):
                x = image.clone()
                x[:, r : r + 4, c : c + 4] = 0.0
                p = F.softmax(net(x[None])[0], 0)
                probs.append(float(p[label]))
                predicted.append(int(p.argmax()))
    panels = {p.key: p for p in item.panels}
    assert list(panels) == ["a", "b", "c", "d", "e"]
    # maps lie on the image's grid: cell (i, j) covers the 2×2 pixels around its square's
    # centre (2i + 2, 2j + 2), i.e. pixels 2i+1..2i+2; the rest is the light-grey border
    expected_d = colormaps["viridis"](np.array(probs).reshape(3, 3))[..., :3]
    expected_d = np.round(expected_d * 255).astype(np.uint8).repeat(2, 0).repeat(2, 1)
    d = np.asarray(panels["d"].picture)
    assert d.shape == (8, 8, 3)
    np.testing.assert_array_equal(d[1:7, 1:7], expected_d)
    border = np.ones((8, 8), bool)
    border[1:7, 1:7] = False
    assert (d[border] == 230).all()
    legend = {entry.name: entry.color for entry in item.legend}
    for name, color in legend.items():  # a class keeps its tab10 colour across images
        rgb = np.round(np.array(colormaps["tab10"](names.index(name))[:3]) * 255).astype(int)
        assert color == "#{:02x}{:02x}{:02x}".format(*rgb)
    assert set(legend) >= {names[c] for c in predicted}
    e = np.asarray(panels["e"].picture)
    for cell, cls in enumerate(predicted):
        color = legend[names[cls]]
        rgb = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
        i, j = divmod(cell, 3)
        assert e[1 + 2 * i : 3 + 2 * i, 1 + 2 * j : 3 + 2 * j].reshape(-1, 3).tolist() == [rgb] * 4
    # (a): the input with the grey square where p(label) is lowest
    worst = int(np.argmin(probs))
    r, c = 2 * (worst // 3), 2 * (worst % 3)
    covered = image.clone()
    covered[:, r : r + 4, c : c + 4] = 0.0
    np.testing.assert_array_equal(panels["a"].picture, patch_pictures(covered[None], -2.0, 2.0)[0])


def test_occlusion_indices_prefer_new_labels() -> None:
    data = [(None, lab) for lab in (0, 0, 1, 1, 2, 0)]
    assert occlusion_indices(data, 3) == [0, 2, 4]
    assert occlusion_indices(data, 4) == [0, 1, 2, 4]
    assert default_occlusion_geometry(28, 20) == (6, 1)


def test_accuracy_equals_a_plain_loop() -> None:
    net = small_net(2)
    torch.manual_seed(4)
    data = [(torch.randn(3, 8, 8, dtype=torch.float64), int(i % 3)) for i in range(23)]
    expected = np.mean([int(net(x[None]).argmax()) == y for x, y in data])
    assert dataset_accuracy(net, data, batch_size=5) == pytest.approx(expected, abs=0)


@given(st.sets(st.integers(0, 60), min_size=1, max_size=20))
def test_parse_channels_reads_ranges(channels: set[int]) -> None:
    ordered = sorted(channels)
    parts, start = [], ordered[0]
    for prev, cur in zip(ordered, [*ordered[1:], None]):
        if cur != prev + 1 if cur is not None else True:
            parts.append(f"{start}-{prev}" if prev > start else str(start))
            start = cur  # type: ignore[assignment]
    assert parse_channels(",".join(parts)) == tuple(ordered)


def test_parse_channels_errors() -> None:
    with pytest.raises(
        ParameterError,
        match=r"channels: expected channel indices and ranges such as '0-7,12', received 'a'",
    ):
        parse_channels("a")
    with pytest.raises(
        ParameterError, match=r"channels: expected ranges 'a-b' with 0 <= a <= b, received '5-2'"
    ):
        parse_channels("1,5-2")


def test_subset_view_keeps_names_and_labels() -> None:
    class Data:
        def __init__(self) -> None:
            self.paths = ["a.png", "b.png", "c.png"]
            self.labels = [2, 0, 1]
            self.classes = ["x", "y", "z"]

        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int) -> tuple[int, int]:
            return i * 10, self.labels[i]

    view = SubsetView(Data(), [2, 0])
    assert (len(view), view.paths, view.labels, view.classes) == (
        2,
        ["c.png", "a.png"],
        [1, 2],
        ["x", "y", "z"],
    )
    assert [view[i] for i in range(2)] == [(20, 1), (0, 2)]


def _tiny_data(n: int = 6) -> list[tuple[torch.Tensor, int]]:
    torch.manual_seed(5)
    return [(torch.randn(3, 8, 8, dtype=torch.float64), i % 3) for i in range(n)]


def test_assemble_restores_train_mode_and_checks_layers() -> None:
    from convlens.report.assemble import assemble_report

    net = small_net(6).train()
    net[1].eval()
    data = assemble_report(
        net, _tiny_data(), command="c", dataset_name="d", top=2, occlusion_images=1
    )
    assert [s.name for s in data.layers] == ["0", "3"]
    # receptive fields against autograd: a linear twin (ones, avg-pool, no ReLU) of the net
    twin = nn.Sequential(
        nn.Conv2d(3, 1, 3, padding=1), nn.AvgPool2d(2), nn.Conv2d(1, 1, 3, padding=1)
    ).double()
    for module in (twin[0], twin[2]):
        nn.init.ones_(module.weight)
    for name, upto in (("0", 1), ("3", 3)):
        x = torch.zeros(1, 3, 16, 16, dtype=torch.float64, requires_grad=True)
        y = twin[:upto](x)
        y[0, 0, y.shape[2] // 2, y.shape[3] // 2].backward()
        rows, cols = torch.nonzero(x.grad[0].abs().sum(0), as_tuple=True)
        size = f"{int(rows.max() - rows.min()) + 1}×{int(cols.max() - cols.min()) + 1} px"
        row = next(r for r in data.summary.layers.rows if r[0] == name)
        assert row[3] == size
        assert next(s for s in data.layers if s.name == name).receptive_field == size
    assert [len(b.tiles) for b in data.layers[1].blocks] == [2] * 6
    assert net.training
    assert not net[1].training
    assert net[0].training
    with pytest.raises(
        ParameterError,
        match=r"layers: expected a module path of the model, one of: 0, 1, 2, 3, 4, 5, 6, "
        r"received '9'",
    ):
        assemble_report(net, _tiny_data(), command="c", dataset_name="d", layers=["9"])
    assert net.training


def test_a_crashed_report_resumes_its_scan_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from convlens.pipeline import top as pipeline_top
    from convlens.report.build import build_report, scan_work_dir

    net, data, out = small_net(7), _tiny_data(8), tmp_path / "report"
    forwarded: list[int] = []
    net[0].register_forward_hook(lambda m, i, o: forwarded.append(o.shape[0]))
    options = {"command": "c", "dataset_name": "d", "top": 2, "occlusion_images": 0,
               "batch_size": 2}  # fmt: skip

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("power cut after the scan")

    with monkeypatch.context() as patch:
        patch.setattr(pipeline_top, "project_in_chunks", crash)
        with pytest.raises(RuntimeError, match="power cut"):
            build_report(net, data, out, **options)
    assert not out.exists()
    work = scan_work_dir(out)
    assert (work / "scan.safetensors").is_file()  # the finished scan survived the crash
    scanned_once = sum(forwarded)
    assert scanned_once == len(data) + 1  # the scan, and its probe of the first image

    forwarded.clear()
    index = build_report(net, data, out, resume=True, **options)
    # the resumed scan forwards nothing again: every image seen since comes from projections,
    # occlusion or accuracy, which run on single images or receptive-field crops
    fresh = tmp_path / "fresh"
    forwarded_resumed = list(forwarded)
    forwarded.clear()
    build_report(net, data, fresh, **options)
    assert sum(forwarded) - sum(forwarded_resumed) == len(data)
    assert index.is_file()
    assert not work.exists()
    assert not scan_work_dir(fresh).exists()
    for page in ("layer-01.html", "layer-02.html"):
        assert (out / page).read_text() == (fresh / page).read_text()
