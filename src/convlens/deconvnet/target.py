"""What to project: one channel of one layer, at one position, its strongest unit, or the whole map.

Zeiler & Fergus (arXiv:1311.2901, §2.1) keep the chosen activation's own value and set every
other activation of the layer to zero before passing the maps down. :func:`select` builds that
signal from a layer output for a batch of targets.

>>> import torch
>>> act = torch.tensor([[[[1.0, 5.0], [2.0, 0.0]]]])
>>> signal, values, positions = select(act, [Target("conv", 0)])
>>> signal[0, 0].tolist(), values.tolist(), positions.tolist()
([[0.0, 5.0], [0.0, 0.0]], [[5.0]], [[[0, 1]]])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from convlens.choices import SEEDS
from convlens.errors import ParameterError, ParameterTypeError

__all__ = [
    "POSITIONS",
    "SEEDS",
    "Position",
    "Target",
    "as_targets",
    "check_seed",
    "locate",
    "seed_values",
    "select",
]

#: The named positions: the strongest unit of the map, or the whole map.
POSITIONS = ("max", "map")
Position = Literal["max", "map"] | tuple[int, ...]


@dataclass(frozen=True)
class Target:
    """One channel of the layer named ``layer`` (a path of ``model.named_modules()``).

    ``position`` is ``"max"`` (the strongest activation of that feature map, per input; the
    paper's top-9 setting), an index tuple into the map's spatial dimensions, or ``"map"``
    (every activation of the map keeps its value). What is projected is the output of the
    module at ``layer``, whatever its type (conv, ReLU, pool...).

    >>> Target("features.28", 12, position=(3, 4))
    Target(layer='features.28', channel=12, position=(3, 4))
    """

    layer: str
    channel: int
    position: Position = "max"

    def __post_init__(self) -> None:
        if not isinstance(self.layer, str):
            raise ParameterTypeError("layer", "a module path (str)", self.layer)
        if isinstance(self.channel, bool) or not isinstance(self.channel, int):
            raise ParameterTypeError("channel", "a non-negative int", self.channel)
        if self.channel < 0:
            raise ParameterError("channel", "a non-negative int", self.channel)
        pos = self.position
        if isinstance(pos, str):
            if pos not in POSITIONS:
                raise ParameterError("position", "'max', 'map' or a tuple of ints", pos)
            return
        if isinstance(pos, Sequence) and all(
            isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in pos
        ):
            object.__setattr__(self, "position", tuple(pos))
            return
        raise ParameterError("position", "'max', 'map' or a tuple of non-negative ints", pos)


def check_seed(seed: Any, param: str = "seed") -> str:
    """``seed`` if it is one of :data:`SEEDS`, else a :class:`~convlens.errors.ParameterError`
    naming ``param``.

    >>> check_seed("one")
    'one'
    """
    if not isinstance(seed, str) or seed not in SEEDS:
        raise ParameterError(param, f"one of {', '.join(SEEDS)}", seed)
    return seed


def seed_values(values: Tensor, seed: str) -> Tensor:
    """What the chosen activations ``values`` become in the signal under ``seed``.

    >>> seed_values(torch.tensor([-2.0, 3.0]), "one").tolist()
    [1.0, 1.0]
    """
    return values if seed == "value" else torch.ones_like(values)


def as_targets(targets: Any) -> list[Target]:
    """``targets`` (one :class:`Target` or a sequence of them) as a non-empty list."""
    if isinstance(targets, Target):
        return [targets]
    if isinstance(targets, Sequence) and not isinstance(targets, str):
        items = list(targets)
        if items and all(isinstance(t, Target) for t in items):
            return items
    raise ParameterError("targets", "a Target or a non-empty sequence of Targets", targets)


def locate(
    activation: Tensor, targets: Sequence[Target]
) -> tuple[Tensor, Tensor, list[tuple[int, Tensor]]]:
    """The units of ``targets`` on one layer output ``activation`` (N, C, *spatial), without
    building the signal: ``values`` (N, T) and ``positions`` (N, T, spatial dims) as
    :func:`select` returns them, and per target ``(channel, index)`` with ``index`` (N,
    spatial dims) the unit of each input (empty for ``"map"``).

    >>> values, positions, _ = locate(torch.tensor([[[1.0, 5.0, 2.0]]]), [Target("x", 0)])
    >>> values.tolist(), positions.tolist()
    ([[5.0]], [[[1]]])
    """
    if activation.dim() < 2:
        raise ParameterError("layer output", "a tensor (N, C, *spatial)", tuple(activation.shape))
    n, c = activation.shape[:2]
    spatial = tuple(activation.shape[2:])
    values = activation.new_zeros((n, len(targets)))
    positions = torch.full((n, len(targets), len(spatial)), -1, dtype=torch.long)
    units: list[tuple[int, Tensor]] = []
    for t, target in enumerate(targets):
        if target.channel >= c:
            raise ParameterError(
                "channel",
                f"a channel of layer {target.layer!r}, which has {c} (0..{c - 1})",
                target.channel,
            )
        fmap = activation[:, target.channel]  # (N, *spatial)
        if target.position == "map":
            values[:, t] = fmap.reshape(n, -1).sum(1)
            units.append((target.channel, torch.zeros((0, len(spatial)), dtype=torch.long)))
            continue
        if target.position == "max":
            flat = fmap.reshape(n, -1).argmax(1)
            idx = (
                torch.stack(torch.unravel_index(flat, spatial), 1)
                if spatial
                else flat.new_zeros((n, 0))
            )
        else:
            pos = tuple(target.position)
            if len(pos) != len(spatial) or any(p >= s for p, s in zip(pos, spatial)):
                raise ParameterError(
                    "position",
                    f"an index into the spatial size {spatial} of layer {target.layer!r}",
                    pos,
                )
            idx = torch.tensor(pos, dtype=torch.long).expand(n, len(spatial))
        idx = idx.to(activation.device)
        key: tuple[Tensor, ...] = (torch.arange(n, device=activation.device), *idx.unbind(1))
        values[:, t] = fmap[key]
        positions[:, t] = idx.cpu()
        units.append((target.channel, idx))
    return values, positions, units


def select(
    activation: Tensor, targets: Sequence[Target], seed: str = "value"
) -> tuple[Tensor, Tensor, Tensor]:
    """The backward signals of ``targets`` on one layer output ``activation`` (N, C, *spatial).

    Returns ``signal`` (N*T, C, *spatial), rows ordered sample-major (row ``n*T + t``), where
    the chosen activation keeps its value (``seed="one"``: is 1; see :data:`SEEDS`) and all
    others are zero; ``values`` (N, T): the
    chosen activation (for ``"map"`` the sum of the map); ``positions`` (N, T, spatial dims):
    the index of the chosen unit (``-1`` for ``"map"``). Ties under ``"max"`` go to the first
    unit in C order, as :func:`torch.argmax` picks them.

    >>> import torch
    >>> signal, values, _ = select(torch.ones(2, 3, 4), [Target("x", 2, "map"), Target("x", 0, (1,))])
    >>> signal.shape, values.tolist()
    (torch.Size([4, 3, 4]), [[4.0, 1.0], [4.0, 1.0]])
    """
    seed = check_seed(seed)
    values, positions, units = locate(activation, targets)
    n = activation.shape[0]
    t_count = len(targets)
    signal = activation.new_zeros((n, t_count, *activation.shape[1:]))
    rows = torch.arange(n, device=activation.device)
    for t, (target, (channel, idx)) in enumerate(zip(targets, units)):
        if target.position == "map":
            signal[:, t, channel] = seed_values(activation[:, channel], seed)
            continue
        index = (rows, *idx.unbind(1))
        signal[:, t, channel][index] = seed_values(values[:, t], seed)
    return signal.reshape(n * t_count, *activation.shape[1:]), values, positions
