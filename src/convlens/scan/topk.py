"""Running top-k of feature-map maxima: the selection behind Zeiler & Fergus' Figure 2.

Zeiler & Fergus (arXiv:1311.2901, Fig. 2) show, for each feature map, the 9 images of the
validation set that activate it most, one entry per image: the maximum of the map. This module
keeps that selection as a running merge over batches. The order is total and explicit: a
higher value first, then a lower dataset index, so the result does not depend on the order in
which batches arrive or on how the dataset was split between processes.

>>> import torch
>>> state = empty_state(channels=2, k=2, ndim=1)
>>> fmap = torch.tensor([[[1.0, 3.0], [0.0, 0.0]], [[3.0, 2.0], [5.0, 5.0]]])
>>> values, positions = feature_maxima(fmap)
>>> state = merge(state, values, torch.tensor([10, 11]), positions)
>>> state.values.tolist(), state.indices.tolist(), state.positions[..., 0].tolist()
([[3.0, 3.0], [5.0, 0.0]], [[10, 11], [11, 10]], [[1, 0], [0, 0]])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from convlens.errors import ParameterError

__all__ = ["TopK", "empty_state", "feature_maxima", "merge", "merge_many"]

#: Dataset index of an empty slot (a channel that has seen fewer than k images).
EMPTY = -1
_BIG = torch.iinfo(torch.int64).max


@dataclass(frozen=True)
class TopK:
    """Per channel, the k strongest images: ``values (C, k)``, ``indices (C, k)`` (dataset
    index, -1 for an empty slot), ``positions (C, k, ndim)`` (the argmax in the feature map).
    Rows are sorted: value descending, then index ascending; empty slots last."""

    values: Tensor
    indices: Tensor
    positions: Tensor

    @property
    def k(self) -> int:
        return int(self.values.shape[1])

    @property
    def channels(self) -> int:
        return int(self.values.shape[0])

    def to(self, device: str | torch.device) -> TopK:
        return TopK(self.values.to(device), self.indices.to(device), self.positions.to(device))


def empty_state(channels: int, k: int, ndim: int, dtype: torch.dtype = torch.float32) -> TopK:
    """A top-k with every slot empty (value -inf, index -1, position 0)."""
    if k < 1:
        raise ParameterError("top", "a positive int", k)
    return TopK(
        torch.full((channels, k), float("-inf"), dtype=dtype),
        torch.full((channels, k), EMPTY, dtype=torch.int64),
        torch.zeros((channels, k, ndim), dtype=torch.int64),
    )


def feature_maxima(fmap: Tensor) -> tuple[Tensor, Tensor]:
    """Maximum of every feature map and its location: ``(N, C, *spatial)`` to values
    ``(N, C)`` and positions ``(N, C, ndim)``.

    Ties go to the first location in C order (row-major), computed explicitly rather than
    relying on ``argmax``'s tie behaviour; a NaN counts as the maximum.

    >>> v, p = feature_maxima(torch.tensor([[[[0.0, 2.0], [2.0, 1.0]]]]))
    >>> v.tolist(), p.tolist()
    ([[2.0]], [[[0, 1]]])
    """
    if fmap.dim() < 3:
        raise ParameterError("feature map", "a tensor (N, C, *spatial)", tuple(fmap.shape))
    n, c = fmap.shape[:2]
    spatial = tuple(fmap.shape[2:])
    flat = fmap.detach().reshape(n, c, -1)
    values = flat.amax(dim=2)
    hit = flat == values.unsqueeze(2)
    if values.dtype.is_floating_point:
        hit |= flat.isnan() & values.isnan().unsqueeze(2)
    order = torch.arange(flat.shape[2], device=flat.device)
    first = torch.where(hit, order, flat.shape[2]).amin(dim=2)
    positions = torch.empty((n, c, len(spatial)), dtype=torch.int64, device=flat.device)
    rest = first
    for d in range(len(spatial) - 1, -1, -1):
        positions[..., d] = rest % spatial[d]
        rest = rest // spatial[d]
    return values, positions


def _select(values: Tensor, indices: Tensor, positions: Tensor, k: int) -> TopK:
    """Keep the first ``k`` of each row under (value descending, index ascending)."""
    key = torch.where(indices < 0, _BIG, indices)
    by_index = torch.sort(key, dim=1, stable=True).indices
    v = values.gather(1, by_index)
    by_value = torch.sort(v, dim=1, descending=True, stable=True).indices[:, :k]
    order = by_index.gather(1, by_value)
    return TopK(
        values.gather(1, order),
        indices.gather(1, order),
        positions.gather(1, order.unsqueeze(2).expand(-1, -1, positions.shape[2])),
    )


def merge(state: TopK, values: Tensor, indices: Tensor, positions: Tensor) -> TopK:
    """Merge one batch of maxima into a running top-k.

    ``values (N, C)``, ``indices (N,)`` (dataset indices, distinct from those already kept)
    and ``positions (N, C, ndim)`` as :func:`feature_maxima` returns them.
    """
    n = values.shape[0]
    if n == 0:
        return state
    dev = state.values.device
    vals = torch.cat([state.values, values.to(dev, state.values.dtype).t()], dim=1)
    idx = torch.cat([state.indices, indices.to(dev).view(1, n).expand(state.channels, n)], dim=1)
    pos = torch.cat([state.positions, positions.to(dev).transpose(0, 1)], dim=1)
    return _select(vals, idx, pos, state.k)


def merge_many(states: list[TopK]) -> TopK:
    """Merge several top-k states of disjoint image sets (e.g. one per process) into one."""
    if not states:
        raise ParameterError("states", "at least one top-k state", states)
    k = states[0].k
    return _select(
        torch.cat([s.values for s in states], dim=1),
        torch.cat([s.indices for s in states], dim=1),
        torch.cat([s.positions for s in states], dim=1),
        k,
    )
