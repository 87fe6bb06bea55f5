"""Does a model's own ``forward`` run its ``features`` as the chain the explicit engine reverses?

The explicit engine (:mod:`convlens.deconvnet.explicit`) reverses the layers of
:func:`~convlens.deconvnet.explicit.chain_of` in order, from the batch itself. A model may
do more in its ``forward`` than run that chain: flip or scale the input first, add a skip
path, call a layer twice. Then the chain's projections are not those of the model, and an
automatic engine choice would change what is computed. :func:`chain_mismatch` runs the
model's ``forward`` on the actual batch, up to the deepest layer needed, and checks with
hooks that every layer of the chain is called in order, once, the first on the batch itself and
each next one on the previous one's output (compared by value, exactly: the model's own
tensors, no rounding between them).

>>> import torch, torch.nn as nn
>>> from convlens.deconvnet.explicit import chain_of
>>> class Flip(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.features = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU())
...     def forward(self, x):
...         return self.features(x.flip(-1))
>>> net, x = Flip(), torch.randn(2, 1, 8)
>>> chain_mismatch(net, chain_of(net), x, 1)
"layer 'features.0' is called on a tensor other than the batch"
>>> chain_mismatch(net.features, chain_of(net.features), x, 1) is None
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

__all__ = ["chain_mismatch"]


class _Stop(Exception):
    """Raised by a hook that found the reason: the rest of ``forward`` is not needed."""


def _same(a: Any, b: Tensor) -> bool:
    """``a`` is ``b`` by value: same shape, dtype and device, equal elements (NaN = NaN)."""
    if a is b:
        return True
    return (
        isinstance(a, Tensor)
        and a.shape == b.shape
        and a.dtype == b.dtype
        and a.device == b.device
        and bool(torch.allclose(a, b, rtol=0.0, atol=0.0, equal_nan=True))
    )


def chain_mismatch(
    model: nn.Module, chain: Sequence[tuple[str, nn.Module]], inputs: Tensor, upto: int
) -> str | None:
    """None when ``model(inputs)`` runs ``chain[: upto + 1]`` as a chain, else the reason.

    Runs the model's ``forward`` (no gradients; the caller puts it in eval mode) with hooks on
    those layers. A chain holds when the layers are called in order, each once in the whole
    forward (a layer called twice has no one output: the rules engine refuses it too),
    ``chain[0]`` on ``inputs`` and every next one on the output of the one before. An
    error of ``forward`` before ``chain[upto]`` ran is a reason too; one after it is not (a
    head made for other input sizes).
    """
    state: dict[str, Any] = {"next": 0, "last": inputs, "reason": None}

    def fail(reason: str) -> None:
        state["reason"] = reason
        raise _Stop

    def before(module: nn.Module, args: tuple[Any, ...]) -> None:
        k = state["next"]
        if k > upto:  # the chain ran; a layer of it runs again (which call would be projected?)
            called = next(p for p, m in chain[: upto + 1] if m is module)
            fail(f"layer {called!r} is called again after the chain")
        if id(chain[k][1]) != id(module):
            called = next(p for p, m in chain if m is module)
            fail(f"layer {called!r} is called out of the chain's order")
        if len(args) != 1 or not _same(args[0], state["last"]):
            what = "the batch" if k == 0 else f"the output of {chain[k - 1][0]!r}"
            fail(f"layer {chain[k][0]!r} is called on a tensor other than {what}")

    def after(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        k = state["next"]
        if not isinstance(output, Tensor):
            fail(f"layer {chain[k][0]!r} returns no tensor")
        state["last"] = output
        state["next"] = k + 1

    handles = []
    seen: set[int] = set()
    try:
        for _, module in chain[: upto + 1]:
            if id(module) in seen:
                continue
            seen.add(id(module))
            handles.append(module.register_forward_pre_hook(before))
            handles.append(module.register_forward_hook(after))
        with torch.no_grad():
            try:
                model(inputs)
            except _Stop:
                return str(state["reason"])
            except Exception as exc:
                if state["next"] <= upto:  # the model's own forward fails before the layer
                    return f"its forward raised {type(exc).__name__} before {chain[upto][0]!r}"
                # a failure after the chain (a head for other input sizes): the chain held
    finally:
        for handle in handles:
            handle.remove()
    if state["next"] <= upto:
        return f"its forward never reached layer {chain[upto][0]!r}"
    return None
