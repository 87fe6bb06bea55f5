"""Top-k activations over a dataset, the selection behind Zeiler & Fergus' Figure 2
(arXiv:1311.2901): a resumable, distributed scan, receptive-field-cropped deconvnet
projections, and Figure-2 grids.

>>> import torch, torch.nn as nn
>>> net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU())
>>> data = [(torch.randn(1, 8, 8), 0) for _ in range(6)]
>>> result = scan(net, data, ["1"], top=2, progress=False)
>>> result.layers["1"].indices.shape
torch.Size([3, 2])
"""

from convlens.scan.crop import (
    METHODS,
    CroppedProjections,
    LayerProjections,
    TopProjections,
    cropped_projections,
    project_top,
)
from convlens.scan.data import ImageFolderDataset, SafeDataset, collate_safe, dataset_fingerprint
from convlens.scan.grid import layer_grid, write_figures
from convlens.scan.run import ScanResult, checkpoint_path, scan
from convlens.scan.topk import TopK, feature_maxima, merge

__all__ = [
    "METHODS",
    "CroppedProjections",
    "ImageFolderDataset",
    "LayerProjections",
    "SafeDataset",
    "ScanResult",
    "TopK",
    "TopProjections",
    "checkpoint_path",
    "collate_safe",
    "cropped_projections",
    "dataset_fingerprint",
    "feature_maxima",
    "layer_grid",
    "merge",
    "project_top",
    "scan",
    "write_figures",
]
