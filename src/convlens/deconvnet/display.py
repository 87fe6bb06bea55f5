"""Showing a projection the way Zeiler & Fergus do: each one contrast-stretched on its own.

A projection is a signed signal in the model's input space (normalised pixels). For display,
each projection is scaled by its own largest magnitude and shifted so that zero is mid-grey:
``x / (2 * max|x|) + 0.5``, which maps ``[-max|x|, max|x|]`` onto ``[0, 1]``. An all-zero
projection is uniformly mid-grey. Colours are not comparable between two pictures.

>>> import torch
>>> stretch(torch.tensor([[-2.0, 0.0, 1.0]])).tolist()
[[0.0, 0.5, 0.75]]
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from convlens.errors import ParameterError

__all__ = ["stretch", "to_image"]


def stretch(projection: Tensor) -> Tensor:
    """``projection / (2 * max|projection|) + 0.5``: zero at mid-grey, values in [0, 1].

    >>> stretch(torch.zeros(2, 2)).unique().tolist()
    [0.5]
    """
    x = projection.detach().to(torch.float64)
    peak = x.abs().max() if x.numel() else x.new_zeros(())
    if peak == 0 or not torch.isfinite(peak):
        return torch.full_like(x, 0.5)
    return x / (2 * peak) + 0.5


def to_image(projection: Tensor, *, scale: int = 1) -> Image.Image:
    """A projection (C, H, W) or (H, W) as an 8-bit picture, stretched by :func:`stretch`.

    Three channels become RGB (in the model's channel order), one channel grey; other
    channel counts are averaged to grey. ``scale`` enlarges by pixel repetition.

    >>> to_image(torch.randn(3, 4, 5), scale=2).size
    (10, 8)
    """
    if projection.dim() == 2:
        projection = projection.unsqueeze(0)
    if projection.dim() != 3:
        raise ParameterError("projection", "a tensor (C, H, W) or (H, W)", tuple(projection.shape))
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ParameterError("scale", "a positive int", scale)
    shown = stretch(projection)
    if shown.shape[0] != 3:
        shown = shown.mean(0, keepdim=True)
    pixels = (shown * 255).round().clamp(0, 255).to(torch.uint8)
    array = pixels.permute(1, 2, 0).numpy()
    if scale > 1:
        array = np.repeat(np.repeat(array, scale, 0), scale, 1)
    if array.shape[2] == 1:
        return Image.fromarray(np.ascontiguousarray(array[:, :, 0]))
    return Image.fromarray(np.ascontiguousarray(array))
