"""Looking up a layer by its module path, with one message for a path that is not there.

Module paths are the names of ``model.named_modules()`` (``"features.28"``). Whatever asks for
a layer (projections, the scan, occlusion, the report) checks the path here, so a mistyped
path reads the same everywhere: the parameter, ``a module path of the model, one of: ...``
(the model's paths, the first :data:`SHOWN` of them) and the path received. Torch-free: the
model is only asked for ``named_modules()``.

>>> import torch.nn as nn
>>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
>>> find_module(net, "1")
ReLU()
>>> try:
...     find_module(net, "2")
... except ParameterError as exc:
...     print(exc)
layer: expected a module path of the model, one of: 0, 1, received '2'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from convlens.errors import ParameterError, ParameterTypeError, verbatim

__all__ = [
    "SHOWN",
    "check_layer_path",
    "find_module",
    "find_modules",
    "reused_layer",
    "unknown_layer",
]

#: How many valid paths a message lists before it says how many more there are.
SHOWN = 40


def _listing(valid: Sequence[str]) -> str:
    shown = ", ".join(valid[:SHOWN])
    more = len(valid) - SHOWN
    return f"{shown}, ... ({more} more)" if more > 0 else (shown or "none")


def unknown_layer(path: Any, valid: Iterable[str], param: str = "layer") -> ParameterError:
    """The error for a module path ``path`` that is not among ``valid`` (the root ``""`` is
    never listed).

    >>> str(unknown_layer("9", ["", "0", "1"], "layers"))
    "layers: expected a module path of the model, one of: 0, 1, received '9'"
    """
    names = [n for n in valid if n]
    return ParameterError(param, f"a module path of the model, one of: {_listing(names)}", path)


def reused_layer(path: str, calls: int, param: str = "layer") -> ParameterError:
    """The error for a module that one forward pass calls ``calls`` > 1 times (a ReLU module
    reused inside a torchvision ResNet block): its output is no one tensor, and reading the
    first or the last call would be a silent choice, so every reader of layers refuses it.

    >>> print(reused_layer("layer3.1.relu", 2))
    layer: expected a module that one forward pass calls once, received 'layer3.1.relu' (called 2 times). name the output you mean by a module called once, e.g. 'layer3.1' (the enclosing block)
    """
    parent = path.rsplit(".", 1)[0] if "." in path else None
    hint = "name the output you mean by a module called once" + (
        f", e.g. {parent!r} (the enclosing block)" if parent else ""
    )
    return ParameterError(
        param,
        "a module that one forward pass calls once",
        verbatim(f"{path!r} (called {calls} times)"),
        hint=hint,
    )


def check_layer_path(path: Any, valid: Iterable[str], param: str = "layer") -> str:
    """``path`` when it is one of ``valid`` (and not the root ``""``), else
    :func:`unknown_layer`'s error.

    >>> check_layer_path("0", ["", "0"])
    '0'
    """
    names = list(valid)
    if not isinstance(path, str):
        raise ParameterTypeError(param, "a module path (str)", path)
    if not path or path not in names:
        raise unknown_layer(path, names, param)
    return path


def find_module(model: Any, path: Any, param: str = "layer") -> Any:
    """The submodule of ``model`` at module path ``path``."""
    modules = dict(model.named_modules())
    return modules[check_layer_path(path, modules, param)]


def find_modules(model: Any, paths: Sequence[str] | str, param: str = "layers") -> dict[str, Any]:
    """The submodules at ``paths`` (a list, or one comma-separated string), in that order.

    At least one path, each at most once.

    >>> import torch.nn as nn
    >>> list(find_modules(nn.Sequential(nn.ReLU(), nn.Tanh()), "1,0"))
    ['1', '0']
    """
    if isinstance(paths, str):
        paths = [s for s in paths.split(",") if s]
    paths = list(paths)
    if not paths:
        raise ParameterError(param, "at least one module path", paths)
    if len(set(paths)) != len(paths):
        raise ParameterError(param, "distinct module paths", paths)
    modules = dict(model.named_modules())
    return {p: modules[check_layer_path(p, modules, param)] for p in paths}
