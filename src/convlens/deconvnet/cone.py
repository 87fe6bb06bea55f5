"""Deconvnet projections of single units computed on their receptive field only.

One activation depends only on the input pixels of its receptive field, and its projection is
zero outside it. So the forward pass that records the switches and ReLU signs, and the
reversed pass of the deconvnet (Zeiler & Fergus, arXiv:1311.2901, §2.1), can both run on the
unit's *cone*: at every layer, the window of that layer's map that the unit depends on. The
windows are receptive fields of the chain's tail (:func:`convlens.arithmetic.receptive_fields`:
jump, first pixel and size of the target layer's units in each layer's input).

Each window is run with the layer's own padding removed; the padding is put back by hand, and
only where the window meets the true border of that layer's map (zeros before a conv,
``-inf`` before a max pool, as PyTorch pads). Positions of a window beyond the padded map feed
only units outside the map, which are masked again before the next layer. Windows start at
``unit * jump + first``, so the stride phases are those of the full-size pass, and the windows
of one layer have one size whatever the unit, so the targets of a layer run as one batch. On
the way back the signal is cut to the true map after every layer, exactly what the full-size
pass discards as padding. The per-layer forward and backward, and the per-layer states
(:class:`~convlens.deconvnet.explicit.ReluState`, ``PoolState``, ``ConvState``), are those of
the explicit engine (:mod:`convlens.deconvnet.explicit`).

Two schemes give the same numbers: :func:`cropped_projections` runs both passes on the windows
(``crop``); :func:`cone_backward` / :func:`cone_projections` run the forward pass once per input
at full size and only the reversed pass on the windows, cutting the states out of the full-size
ones (``cone``).

>>> import torch, torch.nn as nn
>>> net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)).double()
>>> chain = chain_of(net)
>>> x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
>>> out = cropped_projections(chain, x, "2", [(0, 1, (0, 3)), (1, 0, (2, 2))], rule="deconvnet")
>>> out.projections.shape, out.boxes[0].tolist()
(torch.Size([2, 1, 4, 4]), [[-1, 3], [5, 9]])
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from convlens.arithmetic import LayerSpec, is_geometric, receptive_fields
from convlens.deconvnet.explicit import (
    ConvState,
    PoolState,
    ReluState,
    State,
    chain_of,
    check_chain,
    check_rule,
    forward_chain,
    layer_backward,
    layer_forward,
    with_switch_grid,
)
from convlens.deconvnet.target import check_seed, seed_values
from convlens.errors import ParameterError, UnsupportedModuleError

__all__ = [
    "CropPlan",
    "CroppedProjections",
    "box_clips",
    "can_crop",
    "chain_of",
    "chain_plan",
    "check_crop",
    "cone_backward",
    "cone_projections",
    "cone_saves",
    "crop_plan",
    "cropped_projections",
    "embed_windows",
    "extract_windows",
    "window_bytes",
]

_MAX = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)

Chain = Sequence[tuple[str, nn.Module]]
UnitTarget = tuple[int, int, Sequence[int]]


@dataclass(frozen=True)
class CropPlan:
    """The windows of a unit's cone, per chain layer up to the target layer ``upto``.

    For layer ``i``: the window of its *input* map starts at ``unit * in_jump[i] +
    in_offset[i]`` and has ``in_size[i]`` samples per dimension; its input map has
    ``map_size[i]`` samples. ``box_*`` is the window at the chain's input (the receptive field).
    """

    upto: int
    in_jump: tuple[tuple[int, ...], ...]
    in_offset: tuple[tuple[int, ...], ...]
    in_size: tuple[tuple[int, ...], ...]
    map_size: tuple[tuple[int, ...], ...]
    geometric: tuple[bool, ...]
    out_map_size: tuple[int, ...]

    @property
    def box_size(self) -> tuple[int, ...]:
        return self.in_size[0]

    def box_start(self, unit: Tensor) -> Tensor:
        """Receptive-field start (T, ndim) for units ``unit`` (T, ndim)."""
        return unit * torch.tensor(self.in_jump[0]) + torch.tensor(self.in_offset[0])

    def starts(self, unit: Tensor) -> list[Tensor]:
        """Per layer, the start (T, ndim) of each unit's window of that layer's input."""
        dev = unit.device
        return [
            unit * torch.tensor(j, device=dev) + torch.tensor(o, device=dev)
            for j, o in zip(self.in_jump, self.in_offset)
        ]


def can_crop(chain: Chain, upto: int) -> bool:
    """Whether the cropped scheme applies: conv (zero padding), max pool and pointwise layers
    of the explicit engine (average pooling's divisor at borders is not reproduced).

    >>> can_crop(chain_of(nn.Sequential(nn.Conv2d(1, 1, 3), nn.AvgPool2d(2))), 1)
    False
    """
    try:
        check_chain(chain, upto)
    except UnsupportedModuleError:
        return False
    return all(not is_geometric(m) or isinstance(m, (*_CONV, *_MAX)) for _, m in chain[: upto + 1])


def check_crop(chain: Chain, layer: str) -> int:
    """The index of ``layer`` in ``chain``; errors when the layer is not in the chain or a layer
    up to it cannot be cropped (:class:`~convlens.errors.UnsupportedModuleError` names it)."""
    paths = [p for p, _ in chain]
    if layer not in paths:
        raise ParameterError("layer", "a layer of the chain, one of: " + ", ".join(paths), layer)
    upto = paths.index(layer)
    check_chain(chain, upto)  # names an unsupported module, if that is the reason
    for path, module in chain[: upto + 1]:
        if is_geometric(module) and not isinstance(module, (*_CONV, *_MAX)):
            raise UnsupportedModuleError(
                path,
                type(module).__name__,
                ["Conv1/2/3d", "MaxPool1/2/3d"],
                "receptive-field cropping",
            )
    return upto


@functools.lru_cache(maxsize=256)
def crop_plan(specs: tuple[LayerSpec | None, ...], input_size: tuple[int, ...]) -> CropPlan:
    """The cone windows for a chain whose layers have geometry ``specs`` (None: pointwise),
    the last one being the target layer, on inputs of spatial size ``input_size``.

    The window of layer ``i``'s input is the receptive field of the target's units in that
    map: :func:`~convlens.arithmetic.receptive_fields` of the chain from layer ``i`` on.

    >>> plan = crop_plan((LayerSpec.conv(3, padding=1), None, LayerSpec.max_pool(2)), (8, 8))
    >>> plan.box_size, plan.in_jump[0], plan.in_offset[0], plan.out_map_size
    ((4, 4), (2, 2), (-1, -1), (4, 4))
    """
    ndim = len(input_size)
    geometric = [(str(i), s) for i, s in enumerate(specs) if s is not None]
    fields = {int(f.path): f for f in receptive_fields(geometric, input_size)} if geometric else {}
    sizes = [tuple(input_size)]
    for i, spec in enumerate(specs):
        out = fields[i].output_size if spec is not None else sizes[-1]
        assert out is not None  # receptive_fields was given the input size
        sizes.append(tuple(out))
    in_jump, in_offset, in_size = [], [], []
    for i in range(len(specs)):
        tail = [(p, s) for p, s in geometric if int(p) >= i]
        if tail:
            field = receptive_fields(tail)[-1]
            in_jump.append(field.jump)
            in_offset.append(field.first)
            in_size.append(field.size)
        else:  # pointwise layers only up to the target: the unit itself
            in_jump.append((1,) * ndim)
            in_offset.append((0,) * ndim)
            in_size.append((1,) * ndim)
    return CropPlan(
        upto=len(specs) - 1,
        in_jump=tuple(in_jump),
        in_offset=tuple(in_offset),
        in_size=tuple(in_size),
        map_size=tuple(sizes[:-1]),
        geometric=tuple(s is not None for s in specs),
        out_map_size=sizes[-1],
    )


def chain_plan(chain: Chain, upto: int, input_size: Sequence[int]) -> CropPlan:
    """:func:`crop_plan` for ``chain[: upto + 1]`` on inputs of spatial size ``input_size``.

    >>> net = nn.Sequential(nn.Conv2d(1, 2, 5), nn.ReLU(), nn.MaxPool2d(2))
    >>> chain_plan(chain_of(net), 2, (12, 12)).box_size
    (6, 6)
    """
    specs = tuple(
        LayerSpec.from_module(m) if is_geometric(m) else None for _, m in chain[: upto + 1]
    )
    return crop_plan(specs, tuple(int(s) for s in input_size))


def cone_saves(chain: Chain, plan: CropPlan, c_in: int) -> bool:
    """Whether the reversed pass on the cone's windows touches fewer samples than at full size
    (summed over layers, all channels): windows include the padding around a map, so for deep
    layers on small inputs they can exceed the map.

    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    >>> cone_saves(chain_of(net), chain_plan(chain_of(net), 2, (32, 32)), 1)
    True
    """
    channels = _channels(chain, plan.upto, c_in)
    window = sum(c * math.prod(s) for c, s in zip(channels, plan.in_size))
    full = sum(c * math.prod(s) for c, s in zip(channels, plan.map_size))
    return window < full


def _unpadded(module: nn.Module) -> nn.Module:
    """A shallow copy of a conv / max pool sharing its weights, without padding or ceil_mode."""
    twin: Any = copy.copy(module)
    n = LayerSpec.from_module(module).ndim
    twin.padding = (0,) * n if isinstance(module, _CONV) else 0
    if isinstance(module, _MAX):
        twin.ceil_mode = False
    return twin


def extract_windows(
    x: Tensor,
    starts: Tensor,
    size: Sequence[int],
    fill: float = 0.0,
    rows: Tensor | None = None,
) -> Tensor:
    """Windows of ``x`` (N, C, *spatial): window ``t`` is cut from ``x[rows[t]]`` (default:
    ``x[t]``, or ``x[0]`` when ``x`` has one row) from ``starts[t]`` (T, ndim) for ``size``
    samples, ``fill`` where the window runs off the map.

    >>> extract_windows(torch.arange(4.0).view(1, 1, 4), torch.tensor([[-1], [2]]), (3,)).tolist()
    [[[0.0, 0.0, 1.0]], [[2.0, 3.0, 0.0]]]
    """
    t_count = starts.shape[0]
    out = torch.full((t_count, x.shape[1], *size), fill, dtype=x.dtype, device=x.device)
    sources = rows.tolist() if rows is not None else None
    for t, pair in enumerate(_overlaps(starts, size, tuple(x.shape[2:]))):
        if pair is None:
            continue
        dst, src = pair
        src_row = sources[t] if sources is not None else (t if x.shape[0] > 1 else 0)
        key_dst: tuple[Any, ...] = (t, slice(None), *dst)
        key_src: tuple[Any, ...] = (src_row, slice(None), *src)
        out[key_dst] = x[key_src]
    return out


def embed_windows(canvas: Tensor, windows: Tensor, starts: Tensor, rows: Tensor) -> Tensor:
    """Write each window ``windows[t]`` (C, *size) into ``canvas[rows[t]]`` (C, *spatial) at
    ``starts[t]``, the parts off the canvas left out (the inverse of :func:`extract_windows`).
    Returns ``canvas``, changed in place.

    >>> embed_windows(torch.zeros(1, 1, 4), torch.ones(1, 1, 3), torch.tensor([[-1]]), torch.tensor([0])).tolist()
    [[[1.0, 1.0, 0.0, 0.0]]]
    """
    size = tuple(windows.shape[2:])
    targets = rows.tolist()
    for t, pair in enumerate(_overlaps(starts, size, tuple(canvas.shape[2:]))):
        if pair is not None:
            dst, src = pair
            key_dst: tuple[Any, ...] = (targets[t], slice(None), *src)
            key_src: tuple[Any, ...] = (t, slice(None), *dst)
            canvas[key_dst] = windows[key_src]
    return canvas


def _overlaps(
    starts: Tensor, size: Sequence[int], spatial: Sequence[int]
) -> list[tuple[list[slice], list[slice]] | None]:
    """Per window: (slices into the window, slices into the map) of their overlap, or None."""
    out: list[tuple[list[slice], list[slice]] | None] = []
    for begin in starts.tolist():
        win: list[slice] = []
        hit: list[slice] = []
        for a, n, s in zip(begin, size, spatial):
            lo, hi = max(a, 0), min(a + n, s)
            if hi <= lo:
                out.append(None)
                break
            win.append(slice(lo - a, hi - a))
            hit.append(slice(lo, hi))
        else:
            out.append((win, hit))
    return out


def _outside_mask(starts: Tensor, size: Sequence[int], map_size: Sequence[int]) -> Tensor | None:
    """(T, 1, *size) bool: True where the window lies outside the map; None where every
    window lies inside it."""
    ends = starts + torch.tensor(tuple(size), device=starts.device)
    limit = torch.tensor(tuple(map_size), device=starts.device)
    if bool((starts >= 0).all()) and bool((ends <= limit).all()):
        return None
    t_count, ndim = starts.shape
    inside = torch.ones((t_count, *size), dtype=torch.bool, device=starts.device)
    for d in range(ndim):
        coords = starts[:, d : d + 1] + torch.arange(size[d], device=starts.device)
        ok = (coords >= 0) & (coords < map_size[d])
        shape = [t_count] + [1] * ndim
        shape[d + 1] = size[d]
        inside = inside & ok.view(shape)
    return (~inside).unsqueeze(1)


def box_clips(starts: Tensor, stops: Tensor, image: Tensor) -> Tensor:
    """(T, ndim, 2): pixels of each box ``[starts, stops)`` before the image and after it.

    >>> box_clips(torch.tensor([[-2]]), torch.tensor([[3]]), torch.tensor([2])).tolist()
    [[[2, 1]]]
    """
    width = stops - starts
    before = torch.minimum((-starts).clamp(min=0), width)
    after = torch.minimum((stops - image).clamp(min=0), width)
    return torch.stack([before, after], dim=2)


@dataclass(frozen=True)
class CroppedProjections:
    """Projections on receptive-field boxes: ``projections (T, Cin, *box)``, ``values (T,)``
    (the activation projected), ``boxes (T, ndim, 2)`` (start, stop in input pixels,
    unclipped) and ``clips (T, ndim, 2)`` (pixels of the box before / after the image)."""

    projections: Tensor
    values: Tensor
    boxes: Tensor
    clips: Tensor


def _channels(chain: Chain, upto: int, c_in: int) -> list[int]:
    """Channels of each layer's input, then of the target layer's output."""
    out = [c_in]
    for _, m in chain[: upto + 1]:
        out.append(int(m.out_channels) if isinstance(m, _CONV) else out[-1])
    return out


def window_bytes(chain: Chain, plan: CropPlan, c_in: int, itemsize: int) -> int:
    """About the working memory of one target of :func:`cropped_projections` or
    :func:`cone_backward`: the largest pair of adjacent windows (input and output of a layer,
    all channels), twice for temporaries, plus the cut states."""
    channels = _channels(chain, plan.upto, c_in)
    sizes = [math.prod(s) for s in plan.in_size] + [1]
    pairs = [channels[i] * sizes[i] + channels[i + 1] * sizes[i + 1] for i in range(plan.upto + 1)]
    states = sum(channels[i] * sizes[i] for i in range(plan.upto + 1))  # signs, switches
    return 2 * itemsize * max(pairs) + 9 * states


def _chunk(count: int, per_target: int, memory_budget: int, limit: int) -> int:
    return max(1, min(limit, count, memory_budget // max(per_target, 1)))


def _prepare(
    chain: Chain,
    n_rows: int,
    input_size: Sequence[int],
    layer: str,
    targets: Sequence[UnitTarget],
) -> tuple[int, CropPlan, Tensor, Tensor, Tensor, dict[int, nn.Module]]:
    """The target layer's index, the crop plan, the validated targets as tensors (units, rows,
    channels) and the chain's modules with their padding taken out (applied by the plan at
    true borders only)."""
    upto = check_crop(chain, layer)
    ndim = len(input_size)
    plan = chain_plan(chain, upto, input_size)
    if not targets:
        raise ParameterError("targets", "at least one (row, channel, position)", list(targets))
    units = torch.tensor([list(p) for _, _, p in targets], dtype=torch.long).view(-1, ndim)
    if (units < 0).any() or (units >= torch.tensor(plan.out_map_size)).any():
        raise ParameterError(
            "position",
            f"indices into the map {plan.out_map_size} of layer {layer!r}",
            units.tolist()[:4],
        )
    rows = torch.tensor([r for r, _, _ in targets], dtype=torch.long)
    if (rows < 0).any() or (rows >= n_rows).any():
        raise ParameterError("row", f"rows of the {n_rows} inputs", rows.tolist()[:4])
    channels = torch.tensor([c for _, c, _ in targets], dtype=torch.long)
    twins = {
        i: _unpadded(m) if plan.geometric[i] else m for i, (_, m) in enumerate(chain[: upto + 1])
    }
    return upto, plan, units, rows, channels, twins


def _result(
    plan: CropPlan,
    units: Tensor,
    input_size: Sequence[int],
    projections: list[Tensor],
    values: list[Tensor],
) -> CroppedProjections:
    starts = plan.box_start(units)
    stops = starts + torch.tensor(plan.box_size)
    image = torch.tensor(tuple(input_size))
    return CroppedProjections(
        torch.cat(projections),
        torch.cat(values),
        torch.stack([starts, stops], dim=2),
        box_clips(starts, stops, image),
    )


def cropped_projections(
    chain: Chain | nn.Module,
    inputs: Tensor,
    layer: str,
    targets: Sequence[UnitTarget],
    *,
    rule: str = "deconvnet",
    chunk: int = 256,
    memory_budget: int = 1 << 30,
    seed: str = "value",
) -> CroppedProjections:
    """Deconvnet projections of single units, each computed on its receptive field only.

    ``targets``: ``(row, channel, position)``: the unit at ``position`` of channel ``channel``
    of layer ``layer``'s output for input ``inputs[row]``. Equal to the full-size projection
    (:func:`convlens.deconvnet.project` with that position) restricted to the box, which is
    zero elsewhere. Targets run in batches of at most ``chunk``, fewer where their windows
    would need more than ``memory_budget`` bytes. ``seed``: what the unit is set to before the
    reversed pass (:data:`~convlens.deconvnet.target.SEEDS`).
    """
    if isinstance(chain, nn.Module):
        chain = chain_of(chain)
    rule = check_rule(rule)
    seed = check_seed(seed)
    spatial = tuple(int(v) for v in inputs.shape[2:])
    _, plan, units, rows, channels, twins = _prepare(
        chain, inputs.shape[0], spatial, layer, targets
    )
    per = window_bytes(chain, plan, inputs.shape[1], inputs.element_size())
    size = _chunk(len(targets), per, memory_budget, chunk)
    projections, values = [], []
    for lo in range(0, len(targets), size):
        sl = slice(lo, lo + size)
        p, v = _crop_chunk(
            chain, twins, plan, inputs, rows[sl], channels[sl], units[sl], rule, seed
        )
        projections.append(p)
        values.append(v)
    return _result(plan, units, spatial, projections, values)


def _crop_chunk(
    chain: Chain,
    twins: dict[int, nn.Module],
    plan: CropPlan,
    inputs: Tensor,
    rows: Tensor,
    channels: Tensor,
    units: Tensor,
    rule: str,
    seed: str,
) -> tuple[Tensor, Tensor]:
    dev = inputs.device
    starts = plan.starts(units.to(dev))
    x = extract_windows(inputs, starts[0], plan.in_size[0], rows=rows)
    states = []
    masks: dict[int, Tensor] = {}
    with torch.no_grad():
        for i in range(plan.upto + 1):
            path, module = chain[i]
            mask = None
            if plan.geometric[i]:
                mask = _outside_mask(starts[i], plan.in_size[i], plan.map_size[i])
            if mask is not None:
                masks[i] = mask
                fill = float("-inf") if isinstance(module, _MAX) else 0.0
                x = x.masked_fill(mask, fill)
            x, state = layer_forward(twins[i], x, path)
            states.append(state)
        # x: (T, C, 1, ..., 1): the unit itself
        t_idx = torch.arange(x.shape[0], device=dev)
        values = x.reshape(x.shape[0], x.shape[1])[t_idx, channels.to(dev)]
        signal = torch.zeros_like(x)
        signal.view(x.shape[0], x.shape[1])[t_idx, channels.to(dev)] = seed_values(values, seed)
        for i in range(plan.upto, -1, -1):
            path, _ = chain[i]
            signal = layer_backward(twins[i], signal, states[i], rule, path)
            if i in masks:
                signal = signal.masked_fill(masks[i], 0.0)
    return signal, values


def cone_backward(
    chain: Chain,
    states: Sequence[State],
    top: Tensor,
    layer: str,
    targets: Sequence[UnitTarget],
    input_size: Sequence[int],
    *,
    rule: str = "deconvnet",
    chunk: int = 64,
    memory_budget: int = 1 << 30,
    c_in: int | None = None,
    seed: str = "value",
) -> CroppedProjections:
    """The reversed pass of :func:`cone_projections` from a forward pass already run.

    ``states`` are the full-size forward states of ``chain`` up to ``layer`` (from
    :func:`~convlens.deconvnet.explicit.forward_chain`), ``top`` that layer's output (N, C,
    *map), ``input_size`` the inputs' spatial size and ``c_in`` their channels (read off the
    first conv when not given). The states of each unit's windows are cut out of the full-size
    ones; the reversed pass runs on the windows, in batches of at most ``chunk`` targets.
    """
    rule = check_rule(rule)
    seed = check_seed(seed)
    spatial = tuple(int(v) for v in input_size)
    upto, plan, units_all, rows_all, channels_all, twins = _prepare(
        chain, top.shape[0], spatial, layer, targets
    )
    if c_in is None:
        first = next((m for _, m in chain[: upto + 1] if isinstance(m, _CONV)), None)
        c_in = int(first.in_channels) if first is not None else int(top.shape[1])
    per = window_bytes(chain, plan, c_in, top.element_size())
    size = _chunk(len(targets), per, memory_budget, chunk)
    ndim = len(plan.out_map_size)
    dev = top.device
    grids = [with_switch_grid(m, st) for (_, m), st in zip(chain[: upto + 1], states)]
    projections, values = [], []
    for lo in range(0, len(targets), size):
        rows = rows_all[lo : lo + size].to(dev)
        chans = channels_all[lo : lo + size].to(dev)
        unit = units_all[lo : lo + size].to(dev)
        starts = plan.starts(unit)
        t_count = len(rows)
        key: tuple[Tensor, ...] = (rows, chans, *unit.unbind(1))
        vals = top[key]
        signal = top.new_zeros((t_count, top.shape[1], *([1] * ndim)))
        signal.view(t_count, -1)[torch.arange(t_count, device=dev), chans] = seed_values(vals, seed)
        with torch.no_grad():
            for i in range(upto, -1, -1):
                path, module = chain[i]
                state = _cut_state(grids[i], module, plan, i, starts, unit, rows, rule)
                signal = layer_backward(twins[i], signal, state, rule, path)
                if plan.geometric[i]:
                    mask = _outside_mask(starts[i], plan.in_size[i], plan.map_size[i])
                    if mask is not None:
                        signal = signal.masked_fill(mask, 0.0)
        projections.append(signal)
        values.append(vals)
    return _result(plan, units_all, spatial, projections, values)


def _cut_state(
    state: State,
    module: nn.Module,
    plan: CropPlan,
    i: int,
    starts: list[Tensor],
    unit: Tensor,
    rows: Tensor,
    rule: str,
) -> State:
    """The explicit engine's state of layer ``i``, cut to each target's window."""
    if isinstance(state, ReluState):
        if rule == "deconvnet":  # the deconvnet rule ignores the forward signs
            return ReluState(state.positive[:0])
        return ReluState(extract_windows(state.positive, starts[i], plan.in_size[i], 0, rows=rows))
    if isinstance(state, PoolState):
        last = i == plan.upto
        ndim = len(plan.out_map_size)
        out_start = unit if last else starts[i + 1]
        out_size = (1,) * ndim if last else plan.in_size[i + 1]
        out_map = plan.out_map_size if last else plan.map_size[i + 1]
        spec = LayerSpec.from_module(module)
        if state.switches is not None:  # windows never overlap: cut the switch grid
            stride = torch.tensor(spec.stride, device=out_start.device)
            grid_size = tuple(o * st for o, st in zip(out_size, spec.stride))
            cut = extract_windows(state.switches, out_start * stride, grid_size, 0, rows=rows)
            return PoolState(state.indices[:0], tuple(plan.in_size[i]), cut)
        flat = extract_windows(state.indices, out_start, out_size, 0, rows=rows)
        local = _relocal(
            flat, plan.map_size[i], starts[i], plan.in_size[i], out_start, out_map, spec.stride
        )
        return PoolState(local, tuple(plan.in_size[i]))
    if plan.geometric[i]:
        return ConvState(tuple(plan.in_size[i]))
    return state


def cone_projections(
    chain: Chain | nn.Module,
    inputs: Tensor,
    layer: str,
    targets: Sequence[UnitTarget],
    *,
    rule: str = "deconvnet",
    chunk: int = 64,
    memory_budget: int = 1 << 30,
    seed: str = "value",
) -> CroppedProjections:
    """Like :func:`cropped_projections`, but the forward pass runs once per input at full
    size (shared by all of that input's targets) and only the reversed pass runs on the
    windows of each unit's cone, with the forward states (ReLU signs, switches) cut out of the
    full-size ones (:func:`cone_backward`). Cheaper than cropping both passes when receptive
    fields cover most of the input (deep layers) and inputs have many targets each. Same
    numbers.
    """
    if isinstance(chain, nn.Module):
        chain = chain_of(chain)
    upto = check_crop(chain, layer)
    outputs, states = forward_chain(chain, inputs, upto)
    return cone_backward(
        chain,
        states,
        outputs[-1],
        layer,
        targets,
        tuple(inputs.shape[2:]),
        rule=rule,
        chunk=chunk,
        memory_budget=memory_budget,
        c_in=int(inputs.shape[1]),
        seed=seed,
    )


def _relocal(
    flat: Tensor,
    full: Sequence[int],
    starts: Tensor,
    size: Sequence[int],
    out_starts: Tensor,
    out_map: Sequence[int],
    stride: Sequence[int],
) -> Tensor:
    """Switches flat into the full input map -> flat into each target's input window.

    Outputs of the window that lie outside the output map (signal zero) get the first sample
    of their own pooling window: windows that the unpooling scatters together never overlap,
    so these never collide with a real switch.
    """
    t_count = flat.shape[0]
    out_size = flat.shape[2:]
    ndim = len(full)
    rest = flat
    coords = []
    for d in range(ndim - 1, -1, -1):
        coords.append(rest % full[d])
        rest = rest // full[d]
    coords.reverse()
    local = torch.zeros_like(flat)
    origin = torch.zeros_like(flat)
    fake = torch.zeros(flat.shape, dtype=torch.bool, device=flat.device)
    for d, c in enumerate(coords):
        view = [1] * flat.dim()
        view[2 + d] = out_size[d]
        o_local = torch.arange(out_size[d], device=flat.device).view(view)
        o_global = o_local + out_starts[:, d].view(t_count, *([1] * (flat.dim() - 1)))
        fake |= (o_global < 0) | (o_global >= out_map[d])
        shift = starts[:, d].view(t_count, *([1] * (flat.dim() - 1)))
        local = local * size[d] + (c - shift).clamp(0, size[d] - 1)
        origin = origin * size[d] + o_local * stride[d]
    return torch.where(fake, origin, local)
