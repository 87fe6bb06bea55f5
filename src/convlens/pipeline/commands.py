"""The library side of ``convlens scan`` and ``convlens project``: open, compute, write.

The CLI parses the options, calls one of these and prints what it returns. Every file is
written atomically (:mod:`convlens.io`); ``project`` writes its folder only when everything
succeeded.

>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "run"
>>> run = run_scan("demo", "demo", ["features.6"], out, top=2, every=50, channels=[0],
...                progress=False)
>>> run.result.counts["scanned"], sorted(run.figures["layers"]["features.6"])
(40, ['grid', 'items', 'method'])
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from convlens.deconvnet.display import to_image
from convlens.deconvnet.project import project
from convlens.deconvnet.target import Target
from convlens.io import atomic_write_text, staged_directory
from convlens.models import RandomWeightsWarning, load_image
from convlens.pipeline.inputs import load_model_noting, open_inputs
from convlens.pipeline.top import top_projections
from convlens.scan.distributed import detect, rank_device
from convlens.scan.grid import write_figures
from convlens.scan.run import RESULT_JSON, ScanResult

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
    top: int = 9,
    resume: bool = False,
    device: str = "cpu",
    batch_size: int = 32,
    workers: int = 0,
    checkpoint_every: int | None = None,
    rule: str = "deconvnet",
    method: str = "auto",
    channels: Sequence[int] | None = None,
    project: bool = True,
    every: int = 1,
    progress: bool | None = None,
) -> ScanRun:
    """``convlens scan``: load ``model``, open ``data`` (every ``every``-th item), scan
    ``layers`` into the run folder ``out`` (``scan.json``, ``scan.safetensors``,
    checkpoints; ``resume`` continues there) and, with ``project``, draw every projected
    channel's Figure-2 grid and per-item pictures (:func:`convlens.scan.grid.write_figures`)
    indexed by ``figures.json``. Under torchrun the ranks share the scan; rank 0 writes.
    """
    info = detect()
    inputs = open_inputs(
        model,
        data,
        weights=weights,
        allow_random=allow_random,
        device=rank_device(device, info),
        every=every,
    )
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
        device=rank_device(device, info),
        out=out,
        resume=resume,
        checkpoint_every=checkpoint_every,
        progress=progress,
        meta={"preprocessing": inputs.preprocessing, "model_spec": os.fspath(model)},
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
    ``projections.json``) and the ``warnings`` raised while loading the model, for the caller
    to show."""

    out: Path
    records: list[dict[str, Any]]
    warnings: tuple[str, ...]


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
) -> ProjectRun:
    """``convlens project``: the deconvnet projection (Zeiler & Fergus, arXiv:1311.2901) of
    channel ``channels[t]`` of ``layer`` at ``position`` (``"max"``, ``"map"`` or indices)
    for every image, one PNG per (image, channel), each stretched on its own (zero at
    mid-grey) and enlarged ``scale`` times, plus ``projections.json`` (model, weights' hash,
    layer, channel, position, value, rule, files). The images run on the model's device.
    Nothing is written unless everything succeeded; an existing ``out`` keeps its other
    files.
    """
    where: Any = position if isinstance(position, str) else tuple(int(v) for v in position)
    targets = [Target(layer, c, where) for c in channels]
    loaded, caught = load_model_noting(
        model, weights=weights, allow_random=allow_random, reemit=False
    )
    random_weights = any(issubclass(w.category, RandomWeightsWarning) for w in caught)
    batch = torch.stack([load_image(p, loaded.preprocess) for p in images])
    param = next(iter(loaded.model.parameters()), None)
    if param is not None:
        batch = batch.to(param.device)
    result = project(loaded.model, batch, targets, rule=rule, engine=engine)
    records = []
    with staged_directory(out, prefix=".convlens-project-") as staged:
        for n, image in enumerate(images):
            for t, target in enumerate(targets):
                name = (
                    f"{n:03d}_{_slug(Path(image).stem)}_{_slug(layer)}_c{target.channel}_{rule}.png"
                )
                to_image(result.projections[n, t].cpu(), scale=scale).save(staged / name)
                records.append(
                    {
                        "image": os.fspath(image),
                        "file": name,
                        "layer": target.layer,
                        "channel": target.channel,
                        "position": result.positions[n, t].tolist()
                        if target.position != "map"
                        else "map",
                        "value": float(result.values[n, t]),
                    }
                )
        meta = {
            "model": loaded.name,
            "source": loaded.source,
            "weights_sha256": loaded.weights_sha256,
            "random_weights": random_weights,
            "preprocess": _describe(loaded.preprocess),
            "layer": layer,
            "position_requested": _position_text(position),
            "rule": rule,
            "engine": result.engine,
            "display": DISPLAY,
            "projections": records,
        }
        (staged / PROJECTIONS_JSON).write_text(json.dumps(meta, indent=2) + "\n")
    return ProjectRun(Path(out), records, tuple(str(w.message) for w in caught))
