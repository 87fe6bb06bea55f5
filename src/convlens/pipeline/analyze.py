"""The library side of ``convlens evolution``, ``invariance`` and ``correspondence``: open the
model and data, compute, write JSON + PNG (+ CSV / text table) into a claimed run folder.

Zeiler & Fergus (arXiv:1311.2901): feature evolution during training (§4.1, Fig. 4),
invariance to translation, scale and rotation (§4.4, Fig. 5), correspondence of object parts
(§4.3, Table 1). ``out`` must be new or empty, or an earlier run of the same command with
``resume`` (continue; evolution reuses its scans) or ``overwrite`` (its own files are deleted
first; nothing convlens did not write is touched). Every file is written atomically.

>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "inv"
>>> run = run_invariance("demo", "demo", out, images=[0, 1],
...                      amounts={"translate": [0, 2], "scale": [1, 2], "rotate": [0, 90]})
>>> sorted(p.name for p in run.files)
['invariance.csv', 'invariance.json', 'invariance.png', 'invariance_normalized.png']
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from convlens.analysis.correspondence import (
    CorrespondenceResult,
    Part,
    correspondence,
    correspondence_figure,
    correspondence_table,
    demo_parts,
    read_parts,
)
from convlens.analysis.evolution import (
    EvolutionResult,
    demo_checkpoints,
    evolution_figure,
    read_checkpoints,
)
from convlens.analysis.invariance import (
    InvarianceResult,
    background_fill,
    default_amounts,
    invariance,
    invariance_figure,
)
from convlens.analysis.outputs import RunFolder
from convlens.errors import ParameterError
from convlens.pipeline.evolution import feature_evolution
from convlens.pipeline.inputs import DEMO_DATA, open_inputs
from convlens.scan.data import dataset_path

__all__ = [
    "DEMO_CHECKPOINTS",
    "DEMO_CORRESPONDENCE_LAYERS",
    "DEMO_EVOLUTION_LAYERS",
    "DEMO_INVARIANCE_CLASSES",
    "DEMO_INVARIANCE_LAYERS",
    "AnalysisRun",
    "dataset_labels",
    "pick_images",
    "run_correspondence",
    "run_evolution",
    "run_invariance",
]

#: ``--checkpoints demo``: the demo CNN's shipped checkpoints (epochs 0, 1, 2, 5, 10).
DEMO_CHECKPOINTS = "demo"
#: The demo's layers for Fig. 4: the three conv layers.
DEMO_EVOLUTION_LAYERS = ("features.0", "features.3", "features.6")
#: The demo's low and high layers for Fig. 5 (the paper: layers 1 and 7): the first ReLU and
#: the ReLU of the 256-unit fully connected layer.
DEMO_INVARIANCE_LAYERS = ("features.1", "classifier.3")
#: The demo's classes for Fig. 5: T-shirt/top, Trouser, Sandal, Bag, Ankle boot.
DEMO_INVARIANCE_CLASSES = (0, 1, 5, 8, 9)
#: The demo's layers for Table 1 (the paper: layers 5 and 7): a middle conv, the last conv's
#: ReLU and the fully connected ReLU.
DEMO_CORRESPONDENCE_LAYERS = ("features.3", "features.7", "classifier.3")


@dataclass(frozen=True)
class AnalysisRun:
    """What a ``run_*`` did: its ``result``, the run folder ``out``, the ``files`` written
    (absolute paths, this run's), the dataset ``description`` and ``notes`` (warnings)."""

    result: Any
    out: Path
    files: list[Path]
    description: str
    notes: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


def dataset_labels(dataset: Any) -> list[int]:
    """Every item's label: the dataset's ``labels`` where it has them, else read item by item.

    >>> dataset_labels([(torch.zeros(1), 3), (torch.zeros(1), 1)])
    [3, 1]
    """
    labels = getattr(dataset, "labels", None)
    if labels is not None:
        return [int(v) for v in labels]
    out = []
    for i in range(len(dataset)):
        item = dataset[i]
        out.append(int(item[1]) if isinstance(item, (tuple, list)) and len(item) > 1 else -1)
    return out


def pick_images(
    labels: Sequence[int],
    count: int,
    classes: Sequence[int] | None = None,
    accept: Callable[[int], bool] | None = None,
) -> list[int]:
    """The first image (in dataset order) of each of ``classes`` (default: the first
    ``count`` distinct labels) that ``accept(index)`` takes (default: any), at most ``count``;
    a class with no accepted image falls back to its first image.

    >>> pick_images([2, 2, 0, 1, 0], 2), pick_images([2, 2, 0, 1, 0], 5, classes=[1, 0])
    ([0, 2], [3, 2])
    >>> pick_images([2, 2, 0, 1, 0], 1, accept=lambda i: i > 0)
    [1]
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ParameterError("count", "a positive int", count)
    members: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        members.setdefault(int(y), []).append(i)
    order = list(members) if classes is None else [int(c) for c in classes if int(c) in members]
    out = []
    for c in order[:count]:
        out.append(next((i for i in members[c] if accept is None or accept(i)), members[c][0]))
    return out


def _images(dataset: Any, indices: Sequence[int]) -> torch.Tensor:
    out = []
    for i in indices:
        if not 0 <= int(i) < len(dataset):
            raise ParameterError("images", f"dataset indices 0..{len(dataset) - 1}", i)
        item = dataset[int(i)]
        out.append(item[0] if isinstance(item, (tuple, list)) else item)
    return torch.stack(out)


def _written(run: RunFolder, before: int = 0) -> list[Path]:
    return [run.path / f for f in run.written()[before:] if (run.path / f).is_file()]


# ------------------------------------------------------------------------------- evolution
def run_evolution(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    checkpoints: Sequence[str | os.PathLike[str]] = (DEMO_CHECKPOINTS,),
    layers: Mapping[str, Sequence[int] | None] | Sequence[str] | str | None = None,
    weights: str | os.PathLike[str] | None = None,
    allow_random: bool = False,
    model_seed: int = 0,
    per_layer: int = 6,
    seed: int = 0,
    rule: str = "deconvnet",
    method: str = "auto",
    batch_size: int = 64,
    every: int = 1,
    device: str = "cpu",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = False,
    on_checkpoint: Any = None,
) -> AnalysisRun:
    """Fig. 4: ``checkpoints`` (files, folders, or ``"demo"``: the shipped epochs 0, 1, 2, 5,
    10 of the demo CNN) of ``model`` on ``data``; writes ``evolution.json``,
    ``evolution.safetensors``, ``evolution.png`` (projections) and ``evolution_patches.png``
    (image patches) and a scan run folder per checkpoint under ``scans/``. ``layers``
    default: the demo's three conv layers (required for other models)."""
    demo = [os.fspath(c) for c in checkpoints] == [DEMO_CHECKPOINTS]
    if demo and os.fspath(model) != "demo":
        raise ParameterError(
            "--checkpoints",
            "checkpoint files or folders (the 'demo' ones fit --model demo)",
            DEMO_CHECKPOINTS,
        )
    if layers is None:
        if os.fspath(model) != "demo":
            raise ParameterError("--layers", "the layers to follow (module paths)", None)
        layers = list(DEMO_EVOLUTION_LAYERS)
    ckpts = demo_checkpoints() if demo else read_checkpoints(checkpoints)
    first_file = None if demo or weights is not None else ckpts[0].source
    inputs = open_inputs(
        model,
        data,
        weights=weights if weights is not None else first_file,
        allow_random=allow_random,
        device=device,
        seed=model_seed,
        every=every,
    )
    run = RunFolder.claim(out, "evolution", resume=resume, overwrite=overwrite)
    result: EvolutionResult = feature_evolution(
        inputs.loaded,
        ckpts,
        inputs.dataset,
        layers,
        per_layer=per_layer,
        seed=seed,
        rule=rule,
        method=method,
        batch_size=batch_size,
        out=run,
        resume=resume,
        progress=progress,
        device=device,
        on_checkpoint=on_checkpoint,
    )
    result.meta.update(
        {
            "data": inputs.description,
            "preprocessing": inputs.preprocessing,
            "every": every,
            "model_seed": model_seed,
        }
    )
    run.write_json("evolution.json", result.summary())
    run.write_figure("evolution.png", evolution_figure(result, show="projection"))
    run.write_figure("evolution_patches.png", evolution_figure(result, show="patch"))
    files = [
        run.path / n
        for n in (
            "evolution.json",
            "evolution.safetensors",
            "evolution.png",
            "evolution_patches.png",
        )
    ]
    return AnalysisRun(result, run.path, files, inputs.description, inputs.notes)


# ------------------------------------------------------------------------------- invariance
def run_invariance(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    allow_random: bool = False,
    model_seed: int = 0,
    layers: Sequence[str] | str | None = None,
    images: Sequence[int] | None = None,
    count: int = 5,
    amounts: Mapping[str, Sequence[float]] | None = None,
    fill: float | str = "black",
    true_class: str = "auto",
    batch_size: int = 256,
    device: str = "cpu",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = False,
) -> AnalysisRun:
    """Fig. 5 for ``images`` (dataset indices; default: of ``count`` classes — for the demo
    T-shirt/top, Trouser, Sandal, Bag, Ankle boot — the first image the model classifies
    correctly) over ``amounts`` (a kind
    not given keeps its :func:`~convlens.analysis.invariance.default_amounts` range); writes ``invariance.json``,
    ``invariance.csv``, ``invariance.png`` and ``invariance_normalized.png``. ``fill``:
    ``"black"`` (a black pixel through the model's preprocessing: the demo's background),
    ``"zero"`` (0, the mean of a normalised input) or a number. ``true_class``: ``"dataset"``
    (the dataset's labels), ``"predicted"`` (the class the model gives the original image)
    or ``"auto"`` (dataset labels for ``data="demo"``, else predicted)."""
    if true_class not in ("auto", "dataset", "predicted"):
        raise ParameterError("true_class", "auto, dataset or predicted", true_class)
    if layers is None:
        if os.fspath(model) != "demo":
            raise ParameterError("--layers", "a low and a high layer (module paths)", None)
        layers = list(DEMO_INVARIANCE_LAYERS)
    inputs = open_inputs(
        model, data, weights=weights, allow_random=allow_random, device=device, seed=model_seed
    )
    dataset = inputs.dataset
    labels_all = dataset_labels(dataset)
    if images is None:
        classes = DEMO_INVARIANCE_CLASSES if os.fspath(data) == DEMO_DATA else None

        def correct(i: int) -> bool:  # the paper shows images the model gets right
            with torch.no_grad():
                logits = inputs.loaded.model(_images(dataset, [i]).to(device))
            return int(logits.argmax(1)) == labels_all[i]

        images = pick_images(labels_all, count, classes, accept=correct)
    images = [int(i) for i in images]
    x = _images(dataset, images)
    use = (
        true_class
        if true_class != "auto"
        else ("dataset" if os.fspath(data) == DEMO_DATA else "predicted")
    )
    if use == "dataset":
        labels = [labels_all[i] for i in images]
        if min(labels) < 0:
            raise ParameterError("true_class", "a dataset with labels, or 'predicted'", "dataset")
    else:
        with torch.no_grad():
            labels = inputs.loaded.model(x.to(device)).argmax(1).tolist()
    if isinstance(fill, str):
        if fill == "black":
            size = inputs.loaded.input_size or tuple(x.shape[2:])
            mode = "L" if x.shape[1] == 1 else "RGB"
            fill_value: Any = background_fill(inputs.loaded.preprocess, size, mode)
        elif fill == "zero":
            fill_value = 0.0
        else:
            raise ParameterError("fill", "'black', 'zero' or a number", fill)
    else:
        fill_value = float(fill)
    plan = default_amounts(tuple(x.shape[2:]))
    plan.update({k: list(v) for k, v in (amounts or {}).items()})
    run = RunFolder.claim(out, "invariance", resume=resume, overwrite=overwrite)
    result: InvarianceResult = invariance(
        inputs.loaded,
        x,
        labels,
        layers,
        amounts=plan,
        fill=fill_value,
        batch_size=batch_size,
        image_ids=images,
        class_names=inputs.loaded.class_names,
        progress=progress,
    )
    result.meta.update(
        {
            "data": inputs.description,
            "true_class": use,
            "fill_requested": fill,
            "randomness": "none (deterministic)",
            "model_seed": model_seed,
        }
    )
    run.write_json("invariance.json", result.summary())
    run.write_text("invariance.csv", result.csv_text())
    run.write_figure("invariance.png", invariance_figure(result))
    run.write_figure("invariance_normalized.png", invariance_figure(result, normalized=True))
    files = [
        run.path / n
        for n in (
            "invariance.json",
            "invariance.csv",
            "invariance.png",
            "invariance_normalized.png",
        )
    ]
    return AnalysisRun(result, run.path, files, inputs.description, inputs.notes)


# --------------------------------------------------------------------------- correspondence
def run_correspondence(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    boxes: str | os.PathLike[str] | None = None,
    weights: str | os.PathLike[str] | None = None,
    allow_random: bool = False,
    model_seed: int = 0,
    layers: Sequence[str] | str | None = None,
    per_part: int = 5,
    repeats: int = 10,
    seed: int = 0,
    zero: str = "value",
    fill: float = 0.0,
    device: str = "cpu",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = False,
) -> AnalysisRun:
    """Table 1: the parts of ``boxes`` (a JSON/CSV of (image, box) rows; image = dataset
    index or path) or, for ``data="demo"`` without ``boxes``, the demo's hand-chosen parts
    (:data:`~convlens.analysis.correspondence.DEMO_PARTS`, the first ``per_part`` images of
    each class), each against ``repeats`` random boxes of its size (seeded with ``seed``);
    writes ``correspondence.json``, ``correspondence.txt`` (the table) and
    ``correspondence.png``. ``fill``: the occluder's value (0: grey, the normalised mean)."""
    if layers is None:
        if os.fspath(model) != "demo":
            raise ParameterError("--layers", "the layers to compare (module paths)", None)
        layers = list(DEMO_CORRESPONDENCE_LAYERS)
    inputs = open_inputs(
        model, data, weights=weights, allow_random=allow_random, device=device, seed=model_seed
    )
    dataset = inputs.dataset
    parts: list[Part]
    if boxes is not None:
        paths = {dataset_path(dataset, i): i for i in range(len(dataset))}

        def resolve(name: str) -> int:
            if name not in paths:
                raise ParameterError("boxes", "images of the dataset (index or path)", name)
            return paths[name]

        parts = read_parts(boxes, resolve)
        source = os.fspath(boxes)
    elif os.fspath(data) == DEMO_DATA:
        parts = demo_parts(dataset_labels(dataset), dataset.class_names, per_part)
        source = "built-in demo parts (convlens.analysis.correspondence.DEMO_PARTS)"
    else:
        raise ParameterError("--boxes", "a JSON or CSV file of (image, box) rows", None)
    run = RunFolder.claim(out, "correspondence", resume=resume, overwrite=overwrite)
    result: CorrespondenceResult = correspondence(
        inputs.loaded,
        dataset,
        parts,
        layers,
        repeats=repeats,
        seed=seed,
        zero=zero,
        fill=fill,
        progress=progress,
    )
    result.meta.update({"data": inputs.description, "boxes": source, "model_seed": model_seed})
    table = correspondence_table(result)
    run.write_json("correspondence.json", result.summary())
    run.write_text(
        "correspondence.txt", table + "\n\n" + correspondence_table(result, raw=True) + "\n"
    )
    run.write_figure("correspondence.png", correspondence_figure(result, dataset))
    files = [
        run.path / n for n in ("correspondence.json", "correspondence.txt", "correspondence.png")
    ]
    return AnalysisRun(result, run.path, files, inputs.description, inputs.notes, {"table": table})
