"""Fashion-MNIST for the embedded default: the full dataset from disk and the bundled sample.

The full dataset (Xiao, Rasul & Vollgraf, arXiv:1708.07747; Zalando, MIT licence) is read
from Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``, or the
folder in ``$CONVLENS_FASHION_MNIST``); nothing is downloaded. The package ships a stratified
sample of the *test* set (200 images per class, fixed seed) in
``assets/fashion_mnist_sample.safetensors`` so the demo works offline.

>>> sample = load_demo_sample()
>>> len(sample), sample[0][0].shape, sample.class_names[sample[0][1]] in FASHION_CLASSES
(2000, torch.Size([1, 28, 28]), True)
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from convlens.demo.model import FASHION_CLASSES, MEAN, STD
from convlens.errors import ParameterError
from convlens.io import atomic_path

__all__ = [
    "DEFAULT_DATA_DIR",
    "SAMPLE_PATH",
    "SAMPLE_PREPROCESSING",
    "DemoSample",
    "load_demo_sample",
    "load_fashion_mnist",
    "make_sample",
    "preprocess",
    "preprocess_images",
    "read_idx",
    "write_sample",
]

ASSETS = Path(__file__).resolve().parent / "assets"
#: The bundled stratified sample of the Fashion-MNIST test set.
SAMPLE_PATH = ASSETS / "fashion_mnist_sample.safetensors"
#: How the bundled sample's items were made from the images, in words (for result metadata).
SAMPLE_PREPROCESSING = f"demo sample: grey 28×28, (x/255 - {MEAN:.4f}) / {STD:.4f}"
#: Where Debian's ``dataset-fashion-mnist`` package puts the dataset.
DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def data_dir_or_default(data_dir: str | os.PathLike[str] | None) -> Path:
    """``data_dir``, else ``$CONVLENS_FASHION_MNIST``, else Debian's folder."""
    if data_dir is not None:
        return Path(data_dir)
    return Path(os.environ.get("CONVLENS_FASHION_MNIST", DEFAULT_DATA_DIR))


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """An IDX file (LeCun's MNIST format, optionally gzipped) as a numpy array.

    Header: two zero bytes, a type byte, the number of dimensions, then one big-endian int32
    per dimension; the data follow in C order.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ParameterError("path", "an IDX file (MNIST format)", str(path))
    ndim = raw[3]
    shape = tuple(int(v) for v in np.frombuffer(raw, ">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    data = np.frombuffer(raw, dtype, count=int(np.prod(shape)), offset=4 + 4 * ndim)
    return data.reshape(shape).astype(dtype.newbyteorder("="))


@lru_cache(maxsize=4)
def _load_split(split: str, folder: str) -> tuple[torch.Tensor, torch.Tensor]:
    images_name, labels_name = _FILES[split]
    images = torch.from_numpy(read_idx(Path(folder) / images_name).copy())
    labels = torch.from_numpy(read_idx(Path(folder) / labels_name).astype(np.int64))
    return images, labels


def load_fashion_mnist(
    split: str = "train", data_dir: str | os.PathLike[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST ``split`` ("train" or "test") as uint8 images (N, 28, 28) and int64 labels.

    >>> images, labels = load_fashion_mnist("test")
    >>> images.shape, images.dtype, labels[:3].tolist()
    (torch.Size([10000, 28, 28]), torch.uint8, [9, 2, 1])
    """
    if split not in _FILES:
        raise ParameterError("split", "'train' or 'test'", split)
    folder = data_dir_or_default(data_dir)
    missing = [name for name in _FILES[split] if not (folder / name).is_file()]
    if missing:
        raise ParameterError(
            "data_dir",
            f"a folder holding Fashion-MNIST's {', '.join(missing)}",
            str(folder),
            hint="install Debian's dataset-fashion-mnist package or set $CONVLENS_FASHION_MNIST",
        )
    return _load_split(split, str(folder.resolve()))


def preprocess_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 28, 28) or (N, 1, 28, 28) -> normalised float32 (N, 1, 28, 28).

    >>> preprocess_images(torch.zeros(2, 28, 28, dtype=torch.uint8)).shape
    torch.Size([2, 1, 28, 28])
    """
    if images.dim() == 3:
        images = images.unsqueeze(1)
    return (images.to(torch.float32) / 255.0 - MEAN) / STD


def preprocess(image: Any) -> torch.Tensor:
    """A PIL image -> the model's input (1, 28, 28): grey, resized to 28×28, normalised.

    Fashion-MNIST shows light garments on a black background; other images are not inverted.

    >>> from PIL import Image
    >>> preprocess(Image.new("RGB", (56, 40))).shape
    torch.Size([1, 28, 28])
    """
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise ParameterError("image", "a PIL image", type(image).__name__)
    grey = image.convert("L")
    if grey.size != (28, 28):
        grey = grey.resize((28, 28), Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.asarray(grey, dtype=np.uint8).copy())
    return preprocess_images(pixels.unsqueeze(0))[0]


def make_sample(
    per_class: int = 200, seed: int = 0, data_dir: str | os.PathLike[str] | None = None
) -> dict[str, torch.Tensor]:
    """A stratified sample of the test set: ``per_class`` images of each class.

    Returns ``images`` (uint8), ``labels`` (int64) and ``indices`` (int64, into the test set),
    ordered by test-set index. Chosen with ``torch.randperm`` under ``seed``.
    """
    _, labels = load_fashion_mnist("test", data_dir)
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for c in range(len(FASHION_CLASSES)):
        members = torch.nonzero(labels == c).flatten()
        if per_class > len(members):
            raise ParameterError("per_class", f"at most {len(members)}", per_class)
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    indices = torch.sort(torch.cat(chosen)).values
    images, _ = load_fashion_mnist("test", data_dir)
    return {
        "images": images[indices].contiguous(),
        "labels": labels[indices].contiguous(),
        "indices": indices.to(torch.int64).contiguous(),
    }


def write_sample(path: str | os.PathLike[str] = SAMPLE_PATH, **kwargs: Any) -> Path:
    """Write :func:`make_sample` to ``path`` (safetensors, atomically)."""
    from safetensors.torch import save_file

    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(make_sample(**kwargs), str(tmp), metadata={"source": "fashion-mnist t10k"})
    return path


class DemoSample(Dataset):
    """The bundled Fashion-MNIST test sample as a torch ``Dataset`` of (input, label).

    ``images`` (uint8, (N, 28, 28)), ``labels``, ``indices`` (into the test set),
    ``paths`` (names such as ``"t10k[00042]"``) and ``class_names``.

    >>> DemoSample().paths[0].startswith("t10k[")
    True
    """

    def __init__(self, path: str | os.PathLike[str] = SAMPLE_PATH) -> None:
        path = Path(path)
        if not path.is_file():
            raise ParameterError("path", "the bundled sample file", str(path))
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        self.images: torch.Tensor = tensors["images"]
        self.labels: torch.Tensor = tensors["labels"]
        self.indices: torch.Tensor = tensors["indices"]
        self.class_names: tuple[str, ...] = FASHION_CLASSES
        self.paths: list[str] = [f"t10k[{int(i):05d}]" for i in self.indices]
        self._inputs = preprocess_images(self.images)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self._inputs[index], int(self.labels[index])


def load_demo_sample() -> DemoSample:
    """The bundled sample of the Fashion-MNIST test set (2000 images, 200 per class)."""
    return DemoSample()
