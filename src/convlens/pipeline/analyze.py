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
from convlens.errors import ParameterError, verbatim
from convlens.layer_paths import find_modules
from convlens.pipeline.evolution import feature_evolution
from convlens.pipeline.inputs import DEMO_DATA, open_inputs
from convlens.scan.data import SafeDataset, dataset_path

__all__ = [
    "DEMO_CHECKPOINTS",
    "DEMO_CORRESPONDENCE_LAYERS",
    "DEMO_EVOLUTION_LAYERS",
    "DEMO_INVARIANCE_CLASSES",
    "DEMO_INVARIANCE_LAYERS",
    "AnalysisRun",
    "ImageReader",
    "check_classifier",
    "classifier_problem",
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
    (absolute paths, this run's, in the order first written), the dataset ``description``,
    ``notes`` (warnings) and ``extra`` (invariance: ``skipped``, a line on the images that
    could not be read; correspondence: ``table``)."""

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
    usable: Callable[[int], bool] | None = None,
) -> list[int]:
    """The first image (in dataset order) of each of ``classes`` (default: the first
    ``count`` distinct labels) that ``accept(index)`` takes (default: any), at most ``count``;
    a class with no accepted image falls back to its first image that is ``usable(index)``
    (default: any; a class with none is left out).

    >>> pick_images([2, 2, 0, 1, 0], 2), pick_images([2, 2, 0, 1, 0], 5, classes=[1, 0])
    ([0, 2], [3, 2])
    >>> pick_images([2, 2, 0, 1, 0], 1, accept=lambda i: i > 0)
    [1]
    >>> pick_images([2, 2, 0, 1, 0], 3, accept=lambda i: False, usable=lambda i: i not in (0, 3))
    [1, 2]
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ParameterError("count", "a positive int", count)
    members: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        members.setdefault(int(y), []).append(i)
    order = list(members) if classes is None else [int(c) for c in classes if int(c) in members]
    out = []
    for c in order[:count]:
        pick = next((i for i in members[c] if accept is None or accept(i)), None)
        if pick is None:
            pick = next((i for i in members[c] if usable is None or usable(i)), None)
        if pick is not None:
            out.append(pick)
    return out


def classifier_problem(
    net: Any, image: torch.Tensor, device: str | torch.device = "cpu"
) -> str | None:
    """Why ``net`` is no classifier of images for Fig. 5 and Table 1 (its output for one
    ``image`` (C, H, W) is not class scores (1, classes)), or None.

    >>> from torch import nn
    >>> classifier_problem(nn.Conv2d(1, 2, 1), torch.zeros(1, 2, 2))
    'a model whose output is (1, 2, 2, 2)'
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        return f"items that are no images (C, H, W): {tuple(getattr(image, 'shape', ()))}"
    with torch.no_grad():
        output = net(image.unsqueeze(0).to(device))
    if not isinstance(output, torch.Tensor) or output.dim() != 2:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        return f"a model whose output is {shape}"
    return None


def check_classifier(net: Any, image: torch.Tensor, device: str | torch.device = "cpu") -> None:
    """Refuse, naming ``--model``, a model that is no classifier (:func:`classifier_problem`):
    Fig. 5 plots the probability of the true class.

    >>> from torch import nn
    >>> check_classifier(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), torch.zeros(1, 2, 2))
    >>> try:
    ...     check_classifier(nn.Conv2d(1, 2, 1), torch.zeros(1, 2, 2))
    ... except ParameterError as exc:
    ...     print(exc)
    --model: expected a classifier: class scores (N, classes) as output (Fig. 5 plots the true class's probability), received a model whose output is (1, 2, 2, 2)
    """
    problem = classifier_problem(net, image, device)
    if problem is not None:
        raise ParameterError(
            "--model",
            "a classifier: class scores (N, classes) as output (Fig. 5 plots the true "
            "class's probability)",
            verbatim(problem),
        )


class ImageReader:
    """Items of ``dataset`` read one at a time as a scan reads them
    (:class:`~convlens.scan.data.SafeDataset`): an image that cannot be read is remembered
    (:meth:`failures`) instead of ending the run.

    >>> reader = ImageReader([(torch.zeros(1, 2, 2), 0), ("not an image", 1)])
    >>> reader.get(0).shape, reader.get(1), [f["index"] for f in reader.failures()]
    (torch.Size([1, 2, 2]), None, [1])
    """

    def __init__(self, dataset: Any) -> None:
        self._safe = SafeDataset(dataset)
        self._failures: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._safe)

    def get(self, index: int) -> torch.Tensor | None:
        """Item ``index``'s input, or None when it cannot be read."""
        if index in self._failures:
            return None
        _, x, failure = self._safe[index]
        if failure is not None:
            self._failures[index] = failure
        return x

    def require(self, index: int) -> torch.Tensor:
        """Item ``index``'s input; an index out of range or an unreadable image is refused."""
        if not 0 <= int(index) < len(self):
            raise ParameterError("images", f"dataset indices 0..{len(self) - 1}", index)
        x = self.get(int(index))
        if x is None:
            f = self._failures[int(index)]
            raise ParameterError(
                "--images",
                "images that can be read",
                verbatim(f"#{index} {f['path'] or ''}: {f['error']}".replace(" :", ":")),
            )
        return x

    def first(self) -> torch.Tensor:
        """The first input that can be read (refused, naming ``--data``, when none can)."""
        for i in range(len(self)):
            x = self.get(i)
            if x is not None:
                return x
        raise ParameterError("--data", "a dataset with readable images", self.failure_text())

    def failures(self) -> list[dict[str, Any]]:
        """``{index, path, error}`` of every item that could not be read, by index."""
        return [self._failures[i] for i in sorted(self._failures)]

    def failure_text(self) -> Any:
        shown = [f"{f['path'] or f['index']} ({f['error']})" for f in self.failures()[:3]]
        more = len(self._failures) - len(shown)
        text = "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
        n = len(self._failures)
        what = f"{n} unreadable image{'s' if n != 1 else ''}"
        return verbatim(f"{what}: {text}" if shown else "no items")

    def notes(self) -> tuple[str, ...]:
        """One line for the user when images were skipped, else none."""
        if not self._failures:
            return ()
        return (f"skipped {self.failure_text()} (listed in invariance.json, meta.skipped)",)


def _files(run: RunFolder) -> list[Path]:
    """What this run wrote (absolute paths, in the order first written)."""
    return [run.path / f for f in run.written()]


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
    RunFolder.check(out, "evolution", resume=resume, overwrite=overwrite)  # before any work
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
    with RunFolder.claim(out, "evolution", resume=resume, overwrite=overwrite) as run:
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
    return AnalysisRun(result, run.path, _files(run), inputs.description, inputs.notes)


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
    RunFolder.check(out, "invariance", resume=resume, overwrite=overwrite)  # before any work
    inputs = open_inputs(
        model, data, weights=weights, allow_random=allow_random, device=device, seed=model_seed
    )
    dataset = inputs.dataset
    net = inputs.loaded.model
    find_modules(net, layers, "--layers")  # named as the option, before any work
    labels_all = dataset_labels(dataset)
    reader = ImageReader(dataset)
    if images is None:
        check_classifier(net, reader.first(), device)
        classes = DEMO_INVARIANCE_CLASSES if os.fspath(data) == DEMO_DATA else None

        def correct(i: int) -> bool:  # the paper shows images the model gets right
            x = reader.get(i)
            if x is None:
                return False
            with torch.no_grad():
                logits = net(x.unsqueeze(0).to(device))
            return int(logits.argmax(1)) == labels_all[i]

        images = pick_images(
            labels_all, count, classes, accept=correct, usable=lambda i: reader.get(i) is not None
        )
        if not images:
            raise ParameterError("--data", "readable images", reader.failure_text())
    images = [int(i) for i in images]
    x = torch.stack([reader.require(i) for i in images])
    check_classifier(net, x[0], device)
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
            labels = net(x.to(device)).argmax(1).tolist()
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
    with RunFolder.claim(out, "invariance", resume=resume, overwrite=overwrite) as run:
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
                "skipped": reader.failures(),
            }
        )
        run.write_json("invariance.json", result.summary())
        run.write_text("invariance.csv", result.csv_text())
        run.write_figure("invariance.png", invariance_figure(result))
        run.write_figure("invariance_normalized.png", invariance_figure(result, normalized=True))
    skipped = reader.notes()
    return AnalysisRun(
        result,
        run.path,
        _files(run),
        inputs.description,
        (*inputs.notes, *skipped),
        {"skipped": skipped},
    )


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
    RunFolder.check(out, "correspondence", resume=resume, overwrite=overwrite)  # before any work
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
    with RunFolder.claim(out, "correspondence", resume=resume, overwrite=overwrite) as run:
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
    return AnalysisRun(
        result, run.path, _files(run), inputs.description, inputs.notes, {"table": table}
    )
