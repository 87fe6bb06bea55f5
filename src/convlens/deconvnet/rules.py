"""The backward-rule engine: deconvnet, guided backprop and plain gradients for any nn.Module.

Springenberg et al. (arXiv:1412.6806, Fig. 1) show that Zeiler & Fergus' deconvnet
(arXiv:1311.2901), guided backpropagation and the plain gradient differ only in what happens
at each ReLU on the way back. So run autograd from the chosen activations with every ReLU's
backward replaced by the rule (:func:`~convlens.deconvnet.explicit.relu_backward`); every
other layer keeps its exact gradient, which for conv, pooling and BatchNorm (eval) *is* the
deconvnet's transposed filtering and unpooling. Residual nets work as they are.

Every ReLU is caught by a :class:`torch.overrides.TorchFunctionMode` that intercepts
``F.relu`` (which ``nn.ReLU`` calls, so each module call is caught exactly once),
``torch.relu``, ``Tensor.relu`` and their inplace forms ``F.relu(inplace=True)``,
``torch.relu_``, ``Tensor.relu_``. Other spellings (``clamp(min=0)``, ``F.threshold``) are not
ReLUs to this engine. TorchScript code is not intercepted.

>>> import torch, torch.nn as nn
>>> net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU(inplace=True))
>>> x = torch.randn(1, 1, 6)
>>> with relu_rule("guided") as mode:
...     y = net(x.requires_grad_())
>>> mode.calls
1
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

from convlens.checks import forward_error
from convlens.deconvnet.explicit import check_rule, relu_backward
from convlens.errors import ConvLensError, ParameterError
from convlens.layer_paths import reused_layer

__all__ = [
    "Captured",
    "ReluRuleMode",
    "RuleReLU",
    "batched_vjp",
    "capture_outputs",
    "check_seen",
    "relu_rule",
]


class RuleReLU(torch.autograd.Function):
    """``relu(x)`` forwards; on the way back the rule given to :meth:`apply` (x, rule).

    Saves only the sign of ``x`` (read off the output, ``relu(x) > 0`` exactly where
    ``x > 0``), so ``x`` may be overwritten afterwards (inplace ReLU). Written for
    ``torch.func`` too (``setup_context``, a generated vmap rule), so that the backward of
    many targets runs as one vmapped pass (:func:`batched_vjp`).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, rule: str) -> Tensor:
        # bit for bit what torch.relu gives (-inf -> 0, NaN stays NaN, -0.0 stays -0.0);
        # x * (x > 0) would turn -inf into NaN and every negative into -0.0
        return torch.clamp_min(x, 0)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.save_for_backward(output > 0)
        ctx.rule = inputs[1]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (positive,) = ctx.saved_tensors
        return relu_backward(grad, positive, ctx.rule), None


_OUT_OF_PLACE = {F.relu, torch.relu, Tensor.relu}
_INPLACE = {torch.relu_, Tensor.relu_}


class ReluRuleMode(TorchFunctionMode):
    """Routes every ReLU call to :class:`RuleReLU` with ``rule``; counts them in ``calls``."""

    def __init__(self, rule: str):
        super().__init__()
        self.rule = check_rule(rule)
        self.calls = 0

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: Sequence[Any] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        inplace = func in _INPLACE
        if func is F.relu:
            inplace = bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
        elif not inplace and func not in _OUT_OF_PLACE:
            return func(*args, **kwargs)
        x = args[0] if args else kwargs["input"]
        self.calls += 1
        y = RuleReLU.apply(x, self.rule)
        if inplace:
            # keep the caller's tensor object: overwrite it with the rule-carrying result
            return x.copy_(y)
        return y


@contextlib.contextmanager
def relu_rule(rule: str) -> Iterator[ReluRuleMode]:
    """Inside this block every ReLU backpropagates by ``rule``; the mode is popped on exit,
    also when the block raises.

    >>> with relu_rule("deconvnet") as mode:
    ...     _ = torch.relu(torch.ones(2))
    >>> mode.calls
    1
    """
    mode = ReluRuleMode(rule)
    with mode:
        yield mode


class Captured(dict[str, Tensor]):
    """The outputs :func:`capture_outputs` recorded, by layer; ``calls``: how many times the
    forward called each layer's module."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, int] = {}


@contextlib.contextmanager
def capture_outputs(model: nn.Module, layers: Sequence[str]) -> Iterator[Captured]:
    """Record the output of each module named in ``layers`` during the block.

    A module called more than once (torchvision ResNet's block ``relu``) is counted in
    ``calls``: :func:`check_seen` refuses it (its output is no one tensor). The output the model
    goes on with is a copy, so later inplace operations of the model do not change the
    recorded tensor. Hooks are removed on exit, also on errors.

    >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    >>> with capture_outputs(net, ["0"]) as seen:
    ...     _ = net(torch.ones(1, 2))
    >>> seen["0"].shape, seen.calls
    (torch.Size([1, 3]), {'0': 1})
    """
    modules = dict(model.named_modules())
    missing = [name for name in layers if name not in modules]
    if missing:
        raise ParameterError(
            "layer",
            "a module path of the model, one of: " + ", ".join(n for n in modules if n),
            missing[0],
        )
    seen = Captured()
    handles = []
    try:
        for name in dict.fromkeys(layers):

            def hook(_m: nn.Module, _args: Any, output: Any, name: str = name) -> Any:
                if not isinstance(output, Tensor):
                    raise ParameterError("layer", "a module whose output is one tensor", name)
                seen.calls[name] = seen.calls.get(name, 0) + 1
                if seen.calls[name] > 1:
                    return None  # refused after the forward pass (check_seen)
                seen[name] = output
                return output.clone()

            handles.append(modules[name].register_forward_hook(hook))
        yield seen
    finally:
        for handle in handles:
            handle.remove()


Cotangents = Callable[[str, Tensor, slice], Tensor]


def _loop_vjp(
    model: nn.Module,
    inputs: Tensor,
    counts: dict[str, int],
    rule: str,
    cotangents_of: Cotangents,
) -> dict[str, Tensor]:
    """:func:`batched_vjp` by plain autograd, one ``autograd.grad`` per target."""
    layers = list(counts)
    x = inputs.detach().clone().requires_grad_(True)
    with torch.enable_grad(), capture_outputs(model, layers) as seen, relu_rule(rule):
        _run_model(model, x)
    check_seen(layers, seen)
    grads = {}
    for k, layer in enumerate(layers):
        activation = seen[layer]
        rows = []
        for m in range(counts[layer]):
            (cotangent,) = cotangents_of(layer, activation.detach(), slice(m, m + 1))
            last = k == len(layers) - 1 and m == counts[layer] - 1
            (grad,) = torch.autograd.grad(
                activation, x, cotangent, retain_graph=not last, allow_unused=True
            )
            rows.append(torch.zeros_like(x) if grad is None else grad)
        grads[layer] = torch.stack(rows).detach()
    return grads


#: Words of the errors by which torch.func refuses a model (then autograd runs per target).
_FUNC_ERRORS = ("functorch", "torch.func", "vmap", "setup_context", "batching rule", "Batched")


def _run_model(model: nn.Module, x: Tensor) -> None:
    """``model(x)``; a torch error there is the user's model on the user's inputs: one clear
    error naming them (:func:`convlens.checks.forward_error`)."""
    try:
        model(x)
    except ConvLensError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        if isinstance(exc, RuntimeError) and _unsupported_by_func(exc):
            raise  # torch.func refuses the model: the caller falls back to autograd
        raise forward_error(model, x, exc, inputs_param="inputs") from exc


def _unsupported_by_func(exc: RuntimeError) -> bool:
    return any(word in str(exc) for word in _FUNC_ERRORS)


def check_seen(layers: Sequence[str], seen: Captured) -> None:
    """Every layer of ``layers`` ran in the forward pass, each exactly once."""
    missing = [layer for layer in layers if layer not in seen]
    if missing:
        raise ParameterError("layer", "a module that the model's forward calls", missing[0])
    for layer in layers:
        if seen.calls.get(layer, 0) > 1:
            raise reused_layer(layer, seen.calls[layer])


def batched_vjp(
    model: nn.Module,
    inputs: Tensor,
    counts: dict[str, int],
    rule: str,
    cotangents_of: Cotangents,
    memory_budget: int = 1 << 30,
    batched: bool = True,
) -> dict[str, Tensor]:
    """Backpropagate ``counts[layer]`` signals from each layer to ``inputs`` under ``rule``:
    one forward pass, then per layer vmapped backward passes over batches of its signals.

    ``cotangents_of(layer, activation, rows)`` gives the signals ``rows`` (a slice of
    ``range(counts[layer])``) for the layer's output, (len(rows), *activation.shape); the
    result maps each layer to (counts[layer], *inputs.shape). The forward runs under
    ``torch.func.vjp`` with every ReLU routed to :class:`RuleReLU`; the backward passes of a
    batch run as one, ``torch.func.vmap`` over the vector-Jacobian product, batches sized to
    ``memory_budget`` bytes (about sixteen times the largest module output per signal: vmap's
    rules copy saved tensors to the batch, measured on VGG16 and ResNet-18). Where
    ``torch.func`` cannot run the model (a custom ``autograd.Function`` without
    ``setup_context``, an op vmap refuses), the same products are computed one
    ``autograd.grad`` per signal; ``batched=False`` asks for that path (on a CPU it is the
    faster one: vmap's batching rules copy tensors and gain nothing from larger batches there,
    see benchmarks/bench_project.py).

    >>> net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU())
    >>> def ones(layer, act, rows):
    ...     return torch.ones(len(range(3)[rows]), *act.shape)
    >>> batched_vjp(net, torch.randn(1, 1, 6), {"1": 3}, "deconvnet", ones)["1"].shape
    torch.Size([3, 1, 1, 6])
    """
    check_rule(rule)
    if not batched:
        return _loop_vjp(model, inputs, counts, rule, cotangents_of)
    layers = list(counts)
    largest = [int(inputs[0].numel()) if inputs.shape[0] else 0]

    def record(_m: nn.Module, _args: Any, output: Any) -> None:
        if isinstance(output, Tensor) and output.dim() > 0 and output.shape[0]:
            largest[0] = max(largest[0], int(output[0].numel()))

    def forward(x: Tensor) -> tuple[Tensor, ...]:
        with capture_outputs(model, layers) as seen, relu_rule(rule):
            _run_model(model, x)
        check_seen(layers, seen)
        return tuple(seen[layer] for layer in layers)

    handles = [m.register_forward_hook(record) for m in model.modules()]
    try:
        with torch.no_grad():  # nothing but the input is differentiated
            outputs, vjp_fn = torch.func.vjp(forward, inputs.detach())[:2]
    except RuntimeError as exc:
        if not _unsupported_by_func(exc):
            raise
        return _loop_vjp(model, inputs, counts, rule, cotangents_of)
    finally:
        for handle in handles:
            handle.remove()
    per_signal = 16 * inputs.element_size() * largest[0] * max(inputs.shape[0], 1)
    if per_signal > memory_budget:
        raise ParameterError(
            "memory_budget",
            f"at least {per_signal} bytes: the reversed pass of one target needs about that much",
            memory_budget,
            hint="raise memory_budget (bytes)",
        )
    chunk = max(1, memory_budget // per_signal)
    grads = {}
    for k, layer in enumerate(layers):
        activation = outputs[k].detach()
        rest = [torch.zeros_like(o) for o in outputs]
        dims = tuple(0 if j == k else None for j in range(len(layers)))
        out = inputs.new_empty((counts[layer], *inputs.shape))
        for lo in range(0, counts[layer], chunk):
            rows = slice(lo, min(lo + chunk, counts[layer]))
            rest[k] = cotangents_of(layer, activation, rows)
            try:
                (grad,) = torch.func.vmap(lambda *c: vjp_fn(c), in_dims=dims)(*rest)
            except RuntimeError as exc:
                if not _unsupported_by_func(exc):
                    raise
                return _loop_vjp(model, inputs, counts, rule, cotangents_of)
            out[rows] = grad.detach()
        grads[layer] = out
    return grads
