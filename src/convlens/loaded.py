"""What a loaded model carries besides its weights: preprocessing and provenance.

:class:`LoadedModel` is a plain record, the one type every model source returns
(:func:`convlens.models.load_model`, the embedded demo, a user's ``package.module:factory``).
It lives below both the loaders and the demo so that neither imports the other for it.
Torch-free: the fields are only annotated with torch types.

>>> record = LoadedModel(object(), "net", str, (28, 28), None, None, "a test")
>>> record.name, record.input_size
('net', (28, 28))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image
    from torch import Tensor, nn

__all__ = ["LoadedModel", "model_facts"]


@dataclass
class LoadedModel:
    """A model ready to use: ``model`` (eval mode, on its device), its ``name``, ``preprocess``
    (PIL image -> float tensor (C, H, W)), ``input_size`` (H, W) or None, the SHA-256 of the
    weights file (None for random or factory-made weights), ``class_names`` (or None) and
    ``source`` (where it came from, in words)."""

    model: nn.Module
    name: str
    preprocess: Callable[[Image.Image], Tensor]
    input_size: tuple[int, ...] | None
    weights_sha256: str | None
    class_names: tuple[str, ...] | None
    source: str


def model_facts(model: Any) -> dict[str, Any]:
    """What is known about ``model`` (a :class:`LoadedModel`, or a bare module: only its
    type's name): ``name``, ``source``, ``weights_sha256``, ``class_names``, ``input_size``.

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
    }
