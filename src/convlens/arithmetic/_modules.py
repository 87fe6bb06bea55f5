"""Reading a layer's geometry off a PyTorch module, importing torch only when a module is read.

:func:`module_geometry` returns the constructor arguments of a
:class:`~convlens.arithmetic.LayerSpec` (which validates them); it knows nothing of LayerSpec,
so :mod:`convlens.arithmetic.layer` builds on it without a cycle.

>>> import torch.nn as nn
>>> kind, ndim, kwargs = module_geometry(nn.MaxPool2d(3, 2))
>>> kind, ndim, kwargs["stride"]
('max_pool', 2, 2)
"""

from __future__ import annotations

import functools
import sys
from typing import Any

from convlens.errors import ParameterTypeError, UnsupportedModuleError

__all__ = ["SUPPORTED_MODULES", "is_geometric", "is_module", "module_geometry"]

_KIND_OF = {
    "Conv": "conv",
    "ConvTranspose": "conv_transpose",
    "MaxPool": "max_pool",
    "AvgPool": "avg_pool",
}
#: The module types with a LayerSpec, by name (no torch needed to list them).
SUPPORTED_MODULES: tuple[str, ...] = tuple(
    f"{prefix}{n}d" for prefix in _KIND_OF for n in (1, 2, 3)
)


def is_module(value: Any) -> bool:
    """Whether ``value`` is a ``torch.nn.Module``, without importing torch (if torch was never
    imported, nothing can be a module).

    >>> is_module("conv")
    False
    """
    torch = sys.modules.get("torch")
    nn = getattr(torch, "nn", None)
    return nn is not None and isinstance(value, nn.Module)


@functools.lru_cache(maxsize=1)
def _table() -> dict[type, tuple[str, int]]:
    import torch.nn as nn

    return {getattr(nn, name): (_KIND_OF[name[:-2]], int(name[-2])) for name in SUPPORTED_MODULES}


def _kind(module: Any) -> tuple[str, int] | None:
    if not is_module(module):
        return None
    for cls, found in _table().items():
        if isinstance(module, cls):
            return found
    return None


def is_geometric(module: Any) -> bool:
    """Whether ``module`` is a conv, transposed conv or pooling layer with a LayerSpec.

    >>> import torch.nn as nn
    >>> is_geometric(nn.Conv2d(1, 1, 3)), is_geometric(nn.ReLU())
    (True, False)
    """
    return _kind(module) is not None


def module_geometry(module: Any, path: str = "module") -> tuple[str, int, dict[str, Any]]:
    """``(kind, ndim, arguments)`` of ``LayerSpec._make`` for a conv, transposed-conv or pooling
    module; :class:`~convlens.errors.UnsupportedModuleError` for any other module.

    >>> import torch.nn as nn
    >>> module_geometry(nn.Conv1d(2, 4, 3, groups=2))[2]["groups"]
    2
    """
    if not is_module(module):
        raise ParameterTypeError("module", "a torch.nn.Module", module)
    found = _kind(module)
    if found is None:
        raise UnsupportedModuleError(
            path, type(module).__name__, list(SUPPORTED_MODULES), "convolution arithmetic"
        )
    kind, n = found
    m: Any = module
    if kind in ("conv", "conv_transpose"):
        return (
            kind,
            n,
            {
                "kernel_size": m.kernel_size,
                "stride": m.stride,
                "padding": m.padding,
                "dilation": m.dilation,
                "output_padding": m.output_padding if kind == "conv_transpose" else 0,
                "groups": m.groups,
                "padding_mode": m.padding_mode,
                "in_channels": m.in_channels,
                "out_channels": m.out_channels,
            },
        )
    stride = m.stride if m.stride is not None else m.kernel_size
    rest: dict[str, Any] = {"ceil_mode": bool(m.ceil_mode)}
    if kind == "avg_pool":
        rest["count_include_pad"] = bool(m.count_include_pad)
    return (
        kind,
        n,
        {
            "kernel_size": m.kernel_size,
            "stride": stride,
            "padding": m.padding,
            "dilation": m.dilation if kind == "max_pool" else 1,
            "output_padding": 0,
            **rest,
        },
    )
