"""Analyses of a trained CNN from Zeiler & Fergus (arXiv:1311.2901): occlusion sensitivity
(§4.2, Fig. 7), the first layer's filters as images (Fig. 6) and filter statistics (§3).

>>> import torch
>>> occlusion_positions((4, 4), 2, 2).shape
torch.Size([4, 2])
"""

from convlens.analysis.filters import (
    FilterStats,
    conv_layers,
    filter_arrays,
    filter_grid,
    filter_grid_image,
    filter_images,
    filter_rms,
    filter_statistics,
    first_conv,
)
from convlens.analysis.occlusion import (
    OcclusionResult,
    default_layer,
    occlude,
    occlusion_grid_shape,
    occlusion_maps,
    occlusion_positions,
    pixel_map,
)

__all__ = [
    "FilterStats",
    "OcclusionResult",
    "conv_layers",
    "default_layer",
    "filter_arrays",
    "filter_grid",
    "filter_grid_image",
    "filter_images",
    "filter_rms",
    "filter_statistics",
    "first_conv",
    "occlude",
    "occlusion_grid_shape",
    "occlusion_maps",
    "occlusion_positions",
    "pixel_map",
]
