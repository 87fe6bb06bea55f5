"""Loading models and images safely: torchvision architectures with local weights,
``package.module:factory`` callables, TorchScript files and the embedded demo.

>>> from convlens.models import default_preprocess
>>> default_preprocess().description.split(",")[0]
'RGB'
"""

from convlens.models.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocess,
    default_preprocess,
    load_image,
    torchvision_preprocess,
)
from convlens.models.loading import (
    LoadedModel,
    RandomWeightsWarning,
    apply_weights,
    load_model,
    read_weights,
    sha256_file,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LoadedModel",
    "Preprocess",
    "RandomWeightsWarning",
    "apply_weights",
    "default_preprocess",
    "load_image",
    "load_model",
    "read_weights",
    "sha256_file",
    "torchvision_preprocess",
]
