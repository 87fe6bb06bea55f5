"""First-layer aliasing against a direct DFT (explicit sums) and a closed-form spectrum."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from convlens.errors import ParameterError, ParameterTypeError
from convlens.lint import filter_aliasing


def _gaussian(k: int, sigma: float) -> np.ndarray:
    x = np.arange(k) - (k - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return np.outer(g, g)


def _checkerboard(k: int) -> np.ndarray:
    x = np.arange(k)
    return (-1.0) ** (x[:, None] + x[None, :])


@pytest.mark.parametrize("stride", [2, 4])
def test_gaussian_and_checkerboard_filters_are_separated(stride):
    # Zeiler & Fergus §4.1: a smooth filter keeps its energy below the stride's Nyquist
    # frequency, a checkerboard puts it all at the top of the band.
    w = np.stack([_gaussian(7, 2.0), _checkerboard(7)])[:, None]
    a = filter_aliasing(w, stride)
    smooth, checker = a.alias_share
    assert smooth < 0.1 < 0.9 < checker
    assert a.low[0] > 0.9
    assert a.high[1] > 0.9
    assert a.nyquist == (1 / (2 * stride),) * 2


def _direct_spectrum(w: np.ndarray, n: tuple[int, int]) -> np.ndarray:
    """|DFT|^2 summed over input channels by the explicit sum over taps (no FFT)."""
    f0 = np.arange(n[0]) / n[0]
    f1 = np.arange(n[1]) / n[1]
    k0, k1 = np.arange(w.shape[-2]), np.arange(w.shape[-1])
    e0 = np.exp(-2j * np.pi * np.outer(f0, k0))  # (n0, k0)
    e1 = np.exp(-2j * np.pi * np.outer(f1, k1))
    spec = np.einsum("ab,ocbd,ed->ocae", e0, w, e1)
    return (np.abs(spec) ** 2).sum(axis=1)


@given(
    seed=st.integers(0, 2**31 - 1),
    k=st.integers(1, 6),
    stride=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    n=st.integers(8, 20),
)
def test_shares_equal_a_direct_dft(seed, k, stride, n):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(3, 2, k, k))
    a = filter_aliasing(w, stride, fft_size=(n, n + 1))
    power = _direct_spectrum(w, (n, n + 1))
    f0 = np.minimum(np.arange(n), n - np.arange(n)) / n
    f1 = np.minimum(np.arange(n + 1), n + 1 - np.arange(n + 1)) / (n + 1)
    outside = (f0[:, None] > 1 / (2 * stride[0]) + 1e-12) | (
        f1[None, :] > 1 / (2 * stride[1]) + 1e-12
    )
    nu = np.maximum(f0[:, None], f1[None, :])
    total = power.sum(axis=(1, 2))
    np.testing.assert_allclose(a.alias_share, power[:, outside].sum(1) / total, rtol=1e-10)
    np.testing.assert_allclose(a.low, power[:, nu < 1 / 6 - 1e-12].sum(1) / total, rtol=1e-10)
    np.testing.assert_allclose(a.high, power[:, nu >= 1 / 3 - 1e-12].sum(1) / total, rtol=1e-10)
    np.testing.assert_allclose(a.low + a.mid + a.high, 1.0, rtol=1e-12)


def test_closed_form_spectrum_of_a_difference_filter():
    # |1 - e^{-2 pi i f}|^2 = 4 sin^2(pi f): the share above 1/4 is 1/2 + 1/pi (integral).
    w = np.array([[[1.0, -1.0]]])
    a = filter_aliasing(w, 2, fft_size=1 << 14)
    assert abs(float(a.alias_share[0]) - (0.5 + 1 / math.pi)) < 1e-3


def test_stride_one_never_aliases_and_torch_weights_are_accepted():
    w = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    a = filter_aliasing(w, 1)
    assert np.all(a.alias_share == 0)
    assert (
        filter_aliasing(w.numpy(), 2).alias_share.tolist()
        == filter_aliasing(w, 2).alias_share.tolist()
    )


def test_dead_filters_are_found_and_left_out_of_the_means():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3, 5, 5))
    w[1] = 0.0
    w[3] *= 1e-6
    a = filter_aliasing(w, 2)
    rms = np.sqrt((w.reshape(4, -1) ** 2).mean(1))
    assert a.dead_filters == [1, 3]
    np.testing.assert_allclose(a.rms, rms)
    assert np.isnan(a.alias_share[[1, 3]]).all()
    assert a.mean_alias_share == pytest.approx(float(a.alias_share[[0, 2]].mean()))
    assert a.summary()["dead_filters"] == [1, 3]


def test_errors_name_the_parameter():
    with pytest.raises(ParameterError, match="weight"):
        filter_aliasing(np.ones((3, 3)), 2)
    with pytest.raises(ParameterError, match="fft_size"):
        filter_aliasing(np.ones((1, 1, 7, 7)), 2, fft_size=4)
    with pytest.raises(ParameterError, match="stride"):
        filter_aliasing(np.ones((1, 1, 3, 3)), 0)
    with pytest.raises(ParameterTypeError, match="weight"):
        filter_aliasing(object(), 2)
