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
from convlens.arithmetic import (
    LayerSpec,
    colliding_input_sizes,
    invert_conv,
    output_padding_for,
    receptive_fields,
    unit_box,
)

__all__ += [
    "LayerSpec",
    "colliding_input_sizes",
    "invert_conv",
    "output_padding_for",
    "receptive_fields",
    "unit_box",
]

# --- conv matrix and transposed-convolution routes (convlens.matrix, convlens.transpose)
from convlens.matrix import conv_bias_vector, conv_matrix  # noqa: E402
from convlens.transpose import (  # noqa: E402
    conv_transpose_autograd,
    conv_transpose_fractional,
    conv_transpose_matmul,
    conv_transpose_scatter,
)

__all__ += [
    "conv_bias_vector",
    "conv_matrix",
    "conv_transpose_autograd",
    "conv_transpose_fractional",
    "conv_transpose_matmul",
    "conv_transpose_scatter",
]

# --- symbolic derivation (convlens.symbolic)
from convlens.symbolic import (  # noqa: E402
    SymbolicConv,
    symbolic_conv,
    symbolic_conv_transpose,
)

__all__ += ["SymbolicConv", "symbolic_conv", "symbolic_conv_transpose"]

# --- deconvnet and projections (convlens.deconvnet)
from convlens.deconvnet import RULES, Projection, Target, project
from convlens.models import load_model

__all__ += ["RULES", "Projection", "Target", "load_model", "project"]

# --- dataset scans (convlens.scan)
from convlens.scan import ScanResult, project_top, scan

__all__ += ["ScanResult", "project_top", "scan"]

# --- analyses and the embedded demo (convlens.analysis, convlens.demo)
from convlens.analysis import (  # noqa: E402
    OcclusionResult,
    filter_grid,
    filter_statistics,
    occlusion_maps,
)
from convlens.demo import load_demo_model, load_demo_sample  # noqa: E402

__all__ += [
    "OcclusionResult",
    "filter_grid",
    "filter_statistics",
    "load_demo_model",
    "load_demo_sample",
    "occlusion_maps",
]
