"""First-layer aliasing: how much of each filter's spectral energy the layer's stride folds back.

A convolution with stride ``s`` samples its output on a grid ``s`` input pixels apart, whose
Nyquist frequency is ``1/(2s)`` cycles per input pixel. A filter passing energy above it lets
those frequencies alias onto lower ones in the layer's output. Zeiler & Fergus (*Visualizing and
Understanding Convolutional Networks*, arXiv:1311.2901, §4.1) argued qualitatively, from
pictures of AlexNet's stride-4 11x11 first-layer filters, that they mix extremely high and low
frequencies with little in between and alias, and moved to 7x7 filters with stride 2; this
module operationalises that argument as numbers.

Definitions (per filter = one output channel, its input channels' spectra summed):

- spectrum: ``|FFT|^2`` of the filter zero-padded to ``fft_size`` per axis (frequencies
  ``f`` from :func:`numpy.fft.fftfreq`, in cycles per input pixel, ``|f| <= 1/2``);
- ``alias_share``: the share of the energy at frequencies outside the stride's pass band, i.e.
  where ``|f_a| > 1/(2 s_a)`` on some axis ``a``;
- bands on ``nu = max_a |f_a|``: ``low`` (``nu < 1/6``), ``mid`` (``1/6 <= nu < 1/3``),
  ``high`` (``nu >= 1/3``), as shares of the energy (the thirds of the input's Nyquist 1/2);
- dead filters: RMS at most ``dead_tol`` times the largest RMS of the layer (or exactly zero);
  their shares are NaN.

>>> import numpy as np
>>> box = np.ones((1, 1, 4, 4))
>>> a = filter_aliasing(box, stride=2)
>>> bool(a.alias_share[0] < 0.2), a.nyquist
(True, (0.25, 0.25))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from convlens._utils import as_tuple, check_positive
from convlens.errors import ParameterError, ParameterTypeError

__all__ = ["BANDS", "FilterAliasing", "filter_aliasing"]

#: Band edges on ``max_a |f_a|`` in cycles per pixel: low < 1/6 <= mid < 1/3 <= high.
BANDS = (1 / 6, 1 / 3)


@dataclass(frozen=True, eq=False)
class FilterAliasing:
    """Per filter of one layer: alias share, band shares, RMS and whether it is dead.

    Arrays have one entry per filter (output channel). ``nyquist[a] = 1/(2 stride[a])``.
    """

    stride: tuple[int, ...]
    nyquist: tuple[float, ...]
    fft_size: tuple[int, ...]
    alias_share: np.ndarray
    low: np.ndarray
    mid: np.ndarray
    high: np.ndarray
    rms: np.ndarray
    dead: np.ndarray
    dead_tol: float

    @property
    def dead_filters(self) -> list[int]:
        """Indices of the dead filters."""
        return [int(i) for i in np.flatnonzero(self.dead)]

    @property
    def mean_alias_share(self) -> float | None:
        """Mean :attr:`alias_share` over the live filters (``None`` if every filter is dead)."""
        live = self.alias_share[~self.dead]
        return float(live.mean()) if live.size else None

    def summary(self, top: int = 5) -> dict[str, Any]:
        """Plain JSON-ready values: the stride, Nyquist, mean shares and the worst filters."""
        live = ~self.dead

        def mean(a: np.ndarray) -> float | None:
            return float(a[live].mean()) if live.any() else None

        order = np.argsort(-np.where(live, self.alias_share, -1.0), kind="stable")
        return {
            "stride": list(self.stride),
            "nyquist": list(self.nyquist),
            "fft_size": list(self.fft_size),
            "filters": int(self.rms.size),
            "mean_alias_share": mean(self.alias_share),
            "mean_low": mean(self.low),
            "mean_mid": mean(self.mid),
            "mean_high": mean(self.high),
            "dead_filters": self.dead_filters,
            "worst": [
                {"filter": int(i), "alias_share": float(self.alias_share[i])}
                for i in order[:top]
                if live[i]
            ],
        }


def filter_aliasing(
    weight: Any, stride: Any, *, fft_size: Any = None, dead_tol: float = 1e-3
) -> FilterAliasing:
    """Spectral energy of each filter above the Nyquist frequency ``1/(2 stride)``.

    ``weight``: a conv weight ``(C_out, C_in/groups, *kernel)`` (tensor or array; 1-3 spatial
    dimensions). ``fft_size``: zero-padded FFT length per axis, at least the kernel (default
    ``max(64, 8 * kernel)``). See the module docstring for the definitions; Zeiler & Fergus,
    arXiv:1311.2901, §4.1.

    >>> import numpy as np
    >>> checker = np.array([[[[1.0, -1.0], [-1.0, 1.0]]]])
    >>> round(float(filter_aliasing(checker, stride=2).alias_share[0]), 3)
    0.961
    """
    if hasattr(weight, "detach"):
        weight = weight.detach().cpu().double().numpy()
    try:
        w = np.asarray(weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterTypeError("weight", "a tensor or array of numbers", weight) from None
    if w.ndim not in (3, 4, 5) or w.size == 0:
        raise ParameterError(
            "weight",
            "a non-empty conv weight (C_out, C_in, *kernel) with 1-3 spatial axes",
            tuple(w.shape),
        )
    if not np.isfinite(w).all():
        raise ParameterError("weight", "finite values", "a weight with NaN or inf")
    nd = w.ndim - 2
    s = as_tuple(stride, nd, "stride")
    check_positive(s, "stride")
    kernel = w.shape[2:]
    n = (
        tuple(max(64, 8 * k) for k in kernel)
        if fft_size is None
        else as_tuple(fft_size, nd, "fft_size")
    )
    if any(f < k for f, k in zip(n, kernel)):
        raise ParameterError("fft_size", f"at least the kernel size {tuple(kernel)}", n)
    if not (isinstance(dead_tol, (int, float)) and 0 <= dead_tol < 1):
        raise ParameterError("dead_tol", "a number in [0, 1)", dead_tol)
    axes = tuple(range(2, w.ndim))
    power = (np.abs(np.fft.fftn(w, s=n, axes=axes)) ** 2).sum(axis=1)  # (C_out, *n)
    freqs = np.meshgrid(*(np.abs(np.fft.fftfreq(f)) for f in n), indexing="ij")
    outside = np.zeros(n, dtype=bool)
    for f, st in zip(freqs, s):
        outside |= f > 1 / (2 * st) + 1e-12
    nu = np.max(np.stack(freqs), axis=0)
    low, high = nu < BANDS[0] - 1e-12, nu >= BANDS[1] - 1e-12
    mid = ~low & ~high
    flat = power.reshape(power.shape[0], -1)
    total = flat.sum(axis=1)
    rms = np.sqrt((w.reshape(w.shape[0], -1) ** 2).mean(axis=1))
    dead = (rms == 0) | (rms <= dead_tol * rms.max())

    def share(mask: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            out = flat[:, mask.reshape(-1)].sum(axis=1) / total
        return np.where(dead, np.nan, out)

    return FilterAliasing(
        stride=s,
        nyquist=tuple(1 / (2 * st) for st in s),
        fft_size=n,
        alias_share=share(outside),
        low=share(low),
        mid=share(mid),
        high=share(high),
        rms=rms,
        dead=dead,
        dead_tol=float(dead_tol),
    )
