"""Fill a :class:`~convlens.report.data.ReportData` from a model and a dataset.

The steps, each timed and each with a progress bar when asked: the scan for the top-k images of
every channel and their deconvnet projections and receptive-field patches (the pipeline,
:func:`convlens.pipeline.top_projections`), the first layer's filters and every layer's filter
statistics, occlusion sensitivity for a few images, and the accuracy where the dataset's classes
are the model's. Labels are named with the dataset's own class names (a folder dataset's
sub-folders); the model's names only where the dataset has none, and the front page says which.
Every option is checked before the scan. Zeiler & Fergus, arXiv:1311.2901, Figures 2, 6 and 7.
The sections themselves are built by :mod:`convlens.report.sections`.

>>> import torch, torch.nn as nn
>>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 2))
>>> data = [(torch.randn(1, 6, 6), i % 2) for i in range(4)]
>>> report = assemble_report(net, data, command="c", dataset_name="d", top=2,
...                          occlusion_images=0)
>>> [s.name for s in report.layers], report.summary.images
(['0'], 4)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn

from convlens.arithmetic.receptive import receptive_fields
from convlens.errors import ParameterError, ParameterTypeError
from convlens.loaded import eval_mode, model_facts
from convlens.pipeline.top import top_projections
from convlens.progress import track
from convlens.report.data import ReportData, Summary, Table
from convlens.report.geometry import dataset_geometry
from convlens.report.sections import (
    describe_module,
    filter_section,
    layer_section,
    occlusion_section,
)
from convlens.scan.accuracy import dataset_accuracy
from convlens.scan.data import class_names, value_range

__all__ = ["assemble_report"]


class _Clock:
    def __init__(self) -> None:
        self.timings: list[tuple[str, float]] = []

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings.append((name, time.perf_counter() - start))


def _receptive_sizes(net: nn.Module, layers: Sequence[str]) -> dict[str, str]:
    """Receptive-field sizes by layer (they do not depend on the input size)."""
    try:
        fields = receptive_fields(net, None)
    except Exception:  # receptive fields are a caption: a model they cannot walk gets none
        return {}
    by_path = {f.path: f for f in fields}
    return {
        name: "×".join(str(v) for v in by_path[name].size) + " px"
        for name in layers
        if name in by_path
    }


def _check_options(
    occlusion_images: Any, occlusion_size: Any, occlusion_stride: Any, batch_size: Any
) -> None:
    """The report's own options, before any work."""
    checks = (
        ("occlusion_images", occlusion_images, 0, False),
        ("occlusion_size", occlusion_size, 1, True),
        ("occlusion_stride", occlusion_stride, 1, True),
        ("batch_size", batch_size, 1, False),
    )
    for name, value, low, optional in checks:
        if optional and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            kind = "a positive int" if low else "a non-negative int"
            raise ParameterError(name, kind + (" or None" if optional else ""), value)


def _names(names: Sequence[str], shown: int = 8) -> str:
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f", ... ({len(names)} in all)" if more > 0 else "")


def class_naming(
    dataset: Any, model_names: Sequence[str] | None
) -> tuple[list[str] | None, str, bool]:
    """The names for the dataset's labels, where they come from (in words, for the front
    page), and whether the labels are the model's class indices: the dataset's own names win;
    the model's are used only where the dataset has none.

    >>> class Folder: classes = ["a", "b"]
    >>> class_naming(Folder(), ["cat", "dog"])
    (['a', 'b'], "the dataset's: a, b (the model's differ: cat, dog)", False)
    >>> class_naming([], ["cat", "dog"])
    (['cat', 'dog'], "the model's: cat, dog (the dataset has none)", True)
    """
    data_names = class_names(dataset)
    model = list(model_names) if model_names else None
    if data_names is not None:
        same = model is None or data_names == model
        told = f"the dataset's: {_names(data_names)}"
        if not same and model is not None:
            told += f" (the model's differ: {_names(model)})"
        return data_names, told, same
    if model is not None:
        return model, f"the model's: {_names(model)} (the dataset has none)", True
    return None, "none (labels shown as numbers)", True


def assemble_report(
    model: Any,
    dataset: Any,
    *,
    command: str,
    dataset_name: str,
    layers: Sequence[str] | None = None,
    channels: Sequence[int] | None = None,
    top: int = 9,
    rule: str = "deconvnet",
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = False,
    warnings: Sequence[str] = (),
    facts: Sequence[tuple[str, str]] = (),
    occlusion_images: int = 3,
    occlusion_size: int | None = None,
    occlusion_stride: int | None = None,
    accuracy: bool | None = None,
    scan_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
) -> ReportData:
    """Everything the report shows for ``model`` (an ``nn.Module`` or a ``LoadedModel``) on
    ``dataset`` (a map-style dataset of ``(input, label)``).

    ``layers`` default to every convolution; ``channels`` to all of each layer. Occlusion
    (:func:`~convlens.report.sections.occlusion_section`) runs on ``occlusion_images`` images.
    ``accuracy``: measure the model's accuracy on the dataset; by default only when the
    dataset's class names are the model's (so its labels are the model's class indices).
    ``scan_dir``: where the scan checkpoints (and ``resume`` continues from), as in
    :func:`convlens.scan.run.scan`. The model runs in eval mode; every module's own
    ``training`` flag is restored afterwards.
    """
    net = getattr(model, "model", model)
    if not isinstance(net, nn.Module):
        raise ParameterTypeError("model", "an nn.Module or a LoadedModel", model)
    _check_options(occlusion_images, occlusion_size, occlusion_stride, batch_size)
    info = model_facts(model)
    names, names_from, labels_are_classes = class_naming(dataset, info["class_names"])
    model_names = list(info["class_names"]) if info["class_names"] else names
    clock = _Clock()
    with eval_mode(net):
        run = top_projections(
            model,
            dataset,
            layers,
            top=top,
            channels=channels,
            rule=rule,
            batch_size=batch_size,
            device=device,
            out=scan_dir,
            resume=resume and scan_dir is not None,
            progress=progress,
        )
        clock.timings += run.timings
        assert run.projections is not None  # top_projections projects by default
        result, chosen, counts = run.result, list(run.layers), run.counts
        modules = dict(net.named_modules())
        used = sorted(
            {
                int(i)
                for name in chosen
                for i in result.layers[name].indices.flatten().tolist()
                if i >= 0
            }
        )
        low, high = value_range(dataset, used[:256]) if used else (0.0, 1.0)
        rf = _receptive_sizes(net, chosen)
        sections = [
            layer_section(
                name,
                modules[name],
                counts[name],
                run.projections.layers[name],
                dataset,
                names,
                (low, high),
                rf.get(name),
            )
            for name in track(chosen, "report: layers", enabled=progress)
        ]
        with clock.step("geometry"):
            geometry = dataset_geometry(net, dataset, used)
        with clock.step("filters"):
            filters = filter_section(net)
        occlusion = None
        if occlusion_images > 0:
            plural = "s" if occlusion_images != 1 else ""
            with clock.step(f"occlusion ({occlusion_images} image{plural})"):
                occlusion = occlusion_section(
                    net,
                    dataset,
                    images=occlusion_images,
                    size=occlusion_size,
                    stride=occlusion_stride,
                    class_names=model_names,
                    use_labels=labels_are_classes,
                    label_names=names,
                    value_range=(low, high),
                    batch_size=batch_size,
                    progress=progress,
                    skip=[int(s["index"]) for s in result.skipped if "index" in s],
                    device=device,
                )
        if accuracy is None:
            data_names = class_names(dataset)
            accuracy = data_names is not None and data_names == list(info["class_names"] or [])
        measured = None
        if accuracy:
            with clock.step("accuracy"):
                measured = dataset_accuracy(
                    net, dataset, batch_size=batch_size, device=device, progress=progress
                )

    layer_rows = tuple(
        (name, describe_module(modules[name]), counts[name], rf.get(name, "–"), len(s.blocks))
        for name, s in zip(chosen, sections)
    )
    skipped = tuple(
        (str(s.get("path") or f"item {s.get('index')}"), str(s.get("error")))
        for s in result.skipped
    )
    weights = (("weights sha256", str(info["weights_sha256"])),) if info["weights_sha256"] else ()
    summary = Summary(
        model=str(info["name"]),
        dataset=dataset_name,
        command=command,
        images=int(result.counts.get("scanned", len(dataset))),
        accuracy=measured,
        facts=(
            *facts,
            *weights,
            ("class names", names_from),
            ("deconvnet rule", rule),
            ("top", str(result.top) + (f" (of {top} asked)" if result.top != top else "")),
        ),
        layers=Table(
            ("layer", "module", "channels", "receptive field", "channels shown"), layer_rows
        ),
        timings=tuple(clock.timings),
        skipped=skipped,
        warnings=tuple(warnings),
    )
    return ReportData(
        summary=summary,
        layers=tuple(sections),
        filters=filters,
        occlusion=occlusion,
        geometry=geometry,
        explorer=geometry.explorer,
    )
