"""Preprocessing and image loading: any file Pillow reads, as the model expects it.

Torchvision architectures use their weights' own transforms
(``get_model_weights(name).DEFAULT.transforms()``, which needs no download). Every other model
gets :func:`default_preprocess`: RGB, resize the short side to 256, centre-crop 224, scale to
[0, 1], normalise with the ImageNet mean and std.

Every image is opened by :func:`open_image`: a picture larger than ``max_pixels`` (Pillow's
decompression-bomb limit by default, adjustable) is refused naming the file, and an image with
more than 8 bits per sample (16-bit PNG or TIFF, 32-bit integer or float TIFF: Pillow's modes
``I;16``, ``I`` and ``F``) is scaled from its own bit depth to 8 bits
(:func:`faithful_image`, rule :data:`DEPTH_RULE`) instead of being clipped to white.

>>> from PIL import Image
>>> default_preprocess()(Image.new("L", (300, 260))).shape
torch.Size([3, 224, 224])
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from convlens.choices import MAX_PIXELS
from convlens.errors import ParameterError, ParameterTypeError, verbatim

__all__ = [
    "DEPTH_RULE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_PIXELS",
    "Preprocess",
    "check_max_pixels",
    "decoded",
    "default_preprocess",
    "faithful_image",
    "load_image",
    "load_image_noting",
    "open_image",
    "torchvision_preprocess",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: How images with more than 8 bits per sample become 8-bit (kept in result metadata).
DEPTH_RULE = (
    "images with more than 8 bits per sample are scaled from their own bit depth to 8 bits: "
    "16-bit (I;16) x·255/65535, 32-bit integer (I) x·255/(2^bits − 1) with bits from the file "
    "(16 for PNG and PNM), float (F) read as [0, 1] and scaled by 255"
)

_PIL_LIMIT = threading.Lock()  # Pillow's limit is a global: one image opens at a time


def check_max_pixels(max_pixels: Any, param: str = "max_pixels") -> int | None:
    """``max_pixels`` when it is a positive int or None (no limit).

    >>> check_max_pixels(100), check_max_pixels(None)
    (100, None)
    """
    if max_pixels is None:
        return None
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int):
        raise ParameterTypeError(param, "a positive int or None", max_pixels)
    if max_pixels < 1:
        raise ParameterError(param, "a positive int or None", max_pixels)
    return max_pixels


@contextlib.contextmanager
def open_image(
    path: str | os.PathLike[str], *, max_pixels: int | None = MAX_PIXELS
) -> Iterator[Image.Image]:
    """The image at ``path``, decoded in full (a truncated file fails here), refused naming
    the file when it has more than ``max_pixels`` pixels (None: no limit), which is Pillow's
    decompression-bomb guard with a limit of convlens's choosing.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "big.png"; Image.new("L", (40, 30)).save(p)
    >>> try:
    ...     with open_image(p, max_pixels=1000):
    ...         pass
    ... except ParameterError as exc:
    ...     print(str(exc).split(" (the")[0])
    image: expected an image of at most 1000 pixels
    """
    limit = check_max_pixels(max_pixels)
    name = os.fspath(path)
    with _PIL_LIMIT:
        previous = Image.MAX_IMAGE_PIXELS
        try:
            Image.MAX_IMAGE_PIXELS = limit
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(name)
                try:
                    image.load()
                except BaseException:
                    image.close()
                    raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ParameterError(
                "image",
                f"an image of at most {limit} pixels (the decompression-bomb limit; "
                "--max-image-pixels raises it)",
                verbatim(repr(name)),
                hint=str(exc),
            ) from exc
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    with image:
        yield image


def _bits(image: Image.Image) -> int:
    """Bits per sample of a 32-bit integer (mode ``I``) image, as its file says."""
    tags = getattr(image, "tag_v2", None)
    if tags is not None:
        bits = tags.get(258)
        if isinstance(bits, tuple):
            bits = bits[0] if bits else None
        if isinstance(bits, int) and bits > 0:
            return bits
    return 16 if image.format in ("PNG", "PPM", "PGM", "PNM") else 32


def faithful_image(image: Image.Image) -> tuple[Image.Image, str | None]:
    """``image`` as an 8-bit image without clipping, and what was done (None: nothing).

    Modes ``I;16*`` (16-bit), ``I`` (32-bit integer: divided by ``2**bits - 1`` with the bits
    per sample of the file) and ``F`` (float, read as [0, 1]) become mode ``L``, scaled from
    their own bit depth (:data:`DEPTH_RULE`); every other mode is already 8-bit and returned
    as it is. Negative or out-of-range values are refused rather than clipped.

    >>> im = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))
    >>> out, note = faithful_image(im)
    >>> np.asarray(out).tolist(), note
    ([[0, 128, 255]], '16-bit greyscale (I;16) scaled to 8 bits')
    """
    mode = image.mode
    if mode.startswith("I;16"):
        x = np.asarray(image).astype(np.float64) / 65535.0
        note = f"16-bit greyscale ({mode}) scaled to 8 bits"
    elif mode == "I":
        bits = _bits(image)
        x = np.asarray(image).astype(np.float64) / float(2**bits - 1)
        note = f"{bits}-bit integer greyscale (I) scaled to 8 bits"
    elif mode == "F":
        x = np.asarray(image).astype(np.float64)
        note = "float greyscale (F), read as [0, 1], scaled to 8 bits"
    else:
        return image, None
    finite = np.isfinite(x)
    if not finite.all() or (x.size and (x.min() < 0.0 or x.max() > 1.0)):
        shown = f"{float(np.nanmin(x)):.4g}..{float(np.nanmax(x)):.4g}" if finite.any() else "NaN"
        raise ParameterError(
            "image",
            f"{mode} pixel values within the range of the image's bit depth "
            "([0, 1] for float images)",
            verbatim(f"values scaled to {shown}" + ("" if finite.all() else " with NaN or inf")),
            hint="convlens scales, never clips; rescale the file to its format's range",
        )
    pixels = np.round(x * 255.0).astype(np.uint8)
    return Image.fromarray(pixels, mode="L"), note


class Preprocess:
    """PIL image -> float tensor (C, H, W): convert the mode, then apply ``transform``.

    ``description`` says in words what it does (kept in result metadata).
    """

    def __init__(
        self, transform: Callable[[Image.Image], Any], mode: str, description: str
    ) -> None:
        self.transform, self.mode, self.description = transform, mode, description

    def __call__(self, image: Image.Image) -> Tensor:
        image, _ = faithful_image(image)
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


def load_image(
    path: str | os.PathLike[str],
    preprocess: Callable[[Image.Image], Tensor],
    *,
    max_pixels: int | None = MAX_PIXELS,
) -> Tensor:
    """Read the image at ``path`` with Pillow (:func:`open_image`: at most ``max_pixels``),
    make it 8-bit faithfully (:func:`faithful_image`) and ``preprocess`` it.

    A missing file, one Pillow cannot decode, one too large, or a preprocessing that fails
    on it raises :class:`~convlens.errors.ParameterError` naming the file.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.png"; Image.new("RGB", (8, 8)).save(p)
    >>> load_image(p, default_preprocess(8, 8)).shape
    torch.Size([3, 8, 8])
    """
    return load_image_noting(path, preprocess, max_pixels=max_pixels)[0]


def load_image_noting(
    path: str | os.PathLike[str],
    preprocess: Callable[[Image.Image], Tensor],
    *,
    max_pixels: int | None = MAX_PIXELS,
) -> tuple[Tensor, str | None]:
    """:func:`load_image`, and what was done to its bit depth (None: nothing)."""
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise ParameterError("image", "an existing image file", verbatim(repr(name)))
    with decoded(name, max_pixels=max_pixels) as image:
        note = image.info.get("convlens_depth")
        try:
            out = preprocess(image)
        except ParameterError:
            raise
        except Exception as exc:
            raise ParameterError(
                "preprocess",
                "a preprocessing that turns this image into a tensor",
                verbatim(f"{name!r} ({image.mode}, {image.width}×{image.height})"),
                hint=f"{type(exc).__name__}: {exc}",
            ) from exc
    if not isinstance(out, Tensor):
        raise ParameterError(
            "preprocess", "a preprocessing returning a tensor", verbatim(type(out).__name__)
        )
    return out, note


@contextlib.contextmanager
def decoded(
    path: str | os.PathLike[str], *, max_pixels: int | None = MAX_PIXELS
) -> Iterator[Image.Image]:
    """The image at ``path`` opened (:func:`open_image`) and made 8-bit
    (:func:`faithful_image`); any failure is a :class:`~convlens.errors.ParameterError`
    naming the file. The image's ``info["convlens_depth"]`` says what was converted."""
    name = os.fspath(path)
    stack = contextlib.ExitStack()
    try:
        image = stack.enter_context(open_image(name, max_pixels=max_pixels))
        shown, note = faithful_image(image)
    except ParameterError as exc:
        stack.close()
        if exc.param != "image" or f"{name!r}" in str(exc):
            raise
        raise ParameterError(
            "image", exc.expected, verbatim(f"{name!r}: {exc.received}"), exc.hint
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        stack.close()
        raise ParameterError(
            "image",
            "a file Pillow can decode",
            verbatim(repr(name)),
            hint=f"{type(exc).__name__}: {exc}",
        ) from exc
    if note is not None:
        shown.info["convlens_depth"] = note
    with stack:
        yield shown
