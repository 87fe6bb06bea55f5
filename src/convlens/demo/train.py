"""Train the embedded default model on Fashion-MNIST, deterministically on the CPU.

Adam (lr 1e-3, cosine decay per epoch), batch 128, dropout in the classifier, random
horizontal flips; with ``renormalize_first_layer`` the paper's renormalisation (Zeiler &
Fergus, arXiv:1311.2901, §3): after every update each first-layer filter whose RMS exceeds
0.1 is rescaled to RMS 0.1. A fixed ``seed`` fixes initialisation, shuffling, flips and dropout;
two runs with the same seed, thread count (``threads``, default 1: part of the recipe) and
torch build give bit-identical weights.

A checkpoint (safetensors: weights, optimiser moments, RNG states) is written atomically after
every epoch, so an interrupted run continues with ``resume=True`` and ends with the same weights.

>>> model, metrics = train_demo(epochs=1, limit=256, eval_limit=256, progress=False)
>>> metrics["epochs_done"], 0.0 <= metrics["accuracy"] <= 1.0
(1, True)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from convlens.demo.data import load_fashion_mnist, preprocess_images
from convlens.demo.model import build_demo_model
from convlens.errors import ParameterError
from convlens.io import sha256_file

__all__ = [
    "BATCH_SIZE",
    "CHECKPOINTS_PATH",
    "CHECKPOINT_EPOCHS",
    "EPOCHS",
    "LEARNING_RATE",
    "MAX_RMS",
    "THREADS",
    "check_save_epochs",
    "checkpoint_name",
    "evaluate",
    "pack_checkpoints",
    "read_packed_checkpoints",
    "renormalize_filters_",
    "save_weights",
    "train_demo",
]

#: Defaults that produced the shipped weights.
EPOCHS = 10
#: Thread count of the shipped run: float sums, hence the bits of the weights, depend on it.
THREADS = 1
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
#: Zeiler & Fergus §3: first-layer filters are capped at this RMS.
MAX_RMS = 0.1
#: The epochs of the shipped checkpoints (0 = the initial weights), the paper's kind of schedule
#: (Fig. 4 shows epochs 1, 2, 5, 10, 20, 30, 40, 64).
CHECKPOINT_EPOCHS = (0, 1, 2, 5, 10)
#: The intermediate weights (all but the last epoch) in float16; the last is the shipped file.
CHECKPOINTS_PATH = Path(__file__).resolve().parent / "assets" / "demo_cnn_checkpoints.safetensors"
_PACK_KEY = "convlens"


def renormalize_filters_(weight: torch.Tensor, max_rms: float = MAX_RMS) -> torch.Tensor:
    """Rescale, in place, every filter (``weight[i]``) whose RMS exceeds ``max_rms`` to it.

    Zeiler & Fergus (arXiv:1311.2901) §3. Returns ``weight``. (The RMS is that of
    :func:`convlens.analysis.filter_rms`, which the demo, a lower layer, cannot import.)

    >>> w = torch.full((2, 1, 2, 2), 0.5); w[1] = 0.05
    >>> renormalize_filters_(w).flatten(1).pow(2).mean(1).sqrt().tolist()
    [0.10000000149011612, 0.05000000074505806]
    """
    with torch.no_grad():
        rms = weight.detach().flatten(1).pow(2).mean(1).sqrt()
        scale = torch.where(rms > max_rms, max_rms / rms, torch.ones_like(rms))
        weight.mul_(scale.view(-1, *([1] * (weight.dim() - 1))).to(weight.dtype))
    return weight


def _first_conv(model: nn.Module) -> nn.Conv1d | nn.Conv2d | nn.Conv3d:
    for module in model.modules():
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            return module
    raise ParameterError("model", "a model with a conv layer", type(model).__name__)


@torch.no_grad()
def evaluate(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` on uint8 ``images`` with ``labels``."""
    was_training = model.training
    model.eval()
    correct, loss = 0, 0.0
    try:
        for start in range(0, len(labels), batch_size):
            x = preprocess_images(images[start : start + batch_size])
            y = labels[start : start + batch_size]
            logits = model(x)
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
    finally:
        model.train(was_training)
    return correct / len(labels), loss / len(labels)


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _atomic_write_text(text: str, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def save_weights(
    model: nn.Module, path: str | os.PathLike[str], metrics: dict[str, Any] | None = None
) -> str:
    """Save ``model``'s weights as safetensors at ``path`` (atomically) and, with ``metrics``,
    a JSON beside it (same name, ``.json``) including the weights' sha256, which is returned."""
    path = Path(path)
    # one metadata key only: safetensors writes the metadata map in hash order, so with two
    # keys equal weights could give files with different bytes (and sha256)
    _atomic_save(dict(model.state_dict()), path, {"model": "convlens-demo-cnn"})
    digest = sha256_file(path)
    if metrics is not None:
        info = {**metrics, "weights": path.name, "weights_sha256": digest}
        _atomic_write_text(json.dumps(info, indent=2) + "\n", path.with_suffix(".json"))
    return digest


@contextlib.contextmanager
def _deterministic(threads: int) -> Iterator[None]:
    """Deterministic algorithms, ``threads`` threads and a private global RNG, all restored
    on exit."""
    previous = torch.are_deterministic_algorithms_enabled()
    previous_threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous_threads)
            torch.use_deterministic_algorithms(previous)


def _optimizer_tensors(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, Any]:
    out: dict[str, torch.Tensor] = {}
    for name, param in model.named_parameters():
        for key, value in optimizer.state.get(param, {}).items():
            out[f"optim.{name}.{key}"] = torch.as_tensor(value).clone()
    return out


def _load_optimizer(
    optimizer: torch.optim.Optimizer, model: nn.Module, tensors: dict[str, torch.Tensor]
) -> None:
    for name, param in model.named_parameters():
        prefix = f"optim.{name}."
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if state:
            optimizer.state[param] = state


def _plain_log(enabled: bool) -> bool:
    """Progress asked for, but stderr is no terminal (a log, CI): one plain line per epoch
    instead of a bar that would print nothing there."""
    return enabled and not sys.stderr.isatty()


def _epoch_line(entry: dict[str, Any], epochs: int) -> str:
    """The plain progress line of one finished epoch.

    >>> _epoch_line({"epoch": 2, "train_loss": 0.5, "test_accuracy": 0.875,
    ...              "test_loss": 0.25, "seconds": 3.21}, 10)
    'train-demo: epoch 2/10: train loss 0.5000, test accuracy 0.8750, test loss 0.2500, 3.2 s'
    """
    return (
        f"train-demo: epoch {entry['epoch']}/{epochs}: train loss {entry['train_loss']:.4f}, "
        f"test accuracy {entry['test_accuracy']:.4f}, test loss {entry['test_loss']:.4f}, "
        f"{entry['seconds']:.1f} s"
    )


def _progress(enabled: bool) -> Any:
    if not enabled or _plain_log(enabled):
        return contextlib.nullcontext(None)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
    )


def train_demo(
    *,
    seed: int = 0,
    epochs: int = EPOCHS,
    renormalize_first_layer: bool = False,
    data_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    limit: int | None = None,
    eval_limit: int | None = None,
    batch_size: int = BATCH_SIZE,
    lr: float = LEARNING_RATE,
    threads: int = THREADS,
    until_epoch: int | None = None,
    save_epochs: Collection[int] = (),
    save_dir: str | os.PathLike[str] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train the demo CNN on Fashion-MNIST's training set; evaluate on its test set.

    ``limit`` / ``eval_limit`` use only the first images of each set (for quick checks).
    ``checkpoint``: a file written after every epoch; ``resume=True`` continues from it.
    ``until_epoch`` stops after that epoch (train in parts: resume later with the same options).
    ``save_epochs``: epochs after which the weights are saved into ``save_dir`` (0 = the initial
    weights, before any update) as :func:`checkpoint_name` files, for the feature evolution of
    Zeiler & Fergus Fig. 4; saving reads the weights only, so the final weights do not change.
    Returns the model (eval mode) and metrics (accuracy on the test set, loss, timings, history).
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("threads", threads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ParameterError(name, "a positive int", value)
    if resume and checkpoint is None:
        raise ParameterError("checkpoint", "a checkpoint file to resume from", None)
    saves = check_save_epochs(save_epochs, epochs)
    if saves and save_dir is None:
        raise ParameterError("save_dir", "a folder for the weights of save_epochs", None)
    train_x, train_y = load_fashion_mnist("train", data_dir)
    test_x, test_y = load_fashion_mnist("test", data_dir)
    if limit is not None:
        train_x, train_y = train_x[:limit], train_y[:limit]
    if eval_limit is not None:
        test_x, test_y = test_x[:eval_limit], test_y[:eval_limit]
    config = {
        "seed": seed,
        "epochs": epochs,
        "renormalize_first_layer": renormalize_first_layer,
        "batch_size": batch_size,
        "lr": lr,
        "threads": threads,
        "train_images": len(train_y),
    }
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    stop = epochs if until_epoch is None else min(until_epoch, epochs)
    load_start = os.getloadavg()[0]

    with _deterministic(threads):
        torch.manual_seed(seed)
        model = build_demo_model()
        first = _first_conv(model)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        shuffle = torch.Generator().manual_seed(seed)
        history: list[dict[str, float]] = []
        start_epoch, elapsed = 0, 0.0
        if renormalize_first_layer:
            renormalize_filters_(first.weight)
        if resume and ckpt_path is not None and ckpt_path.is_file():
            start_epoch, elapsed, history = _restore(ckpt_path, config, model, optimizer, shuffle)
        if start_epoch == 0 and 0 in saves and save_dir is not None:
            _save_snapshot(model, save_dir, 0, config, None)

        steps = math.ceil(len(train_y) / batch_size)
        with _progress(progress) as bar:
            task = (
                bar.add_task("train-demo", total=steps * max(0, stop - start_epoch), info="")
                if bar is not None
                else None
            )
            for epoch in range(start_epoch, stop):
                t0 = time.perf_counter()
                for group in optimizer.param_groups:
                    group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
                model.train()
                order = torch.randperm(len(train_y), generator=shuffle)
                flips = torch.rand(len(train_y), generator=shuffle) < 0.5
                total = 0.0
                for step in range(steps):
                    batch = order[step * batch_size : (step + 1) * batch_size]
                    x = preprocess_images(train_x[batch])
                    flip = flips[batch].view(-1, 1, 1, 1)
                    x = torch.where(flip, x.flip(-1), x)
                    loss = F.cross_entropy(model(x), train_y[batch])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    if renormalize_first_layer:
                        renormalize_filters_(first.weight)
                    total += loss.item() * len(batch)
                    if bar is not None:
                        bar.update(task, advance=1, info=f"epoch {epoch + 1}/{epochs}")
                accuracy, test_loss = evaluate(model, test_x, test_y)
                seconds = time.perf_counter() - t0
                elapsed += seconds
                history.append(
                    {
                        "epoch": epoch + 1,
                        "train_loss": total / len(train_y),
                        "test_accuracy": accuracy,
                        "test_loss": test_loss,
                        "seconds": seconds,
                    }
                )
                if bar is not None:
                    bar.update(task, info=f"epoch {epoch + 1}/{epochs} test acc {accuracy:.4f}")
                elif _plain_log(progress):
                    print(_epoch_line(history[-1], epochs), file=sys.stderr, flush=True)
                if epoch + 1 in saves and save_dir is not None:
                    _save_snapshot(model, save_dir, epoch + 1, config, history[-1])
                if ckpt_path is not None:
                    _checkpoint(
                        ckpt_path, config, epoch + 1, elapsed, history, model, optimizer, shuffle
                    )

    model.eval()
    last = history[-1] if history else {"test_accuracy": float("nan"), "test_loss": float("nan")}
    metrics = {
        "accuracy": last["test_accuracy"],
        "test_loss": last["test_loss"],
        "test_images": len(test_y),
        **config,
        "optimizer": "Adam, cosine lr per epoch, random horizontal flips, dropout 0.3",
        "epochs_done": len(history),
        "elapsed_seconds": elapsed,
        "history": history,
        "torch_version": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": [load_start, os.getloadavg()[0]],
    }
    return model, metrics


def check_save_epochs(epochs: Collection[int], total: int) -> tuple[int, ...]:
    """The sorted, distinct epochs of ``epochs``, each in ``0..total`` (0 = before training).

    >>> check_save_epochs([5, 0, 1, 2, 10, 2], 10)
    (0, 1, 2, 5, 10)
    """
    out = set()
    for e in epochs:
        if isinstance(e, bool) or not isinstance(e, int) or not 0 <= e <= total:
            raise ParameterError(
                "save_epochs", f"epochs between 0 (initial weights) and {total}", e
            )
        out.add(e)
    return tuple(sorted(out))


def checkpoint_name(epoch: int) -> str:
    """The file name of the weights saved after ``epoch`` (0: the initial weights).

    >>> checkpoint_name(0), checkpoint_name(10)
    ('epoch_000.safetensors', 'epoch_010.safetensors')
    """
    return f"epoch_{epoch:03d}.safetensors"


def _save_snapshot(
    model: nn.Module,
    folder: str | os.PathLike[str],
    epoch: int,
    config: dict[str, Any],
    record: dict[str, float] | None,
) -> None:
    """The weights after ``epoch`` (float32, exactly the model's) and a JSON beside them."""
    path = Path(folder) / checkpoint_name(epoch)
    save_weights(model, path, {"epoch": epoch, **config, "history_entry": record})


def _checkpoint(
    path: Path,
    config: dict[str, Any],
    epoch: int,
    elapsed: float,
    history: list[dict[str, float]],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    shuffle: torch.Generator,
) -> None:
    tensors = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    tensors.update(_optimizer_tensors(optimizer, model))
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.shuffle"] = shuffle.get_state()
    meta = {
        "config": json.dumps(config, sort_keys=True),
        "epoch": str(epoch),
        "elapsed": repr(elapsed),
        "history": json.dumps(history),
    }
    _atomic_save(tensors, path, meta)


def _restore(
    path: Path,
    config: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    shuffle: torch.Generator,
) -> tuple[int, float, list[dict[str, float]]]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    saved = json.loads(meta.get("config", "{}"))
    if saved != json.loads(json.dumps(config, sort_keys=True)):
        raise ParameterError(
            "resume", f"a checkpoint made with {config}", saved, hint=f"checkpoint {path}"
        )
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    _load_optimizer(optimizer, model, tensors)
    torch.set_rng_state(tensors["rng.torch"])
    shuffle.set_state(tensors["rng.shuffle"])
    return int(meta["epoch"]), float(meta["elapsed"]), json.loads(meta["history"])


def pack_checkpoints(
    folder: str | os.PathLike[str],
    out: str | os.PathLike[str] = CHECKPOINTS_PATH,
    *,
    final: str | os.PathLike[str] | None = None,
    dtype: torch.dtype = torch.float16,
    evaluate_initial: bool = True,
) -> dict[str, Any]:
    """Pack the weights saved by ``train_demo(save_epochs=...)`` in ``folder`` into one
    safetensors file ``out`` (keys ``epoch_NNN/<param>``) in ``dtype``, leaving out the last
    epoch, which must be bit-identical to ``final`` (default: the shipped weights) and is read
    from there by :func:`read_packed_checkpoints`. Returns the recorded metadata (one key,
    JSON: dtype, epochs, the float32 files' sha256, test accuracy per epoch — the initial
    weights' evaluated here on the full test set when ``evaluate_initial`` — and the final
    file's sha256).
    """
    from convlens.demo import WEIGHTS_PATH

    final_path = Path(WEIGHTS_PATH if final is None else final)
    files = sorted(Path(folder).glob("epoch_[0-9][0-9][0-9].safetensors"))
    if len(files) < 2:
        raise ParameterError("folder", "at least two epoch_NNN.safetensors files", str(folder))
    epochs = [int(f.stem.split("_")[1]) for f in files]
    last = load_file(str(files[-1]))
    shipped = load_file(str(final_path))
    if last.keys() != shipped.keys() or any(not torch.equal(last[k], shipped[k]) for k in last):
        raise ParameterError(
            "folder",
            f"a last epoch ({epochs[-1]}) bit-identical to {final_path.name}",
            str(files[-1]),
            hint="the run differs from the shipped one (seed, threads or torch build)",
        )
    tensors: dict[str, torch.Tensor] = {}
    accuracy: dict[str, float | None] = {}
    sha: dict[str, str] = {}
    for epoch, path in zip(epochs[:-1], files[:-1]):
        for key, value in load_file(str(path)).items():
            tensors[f"epoch_{epoch:03d}/{key}"] = value.to(dtype)
        sha[str(epoch)] = sha256_file(path)
        record = json.loads(path.with_suffix(".json").read_text()).get("history_entry")
        if record is None and not evaluate_initial:
            accuracy[str(epoch)] = None
        elif record is None:  # the initial weights: never evaluated during training
            model = build_demo_model()
            model.load_state_dict(load_file(str(path)))
            accuracy[str(epoch)] = evaluate(model, *load_fashion_mnist("test"))[0]
        else:
            accuracy[str(epoch)] = record["test_accuracy"]
    info = {
        "dtype": str(dtype).removeprefix("torch."),
        "epochs": epochs[:-1],
        "final_epoch": epochs[-1],
        "final": final_path.name,
        "final_sha256": sha256_file(final_path),
        "float32_sha256": sha,
        "test_accuracy": accuracy,
        "made_by": "convlens train-demo --checkpoints "
        + ",".join(map(str, epochs))
        + "; convlens.demo.train.pack_checkpoints",
    }
    _atomic_save(tensors, Path(out), {_PACK_KEY: json.dumps(info, sort_keys=True)})
    return info


def read_packed_checkpoints(
    path: str | os.PathLike[str] = CHECKPOINTS_PATH,
    final: str | os.PathLike[str] | None = None,
) -> list[tuple[int, dict[str, torch.Tensor], str, str | None]]:
    """The demo CNN's weights at the shipped epochs (:data:`CHECKPOINT_EPOCHS`) as
    ``(epoch, state, source, sha256 of the file or None)``: the intermediate ones from
    ``path`` (stored in float16, returned as float32), the last one the shipped float32
    weights exactly (``final``, default the shipped file, whose sha256 the packed file must
    record). :func:`convlens.analysis.evolution.demo_checkpoints` wraps them for Fig. 4.

    >>> [epoch for epoch, *_ in read_packed_checkpoints()]
    [0, 1, 2, 5, 10]
    """
    from safetensors import safe_open

    from convlens.demo import WEIGHTS_PATH

    final_path = Path(WEIGHTS_PATH if final is None else final)
    path = Path(path)
    if not path.is_file():
        raise ParameterError("checkpoints", "the demo's packed checkpoints file", str(path))
    with safe_open(str(path), "pt") as f:
        info = json.loads((f.metadata() or {}).get(_PACK_KEY, "{}"))
    digest = sha256_file(final_path)
    if info.get("final_sha256") != digest:
        raise ParameterError(
            "checkpoints",
            f"checkpoints packed for {final_path.name} (sha256 {info.get('final_sha256')})",
            digest,
        )
    tensors = load_file(str(path))
    out: list[tuple[int, dict[str, torch.Tensor], str, str | None]] = []
    for epoch in info["epochs"]:
        prefix = f"epoch_{epoch:03d}/"
        state = {k[len(prefix) :]: v.float() for k, v in tensors.items() if k.startswith(prefix)}
        out.append(
            (epoch, state, f"{path.name}[{prefix[:-1]}] ({info['dtype']}, as float32)", None)
        )
    out.append((info["final_epoch"], load_file(str(final_path)), final_path.name, digest))
    return out
