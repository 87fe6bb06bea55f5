"""Loading models and images safely: torchvision architectures with local weights,
``package.module:factory`` callables, TorchScript files and the embedded demo.

``LoadedModel`` (:mod:`convlens.loaded`) and ``sha256_file`` (:mod:`convlens.io`) are
re-exported here, where users look for them.

>>> from convlens.models import default_preprocess
>>> default_preprocess().description.split(",")[0]
'RGB'
"""

from convlens.io import sha256_file
from convlens.loaded import LoadedModel
from convlens.models.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocess,
    default_preprocess,
    load_image,
    torchvision_preprocess,
)
from convlens.models.loading import (
    RandomWeightsWarning,
    apply_weights,
    load_model,
    read_weights,
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
