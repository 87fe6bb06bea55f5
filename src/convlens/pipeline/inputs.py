"""What ``--model`` and ``--data`` name, opened: the model (safely), the dataset, and notes.

``--data demo`` is the bundled Fashion-MNIST test sample; anything else a folder of images
(recursive; the ImageFolder layout gives labels) read through the model's preprocessing
(each image at most ``max_pixels`` pixels; more than 8 bits per sample scaled faithfully:
:data:`convlens.models.DEPTH_RULE`). Random weights are drawn with ``seed``. Warnings raised
while loading the model (random weights, say) are kept as notes for the results' metadata and,
unless asked otherwise, still shown on the terminal.

>>> inputs = open_inputs("demo", "demo", every=4)
>>> inputs.loaded.name, len(inputs.dataset), inputs.description.split(";")[1].strip()
('demo', 500, 'every 4th image: 500 images')
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convlens.demo import load_demo_sample
from convlens.demo.data import SAMPLE_PREPROCESSING
from convlens.errors import ParameterError
from convlens.loaded import LoadedModel
from convlens.models import DEPTH_RULE, MAX_PIXELS, RandomWeightsWarning, load_model
from convlens.scan.data import ImageFolderDataset, SubsetView

__all__ = ["DEMO_DATA", "Inputs", "load_model_noting", "open_dataset", "open_inputs"]

#: The ``--data`` value that names the bundled sample.
DEMO_DATA = "demo"


def open_dataset(
    data: str | os.PathLike[str], preprocess: Any, *, max_pixels: int | None = MAX_PIXELS
) -> tuple[Any, str]:
    """The dataset named by ``--data`` and a description of it: ``"demo"`` is the bundled
    Fashion-MNIST test sample, anything else a folder of images (recursive; the ImageFolder
    layout gives labels) read through ``preprocess``, each at most ``max_pixels`` pixels."""
    if os.fspath(data) == DEMO_DATA:
        sample = load_demo_sample()
        return sample, f"bundled Fashion-MNIST test sample ({len(sample)} images, 10 classes)"
    if not Path(data).is_dir():
        raise ParameterError("--data", "a folder of images or 'demo'", os.fspath(data))
    folder = ImageFolderDataset(data, preprocess, max_pixels=max_pixels)
    classes = f", {len(folder.classes)} classes" if folder.classes else ", no class folders"
    return folder, f"folder {os.fspath(data)} ({len(folder)} images{classes})"


def load_model_noting(
    spec: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    allow_random: bool = False,
    device: Any = "cpu",
    seed: int = 0,
    reemit: bool = True,
) -> tuple[LoadedModel, list[warnings.WarningMessage]]:
    """:func:`convlens.models.load_model` with the warnings it raised, which are also shown
    again as usual when ``reemit`` (else the caller shows them)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_model(
            spec, weights=weights, device=device, allow_random=allow_random, seed=seed
        )
    if reemit:
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return loaded, list(caught)


@dataclass(frozen=True)
class Inputs:
    """The opened ``--model`` and ``--data``: ``loaded``, ``dataset`` (every ``every``-th item
    where asked), ``description`` (of the dataset, in words), ``preprocessing`` (in words),
    ``notes`` (the warnings raised while loading), ``random_weights`` and ``image_depth``
    (how images of more than 8 bits are read; None for a dataset that is no image folder)."""

    loaded: LoadedModel
    dataset: Any
    description: str
    preprocessing: str
    notes: tuple[str, ...]
    random_weights: bool
    image_depth: str | None = None


def open_inputs(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    allow_random: bool = False,
    device: Any = "cpu",
    seed: int = 0,
    every: int = 1,
    max_pixels: int | None = MAX_PIXELS,
    reemit: bool = True,
) -> Inputs:
    """Load ``model`` (:func:`load_model_noting`, random weights from ``seed``) onto
    ``device``, open ``data`` (:func:`open_dataset`) and keep every ``every``-th item."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ParameterError("every", "a positive int", every)
    loaded, caught = load_model_noting(
        model, weights=weights, allow_random=allow_random, device=device, seed=seed,
        reemit=reemit,
    )  # fmt: skip
    dataset, description = open_dataset(data, loaded.preprocess, max_pixels=max_pixels)
    if every > 1:
        dataset = SubsetView(dataset, range(0, len(dataset), every))
        description += f"; every {every}th image: {len(dataset)} images"
    depth = None
    if os.fspath(data) == DEMO_DATA:
        preprocessing = SAMPLE_PREPROCESSING
    else:
        preprocessing = getattr(loaded.preprocess, "description", repr(loaded.preprocess))
        depth = DEPTH_RULE
    return Inputs(
        loaded=loaded,
        dataset=dataset,
        description=description,
        preprocessing=preprocessing,
        notes=tuple(str(w.message) for w in caught),
        random_weights=any(issubclass(w.category, RandomWeightsWarning) for w in caught),
        image_depth=depth,
    )
