"""Filters as images and filter statistics, checked against direct computations and
torchvision's make_grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torchvision.utils import make_grid

from convlens.analysis.filters import (
    filter_arrays,
    filter_grid,
    filter_grid_image,
    filter_images,
    filter_rms,
    filter_statistics,
    first_conv,
)
from convlens.errors import ParameterError, ParameterTypeError


def _weights(seed: int, n: int, c: int, kh: int, kw: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, kh, kw, generator=g, dtype=torch.float64) * (0.01 + seed % 7)


@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 9),
    c=st.integers(1, 4),
    k=st.integers(1, 5),
)
def test_filter_rms_matches_numpy_loop(seed: int, n: int, c: int, k: int) -> None:
    w = _weights(seed, n, c, k, k)
    expected = [math.sqrt(float(np.mean(w[i].numpy() ** 2))) for i in range(n)]
    np.testing.assert_allclose(filter_rms(w).numpy(), expected, rtol=1e-12)


@given(seed=st.integers(0, 10_000), n=st.integers(1, 8), c=st.sampled_from([1, 3]))
def test_minmax_stretch_is_per_filter(seed: int, n: int, c: int) -> None:
    w = _weights(seed, n, c, 3, 4)
    out = filter_images(w)
    for i in range(n):
        f = w[i].numpy()
        expected = (f - f.min()) / (f.max() - f.min())
        np.testing.assert_allclose(out[i].numpy(), expected, rtol=1e-12, atol=1e-15)
        assert out[i].min() == 0.0
        assert out[i].max() == 1.0


@given(seed=st.integers(0, 10_000), n=st.integers(1, 8), c=st.sampled_from([1, 3]))
def test_symmetric_stretch_puts_zero_at_mid_grey(seed: int, n: int, c: int) -> None:
    w = _weights(seed, n, c, 2, 3)
    out = filter_images(w, stretch="symmetric")
    for i in range(n):
        f = w[i].numpy()
        expected = 0.5 + f / (2 * np.abs(f).max())
        np.testing.assert_allclose(out[i].numpy(), expected, rtol=1e-12, atol=1e-15)


def test_constant_and_zero_filters_are_mid_grey() -> None:
    w = torch.zeros(2, 1, 3, 3)
    w[1] = 4.0
    for stretch in ("minmax", "symmetric"):
        out = filter_images(w, stretch=stretch)
        if stretch == "minmax":
            assert torch.equal(out, torch.full_like(out, 0.5, dtype=torch.float64))
        else:
            assert torch.equal(out[0], torch.full((1, 3, 3), 0.5, dtype=torch.float64))
            assert torch.equal(out[1], torch.ones(1, 3, 3, dtype=torch.float64))


@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 12),
    c=st.sampled_from([1, 3]),
    ncols=st.integers(1, 6),
    padding=st.integers(0, 3),
    pad_value=st.sampled_from([0.0, 0.25, 1.0]),
)
def test_grid_layout_matches_make_grid(
    seed: int, n: int, c: int, ncols: int, padding: int, pad_value: float
) -> None:
    w = _weights(seed, n, c, 3, 2)
    grid = filter_grid(w, ncols=ncols, padding=padding, pad_value=pad_value)
    reference = make_grid(filter_images(w), nrow=ncols, padding=padding, pad_value=pad_value)
    if c == 1:  # make_grid turns grey into three equal channels
        assert torch.equal(reference[0], reference[1])
        reference = reference[:1]
    assert grid.shape == reference.shape
    assert torch.equal(grid, reference)


@given(seed=st.integers(0, 10_000), n=st.integers(2, 7), scale=st.integers(1, 4))
def test_scale_is_nearest_neighbour_enlargement(seed: int, n: int, scale: int) -> None:
    w = _weights(seed, n, 3, 3, 3)
    big = F.interpolate(filter_images(w), scale_factor=scale, mode="nearest")
    reference = make_grid(big, nrow=3, padding=2, pad_value=1.0)
    assert torch.equal(filter_grid(w, ncols=3, padding=2, scale=scale), reference)


def test_default_columns_are_ceil_sqrt() -> None:
    grid = filter_grid(torch.randn(10, 1, 5, 5), padding=0)
    assert grid.shape == (1, 5 * math.ceil(10 / 4), 5 * 4)


def test_grid_image_is_rounded_grid() -> None:
    w = torch.randn(6, 3, 5, 5)
    image = filter_grid_image(w, scale=2)
    assert image.mode == "RGB"
    grid = filter_grid(w, scale=2)
    expected = np.rint(grid.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert np.array_equal(np.asarray(image), expected)
    grey = filter_grid_image(w[:, :1])
    assert grey.mode == "L"
    expected_grey = np.rint(filter_grid(w[:, :1])[0].numpy() * 255).astype(np.uint8)
    assert np.array_equal(np.asarray(grey), expected_grey)


@pytest.mark.parametrize("channels", [1, 3])
def test_filter_arrays_are_the_stretched_filters(channels: int) -> None:
    w = torch.randn(5, channels, 3, 4)
    arrays = filter_arrays(w, scale=3)
    images = filter_images(w)
    assert len(arrays) == 5
    for array, image in zip(arrays, images):
        big = np.kron(image.permute(1, 2, 0).numpy(), np.ones((3, 3, 1)))
        expected = np.rint(big * 255).astype(np.uint8)
        assert array.shape == ((9, 12, 3) if channels == 3 else (9, 12))
        assert np.array_equal(array, expected if channels == 3 else expected[:, :, 0])


def _stats_model() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv1d(2, 3, 3),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.Linear(4, 4)),
        nn.Conv3d(2, 5, (1, 2, 3), groups=1),
        nn.ConvTranspose2d(3, 3, 3),
    )


def test_filter_statistics_match_direct_computation() -> None:
    model = _stats_model()
    with torch.no_grad():
        model[2][0].weight[0] *= 50  # one filter far above the cap
    stats = filter_statistics(model, cap=0.1)
    convs = [
        (n, m) for n, m in model.named_modules() if type(m) in (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    ]
    assert [s.path for s in stats] == [n for n, _ in convs] == ["0", "2.0", "3"]
    for s, (_, m) in zip(stats, convs):
        w = m.weight.detach().double().numpy()
        rms = np.array([np.sqrt(np.mean(w[i] ** 2)) for i in range(w.shape[0])])
        norms = np.array([np.linalg.norm(w[i].ravel()) for i in range(w.shape[0])])
        assert s.shape == w.shape
        assert s.module_type == type(m).__name__
        np.testing.assert_allclose(s.rms.numpy(), rms, rtol=1e-12)
        np.testing.assert_allclose(s.norm.numpy(), norms, rtol=1e-12)
        assert s.fraction_above_cap == pytest.approx(float(np.mean(rms > 0.1)))
        assert s.max_abs == pytest.approx(float(np.abs(w).max()))
        n_params = sum(p.numel() for p in m.parameters())
        assert s.parameters == n_params
        if m.bias is None:
            assert s.bias_rms is None
        else:
            b = m.bias.detach().double().numpy()
            assert s.bias_rms == pytest.approx(float(np.sqrt(np.mean(b**2))))
        summary = s.summary()
        # the lower middle value for an even count, as torch.median defines it
        assert summary["rms_median"] == pytest.approx(float(np.sort(rms)[(len(rms) - 1) // 2]))
        assert summary["rms_max"] == pytest.approx(float(rms.max()))
        assert summary["fraction_rms_above_0.1"] == s.fraction_above_cap
    assert stats[1].fraction_above_cap >= 0.25


def test_first_conv_finds_first_registered_conv() -> None:
    model = _stats_model()
    path, module = first_conv(model)
    assert path == "0"
    assert module is model[0]
    with pytest.raises(ParameterError, match="model: expected a model with a conv layer"):
        first_conv(nn.Sequential(nn.ReLU()))


def test_errors_name_the_parameter() -> None:
    with pytest.raises(ParameterError, match=r"weight: expected filters with 1 \(grey\) or 3"):
        filter_images(torch.randn(4, 2, 3, 3))
    with pytest.raises(ParameterError, match=r"weight: expected a 2-D conv weight.*\(4, 3, 3\)"):
        filter_grid(torch.randn(4, 3, 3))
    with pytest.raises(ParameterTypeError, match="weight: expected a 2-D conv weight"):
        filter_grid([[1.0]])  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="stretch: expected 'minmax' or 'symmetric'"):
        filter_images(torch.randn(4, 1, 3, 3), stretch="max")
    with pytest.raises(ParameterError, match="scale: expected an int >= 1, received 0"):
        filter_grid(torch.randn(4, 1, 3, 3), scale=0)
    with pytest.raises(ParameterError, match="ncols: expected a positive int, received 0"):
        filter_grid(torch.randn(4, 1, 3, 3), ncols=0)
    with pytest.raises(ParameterError, match="cap: expected a positive number, received -1"):
        filter_statistics(nn.Conv2d(1, 1, 1), cap=-1)
