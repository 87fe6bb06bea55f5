"""Project activations back to input space: :func:`project` over both engines.

Zeiler & Fergus (arXiv:1311.2901, §2.1): keep one activation (or one feature map), zero the
rest of its layer, and pass the signal down through unpooling, ReLU and transposed filters.
``engine="explicit"`` runs the reversed network of
:mod:`convlens.deconvnet.explicit` on chain models; ``engine="rules"`` runs autograd with every
ReLU's backward replaced by the rule (:mod:`convlens.deconvnet.rules`) and works on any model;
``engine="auto"`` picks explicit where the chain supports the targets, rules otherwise. On
chains the two give the same projections.

On the explicit engine, a unit target (one position of a map, or its ``"max"``) depends only
on its receptive field, so its reversed pass can run on the unit's cone
(:mod:`convlens.deconvnet.cone`): ``method="cone"`` (the forward pass at full size, the
reversed pass on the cone's windows), ``"crop"`` (both passes on the windows), ``"full"``
(everything at full size), ``"auto"`` (cone where its windows are smaller than the maps, full
otherwise). All give the same projections; ``auto`` only picks among methods that share the
full-size forward pass, so its switches and ReLU signs are those of the full pass.

>>> import torch, torch.nn as nn
>>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2))
>>> out = project(net, torch.randn(2, 1, 10, 10), [Target("2", 1), Target("0", 3, "map")])
>>> out.projections.shape, out.values.shape, out.positions.shape, out.engine, out.methods
(torch.Size([2, 2, 1, 10, 10]), torch.Size([2, 2]), torch.Size([2, 2, 2]), 'explicit', ('cone', 'full'))
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from convlens.checks import check_model_inputs, forward_error
from convlens.choices import ENGINES, METHODS
from convlens.deconvnet.cone import (
    can_crop,
    chain_plan,
    cone_backward,
    cone_saves,
    cropped_projections,
    embed_windows,
)
from convlens.deconvnet.explicit import (
    Forward,
    Scratch,
    backward_bytes,
    backward_chain,
    chain_of,
    check_chain,
    check_rule,
    forward_states,
    prepare_states,
    slice_state,
)
from convlens.deconvnet.rules import batched_vjp
from convlens.deconvnet.target import Target, as_targets, check_seed, locate, select
from convlens.deconvnet.verify import chain_mismatch
from convlens.errors import ConvLensError, ParameterError, ParameterTypeError
from convlens.layer_paths import check_layer_path, reused_layer
from convlens.loaded import eval_mode

__all__ = ["DEFAULT_MEMORY_BUDGET", "ENGINES", "METHODS", "Projection", "eval_mode", "project"]

#: Working memory, in bytes, that :func:`project` sizes its batches of targets to.
DEFAULT_MEMORY_BUDGET = 1 << 30
#: The working set, in bytes, a batch of the full-size reversed pass aims at (at least the N
#: inputs of one target): larger batches gain nothing on a CPU, whose element-wise steps then
#: run from memory instead of the cache.
_WORKING_SET = 1 << 26


@dataclass(frozen=True)
class Projection:
    """The result of :func:`project` for N inputs and T targets.

    ``projections`` (N, T, *input sample shape): each target's signal in input space;
    ``values`` (N, T): the projected activation (for ``"map"`` the sum of the map);
    ``positions`` (N, T, spatial dims): the unit projected (``-1`` for ``"map"``, and to pad
    targets on layers with fewer spatial dimensions); ``engine``: the engine that ran;
    ``methods``: per target, how it ran (``"crop"``, ``"cone"`` or ``"full"``); ``seed``: what
    the chosen activations were set to (``"value"`` or ``"one"``); ``engine_note``: why that
    engine ran.
    """

    projections: Tensor
    values: Tensor
    positions: Tensor
    targets: tuple[Target, ...]
    rule: str
    engine: str
    methods: tuple[str, ...] = ()
    seed: str = "value"
    engine_note: str = ""

    @property
    def method(self) -> str:
        """The method that ran, ``"+"``-joined where targets ran differently."""
        return "+".join(dict.fromkeys(self.methods)) or "full"

    def _repr_html_(self) -> str:
        """In a notebook: the projections as a grid, with target and value captions."""
        from convlens.deconvnet.display import to_image
        from convlens.notebook import projection_html

        return projection_html(self, to_image)

    def _repr_png_(self) -> bytes | None:
        from convlens.deconvnet.display import to_image
        from convlens.notebook import projection_png

        return projection_png(self, to_image)


def _layer_index(chain: Sequence[tuple[str, nn.Module]], layer: str) -> int | None:
    for i, (path, _) in enumerate(chain):
        if path == layer:
            return i
    return None


def _check_layers(model: nn.Module, targets: Sequence[Target]) -> None:
    names = [n for n, _ in model.named_modules()]
    for target in targets:
        check_layer_path(target.layer, names)


def _check_budget(memory_budget: Any) -> int:
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, int):
        raise ParameterTypeError("memory_budget", "a number of bytes (int)", memory_budget)
    if memory_budget < 1:
        raise ParameterError("memory_budget", "a positive number of bytes", memory_budget)
    return memory_budget


def _explicit_chain(
    model: Any, targets: Sequence[Target]
) -> tuple[list[tuple[str, nn.Module]], int]:
    """The chain for the explicit engine, checked up to the deepest target (errors otherwise),
    and the index of that target's layer."""
    chain = chain_of(model)
    deepest = 0
    for target in targets:
        index = _layer_index(chain, target.layer)
        if index is None:
            raise ParameterError(
                "layer",
                "a layer of the chain, one of: " + ", ".join(p for p, _ in chain),
                target.layer,
            )
        deepest = max(deepest, index)
        module = chain[index][1]
        uses = sum(m is module for _, m in chain)
        if uses > 1:  # one module placed twice: its output is no one tensor
            raise reused_layer(target.layer, uses)
    check_chain(chain, deepest)
    return chain, deepest


def _plain_sequential(model: nn.Module) -> bool:
    """``model`` is a plain ``nn.Sequential`` of plain ones: its forward *is* the chain."""
    return type(model) is nn.Sequential and all(
        type(m) is nn.Sequential for m in model.modules() if isinstance(m, nn.Sequential)
    )


#: Classes whose own ``forward`` runs ``self.features`` first, once, on the input (torchvision's
#: VGG and AlexNet); looked up among the modules already imported, so nothing is imported here.
_FEATURES_FIRST = (("torchvision.models.vgg", "VGG"), ("torchvision.models.alexnet", "AlexNet"))


def _known_chain(model: nn.Module, chain: Sequence[tuple[str, nn.Module]]) -> str | None:
    """Why ``model``'s forward is known to run ``chain`` as it is, without running it; None
    where it has to be checked (:func:`~convlens.deconvnet.verify.chain_mismatch`)."""
    if _plain_sequential(model):
        return "a plain nn.Sequential, whose forward is the chain"
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Module) or not _plain_sequential(features):
        return None
    forward = getattr(type(model), "forward", None)
    for module_name, class_name in _FEATURES_FIRST:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if cls is not None and forward is cls.forward:
            # each layer of the chain is registered once: the rest of forward cannot call it
            counts = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
            if all(counts[id(m)] == 1 for _, m in chain):
                return f"torchvision's {class_name}.forward runs its plain features first"
    return None


def _first_channels(chain: Sequence[tuple[str, nn.Module]]) -> int | None:
    for _, module in chain:
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return int(module.in_channels)
    return None


def _groups(targets: Sequence[Target]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for t, target in enumerate(targets):
        groups.setdefault(target.layer, []).append(t)
    return groups


def _assemble(
    n: int,
    sample_shape: tuple[int, ...],
    targets: Sequence[Target],
    parts: dict[str, tuple[Tensor, Tensor, Tensor]],
    like: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    t_count = len(targets)
    width = max(p.shape[-1] for _, _, p in parts.values())
    projections = like.new_zeros((n, t_count, *sample_shape))
    values = like.new_zeros((n, t_count))
    positions = torch.full((n, t_count, width), -1, dtype=torch.long)
    for layer, members in _groups(targets).items():
        proj, vals, pos = parts[layer]
        index = torch.tensor(members)
        projections[:, index] = proj.reshape(n, len(members), *sample_shape)
        values[:, index] = vals
        positions[:, index, : pos.shape[-1]] = pos
    return projections, values, positions


# ---------------------------------------------------------------------------- explicit engine
def _unit_method(
    method: str, chain: list[tuple[str, nn.Module]], i: int, inputs: Tensor, layer: str
) -> str:
    """The method for the unit targets of layer ``chain[i]``."""
    croppable = can_crop(chain, i)
    if method in ("crop", "cone") and not croppable:
        raise ParameterError(
            "method",
            f"'full' or 'auto' for layer {layer!r} ('crop' and 'cone' need conv (zero "
            "padding), max-pool and pointwise layers up to it)",
            method,
        )
    if method != "auto":
        return method
    if not croppable:
        return "full"
    try:
        plan = chain_plan(chain, i, tuple(inputs.shape[2:]))
    except ConvLensError:  # a geometry too small for these inputs: the full pass says why
        return "full"
    return "cone" if cone_saves(chain, plan, int(inputs.shape[1])) else "full"


class _Out:
    """The result tensors of :func:`project`, filled group by group."""

    def __init__(self, inputs: Tensor, t_count: int) -> None:
        n = inputs.shape[0]
        self.sample = tuple(inputs.shape[1:])
        self.projections = inputs.new_zeros((n, t_count, *self.sample))
        self.values = inputs.new_zeros((n, t_count))
        self.positions = torch.full((n, t_count, inputs.dim() - 2), -1, dtype=torch.long)
        self.methods = ["full"] * t_count


def _run_explicit(
    chain: list[tuple[str, nn.Module]],
    inputs: Tensor,
    targets: Sequence[Target],
    rule: str,
    method: str,
    seed: str,
    memory_budget: int,
) -> _Out:
    groups = _groups(targets)
    index = {layer: _layer_index(chain, layer) for layer in groups}
    plan: dict[str, tuple[list[int], list[int], str]] = {}
    for layer, members in groups.items():
        i = index[layer]
        assert i is not None  # checked by _explicit_chain
        units = [t for t in members if targets[t].position != "map"]
        maps = [t for t in members if targets[t].position == "map"]
        if maps and method in ("crop", "cone"):
            raise ParameterError(
                "method",
                "'full' or 'auto' for whole-map targets (position 'map'); 'crop' and 'cone' "
                "project single units",
                method,
            )
        how = _unit_method(method, chain, i, inputs, layer) if units else "full"
        plan[layer] = (units, maps, how)
    # the forward pass at full size serves every layer but those cropped at given positions
    needs = [
        layer
        for layer, (units, maps, how) in plan.items()
        if maps or how != "crop" or any(targets[t].position == "max" for t in units)
    ]
    fwd = None
    if needs:
        deepest = max(int(index[layer] or 0) for layer in needs)
        fwd = forward_states(chain, inputs, deepest, [int(index[layer] or 0) for layer in needs])
    out = _Out(inputs, len(targets))
    for layer, (units, maps, how) in plan.items():
        i = int(index[layer] or 0)
        full = maps + (units if how == "full" else [])
        if full:
            assert fwd is not None
            _full_size(chain, fwd, i, sorted(full), targets, rule, seed, memory_budget, out)
        if units and how != "full":
            _on_windows(
                chain, fwd, i, layer, units, targets, inputs, rule, seed, how, memory_budget, out
            )
    return out


def _full_size(
    chain: list[tuple[str, nn.Module]],
    fwd: Forward,
    i: int,
    members: list[int],
    targets: Sequence[Target],
    rule: str,
    seed: str,
    memory_budget: int,
    out: _Out,
) -> None:
    """The full-size reversed pass of ``members`` (target indices) from layer ``i``, in
    batches of inputs x targets sized to ``memory_budget``."""
    activation = fwd.outputs[i]
    n = activation.shape[0]
    per_row = backward_bytes(chain, fwd, i, activation.element_size())
    if per_row > memory_budget:
        raise ParameterError(
            "memory_budget",
            f"at least {per_row} bytes: the full-size reversed pass of one target of one "
            f"input from layer {targets[members[0]].layer!r} needs about that much",
            memory_budget,
            hint="raise memory_budget (bytes)",
        )
    rows = min(memory_budget // per_row, max(n, _WORKING_SET // per_row))
    block_n = min(n, rows)
    block_t = max(1, min(len(members), rows // block_n))
    ready = prepare_states(chain[: i + 1], fwd.states[: i + 1], activation.dtype, rule)
    scratch = Scratch()  # one buffer for the transposed convs of every batch
    for a in range(0, n, block_n):
        b = min(n, a + block_n)
        states = [slice_state(state, slice(a, b)) for state in ready]
        for c in range(0, len(members), block_t):
            chunk = members[c : c + block_t]
            signal, values, positions = select(activation[a:b], [targets[t] for t in chunk], seed)
            back = backward_chain(chain, signal, states, i, rule, scratch)
            consecutive = chunk == list(range(chunk[0], chunk[0] + len(chunk)))
            index: Any = slice(chunk[0], chunk[-1] + 1) if consecutive else torch.tensor(chunk)
            out.projections[a:b, index] = back.reshape(b - a, len(chunk), *out.sample)
            out.values[a:b, index] = values
            out.positions[a:b, index, : positions.shape[-1]] = positions


def _on_windows(
    chain: list[tuple[str, nn.Module]],
    fwd: Forward | None,
    i: int,
    layer: str,
    members: list[int],
    targets: Sequence[Target],
    inputs: Tensor,
    rule: str,
    seed: str,
    how: str,
    memory_budget: int,
    out: _Out,
) -> None:
    """Unit targets ``members`` of layer ``i`` on their cones (``how``: crop or cone), put
    into the full-size result (zero outside each receptive field)."""
    n = inputs.shape[0]
    ndim = inputs.dim() - 2
    chosen = [targets[t] for t in members]
    if fwd is not None and i in fwd.outputs:
        _, positions, _ = locate(fwd.outputs[i], chosen)
    else:  # crop at given positions: no full-size forward pass at all
        given = [tuple(t.position) for t in chosen]
        for pos in given:
            if len(pos) != ndim:
                raise ParameterError(
                    "position", f"{ndim} indices into the map of layer {layer!r}", pos
                )
        positions = torch.tensor(given, dtype=torch.long).view(1, len(chosen), ndim)
        positions = positions.expand(n, len(chosen), ndim)
    jobs = [
        (r, chosen[k].channel, tuple(int(v) for v in positions[r, k]))
        for r in range(n)
        for k in range(len(chosen))
    ]
    spatial = tuple(int(v) for v in inputs.shape[2:])
    if how == "crop":
        res = cropped_projections(
            chain, inputs, layer, jobs, rule=rule, memory_budget=memory_budget, seed=seed
        )
    else:
        assert fwd is not None
        res = cone_backward(
            chain,
            fwd.states,
            fwd.outputs[i],
            layer,
            jobs,
            spatial,
            rule=rule,
            memory_budget=memory_budget,
            c_in=int(inputs.shape[1]),
            seed=seed,
        )
    t_count = out.projections.shape[1]
    rows = torch.tensor([r * t_count + members[k] for r in range(n) for k in range(len(members))])
    canvas = out.projections.view(n * t_count, *out.sample)
    embed_windows(canvas, res.projections.to(canvas.dtype), res.boxes[:, :, 0], rows)
    index = torch.tensor(members)
    out.values[:, index] = res.values.view(n, len(members)).to(out.values.dtype)
    out.positions[:, index] = positions
    for t in members:
        out.methods[t] = how


# ---------------------------------------------------------------------------- rules engine
def _run_rules(
    model: nn.Module,
    inputs: Tensor,
    targets: Sequence[Target],
    rule: str,
    seed: str,
    memory_budget: int,
) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
    """All targets of a layer backpropagated through one recorded forward pass
    (:func:`~convlens.deconvnet.rules.batched_vjp`): in vmapped batches on accelerators, one
    ``autograd.grad`` per target on a CPU, where that measured faster."""
    groups = _groups(targets)
    n = inputs.shape[0]
    found: dict[str, tuple[Tensor, Tensor]] = {}

    def signal_of(layer: str, activation: Tensor, rows: slice) -> Tensor:
        members = groups[layer]
        if layer not in found:
            values, positions, _ = locate(activation, [targets[t] for t in members])
            found[layer] = (values, positions)
        chosen = [targets[t] for t in members[rows]]
        signal = select(activation, chosen, seed)[0]
        # (t, N, ...): one cotangent per target, each a batch of the N inputs
        return signal.reshape(n, len(chosen), *activation.shape[1:]).transpose(0, 1)

    counts = {layer: len(members) for layer, members in groups.items()}
    batched = inputs.device.type != "cpu"  # one autograd.grad per target measured faster on CPUs
    grads = batched_vjp(model, inputs, counts, rule, signal_of, memory_budget, batched)
    return {
        layer: (grads[layer].transpose(0, 1), *found[layer])  # (N, T, ...)
        for layer in groups
    }


def project(
    model: Any,
    inputs: Tensor,
    targets: Target | Sequence[Target],
    *,
    rule: str = "deconvnet",
    engine: str = "auto",
    method: str = "auto",
    seed: str = "value",
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> Projection:
    """Project each target's activation of each input back to input space.

    ``model``: an ``nn.Module`` (or, for the explicit engine, a list of modules; see
    :func:`~convlens.deconvnet.explicit.chain_of`). ``inputs``: a batch (N, C, *spatial) on the
    model's device, of its dtype. ``targets``: :class:`Target` s (layer by module path).
    ``rule``: ``"deconvnet"`` (Zeiler & Fergus, arXiv:1311.2901), ``"guided"`` (guided
    backprop, Springenberg et al., arXiv:1412.6806) or ``"gradient"``. ``engine``:
    ``"explicit"``, ``"rules"`` or ``"auto"``: explicit where the model is a chain of supported
    layers up to every target *and* its own ``forward`` runs that chain on this batch (checked
    with hooks, :func:`~convlens.deconvnet.verify.chain_mismatch`, except for a plain
    ``nn.Sequential`` and torchvision's VGG and AlexNet, whose forward is known; a model that
    flips, scales or branches gets the rules engine, and ``engine="explicit"`` is refused for
    it), rules
    otherwise; both give the same projections where both apply. The result's ``engine`` says
    which ran and ``engine_note`` why. ``method`` (explicit engine, unit targets): ``"cone"``,
    ``"crop"``, ``"full"`` or ``"auto"`` (see the module docstring); the rules engine runs
    ``"full"`` only; the result's ``methods`` say which ran. ``seed``: the chosen activation
    keeps its ``"value"`` (Zeiler & Fergus) or is set to ``"one"`` (as Captum, zennit and
    Grad-CAM seed the gradient); the two differ by more than a scale for units whose value is
    not positive (:data:`~convlens.deconvnet.target.SEEDS`). ``memory_budget``: bytes of
    working memory the batches of targets are sized to (the result itself, N x T inputs, comes
    on top).

    One forward pass serves all targets of an input batch: the explicit engine broadcasts its
    switches and ReLU signs over the targets; the rules engine backpropagates all targets
    through the same recorded graph (in vmapped batches off the CPU). The model runs in eval mode;
    its own flags are restored after.

    >>> net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU())
    >>> project(net, torch.randn(1, 1, 8), Target("1", 0), engine="rules").projections.shape
    torch.Size([1, 1, 1, 8])
    """
    target_list = as_targets(targets)
    rule = check_rule(rule)
    seed = check_seed(seed)
    if engine not in ENGINES:
        raise ParameterError("engine", f"one of {', '.join(ENGINES)}", engine)
    if method not in METHODS:
        raise ParameterError("method", f"one of {', '.join(METHODS)}", method)
    memory_budget = _check_budget(memory_budget)
    chain: list[tuple[str, nn.Module]] | None = None
    deepest = 0
    note = ""
    if engine in ("explicit", "auto"):
        if isinstance(model, nn.Module):
            _check_layers(model, target_list)
        try:
            chain, deepest = _explicit_chain(model, target_list)
        except ConvLensError as exc:
            if engine == "explicit":
                raise
            if isinstance(exc, ParameterError) and exc.param == "layer":
                why = f"layer {exc.received!r} is not in the chain it reverses"
            else:
                why = str(exc)
            note = f"rules: the explicit engine does not apply ({why})"
    if chain is None:
        if not isinstance(model, nn.Module):
            raise ParameterTypeError("model", "an nn.Module", model)
        if isinstance(model, torch.jit.ScriptModule):
            raise ParameterError(
                "model",
                "a Python nn.Module (TorchScript code cannot be intercepted at its ReLUs)",
                type(model).__name__,
                hint="use engine='explicit' with an eager chain model",
            )
        _check_layers(model, target_list)
        if method in ("crop", "cone"):
            raise ParameterError(
                "method",
                "'full' or 'auto' with the rules engine ('crop' and 'cone' need the explicit "
                "engine: a chain of conv, max-pool and pointwise layers)",
                method,
            )
        note = note or "rules: asked for"
    owner = model if isinstance(model, nn.Module) else nn.ModuleList(model)
    inputs = check_model_inputs(
        owner, inputs, "inputs", channels=_first_channels(chain) if chain else None
    )
    with eval_mode(owner):
        if chain is not None:
            known = _known_chain(model, chain) if isinstance(model, nn.Module) else None
            if not isinstance(model, nn.Module):
                note = "explicit: the chain of modules given"
            elif known is not None:
                note = f"explicit: {known}"
            else:
                reason = chain_mismatch(model, chain, inputs, deepest)
                if reason is not None and engine == "explicit":
                    raise ParameterError(
                        "engine",
                        "'rules' or 'auto' for a model whose forward does not run its layers "
                        "as the chain the explicit engine reverses",
                        engine,
                        hint=f"on this batch, {reason}",
                    )
                if reason is None:
                    note = "explicit: the model's forward runs the chain (checked on this batch)"
                else:
                    chain = None
                    note = f"rules: the model's forward is not the chain on this batch ({reason})"
        if chain is not None:
            try:
                out = _run_explicit(chain, inputs, target_list, rule, method, seed, memory_budget)
            except RuntimeError as exc:  # torch on the user's layers and tensors
                raise forward_error(owner, inputs, exc, inputs_param="inputs") from exc
            return Projection(
                out.projections,
                out.values,
                out.positions,
                tuple(target_list),
                rule,
                "explicit",
                tuple(out.methods),
                seed,
                note,
            )
        parts = _run_rules(model, inputs, target_list, rule, seed, memory_budget)
    projections, values, positions = _assemble(
        inputs.shape[0], tuple(inputs.shape[1:]), target_list, parts, inputs
    )
    return Projection(
        projections,
        values,
        positions,
        tuple(target_list),
        rule,
        "rules",
        ("full",) * len(target_list),
        seed,
        note,
    )
