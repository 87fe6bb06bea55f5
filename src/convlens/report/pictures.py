"""Tensors as the report's pictures: uint8 pixel arrays ``(h, w)`` (grey) or ``(h, w, 3)``.

Projections are contrast-stretched each on its own with zero at mid-grey, as Zeiler & Fergus
show them (arXiv:1311.2901; :func:`convlens.deconvnet.display.to_image`); input patches are
mapped linearly from one value range for the whole report, so an image looks the same on
every page; maps (occlusion, Fig. 7) go through a matplotlib colour map and are placed on the
image's pixel grid. matplotlib is imported only by the functions that draw colour.

>>> import torch
>>> patch_pictures(torch.tensor([[[[0.0, 0.5, 1.0]]]]), 0.0, 1.0).tolist()
[[[0, 128, 255]]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from convlens.deconvnet.display import to_image

__all__ = [
    "OUTSIDE",
    "align_map",
    "class_colors",
    "colormap_picture",
    "hex_to_rgb",
    "patch_pictures",
    "projection_picture",
]

#: Colour of the image border that no square's centre reaches, in the aligned maps.
OUTSIDE = (230, 230, 230)


def projection_picture(projection: Tensor) -> np.ndarray:
    """A projection ``(C, *spatial)`` as uint8 pixels, contrast-stretched on its own with zero
    at mid-grey (the paper's display; :func:`convlens.deconvnet.display.stretch`).

    >>> projection_picture(torch.tensor([[[-1.0, 0.0, 2.0]]])).tolist()
    [[64, 128, 255]]
    """
    return np.asarray(to_image(projection.detach().cpu()))


def patch_pictures(patches: Tensor, low: float, high: float) -> np.ndarray:
    """Input patches ``(N, C, h, w)`` as uint8 pixels ``(N, h, w)`` or ``(N, h, w, 3)``,
    mapped linearly from ``[low, high]`` (channels other than 1 or 3 are averaged to grey)."""
    x = patches.detach().cpu().to(torch.float64)
    if x.shape[1] not in (1, 3):
        x = x.mean(1, keepdim=True)
    span = high - low if high > low else 1.0
    scaled = ((x - low) / span * 255).round().clamp(0, 255).to(torch.uint8)
    pixels: np.ndarray = scaled.permute(0, 2, 3, 1).numpy()
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def colormap_picture(values: Tensor, low: float, high: float, name: str = "viridis") -> np.ndarray:
    """A 2-D map as RGB uint8 through the matplotlib colour map ``name`` over ``[low, high]``.

    >>> colormap_picture(torch.tensor([[0.0, 1.0]]), 0.0, 1.0)[0].tolist()
    [[68, 1, 84], [253, 231, 37]]
    """
    from matplotlib import colormaps

    x = values.detach().cpu().to(torch.float64).numpy()
    span = high - low if high > low else 1.0
    rgba = colormaps[name](np.clip((x - low) / span, 0.0, 1.0))
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def align_map(cells: np.ndarray, size: int, stride: int, image_size: tuple[int, int]) -> np.ndarray:
    """Place a map over square positions ``(rows, cols, 3)`` on the image's pixel grid: cell
    ``(i, j)`` covers the ``stride``×``stride`` pixels around the centre of its square, so
    maps and image line up; the border no centre reaches is :data:`OUTSIDE`.

    >>> align_map(np.full((2, 2, 3), 9, np.uint8), 2, 1, (3, 3))[..., 0].tolist()
    [[9, 9, 230], [9, 9, 230], [230, 230, 230]]
    """
    height, width = image_size
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[...] = OUTSIDE
    big = cells.repeat(stride, 0).repeat(stride, 1)
    offset = max(0, (size - stride) // 2)
    h, w = min(big.shape[0], height - offset), min(big.shape[1], width - offset)
    canvas[offset : offset + h, offset : offset + w] = big[:h, :w]
    return canvas


def class_colors(classes: Sequence[int], num_classes: int | None) -> dict[int, str]:
    """Colours (matplotlib's tab10 / tab20) for the classes present in a map: by class index
    when the model has at most 20 classes (a class keeps its colour from image to image),
    else in order of appearance.

    >>> class_colors([3, 0], 10)
    {3: '#d62728', 0: '#1f77b4'}
    """
    from matplotlib import colormaps

    by_index = num_classes is not None and num_classes <= 20
    size = num_classes if by_index and num_classes is not None else len(classes)
    count = 10 if size <= 10 else 20
    palette = colormaps[f"tab{count}"]
    colors = {}
    for i, c in enumerate(classes):
        r, g, b, _ = palette((c if by_index else i) % count)
        colors[c] = f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"
    return colors


def hex_to_rgb(color: str) -> list[int]:
    """``"#rrggbb"`` as ``[r, g, b]``.

    >>> hex_to_rgb("#ff8000")
    [255, 128, 0]
    """
    return [int(color[i : i + 2], 16) for i in (1, 3, 5)]
