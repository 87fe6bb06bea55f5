"""Atomic, pickle-free files for long scans: checkpoints and results.

A checkpoint is one safetensors file: the running top-k tensors, with the scan's progress and
settings as JSON in the file's metadata, so tensors and progress can never disagree. Every
file is written atomically by :mod:`convlens.io` (temporary file, fsync, ``os.replace``): a
crash leaves either the old file or the new one, never half of one.

>>> import tempfile, torch, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "state.safetensors"
>>> save_state(path, {"x": torch.arange(3)}, {"done": 3})
>>> tensors, meta = load_state(path)
>>> tensors["x"].tolist(), meta
([0, 1, 2], {'done': 3})
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors.torch import load, save
from torch import Tensor

from convlens.errors import ParameterError
from convlens.io import atomic_write_bytes, atomic_write_text

# atomic_write_bytes / atomic_write_text are convlens.io's, importable here as before
__all__ = ["atomic_write_bytes", "atomic_write_text", "load_state", "save_state"]

_META_KEY = "convlens_state"


def save_state(path: str | os.PathLike[str], tensors: dict[str, Tensor], meta: Any) -> None:
    """Tensors plus JSON-able ``meta`` in one safetensors file, written atomically."""
    blob = save(
        {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
        metadata={_META_KEY: json.dumps(meta, sort_keys=True)},
    )
    atomic_write_bytes(path, blob)


def load_state(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], Any]:
    """The tensors and the metadata written by :func:`save_state`."""
    path = Path(path)
    if not path.is_file():
        raise ParameterError("checkpoint", "an existing checkpoint file", str(path))
    raw = path.read_bytes()
    try:
        tensors = load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + header_len])
        meta = json.loads(header["__metadata__"][_META_KEY])
    except Exception as exc:
        raise ParameterError(
            "checkpoint", "a convlens scan checkpoint (safetensors)", str(path), hint=str(exc)
        ) from exc
    return tensors, meta
