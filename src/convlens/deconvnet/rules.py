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

from convlens.deconvnet.explicit import check_rule, relu_backward
from convlens.errors import ParameterError

__all__ = ["ReluRuleMode", "RuleReLU", "capture_outputs", "relu_rule"]


class RuleReLU(torch.autograd.Function):
    """``relu(x)`` forwards; on the way back the rule given to :meth:`apply` (x, rule).

    Saves only the sign of ``x``, so ``x`` may be overwritten afterwards (inplace ReLU).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, rule: str) -> Tensor:
        positive = x > 0
        ctx.save_for_backward(positive)
        ctx.rule = rule
        return x * positive

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


@contextlib.contextmanager
def capture_outputs(model: nn.Module, layers: Sequence[str]) -> Iterator[dict[str, Tensor]]:
    """Record the output of each module named in ``layers`` during the block.

    A module called several times (torchvision ResNet's shared ``relu``) is read at its last
    call. The output the model goes on with is a copy, so later inplace operations of the
    model do not change the recorded tensor. Hooks are removed on exit, also on errors.

    >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    >>> with capture_outputs(net, ["0"]) as seen:
    ...     _ = net(torch.ones(1, 2))
    >>> seen["0"].shape
    torch.Size([1, 3])
    """
    modules = dict(model.named_modules())
    missing = [name for name in layers if name not in modules]
    if missing:
        raise ParameterError(
            "layer",
            "a module path of the model, one of: " + ", ".join(n for n in modules if n),
            missing[0],
        )
    seen: dict[str, Tensor] = {}
    handles = []
    try:
        for name in dict.fromkeys(layers):

            def hook(_m: nn.Module, _args: Any, output: Any, name: str = name) -> Any:
                if not isinstance(output, Tensor):
                    raise ParameterError("layer", "a module whose output is one tensor", name)
                seen[name] = output
                return output.clone()

            handles.append(modules[name].register_forward_hook(hook))
        yield seen
    finally:
        for handle in handles:
            handle.remove()
