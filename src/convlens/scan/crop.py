"""Deconvnet projections of a scan's top-k, cut to each unit's receptive field.

For every kept (channel, image) of a scan (Zeiler & Fergus, arXiv:1311.2901, Fig. 2),
:func:`project_top` reads the image again from the dataset and projects the unit with the
receptive-field engine of :mod:`convlens.deconvnet.cone` (``crop``: both passes on the unit's
receptive field; ``cone``: the forward at full size, the reversed pass on the cone's windows)
or at full size with :func:`convlens.deconvnet.project` (``full``, any model), and cuts out the
image patch under the box. This module only orchestrates: dataset reads, batching of the
jobs, the tensors of the result.

>>> import torch, torch.nn as nn
>>> from convlens.scan.run import scan
>>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2))
>>> data = [(torch.randn(1, 10, 10), 0) for _ in range(4)]
>>> res = scan(net, data, ["2"], top=2, progress=False)
>>> project_top(net, data, res).layers["2"].method
'crop'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from convlens.choices import METHODS
from convlens.deconvnet import Target, project
from convlens.deconvnet.cone import (
    CroppedProjections,
    box_clips,
    can_crop,
    chain_of,
    chain_plan,
    cone_projections,
    cropped_projections,
    extract_windows,
)
from convlens.deconvnet.explicit import check_rule
from convlens.errors import ConvLensError, ParameterError
from convlens.loaded import eval_mode

__all__ = [
    "METHODS",
    "CroppedProjections",
    "LayerProjections",
    "TopProjections",
    "chain_of",
    "cone_projections",
    "cropped_projections",
    "extract_windows",
    "project_top",
]

# ---------------------------------------------------------------------------- top-k projections


@dataclass(frozen=True)
class LayerProjections:
    """Projections and patches of one layer's top-k, on receptive-field boxes.

    ``channels`` (the channels projected, in order), ``values``/``indices``/``positions`` as in
    the scan (rows = ``channels``), ``projections (C', k, Cin, *box)`` and
    ``patches (C', k, Cin, *box)`` (the input on the box, zero off the image), ``boxes
    (C', k, ndim, 2)`` (start, stop in input pixels, unclipped; -1 for empty slots), ``clips
    (C', k, ndim, 2)`` (pixels of the box before / after the image) and ``method``.
    """

    layer: str
    channels: list[int]
    values: Tensor
    indices: Tensor
    positions: Tensor
    projections: Tensor
    patches: Tensor
    boxes: Tensor
    clips: Tensor
    method: str


@dataclass
class TopProjections:
    """:func:`project_top`'s result: ``layers[path]`` is a :class:`LayerProjections`."""

    layers: dict[str, LayerProjections]
    rule: str

    def _repr_html_(self) -> str:
        """In a notebook: the Figure-2 grid, per channel its projections beside their patches."""
        from convlens.deconvnet.display import to_image
        from convlens.notebook import top_projections_html

        return top_projections_html(self, to_image)

    def _repr_png_(self) -> bytes | None:
        from convlens.deconvnet.display import to_image
        from convlens.notebook import top_projections_png

        return top_projections_png(self, to_image)


def _read(dataset: Any, index: int) -> Tensor:
    from convlens.scan.data import _first_tensor

    try:
        return _first_tensor(dataset[index])
    except Exception as exc:
        raise ParameterError(
            "dataset",
            f"item {index} readable again (it was scanned)",
            f"{type(exc).__name__}: {exc}",
        ) from exc


def _chain_or_none(model: nn.Module, layer: str) -> tuple[list[tuple[str, nn.Module]] | None, int]:
    try:
        chain = chain_of(model)
    except ConvLensError:
        return None, -1
    paths = [p for p, _ in chain]
    return (chain, paths.index(layer)) if layer in paths else (None, -1)


def project_top(
    model: Any,
    dataset: Any,
    result: Any,
    *,
    rule: str = "deconvnet",
    channels: Sequence[int] | None = None,
    layers: Sequence[str] | None = None,
    method: str = "auto",
    chunk: int = 128,
    max_images: int = 8,
    device: str | torch.device | None = None,
) -> TopProjections:
    """Deconvnet projections (Zeiler & Fergus, arXiv:1311.2901, Fig. 2) and image patches of
    every kept (channel, image) of a scan ``result``, cut to the unit's receptive field.

    ``method="crop"`` runs both passes on the receptive field only
    (:func:`cropped_projections`); ``"cone"`` runs the forward pass once per image at full size
    and the reversed pass on the cone's windows (:func:`cone_projections`); ``"full"``
    projects at full size (:func:`convlens.deconvnet.project`, any model, rules engine where
    the model is no chain) and cuts the box out; ``"auto"``: ``crop`` where the box is at
    most half the input, else ``cone``, and ``full`` where the model is no chain of conv,
    max-pool and pointwise layers. All give the same numbers. Images are read again from
    ``dataset`` by their index, at most ``max_images`` at a time for ``cone``/``full``.

    >>> import torch, torch.nn as nn
    >>> from convlens.scan.run import scan
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2))
    >>> data = [(torch.randn(1, 10, 10), 0) for _ in range(4)]
    >>> res = scan(net, data, ["2"], top=2, progress=False)
    >>> tp = project_top(net, data, res)
    >>> tp.layers["2"].projections.shape, tp.layers["2"].boxes.shape
    (torch.Size([2, 2, 1, 4, 4]), torch.Size([2, 2, 2, 2]))
    """
    rule = check_rule(rule)
    if method not in METHODS:
        raise ParameterError("method", f"one of {', '.join(METHODS)}", method)
    net = model if isinstance(model, nn.Module) else getattr(model, "model", None)
    if not isinstance(net, nn.Module):
        raise ParameterError("model", "an nn.Module or a LoadedModel", type(model).__name__)
    names = list(result.layers) if layers is None else list(layers)
    for name in names:
        if name not in result.layers:
            raise ParameterError("layers", f"scanned layers ({', '.join(result.layers)})", name)
    if device is None:
        first = next(net.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    out: dict[str, LayerProjections] = {}
    with eval_mode(net):
        for name in names:
            out[name] = _project_layer(
                net,
                dataset,
                name,
                result.layers[name],
                rule,
                channels,
                method,
                chunk,
                max_images,
                torch.device(device),
            )
    return TopProjections(out, rule)


def _project_layer(
    net: nn.Module,
    dataset: Any,
    layer: str,
    top: Any,
    rule: str,
    channels: Sequence[int] | None,
    method: str,
    chunk: int,
    max_images: int,
    device: torch.device,
) -> LayerProjections:
    n_ch, k = top.values.shape
    chosen = list(range(n_ch)) if channels is None else [int(c) for c in channels]
    for c in chosen:
        if not 0 <= c < n_ch:
            raise ParameterError("channels", f"channels of {layer!r} (0..{n_ch - 1})", c)
    ndim = int(top.positions.shape[2])
    jobs = [
        (ci, j, int(top.indices[c, j]), chosen[ci], tuple(int(v) for v in top.positions[c, j]))
        for ci, c in enumerate(chosen)
        for j in range(k)
        if int(top.indices[c, j]) >= 0
    ]
    first = _read(dataset, jobs[0][2]) if jobs else None
    chain, upto = _chain_or_none(net, layer)
    dtype = next((p.dtype for p in net.parameters()), torch.float32)
    plan = None
    if chain is not None and first is not None and can_crop(chain, upto):
        try:
            plan = chain_plan(chain, upto, tuple(first.shape[1:]))
        except ParameterError:  # a geometry too small for this input
            plan = None
    croppable = plan is not None
    use = method
    if method == "auto" and first is not None:
        small = plan is not None and math.prod(plan.box_size) * 2 <= math.prod(first.shape[1:])
        use = ("crop" if small else "cone") if croppable else "full"
    if use in ("crop", "cone") and not croppable:
        raise ParameterError(
            "method",
            "'full' or 'auto' for this model ('crop' and 'cone' need a chain of conv, max-pool "
            "and pointwise layers)",
            method,
        )
    box_size = (
        plan.box_size
        if plan is not None
        else tuple(first.shape[1:])
        if first is not None
        else (1,) * ndim
    )
    cin = int(first.shape[0]) if first is not None else 1
    shape = (len(chosen), k)
    projections = torch.zeros((*shape, cin, *box_size), dtype=dtype)
    patches = torch.zeros_like(projections)
    boxes = torch.full((*shape, ndim, 2), -1, dtype=torch.long)
    clips = torch.zeros((*shape, ndim, 2), dtype=torch.long)
    if use != "crop":  # one forward per image: keep an image's targets together
        jobs.sort(key=lambda job: job[2])
    for part in _chunks(jobs, chunk, chunk if use == "crop" else max_images):
        unique = sorted({j[2] for j in part})
        row_of = {idx: r for r, idx in enumerate(unique)}
        images = torch.stack([_read(dataset, i) for i in unique]).to(device, dtype)
        rows = torch.tensor([row_of[j[2]] for j in part])
        units = torch.tensor([list(j[4]) for j in part], dtype=torch.long).view(-1, ndim)
        starts = plan.box_start(units) if plan is not None else torch.zeros_like(units)
        stops = starts + torch.tensor(box_size)
        size = torch.tensor(tuple(images.shape[2:]))
        if use in ("crop", "cone"):
            assert chain is not None
            run = cropped_projections if use == "crop" else cone_projections
            res = run(
                chain,
                images,
                layer,
                [(int(r), j[3], j[4]) for r, j in zip(rows, part)],
                rule=rule,
                chunk=chunk if use == "crop" else 32,
            )
            scanned = torch.stack([top.values[chosen[j[0]], j[1]] for j in part])
            if not _agrees(res.values.cpu(), scanned):
                # the model's forward is not this chain (it flips, scales or branches):
                # the chain's projections would not be the model's
                if method == "auto":
                    return _project_layer(
                        net, dataset, layer, top, rule, channels, "full", chunk, max_images, device
                    )
                raise ParameterError(
                    "method",
                    "'full' or 'auto' for a model whose forward does not run its layers as a "
                    f"chain (the chain's activations of {layer!r} differ from the scanned ones)",
                    method,
                )
            proj = res.projections
        else:
            proj_rows = []
            for r in range(len(unique)):
                members = [t for t in range(len(part)) if int(rows[t]) == r]
                targets = [Target(layer, part[t][3], part[t][4]) for t in members]
                full = project(
                    net, images[r : r + 1], targets, rule=rule, method="full"
                ).projections[0]
                proj_rows.append((members, full))
            proj = torch.zeros((len(part), cin, *box_size), dtype=dtype, device=device)
            for members, full in proj_rows:
                index = torch.tensor(members)
                proj[index] = extract_windows(full, starts[index].to(device), box_size)
        patch = extract_windows(images, starts.to(device), box_size, rows=rows)
        for t, job in enumerate(part):
            ci, j = job[0], job[1]
            projections[ci, j] = proj[t].cpu()
            patches[ci, j] = patch[t].cpu()
            boxes[ci, j, :, 0] = starts[t]
            boxes[ci, j, :, 1] = stops[t]
            clips[ci, j] = box_clips(starts[t : t + 1], stops[t : t + 1], size)[0]
    sel = torch.tensor(chosen, dtype=torch.long)
    return LayerProjections(
        layer,
        chosen,
        top.values[sel],
        top.indices[sel],
        top.positions[sel],
        projections,
        patches,
        boxes,
        clips,
        use,
    )


def _agrees(computed: Tensor, scanned: Tensor) -> bool:
    """The chain's unit activations equal the scan's (the model's forward), up to rounding
    (loose enough for TF32 convolutions on a GPU; a flipped or rescaled input is far off)."""
    scale = float(scanned.abs().max()) if scanned.numel() else 0.0
    return bool(torch.allclose(computed.to(scanned.dtype), scanned, rtol=1e-3, atol=1e-3 * scale))


def _chunks(jobs: list[Any], size: int, max_images: int) -> list[list[Any]]:
    """Consecutive runs of at most ``size`` jobs touching at most ``max_images`` images."""
    out: list[list[Any]] = []
    current: list[Any] = []
    images: set[int] = set()
    for job in jobs:
        if current and (
            len(current) >= size or (job[2] not in images and len(images) >= max_images)
        ):
            out.append(current)
            current, images = [], set()
        current.append(job)
        images.add(job[2])
    if current:
        out.append(current)
    return out
