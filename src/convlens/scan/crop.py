"""Deconvnet projections computed on a unit's receptive field only.

One activation depends only on the input pixels of its receptive field, and its projection is
zero outside it. So the forward pass that records the switches and ReLU signs, and the
reversed pass of the deconvnet (Zeiler & Fergus, arXiv:1311.2901, §2.1), can both run on the
unit's *cone*: at every layer, the window of that layer's map that the unit depends on.

Each window is run with the layer's own padding removed; the padding is put back by hand, and
only where the window meets the true border of that layer's map (zeros before a conv,
``-inf`` before a max pool, as PyTorch pads). Positions of a window beyond the padded map feed
only units outside the map, which are masked again before the next layer. Windows start at
``unit * stride - padding``, so the stride phases are those of the full-size pass, and the
windows of one layer have one size whatever the unit, so the targets of a layer run as one
batch. On the way back the signal is cut to the true map after every layer, exactly what the
full-size pass discards as padding. The per-layer forward and backward are those of the
explicit engine (:func:`convlens.deconvnet.explicit.layer_forward` / ``layer_backward``).

>>> import torch, torch.nn as nn
>>> net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
>>> chain = chain_of(net)
>>> x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
>>> net = net.double()
>>> out = cropped_projections(chain, x, "2", [(0, 1, (0, 3)), (1, 0, (2, 2))], rule="deconvnet")
>>> out.projections.shape, out.boxes[0].tolist()
(torch.Size([2, 1, 4, 4]), [[-1, 3], [5, 9]])
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from convlens.arithmetic import LayerSpec, is_geometric
from convlens.deconvnet.explicit import (
    chain_of,
    check_chain,
    check_rule,
    layer_backward,
    layer_forward,
)
from convlens.errors import ParameterError, UnsupportedModuleError

__all__ = [
    "METHODS",
    "CropPlan",
    "CroppedProjections",
    "LayerProjections",
    "TopProjections",
    "can_crop",
    "chain_of",
    "cone_projections",
    "crop_plan",
    "cropped_projections",
    "extract_windows",
    "project_top",
]

_MAX = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


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


def can_crop(chain: Sequence[tuple[str, nn.Module]], upto: int) -> bool:
    """Whether the cropped scheme applies: conv (zero padding), max pool and pointwise layers
    of the explicit engine (average pooling's divisor at borders is not reproduced)."""
    try:
        check_chain(chain, upto)
    except Exception:
        return False
    for _, m in chain[: upto + 1]:
        if is_geometric(m) and not isinstance(m, (*_CONV, *_MAX)):
            return False
    return True


@functools.lru_cache(maxsize=256)
def crop_plan(specs: tuple[LayerSpec | None, ...], input_size: tuple[int, ...]) -> CropPlan:
    """The cone windows for a chain whose layers have geometry ``specs`` (None: pointwise),
    the last one being the target layer, on inputs of spatial size ``input_size``.

    >>> plan = crop_plan((LayerSpec.conv(3, padding=1), None, LayerSpec.max_pool(2)), (8, 8))
    >>> plan.box_size, plan.in_jump[0], plan.in_offset[0], plan.out_map_size
    ((4, 4), (2, 2), (-1, -1), (4, 4))
    """
    ndim = len(input_size)
    sizes = [tuple(input_size)]
    for spec in specs:
        sizes.append(sizes[-1] if spec is None else spec.output_size(sizes[-1]))
    jump, offset, size = (1,) * ndim, (0,) * ndim, (1,) * ndim
    in_jump, in_offset, in_size = [], [], []
    for spec in reversed(specs):
        if spec is not None:
            lows = tuple(lo for lo, _ in spec.padding_pairs())
            jump = tuple(j * s for j, s in zip(jump, spec.stride))
            offset = tuple(o * s - lo for o, s, lo in zip(offset, spec.stride, lows))
            size = tuple(
                (n - 1) * s + e for n, s, e in zip(size, spec.stride, spec.effective_kernel)
            )
        in_jump.append(jump)
        in_offset.append(offset)
        in_size.append(size)
    return CropPlan(
        upto=len(specs) - 1,
        in_jump=tuple(reversed(in_jump)),
        in_offset=tuple(reversed(in_offset)),
        in_size=tuple(reversed(in_size)),
        map_size=tuple(sizes[:-1]),
        geometric=tuple(s is not None for s in specs),
        out_map_size=sizes[-1],
    )


def _specs(chain: Sequence[tuple[str, nn.Module]], upto: int) -> tuple[LayerSpec | None, ...]:
    return tuple(
        LayerSpec.from_module(m) if is_geometric(m) else None for _, m in chain[: upto + 1]
    )


def _unpadded(module: nn.Module) -> nn.Module:
    """A shallow copy of a conv / max pool sharing its weights, without padding or ceil_mode."""
    twin: Any = copy.copy(module)
    n = len(LayerSpec.from_module(module).kernel_size)
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
    t_count, ndim = starts.shape
    spatial = tuple(x.shape[2:])
    out = torch.full((t_count, x.shape[1], *size), fill, dtype=x.dtype, device=x.device)
    begin = starts.tolist()
    sources = rows.tolist() if rows is not None else None
    for t in range(t_count):
        src_row = sources[t] if sources is not None else (t if x.shape[0] > 1 else 0)
        dst: list[slice] = []
        src: list[slice] = []
        for d in range(ndim):
            a = begin[t][d]
            lo, hi = max(a, 0), min(a + size[d], spatial[d])
            if hi <= lo:
                break
            dst.append(slice(lo - a, hi - a))
            src.append(slice(lo, hi))
        else:
            key_dst: tuple[Any, ...] = (t, slice(None), *dst)
            key_src: tuple[Any, ...] = (src_row, slice(None), *src)
            out[key_dst] = x[key_src]
    return out


def _outside_mask(starts: Tensor, size: Sequence[int], map_size: Sequence[int]) -> Tensor:
    """(T, 1, *size) bool: True where the window lies outside the map."""
    t_count, ndim = starts.shape
    inside = torch.ones((t_count, *size), dtype=torch.bool, device=starts.device)
    for d in range(ndim):
        coords = starts[:, d : d + 1] + torch.arange(size[d], device=starts.device)
        ok = (coords >= 0) & (coords < map_size[d])
        shape = [t_count] + [1] * ndim
        shape[d + 1] = size[d]
        inside = inside & ok.view(shape)
    return (~inside).unsqueeze(1)


def _clips(starts: Tensor, stops: Tensor, image: Tensor) -> Tensor:
    """(T, ndim, 2): pixels of each box before the image and after it."""
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


def _prepare_targets(
    chain: Sequence[tuple[str, nn.Module]],
    inputs: Tensor,
    upto: int,
    layer: str,
    targets: Sequence[tuple[int, int, Sequence[int]]],
) -> tuple[CropPlan, Tensor, Tensor, Tensor, dict[int, nn.Module]]:
    """The crop plan, the validated targets as tensors (units, rows, channels) and the chain's
    modules with their padding taken out (applied by the plan at true borders only)."""
    ndim = inputs.dim() - 2
    plan = crop_plan(_specs(chain, upto), tuple(int(s) for s in inputs.shape[2:]))
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
    channels = torch.tensor([c for _, c, _ in targets], dtype=torch.long)
    twins = {
        i: _unpadded(m) if plan.geometric[i] else m for i, (_, m) in enumerate(chain[: upto + 1])
    }
    return plan, units, rows, channels, twins


def cropped_projections(
    chain: Sequence[tuple[str, nn.Module]] | nn.Module,
    inputs: Tensor,
    layer: str,
    targets: Sequence[tuple[int, int, Sequence[int]]],
    *,
    rule: str = "deconvnet",
    chunk: int = 256,
) -> CroppedProjections:
    """Deconvnet projections of single units, each computed on its receptive field only.

    ``targets``: ``(row, channel, position)``: the unit at ``position`` of channel ``channel``
    of layer ``layer``'s output for input ``inputs[row]``. Equal to the full-size projection
    (:func:`convlens.deconvnet.project` with that position) restricted to the box, which is
    zero elsewhere. Targets run in batches of ``chunk``.
    """
    if isinstance(chain, nn.Module):
        chain = chain_of(chain)
    rule = check_rule(rule)
    paths = [p for p, _ in chain]
    if layer not in paths:
        raise ParameterError("layer", "a layer of the chain, one of: " + ", ".join(paths), layer)
    upto = paths.index(layer)
    if not can_crop(chain, upto):
        check_chain(chain, upto)  # names an unsupported module, if that is the reason
        bad = next(
            p
            for p, m in chain[: upto + 1]
            if is_geometric(m) and not isinstance(m, (*_CONV, *_MAX))
        )
        raise UnsupportedModuleError(
            bad,
            type(dict(chain)[bad]).__name__,
            ["Conv1/2/3d", "MaxPool1/2/3d"],
            "receptive-field cropping",
        )
    plan, units, rows, channels, twins = _prepare_targets(chain, inputs, upto, layer, targets)
    projections, values = [], []
    for lo in range(0, len(targets), chunk):
        sl = slice(lo, lo + chunk)
        p, v = _run_chunk(chain, twins, plan, inputs, rows[sl], channels[sl], units[sl], rule)
        projections.append(p)
        values.append(v)
    starts = plan.box_start(units)
    stops = starts + torch.tensor(plan.box_size)
    image = torch.tensor(tuple(inputs.shape[2:]))
    clips = _clips(starts, stops, image)
    return CroppedProjections(
        torch.cat(projections), torch.cat(values), torch.stack([starts, stops], dim=2), clips
    )


def _run_chunk(
    chain: Sequence[tuple[str, nn.Module]],
    twins: dict[int, nn.Module],
    plan: CropPlan,
    inputs: Tensor,
    rows: Tensor,
    channels: Tensor,
    units: Tensor,
    rule: str,
) -> tuple[Tensor, Tensor]:
    dev = inputs.device
    starts = [
        (units * torch.tensor(j) + torch.tensor(o)).to(dev)
        for j, o in zip(plan.in_jump, plan.in_offset)
    ]
    x = extract_windows(inputs, starts[0], plan.in_size[0], rows=rows)
    states = []
    masks: dict[int, Tensor] = {}
    with torch.no_grad():
        for i in range(plan.upto + 1):
            path, module = chain[i]
            if plan.geometric[i]:
                masks[i] = _outside_mask(starts[i], plan.in_size[i], plan.map_size[i])
                fill = float("-inf") if isinstance(module, _MAX) else 0.0
                x = x.masked_fill(masks[i], fill)
            x, state = layer_forward(twins[i], x, path)
            states.append(state)
        # x: (T, C, 1, ..., 1): the unit itself
        t_idx = torch.arange(x.shape[0], device=dev)
        values = x.reshape(x.shape[0], x.shape[1])[t_idx, channels.to(dev)]
        signal = torch.zeros_like(x)
        signal.view(x.shape[0], x.shape[1])[t_idx, channels.to(dev)] = values
        for i in range(plan.upto, -1, -1):
            path, _ = chain[i]
            signal = layer_backward(twins[i], signal, states[i], rule, path)
            if i in masks:
                signal = signal.masked_fill(masks[i], 0.0)
    return signal, values


def cone_projections(
    chain: Sequence[tuple[str, nn.Module]] | nn.Module,
    inputs: Tensor,
    layer: str,
    targets: Sequence[tuple[int, int, Sequence[int]]],
    *,
    rule: str = "deconvnet",
    chunk: int = 64,
) -> CroppedProjections:
    """Like :func:`cropped_projections`, but the forward pass runs once per input at full
    size (shared by all of that input's targets) and only the reversed pass runs on the
    windows of each unit's cone, with the forward states (ReLU signs, switches) cut out of the
    full-size ones. Cheaper than cropping both passes when receptive fields cover most of the
    input (deep layers) and inputs have many targets each. Same numbers.
    """
    if isinstance(chain, nn.Module):
        chain = chain_of(chain)
    rule = check_rule(rule)
    paths = [p for p, _ in chain]
    if layer not in paths:
        raise ParameterError("layer", "a layer of the chain, one of: " + ", ".join(paths), layer)
    upto = paths.index(layer)
    if not can_crop(chain, upto):
        raise ParameterError(
            "layer", "a layer reachable by conv, max-pool and pointwise layers", layer
        )
    from convlens.deconvnet.explicit import PoolState, ReluState, forward_chain

    ndim = inputs.dim() - 2
    plan, units, rows_all, channels_all, twins = _prepare_targets(
        chain, inputs, upto, layer, targets
    )
    outputs, states = forward_chain(chain, inputs, upto)
    top = outputs[-1]
    dev = inputs.device
    projections, values = [], []
    for lo in range(0, len(targets), chunk):
        rows = rows_all[lo : lo + chunk].to(dev)
        chans = channels_all[lo : lo + chunk].to(dev)
        unit = units[lo : lo + chunk].to(dev)
        starts = [
            unit * torch.tensor(j, device=dev) + torch.tensor(o, device=dev)
            for j, o in zip(plan.in_jump, plan.in_offset)
        ]
        t_count = len(rows)
        key = (rows, chans, *unit.unbind(1))
        vals = top[key]
        signal = top.new_zeros((t_count, top.shape[1], *([1] * ndim)))
        signal.view(t_count, -1)[torch.arange(t_count, device=dev), chans] = vals
        with torch.no_grad():
            for i in range(upto, -1, -1):
                path, module = chain[i]
                state = states[i]
                if isinstance(state, ReluState):
                    if rule == "deconvnet":  # the deconvnet rule ignores the forward signs
                        state = ReluState(state.positive[:0])
                    else:
                        cut = extract_windows(
                            state.positive, starts[i], plan.in_size[i], 0, rows=rows
                        )
                        state = ReluState(cut)
                elif isinstance(state, PoolState):
                    out_start = starts[i + 1] if i < upto else unit
                    out_size = plan.in_size[i + 1] if i < upto else (1,) * ndim
                    flat = extract_windows(state.indices, out_start, out_size, 0, rows=rows)
                    out_map = plan.map_size[i + 1] if i < upto else plan.out_map_size
                    spec = LayerSpec.from_module(module)
                    state = PoolState(
                        _relocal(
                            flat,
                            plan.map_size[i],
                            starts[i],
                            plan.in_size[i],
                            out_start,
                            out_map,
                            spec.stride,
                        ),
                        tuple(plan.in_size[i]),
                    )
                elif plan.geometric[i]:
                    from convlens.deconvnet.explicit import ConvState

                    state = ConvState(tuple(plan.in_size[i]))
                signal = layer_backward(twins[i], signal, state, rule, path)
                if plan.geometric[i]:
                    mask = _outside_mask(starts[i], plan.in_size[i], plan.map_size[i])
                    signal = signal.masked_fill(mask, 0.0)
        projections.append(signal)
        values.append(vals)
    box_starts = plan.box_start(units)
    stops = box_starts + torch.tensor(plan.box_size)
    image = torch.tensor(tuple(inputs.shape[2:]))
    return CroppedProjections(
        torch.cat(projections),
        torch.cat(values),
        torch.stack([box_starts, stops], dim=2),
        _clips(box_starts, stops, image),
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


# ---------------------------------------------------------------------------- top-k projections
#: How :func:`project_top` computes projections.
METHODS = ("auto", "crop", "cone", "full")


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
    except Exception:
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
    from convlens.deconvnet.project import eval_mode

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
    from convlens.deconvnet import Target, project

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
    if chain is not None and first is not None:
        try:
            plan = crop_plan(_specs(chain, upto), tuple(first.shape[1:]))
        except Exception:
            plan = None
    croppable = chain is not None and plan is not None and can_crop(chain, upto)
    use = method
    if method == "auto" and first is not None:
        small = plan is not None and _prod(plan.box_size) * 2 <= _prod(tuple(first.shape[1:]))
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
            proj = res.projections
        else:
            proj_rows = []
            for r in range(len(unique)):
                members = [t for t in range(len(part)) if int(rows[t]) == r]
                targets = [Target(layer, part[t][3], part[t][4]) for t in members]
                full = project(net, images[r : r + 1], targets, rule=rule).projections[0]
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
            clips[ci, j] = _clips(starts[t : t + 1], stops[t : t + 1], size)[0]
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


def _prod(values: Sequence[int]) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out
