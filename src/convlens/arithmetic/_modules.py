"""Reading a :class:`LayerSpec` off a PyTorch module."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn as nn

from convlens.arithmetic.layer import LayerSpec
from convlens.errors import ParameterTypeError, UnsupportedModuleError

_CONV = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
_TCONV = {nn.ConvTranspose1d: 1, nn.ConvTranspose2d: 2, nn.ConvTranspose3d: 3}
_MAX = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}
_AVG = {nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3}
SUPPORTED_MODULES = tuple(t.__name__ for t in (*_CONV, *_TCONV, *_MAX, *_AVG))


def is_geometric(module: nn.Module) -> bool:
    """Whether ``module`` is a conv, transposed conv or pooling layer with a :class:`LayerSpec`."""
    return isinstance(module, (*_CONV, *_TCONV, *_MAX, *_AVG))


def _ndim(module: nn.Module, table: Mapping[Any, int]) -> int | None:
    for cls, n in table.items():
        if isinstance(module, cls):
            return n
    return None


def spec_from_module(module: nn.Module, path: str = "module") -> LayerSpec:
    """The geometry of a conv, transposed-conv or pooling module.

    >>> spec_from_module(nn.Conv2d(3, 8, 5, stride=2)).output_size(32)
    (14, 14)
    """
    if not isinstance(module, nn.Module):
        raise ParameterTypeError("module", "a torch.nn.Module", module)
    if (n := _ndim(module, _CONV)) is not None:
        assert isinstance(module, nn.modules.conv._ConvNd)
        return LayerSpec._make(
            "conv",
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            0,
            n,
            groups=module.groups,
            padding_mode=module.padding_mode,
            in_channels=module.in_channels,
            out_channels=module.out_channels,
        )
    if (n := _ndim(module, _TCONV)) is not None:
        assert isinstance(module, nn.modules.conv._ConvNd)
        return LayerSpec._make(
            "conv_transpose",
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            module.output_padding,
            n,
            groups=module.groups,
            in_channels=module.in_channels,
            out_channels=module.out_channels,
        )
    if (n := _ndim(module, _MAX)) is not None:
        m: Any = module
        stride = m.stride if m.stride is not None else m.kernel_size
        return LayerSpec._make(
            "max_pool",
            m.kernel_size,
            stride,
            m.padding,
            m.dilation,
            0,
            n,
            ceil_mode=bool(m.ceil_mode),
        )
    if (n := _ndim(module, _AVG)) is not None:
        m = module
        stride = m.stride if m.stride is not None else m.kernel_size
        return LayerSpec._make(
            "avg_pool",
            m.kernel_size,
            stride,
            m.padding,
            1,
            0,
            n,
            ceil_mode=bool(m.ceil_mode),
            count_include_pad=bool(m.count_include_pad),
        )
    raise UnsupportedModuleError(
        path, type(module).__name__, list(SUPPORTED_MODULES), "convolution arithmetic"
    )
