"""The library side of ``convlens scan`` and ``convlens project``: open, compute, write.

The CLI parses the options, calls one of these and prints what it returns. Every file is
written atomically (:mod:`convlens.io`) and listed in its folder's manifest; ``scan`` holds
its run folder for the whole run (a lock; a used folder needs ``resume`` or ``overwrite``),
``project`` writes its folder only when everything succeeded and never replaces a file it did
not write. A refusal leaves nothing behind.

>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "run"
>>> run = run_scan("demo", "demo", ["features.6"], out, top=2, every=50, channels=[0],
...                progress=False)
>>> run.result.counts["scanned"], sorted(run.figures["layers"]["features.6"])
(40, ['grid', 'items', 'method'])
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from convlens.checks import forward_error
from convlens.deconvnet.display import to_image
from convlens.deconvnet.explicit import check_rule
from convlens.deconvnet.project import ENGINES, project
from convlens.deconvnet.target import Target, check_seed
from convlens.errors import ConvLensError, ParameterError, verbatim
from convlens.io import Reuse, atomic_write_text, check_folder, run_folder, staged_directory
from convlens.layer_paths import find_module
from convlens.models import DEPTH_RULE, MAX_PIXELS, RandomWeightsWarning
from convlens.models.images import load_image_noting
from convlens.pipeline.inputs import load_model_noting, open_inputs
from convlens.pipeline.top import check_channels, top_projections
from convlens.scan.distributed import detect, rank_device
from convlens.scan.grid import write_figures
from convlens.scan.run import RESULT_JSON, ScanResult, check_forward

__all__ = ["FIGURES_JSON", "ProjectRun", "ScanRun", "project_images", "run_scan"]

#: The index of the pictures ``convlens scan`` draws, beside ``scan.json``.
FIGURES_JSON = "figures.json"
#: What ``convlens project`` writes beside its PNGs.
PROJECTIONS_JSON = "projections.json"
#: How ``convlens project`` shows a projection.
DISPLAY = "each projection stretched on its own: x / (2 max|x|) + 0.5"


@dataclass(frozen=True)
class ScanRun:
    """What :func:`run_scan` did: the scan ``result``, the run folder ``out``, the
    ``figures`` index (as in ``figures.json``; None without projections, and on the ranks
    other than 0 of a torchrun job, which write nothing) and whether this is rank 0."""

    result: ScanResult
    out: Path
    figures: dict[str, Any] | None
    is_main: bool

    @property
    def scan_json(self) -> Path:
        return self.out / RESULT_JSON


def run_scan(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    layers: Sequence[str] | str,
    out: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    allow_random: bool = False,
    seed: int = 0,
    top: int = 9,
    resume: bool = False,
    overwrite: bool = False,
    device: str = "cpu",
    batch_size: int = 32,
    workers: int = 0,
    checkpoint_every: int | None = None,
    rule: str = "deconvnet",
    method: str = "auto",
    channels: Sequence[int] | None = None,
    project: bool = True,
    every: int = 1,
    max_pixels: int | None = MAX_PIXELS,
    progress: bool | None = None,
    note: Any = None,
) -> ScanRun:
    """``convlens scan``: load ``model`` (random weights from ``seed``), open ``data``
    (every ``every``-th item, images of at most ``max_pixels`` pixels), scan ``layers`` into
    the run folder ``out`` (``scan.json``, ``scan.safetensors``, checkpoints; ``resume``
    continues there, ``overwrite`` replaces an earlier run's files; otherwise a used folder is
    refused) and, with ``project``, draw every projected channel's Figure-2 grid and per-item
    pictures (:func:`convlens.scan.grid.write_figures`) indexed by ``figures.json``. The
    folder is held (locked) for the whole run. Under torchrun the ranks share the scan; rank
    0 writes. ``note`` receives messages for the user (see :func:`convlens.scan.run.scan`).
    """
    if resume and overwrite:
        raise ParameterError("overwrite", "not together with resume", True)
    check_folder(out)  # a file or a folder of the user's: refused before the model loads
    info = detect()
    inputs = open_inputs(
        model,
        data,
        weights=weights,
        allow_random=allow_random,
        seed=seed,
        device=rank_device(device, info),
        every=every,
        max_pixels=max_pixels,
    )
    meta = {"preprocessing": inputs.preprocessing, "model_spec": os.fspath(model)}
    if inputs.image_depth is not None:
        meta["image_depth"] = inputs.image_depth
    with contextlib.ExitStack() as stack:
        if info.is_main:  # the other ranks join inside the scan, once rank 0 holds it
            reuse: Reuse = "continue" if resume else "clear" if overwrite else "refuse"
            hint = "--resume continues it; --overwrite starts over"
            stack.enter_context(run_folder(out, reuse=reuse, used_hint=hint))
        return _scan_and_draw(
            inputs, layers, out, info, top=top, channels=channels, rule=rule, method=method,
            project=project, batch_size=batch_size, workers=workers,
            device=rank_device(device, info), resume=resume, checkpoint_every=checkpoint_every,
            progress=progress, meta=meta, note=note,
        )  # fmt: skip
    raise AssertionError("unreachable")  # pragma: no cover (mypy: the with block returns)


def _scan_and_draw(
    inputs: Any,
    layers: Sequence[str] | str,
    out: str | os.PathLike[str],
    info: Any,
    *,
    top: int,
    channels: Sequence[int] | None,
    rule: str,
    method: str,
    project: bool,
    batch_size: int,
    workers: int,
    device: str,
    resume: bool,
    checkpoint_every: int | None,
    progress: bool | None,
    meta: dict[str, Any],
    note: Any,
) -> ScanRun:
    run = top_projections(
        inputs.loaded,
        inputs.dataset,
        layers,
        top=top,
        channels=channels,
        rule=rule,
        method=method,
        project=project and info.is_main,
        batch_size=batch_size,
        workers=workers,
        device=device,
        out=out,
        resume=resume,
        checkpoint_every=checkpoint_every,
        progress=progress,
        meta=meta,
        note=note,
    )
    figures = None
    if run.projections is not None:
        index = write_figures(run.projections, out)
        figures = {"rule": run.projections.rule, "layers": index}
        atomic_write_text(Path(out) / FIGURES_JSON, json.dumps(figures, indent=1) + "\n")
    return ScanRun(run.result, Path(out), figures, info.is_main)


@dataclass(frozen=True)
class ProjectRun:
    """What :func:`project_images` wrote: the folder ``out``, one record per PNG (as in
    ``projections.json``), the ``warnings`` raised while loading the model, for the caller
    to show, and ``engine_note``: the engine that ran and why."""

    out: Path
    records: list[dict[str, Any]]
    warnings: tuple[str, ...]
    engine_note: str = ""


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def _describe(preprocess: Any) -> str:
    """A preprocessing in words that is the same from run to run (a plain function by its
    dotted name, not its address).

    >>> _describe(_slug)
    'convlens.pipeline.commands._slug'
    """
    if inspect.isfunction(preprocess):
        return f"{preprocess.__module__}.{preprocess.__qualname__}"
    return repr(preprocess)


def _position_text(position: Any) -> str:
    return position if isinstance(position, str) else ",".join(str(v) for v in position)


def project_images(
    images: Sequence[str | os.PathLike[str]],
    model: str | os.PathLike[str],
    *,
    layer: str,
    channels: Sequence[int],
    out: str | os.PathLike[str],
    position: str | Sequence[int] = "max",
    rule: str = "deconvnet",
    engine: str = "auto",
    scale: int = 1,
    weights: str | os.PathLike[str] | None = None,
    allow_random: bool = False,
    seed: int = 0,
    max_pixels: int | None = MAX_PIXELS,
    signal_seed: str = "value",
) -> ProjectRun:
    """``convlens project``: the deconvnet projection (Zeiler & Fergus, arXiv:1311.2901) of
    channel ``channels[t]`` of ``layer`` at ``position`` (``"max"``, ``"map"`` or indices)
    for every image, one PNG per (image, channel), each stretched on its own (zero at
    mid-grey) and enlarged ``scale`` times, plus ``projections.json`` (model, weights' hash,
    layer, channel, position, value, rule, files). The images run on the model's device;
    images of more than 8 bits per sample are scaled faithfully (recorded per image), larger
    than ``max_pixels`` refused. Random weights are drawn from ``seed``; ``signal_seed`` is
    what the chosen activation starts the reversed pass with (``"value"`` or ``"one"``, see
    :data:`~convlens.deconvnet.target.SEEDS`), recorded with the engine that ran and why.
    Nothing is written
    unless everything succeeded; an existing ``out`` keeps its other files, and a file there
    that convlens did not write is never replaced.
    """
    check_folder(out, allow_foreign=True)  # not a file: refused before any work
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ParameterError("scale", "a positive int", scale)
    check_rule(rule)
    if engine not in ENGINES:
        raise ParameterError("engine", f"one of {', '.join(ENGINES)}", engine)
    check_seed(signal_seed, "signal_seed")
    if not images:
        raise ParameterError("images", "at least one image file", list(images))
    where: Any = position if isinstance(position, str) else tuple(int(v) for v in position)
    targets = [Target(layer, c, where) for c in channels]
    loaded, caught = load_model_noting(
        model, weights=weights, allow_random=allow_random, seed=seed, reemit=False
    )
    module = find_module(loaded.model, layer)
    if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
        check_channels(list(channels), {layer: int(module.out_channels)})
    random_weights = any(issubclass(w.category, RandomWeightsWarning) for w in caught)
    read = [load_image_noting(p, loaded.preprocess, max_pixels=max_pixels) for p in images]
    shapes = sorted({tuple(x.shape) for x, _ in read})
    if len(shapes) > 1:
        raise ParameterError("images", "images that the preprocessing turns into one shape", shapes)
    batch = torch.stack([x for x, _ in read])
    pixels = math.prod(int(v) * scale for v in batch.shape[2:])
    if max_pixels is not None and pixels > max_pixels:
        raise ParameterError(
            "scale",
            f"an enlargement whose pictures have at most {max_pixels} pixels",
            verbatim(f"{scale}: pictures of {pixels} pixels"),
            hint="lower --scale (or raise --max-image-pixels)",
        )
    param = next(iter(loaded.model.parameters()), None)
    if param is not None:
        batch = batch.to(param.device)
    check_forward(loaded.model, batch[:1], inputs_param="images")
    try:
        result = project(loaded.model, batch, targets, rule=rule, engine=engine, seed=signal_seed)
    except ConvLensError:
        raise
    except RuntimeError as exc:  # torch on the user's model and tensors
        raise forward_error(loaded.model, batch, exc, inputs_param="images") from exc
    records = []
    with staged_directory(out, prefix=".convlens-project-") as staged:
        for n, image in enumerate(images):
            for t, target in enumerate(targets):
                name = (
                    f"{n:03d}_{_slug(Path(image).stem)}_{_slug(layer)}_c{target.channel}_{rule}.png"
                )
                to_image(result.projections[n, t].cpu(), scale=scale).save(staged / name)
                record = {
                    "image": os.fspath(image),
                    "file": name,
                    "layer": target.layer,
                    "channel": target.channel,
                    "position": result.positions[n, t].tolist()
                    if target.position != "map"
                    else "map",
                    "value": float(result.values[n, t]),
                }
                if read[n][1] is not None:
                    record["image_depth"] = read[n][1]
                records.append(record)
        meta = {
            "model": loaded.name,
            "source": loaded.source,
            "weights_sha256": loaded.weights_sha256,
            "random_weights": random_weights,
            "seed": loaded.seed,
            "preprocess": _describe(loaded.preprocess),
            "image_depth": DEPTH_RULE,
            "layer": layer,
            "position_requested": _position_text(position),
            "rule": rule,
            "signal_seed": result.seed,
            "engine": result.engine,
            "engine_note": result.engine_note,
            "display": DISPLAY,
            "projections": records,
        }
        (staged / PROJECTIONS_JSON).write_text(json.dumps(meta, indent=2) + "\n")
    return ProjectRun(Path(out), records, tuple(str(w.message) for w in caught), result.engine_note)
