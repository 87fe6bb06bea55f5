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
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from convlens.errors import ParameterError
from convlens.models.images import MAX_PIXELS, check_max_pixels, decoded

__all__ = [
    "IMAGE_EXTENSIONS",
    "Batch",
    "ImageFolderDataset",
    "SafeDataset",
    "SubsetView",
    "class_names",
    "collate_safe",
    "dataset_fingerprint",
    "dataset_path",
    "first_tensor",
    "item_label",
    "item_name",
    "label_name",
    "read_image",
    "spread_over_labels",
    "value_range",
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


def read_image(
    path: str | os.PathLike[str],
    preprocess: Callable[[Any], Tensor],
    *,
    max_pixels: int | None = MAX_PIXELS,
) -> Tensor:
    """Decode ``path`` with Pillow (fully, so truncated files fail here; at most
    ``max_pixels`` pixels; more than 8 bits per sample scaled faithfully:
    :func:`convlens.models.images.decoded`) and preprocess it."""
    with decoded(path, max_pixels=max_pixels) as image:
        return preprocess(image)


class ImageFolderDataset(Dataset):
    """The images under ``root`` (recursive), in sorted relative-path order.

    Items are ``(input, label)``; ``label`` is the index of the top-level sub-folder in
    ``classes`` (ImageFolder layout) or -1 when the folder is not laid out that way. Images
    are read by :func:`read_image` (at most ``max_pixels`` pixels each).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        preprocess: Callable[[Any], Tensor],
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        *,
        max_pixels: int | None = MAX_PIXELS,
    ) -> None:
        self.max_pixels = check_max_pixels(max_pixels, "max_pixels")
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
        path = self.root / self.paths[index]
        return read_image(path, self.preprocess, max_pixels=self.max_pixels), self.labels[index]

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


def first_tensor(item: Any) -> Tensor:
    """The input of a dataset item: the item itself, its first element, or its ``input`` /
    ``image`` / ``pixel_values`` entry."""
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


_first_tensor = first_tensor  # the name scan.crop imports


class SafeDataset(Dataset):
    """Wraps a dataset so that ``self[i]`` is ``(i, input, None)``, or ``(i, None, failure)``
    with ``failure = {"index", "path", "error"}`` when reading item ``i`` raised."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, Tensor | None, dict[str, Any] | None]:
        try:
            return index, first_tensor(self.dataset[index]), None
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


# ------------------------------------------------------------------- what a dataset knows


class SubsetView:
    """Items ``indices`` of ``dataset``, keeping what a report reads from it: ``paths``,
    ``labels`` and ``class_names`` / ``classes``.

    >>> view = SubsetView([(0, 5), (1, 6), (2, 7)], [0, 2])
    >>> len(view), view[1]
    (2, (2, 7))
    """

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = [int(i) for i in indices]
        paths = getattr(dataset, "paths", None)
        if isinstance(paths, Sequence):
            self.paths = [paths[i] for i in self.indices]
        labels = getattr(dataset, "labels", None)
        if labels is not None:
            self.labels = [int(labels[i]) for i in self.indices]
        for attr in ("class_names", "classes"):
            if getattr(dataset, attr, None) is not None:
                setattr(self, attr, getattr(dataset, attr))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[self.indices[index]]


def class_names(dataset: Any) -> list[str] | None:
    """The dataset's class names (``class_names`` or ``classes``), or None.

    >>> class Data: classes = ["cat", "dog"]
    >>> class_names(Data())
    ['cat', 'dog']
    """
    for attr in ("class_names", "classes"):
        names = getattr(dataset, attr, None)
        if isinstance(names, Sequence) and not isinstance(names, str) and names:
            return [str(n) for n in names]
    return None


def _as_label(value: Any) -> int | None:
    try:
        label = int(value)
    except (TypeError, ValueError):
        return None
    return label if label >= 0 else None


def item_label(dataset: Any, index: int, *, read: bool = True) -> int | None:
    """The label of item ``index``: from the dataset's ``labels`` where it has them, else (with
    ``read``) the second element of the item itself; None for none or a negative label.

    >>> item_label([(None, 2), (None, -1)], 0), item_label([(None, 2), (None, -1)], 1)
    (2, None)
    """
    labels = getattr(dataset, "labels", None)
    if labels is not None:
        try:
            return _as_label(labels[index])
        except IndexError:
            return None
    if not read:
        return None
    item = dataset[index]
    if isinstance(item, (tuple, list)) and len(item) > 1:
        return _as_label(item[1])
    return None


def item_name(dataset: Any, index: int) -> str:
    """The file of item ``index`` (:func:`dataset_path`), else ``"item <index>"``."""
    return dataset_path(dataset, index) or f"item {index}"


def label_name(label: int | None, names: Sequence[str] | None) -> str | None:
    """The class name of ``label`` where ``names`` has one, else the number as text.

    >>> label_name(1, ["cat", "dog"]), label_name(7, ["cat", "dog"]), label_name(None, None)
    ('dog', '7', None)
    """
    if label is None:
        return None
    if names is not None and 0 <= label < len(names):
        return names[label]
    return str(label)


def value_range(dataset: Any, indices: Sequence[int]) -> tuple[float, float]:
    """The smallest and largest input value over items ``indices`` ((0, 1) where they are
    all equal or there are none), for one picture scale across a whole report.

    >>> value_range([(torch.tensor([-1.0, 2.0]), 0), (torch.tensor([3.0]), 1)], [0, 1])
    (-1.0, 3.0)
    """
    low, high = math.inf, -math.inf
    for i in indices:
        x = first_tensor(dataset[i])
        low, high = min(low, float(x.min())), max(high, float(x.max()))
    return (low, high) if low < high else (0.0, 1.0)


def spread_over_labels(dataset: Any, count: int, skip: Sequence[int] = ()) -> list[int]:
    """``count`` dataset indices that show several classes: the first item of each label in
    dataset order, then the next items, in index order; indices in ``skip`` (unreadable
    items) are never chosen. Without a ``labels`` attribute only the first 500 items are
    read for their labels.

    >>> spread_over_labels([(None, 1), (None, 1), (None, 0)], 2)
    [0, 2]
    """
    limit = len(dataset) if getattr(dataset, "labels", None) is not None else min(len(dataset), 500)
    excluded = set(skip)
    seen: set[int | None] = set()
    first: list[int] = []
    for i in range(limit):
        if i in excluded:
            continue
        label = item_label(dataset, i)
        if label not in seen:
            seen.add(label)
            first.append(i)
    chosen = set(first)
    rest = [i for i in range(limit) if i not in chosen and i not in excluded]
    return sorted((first + rest)[:count])
