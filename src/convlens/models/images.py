"""Preprocessing and image loading: any file Pillow reads, as the model expects it.

Torchvision architectures use their weights' own transforms
(``get_model_weights(name).DEFAULT.transforms()``, which needs no download). Every other model
gets :func:`default_preprocess`: RGB, resize the short side to 256, centre-crop 224, scale to
[0, 1], normalise with the ImageNet mean and std.

>>> from PIL import Image
>>> default_preprocess()(Image.new("L", (300, 260))).shape
torch.Size([3, 224, 224])
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from convlens.errors import ParameterError, verbatim

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Preprocess",
    "default_preprocess",
    "load_image",
    "torchvision_preprocess",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Preprocess:
    """PIL image -> float tensor (C, H, W): convert the mode, then apply ``transform``.

    ``description`` says in words what it does (kept in result metadata).
    """

    def __init__(
        self, transform: Callable[[Image.Image], Any], mode: str, description: str
    ) -> None:
        self.transform, self.mode, self.description = transform, mode, description

    def __call__(self, image: Image.Image) -> Tensor:
        out = self.transform(image.convert(self.mode))
        if not isinstance(out, Tensor):
            raise ParameterError("preprocess", "a transform returning a tensor", type(out).__name__)
        return out.float()

    def __repr__(self) -> str:
        return f"Preprocess({self.description})"


def default_preprocess(
    resize: int = 256,
    crop: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Preprocess:
    """RGB; short side to ``resize`` (bilinear, antialiased); centre crop ``crop``; [0, 1];
    ``(x - mean) / std``. The defaults are ImageNet's (torchvision's classification preset).

    >>> default_preprocess(32, 28).description
    'RGB, resize 32, centre crop 28, normalise mean (0.485, 0.456, 0.406) std (0.229, 0.224, 0.225)'
    """
    from torchvision.transforms.v2 import functional as TF

    mean_t = torch.tensor(mean).reshape(-1, 1, 1)
    std_t = torch.tensor(std).reshape(-1, 1, 1)

    def transform(image: Image.Image) -> Tensor:
        image = TF.resize(image, [resize], antialias=True)
        image = TF.center_crop(image, [crop, crop])
        x = TF.to_dtype(TF.pil_to_tensor(image), torch.float32, scale=True)
        return (x - mean_t) / std_t

    desc = (
        f"RGB, resize {resize}, centre crop {crop}, normalise mean {tuple(mean)} std {tuple(std)}"
    )
    return Preprocess(transform, "RGB", desc)


def torchvision_preprocess(name: str) -> tuple[Preprocess, tuple[int, int] | None]:
    """The transforms of torchvision's default weights for architecture ``name`` and its crop
    size, or :func:`default_preprocess` and ``None`` where torchvision has none.

    >>> torchvision_preprocess("alexnet")[1]
    (224, 224)
    """
    from torchvision.models import get_model_weights

    try:
        transform = get_model_weights(name).DEFAULT.transforms()
    except Exception:  # no weights enum for this architecture
        return default_preprocess(), None
    crop = getattr(transform, "crop_size", None)
    size = (int(crop[0]), int(crop[-1])) if crop else None
    desc = f"RGB, torchvision {name} weights transforms: " + " ".join(repr(transform).split())
    return Preprocess(transform, "RGB", desc), size


def load_image(path: str | os.PathLike[str], preprocess: Callable[[Image.Image], Tensor]) -> Tensor:
    """Read the image at ``path`` with Pillow and ``preprocess`` it.

    A missing file or one Pillow cannot decode raises
    :class:`~convlens.errors.ParameterError` naming the file.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.png"; Image.new("RGB", (8, 8)).save(p)
    >>> load_image(p, default_preprocess(8, 8)).shape
    torch.Size([3, 8, 8])
    """
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise ParameterError("image", "an existing image file", verbatim(repr(name)))
    try:
        with Image.open(name) as image:
            image.load()
            return preprocess(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ParameterError):
            raise
        raise ParameterError(
            "image",
            "a file Pillow can decode",
            verbatim(repr(name)),
            hint=f"{type(exc).__name__}: {exc}",
        ) from exc
