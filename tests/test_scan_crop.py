"""Receptive-field-cropped projections equal the full-size deconvnet projections exactly."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision.models import alexnet, vgg16

from convlens.arithmetic.receptive import unit_box
from convlens.deconvnet import Target, project
from convlens.deconvnet.cone import (
    chain_of,
    cone_projections,
    cropped_projections,
    extract_windows,
)
from convlens.errors import ParameterError, UnsupportedModuleError
from convlens.scan.crop import project_top
from convlens.scan.grid import write_figures
from convlens.scan.run import scan


def _layer_output(net: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    seen = []
    handle = dict(net.named_modules())[layer].register_forward_hook(
        lambda m, a, o: seen.append(o.clone())
    )
    with torch.no_grad():
        (net.features if hasattr(net, "features") else net)(x)
    handle.remove()
    return seen[0]


def _embed(crop: torch.Tensor, box: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """A box-sized crop placed into a zero canvas of the full input size (parts off it cut)."""
    canvas = crop.new_zeros((crop.shape[0], *size))
    dst, src = [slice(None)], [slice(None)]
    for d, s in enumerate(size):
        a, b = int(box[d, 0]), int(box[d, 1])
        lo, hi = max(a, 0), max(min(b, s), max(a, 0))  # empty where the box misses the image
        dst.append(slice(lo, hi))
        src.append(slice(lo - a, hi - a))
    canvas[tuple(dst)] = crop[tuple(src)]
    return canvas


def _check_against_full(net, x, layer, targets, rule, chain_model=None):
    chain = chain_of(chain_model if chain_model is not None else net)
    out = cropped_projections(chain, x, layer, targets, rule=rule)
    cone = cone_projections(chain, x, layer, targets, rule=rule, chunk=3)
    torch.testing.assert_close(cone.projections, out.projections, rtol=1e-10, atol=1e-13)
    assert torch.equal(cone.boxes, out.boxes)
    assert torch.equal(cone.clips, out.clips)
    size = tuple(x.shape[2:])
    for t, (row, ch, pos) in enumerate(targets):
        full = project(
            net, x[row : row + 1], Target(layer, ch, tuple(pos)), rule=rule, engine="explicit"
        )
        ref = full.projections[0, 0]
        torch.testing.assert_close(
            _embed(out.projections[t], out.boxes[t], size),
            ref,
            rtol=1e-10,
            atol=1e-12 * float(ref.abs().max()) + 1e-300,
        )
        torch.testing.assert_close(out.values[t], full.values[0, 0], rtol=1e-12, atol=1e-12)
        # the box is the unit's receptive field, as the arithmetic computes it
        box = unit_box(chain_model if chain_model is not None else net, layer, tuple(pos), size)
        assert out.boxes[t, :, 0].tolist() == list(box.start)
        assert out.boxes[t, :, 1].tolist() == list(box.stop)
        pixels = [range(int(out.boxes[t, d, 0]), int(out.boxes[t, d, 1])) for d in range(len(size))]
        assert out.clips[t, :, 0].tolist() == [sum(v < 0 for v in r) for r in pixels]
        assert out.clips[t, :, 1].tolist() == [sum(v >= s for v in r) for r, s in zip(pixels, size)]
        assert out.clips[t, :, 0].tolist() == list(box.clip_before)
        assert out.clips[t, :, 1].tolist() == list(box.clip_after)
    return out


def _targets(y: torch.Tensor, count: int, seed: int) -> list[tuple[int, int, tuple[int, ...]]]:
    g = torch.Generator().manual_seed(seed)
    spatial = tuple(y.shape[2:])
    corners = [tuple(0 for _ in spatial), tuple(s - 1 for s in spatial)]
    out = []
    for t in range(count):
        pos = (
            corners[t]
            if t < 2
            else tuple(int(torch.randint(0, s, (1,), generator=g)) for s in spatial)
        )
        out.append((t % y.shape[0], int(torch.randint(0, y.shape[1], (1,), generator=g)), pos))
    return out


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@settings(max_examples=15)
@given(
    k1=st.integers(1, 4),
    s1=st.integers(1, 3),
    d1=st.integers(1, 2),
    p1=st.integers(0, 3),
    pk=st.integers(2, 3),
    ps=st.integers(1, 3),
    pp=st.integers(0, 1),
    ceil=st.booleans(),
    k2=st.integers(1, 3),
    s2=st.integers(1, 2),
    p2=st.integers(0, 2),
    groups=st.sampled_from([1, 2]),
    h=st.integers(14, 22),
    w=st.integers(14, 22),
    rule=st.sampled_from(["deconvnet", "guided", "gradient"]),
    seed=st.integers(0, 1000),
)
def test_cropped_equals_full_on_odd_geometries(
    k1, s1, d1, p1, pk, ps, pp, ceil, k2, s2, p2, groups, h, w, rule, seed
):
    torch.manual_seed(seed)
    pp = min(pp, pk // 2)
    bn = nn.BatchNorm2d(4)
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    net = (
        nn.Sequential(
            nn.Conv2d(2, 4, k1, stride=s1, padding=p1, dilation=d1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(pk, ps, padding=pp, ceil_mode=ceil),
            bn,
            nn.Conv2d(4, 4, k2, stride=s2, padding=p2, groups=groups),
            nn.ReLU(),
            nn.Dropout(),
            nn.Conv2d(4, 3, 2, padding="same"),
        )
        .double()
        .eval()
    )
    x = torch.randn(2, 2, h, w, dtype=torch.float64)
    try:
        y = _layer_output(net, x, "7")
    except RuntimeError:  # a geometry too small for this input: nothing to compare
        return
    for layer in ("2", "5", "7"):
        yl = _layer_output(net, x, layer)
        _check_against_full(net, x, layer, _targets(yl, 5, seed), rule)
    assert y.dim() == 4


def test_cropped_equals_full_1d_with_dilated_pool():
    torch.manual_seed(0)
    net = (
        nn.Sequential(
            nn.Conv1d(1, 3, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool1d(3, 2, padding=1, dilation=2, ceil_mode=True),
            nn.Conv1d(3, 2, 5, stride=2, padding=4, dilation=2),
        )
        .double()
        .eval()
    )
    x = torch.randn(3, 1, 29, dtype=torch.float64)
    y = _layer_output(net, x, "3")
    out = _check_against_full(
        net,
        x,
        "3",
        [(r, c, (p,)) for r in range(3) for c in range(2) for p in range(y.shape[2])],
        "deconvnet",
    )
    assert out.projections.shape[0] == 3 * 2 * y.shape[2]


@pytest.mark.parametrize("layer", ["features.4", "features.7", "features.12"])
def test_cropped_equals_full_on_alexnet(layer):
    torch.manual_seed(1)
    net = alexnet().double().eval()
    x = torch.randn(2, 3, 99, 99, dtype=torch.float64)
    y = _layer_output(net, x, layer)
    _check_against_full(net, x, layer, _targets(y, 6, 2), "deconvnet")


@pytest.mark.parametrize(("layer", "size"), [("features.14", 56), ("features.16", 40)])
def test_cropped_equals_full_on_vgg16(layer, size):
    torch.manual_seed(2)
    net = vgg16().double().eval()
    x = torch.randn(1, 3, size, size, dtype=torch.float64)
    y = _layer_output(net, x, layer)
    # borders (corners) and, for conv3_3 on 56×56 (box 40, jump 4), interior units
    targets = [*_targets(y, 4, 3), (0, 5, (min(5, y.shape[2] - 1), min(6, y.shape[3] - 1)))]
    out = _check_against_full(net, x, layer, targets, "guided")
    interior = (out.clips.sum(dim=(1, 2)) == 0).any()
    assert bool(interior) == (layer == "features.14")


def test_unsupported_layers_are_named():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2), nn.ReLU())
    with pytest.raises(
        UnsupportedModuleError,
        match=r"module '1': expected one of .* receptive-field cropping, received AvgPool2d",
    ):
        cropped_projections(chain_of(net), torch.randn(1, 1, 8, 8), "2", [(0, 0, (0, 0))])
    with pytest.raises(ParameterError, match="layer: expected a layer of the chain"):
        cropped_projections(chain_of(net), torch.randn(1, 1, 8, 8), "9", [(0, 0, (0, 0))])
    with pytest.raises(ParameterError, match="position: expected indices into the map"):
        cropped_projections(chain_of(net[:1]), torch.randn(1, 1, 8, 8), "0", [(0, 0, (6, 0))])


def test_extract_windows_against_slicing():
    x = torch.arange(2 * 3 * 7 * 6, dtype=torch.float64).view(2, 3, 7, 6)
    starts = torch.tensor([[-2, 1], [3, 4]])
    got = extract_windows(x, starts, (5, 4))
    padded = torch.nn.functional.pad(x, (10, 10, 10, 10))
    for t in range(2):
        a, b = int(starts[t, 0]) + 10, int(starts[t, 1]) + 10
        assert torch.equal(got[t], padded[t, :, a : a + 5, b : b + 4])


def test_project_top_crop_equals_full_and_patches_equal_the_image(tmp_path):
    torch.manual_seed(3)
    net = (
        nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 5, 3, padding=1),
            nn.ReLU(),
        )
        .double()
        .eval()
    )
    data = [(torch.randn(3, 16, 16, dtype=torch.float64), 0) for _ in range(7)]
    result = scan(net, data, ["1", "4"], top=3, batch_size=3, progress=False)
    crop = project_top(net, data, result, method="crop", channels=[0, 2, 4], layers=["4"])
    a = crop.layers["4"]
    for method in ("cone", "full", "auto"):
        other = project_top(
            net,
            data,
            result,
            method=method,
            channels=[0, 2, 4],
            layers=["4"],
            chunk=4,
            max_images=2,
        )
        b = other.layers["4"]
        assert b.method == (method if method != "auto" else "crop")  # box 10×10 of 16×16
        torch.testing.assert_close(a.projections, b.projections, rtol=1e-10, atol=1e-13)
        assert torch.equal(a.boxes, b.boxes)
        assert torch.equal(a.clips, b.clips)
        assert torch.equal(a.patches, b.patches)
        assert torch.equal(a.indices, b.indices)
    for ci, ch in enumerate(a.channels):
        for j in range(3):
            idx = int(a.indices[ci, j])
            assert idx == int(result.layers["4"].indices[ch, j])
            image = data[idx][0]
            ref = _embed(a.patches[ci, j], a.boxes[ci, j], (16, 16))
            inside = _embed(torch.ones_like(a.patches[ci, j]), a.boxes[ci, j], (16, 16)) > 0
            assert torch.equal(ref[inside], image[inside])
            # the scanned position is the strongest unit: projecting "max" gives the same
            pmax = project(net, image[None], Target("4", ch, "max"), engine="explicit")
            torch.testing.assert_close(
                _embed(a.projections[ci, j], a.boxes[ci, j], (16, 16)),
                pmax.projections[0, 0],
                rtol=1e-10,
                atol=1e-13,
            )
    index = write_figures(crop, tmp_path, tile=16)
    grid = Image.open(tmp_path / index["4"]["grid"])
    assert grid.size[0] > 2 * 3 * 16
    assert len(index["4"]["items"]) == 9
    item = index["4"]["items"][0]
    assert Image.open(tmp_path / item["projection"]).size == (a.projections.shape[-1],) * 2
    assert (tmp_path / "layers" / "4" / "ch2" / "patch0.png").is_file()


def test_project_top_errors():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    data = [(torch.randn(1, 6, 6), 0) for _ in range(3)]
    result = scan(net, data, ["1"], top=2, progress=False)
    with pytest.raises(
        ParameterError, match=r"channels: expected channels of '1' \(0..1\), received 5"
    ):
        project_top(net, data, result, channels=[5])
    with pytest.raises(ParameterError, match="layers: expected scanned layers"):
        project_top(net, data, result, layers=["0"])
    with pytest.raises(ParameterError, match="method: expected one of auto, crop, cone, full"):
        project_top(net, data, result, method="fast")


class _Branchy(nn.Module):
    """No chain: two branches added, functional ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 3, 3, padding=1)
        self.b = nn.Conv2d(1, 3, 1)
        self.out = nn.Conv2d(3, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.a(x) + self.b(x)))


def test_project_top_on_a_non_chain_model_projects_at_full_size():
    torch.manual_seed(4)
    net = _Branchy().double().eval()
    data = [(torch.randn(1, 9, 9, dtype=torch.float64), 0) for _ in range(4)]
    result = scan(net, data, ["out"], top=2, progress=False)
    tp = project_top(net, data, result)
    lp = tp.layers["out"]
    assert lp.method == "full"
    assert lp.projections.shape == (2, 2, 1, 9, 9)
    for ch in range(2):
        for j in range(2):
            idx = int(lp.indices[ch, j])
            pos = tuple(lp.positions[ch, j].tolist())
            ref = project(net, data[idx][0][None], Target("out", ch, pos)).projections[0, 0]
            torch.testing.assert_close(lp.projections[ch, j], ref)
            assert lp.boxes[ch, j].tolist() == [[0, 9], [0, 9]]


def test_auto_uses_the_cone_when_boxes_cover_most_of_the_input():
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(1, 2, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3)).double()
    data = [(torch.randn(1, 12, 12, dtype=torch.float64), 0) for _ in range(3)]
    result = scan(net, data, ["3"], top=2, progress=False)
    auto = project_top(net, data, result).layers["3"]
    crop = project_top(net, data, result, method="crop").layers["3"]
    assert auto.method == "cone"  # box 10×10 of 12×12
    torch.testing.assert_close(auto.projections, crop.projections, rtol=1e-10, atol=1e-13)
