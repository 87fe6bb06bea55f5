"""convlens: see through convolutions.

Convolution as a sparse matrix, the routes to transposed convolution, convolution arithmetic
(Dumoulin & Visin, arXiv:1603.07285), symbolic derivations, and the Zeiler & Fergus deconvnet
(arXiv:1311.2901) for PyTorch models.

The top-level names are loaded on first use (PEP 562 module ``__getattr__``), so ``import
convlens`` stays light: ``convlens.LayerSpec`` imports only the arithmetic, ``convlens.conv_matrix``
brings in torch, ``convlens.symbolic_conv`` sympy.

>>> import convlens
>>> convlens.LayerSpec.conv(3, stride=2, padding=1).output_size(5)
(3, 3)
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from convlens.errors import (
    ConvLensError,
    ParameterError,
    ParameterTypeError,
    UnsupportedModuleError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time ``__getattr__`` loads these
    from convlens.analysis import (
        OcclusionResult,
        filter_grid,
        filter_statistics,
        occlusion_maps,
    )
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

#: Lazily loaded top-level names: name -> (public package that defines it, its name there).
_LAZY: dict[str, tuple[str, str]] = {
    "OcclusionResult": ("convlens.analysis", "OcclusionResult"),
    "filter_grid": ("convlens.analysis", "filter_grid"),
    "filter_statistics": ("convlens.analysis", "filter_statistics"),
    "occlusion_maps": ("convlens.analysis", "occlusion_maps"),
    "LayerSpec": ("convlens.arithmetic", "LayerSpec"),
    "colliding_input_sizes": ("convlens.arithmetic", "colliding_input_sizes"),
    "invert_conv": ("convlens.arithmetic", "invert_conv"),
    "output_padding_for": ("convlens.arithmetic", "output_padding_for"),
    "receptive_fields": ("convlens.arithmetic", "receptive_fields"),
    "unit_box": ("convlens.arithmetic", "unit_box"),
    "RULES": ("convlens.deconvnet", "RULES"),
    "Projection": ("convlens.deconvnet", "Projection"),
    "Target": ("convlens.deconvnet", "Target"),
    "project": ("convlens.deconvnet", "project"),
    "load_demo_model": ("convlens.demo", "load_demo_model"),
    "load_demo_sample": ("convlens.demo", "load_demo_sample"),
    "conv_bias_vector": ("convlens.matrix", "conv_bias_vector"),
    "conv_matrix": ("convlens.matrix", "conv_matrix"),
    "load_model": ("convlens.models", "load_model"),
    "ScanResult": ("convlens.scan", "ScanResult"),
    "project_top": ("convlens.scan", "project_top"),
    # The dataset-scan function is exported as ``scan_dataset`` so that ``convlens.scan`` stays
    # the subpackage.
    "scan_dataset": ("convlens.scan", "scan"),
    "SymbolicConv": ("convlens.symbolic", "SymbolicConv"),
    "symbolic_conv": ("convlens.symbolic", "symbolic_conv"),
    "symbolic_conv_transpose": ("convlens.symbolic", "symbolic_conv_transpose"),
    "conv_transpose_autograd": ("convlens.transpose", "conv_transpose_autograd"),
    "conv_transpose_fractional": ("convlens.transpose", "conv_transpose_fractional"),
    "conv_transpose_matmul": ("convlens.transpose", "conv_transpose_matmul"),
    "conv_transpose_scatter": ("convlens.transpose", "conv_transpose_scatter"),
}

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


def __getattr__(name: str) -> Any:
    """Load a top-level name from its package on first use (PEP 562).

    A subpackage not imported yet loads too, as it did when this module imported them all:
    ``import convlens; convlens.deconvnet.Target``.
    """
    if name in _LAZY:
        package, attribute = _LAZY[name]
        value = getattr(importlib.import_module(package), attribute)
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
