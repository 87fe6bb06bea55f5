"""Convolution arithmetic (Dumoulin & Visin, arXiv:1603.07285): shapes, inverses, receptive fields.

>>> from convlens.arithmetic import LayerSpec
>>> LayerSpec.conv(3, stride=2, padding=1).output_size(12)
(6, 6)
"""

from convlens.arithmetic._modules import SUPPORTED_MODULES, is_geometric, spec_from_module
from convlens.arithmetic.layer import (
    PADDING_MODES,
    LayerKind,
    LayerSpec,
    conv_output_length,
    pool_output_length,
)

__all__ = [
    "PADDING_MODES",
    "SUPPORTED_MODULES",
    "LayerKind",
    "LayerSpec",
    "conv_output_length",
    "is_geometric",
    "pool_output_length",
    "spec_from_module",
]
