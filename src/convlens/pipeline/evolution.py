"""Feature evolution during training, run over checkpoints (Zeiler & Fergus,
arXiv:1311.2901, §4.1, Fig. 4): one scan per checkpoint, then the projections.

For every checkpoint: its weights loaded strictly into a copy of the model, one
:func:`convlens.scan_dataset` (``top=1``; with ``out``, a resumable run folder per checkpoint
under ``scans/``), then :func:`convlens.project_top` for the chosen channels. The result and
figure are :mod:`convlens.analysis.evolution`'s.

>>> import torch, torch.nn as nn
>>> from convlens.analysis.evolution import Checkpoint
>>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2))
>>> data = [(torch.randn(1, 8, 8), 0) for _ in range(6)]
>>> ckpts = [Checkpoint.from_state("a", net.state_dict())] * 2
>>> evo = feature_evolution(net, ckpts, data, {"2": [0, 1]})
>>> evo.layers["2"].projections.shape, evo.layers["2"].changed.tolist()
(torch.Size([2, 2, 1, 4, 4]), [[False, False], [False, False]])
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from convlens.analysis.evolution import (
    Checkpoint,
    EvolutionResult,
    layer_spec,
    resolve_channels,
    stack_evolution,
)
from convlens.analysis.outputs import RunFolder
from convlens.errors import ParameterError, ParameterTypeError
from convlens.models.loading import apply_weights
from convlens.scan.crop import project_top
from convlens.scan.run import RESULT_JSON, RESULT_TENSORS, checkpoint_path, scan

__all__ = ["feature_evolution"]


@dataclass
class _Weighted:
    """What the scan reads from a model: the module and the weights' identity (so that a
    resumed scan refuses a run folder made with other weights)."""

    model: nn.Module
    name: str
    weights_sha256: str
    source: str
    input_size: Any = None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "checkpoint"


def feature_evolution(
    model: Any,
    checkpoints: Sequence[Checkpoint],
    dataset: Any,
    layers: Mapping[str, Sequence[int] | None] | Sequence[str] | str,
    *,
    per_layer: int = 6,
    seed: int = 0,
    rule: str = "deconvnet",
    method: str = "auto",
    batch_size: int = 64,
    out: RunFolder | str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool | None = False,
    device: str | torch.device | None = None,
    on_checkpoint: Callable[[int, Checkpoint], None] | None = None,
) -> EvolutionResult:
    """Top-1 image and deconvnet projection per checkpoint for chosen channels (Fig. 4).

    ``model``: the architecture (an ``nn.Module`` or a ``LoadedModel``; it is copied and each
    checkpoint loaded strictly into the copy). ``layers``: layer paths (channels chosen at
    random by :func:`~convlens.analysis.evolution.choose_channels` with ``per_layer`` and
    ``seed``, as the paper's "randomly chosen subset") or ``{layer: channels}`` (``None`` =
    choose). ``out``: a folder (or a claimed :class:`~convlens.analysis.outputs.RunFolder`)
    receiving one scan run folder per checkpoint under ``scans/``, ``evolution.json`` and
    ``evolution.safetensors``; with ``resume=True`` a finished scan is reused and an
    interrupted one continues. ``progress``: each scan's bar. ``on_checkpoint(k, checkpoint)``
    is called before checkpoint ``k`` is scanned.
    """
    checkpoints = list(checkpoints)
    if not checkpoints:
        raise ParameterError("checkpoints", "at least one checkpoint", checkpoints)
    for ck in checkpoints:
        if not isinstance(ck, Checkpoint):
            raise ParameterTypeError("checkpoints", "Checkpoint objects", ck)
    spec = layer_spec(layers)
    base = model if isinstance(model, nn.Module) else getattr(model, "model", None)
    if not isinstance(base, nn.Module):
        raise ParameterTypeError("model", "an nn.Module or a LoadedModel", model)
    name = getattr(model, "name", type(base).__name__)
    modules = dict(base.named_modules())
    for layer in spec:
        if layer not in modules or not layer:
            raise ParameterError(
                "layers", "module paths of the model", layer, hint=", ".join(list(modules)[1:30])
            )
    with contextlib.ExitStack() as stack:
        run: RunFolder | None
        if out is None or isinstance(out, RunFolder):
            run = out
        else:
            run = stack.enter_context(RunFolder.claim(out, "evolution", resume=resume))
        return _evolve(
            base, name, checkpoints, dataset, spec, run, per_layer=per_layer, seed=seed,
            rule=rule, method=method, batch_size=batch_size, resume=resume, progress=progress,
            device=device, on_checkpoint=on_checkpoint,
        )  # fmt: skip


def _evolve(
    base: nn.Module,
    name: str,
    checkpoints: list[Checkpoint],
    dataset: Any,
    spec: dict[str, list[int] | None],
    run: RunFolder | None,
    *,
    per_layer: int,
    seed: int,
    rule: str,
    method: str,
    batch_size: int,
    resume: bool,
    progress: bool | None,
    device: str | torch.device | None,
    on_checkpoint: Callable[[int, Checkpoint], None] | None,
) -> EvolutionResult:
    net = copy.deepcopy(base)
    names = list(spec)
    chosen: dict[str, list[int]] = {}
    tops: list[dict[str, Any]] = []
    methods: set[str] = set()
    for k, ck in enumerate(checkpoints):
        if on_checkpoint is not None:
            on_checkpoint(k, ck)
        apply_weights(net, ck.state, name, ck.source)
        net.eval()
        folder = None
        if run is not None:
            sub = f"scans/{k:02d}-{_slug(ck.label)}"
            folder = run.nested(sub, (RESULT_JSON, RESULT_TENSORS, checkpoint_path(".").name))
        found = scan(
            _Weighted(net, name, ck.sha256, ck.source),
            dataset,
            names,
            top=1,
            batch_size=batch_size,
            out=folder,
            resume=resume and folder is not None,
            progress=progress,
            device=device,
            meta={"checkpoint": ck.label, "analysis": "evolution"},
        )
        if run is not None:
            run.adopt(sub)
        if not chosen:
            counts = {n: found.layers[n].channels for n in names}
            chosen = resolve_channels(spec, counts, per_layer, seed)
        projected = {}
        for n in names:
            tp = project_top(
                net,
                dataset,
                found,
                rule=rule,
                channels=chosen[n],
                layers=[n],
                method=method,
                device=device,
            )
            projected[n] = tp.layers[n]
            methods.add(tp.layers[n].method)
        tops.append(projected)
    meta = {
        "seed": seed,
        "per_layer": per_layer,
        "channel_choice": {
            n: ("given" if spec[n] is not None else f"random (torch.randperm, seed {seed})")
            for n in names
        },
        "method": sorted(methods),
        "dataset_size": len(dataset),
        "model": name,
    }
    result = stack_evolution(checkpoints, tops, rule, meta)
    if run is not None:
        run.write_bytes("evolution.safetensors", result.tensor_bytes())
        run.write_json("evolution.json", result.summary())
    return result
