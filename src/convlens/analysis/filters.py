"""Filters as images and filter statistics (Zeiler & Fergus, arXiv:1311.2901, Fig. 6 and §3).

The first conv layer's filters are shown one tile each, every filter contrast-stretched on its
own (``"minmax"``: its minimum black, its maximum white; ``"symmetric"``: zero at mid-grey),
in colour for 3-channel filters and in grey for 1-channel ones. The statistics per conv layer
include each filter's RMS, which the paper caps at 0.1 in the first layer (§3).

>>> import torch
>>> filter_grid(torch.randn(4, 1, 3, 3), padding=1).shape
torch.Size([1, 9, 9])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from convlens.errors import ParameterError, ParameterTypeError

__all__ = [
    "FilterStats",
    "conv_layers",
    "filter_arrays",
    "filter_grid",
    "filter_grid_image",
    "filter_images",
    "filter_rms",
    "filter_statistics",
    "first_conv",
]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
STRETCHES = ("minmax", "symmetric")


def filter_rms(weight: Tensor) -> Tensor:
    """The root mean square of each filter ``weight[i]`` (over input channels and taps).

    >>> filter_rms(torch.ones(3, 2, 5, 5)).tolist()
    [1.0, 1.0, 1.0]
    """
    return weight.detach().flatten(1).pow(2).mean(1).sqrt()


def conv_layers(model: nn.Module) -> list[str]:
    """The module paths of ``model``'s ``Conv1d/2d/3d`` layers, in registration order.

    >>> conv_layers(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 1)))
    ['0', '2']
    """
    return [name for name, module in model.named_modules() if isinstance(module, _CONVS)]


def first_conv(model: nn.Module) -> tuple[str, nn.Module]:
    """The path and module of the first conv layer in registration order.

    >>> first_conv(nn.Sequential(nn.ReLU(), nn.Conv2d(1, 2, 3)))[0]
    '1'
    """
    for name, module in model.named_modules():
        if isinstance(module, _CONVS):
            return name, module
    raise ParameterError("model", "a model with a conv layer", type(model).__name__)


def _check_weight(weight: Any) -> Tensor:
    if not isinstance(weight, Tensor):
        raise ParameterTypeError("weight", "a 2-D conv weight tensor (F, C, kh, kw)", weight)
    if weight.dim() != 4:
        raise ParameterError(
            "weight", "a 2-D conv weight tensor (F, C, kh, kw)", tuple(weight.shape)
        )
    if weight.shape[1] not in (1, 3):
        raise ParameterError(
            "weight",
            "filters with 1 (grey) or 3 (RGB) input channels",
            tuple(weight.shape),
            hint="only a first layer on grey or RGB images can be shown as pictures",
        )
    return weight.detach().to(torch.float64)


def filter_images(weight: Tensor, *, stretch: str = "minmax") -> Tensor:
    """Each filter contrast-stretched on its own to [0, 1]: float64 (F, C, kh, kw).

    ``"minmax"`` maps a filter's minimum to 0 and maximum to 1; ``"symmetric"`` maps 0 to 0.5
    and the largest magnitude to 0 or 1. A constant filter becomes 0.5 everywhere.

    >>> filter_images(torch.tensor([[[[-1.0, 3.0]]]])).tolist()
    [[[[0.0, 1.0]]]]
    """
    if stretch not in STRETCHES:
        raise ParameterError("stretch", "'minmax' or 'symmetric'", stretch)
    w = _check_weight(weight)
    flat = w.flatten(1)
    if stretch == "minmax":
        low = flat.amin(1).view(-1, 1, 1, 1)
        span = (flat.amax(1) - flat.amin(1)).view(-1, 1, 1, 1)
        out = torch.where(span > 0, (w - low) / torch.where(span > 0, span, 1.0), 0.5)
    else:
        peak = flat.abs().amax(1).view(-1, 1, 1, 1)
        out = torch.where(peak > 0, 0.5 + w / (2 * torch.where(peak > 0, peak, 1.0)), 0.5)
    return out.clamp(0.0, 1.0)


def filter_grid(
    weight: Tensor,
    *,
    ncols: int | None = None,
    padding: int = 1,
    pad_value: float = 1.0,
    scale: int = 1,
    stretch: str = "minmax",
) -> Tensor:
    """The filters of ``weight`` (F, C, kh, kw), C in {1, 3}, as one image (C, H, W) in [0, 1].

    Row-major tiles, ``ncols`` per row (default ``ceil(sqrt(F))``, at most F), each filter stretched on
    its own (:func:`filter_images`) and enlarged ``scale`` times (nearest neighbour), with
    ``padding`` pixels of ``pad_value`` around every tile. Zeiler & Fergus, Fig. 6.

    >>> filter_grid(torch.randn(3, 3, 2, 2), ncols=3, padding=0, scale=2).shape
    torch.Size([3, 4, 12])
    """
    tiles = filter_images(weight, stretch=stretch)
    for name, value, low in (("padding", padding, 0), ("scale", scale, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ParameterError(name, f"an int >= {low}", value)
    n, channels, kh, kw = tiles.shape
    if ncols is None:
        ncols = max(1, math.ceil(math.sqrt(n)))
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ParameterError("ncols", "a positive int", ncols)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    tiles = tiles.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
    th, tw = kh * scale + padding, kw * scale + padding
    grid = torch.full(
        (channels, nrows * th + padding, ncols * tw + padding), float(pad_value), dtype=tiles.dtype
    )
    for i in range(n):
        r, c = divmod(i, ncols)
        top, left = r * th + padding, c * tw + padding
        grid[:, top : top + kh * scale, left : left + kw * scale] = tiles[i]
    return grid


def filter_arrays(weight: Tensor, *, stretch: str = "minmax", scale: int = 1) -> list[np.ndarray]:
    """Each filter as its own uint8 picture: (kh*scale, kw*scale) for grey filters,
    (kh*scale, kw*scale, 3) for RGB ones (stretched as in :func:`filter_images`).

    >>> [a.shape for a in filter_arrays(torch.randn(2, 3, 5, 5), scale=2)]
    [(10, 10, 3), (10, 10, 3)]
    """
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ParameterError("scale", "an int >= 1", scale)
    tiles = filter_images(weight, stretch=stretch)
    tiles = tiles.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
    pixels = (tiles * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    if pixels.shape[3] == 1:
        return [np.ascontiguousarray(p[:, :, 0]) for p in pixels]
    return [np.ascontiguousarray(p) for p in pixels]


def filter_grid_image(weight: Tensor, **kwargs: Any) -> Any:
    """:func:`filter_grid` as a ``PIL.Image`` (mode ``"L"`` or ``"RGB"``).

    >>> filter_grid_image(torch.randn(4, 3, 5, 5), scale=4).mode
    'RGB'
    """
    from PIL import Image

    grid = filter_grid(weight, **kwargs)
    pixels = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if pixels.shape[2] == 1:
        return Image.fromarray(np.ascontiguousarray(pixels[:, :, 0]), mode="L")
    return Image.fromarray(np.ascontiguousarray(pixels), mode="RGB")


@dataclass(frozen=True)
class FilterStats:
    """Statistics of one conv layer's filters (a filter is ``weight[i]``, one output channel).

    ``rms``: per-filter root mean square (float64, (F,)); ``norm``: per-filter L2 norm;
    ``fraction_above_cap``: the share of filters with RMS above ``cap`` (0.1: Zeiler & Fergus
    §3); ``bias_rms``: RMS of the bias, None without one.
    """

    path: str
    module_type: str
    shape: tuple[int, ...]
    parameters: int
    rms: Tensor
    norm: Tensor
    cap: float
    fraction_above_cap: float
    max_abs: float
    bias_rms: float | None

    def summary(self) -> dict[str, Any]:
        """Plain numbers for a table or JSON: shape, RMS min/mean/median (the lower middle for
        an even count)/max, norms, share above the cap."""
        return {
            "layer": self.path,
            "type": self.module_type,
            "shape": "×".join(str(s) for s in self.shape),
            "filters": self.shape[0],
            "parameters": self.parameters,
            "rms_min": float(self.rms.min()),
            "rms_mean": float(self.rms.mean()),
            "rms_median": float(self.rms.median()),
            "rms_max": float(self.rms.max()),
            "norm_min": float(self.norm.min()),
            "norm_mean": float(self.norm.mean()),
            "norm_max": float(self.norm.max()),
            "max_abs": self.max_abs,
            f"fraction_rms_above_{self.cap:g}": self.fraction_above_cap,
            "bias_rms": self.bias_rms,
        }


def filter_statistics(model: nn.Module, *, cap: float = 0.1) -> list[FilterStats]:
    """:class:`FilterStats` for every ``Conv1d/2d/3d`` of ``model``, in registration order.

    >>> stats = filter_statistics(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()))
    >>> stats[0].path, stats[0].shape, len(stats[0].rms)
    ('0', (4, 1, 3, 3), 4)
    """
    if not isinstance(model, nn.Module):
        raise ParameterTypeError("model", "an nn.Module", model)
    if isinstance(cap, bool) or not isinstance(cap, int | float) or not cap > 0:
        raise ParameterError("cap", "a positive number", cap)
    out = []
    for name, module in model.named_modules():
        if not isinstance(module, _CONVS):
            continue
        w = module.weight.detach().to(torch.float64)
        rms = filter_rms(w)
        bias = module.bias
        out.append(
            FilterStats(
                path=name,
                module_type=type(module).__name__,
                shape=tuple(w.shape),
                parameters=w.numel() + (bias.numel() if bias is not None else 0),
                rms=rms,
                norm=torch.linalg.vector_norm(w.flatten(1), dim=1),
                cap=float(cap),
                fraction_above_cap=float((rms > cap).to(torch.float64).mean()),
                max_abs=float(w.abs().max()),
                bias_rms=(
                    float(bias.detach().to(torch.float64).pow(2).mean().sqrt())
                    if bias is not None
                    else None
                ),
            )
        )
    return out
