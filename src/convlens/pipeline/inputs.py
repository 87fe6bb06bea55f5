"""What ``--model`` and ``--data`` name, opened: the model (safely), the dataset, and notes.

``--data demo`` is the bundled Fashion-MNIST test sample; anything else a folder of images
(recursive; the ImageFolder layout gives labels) read through the model's preprocessing.
Warnings raised while loading the model (random weights, say) are kept as notes for the
results' metadata and, unless asked otherwise, still shown on the terminal.

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
from convlens.models import RandomWeightsWarning, load_model
from convlens.scan.data import ImageFolderDataset, SubsetView

__all__ = ["DEMO_DATA", "Inputs", "load_model_noting", "open_dataset", "open_inputs"]

#: The ``--data`` value that names the bundled sample.
DEMO_DATA = "demo"


def open_dataset(data: str | os.PathLike[str], preprocess: Any) -> tuple[Any, str]:
    """The dataset named by ``--data`` and a description of it: ``"demo"`` is the bundled
    Fashion-MNIST test sample, anything else a folder of images (recursive; the ImageFolder
    layout gives labels) read through ``preprocess``."""
    if os.fspath(data) == DEMO_DATA:
        sample = load_demo_sample()
        return sample, f"bundled Fashion-MNIST test sample ({len(sample)} images, 10 classes)"
    if not Path(data).is_dir():
        raise ParameterError("--data", "a folder of images or 'demo'", os.fspath(data))
    folder = ImageFolderDataset(data, preprocess)
    classes = f", {len(folder.classes)} classes" if folder.classes else ", no class folders"
    return folder, f"folder {os.fspath(data)} ({len(folder)} images{classes})"


def load_model_noting(
    spec: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    allow_random: bool = False,
    device: Any = "cpu",
    reemit: bool = True,
) -> tuple[LoadedModel, list[warnings.WarningMessage]]:
    """:func:`convlens.models.load_model` with the warnings it raised, which are also shown
    again as usual when ``reemit`` (else the caller shows them)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_model(spec, weights=weights, device=device, allow_random=allow_random)
    if reemit:
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return loaded, list(caught)


@dataclass(frozen=True)
class Inputs:
    """The opened ``--model`` and ``--data``: ``loaded``, ``dataset`` (every ``every``-th item
    where asked), ``description`` (of the dataset, in words), ``preprocessing`` (in words),
    ``notes`` (the warnings raised while loading) and ``random_weights``."""

    loaded: LoadedModel
    dataset: Any
    description: str
    preprocessing: str
    notes: tuple[str, ...]
    random_weights: bool


def open_inputs(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    allow_random: bool = False,
    device: Any = "cpu",
    every: int = 1,
    reemit: bool = True,
) -> Inputs:
    """Load ``model`` (:func:`load_model_noting`) onto ``device``, open ``data``
    (:func:`open_dataset`) and keep every ``every``-th item."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ParameterError("every", "a positive int", every)
    loaded, caught = load_model_noting(
        model, weights=weights, allow_random=allow_random, device=device, reemit=reemit
    )
    dataset, description = open_dataset(data, loaded.preprocess)
    if every > 1:
        dataset = SubsetView(dataset, range(0, len(dataset), every))
        description += f"; every {every}th image: {len(dataset)} images"
    if os.fspath(data) == DEMO_DATA:
        preprocessing = SAMPLE_PREPROCESSING
    else:
        preprocessing = getattr(loaded.preprocess, "description", repr(loaded.preprocess))
    return Inputs(
        loaded=loaded,
        dataset=dataset,
        description=description,
        preprocessing=preprocessing,
        notes=tuple(str(w.message) for w in caught),
        random_weights=any(issubclass(w.category, RandomWeightsWarning) for w in caught),
    )
