"""Convolution arithmetic (Dumoulin & Visin, arXiv:1603.07285): shapes, inverses, receptive fields.

>>> from convlens.arithmetic import LayerSpec
>>> LayerSpec.conv(3, stride=2, padding=1).output_size(12)
(6, 6)
"""

from convlens.arithmetic._modules import SUPPORTED_MODULES, is_geometric, spec_from_module
from convlens.arithmetic.inverse import (
    ConvInverse,
    colliding_input_sizes,
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
    pool_output_length,
)
from convlens.arithmetic.receptive import (
    ELEMENTWISE_MODULES,
    Box,
    ReceptiveField,
    TracedLayer,
    receptive_fields,
    torchvision_architecture,
    trace_chain,
    unit_box,
)
from convlens.arithmetic.triples import layer_triples

__all__ = [
    "ELEMENTWISE_MODULES",
    "PADDING_MODES",
    "SUPPORTED_MODULES",
    "Box",
    "ConvInverse",
    "LayerKind",
    "LayerSpec",
    "ReceptiveField",
    "TracedLayer",
    "colliding_input_sizes",
    "conv_output_length",
    "input_sizes_for",
    "invert_conv",
    "is_geometric",
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
