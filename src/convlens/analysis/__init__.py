"""Analyses of a trained CNN from Zeiler & Fergus (arXiv:1311.2901): occlusion sensitivity
(§4.2, Fig. 7), the first layer's filters as images (Fig. 6) and filter statistics (§3);
feature evolution during training (§4.1, Fig. 4; the run over checkpoints is
:func:`convlens.pipeline.evolution.feature_evolution`), invariance to translation, scale and
rotation (§4.4, Fig. 5) and correspondence of object parts (§4.3, Table 1).

>>> import torch
>>> occlusion_positions((4, 4), 2, 2).shape
torch.Size([4, 2])
"""

from convlens.analysis.correspondence import (
    Box,
    CorrespondenceResult,
    Part,
    correspondence,
    correspondence_figure,
    correspondence_table,
    demo_parts,
    read_parts,
    sign_change,
)
from convlens.analysis.evolution import (
    Checkpoint,
    EvolutionLayer,
    EvolutionResult,
    demo_checkpoints,
    evolution_figure,
    read_checkpoints,
)
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
from convlens.analysis.invariance import (
    InvarianceResult,
    invariance,
    invariance_figure,
    transform_images,
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
    "Box",
    "Checkpoint",
    "CorrespondenceResult",
    "EvolutionLayer",
    "EvolutionResult",
    "FilterStats",
    "InvarianceResult",
    "OcclusionResult",
    "Part",
    "conv_layers",
    "correspondence",
    "correspondence_figure",
    "correspondence_table",
    "default_layer",
    "demo_checkpoints",
    "demo_parts",
    "evolution_figure",
    "filter_arrays",
    "filter_grid",
    "filter_grid_image",
    "filter_images",
    "filter_rms",
    "filter_statistics",
    "first_conv",
    "invariance",
    "invariance_figure",
    "occlude",
    "occlusion_grid_shape",
    "occlusion_maps",
    "occlusion_positions",
    "pixel_map",
    "read_checkpoints",
    "read_parts",
    "sign_change",
    "transform_images",
]
