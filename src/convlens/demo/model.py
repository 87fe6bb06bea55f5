"""The embedded default model: a small Zeiler–Fergus-style CNN for Fashion-MNIST.

The layout follows AlexNet / ZFNet (Zeiler & Fergus, arXiv:1311.2901): ``features`` is a
chain of conv–ReLU–max-pool blocks (only ``Conv2d``, ``ReLU``, ``MaxPool2d``), so the explicit
deconvnet engine can reverse it and module paths read like ``"features.6"``; ``classifier``
holds the fully connected part.

>>> import torch
>>> build_demo_model()(torch.zeros(2, 1, 28, 28)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FASHION_CLASSES", "INPUT_SIZE", "MEAN", "STD", "DemoCNN", "build_demo_model"]

#: Fashion-MNIST's ten classes, in label order (Xiao, Rasul & Vollgraf, arXiv:1708.07747).
FASHION_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: The input the model expects: one grey channel of 28×28 pixels.
INPUT_SIZE: tuple[int, int, int] = (1, 28, 28)

#: Normalisation applied after scaling pixels to [0, 1] (the training set's mean and std).
MEAN: float = 0.2860
STD: float = 0.3530


def build_demo_model() -> nn.Module:
    """A fresh (randomly initialised) demo CNN: 1×28×28 -> 10 logits.

    ``features``: conv(1→32, 5, pad 2)–ReLU–maxpool(2) → conv(32→64, 3, pad 1)–ReLU–maxpool(2)
    → conv(64→128, 3, pad 1)–ReLU–maxpool(2), giving 128×3×3; ``classifier``: Flatten,
    Dropout, Linear(1152→256), ReLU, Dropout, Linear(256→10).

    >>> [name for name, _ in build_demo_model().features.named_children()][:3]
    ['0', '1', '2']
    """
    features = nn.Sequential(
        nn.Conv2d(1, 32, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(32, 64, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(64, 128, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, 2),
    )
    classifier = nn.Sequential(
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(128 * 3 * 3, 256),
        nn.ReLU(inplace=True),
        nn.Dropout(0.3),
        nn.Linear(256, len(FASHION_CLASSES)),
    )
    return DemoCNN(features, classifier)


class DemoCNN(nn.Module):
    """``features`` then ``classifier``, AlexNet-style."""

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
