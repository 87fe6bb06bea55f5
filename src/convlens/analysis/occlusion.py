"""Occlusion sensitivity (Zeiler & Fergus, arXiv:1311.2901, §4.2, Fig. 7).

Slide a grey square over an image and, for every position of the square, record (b) the
total activation of one feature map — the one strongest in the unoccluded image — of a chosen
layer, (d) the probability of the correct class and (e) the most probable class. Panel (c),
that feature map's deconvnet projection for the unoccluded image, comes from
:func:`convlens.deconvnet.project`. Positions are evaluated in batches.

Squares start at ``0, stride, 2*stride, ...`` and stay inside the image, so the maps have
``(H - size) // stride + 1`` rows (likewise columns); entry ``[i, j]`` belongs to the square
whose top-left pixel is ``(i * stride, j * stride)``.

>>> import torch
>>> occlusion_positions((6, 6), 4, 2).tolist()
[[0, 0], [0, 2], [2, 0], [2, 2]]
>>> occlude(torch.ones(1, 3, 3), torch.tensor([[1, 1]]), 2, 0.0)[0, 0].tolist()
[[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convlens._utils import as_tuple
from convlens.deconvnet.project import eval_mode, project
from convlens.deconvnet.target import Target
from convlens.errors import ParameterError, ParameterTypeError
from convlens.layer_paths import find_module, reused_layer

__all__ = [
    "OcclusionResult",
    "default_layer",
    "occlude",
    "occlusion_grid_shape",
    "occlusion_maps",
    "occlusion_positions",
    "pixel_map",
]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def occlusion_grid_shape(
    image_size: int | Sequence[int], size: int | Sequence[int], stride: int | Sequence[int]
) -> tuple[int, int]:
    """The (rows, columns) of square positions on an image of ``image_size`` (H, W).

    >>> occlusion_grid_shape((28, 28), 8, 2)
    (11, 11)
    """
    image, square, step = _geometry(image_size, size, stride)
    return ((image[0] - square[0]) // step[0] + 1, (image[1] - square[1]) // step[1] + 1)


def _geometry(
    image_size: Any, size: Any, stride: Any
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    image = _pair(image_size, "image_size")
    square = _pair(size, "size")
    step = _pair(stride, "stride")
    if square[0] > image[0] or square[1] > image[1]:
        raise ParameterError("size", f"a square no larger than the image {image}", size)
    return image, square, step


def _pair(value: Any, name: str) -> tuple[int, ...]:
    pair = as_tuple(value, 2, name)
    if min(pair) < 1:
        raise ParameterError(name, "positive ints", value)
    return pair


@lru_cache(maxsize=64)
def _positions(image: tuple[int, ...], square: tuple[int, ...], step: tuple[int, ...]) -> Tensor:
    rows = torch.arange(0, image[0] - square[0] + 1, step[0])
    cols = torch.arange(0, image[1] - square[1] + 1, step[1])
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1)
    return grid.reshape(-1, 2)


def occlusion_positions(
    image_size: int | Sequence[int], size: int | Sequence[int], stride: int | Sequence[int]
) -> Tensor:
    """Top-left corners (row, col) of every square position, row-major: int64 (P, 2).

    >>> occlusion_positions(5, (2, 3), (3, 1)).tolist()
    [[0, 0], [0, 1], [0, 2], [3, 0], [3, 1], [3, 2]]
    """
    return _positions(*_geometry(image_size, size, stride)).clone()


def _fill_tensor(fill: Any, channels: int, like: Tensor) -> Tensor:
    value = torch.as_tensor(fill, dtype=like.dtype, device=like.device)
    if value.dim() == 0:
        return value
    if value.shape != (channels,):
        raise ParameterError("fill", f"a number or one value per channel ({channels})", fill)
    return value.view(channels, 1, 1)


def occlude(
    images: Tensor,
    positions: Tensor,
    size: int | Sequence[int],
    fill: float | Sequence[float] | Tensor = 0.0,
) -> Tensor:
    """Copies of ``images`` with a ``size`` square at each of ``positions`` set to ``fill``.

    ``images``: (C, H, W) gives (P, C, H, W); a batch (N, C, H, W) gives (N, P, C, H, W).
    ``fill`` is a number or one value per channel, in the same units as ``images`` (for a
    normalised model's input, grey is the normalised mean, i.e. 0).
    """
    if not isinstance(images, Tensor):
        raise ParameterTypeError("images", "a tensor (C, H, W) or (N, C, H, W)", images)
    if images.dim() not in (3, 4):
        raise ParameterError("images", "a tensor (C, H, W) or (N, C, H, W)", tuple(images.shape))
    square = _pair(size, "size")
    positions = torch.as_tensor(positions, dtype=torch.int64)
    if positions.dim() != 2 or positions.shape[1] != 2:
        raise ParameterError("positions", "an int tensor (P, 2)", tuple(positions.shape))
    height, width = images.shape[-2:]
    positions = positions.to(images.device)
    rows = torch.arange(height, device=images.device)
    cols = torch.arange(width, device=images.device)
    r0, c0 = positions[:, :1], positions[:, 1:]
    inside_r = (rows >= r0) & (rows < r0 + square[0])  # (P, H)
    inside_c = (cols >= c0) & (cols < c0 + square[1])  # (P, W)
    mask = (inside_r[:, :, None] & inside_c[:, None, :])[:, None]  # (P, 1, H, W)
    fill_value = _fill_tensor(fill, images.shape[-3], images)
    if images.dim() == 3:
        return torch.where(mask, fill_value, images.unsqueeze(0))
    return torch.where(mask.unsqueeze(0), fill_value, images.unsqueeze(1))


def pixel_map(
    values: Tensor, positions: Tensor, size: int | Sequence[int], image_size: Any
) -> Tensor:
    """Spread a per-position map over the pixels: each pixel gets the mean of the values of
    every square covering it (NaN where no square reaches). ``values``: (P,) or (rows, cols).

    >>> pixel_map(torch.tensor([1.0, 3.0]), torch.tensor([[0, 0], [0, 1]]), 1, (1, 3)).tolist()
    [[1.0, 3.0, nan]]
    """
    image = as_tuple(image_size, 2, "image_size")
    flat = values.reshape(-1).to(torch.float64)
    masks = occlude(torch.zeros(1, *image, dtype=torch.float64), positions, size, 1.0)[:, 0]
    count = masks.sum(0)
    total = (masks * flat.view(-1, 1, 1)).sum(0)
    return torch.where(count > 0, total / count.clamp(min=1), torch.nan).to(values.dtype)


@dataclass(frozen=True)
class OcclusionResult:
    """Figure 7 for one image.

    Maps are (rows, cols) over square positions (``positions`` (P, 2) in row-major order):
    ``activation`` (b) the summed activation of feature map ``channel`` of ``layer``;
    ``probability`` (d) the probability of class ``label``; ``predicted`` (e) the most probable
    class and ``predicted_probability`` its probability. ``unoccluded_*`` are the same values
    for the image without a square. ``projection`` (c): the deconvnet projection of the
    strongest activation of that feature map in the unoccluded image, (C, H, W), or None when
    it was not asked for.
    """

    layer: str
    channel: int
    label: int
    image_size: tuple[int, int]
    size: tuple[int, int]
    stride: tuple[int, int]
    fill: Any
    positions: Tensor
    activation: Tensor
    probability: Tensor
    predicted: Tensor
    predicted_probability: Tensor
    unoccluded_activation: float
    unoccluded_probability: float
    unoccluded_predicted: int
    projection: Tensor | None = None

    def pixel_map(self, name: str = "probability") -> Tensor:
        """One of the float maps spread over the image's pixels (see :func:`pixel_map`)."""
        if name not in ("activation", "probability", "predicted_probability"):
            raise ParameterError(
                "name", "'activation', 'probability' or 'predicted_probability'", name
            )
        return pixel_map(getattr(self, name), self.positions, self.size, self.image_size)


def default_layer(model: nn.Module) -> str:
    """The module path whose output occlusion watches by default: the last conv layer, or
    the ReLU right after it when there is one (its output is the rectified feature map).

    >>> default_layer(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten()))
    '1'
    """
    leaves = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    convs = [i for i, (_, m) in enumerate(leaves) if isinstance(m, _CONVS)]
    if not convs:
        raise ParameterError("model", "a model with a conv layer", type(model).__name__)
    last = convs[-1]
    if last + 1 < len(leaves) and isinstance(leaves[last + 1][1], nn.ReLU):
        return leaves[last + 1][0]
    return leaves[last][0]


@contextlib.contextmanager
def _capture(model: nn.Module, layer: str) -> Iterator[list[Tensor]]:
    """Record (a copy of) the output of module ``layer`` during forward passes; the hook is
    removed on exit, also when the forward pass raises."""
    module = find_module(model, layer, "layer")
    store: list[Tensor] = []

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        if not isinstance(output, Tensor):
            raise ParameterError("layer", "a module whose output is a tensor", layer)
        store.append(output.detach().clone())

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def _forward(model: nn.Module, layer: str, batch: Tensor) -> tuple[Tensor, Tensor]:
    with _capture(model, layer) as store:
        logits = model(batch)
    if not store:
        raise ParameterError("layer", "a module the forward pass runs", layer)
    if len(store) > 1:  # no one output: refused as everywhere (scan, project, invariance)
        raise reused_layer(layer, len(store))
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        raise ParameterError("model", "a model returning logits (N, classes)", type(logits))
    return store[0], logits


def occlusion_maps(
    model: nn.Module,
    image: Tensor,
    label: int,
    *,
    layer: str | None = None,
    size: int | Sequence[int] = 8,
    stride: int | Sequence[int] = 2,
    fill: float | Sequence[float] | Tensor = 0.0,
    batch_size: int = 64,
    channel: int | None = None,
    project: bool = True,
) -> OcclusionResult:
    """Occlusion sensitivity of ``model`` for one ``image`` (C, H, W) of class ``label``.

    ``layer``: module path whose feature map is watched (default :func:`default_layer`);
    ``channel``: the feature map (default: the one with the largest activation in the
    unoccluded image). ``size``/``stride``/``fill`` define the square (``fill`` in the
    model's input units: 0 is grey for a mean-normalised input). ``batch_size`` positions run
    per forward pass. ``project``: also compute panel (c) with the deconvnet. The model runs in
    eval mode under ``torch.no_grad``; its flags are restored after.
    Zeiler & Fergus, arXiv:1311.2901, §4.2.
    """
    if not isinstance(image, Tensor) or image.dim() != 3:
        shown = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ParameterError("image", "one image tensor (C, H, W)", shown)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ParameterError("batch_size", "a positive int", batch_size)
    if isinstance(label, bool) or not isinstance(label, int):
        raise ParameterTypeError("label", "a class index (int)", label)
    image_size, square, step = _geometry(tuple(image.shape[-2:]), size, stride)
    positions = _positions(image_size, square, step)
    grid = occlusion_grid_shape(image_size, square, step)
    layer = default_layer(model) if layer is None else layer
    with eval_mode(model), torch.no_grad():
        feature, logits = _forward(model, layer, image.unsqueeze(0))
        if not 0 <= label < logits.shape[1]:
            raise ParameterError("label", f"a class index in [0, {logits.shape[1]})", label)
        if feature.dim() < 2:
            raise ParameterError("layer", "a layer with channels (N, C, ...)", layer)
        per_channel_max = feature[0].flatten(1).amax(1)
        if channel is None:
            channel = int(per_channel_max.argmax())
        elif not 0 <= channel < feature.shape[1]:
            raise ParameterError("channel", f"a channel in [0, {feature.shape[1]})", channel)
        probs = F.softmax(logits[0].to(torch.float64), 0)
        base = (
            float(feature[0, channel].sum()),
            float(probs[label]),
            int(probs.argmax()),
        )
        activation, probability, predicted, top = [], [], [], []
        for start in range(0, len(positions), batch_size):
            batch = occlude(image, positions[start : start + batch_size], square, fill)
            feature, logits = _forward(model, layer, batch)
            activation.append(feature[:, channel].flatten(1).sum(1))
            p = F.softmax(logits.to(torch.float64), 1)
            probability.append(p[:, label])
            best = p.max(1)
            predicted.append(best.indices)
            top.append(best.values)
    projection = _projection(model, image, layer, channel) if project else None
    return OcclusionResult(
        layer=layer,
        channel=channel,
        label=label,
        image_size=(image_size[0], image_size[1]),
        size=(square[0], square[1]),
        stride=(step[0], step[1]),
        fill=fill,
        positions=positions.clone(),
        activation=torch.cat(activation).view(grid),
        probability=torch.cat(probability).view(grid),
        predicted=torch.cat(predicted).view(grid),
        predicted_probability=torch.cat(top).view(grid),
        unoccluded_activation=base[0],
        unoccluded_probability=base[1],
        unoccluded_predicted=base[2],
        projection=projection,
    )


def _projection(model: nn.Module, image: Tensor, layer: str, channel: int) -> Tensor:
    result = project(model, image.unsqueeze(0), [Target(layer, channel, "max")])
    return result.projections[0, 0]
