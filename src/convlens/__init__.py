"""convlens: see through convolutions.

Convolution as a sparse matrix, the routes to transposed convolution, convolution arithmetic
(Dumoulin & Visin, arXiv:1603.07285), symbolic derivations, and the Zeiler & Fergus deconvnet
(arXiv:1311.2901) for PyTorch models.

>>> import convlens
>>> convlens.LayerSpec.conv(3, stride=2, padding=1).output_size(5)
(3, 3)
"""

__version__ = "0.1.0"

from convlens.analysis import OcclusionResult, filter_grid, filter_statistics, occlusion_maps
from convlens.arithmetic import (
    LayerSpec,
    colliding_input_sizes,
    invert_conv,
    output_padding_for,
    receptive_fields,
    unit_box,
)
from convlens.deconvnet import RULES, Projection, Target, project
from convlens.demo import load_demo_model, load_demo_sample
from convlens.errors import (
    ConvLensError,
    ParameterError,
    ParameterTypeError,
    UnsupportedModuleError,
)
from convlens.matrix import conv_bias_vector, conv_matrix
from convlens.models import load_model
from convlens.scan import ScanResult, project_top
from convlens.scan import scan as scan_dataset
from convlens.symbolic import SymbolicConv, symbolic_conv, symbolic_conv_transpose
from convlens.transpose import (
    conv_transpose_autograd,
    conv_transpose_fractional,
    conv_transpose_matmul,
    conv_transpose_scatter,
)

# The dataset-scan function is exported as ``scan_dataset`` so that ``convlens.scan`` stays the
# subpackage.
__all__ = [
    "RULES",
    "ConvLensError",
    "LayerSpec",
    "OcclusionResult",
    "ParameterError",
    "ParameterTypeError",
    "Projection",
    "ScanResult",
    "SymbolicConv",
    "Target",
    "UnsupportedModuleError",
    "__version__",
    "colliding_input_sizes",
    "conv_bias_vector",
    "conv_matrix",
    "conv_transpose_autograd",
    "conv_transpose_fractional",
    "conv_transpose_matmul",
    "conv_transpose_scatter",
    "filter_grid",
    "filter_statistics",
    "invert_conv",
    "load_demo_model",
    "load_demo_sample",
    "load_model",
    "occlusion_maps",
    "output_padding_for",
    "project",
    "project_top",
    "receptive_fields",
    "scan_dataset",
    "symbolic_conv",
    "symbolic_conv_transpose",
    "unit_box",
]
