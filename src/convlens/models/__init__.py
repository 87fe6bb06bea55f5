"""Loading models and images safely: torchvision architectures with local weights,
``package.module:factory`` callables, TorchScript files and the embedded demo.

``LoadedModel`` (:mod:`convlens.loaded`) and ``sha256_file`` (:mod:`convlens.io`) are
re-exported here, where users look for them.

>>> from convlens.models import default_preprocess
>>> default_preprocess().description.split(",")[0]
'RGB'
"""

from convlens.checks import check_materialised
from convlens.io import sha256_file
from convlens.loaded import LoadedModel
from convlens.models.images import (
    DEPTH_RULE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MAX_PIXELS,
    Preprocess,
    decoded,
    default_preprocess,
    faithful_image,
    load_image,
    open_image,
    torchvision_preprocess,
)
from convlens.models.loading import (
    RandomWeightsWarning,
    apply_weights,
    check_device,
    load_model,
    read_weights,
    seeded,
    state_sha256,
)

__all__ = [
    "DEPTH_RULE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_PIXELS",
    "LoadedModel",
    "Preprocess",
    "RandomWeightsWarning",
    "apply_weights",
    "check_device",
    "check_materialised",
    "decoded",
    "default_preprocess",
    "faithful_image",
    "load_image",
    "load_model",
    "open_image",
    "read_weights",
    "seeded",
    "sha256_file",
    "state_sha256",
    "torchvision_preprocess",
]
