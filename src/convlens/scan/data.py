"""Streaming a dataset for a scan: image folders, any torch ``Dataset``, failures as markers.

A folder is read recursively; files are ordered by their relative path (POSIX form, sorted),
and that order is the dataset index everywhere in convlens. When every image sits inside a
top-level sub-folder (torchvision's ImageFolder layout) the sub-folder names are the classes.

Images that cannot be read do not stop a scan: :class:`SafeDataset` turns an exception into a
failure marker and :func:`collate_safe` drops the markers from the batch and reports them.

>>> import tempfile, pathlib
>>> from PIL import Image
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> (root / "cat").mkdir(); Image.new("L", (4, 4)).save(root / "cat" / "a.png")
>>> (root / "cat" / "b.png").write_bytes(b"not a png")
9
>>> ds = ImageFolderDataset(root, lambda im: torch.zeros(1, 4, 4))
>>> ds.paths, ds.classes
(['cat/a.png', 'cat/b.png'], ['cat'])
>>> batch = collate_safe([SafeDataset(ds)[i] for i in range(2)])
>>> batch.indices.tolist(), batch.inputs.shape, [f["path"] for f in batch.failures]
([0], torch.Size([1, 1, 4, 4]), ['cat/b.png'])
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from convlens.errors import ParameterError

__all__ = [
    "IMAGE_EXTENSIONS",
    "Batch",
    "ImageFolderDataset",
    "SafeDataset",
    "collate_safe",
    "dataset_fingerprint",
    "dataset_path",
    "open_dataset",
    "read_image",
]

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
    ".pbm",
)


def read_image(path: str | os.PathLike[str], preprocess: Callable[[Any], Tensor]) -> Tensor:
    """Decode ``path`` with Pillow (fully, so truncated files fail here) and preprocess it."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return preprocess(image)


class ImageFolderDataset(Dataset):
    """The images under ``root`` (recursive), in sorted relative-path order.

    Items are ``(input, label)``; ``label`` is the index of the top-level sub-folder in
    ``classes`` (ImageFolder layout) or -1 when the folder is not laid out that way.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        preprocess: Callable[[Any], Tensor],
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ParameterError("data", "a folder of images", str(root))
        exts = tuple(e.lower() for e in extensions)
        files = [
            p
            for p in self.root.rglob("*")
            if p.suffix.lower() in exts and (p.is_file() or p.is_symlink())
        ]
        self.paths: list[str] = sorted(p.relative_to(self.root).as_posix() for p in files)
        if not self.paths:
            raise ParameterError(
                "data", f"a folder with images ({', '.join(exts)})", str(root), hint="none found"
            )
        self.sizes: list[int] = [_size(self.root / p) for p in self.paths]
        tops = [p.split("/", 1)[0] if "/" in p else None for p in self.paths]
        if all(t is not None for t in tops):
            self.classes: list[str] | None = sorted({t for t in tops if t is not None})
            lookup = {c: i for i, c in enumerate(self.classes)}
            self.labels = [lookup[t] for t in tops if t is not None]
        else:
            self.classes = None
            self.labels = [-1] * len(self.paths)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return read_image(self.root / self.paths[index], self.preprocess), self.labels[index]

    def fingerprint(self) -> str:
        """sha256 over the sorted relative paths and file sizes."""
        digest = hashlib.sha256()
        for p, s in zip(self.paths, self.sizes):
            digest.update(f"{p}\t{s}\n".encode())
        return digest.hexdigest()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def dataset_path(dataset: Any, index: int) -> str | None:
    """The file (or name) of item ``index`` where the dataset knows it, else None.

    Looks for ``paths`` (convlens datasets) and ``samples`` (torchvision ImageFolder).
    """
    if isinstance(dataset, SafeDataset):
        return dataset_path(dataset.dataset, index)
    paths = getattr(dataset, "paths", None)
    if isinstance(paths, Sequence) and 0 <= index < len(paths):
        return str(paths[index])
    samples = getattr(dataset, "samples", None)
    if isinstance(samples, Sequence) and 0 <= index < len(samples):
        item = samples[index]
        return str(item[0] if isinstance(item, tuple) else item)
    return None


def dataset_fingerprint(dataset: Any) -> dict[str, Any]:
    """A description that changes when the dataset's files change.

    A folder: sha256 of sorted relative paths and sizes. Another dataset with ``paths`` or
    ``samples``: sha256 of the names in order. Otherwise: only the type and the length.
    """
    if isinstance(dataset, SafeDataset):
        return dataset_fingerprint(dataset.dataset)
    n = len(dataset)
    if isinstance(dataset, ImageFolderDataset):
        return {
            "kind": "folder",
            "root": str(dataset.root),
            "size": n,
            "sha256": dataset.fingerprint(),
            "scheme": "sha256 of 'relative/path<TAB>bytes\\n' for sorted paths",
        }
    names = [dataset_path(dataset, i) for i in range(n)] if _has_names(dataset) else None
    if names is not None:
        digest = hashlib.sha256("\n".join(str(x) for x in names).encode()).hexdigest()
        return {"kind": type(dataset).__name__, "size": n, "sha256": digest, "scheme": "names"}
    return {"kind": type(dataset).__name__, "size": n, "sha256": None, "scheme": "type and size"}


def _has_names(dataset: Any) -> bool:
    return isinstance(getattr(dataset, "paths", None), Sequence) or isinstance(
        getattr(dataset, "samples", None), Sequence
    )


def _first_tensor(item: Any) -> Tensor:
    if isinstance(item, (tuple, list)) and item:
        item = item[0]
    if isinstance(item, dict):
        for key in ("input", "image", "pixel_values"):
            if key in item:
                item = item[key]
                break
    if not isinstance(item, Tensor):
        raise ParameterError(
            "dataset item", "a tensor or a tuple (tensor, label, ...)", type(item).__name__
        )
    return item


class SafeDataset(Dataset):
    """Wraps a dataset so that ``self[i]`` is ``(i, input, None)``, or ``(i, None, failure)``
    with ``failure = {"index", "path", "error"}`` when reading item ``i`` raised."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, Tensor | None, dict[str, Any] | None]:
        try:
            return index, _first_tensor(self.dataset[index]), None
        except Exception as exc:  # a bad file must never end a scan
            failure = {
                "index": int(index),
                "path": dataset_path(self.dataset, index),
                "error": f"{type(exc).__name__}: {exc}",
            }
            return index, None, failure


@dataclass
class Batch:
    """A collated batch: the good ``inputs`` with their dataset ``indices`` and the failures."""

    indices: Tensor
    inputs: Tensor
    failures: list[dict[str, Any]] = field(default_factory=list)


def collate_safe(items: list[tuple[int, Tensor | None, dict[str, Any] | None]]) -> Batch:
    """Stack the items that loaded; keep the failures (``{index, path, error}``) aside."""
    good = [(i, x) for i, x, _ in items if x is not None]
    failures = [f for _, x, f in items if x is None and f is not None]
    if good:
        shapes = {tuple(x.shape) for _, x in good}
        if len(shapes) > 1:
            raise ParameterError(
                "dataset", "inputs of one shape (preprocess to a fixed size)", sorted(shapes)
            )
        inputs = torch.stack([x for _, x in good])
    else:
        inputs = torch.empty(0)
    return Batch(torch.tensor([i for i, _ in good], dtype=torch.int64), inputs, failures)


def open_dataset(data: str | os.PathLike[str], preprocess: Any) -> tuple[Any, str]:
    """The dataset named by ``--data`` and a description of it: ``"demo"`` is the bundled
    Fashion-MNIST test sample, anything else a folder of images (recursive; the ImageFolder
    layout gives labels) read through ``preprocess``."""
    if os.fspath(data) == "demo":
        from convlens.demo import load_demo_sample

        sample = load_demo_sample()
        return sample, f"bundled Fashion-MNIST test sample ({len(sample)} images, 10 classes)"
    if not Path(data).is_dir():
        raise ParameterError("--data", "a folder of images or 'demo'", os.fspath(data))
    folder = ImageFolderDataset(data, preprocess)
    classes = f", {len(folder.classes)} classes" if folder.classes else ", no class folders"
    return folder, f"folder {os.fspath(data)} ({len(folder)} images{classes})"
