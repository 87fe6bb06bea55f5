"""Zeiler & Fergus' deconvnet (arXiv:1311.2901) and its siblings (Springenberg et al.,
arXiv:1412.6806): project one activation of a CNN back to input space.

>>> import torch, torch.nn as nn
>>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.MaxPool2d(2))
>>> project(net, torch.randn(1, 3, 12, 12), Target("2", 5)).projections.shape
torch.Size([1, 1, 3, 12, 12])
"""

from convlens.deconvnet.display import stretch, to_image
from convlens.deconvnet.explicit import RULES, SUPPORTED, chain_of
from convlens.deconvnet.project import ENGINES, Projection, project
from convlens.deconvnet.target import Target

__all__ = [
    "ENGINES",
    "RULES",
    "SUPPORTED",
    "Projection",
    "Target",
    "chain_of",
    "project",
    "stretch",
    "to_image",
]
