"""The report's pages of Zeiler & Fergus (arXiv:1311.2901) Fig. 4 (feature evolution during
training, §4.1), Fig. 5 (invariance, §4.4) and Table 1 (correspondence of parts, §4.3).

Each analysis runs through the pipeline (:func:`convlens.pipeline.analyze.run_evolution`,
:func:`~convlens.pipeline.analyze.run_invariance`,
:func:`~convlens.pipeline.analyze.run_correspondence`: the code behind ``convlens evolution``,
``invariance`` and ``correspondence``) into a temporary run folder, and its page is built from
the files it wrote there: the JSON, the PNGs and the CSV, which the report ships beside its
pages (``data/``). What runs is :class:`AnalysisOptions`: evolution only with checkpoints;
invariance on by default (layers: :func:`default_invariance_layers`); correspondence with a
file of boxes, or on the demo data with its hand-chosen parts. A page that is not built is
named on the summary with the reason (:attr:`convlens.report.data.Summary.not_built`).

:func:`plan_analyses` checks the options against the loaded model and dataset before any work
(before the report's scan); :func:`add_analyses` runs them after it.

>>> import torch.nn as nn
>>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 8),
...                     nn.ReLU(), nn.Linear(8, 2))
>>> default_invariance_layers(net), default_correspondence_layers(net)
(('1', '4'), ('1', '4'))
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from convlens.analysis.correspondence import read_parts
from convlens.analysis.evolution import checkpoint_files
from convlens.analysis.invariance import IDENTITY, TRANSFORMS
from convlens.analysis.occlusion import default_layer
from convlens.errors import ConvLensError, ParameterError, ParameterTypeError, verbatim
from convlens.loaded import eval_mode
from convlens.pipeline.analyze import (
    DEMO_CHECKPOINTS,
    ImageReader,
    classifier_problem,
    run_correspondence,
    run_evolution,
    run_invariance,
)
from convlens.pipeline.inputs import DEMO_DATA
from convlens.report.data import (
    CorrespondencePart,
    CorrespondenceSection,
    DataFile,
    EvolutionChannel,
    EvolutionLayerTable,
    EvolutionSection,
    InvarianceSection,
    ReportData,
    Table,
)
from convlens.scan.data import SubsetView, dataset_path, item_name, label_name

__all__ = [
    "AnalysisOptions",
    "AnalysisPlan",
    "add_analyses",
    "correspondence_section",
    "default_correspondence_layers",
    "default_invariance_layers",
    "evolution_section",
    "invariance_section",
    "plan_analyses",
]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Layers that pass values on unchanged in eval mode (or only reshape them).
_UNCHANGED = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
              nn.Flatten, nn.Identity)  # fmt: skip
#: The page names, as the summary shows them.
PAGES = {"evolution": "Evolution", "invariance": "Invariance", "correspondence": "Correspondence"}


@dataclass(frozen=True)
class AnalysisOptions:
    """What the report's analysis pages run with (``convlens report`` options; the demo's
    presets are :data:`convlens.demo.DEMO_REPORT`).

    Evolution (Fig. 4): ``checkpoints`` (files or folders, in training order, or
    ``("demo",)``; none: no page) on ``evolution_layers`` (default: the report's layers, for
    the demo its three conv layers), ``evolution_per_layer`` random channels per layer (chosen
    with ``evolution_seed``), every ``evolution_every``-th image. Invariance (Fig. 5):
    ``invariance`` on/off, ``invariance_layers`` (default :func:`default_invariance_layers`),
    ``invariance_images`` (dataset indices; default: ``invariance_count`` classes' first
    correctly classified image), ``invariance_amounts`` (``{kind: [amount, ...]}``; a kind not
    given keeps its default range). Correspondence (Table 1): ``parts`` (a JSON/CSV file of
    (image, box) rows; on the demo data the built-in parts without one; else no page),
    ``correspondence_layers``, ``correspondence_per_part`` (images per built-in part),
    ``correspondence_repeats`` random-box controls seeded with ``correspondence_seed``.
    """

    checkpoints: tuple[str, ...] = ()
    evolution_layers: tuple[str, ...] | None = None
    evolution_every: int = 1
    evolution_per_layer: int = 6
    evolution_seed: int = 0
    invariance: bool = True
    invariance_layers: tuple[str, ...] | None = None
    invariance_images: tuple[int, ...] | None = None
    invariance_count: int = 5
    invariance_amounts: Mapping[str, Sequence[float]] | None = None
    correspondence: bool = True
    parts: str | None = None
    correspondence_layers: tuple[str, ...] | None = None
    correspondence_per_part: int = 5
    correspondence_repeats: int = 10
    correspondence_seed: int = 0

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | AnalysisOptions | None) -> AnalysisOptions:
        """From a mapping of these field names (unknown names are an error), or as given.

        >>> AnalysisOptions.from_mapping({"checkpoints": ["demo"]}).checkpoints
        ('demo',)
        """
        if options is None:
            return cls()
        if isinstance(options, AnalysisOptions):
            return options
        if not isinstance(options, Mapping):
            raise ParameterTypeError("analyses", "a mapping of analysis options", options)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ParameterError("analyses", f"options among {', '.join(sorted(known))}", unknown)
        values = dict(options)
        for key in (
            "checkpoints",
            "evolution_layers",
            "invariance_layers",
            "correspondence_layers",
        ):
            if values.get(key) is not None:
                given = values[key]
                values[key] = (given,) if isinstance(given, (str, os.PathLike)) else tuple(given)
                values[key] = tuple(os.fspath(v) for v in values[key])
        if values.get("invariance_images") is not None:
            values["invariance_images"] = tuple(values["invariance_images"])
        if values.get("parts") is not None:
            values["parts"] = os.fspath(values["parts"])
        return cls(**values)


@dataclass(frozen=True)
class AnalysisPlan:
    """The checked :class:`AnalysisOptions` for one model and dataset: the specs the
    pipeline opens again (``model``, ``data``, ``weights``, ...), the layers to use (None:
    the pipeline's demo defaults) and the pages left out with why (``not_built``)."""

    options: AnalysisOptions
    model: str
    data: str
    weights: str | None
    allow_random: bool
    model_seed: int
    device: str
    batch_size: int
    evolution_layers: tuple[str, ...] | None
    invariance_layers: tuple[str, ...] | None
    correspondence_layers: tuple[str, ...] | None
    run: tuple[str, ...]
    not_built: tuple[tuple[str, str], ...] = ()
    known_notes: tuple[str, ...] = ()
    dataset: Any = field(default=None, repr=False, compare=False)


# ---------------------------------------------------------------------------- default layers


def _leaves(net: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in net.named_modules() if n and not list(m.children())]


def _then_relu(leaves: list[tuple[str, nn.Module]], i: int) -> str:
    """The leaf ``i``, or the ReLU right after it (its rectified output)."""
    if i + 1 < len(leaves) and isinstance(leaves[i + 1][1], nn.ReLU):
        return leaves[i + 1][0]
    return leaves[i][0]


def default_invariance_layers(net: nn.Module) -> tuple[str, ...]:
    """A low and a high layer for Fig. 5 (the paper: layers 1 and 7): the first convolution
    (or the ReLU right after it) and what feeds the final linear layer (the layer before it,
    past dropout, flatten and identity layers, which change nothing in eval mode); without a
    linear layer, the last convolution (or its ReLU). Layers in registration order, as
    :func:`convlens.analysis.occlusion.default_layer` takes them.

    >>> default_invariance_layers(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3)))
    ('1', '2')
    """
    leaves = _leaves(net)
    convs = [i for i, (_, m) in enumerate(leaves) if isinstance(m, _CONVS)]
    if not convs:
        raise ParameterError(
            "invariance layers", "a model with a conv layer to default to", type(net).__name__
        )
    low = _then_relu(leaves, convs[0])
    linears = [i for i, (_, m) in enumerate(leaves) if isinstance(m, nn.Linear)]
    if linears:
        i = linears[-1] - 1
        while i > 0 and isinstance(leaves[i][1], _UNCHANGED):
            i -= 1
        high = leaves[max(i, 0)][0]
    else:
        high = _then_relu(leaves, convs[-1])
    return (low,) if high == low else (low, high)


def default_correspondence_layers(net: nn.Module) -> tuple[str, ...]:
    """Layers for Table 1 (the paper: layers 5 and 7): the last convolution (or its ReLU,
    :func:`convlens.analysis.occlusion.default_layer`) and the high layer of
    :func:`default_invariance_layers`.

    >>> default_correspondence_layers(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()))
    ('1',)
    """
    last = default_layer(net)
    high = default_invariance_layers(net)[-1]
    return (last,) if high == last else (last, high)


# ------------------------------------------------------------------------------------ plan


def _full(dataset: Any) -> Any:
    """The dataset before ``every`` kept every n-th item (the analyses index that one)."""
    return dataset.dataset if isinstance(dataset, SubsetView) else dataset


def _not_a_classifier(net: nn.Module, dataset: Any, device: str) -> str | None:
    """Why invariance and correspondence cannot run on ``net`` (they compare class
    probabilities: :func:`~convlens.pipeline.analyze.classifier_problem` on the first readable
    item of the dataset), or None."""
    reader = ImageReader(dataset)
    if len(dataset) == 0:
        return "the dataset is empty"
    try:
        image = reader.first()
    except ConvLensError as exc:
        return str(exc)
    with eval_mode(net):
        return classifier_problem(net, image, device)


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ParameterError(name, f"an int >= {low}", value)


def _check_layers(name: str, layers: Sequence[str] | None, modules: Mapping[str, Any]) -> None:
    if layers is None:
        return
    if not layers:
        raise ParameterError(name, "at least one module path", list(layers))
    for layer in layers:
        if layer not in modules or not layer:
            hint = "layers of this model: " + ", ".join(list(modules)[1:30])
            raise ParameterError(name, "module paths of the model", layer, hint=hint)


def plan_analyses(
    options: AnalysisOptions | Mapping[str, Any] | None,
    loaded: Any,
    dataset: Any,
    *,
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    weights: str | os.PathLike[str] | None = None,
    allow_random: bool = False,
    model_seed: int = 0,
    device: str = "cpu",
    batch_size: int = 64,
    layers: Sequence[str] | None = None,
    known_notes: Sequence[str] = (),
) -> AnalysisPlan:
    """Check ``options`` against the loaded model and ``dataset`` (the report's, where
    ``every`` may have kept every n-th item: the analyses use all of them) before any work:
    checkpoint files exist, layers are the model's, images are in the dataset, the boxes file
    reads and its boxes lie inside the images. ``layers``: the report's layers (evolution's
    default). ``known_notes``: warnings the report already shows (not repeated when the
    pipeline loads the model again)."""
    opts = AnalysisOptions.from_mapping(options)
    net = getattr(loaded, "model", loaded)
    if not isinstance(net, nn.Module):
        raise ParameterTypeError("model", "an nn.Module or a LoadedModel", loaded)
    modules = dict(net.named_modules())
    demo_model = os.fspath(model) == "demo"
    demo_data = os.fspath(data) == DEMO_DATA
    full = _full(dataset)
    for name, low in (
        ("evolution_every", 1),
        ("evolution_per_layer", 1),
        ("evolution_seed", 0),
        ("invariance_count", 1),
        ("correspondence_per_part", 2),
        ("correspondence_repeats", 1),
        ("correspondence_seed", 0),
    ):
        _check_int(name, getattr(opts, name), low)
    run: list[str] = []
    skipped: list[tuple[str, str]] = []

    # evolution: only with checkpoints
    evo_layers = opts.evolution_layers or (tuple(layers) if layers else None)
    if opts.checkpoints:
        if list(opts.checkpoints) == [DEMO_CHECKPOINTS]:
            if not demo_model:
                raise ParameterError(
                    "checkpoints", "checkpoint files or folders ('demo' fits --model demo)", "demo"
                )
        else:
            checkpoint_files(list(opts.checkpoints))  # every file or folder exists
        if evo_layers is None and not demo_model:
            from convlens.analysis.filters import conv_layers

            evo_layers = tuple(conv_layers(net))
            if not evo_layers:
                raise ParameterError("evolution layers", "module paths (no conv layer)", None)
        _check_layers("evolution layers", evo_layers, modules)
        run.append("evolution")
    else:
        skipped.append(
            ("evolution", "no checkpoints were given (--checkpoints FILES or a folder of them)")
        )

    # invariance and correspondence compare class probabilities: a classifier of images
    wanted = opts.invariance or (opts.correspondence and (opts.parts is not None or demo_data))
    unfit = _not_a_classifier(net, full, device) if wanted else None
    if unfit is not None:
        for page, asked in (
            ("invariance", opts.invariance and _explicit("invariance", opts)),
            ("correspondence", opts.correspondence and _explicit("correspondence", opts)),
        ):
            if asked:
                raise ParameterError(f"{page} options", "a classifier of images", verbatim(unfit))

    # invariance: on by default
    inv_layers = opts.invariance_layers
    if not opts.invariance:
        skipped.append(("invariance", "turned off (--no-invariance)"))
    elif unfit is not None:
        skipped.append(("invariance", f"it needs a classifier of images: {unfit}"))
    else:
        if inv_layers is None and not demo_model:
            try:
                inv_layers = default_invariance_layers(net)
            except ParameterError as exc:
                skipped.append(("invariance", f"no default layers: {exc} (--invariance-layers)"))
        _check_layers("invariance layers", inv_layers, modules)
        if opts.invariance_images is not None:
            if not opts.invariance_images:
                raise ParameterError("invariance images", "at least one dataset index", [])
            bad = [i for i in opts.invariance_images if not 0 <= int(i) < len(full)]
            if bad:
                raise ParameterError("invariance images", f"indices 0..{len(full) - 1}", bad)
        if opts.invariance_amounts is not None:
            unknown = sorted(set(opts.invariance_amounts) - set(TRANSFORMS))
            if unknown:
                raise ParameterError(
                    "invariance amounts", f"kinds {', '.join(TRANSFORMS)}", unknown
                )
        if not any(page == "invariance" for page, _ in skipped):
            run.append("invariance")

    # correspondence: with boxes, or the demo data's built-in parts
    cor_layers = opts.correspondence_layers
    if not opts.correspondence:
        skipped.append(("correspondence", "turned off (--no-correspondence)"))
    elif opts.parts is None and not demo_data:
        skipped.append(
            ("correspondence", "no boxes were given (--parts FILE: rows image, top, left, "
             "height, width, part)")
        )  # fmt: skip
    elif unfit is not None:
        skipped.append(("correspondence", f"it needs a classifier of images: {unfit}"))
    else:
        if cor_layers is None and not demo_model:
            cor_layers = default_correspondence_layers(net)
        _check_layers("correspondence layers", cor_layers, modules)
        if opts.parts is not None:
            _check_parts(opts.parts, full)
        run.append("correspondence")
    return AnalysisPlan(
        options=opts,
        model=os.fspath(model),
        data=os.fspath(data),
        weights=None if weights is None else os.fspath(weights),
        allow_random=allow_random,
        model_seed=model_seed,
        device=device,
        batch_size=batch_size,
        evolution_layers=evo_layers,
        invariance_layers=inv_layers,
        correspondence_layers=cor_layers,
        run=tuple(run),
        not_built=tuple(skipped),
        known_notes=tuple(known_notes),
        dataset=full,
    )


def _resolver(dataset: Any) -> Callable[[str], int]:
    """Image names of a boxes file to dataset indices (as ``run_correspondence`` does)."""
    paths = {dataset_path(dataset, i): i for i in range(len(dataset))}

    def resolve(name: str) -> int:
        if name not in paths:
            raise ParameterError("parts", "images of the dataset (index or path)", name)
        return paths[name]

    return resolve


def _check_parts(path: str, dataset: Any) -> None:
    parts = read_parts(path, _resolver(dataset))
    if not parts:
        raise ParameterError("parts", "a file with at least one part", path)
    first = dataset[0]
    x = first[0] if isinstance(first, (tuple, list)) else first
    size = tuple(getattr(x, "shape", ())[-2:])
    for part in parts:
        for i, box in zip(part.images, part.boxes):
            if not 0 <= i < len(dataset):
                raise ParameterError("parts", f"dataset indices 0..{len(dataset) - 1}", i)
            if len(size) == 2:
                box.check(size, f"parts: box of image {i} ({part.name})")


# -------------------------------------------------------------------------------- sections


def _read_json(folder: Path, name: str) -> dict[str, Any]:
    doc = json.loads((folder / name).read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise ParameterError(name, "a JSON object written by convlens", type(doc).__name__)
    return doc


def _file(folder: Path, name: str, description: str) -> DataFile:
    return DataFile(name, (folder / name).read_bytes(), description)


def _ordinal(n: int) -> str:
    return "every image" if n == 1 else f"every {n}th image"


def evolution_section(folder: str | os.PathLike[str], *, demo: bool = False) -> EvolutionSection:
    """The evolution page from a run folder of ``convlens evolution``
    (:func:`~convlens.pipeline.analyze.run_evolution`): its ``evolution.json``,
    ``evolution.png`` and ``evolution_patches.png``. ``demo``: the checkpoints are the demo's
    shipped ones (the page says how they are stored)."""
    folder = Path(folder)
    doc = _read_json(folder, "evolution.json")
    meta = doc.get("meta", {})
    ck = doc["checkpoints"]
    labels = [str(c["label"]) for c in ck]
    checkpoints = Table(
        ("checkpoint", "source", "sha256"),
        tuple((c["label"], c["source"], c["sha256"]) for c in ck),
    )
    layers = []
    for name, ly in doc["layers"].items():
        rows = []
        for r, channel in enumerate(ly["channels"]):
            rows.append(
                EvolutionChannel(
                    channel=int(channel),
                    indices=tuple(int(ly["indices"][k][r]) for k in range(len(labels))),
                    values=tuple(float(ly["values"][k][r]) for k in range(len(labels))),
                    changed=tuple(bool(ly["changed"][k][r]) for k in range(len(labels))),
                    changes=int(ly["changes_per_channel"][r]),
                )
            )
        choice = str(meta.get("channel_choice", {}).get(name, "–"))
        layers.append(EvolutionLayerTable(name, choice, tuple(rows)))
    every = int(meta.get("every", 1))
    size = meta.get("dataset_size")
    facts = [
        ("data", str(meta.get("data", "–"))),
        (
            "images scanned",
            f"{size} ({_ordinal(every)} of the dataset: a subsample to keep the page fast)"
            if every > 1
            else f"{size} (every image of the dataset)",
        ),
        ("checkpoints", str(len(labels))),
        ("channels per layer", str(meta.get("per_layer", "–"))),
        ("channel-choice seed", str(meta.get("seed", "–"))),
        ("deconvnet rule", str(doc.get("rule", "–"))),
        ("projection method", ", ".join(str(m) for m in meta.get("method", [])) or "–"),
    ]
    notes = []
    if demo and len(labels) > 1:
        notes.append(
            f"The demo's {', '.join(labels[:-1])} are shipped packed in float16 "
            "(demo_cnn_checkpoints.safetensors) and run in float32; its "
            f"{labels[-1]} is the shipped float32 weights file itself, so that column is "
            "what convlens project shows with the final weights."
        )
    if every > 1:
        notes.append(
            f"Indices (#) count the {size} images scanned ({_ordinal(every)} of the dataset), "
            "not the dataset's own numbering."
        )
    patches = folder / "evolution_patches.png"
    return EvolutionSection(
        figure=(folder / "evolution.png").read_bytes(),
        patches=patches.read_bytes() if patches.is_file() else None,
        checkpoints=checkpoints,
        layers=tuple(layers),
        facts=tuple(facts),
        notes=tuple(notes),
        files=(_file(folder, "evolution.json", "every number on this page, as JSON"),),
    )


_FILL_WORDS = {
    "black": "a black pixel through the model's preprocessing",
    "zero": "0, the mean of a normalised input",
}
_CLASS_WORDS = {
    "dataset": "the dataset's label",
    "predicted": "the class the model gives the unmodified image",
}


def _values(values: Sequence[Any]) -> str:
    return ", ".join(f"{float(v):.4g}" for v in values)


def invariance_section(
    folder: str | os.PathLike[str], dataset: Any = None, *, notes: Sequence[str] = ()
) -> InvarianceSection:
    """The invariance page from a run folder of ``convlens invariance``
    (:func:`~convlens.pipeline.analyze.run_invariance`): ``invariance.json``, its two plots
    and ``invariance.csv``. ``dataset`` names the images (the run's dataset indices)."""
    folder = Path(folder)
    doc = _read_json(folder, "invariance.json")
    meta = doc.get("meta", {})
    names = doc.get("class_names")
    source = _CLASS_WORDS.get(str(meta.get("true_class")), str(meta.get("true_class", "–")))
    transforms = doc["transforms"]
    unmodified: list[float | None] = [None] * len(doc["images"])
    for kind, t in transforms.items():
        if IDENTITY[kind] in [float(a) for a in t["amounts"]]:
            a = [float(v) for v in t["amounts"]].index(IDENTITY[kind])
            unmodified = [float(p) for p in t["probability"][a]]
            break
    rows = []
    for n, (index, label) in enumerate(zip(doc["images"], doc["labels"])):
        rows.append(
            (
                f"#{index}",
                item_name(dataset, int(index)) if dataset is not None else "–",
                label_name(int(label), names) or "–",
                source,
                unmodified[n],
            )
        )
    images = Table(("image", "name", "true class", "true class from", "P(true class), unmodified"),
                   tuple(rows))  # fmt: skip
    amounts = Table(
        ("transformation", "unit", "amounts", "count"),
        tuple(
            (kind, t["unit"], _values(t["amounts"]), len(t["amounts"]))
            for kind, t in transforms.items()
        ),
    )
    requested = meta.get("fill_requested", "–")
    words = _FILL_WORDS.get(str(requested), "a number given in the model's input units")
    fill = f"{_values(doc['fill'])} (requested: {requested}, {words})"
    facts: tuple[tuple[str, str], ...] = (
        ("data", str(meta.get("data", "–"))),
        ("layers", ", ".join(doc["layers"])),
        ("true class", source),
        ("randomness", str(meta.get("randomness", "–"))),
    )
    skipped = meta.get("skipped") or []
    if skipped:
        names = [str(f.get("path") or f.get("index")) for f in skipped]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        facts += (("unreadable images, skipped", shown),)
    normalized = folder / "invariance_normalized.png"
    return InvarianceSection(
        figure=(folder / "invariance.png").read_bytes(),
        normalized=normalized.read_bytes() if normalized.is_file() else None,
        policy=str(doc["policy"]),
        fill=fill,
        layers=tuple(doc["layers"]),
        images=images,
        amounts=amounts,
        facts=facts,
        notes=tuple(notes),
        files=(
            _file(folder, "invariance.csv", "one row per transformation, amount and image"),
            _file(folder, "invariance.json", "the settings and every curve, as JSON"),
        ),
    )


def _box_words(box: Sequence[int]) -> str:
    top, left, height, width = (int(v) for v in box)
    return f"rows {top}–{top + height - 1}, columns {left}–{left + width - 1} ({height}×{width} px)"


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    floats = [float(v) for v in values]
    return statistics.fmean(floats), statistics.stdev(floats) if len(floats) > 1 else 0.0


def correspondence_section(
    folder: str | os.PathLike[str], dataset: Any = None
) -> CorrespondenceSection:
    """The correspondence page from a run folder of ``convlens correspondence``
    (:func:`~convlens.pipeline.analyze.run_correspondence`): ``correspondence.json`` (Table
    1's numbers) and ``correspondence.png``. ``dataset`` names the parts' images."""
    folder = Path(folder)
    doc = _read_json(folder, "correspondence.json")
    layers = tuple(str(v) for v in doc["layers"])
    parts = []
    for p in doc["parts"]:
        boxes = [list(b) for b in p["boxes"]]
        if all(b == boxes[0] for b in boxes):
            box_text: tuple[str, ...] = (_box_words(boxes[0]) + ", in every image",)
        else:
            box_text = tuple(f"#{i}: {_box_words(b)}" for i, b in zip(p["images"], boxes))
        raw = [_mean_std(p["control_raw"][ly]) for ly in layers]
        parts.append(
            CorrespondencePart(
                name=str(p["name"]),
                images=tuple(int(i) for i in p["images"]),
                boxes=box_text,
                delta=tuple(float(p["delta"][ly]) for ly in layers),
                control_mean=tuple(float(p["control"][ly]["mean"]) for ly in layers),
                control_std=tuple(float(p["control"][ly]["std"]) for ly in layers),
                per_pair=tuple(float(p["delta_per_pair"][ly]) for ly in layers),
                raw=tuple(float(p["delta_raw"][ly]) for ly in layers),
                raw_control_mean=tuple(m for m, _ in raw),
                raw_control_std=tuple(s for _, s in raw),
                image_names=tuple(item_name(dataset, int(i)) for i in p["images"])
                if dataset is not None
                else (),
            )
        )
    zero = str(doc["zero"])
    meta = doc.get("meta", {})
    facts = (
        ("data", str(meta.get("data", "–"))),
        ("boxes", str(meta.get("boxes", "–"))),
        ("occluder fill", f"{_values(doc['fill'])} in the model's input units"),
        (
            "sign(0)",
            "its own value (0 against ±1 is a difference)"
            if zero == "value"
            else "dropped (a position where either sign is 0 is left out of that pair)",
        ),
        ("random control", f"{doc['repeats']} repeats, seed {doc['seed']}"),
        ("formula", str(doc.get("formula", "–"))),
    )
    return CorrespondenceSection(
        figure=(folder / "correspondence.png").read_bytes(),
        layers=layers,
        parts=tuple(parts),
        zero=zero,
        seed=int(doc["seed"]),
        repeats=int(doc["repeats"]),
        boxes_source=str(meta.get("boxes", "–")),
        facts=facts,
        files=(
            _file(folder, "correspondence.json", "Table 1's numbers and every control, as JSON"),
            _file(folder, "correspondence.txt", "Table 1 as text"),
        ),
    )


# ------------------------------------------------------------------------------------- run


def _quietly(known: Sequence[str], work: Callable[[], Any]) -> Any:
    """Run ``work``; warnings the report already shows (loading the model again) are not
    repeated, others are shown as usual."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = work()
    for w in caught:
        if str(w.message) not in known:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return result


def _run_one(page: str, plan: AnalysisPlan, out: Path, progress: bool) -> tuple[Any, str]:
    """Run one analysis into ``out`` through the pipeline; its section and timing label."""
    opts = plan.options
    common: dict[str, Any] = {
        "weights": plan.weights,
        "allow_random": plan.allow_random,
        "model_seed": plan.model_seed,
        "device": plan.device,
        "progress": progress,
    }
    if page == "evolution":
        run = run_evolution(
            plan.model, plan.data, out, checkpoints=opts.checkpoints,
            layers=plan.evolution_layers, per_layer=opts.evolution_per_layer,
            seed=opts.evolution_seed, every=opts.evolution_every, batch_size=plan.batch_size,
            **common,
        )  # fmt: skip
        demo = list(opts.checkpoints) == [DEMO_CHECKPOINTS]
        return (
            evolution_section(run.out, demo=demo),
            f"evolution ({len(run.result.labels)} checkpoints)",
        )
    if page == "invariance":
        run = run_invariance(
            plan.model, plan.data, out, layers=plan.invariance_layers,
            images=opts.invariance_images, count=opts.invariance_count,
            amounts=opts.invariance_amounts, **common,
        )  # fmt: skip
        notes: tuple[str, ...] = ()
        if plan.invariance_layers is not None and opts.invariance_layers is None:
            notes = (
                "Layers chosen by default: the first convolution (or its ReLU) and the layer "
                "that feeds the final linear one; --invariance-layers chooses others.",
            )
        return (
            invariance_section(run.out, plan.dataset, notes=notes),
            f"invariance ({len(run.result.labels)} images)",
        )
    run = run_correspondence(
        plan.model, plan.data, out, boxes=opts.parts, layers=plan.correspondence_layers,
        per_part=opts.correspondence_per_part, repeats=opts.correspondence_repeats,
        seed=opts.correspondence_seed, **common,
    )  # fmt: skip
    return (
        correspondence_section(run.out, plan.dataset),
        f"correspondence ({len(run.result.parts)} parts)",
    )


def add_analyses(
    data: ReportData,
    plan: AnalysisPlan,
    *,
    progress: bool = False,
    work_dir: str | os.PathLike[str] | None = None,
) -> ReportData:
    """``data`` with the pages of ``plan`` (run now, each into a temporary run folder under
    ``work_dir``, removed afterwards), their timings, and the pages not built named on the
    summary. An analysis that runs on defaults and cannot (a model that is no classifier,
    say) is named there with the error; one asked for by an explicit option raises."""
    sections: dict[str, Any] = {}
    timings: list[tuple[str, float]] = []
    skipped = list(plan.not_built)
    with tempfile.TemporaryDirectory(prefix="convlens-report-analyses-", dir=work_dir) as tmp:
        for page in plan.run:
            start = time.perf_counter()
            try:
                work = functools.partial(_run_one, page, plan, Path(tmp) / page, progress)
                section, step = _quietly(plan.known_notes, work)
            except ConvLensError as exc:
                if _explicit(page, plan.options):
                    raise
                skipped.append((page, f"could not run on its defaults: {exc}"))
                continue
            sections[page] = section
            timings.append((step, time.perf_counter() - start))
    summary = dataclasses.replace(
        data.summary,
        timings=(*data.summary.timings, *timings),
        not_built=(*data.summary.not_built, *skipped),
    )
    return dataclasses.replace(
        data,
        summary=summary,
        evolution=sections.get("evolution"),
        invariance=sections.get("invariance"),
        correspondence=sections.get("correspondence"),
    )


def _explicit(page: str, opts: AnalysisOptions) -> bool:
    """Whether the user asked for this analysis with an option of its own."""
    if page == "evolution":
        return True  # it runs only with --checkpoints
    if page == "invariance":
        return any(
            v is not None
            for v in (opts.invariance_layers, opts.invariance_images, opts.invariance_amounts)
        )
    return opts.parts is not None or opts.correspondence_layers is not None
