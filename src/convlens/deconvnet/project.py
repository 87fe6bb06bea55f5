"""Project activations back to input space: :func:`project` over both engines.

Zeiler & Fergus (arXiv:1311.2901, §2.1): keep one activation (or one feature map), zero the
rest of its layer, and pass the signal down through unpooling, ReLU and transposed filters.
``engine="explicit"`` runs the reversed network of
:mod:`convlens.deconvnet.explicit` on chain models; ``engine="rules"`` runs autograd with every
ReLU's backward replaced by the rule (:mod:`convlens.deconvnet.rules`) and works on any model;
``engine="auto"`` picks explicit where the chain supports the targets, rules otherwise. On
chains the two give the same projections.

>>> import torch, torch.nn as nn
>>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2))
>>> out = project(net, torch.randn(2, 1, 10, 10), [Target("2", 1), Target("0", 3, "map")])
>>> out.projections.shape, out.values.shape, out.positions.shape, out.engine
(torch.Size([2, 2, 1, 10, 10]), torch.Size([2, 2]), torch.Size([2, 2, 2]), 'explicit')
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from convlens.deconvnet.explicit import (
    backward_chain,
    chain_of,
    check_chain,
    check_rule,
    forward_chain,
)
from convlens.deconvnet.rules import capture_outputs, relu_rule
from convlens.deconvnet.target import Target, as_targets, select
from convlens.errors import ConvLensError, ParameterError, ParameterTypeError

__all__ = ["ENGINES", "Projection", "eval_mode", "project"]

#: The engines of :func:`project`.
ENGINES = ("auto", "explicit", "rules")


@dataclass(frozen=True)
class Projection:
    """The result of :func:`project` for N inputs and T targets.

    ``projections`` (N, T, *input sample shape): each target's signal in input space;
    ``values`` (N, T): the projected activation (for ``"map"`` the sum of the map);
    ``positions`` (N, T, spatial dims): the unit projected (``-1`` for ``"map"``, and to pad
    targets on layers with fewer spatial dimensions); ``engine``: the engine that ran.
    """

    projections: Tensor
    values: Tensor
    positions: Tensor
    targets: tuple[Target, ...]
    rule: str
    engine: str


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block, then restore every module's own flag.

    >>> net = nn.Sequential(nn.Dropout()).train()
    >>> with eval_mode(net):
    ...     net.training
    False
    >>> net.training
    True
    """
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def _check_inputs(inputs: Any) -> Tensor:
    if not isinstance(inputs, Tensor):
        raise ParameterTypeError("inputs", "a tensor (N, C, *spatial)", inputs)
    if inputs.dim() < 2 or inputs.shape[0] < 1:
        raise ParameterError("inputs", "a batch (N, C, *spatial) with N >= 1", tuple(inputs.shape))
    if not inputs.is_floating_point():
        raise ParameterError("inputs", "a floating-point tensor", str(inputs.dtype))
    return inputs


def _layer_index(chain: Sequence[tuple[str, nn.Module]], layer: str) -> int | None:
    for i, (path, _) in enumerate(chain):
        if path == layer:
            return i
    return None


def _check_layers(model: nn.Module, targets: Sequence[Target]) -> None:
    names = [n for n, _ in model.named_modules() if n]
    for target in targets:
        if target.layer not in names:
            raise ParameterError(
                "layer", "a module path of the model, one of: " + ", ".join(names), target.layer
            )


def _explicit_chain(model: Any, targets: Sequence[Target]) -> list[tuple[str, nn.Module]]:
    """The chain for the explicit engine, checked up to the deepest target (errors otherwise)."""
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
    check_chain(chain, deepest)
    return chain


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


def _run_explicit(
    chain: list[tuple[str, nn.Module]], inputs: Tensor, targets: Sequence[Target], rule: str
) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
    groups = _groups(targets)
    index = {layer: _layer_index(chain, layer) for layer in groups}
    deepest = max(i for i in index.values() if i is not None)
    outputs, states = forward_chain(chain, inputs, deepest)
    parts = {}
    for layer, members in groups.items():
        i = index[layer]
        assert i is not None  # checked by _explicit_chain
        signal, values, positions = select(outputs[i], [targets[t] for t in members])
        parts[layer] = (backward_chain(chain, signal, states, i, rule), values, positions)
    return parts


def _run_rules(
    model: nn.Module, inputs: Tensor, targets: Sequence[Target], rule: str
) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
    groups = _groups(targets)
    x = inputs.detach().clone().requires_grad_(True)
    with torch.enable_grad(), capture_outputs(model, list(groups)) as seen, relu_rule(rule):
        model(x)
    missing = [layer for layer in groups if layer not in seen]
    if missing:
        raise ParameterError("layer", "a module that the model's forward calls", missing[0])
    n = inputs.shape[0]
    parts = {}
    layers = list(groups)  # the recorded graph carries the rules; backward needs no mode
    for k, layer in enumerate(layers):
        members = groups[layer]
        activation = seen[layer]
        signal, values, positions = select(activation.detach(), [targets[t] for t in members])
        signal = signal.reshape(n, len(members), *activation.shape[1:])
        grads = []
        for m in range(len(members)):
            last = k == len(layers) - 1 and m == len(members) - 1
            (grad,) = torch.autograd.grad(
                activation, x, signal[:, m], retain_graph=not last, allow_unused=True
            )
            grads.append(torch.zeros_like(x) if grad is None else grad)
        parts[layer] = (torch.stack(grads, 1).detach(), values.detach(), positions)
    return parts


def project(
    model: Any,
    inputs: Tensor,
    targets: Target | Sequence[Target],
    *,
    rule: str = "deconvnet",
    engine: str = "auto",
) -> Projection:
    """Project each target's activation of each input back to input space.

    ``model``: an ``nn.Module`` (or, for the explicit engine, a list of modules; see
    :func:`~convlens.deconvnet.explicit.chain_of`). ``inputs``: a batch (N, C, *spatial).
    ``targets``: :class:`Target` s (layer by module path). ``rule``: ``"deconvnet"`` (Zeiler &
    Fergus, arXiv:1311.2901), ``"guided"`` (guided backprop, Springenberg et al.,
    arXiv:1412.6806) or ``"gradient"``. ``engine``: ``"explicit"``, ``"rules"`` or ``"auto"``
    (explicit where the model is a chain of supported layers up to every target).

    One forward pass serves all targets of an input batch: the explicit engine repeats its
    switches and ReLU signs to N*T rows; the rules engine backpropagates each target through
    the same recorded graph. The model runs in eval mode; its own flags are restored after.

    >>> net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU())
    >>> project(net, torch.randn(1, 1, 8), Target("1", 0), engine="rules").projections.shape
    torch.Size([1, 1, 1, 8])
    """
    target_list = as_targets(targets)
    rule = check_rule(rule)
    if engine not in ENGINES:
        raise ParameterError("engine", f"one of {', '.join(ENGINES)}", engine)
    inputs = _check_inputs(inputs)
    chain = None
    if engine in ("explicit", "auto"):
        if isinstance(model, nn.Module):
            _check_layers(model, target_list)
        try:
            chain = _explicit_chain(model, target_list)
        except ConvLensError:
            if engine == "explicit":
                raise
            chain = None
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
    used = "explicit" if chain is not None else "rules"
    owner = model if isinstance(model, nn.Module) else nn.ModuleList(model)
    with eval_mode(owner):
        if chain is not None:
            parts = _run_explicit(chain, inputs, target_list, rule)
        else:
            parts = _run_rules(model, inputs, target_list, rule)
    projections, values, positions = _assemble(
        inputs.shape[0], tuple(inputs.shape[1:]), target_list, parts, inputs
    )
    return Projection(projections, values, positions, tuple(target_list), rule, used)
