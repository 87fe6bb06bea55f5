"""Convolution arithmetic (Dumoulin & Visin, arXiv:1603.07285): shapes, inverses, receptive fields.

Torch-free at import time: the functions that read an ``nn.Module`` import torch when called.

>>> from convlens.arithmetic import LayerSpec
>>> LayerSpec.conv(3, stride=2, padding=1).output_size(12)
(6, 6)
"""

from typing import Any

from convlens.arithmetic._modules import SUPPORTED_MODULES, is_geometric
from convlens.arithmetic.inverse import (
    MAX_SIZES,
    ConvInverse,
    colliding_input_sizes,
    colliding_size_ranges,
    input_size_ranges,
    input_sizes_for,
    invert_conv,
    output_padding_for,
    transpose_size_range,
)
from convlens.arithmetic.layer import (
    PADDING_MODES,
    LayerKind,
    LayerSpec,
    conv_output_length,
    conv_transpose_output_length,
    infer_ndim,
    pool_output_length,
    spec_from_module,
)
from convlens.arithmetic.receptive import (
    Box,
    ReceptiveField,
    ReceptiveFieldTable,
    TracedLayer,
    elementwise_modules,
    receptive_fields,
    torchvision_architecture,
    trace_chain,
    unit_box,
)
from convlens.arithmetic.triples import count_layer_entries, layer_entries, layer_triples

__all__ = [
    "ELEMENTWISE_MODULES",
    "MAX_SIZES",
    "PADDING_MODES",
    "SUPPORTED_MODULES",
    "Box",
    "ConvInverse",
    "LayerKind",
    "LayerSpec",
    "ReceptiveField",
    "ReceptiveFieldTable",
    "TracedLayer",
    "colliding_input_sizes",
    "colliding_size_ranges",
    "conv_output_length",
    "conv_transpose_output_length",
    "count_layer_entries",
    "elementwise_modules",
    "infer_ndim",
    "input_size_ranges",
    "input_sizes_for",
    "invert_conv",
    "is_geometric",
    "layer_entries",
    "layer_triples",
    "output_padding_for",
    "pool_output_length",
    "receptive_fields",
    "spec_from_module",
    "torchvision_architecture",
    "trace_chain",
    "transpose_size_range",
    "unit_box",
]


def __getattr__(name: str) -> Any:
    """``ELEMENTWISE_MODULES`` is a tuple of torch module types: built (importing torch) on use."""
    if name == "ELEMENTWISE_MODULES":
        return elementwise_modules()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
