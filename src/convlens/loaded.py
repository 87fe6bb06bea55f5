"""What a loaded model carries besides its weights: preprocessing and provenance; and
:func:`eval_mode`, which every layer that runs a user's model in eval mode uses.

:class:`LoadedModel` is a plain record, the one type every model source returns
(:func:`convlens.models.load_model`, the embedded demo, a user's ``package.module:factory``).
It lives below both the loaders and the demo so that neither imports the other for it.
Torch-free: the fields are only annotated with torch types, and :func:`eval_mode` only calls
the model's own methods.

>>> record = LoadedModel(object(), "net", str, (28, 28), None, None, "a test")
>>> record.name, record.input_size
('net', (28, 28))
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image
    from torch import Tensor, nn

__all__ = ["LoadedModel", "eval_mode", "model_facts"]


@dataclass
class LoadedModel:
    """A model ready to use: ``model`` (eval mode, on its device), its ``name``, ``preprocess``
    (PIL image -> float tensor (C, H, W)), ``input_size`` (H, W) or None, the SHA-256 of the
    weights file (None for random or factory-made weights), ``class_names`` (or None),
    ``source`` (where it came from, in words) and ``seed``: the seed of the random number
    generator the model was built under where its weights did not come from a file (random
    weights, a factory), else None."""

    model: nn.Module
    name: str
    preprocess: Callable[[Image.Image], Tensor]
    input_size: tuple[int, ...] | None
    weights_sha256: str | None
    class_names: tuple[str, ...] | None
    source: str
    seed: int | None = None


def model_facts(model: Any) -> dict[str, Any]:
    """What is known about ``model`` (a :class:`LoadedModel`, or a bare module: only its
    type's name): ``name``, ``source``, ``weights_sha256``, ``class_names``, ``input_size``,
    ``seed``.

    >>> model_facts(object())["name"], model_facts(object())["source"]
    ('object', None)
    """
    inner = getattr(model, "model", model)
    return {
        "name": getattr(model, "name", type(inner).__name__),
        "source": getattr(model, "source", None),
        "weights_sha256": getattr(model, "weights_sha256", None),
        "class_names": getattr(model, "class_names", None),
        "input_size": getattr(model, "input_size", None),
        "seed": getattr(model, "seed", None),
    }


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block, then restore every module's own ``training``
    flag, also when the block raises (``model.train(was)`` would set one flag for all).

    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Dropout(), nn.Dropout().eval()).train()
    >>> net[1].training = False
    >>> with eval_mode(net):
    ...     [m.training for m in net.modules()]
    [False, False, False]
    >>> [m.training for m in net.modules()]
    [True, True, False]
    """
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for m, flag in flags:
            m.training = flag
