"""The scan: stream a dataset through a model and keep the top-k images of every feature map.

Zeiler & Fergus (arXiv:1311.2901, Fig. 2): for each feature map of a layer, the images of a
dataset whose maximum activation in that map is largest. :func:`scan` streams the dataset in
batches (a DataLoader with workers), reads the chosen layers with forward hooks (removed in
``finally``; the forward stops once every chosen layer has run), reduces each map to its
maximum and argmax, and merges that into a running top-k (:mod:`convlens.scan.topk`).

Faults: every ``checkpoint_every`` images the running state goes to an atomic checkpoint in
``out``; ``resume=True`` continues from it. Batches always hold the same images (batch ``b`` is
dataset indices ``b*B`` to ``(b+1)*B``), so a resumed run forwards every image in the batch it
would have had and the result is bit-identical to an uninterrupted one. Ctrl-C writes a
checkpoint first (so does SIGTERM while scanning). Unreadable images are skipped and listed. Under torchrun the batches are
dealt round-robin to the ranks and merged exactly (:mod:`convlens.scan.distributed`).

>>> import torch, torch.nn as nn
>>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
>>> data = [(torch.randn(1, 6, 6), 0) for _ in range(5)]
>>> res = scan(net, data, ["0"], top=3, batch_size=2, progress=False)
>>> res.layers["0"].values.shape, res.counts["scanned"]
(torch.Size([2, 3]), 5)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load, save
from torch import Tensor
from torch.utils.data import DataLoader

from convlens.errors import ParameterError, ParameterTypeError
from convlens.io import atomic_write_bytes, atomic_write_text
from convlens.layer_paths import find_modules
from convlens.progress import progress_bar, wanted
from convlens.scan import distributed as dist_
from convlens.scan.checkpoint import load_state, save_state
from convlens.scan.data import SafeDataset, collate_safe, dataset_fingerprint
from convlens.scan.topk import TopK, empty_state, feature_maxima, merge

__all__ = [
    "RESULT_JSON",
    "RESULT_TENSORS",
    "ScanResult",
    "checkpoint_path",
    "scan",
    "unwrap_model",
]

RESULT_JSON = "scan.json"
RESULT_TENSORS = "scan.safetensors"
FORMAT = "convlens-scan/1"


@dataclass
class ScanResult:
    """The top-k of every scanned layer, what was skipped, and how it was made.

    ``layers[path]`` is a :class:`~convlens.scan.topk.TopK` with ``values (C, k)``,
    ``indices (C, k)`` (dataset index, -1 where a channel saw fewer than k images) and
    ``positions (C, k, ndim)``. ``skipped`` lists ``{index, path, error}``; ``counts`` has
    ``total``, ``scanned`` and ``skipped``; ``meta`` has the model, the weights' hash, the
    layers, the dataset's fingerprint, the preprocessing and the timings.
    """

    layers: dict[str, TopK]
    skipped: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def top(self) -> int:
        return next(iter(self.layers.values())).k if self.layers else 0

    def tensors(self) -> dict[str, Tensor]:
        """The flat tensor dictionary stored in ``scan.safetensors``."""
        out: dict[str, Tensor] = {}
        for name, t in self.layers.items():
            out[f"{name}/values"] = t.values.cpu().contiguous()
            out[f"{name}/indices"] = t.indices.cpu().contiguous()
            out[f"{name}/positions"] = t.positions.cpu().contiguous()
        return out

    def save(self, out: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``scan.safetensors`` (tensors only: equal results give equal bytes) and
        ``scan.json`` (everything, readable), both atomically."""
        out = Path(out)
        tensors_path, json_path = out / RESULT_TENSORS, out / RESULT_JSON
        atomic_write_bytes(tensors_path, save(self.tensors(), metadata={"format": FORMAT}))
        doc = {
            "format": FORMAT,
            "meta": self.meta,
            "counts": self.counts,
            "skipped": self.skipped,
            "layers": {
                name: {
                    "channels": t.channels,
                    "top": t.k,
                    "values": t.values.tolist(),
                    "indices": t.indices.tolist(),
                    "positions": t.positions.tolist(),
                }
                for name, t in self.layers.items()
            },
        }
        atomic_write_text(json_path, json.dumps(doc, indent=1, allow_nan=True) + "\n")
        return tensors_path, json_path

    @classmethod
    def load(cls, out: str | os.PathLike[str]) -> ScanResult:
        """Read a result written by :meth:`save`."""
        out = Path(out)
        json_path, tensors_path = out / RESULT_JSON, out / RESULT_TENSORS
        if not json_path.is_file() or not tensors_path.is_file():
            raise ParameterError(
                "run folder", f"a folder with {RESULT_JSON} and {RESULT_TENSORS}", str(out)
            )
        doc = json.loads(json_path.read_text())
        tensors = load(tensors_path.read_bytes())
        layers = {
            name: TopK(
                tensors[f"{name}/values"], tensors[f"{name}/indices"], tensors[f"{name}/positions"]
            )
            for name in doc["layers"]
        }
        return cls(layers, doc.get("skipped", []), doc.get("counts", {}), doc.get("meta", {}))


class _Stop(Exception):
    """Raised by the last hook of a forward pass: later layers are not needed."""


def unwrap_model(model: Any) -> tuple[nn.Module, dict[str, Any]]:
    """An nn.Module and what is known about it (a ``LoadedModel`` carries name and hash).

    >>> unwrap_model(nn.ReLU())
    (ReLU(), {'name': 'ReLU'})
    """
    if isinstance(model, nn.Module):
        return model, {"name": type(model).__name__}
    inner = getattr(model, "model", None)
    if isinstance(inner, nn.Module):
        info = {
            "name": getattr(model, "name", type(inner).__name__),
            "source": getattr(model, "source", None),
            "weights_sha256": getattr(model, "weights_sha256", None),
            "input_size": list(getattr(model, "input_size", None) or []) or None,
        }
        return inner, info
    raise ParameterTypeError("model", "a torch.nn.Module or a LoadedModel", model)


def checkpoint_path(out: str | os.PathLike[str], rank: int = 0, world_size: int = 1) -> Path:
    """Where rank ``rank`` of ``world_size`` keeps its checkpoint inside the run folder."""
    return Path(out) / f"checkpoint-{rank}-of-{world_size}.safetensors"


def scan(
    model: Any,
    dataset: Any,
    layers: Sequence[str] | str,
    *,
    top: int = 9,
    batch_size: int = 32,
    workers: int = 0,
    device: str | torch.device | None = None,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    checkpoint_every: int | None = None,
    progress: bool | None = None,
    meta: dict[str, Any] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> ScanResult:
    """Scan ``dataset`` through ``model`` and keep, for every channel of every layer in
    ``layers``, the ``top`` images with the largest feature-map maximum (Zeiler & Fergus,
    arXiv:1311.2901, Fig. 2).

    ``model``: an ``nn.Module`` (used as it is, in its current mode and device) or a
    ``LoadedModel``. ``dataset``: any map-style dataset whose items are a tensor or a tuple
    starting with one (e.g. :class:`~convlens.scan.data.ImageFolderDataset`). With ``out`` the
    result is written there (``scan.json``, ``scan.safetensors``) and checkpoints every
    ``checkpoint_every`` images (default: about every 5% of the data); ``resume`` continues from
    the checkpoint. Under torchrun (``WORLD_SIZE`` > 1) each rank scans its batches and the
    ranks merge; every rank returns the same result and rank 0 writes it. ``on_batch`` is
    called with the number of each finished batch (a hook for callers and tests).
    """
    net, model_info = unwrap_model(model)
    modules = find_modules(net, layers, "layers")
    names = list(modules)
    for param, value in (("top", top), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ParameterError(param, "a positive int", value)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ParameterError("workers", "a non-negative int", workers)
    try:
        n = len(dataset)
    except TypeError as exc:
        raise ParameterTypeError("dataset", "a map-style dataset with a length", dataset) from exc
    if n < 1:
        raise ParameterError("dataset", "at least one item", n)
    if checkpoint_every is not None and (
        isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int)
    ):
        raise ParameterError("checkpoint_every", "a positive int", checkpoint_every)
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ParameterError("checkpoint_every", "a positive int", checkpoint_every)
    if resume and out is None:
        raise ParameterError("resume", "an output folder (out) to resume from", None)
    if device is None:
        first = next(net.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)

    info = dist_.detect()
    fingerprint = dataset_fingerprint(dataset)
    config = {
        "layers": names,
        "top": top,
        "batch_size": batch_size,
        "dataset": fingerprint,
        "world_size": info.world_size,
        "model": model_info.get("name"),
        "weights_sha256": model_info.get("weights_sha256"),
    }
    num_batches = math.ceil(n / batch_size)
    mine = dist_.shard_batches(num_batches, info.rank, info.world_size)
    every = checkpoint_every or max(batch_size, n // 20)
    ckpt = checkpoint_path(out, info.rank, info.world_size) if out is not None else None

    states: dict[str, TopK | None] = dict.fromkeys(names)
    skipped: list[dict[str, Any]] = []
    done = 0  # how many of ``mine`` are finished
    scanned = 0
    resumed = resume and ckpt is not None and ckpt.is_file()
    if resumed and ckpt is not None:
        tensors, saved = load_state(ckpt)
        if saved.get("config") != json.loads(json.dumps(config)):
            raise ParameterError(
                "resume",
                "the settings of the interrupted scan (same model, layers, top, batch size, "
                "dataset and number of processes)",
                "different settings",
                hint=f"checkpoint {ckpt}",
            )
        done, scanned, skipped = saved["done"], saved["scanned"], saved["skipped"]
        for name in names:
            if f"{name}/values" in tensors:
                states[name] = TopK(
                    tensors[f"{name}/values"].to(device),
                    tensors[f"{name}/indices"].to(device),
                    tensors[f"{name}/positions"].to(device),
                )

    def write_checkpoint() -> None:
        if ckpt is None:
            return
        tensors = {}
        for name, st in states.items():
            if st is not None:
                tensors[f"{name}/values"] = st.values
                tensors[f"{name}/indices"] = st.indices
                tensors[f"{name}/positions"] = st.positions
        save_state(
            ckpt,
            tensors,
            {
                "config": config,
                "done": done,
                "scanned": scanned,
                "skipped": skipped,
                "batches": len(mine),
            },
        )

    captured: dict[str, tuple[Tensor, Tensor]] = {}

    def make_hook(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if name in captured:  # a module called twice: its first call counts
                return
            fmap = output[0] if isinstance(output, (tuple, list)) else output
            captured[name] = feature_maxima(fmap)
            if len(captured) == len(names):
                raise _Stop

        return hook

    scanned_before = scanned
    remaining = mine[done:]
    sampler = [list(range(b * batch_size, min((b + 1) * batch_size, n))) for b in remaining]
    loader = DataLoader(
        SafeDataset(dataset),
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate_safe,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    show = info.is_main and wanted(progress)
    bar = progress_bar("scan", sum(len(s) for s in sampler), enabled=show, rate="img")
    t0 = time.perf_counter()
    since_ckpt = 0
    handles = [m.register_forward_hook(make_hook(name)) for name, m in modules.items()]
    previous_term = _terminate_as_interrupt()
    try:
        with bar as shown, torch.no_grad():
            for batch_no, batch in zip(remaining, loader):
                skipped.extend(batch.failures)
                if batch.indices.numel():
                    captured.clear()
                    with contextlib.suppress(_Stop):
                        net(batch.inputs.to(device, non_blocking=True))
                    missing = [nm for nm in names if nm not in captured]
                    if missing:
                        raise ParameterError(
                            "layers", "modules that run in the model's forward pass", missing
                        )
                    idx = batch.indices.to(device)
                    for name in names:
                        values, positions = captured[name]
                        st = states[name]
                        if st is None:
                            st = empty_state(
                                values.shape[1], top, positions.shape[2], values.dtype
                            ).to(device)
                        states[name] = merge(st, values, idx, positions)
                    scanned += int(batch.indices.numel())
                done += 1
                since_ckpt += len(batch.indices) + len(batch.failures)
                shown.advance(len(batch.indices) + len(batch.failures))
                if since_ckpt >= every or done == len(mine):
                    write_checkpoint()
                    since_ckpt = 0
                if on_batch is not None:
                    on_batch(batch_no)
    except KeyboardInterrupt:
        write_checkpoint()
        raise
    finally:
        for h in handles:
            h.remove()
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
    elapsed = time.perf_counter() - t0
    local_scanned = scanned - scanned_before  # this process, this session

    with dist_.process_group(info, device):
        result_layers, skipped, scanned = _finish(states, names, skipped, scanned, info, top)
    skipped.sort(key=lambda f: f["index"])
    timings = {
        "scan_s": round(elapsed, 4),
        "images_per_s": round(local_scanned / elapsed, 3) if elapsed > 0 else None,
        "resumed": resumed,
        "world_size": info.world_size,
    }
    full_meta = {
        "model": model_info,
        "layers": names,
        "top": top,
        "batch_size": batch_size,
        "dataset": fingerprint,
        "device": str(device),
        "torch": torch.__version__,
        "tie_break": "value descending, then dataset index ascending; position: first "
        "maximum in C order",
        "timings": timings,
        **(meta or {}),
    }
    counts = {"total": n, "scanned": scanned, "skipped": len(skipped)}
    result = ScanResult(result_layers, skipped, counts, full_meta)
    if out is not None and info.is_main:
        result.save(out)
    return result


def _terminate_as_interrupt() -> Any:
    """Make SIGTERM (what torchrun and job schedulers send) raise KeyboardInterrupt, so that it
    too writes a checkpoint; returns the previous handler (None off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def _finish(
    states: dict[str, TopK | None],
    names: list[str],
    skipped: list[dict[str, Any]],
    scanned: int,
    info: dist_.DistInfo,
    top: int,
) -> tuple[dict[str, TopK], list[dict[str, Any]], int]:
    """Merge the ranks (when distributed); fill layers that saw no image with empty rows."""
    shapes: dict[str, list[Any]] = {
        name: [st.channels, int(st.positions.shape[2]), str(st.values.dtype)]
        for name, st in states.items()
        if st is not None
    }
    if info.active:
        gathered = dist_.all_gather_json({"shapes": shapes, "skipped": skipped, "scanned": scanned})
        skipped = [f for g in gathered for f in g["skipped"]]
        scanned = sum(g["scanned"] for g in gathered)
        for g in gathered:
            for name, shape in g["shapes"].items():
                shapes.setdefault(name, shape)
    out: dict[str, TopK] = {}
    for name in names:
        st = states[name]
        if st is None:
            if name not in shapes:
                raise ParameterError("dataset", "at least one readable image", "none readable")
            c, nd, dt = shapes[name]
            st = empty_state(int(c), top, int(nd), getattr(torch, str(dt).split(".")[-1]))
        st = st.to("cpu")
        out[name] = dist_.gather_topk(st) if info.active else st
    return out, skipped, scanned
