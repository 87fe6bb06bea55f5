"""Occlusion sensitivity (Zeiler & Fergus Fig. 7) against brute-force loops and a model whose
class is decided by one known region of the image."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from convlens.analysis.occlusion import (
    default_layer,
    occlude,
    occlusion_grid_shape,
    occlusion_maps,
    occlusion_positions,
    pixel_map,
)
from convlens.deconvnet import Target, project
from convlens.errors import ParameterError, ParameterTypeError


def _brute_positions(h: int, w: int, sh: int, sw: int, th: int, tw: int) -> list[list[int]]:
    out = []
    r = 0
    while r + sh <= h:
        c = 0
        while c + sw <= w:
            out.append([r, c])
            c += tw
        r += th
    return out


@given(
    h=st.integers(1, 20),
    w=st.integers(1, 20),
    sh=st.integers(1, 20),
    sw=st.integers(1, 20),
    th=st.integers(1, 6),
    tw=st.integers(1, 6),
)
def test_positions_match_enumeration(h: int, w: int, sh: int, sw: int, th: int, tw: int) -> None:
    if sh > h or sw > w:
        with pytest.raises(ParameterError, match="size: expected a square no larger than"):
            occlusion_positions((h, w), (sh, sw), (th, tw))
        return
    expected = _brute_positions(h, w, sh, sw, th, tw)
    assert occlusion_positions((h, w), (sh, sw), (th, tw)).tolist() == expected
    rows, cols = occlusion_grid_shape((h, w), (sh, sw), (th, tw))
    assert rows * cols == len(expected)
    assert expected[cols - 1][0] == 0
    assert all(p[0] == expected[-1][0] for p in expected[-cols:])


@given(
    seed=st.integers(0, 10_000),
    c=st.integers(1, 3),
    h=st.integers(2, 10),
    w=st.integers(2, 10),
    size=st.integers(1, 4),
    stride=st.integers(1, 3),
    per_channel=st.booleans(),
)
def test_occlude_matches_loop(
    seed: int, c: int, h: int, w: int, size: int, stride: int, per_channel: bool
) -> None:
    size = min(size, h, w)
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(2, c, h, w, generator=g, dtype=torch.float64)
    fill = torch.randn(c, generator=g, dtype=torch.float64) if per_channel else 0.25
    positions = occlusion_positions((h, w), size, stride)
    out = occlude(images, positions, size, fill)
    single = occlude(images[1], positions, size, fill)
    assert out.shape == (2, len(positions), c, h, w)
    for n in range(2):
        for p, (r, col) in enumerate(positions.tolist()):
            expected = images[n].clone()
            if per_channel:
                for k in range(c):
                    expected[k, r : r + size, col : col + size] = fill[k]  # type: ignore[index]
            else:
                expected[:, r : r + size, col : col + size] = fill
            assert torch.equal(out[n, p], expected)
    assert torch.equal(single, out[1])


def _region_model(h: int, w: int, box: tuple[int, int, int, int], image: torch.Tensor) -> nn.Module:
    """A model whose class-0 logit is +5 when the region ``box`` of ``image`` is intact and at
    most -5 when any of its pixels (all >= 0.5) is set to 0; class 1 has logit 0, class 2 -10."""
    r0, r1, c0, c1 = box
    model = nn.Module()
    model.features = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.ReLU())
    model.classifier = nn.Sequential(nn.Flatten(), nn.Linear(2 * h * w, 3))
    with torch.no_grad():
        model.features[0].weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
        mask = torch.zeros(2, h, w, dtype=torch.float64)
        mask[0, r0:r1, c0:c1] = 1.0
        region_sum = float((image[0] * mask[0]).sum())
        model.classifier[1].weight.zero_()
        model.classifier[1].weight[0] = 20 * mask.flatten()
        model.classifier[1].bias.copy_(torch.tensor([-20 * (region_sum - 0.25), 0.0, -10.0]))
    model.forward = lambda x: model.classifier(model.features(x))  # type: ignore[method-assign]
    return model.double()


@settings(max_examples=25)
@given(
    seed=st.integers(0, 10_000),
    h=st.integers(6, 14),
    w=st.integers(6, 14),
    data=st.data(),
)
def test_probability_drops_exactly_where_the_square_covers_the_region(
    seed: int, h: int, w: int, data: st.DataObject
) -> None:
    r0 = data.draw(st.integers(0, h - 1))
    r1 = data.draw(st.integers(r0 + 1, h))
    c0 = data.draw(st.integers(0, w - 1))
    c1 = data.draw(st.integers(c0 + 1, w))
    size = data.draw(st.integers(1, min(h, w)))
    stride = data.draw(st.integers(1, 4))
    g = torch.Generator().manual_seed(seed)
    image = 0.5 + 0.5 * torch.rand(1, h, w, generator=g, dtype=torch.float64)
    model = _region_model(h, w, (r0, r1, c0, c1), image)
    result = occlusion_maps(
        model,
        image,
        0,
        layer="features.1",
        size=size,
        stride=stride,
        fill=0.0,
        batch_size=7,
        project=False,
    )
    positions = _brute_positions(h, w, size, size, stride, stride)
    overlap = torch.tensor(
        [r < r1 and r + size > r0 and c < c1 and c + size > c0 for r, c in positions]
    ).view(result.probability.shape)
    assert result.unoccluded_probability > 0.99
    assert result.unoccluded_predicted == 0
    assert result.channel == 0  # channel 1 is relu(-x) = 0 everywhere
    assert torch.equal(result.probability < 0.5, overlap)
    assert torch.all(result.probability[overlap] < 0.01)
    assert torch.allclose(
        result.probability[~overlap],
        torch.tensor(result.unoccluded_probability, dtype=torch.float64),
        rtol=1e-9,
    )
    assert torch.equal(result.predicted, torch.where(overlap, 1, 0))
    # (b): channel 0 is the image itself, so its total is the image sum minus the covered part
    expected = torch.tensor(
        [float(image.sum() - image[0, r : r + size, c : c + size].sum()) for r, c in positions],
        dtype=torch.float64,
    ).view(result.activation.shape)
    assert torch.allclose(result.activation, expected, rtol=1e-12)


def _conv_model(in_channels: int = 1) -> nn.Module:
    torch.manual_seed(7)
    model = nn.Module()
    model.features = nn.Sequential(
        nn.Conv2d(in_channels, 4, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3),
        nn.ReLU(inplace=True),
    )
    model.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.LazyLinear(5))
    model.forward = lambda x: model.classifier(model.features(x))  # type: ignore[method-assign]
    model.double()
    model(torch.zeros(1, in_channels, 12, 12, dtype=torch.float64))
    return model


@pytest.mark.parametrize(("in_channels", "layer"), [(1, "features.4"), (3, "features.3")])
def test_maps_match_brute_force_loop(in_channels: int, layer: str) -> None:
    model = _conv_model(in_channels)
    model.train()
    g = torch.Generator().manual_seed(1)
    image = torch.randn(in_channels, 12, 12, generator=g, dtype=torch.float64)
    fill = [0.1, -0.2, 0.3][:in_channels]
    result = occlusion_maps(
        model, image, 2, layer=layer, size=(4, 3), stride=(2, 3), fill=fill, batch_size=4
    )
    assert model.training  # flags restored
    model.eval()
    idx = int(layer.split(".")[1])
    head = model.features[: idx + 1]
    with torch.no_grad():
        feature = head(image[None].clone())
        channel = int(feature[0].flatten(1).amax(1).argmax())
        assert result.channel == channel
        assert result.unoccluded_activation == pytest.approx(float(feature[0, channel].sum()))
        rows = []
        for r, c in _brute_positions(12, 12, 4, 3, 2, 3):
            x = image.clone()
            for k in range(in_channels):
                x[k, r : r + 4, c : c + 3] = fill[k]
            act = float(head(x[None].clone())[0, channel].sum())
            probs = F.softmax(model(x[None]), 1)[0]
            rows.append((act, float(probs[2]), int(probs.argmax()), float(probs.max())))
    expected = torch.tensor(rows, dtype=torch.float64)
    shape = result.activation.shape
    assert shape == occlusion_grid_shape(12, (4, 3), (2, 3))
    assert torch.allclose(result.activation, expected[:, 0].view(shape), rtol=1e-10, atol=1e-12)
    assert torch.allclose(result.probability, expected[:, 1].view(shape), rtol=1e-10)
    assert torch.equal(result.predicted, expected[:, 2].long().view(shape))
    assert torch.allclose(result.predicted_probability, expected[:, 3].view(shape), rtol=1e-10)
    # batching does not change the answer
    other = occlusion_maps(
        model,
        image,
        2,
        layer=layer,
        size=(4, 3),
        stride=(2, 3),
        fill=fill,
        batch_size=1000,
        project=False,
    )
    assert torch.allclose(other.activation, result.activation, rtol=1e-12)
    assert torch.allclose(other.probability, result.probability, rtol=1e-12)


def test_projection_is_the_deconvnet_of_the_strongest_unit() -> None:
    model = _conv_model()
    image = torch.randn(1, 12, 12, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    result = occlusion_maps(model, image, 0, size=3, stride=3)
    assert result.layer == "features.4" == default_layer(model)
    reference = project(model, image[None], [Target("features.4", result.channel, "max")])
    assert result.projection is not None
    assert torch.allclose(result.projection, reference.projections[0, 0], rtol=1e-12)
    spread = result.pixel_map("activation")
    assert torch.equal(spread, pixel_map(result.activation, result.positions, 3, (12, 12)))
    with pytest.raises(ParameterError, match="name: expected 'activation', 'probability'"):
        result.pixel_map("predicted")


@given(
    seed=st.integers(0, 10_000),
    h=st.integers(2, 9),
    w=st.integers(2, 9),
    size=st.integers(1, 4),
    stride=st.integers(1, 4),
)
def test_pixel_map_is_mean_over_covering_squares(
    seed: int, h: int, w: int, size: int, stride: int
) -> None:
    size = min(size, h, w)
    positions = occlusion_positions((h, w), size, stride)
    values = torch.rand(len(positions), generator=torch.Generator().manual_seed(seed))
    out = pixel_map(values.double(), positions, size, (h, w))
    for i in range(h):
        for j in range(w):
            covering = [
                float(values[p])
                for p, (r, c) in enumerate(positions.tolist())
                if r <= i < r + size and c <= j < c + size
            ]
            if covering:
                assert out[i, j].item() == pytest.approx(sum(covering) / len(covering))
            else:
                assert torch.isnan(out[i, j])


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks for m in model.modules())


def test_hooks_removed_after_normal_and_raising_calls() -> None:
    model = _conv_model()
    image = torch.randn(1, 12, 12, dtype=torch.float64)
    occlusion_maps(model, image, 1, size=4, stride=4, project=False)
    assert _no_hooks(model)

    class Boom(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    model.classifier.append(Boom())
    model.train()
    with pytest.raises(RuntimeError, match="boom"):
        occlusion_maps(model, image, 1, size=4, stride=4, project=False)
    assert _no_hooks(model)
    assert all(m.training for m in model.modules())


def test_bad_input_raises_clear_errors() -> None:
    model = _conv_model()
    image = torch.randn(1, 12, 12, dtype=torch.float64)
    with pytest.raises(
        ParameterError, match=r"layer: expected a module path .*features\.4.*'nope'"
    ):
        occlusion_maps(model, image, 0, layer="nope")
    with pytest.raises(
        ParameterError, match=r"label: expected a class index in \[0, 5\), received 5"
    ):
        occlusion_maps(model, image, 5, size=4, stride=4, project=False)
    with pytest.raises(ParameterTypeError, match="label: expected a class index"):
        occlusion_maps(model, image, 1.0, project=False)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="size: expected a square no larger than the image"):
        occlusion_maps(model, image, 0, size=13)
    with pytest.raises(ParameterError, match="stride: expected positive ints, received 0"):
        occlusion_maps(model, image, 0, stride=0)
    with pytest.raises(ParameterError, match=r"image: expected one image tensor \(C, H, W\)"):
        occlusion_maps(model, image[None], 0)
    with pytest.raises(ParameterError, match=r"channel: expected a channel in \[0, 6\)"):
        occlusion_maps(model, image, 0, channel=6, project=False)
    with pytest.raises(ParameterError, match="fill: expected a number or one value per channel"):
        occlude(image, occlusion_positions(12, 4, 4), 4, [0.0, 0.0])
    with pytest.raises(ParameterError, match=r"positions: expected an int tensor \(P, 2\)"):
        occlude(image, torch.zeros(3, dtype=torch.int64), 4)
