"""convlens: see through convolutions.

Convolution as a sparse matrix, the routes to transposed convolution, convolution arithmetic,
symbolic derivations, and the Zeiler & Fergus deconvnet (arXiv:1311.2901) for PyTorch models.

>>> import convlens
>>> convlens.LayerSpec.conv(3, stride=2, padding=1).output_size(5)
(3, 3)
"""

from convlens.errors import (
    ConvLensError,
    ParameterError,
    ParameterTypeError,
    UnsupportedModuleError,
)

__version__ = "0.1.0"

__all__ = [
    "ConvLensError",
    "ParameterError",
    "ParameterTypeError",
    "UnsupportedModuleError",
    "__version__",
]

# --- convolution arithmetic (convlens.arithmetic)
from convlens.arithmetic import LayerSpec

__all__ += ["LayerSpec"]

# --- conv matrix and transposed-convolution routes (convlens.matrix, convlens.transpose)

# --- symbolic derivation (convlens.symbolic)

# --- deconvnet and projections (convlens.deconvnet)

# --- dataset scans (convlens.scan)
