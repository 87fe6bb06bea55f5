"""The scan: stream a dataset through a model and keep the top-k images of every feature map.

Zeiler & Fergus (arXiv:1311.2901, Fig. 2): for each feature map of a layer, the images of a
dataset whose maximum activation in that map is largest. :func:`scan` streams the dataset in
batches (a DataLoader with workers), reads the chosen layers with forward hooks (removed in
``finally``; the forward stops once every chosen layer has run), reduces each map to its
maximum and argmax, and merges that into a running top-k (:mod:`convlens.scan.topk`).

Before the scan every option is checked and one item is run through the model
(:func:`probe`), so a refusal costs nothing and writes nothing. The run folder is held for the
scan (a lock and a manifest, :func:`convlens.io.run_folder`): one run at a time, never a
folder with a user's files, never an earlier run's folder unless asked to continue or start
over.

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
import re
import signal
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn as nn
from safetensors.torch import load, save
from torch import Tensor
from torch.utils.data import DataLoader

from convlens.checks import check_input_dtype, check_materialised, forward_error
from convlens.errors import ConvLensError, ParameterError, ParameterTypeError, verbatim
from convlens.io import (
    Reuse,
    atomic_write_bytes,
    atomic_write_text,
    check_folder,
    remove_written,
    run_folder,
)
from convlens.layer_paths import find_modules, reused_layer
from convlens.loaded import eval_mode
from convlens.models.loading import check_device, state_sha256
from convlens.progress import progress_bar, wanted
from convlens.scan import distributed as dist_
from convlens.scan.checkpoint import load_state, save_state
from convlens.scan.data import SafeDataset, collate_safe, dataset_fingerprint
from convlens.scan.topk import TopK, empty_state, feature_maxima, merge

__all__ = [
    "MAX_STATE_BYTES",
    "PROBE_TRIES",
    "RESULT_JSON",
    "RESULT_TENSORS",
    "ScanNote",
    "ScanResult",
    "check_forward",
    "check_hookable",
    "check_model_device",
    "checkpoint_path",
    "probe",
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

    def _repr_html_(self) -> str:
        """In a notebook: per layer a table of the top values and their dataset indices."""
        from convlens.notebook import scan_html

        return scan_html(self)

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
        try:
            doc = json.loads(json_path.read_text("utf-8"))
            tensors = load(tensors_path.read_bytes())
        except (ValueError, OSError, EOFError) as exc:  # truncated or corrupt
            raise ParameterError(
                "run folder",
                f"a readable {RESULT_JSON} and {RESULT_TENSORS}",
                str(out),
                hint=f"a file is corrupt or truncated ({type(exc).__name__}: {exc})",
            ) from exc
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
            "seed": getattr(model, "seed", None),
        }
        return inner, info
    raise ParameterTypeError("model", "a torch.nn.Module or a LoadedModel", model)


def checkpoint_path(out: str | os.PathLike[str], rank: int = 0, world_size: int = 1) -> Path:
    """Where rank ``rank`` of ``world_size`` keeps its checkpoint inside the run folder."""
    return Path(out) / f"checkpoint-{rank}-of-{world_size}.safetensors"


_CHECKPOINT = re.compile(r"^checkpoint-(\d+)-of-(\d+)\.safetensors$")


class ScanNote(UserWarning):
    """Something a scan did that its caller should know (e.g. resume found no checkpoint)."""


def check_hookable(model: nn.Module, modules: dict[str, nn.Module] | None = None) -> None:
    """Refuse TorchScript: the scan reads its layers with forward hooks, which compiled code
    does not run (the same reason the deconvnet gives for its ReLUs)."""
    candidates: dict[str, nn.Module] = {"": model, **(modules or {})}
    scripted = [n for n, m in candidates.items() if isinstance(m, torch.jit.ScriptModule)]
    if scripted:
        first = scripted[0]
        where = "the model" if first == "" else f"layer {first!r}"
        raise ParameterError(
            "model",
            "a Python nn.Module (TorchScript code cannot be intercepted: the scan reads its "
            "layers with forward hooks, which TorchScript does not run)",
            verbatim(f"{where}: {type(candidates[first]).__name__}"),
            hint="load the model's Python class instead: --model package.module:factory "
            "with --weights",
        )


def check_model_device(net: nn.Module, device: Any, param: str = "device") -> torch.device:
    """The device the scan runs on: ``device`` (checked: :func:`convlens.models.check_device`)
    or, for None, the model's; every weight must be there, and none on the meta device."""
    check_materialised(net)
    tensors = [*net.parameters(), *net.buffers()]
    if device is None:
        device = tensors[0].device if tensors else torch.device("cpu")
    dev = check_device(device, param)
    found = sorted({str(t.device) for t in tensors})
    if found and found != [str(dev)]:
        raise ParameterError(
            param,
            f"the device of the model's weights ({', '.join(found)})",
            str(dev),
            hint=f"move the model with model.to({str(dev)!r}) or pass the device it is on",
        )
    return dev


def check_forward(net: nn.Module, inputs: Tensor, *, inputs_param: str = "dataset") -> None:
    """Run ``inputs`` through ``net`` once (eval mode, no gradients): inputs of the wrong
    dtype or channels, or a forward pass that fails, become one clear error
    (:func:`forward_error`) before any real work."""
    check_input_dtype(net, inputs, inputs_param)
    with eval_mode(net), torch.no_grad():
        try:
            net(inputs)
        except ConvLensError:
            raise
        except Exception as exc:
            raise forward_error(net, inputs, exc, inputs_param=inputs_param) from exc


#: How many items :func:`probe` tries before it gives up on finding a readable one.
PROBE_TRIES = 8
#: The running top-k state of a scan may take at most this many bytes (all layers together).
MAX_STATE_BYTES = 4 * 2**30


def probe(
    net: nn.Module, dataset: Any, layers: Sequence[str], device: torch.device
) -> dict[str, tuple[int, int, torch.dtype]] | None:
    """Run the first readable item of ``dataset`` through ``net`` (in eval mode, so no
    statistics change) and return, per layer, its channels, spatial dimensions and dtype;
    None when none of the first :data:`PROBE_TRIES` items can be read. Layers that do not run,
    inputs of the wrong dtype and errors of the forward pass are refused here, before
    anything is written."""
    modules = find_modules(net, list(layers), "layers")
    safe = SafeDataset(dataset)
    x = None
    for i in range(min(len(dataset), PROBE_TRIES)):
        _, item, _ = safe[i]
        if item is not None:
            x = item.unsqueeze(0).to(device)
            break
    if x is None:
        return None
    check_input_dtype(net, x)
    found: dict[str, tuple[int, int, torch.dtype]] = {}
    calls: dict[str, int] = {}

    def make_hook(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            if calls[name] > 1:  # the scan's hooks would read one call of several
                raise reused_layer(name, calls[name], "layers")
            fmap = output[0] if isinstance(output, (tuple, list)) else output
            if name not in found and isinstance(fmap, Tensor):
                if fmap.dim() < 3:
                    raise ParameterError(
                        "layers",
                        "layers whose outputs are feature maps (N, C, *spatial)",
                        verbatim(f"{name!r} with an output of shape {tuple(fmap.shape)}"),
                    )
                found[name] = (int(fmap.shape[1]), fmap.dim() - 2, fmap.dtype)

        return hook

    # the whole forward pass (the scan stops after its layers): a layer called again later
    # is found here, before anything is written
    handles = [m.register_forward_hook(make_hook(name)) for name, m in modules.items()]
    try:
        with eval_mode(net), torch.no_grad():
            try:
                net(x)
            except ConvLensError:
                raise
            except Exception as exc:
                if len(found) < len(modules):  # fails before a scanned layer ran
                    raise forward_error(net, x, exc) from exc
    finally:
        for h in handles:
            h.remove()
    missing = [name for name in modules if name not in found]
    if missing:
        raise ParameterError("layers", "modules that run in the model's forward pass", missing)
    return found


def _check_state_size(shapes: dict[str, tuple[int, int, torch.dtype]], top: int) -> None:
    per = {
        name: c * top * (torch.empty(0, dtype=dt).element_size() + 8 + 8 * nd)
        for name, (c, nd, dt) in shapes.items()
    }
    total = sum(per.values())
    if total > MAX_STATE_BYTES:
        raise ParameterError(
            "top",
            f"a top-k whose running state fits in {MAX_STATE_BYTES / 2**30:.0f} GiB",
            verbatim(f"top {top}: {total / 2**30:.1f} GiB for {len(per)} layer(s)"),
            hint="lower --top or scan fewer layers at once",
        )


def _short(value: Any) -> str:
    if isinstance(value, dict) and "sha256" in value:
        digest = value.get("sha256")
        return f"{value.get('size')} items, sha256 {str(digest)[:12]}" if digest else str(value)
    if isinstance(value, str) and len(value) == 64:
        return value[:12] + "…"
    return json.dumps(value)


def _differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    keys = sorted(set(saved) | set(now))
    return [
        f"{key} (checkpoint {_short(saved.get(key))}, now {_short(now.get(key))})"
        for key in keys
        if saved.get(key) != now.get(key)
    ]


T = TypeVar("T")


def _agree(info: dist_.DistInfo, step: Callable[[], T]) -> T:
    """Run ``step`` in every process; when it fails in any of them, fail in all (with the
    first process's message), so that none waits for the others forever."""
    if not info.active:
        return step()
    error: ConvLensError | None = None
    value: Any = None
    try:
        value = step()
    except ConvLensError as exc:
        error = exc
    messages = dist_.all_gather_json(None if error is None else str(error))
    if error is not None:
        raise error
    for rank, message in enumerate(messages):
        if message is not None:
            raise ConvLensError(f"process {rank} of the torchrun job: {message}")
    return value


def _same_weights(net: nn.Module, digest: str, info: dist_.DistInfo) -> None:
    digests = dist_.all_gather_json(digest)
    if len(set(digests)) > 1:
        raise ParameterError(
            "model",
            "the same weights in every process of the torchrun job",
            verbatim(
                f"{len(set(digests))} different weights among {info.world_size} processes "
                f"(state sha256 {', '.join(sorted({d[:12] for d in digests}))})"
            ),
            hint="random weights need one --seed for all processes (the default 0 is); a "
            "factory must build the same model in every process",
        )


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
    overwrite: bool = False,
    checkpoint_every: int | None = None,
    progress: bool | None = None,
    meta: dict[str, Any] | None = None,
    on_batch: Callable[[int], None] | None = None,
    validate: Callable[[dict[str, int]], None] | None = None,
    note: Callable[[str], None] | None = None,
) -> ScanResult:
    """Scan ``dataset`` through ``model`` and keep, for every channel of every layer in
    ``layers``, the ``top`` images with the largest feature-map maximum (Zeiler & Fergus,
    arXiv:1311.2901, Fig. 2).

    ``model``: an ``nn.Module`` (used as it is, in its current mode; its weights must be on
    ``device``, default the device they are on) or a ``LoadedModel``. ``dataset``: any
    map-style dataset whose items are a tensor or a tuple starting with one (e.g.
    :class:`~convlens.scan.data.ImageFolderDataset`). ``top`` larger than the dataset keeps
    every image (recorded as ``top_requested``).

    Before anything is read in bulk or written, every option is checked and the first item
    is run through the model (:func:`probe`): a layer that does not run, inputs the model
    cannot take, a top-k too large for memory and whatever ``validate`` (called with the
    channels by layer) refuses, all fail with nothing written.

    With ``out`` the run folder is held for the scan (:func:`convlens.io.run_folder`: a lock,
    a manifest; a folder with files convlens did not write is refused, and one with an
    earlier run unless ``resume`` continues it or ``overwrite`` starts over), the result is
    written there (``scan.json``, ``scan.safetensors``) and checkpoints every
    ``checkpoint_every`` images (default: about every 5% of the data); ``resume`` continues
    from the checkpoint (a checkpoint of other settings, or of another number of processes,
    is refused naming what differs; none found: ``note`` says so and the scan starts fresh).
    Under torchrun (``WORLD_SIZE`` > 1) the processes first check that they hold the same
    weights; each scans its batches and the ranks merge; every rank returns the same result
    and rank 0 writes it. ``on_batch`` is called with the number of each finished batch (a
    hook for callers and tests); ``note`` with messages for the user (default: a
    :class:`ScanNote` warning).
    """
    net, model_info = unwrap_model(model)
    modules = find_modules(net, layers, "layers")
    check_hookable(net, modules)
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
    if resume and overwrite:
        raise ParameterError("overwrite", "not together with resume", True)
    if out is not None:
        check_folder(out)
    device = check_model_device(net, device)
    requested, top = top, min(top, n)
    tell = note if note is not None else (lambda m: warnings.warn(ScanNote(m), stacklevel=3))

    shapes = probe(net, dataset, names, device)
    if shapes is not None:
        _check_state_size(shapes, top)
        if validate is not None:
            validate({name: c for name, (c, _, _) in shapes.items()})

    info = dist_.detect()
    fingerprint = dataset_fingerprint(dataset)
    state_digest = state_sha256(net) if (out is not None or info.active) else None
    config = {
        "layers": names,
        "top": top,
        "batch_size": batch_size,
        "dataset": fingerprint,
        "world_size": info.world_size,
        "model": model_info.get("name"),
        "weights_sha256": model_info.get("weights_sha256"),
        "state_sha256": state_digest,
        "seed": model_info.get("seed"),
    }
    num_batches = math.ceil(n / batch_size)
    mine = dist_.shard_batches(num_batches, info.rank, info.world_size)
    every = checkpoint_every or max(batch_size, n // 20)
    ckpt = checkpoint_path(out, info.rank, info.world_size) if out is not None else None

    states: dict[str, TopK | None] = dict.fromkeys(names)
    skipped: list[dict[str, Any]] = []
    done = 0  # how many of ``mine`` are finished
    scanned = 0
    resumed = False
    stack = contextlib.ExitStack()
    with stack:
        stack.enter_context(dist_.process_group(info, device))
        if info.active and state_digest is not None:
            _same_weights(net, state_digest, info)
        if out is not None:
            reuse: Reuse = "continue" if resume else "clear" if overwrite else "refuse"
            hint = "resume=True (--resume) continues it; overwrite=True (--overwrite) starts over"
            _agree(
                info,
                lambda: (
                    stack.enter_context(run_folder(out, reuse=reuse, used_hint=hint))
                    if info.is_main
                    else None
                ),
            )
            if not info.is_main:
                stack.enter_context(run_folder(out, join=True))
        if resume and ckpt is not None:
            saved_state = _agree(info, lambda: _read_checkpoint(ckpt, config, info))
            found = (
                [saved_state is not None]
                if not info.active
                else dist_.all_gather_json(saved_state is not None)
            )
            if saved_state is not None:
                tensors, saved = saved_state
                done, scanned, skipped = saved["done"], saved["scanned"], saved["skipped"]
                for name in names:
                    if f"{name}/values" in tensors:
                        states[name] = TopK(
                            tensors[f"{name}/values"].to(device),
                            tensors[f"{name}/indices"].to(device),
                            tensors[f"{name}/positions"].to(device),
                        )
                resumed = True
            if not any(found) and info.is_main and out is not None:
                tell(f"resume: no checkpoint found in {os.fspath(out)!r}, starting fresh")
                remove_written(out, keep_folder=True)  # nothing of an earlier run mixes in

        result = _run(
            net, dataset, modules, names, top, batch_size, workers, device, info, mine, every,
            ckpt, config, states, skipped, done, scanned, progress, on_batch,
        )  # fmt: skip
        result_layers, skipped, scanned, elapsed, local_scanned = result
        skipped.sort(key=lambda f: f["index"])
        timings = {
            "scan_s": round(elapsed, 4),
            "images_per_s": round(local_scanned / elapsed, 3) if elapsed > 0 else None,
            "resumed": resumed,
            "world_size": info.world_size,
        }
        full_meta = {
            "model": {**model_info, "state_sha256": state_digest},
            "layers": names,
            "top": top,
            **({"top_requested": requested} if requested != top else {}),
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
        scan_result = ScanResult(result_layers, skipped, counts, full_meta)
        if out is not None and info.is_main:
            scan_result.save(out)
    return scan_result


def _read_checkpoint(
    ckpt: Path, config: dict[str, Any], info: dist_.DistInfo
) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    """This process's checkpoint when it is one of these settings; None when there is none
    (and none of another number of processes either, which is refused)."""
    if ckpt.is_file():
        tensors, saved = load_state(ckpt)
        now = json.loads(json.dumps(config))
        differ = _differences(saved.get("config") or {}, now)
        if differ:
            raise ParameterError(
                "resume",
                "the settings of the interrupted scan",
                verbatim("different " + "; ".join(differ)),
                hint=f"checkpoint {ckpt}; overwrite=True (--overwrite) starts over instead",
            )
        return tensors, saved
    worlds = sorted(
        {
            int(m.group(2))
            for p in ckpt.parent.glob("checkpoint-*-of-*.safetensors")
            if (m := _CHECKPOINT.match(p.name)) and int(m.group(2)) != info.world_size
        }
    )
    if worlds:
        raise ParameterError(
            "resume",
            f"a checkpoint written by {info.world_size} process(es), as this run has",
            verbatim(
                f"checkpoints of {' and '.join(map(str, worlds))} process(es) in "
                f"{os.fspath(ckpt.parent)!r}"
            ),
            hint="resume with the same number of processes (torchrun --nproc_per_node) as the "
            "interrupted run, or overwrite=True (--overwrite) to start over",
        )
    return None


def _run(
    net: nn.Module,
    dataset: Any,
    modules: dict[str, nn.Module],
    names: list[str],
    top: int,
    batch_size: int,
    workers: int,
    device: torch.device,
    info: dist_.DistInfo,
    mine: list[int],
    every: int,
    ckpt: Path | None,
    config: dict[str, Any],
    states: dict[str, TopK | None],
    skipped: list[dict[str, Any]],
    done: int,
    scanned: int,
    progress: bool | None,
    on_batch: Callable[[int], None] | None,
) -> tuple[dict[str, TopK], list[dict[str, Any]], int, float, int]:
    """The scan loop (with checkpoints) and the merge of the ranks."""
    n = len(dataset)

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
                    inputs = batch.inputs.to(device, non_blocking=True)
                    with contextlib.suppress(_Stop):
                        try:
                            net(inputs)
                        except (_Stop, ConvLensError):
                            raise
                        except Exception as exc:
                            raise forward_error(net, inputs, exc) from exc
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
    result_layers, skipped, scanned = _finish(states, names, skipped, scanned, info, top)
    return result_layers, skipped, scanned, elapsed, local_scanned


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
