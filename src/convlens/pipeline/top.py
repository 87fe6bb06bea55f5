"""The one pipeline behind ``convlens scan``, ``report`` and ``demo``: scan a dataset for the
top-k images of every channel, then project them and cut their receptive fields.

Zeiler & Fergus (arXiv:1311.2901, Fig. 2). :func:`top_projections` checks every option
before the scan starts (layers, channels, also those of layers whose channel count only the
first item's forward pass tells, the rule and the method: a typo costs nothing and writes
nothing, not hours), runs
:func:`convlens.scan.run.scan` (checkpointed and resumable with ``out``), then
:func:`convlens.scan.project_top` a few channels at a time (:data:`CHANNEL_CHUNK`) so a
progress bar can follow, and joins the parts per layer. The commands draw pictures and write
metadata from what it returns.

>>> import torch, torch.nn as nn
>>> net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2))
>>> data = [(torch.randn(1, 10, 10), 0) for _ in range(5)]
>>> run = top_projections(net, data, top=2, progress=False)
>>> run.layers, run.projections.layers["0"].projections.shape
(('0',), torch.Size([3, 2, 1, 3, 3]))
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from convlens.analysis.filters import conv_layers
from convlens.deconvnet.explicit import check_rule
from convlens.errors import ParameterError
from convlens.layer_paths import find_modules
from convlens.loaded import model_facts
from convlens.progress import progress_bar
from convlens.scan import METHODS, LayerProjections, TopProjections, project_top
from convlens.scan.run import ScanResult, scan, unwrap_model

__all__ = [
    "CHANNEL_CHUNK",
    "TopRun",
    "check_channels",
    "join_projections",
    "project_in_chunks",
    "top_projections",
]

#: Channels projected per call of ``project_top`` (the unit of the progress bar).
CHANNEL_CHUNK = 32

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def check_channels(channels: Sequence[int] | None, counts: dict[str, int]) -> None:
    """Every channel in ``channels`` (None: all) exists in every layer (``counts``: channels
    by layer).

    >>> check_channels([0, 3], {"conv": 4})
    >>> try:
    ...     check_channels([4], {"conv": 4})
    ... except ParameterError as exc:
    ...     print(exc)
    channels: expected indices in 0..3 (layer 'conv' has 4 channels), received [4]
    """
    if channels is None:
        return
    if not channels:
        raise ParameterError("channels", "at least one channel index", list(channels))
    for layer, count in counts.items():
        bad = [c for c in channels if not 0 <= c < count]
        if bad:
            raise ParameterError(
                "channels",
                f"indices in 0..{count - 1} (layer {layer!r} has {count} channels)",
                bad,
            )


def join_projections(parts: Sequence[LayerProjections]) -> LayerProjections:
    """Projections of one layer computed for several groups of channels, as one (the rows
    of the parts one after the other)."""
    if not parts:
        raise ParameterError("parts", "at least one LayerProjections", list(parts))
    first = parts[0]
    if len(parts) == 1:
        return first
    keys = ("values", "indices", "positions", "projections", "patches", "boxes", "clips")
    joined = {key: torch.cat([getattr(p, key) for p in parts]) for key in keys}
    return LayerProjections(
        layer=first.layer,
        channels=[c for p in parts for c in p.channels],
        method=first.method,
        **joined,
    )


def project_in_chunks(
    model: Any,
    dataset: Any,
    result: ScanResult,
    layers: Sequence[str],
    channels: Sequence[int] | None = None,
    *,
    rule: str = "deconvnet",
    method: str = "auto",
    device: str | torch.device | None = None,
    progress: bool | None = False,
) -> TopProjections:
    """:func:`convlens.scan.project_top` for ``layers`` of a scan ``result``,
    :data:`CHANNEL_CHUNK` channels at a time (so that a progress bar can follow), joined per
    layer along the channel axis; ``channels`` None projects all of each layer."""
    jobs = []
    for name in layers:
        count = int(result.layers[name].values.shape[0])
        wanted = list(channels) if channels is not None else list(range(count))
        jobs += [
            (name, wanted[i : i + CHANNEL_CHUNK]) for i in range(0, len(wanted), CHANNEL_CHUNK)
        ]
    parts: dict[str, list[LayerProjections]] = {name: [] for name in layers}
    used_rule = rule
    with progress_bar("projections", sum(len(c) for _, c in jobs), enabled=progress) as bar:
        for name, chunk in jobs:
            done = project_top(
                model,
                dataset,
                result,
                rule=rule,
                channels=chunk,
                layers=[name],
                method=method,
                device=device,
            )
            used_rule = done.rule
            parts[name].append(done.layers[name])
            bar.advance(len(chunk))
    return TopProjections({name: join_projections(parts[name]) for name in layers}, used_rule)


@dataclass
class TopRun:
    """What :func:`top_projections` found: the scan ``result``, the ``projections`` (None when
    not asked for), the ``layers`` scanned and the ``timings`` of both steps (seconds)."""

    result: ScanResult
    projections: TopProjections | None
    layers: tuple[str, ...]
    timings: list[tuple[str, float]] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Channels by layer."""
        return {name: int(self.result.layers[name].values.shape[0]) for name in self.layers}


def top_projections(
    model: Any,
    dataset: Any,
    layers: Sequence[str] | str | None = None,
    *,
    top: int = 9,
    channels: Sequence[int] | None = None,
    rule: str = "deconvnet",
    method: str = "auto",
    project: bool = True,
    batch_size: int = 32,
    workers: int = 0,
    device: str | torch.device | None = None,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    checkpoint_every: int | None = None,
    progress: bool | None = None,
    meta: dict[str, Any] | None = None,
    note: Any = None,
) -> TopRun:
    """Scan ``dataset`` for the ``top`` images of every channel of ``layers`` (default: every
    convolution) and, with ``project``, their deconvnet projections and patches on the
    receptive field (``channels``: which to project, default all; ``rule``; ``method`` as in
    :func:`convlens.scan.project_top`).

    ``model``: an ``nn.Module`` (used in its current mode) or a ``LoadedModel``. ``out``,
    ``resume``, ``overwrite``, ``checkpoint_every``, ``workers``, ``meta`` and ``note`` go to
    the scan (:func:`convlens.scan.run.scan`). Every option is checked before the scan: the
    channels of layers that are no convolution once the scan's probe has run the first item.
    """
    net, _ = unwrap_model(model)
    chosen = [s for s in layers.split(",") if s] if isinstance(layers, str) else layers
    chosen = list(chosen) if chosen else conv_layers(net)
    if not chosen:
        raise ParameterError(
            "layers", "a model with at least one convolution", model_facts(model)["name"]
        )
    modules = find_modules(net, chosen, "layers")
    if project:
        check_rule(rule)
        if method not in METHODS:
            raise ParameterError("method", f"one of {', '.join(METHODS)}", method)
    if channels is not None:
        channels = list(channels)
        bad = [c for c in channels if isinstance(c, bool) or not isinstance(c, int)]
        if bad:
            raise ParameterError("channels", "channel indices (ints)", bad)
    # where the channel counts are known from the modules, fail before anything runs
    check_channels(
        channels, {n: int(m.out_channels) for n, m in modules.items() if isinstance(m, _CONV)}
    )
    start = time.perf_counter()
    result = scan(
        model,
        dataset,
        chosen,
        top=top,
        batch_size=batch_size,
        workers=workers,
        device=device,
        out=out,
        resume=resume,
        overwrite=overwrite,
        checkpoint_every=checkpoint_every,
        progress=progress,
        meta=meta,
        validate=lambda counts: check_channels(channels, counts),
        note=note,
    )
    run = TopRun(result, None, tuple(chosen))
    run.timings.append((f"scan ({len(dataset)} images)", time.perf_counter() - start))
    check_channels(channels, run.counts)
    if project:
        start = time.perf_counter()
        run.projections = project_in_chunks(
            model,
            dataset,
            result,
            chosen,
            channels,
            rule=rule,
            method=method,
            device=device,
            progress=progress,
        )
        run.timings.append(("projections and patches", time.perf_counter() - start))
    return run
