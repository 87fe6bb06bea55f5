"""Feature evolution during training (Zeiler & Fergus, arXiv:1311.2901, §4.1, Fig. 4).

For a sequence of checkpoints of one architecture and a dataset: at every checkpoint, for a
chosen subset of channels per layer, the image with the strongest activation of that channel
over the dataset and its deconvnet projection with that checkpoint's weights. This module
holds the data (checkpoints, results), their assembly and the figure; the run itself (one
:func:`convlens.scan_dataset` per checkpoint, ``top=1``, then :func:`convlens.project_top`) is
:func:`convlens.pipeline.evolution.feature_evolution`. The grid has one row per channel and one
column per checkpoint; a cell is marked where the top-1 image differs from the previous
checkpoint's.

Checkpoints are files (safetensors, or ``torch.save`` state dicts read with
``weights_only=True``) or folders of them (sorted by name, numbers in natural order).

>>> import torch
>>> ck = Checkpoint.from_state("start", {"w": torch.zeros(2)})
>>> ck.label, len(ck.sha256)
('start', 64)
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load, save
from torch import Tensor

from convlens.demo.train import read_packed_checkpoints
from convlens.errors import ParameterError, ParameterTypeError
from convlens.io import sha256_file
from convlens.models.loading import read_weights

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "Checkpoint",
    "EvolutionLayer",
    "EvolutionResult",
    "checkpoint_files",
    "choose_channels",
    "demo_checkpoints",
    "evolution_figure",
    "layer_spec",
    "read_checkpoints",
    "resolve_channels",
    "stack_evolution",
    "state_sha256",
]

#: File suffixes taken from a folder of checkpoints.
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def state_sha256(state: Mapping[str, Tensor]) -> str:
    """A SHA-256 over a state dict's names, dtypes, shapes and bytes (for in-memory weights).

    >>> state_sha256({"w": torch.zeros(2)}) == state_sha256({"w": torch.zeros(2)})
    True
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """One set of weights: ``label`` (shown above its column), ``state`` (a state dict),
    ``sha256`` (of the file, or :func:`state_sha256` for in-memory weights), ``source``."""

    label: str
    state: Mapping[str, Tensor] = field(repr=False)
    sha256: str
    source: str

    @classmethod
    def from_state(
        cls, label: str, state: Mapping[str, Tensor], source: str = "memory"
    ) -> Checkpoint:
        """A checkpoint from an in-memory state dict (tensors are cloned)."""
        cloned = {k: v.detach().clone() for k, v in state.items()}
        return cls(label, cloned, state_sha256(cloned), source)


def _natural_key(path: Path) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.name)]


def demo_checkpoints() -> list[Checkpoint]:
    """The demo CNN at epochs 0, 1, 2, 5, 10 of its training (``convlens train-demo
    --checkpoints 0,1,2,5,10``), labelled ``"epoch N"``: the intermediate weights shipped in
    float16 (``demo_cnn_checkpoints.safetensors``, returned as float32), the last one the
    shipped float32 weights exactly (:func:`convlens.demo.train.read_packed_checkpoints`).

    >>> [c.label for c in demo_checkpoints()]
    ['epoch 0', 'epoch 1', 'epoch 2', 'epoch 5', 'epoch 10']
    """
    return [
        Checkpoint(f"epoch {epoch}", state, digest or state_sha256(state), source)
        for epoch, state, source, digest in read_packed_checkpoints()
    ]


def checkpoint_files(sources: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files in the order given; a folder contributes its checkpoint files
    (:data:`CHECKPOINT_SUFFIXES`) sorted by name, with numbers in natural order.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for n in ("e10.pt", "e2.pt", "notes.txt"): _ = (d / n).write_bytes(b"")
    >>> [p.name for p in checkpoint_files([d])]
    ['e2.pt', 'e10.pt']
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted(
                (p for p in path.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES),
                key=_natural_key,
            )
            if not found:
                raise ParameterError(
                    "checkpoints",
                    f"a folder with checkpoint files ({', '.join(CHECKPOINT_SUFFIXES)})",
                    os.fspath(path),
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise ParameterError(
                "checkpoints", "existing checkpoint files or folders", os.fspath(path)
            )
    if not files:
        raise ParameterError("checkpoints", "at least one checkpoint", list(sources))
    return files


def read_checkpoints(sources: Sequence[str | os.PathLike[str]]) -> list[Checkpoint]:
    """:class:`Checkpoint` s from files or folders (:func:`checkpoint_files`), read safely
    (:func:`convlens.models.loading.read_weights`); labels are the file names' stems."""
    return [
        Checkpoint(p.stem, read_weights(p), sha256_file(p), os.fspath(p))
        for p in checkpoint_files(sources)
    ]


@dataclass(frozen=True)
class EvolutionLayer:
    """One layer's evolution over K checkpoints for the C' ``channels``.

    ``values``, ``indices`` (dataset index of the top-1 image), ``positions (K, C', ndim)``:
    the strongest activation per checkpoint and channel; ``projections``/``patches``
    ``(K, C', Cin, *box)``: its deconvnet projection and the image patch on the unit's receptive
    field; ``boxes (K, C', ndim, 2)``; ``changed (K, C')``: True where the top-1 image differs
    from the previous checkpoint's (never in the first column).
    """

    layer: str
    channels: list[int]
    values: Tensor
    indices: Tensor
    positions: Tensor
    projections: Tensor
    patches: Tensor
    boxes: Tensor
    clips: Tensor
    changed: Tensor


@dataclass
class EvolutionResult:
    """:func:`feature_evolution`'s result: ``labels``/``sha256``/``sources`` per checkpoint,
    ``layers[path]`` an :class:`EvolutionLayer`, the ``rule`` and ``meta`` (seed, dataset,
    how channels were chosen)."""

    labels: list[str]
    sha256: list[str]
    sources: list[str]
    layers: dict[str, EvolutionLayer]
    rule: str
    meta: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Everything but the pictures, JSON-ready (what ``evolution.json`` holds)."""
        return {
            "format": "convlens-evolution/1",
            "paper": "Zeiler & Fergus, arXiv:1311.2901, Fig. 4",
            "checkpoints": [
                {"label": lab, "sha256": sha, "source": src}
                for lab, sha, src in zip(self.labels, self.sha256, self.sources)
            ],
            "rule": self.rule,
            "meta": self.meta,
            "layers": {
                name: {
                    "channels": ly.channels,
                    "indices": ly.indices.tolist(),
                    "values": ly.values.tolist(),
                    "positions": ly.positions.tolist(),
                    "changed": ly.changed.tolist(),
                    "changes_per_channel": ly.changed.sum(0).tolist(),
                }
                for name, ly in self.layers.items()
            },
        }

    def tensors(self) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for name, ly in self.layers.items():
            for key in ("values", "indices", "positions", "projections", "patches", "boxes"):
                out[f"{name}/{key}"] = getattr(ly, key).contiguous()
            out[f"{name}/clips"] = ly.clips.contiguous()
            out[f"{name}/changed"] = ly.changed.contiguous()
            out[f"{name}/channels"] = torch.tensor(ly.channels, dtype=torch.long)
        return out

    def tensor_bytes(self) -> bytes:
        """The tensors as safetensors bytes (``evolution.safetensors``)."""
        return save(self.tensors(), metadata={"format": "convlens-evolution/1"})

    @classmethod
    def from_saved(cls, summary: Mapping[str, Any], blob: bytes) -> EvolutionResult:
        """Rebuild from :meth:`summary` and :meth:`tensor_bytes`."""
        t = load(blob)
        layers = {
            name: EvolutionLayer(
                name,
                [int(c) for c in t[f"{name}/channels"]],
                *(
                    t[f"{name}/{k}"]
                    for k in (
                        "values",
                        "indices",
                        "positions",
                        "projections",
                        "patches",
                        "boxes",
                        "clips",
                        "changed",
                    )
                ),
            )
            for name in summary["layers"]
        }
        ck = summary["checkpoints"]
        return cls(
            [c["label"] for c in ck],
            [c["sha256"] for c in ck],
            [c["source"] for c in ck],
            layers,
            summary["rule"],
            dict(summary.get("meta", {})),
        )


def choose_channels(
    counts: Mapping[str, int], per_layer: int, seed: int = 0
) -> dict[str, list[int]]:
    """A random subset of ``per_layer`` channels per layer (as the paper's "randomly chosen
    subset of feature maps"), sorted; ``counts`` maps a layer to its channel count. The
    generator is seeded per layer with ``seed`` (recorded by :func:`feature_evolution`).

    >>> choose_channels({"a": 4}, 4)
    {'a': [0, 1, 2, 3]}
    >>> choose_channels({"a": 100}, 3) == choose_channels({"a": 100}, 3)
    True
    """
    if isinstance(per_layer, bool) or not isinstance(per_layer, int) or per_layer < 1:
        raise ParameterError("per_layer", "a positive int", per_layer)
    out = {}
    for name, count in counts.items():
        gen = torch.Generator().manual_seed(seed)
        chosen = torch.randperm(count, generator=gen)[: min(per_layer, count)]
        out[name] = sorted(int(c) for c in chosen)
    return out


def stack_evolution(
    checkpoints: Sequence[Checkpoint],
    tops: Sequence[Mapping[str, Any]],
    rule: str,
    meta: Mapping[str, Any] | None = None,
) -> EvolutionResult:
    """An :class:`EvolutionResult` from one mapping per checkpoint ``{layer: LayerProjections}``
    (:func:`convlens.project_top` on a ``top=1`` scan, the same channels at every checkpoint):
    columns stacked in checkpoint order, ``changed`` where the top-1 image differs from the
    previous checkpoint's."""
    if len(checkpoints) != len(tops) or not tops:
        raise ParameterError(
            "tops", f"one projection set per checkpoint ({len(checkpoints)})", len(tops)
        )
    names = list(tops[0])
    layers = {}
    for n in names:
        parts = [t[n] for t in tops]
        if any(list(p.channels) != list(parts[0].channels) for p in parts):
            raise ParameterError("tops", f"the same channels of {n!r} at every checkpoint", n)

        def stack(key: str, parts: list[Any] = parts) -> Tensor:
            return torch.stack([getattr(p, key)[:, 0] for p in parts])

        indices = stack("indices")
        changed = torch.zeros_like(indices, dtype=torch.bool)
        changed[1:] = indices[1:] != indices[:-1]
        layers[n] = EvolutionLayer(
            n,
            [int(c) for c in parts[0].channels],
            stack("values"),
            indices,
            stack("positions"),
            stack("projections"),
            stack("patches"),
            stack("boxes"),
            stack("clips"),
            changed,
        )
    return EvolutionResult(
        [c.label for c in checkpoints],
        [c.sha256 for c in checkpoints],
        [c.source for c in checkpoints],
        layers,
        rule,
        dict(meta or {}),
    )


def layer_spec(
    layers: Mapping[str, Sequence[int] | None] | Sequence[str] | str,
) -> dict[str, list[int] | None]:
    """``{layer: channels or None}`` from layer paths (``"a,b"`` or a list: channels to be
    chosen) or a mapping.

    >>> layer_spec("features.0,features.3")
    {'features.0': None, 'features.3': None}
    """
    if isinstance(layers, str):
        layers = [s for s in layers.split(",") if s]
    if isinstance(layers, Mapping):
        spec = {str(k): (None if v is None else [int(c) for c in v]) for k, v in layers.items()}
    elif isinstance(layers, Sequence):
        spec = dict.fromkeys([str(s) for s in layers])
    else:
        raise ParameterTypeError("layers", "layer paths or {layer: channels}", layers)
    if not spec:
        raise ParameterError("layers", "at least one layer", layers)
    for name, chans in spec.items():
        if chans is not None and (not chans or len(set(chans)) != len(chans)):
            raise ParameterError(f"layers[{name!r}]", "distinct channel indices", chans)
    return spec


def resolve_channels(
    spec: Mapping[str, list[int] | None], counts: Mapping[str, int], per_layer: int, seed: int
) -> dict[str, list[int]]:
    """The channels of each layer: the given ones (checked against ``counts``), else
    :func:`choose_channels`.

    >>> resolve_channels({"a": [1], "b": None}, {"a": 2, "b": 3}, 5, 0)
    {'a': [1], 'b': [0, 1, 2]}
    """
    out = {}
    for n, chans in spec.items():
        if chans is None:
            out[n] = choose_channels({n: counts[n]}, per_layer, seed)[n]
            continue
        bad = [c for c in chans if not 0 <= c < counts[n]]
        if bad:
            raise ParameterError(f"layers[{n!r}]", f"channels 0..{counts[n] - 1}", bad)
        out[n] = list(chans)
    return out


def _display(tile: Tensor, kind: str, clip: Tensor | None = None) -> Tensor:
    """(Cin, H, W) -> (H, W, 3) in [0, 1]: projections stretched on their own (zero at
    mid-grey, :func:`convlens.deconvnet.display.stretch`), patches min-max stretched over the
    pixels inside the image, the part of the box outside the image (``clip``) mid-grey; three
    channels as RGB, else the channel mean in grey."""
    from convlens.deconvnet.display import stretch

    x = tile.detach().to(torch.float64)
    if x.shape[0] != 3:
        x = x.mean(0, keepdim=True)
    inside = torch.ones(x.shape[1:], dtype=torch.bool)
    if clip is not None:
        (top, bottom), (left, right) = clip.tolist()
        inside[:top] = False
        inside[x.shape[1] - bottom :] = False
        inside[:, :left] = False
        inside[:, x.shape[2] - right :] = False
    if kind == "projection":
        shown = stretch(x)
    else:
        vals = x[:, inside]
        lo, hi = (vals.min(), vals.max()) if vals.numel() else (0.0, 0.0)
        shown = (x - lo) / (hi - lo) if hi > lo else torch.full_like(x, 0.5)
        shown[:, ~inside] = 0.5
    return (
        shown.expand(3, -1, -1).permute(1, 2, 0) if shown.shape[0] == 1 else shown.permute(1, 2, 0)
    )


def _resize(img: Tensor, size: int) -> Tensor:
    """(h, w, 3) -> (size, size, 3): nearest when enlarging, area average when shrinking."""
    x = img.permute(2, 0, 1).unsqueeze(0)
    mode = "nearest" if size >= max(img.shape[:2]) else "area"
    return torch.nn.functional.interpolate(x, size=(size, size), mode=mode)[0].permute(1, 2, 0)


def evolution_figure(
    result: EvolutionResult,
    *,
    layers: Sequence[str] | None = None,
    show: str = "projection",
    tile: int = 56,
    title: str | None = None,
) -> Any:
    """The Fig. 4 grid as a matplotlib Figure (drawn 1:1 at 100 dpi): one row per
    (layer, channel), one column per checkpoint, ``tile`` pixels per cell; ``show`` =
    ``"projection"`` (the deconvnet projection, zero at mid-grey) or ``"patch"`` (the image
    patch on the receptive field; outside the image mid-grey). A red frame marks a cell whose
    top-1 image differs from the previous checkpoint's; the caption under a cell is the dataset
    index of its top-1 image.
    """
    if show not in ("projection", "patch"):
        raise ParameterError("show", "'projection' or 'patch'", show)
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 8:
        raise ParameterError("tile", "an int >= 8 (pixels)", tile)
    names = list(result.layers) if layers is None else list(layers)
    for n in names:
        if n not in result.layers:
            raise ParameterError("layers", f"layers of the result ({', '.join(result.layers)})", n)
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = [(n, r) for n in names for r in range(len(result.layers[n].channels))]
    cols = len(result.labels)
    gap, caption, frame = 8, 13, 3
    cell_w, cell_h = tile + gap, tile + gap + caption
    left, top, bottom = 110, 50, 8
    width, height = left + cols * cell_w, top + len(rows) * cell_h + bottom
    canvas = torch.ones(height, width, 3, dtype=torch.float64)
    fig = plt.figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    texts: list[tuple[float, float, str, dict[str, Any]]] = []
    for k, label in enumerate(result.labels):
        texts.append(
            (
                left + k * cell_w + cell_w / 2,
                top - 8,
                label,
                {"ha": "center", "va": "bottom", "fontsize": 7},
            )
        )
    previous = None
    for i, (n, r) in enumerate(rows):
        ly = result.layers[n]
        y0 = top + i * cell_h + gap // 2
        label = f"{n}  ch {ly.channels[r]}" if n != previous else f"ch {ly.channels[r]}"
        previous = n
        texts.append(
            (left - 8, y0 + tile / 2, label, {"ha": "right", "va": "center", "fontsize": 7})
        )
        for k in range(cols):
            x0 = left + k * cell_w + gap // 2
            tiles = ly.projections if show == "projection" else ly.patches
            img = _display(tiles[k, r], show, ly.clips[k, r] if show == "patch" else None)
            canvas[y0 : y0 + tile, x0 : x0 + tile] = _resize(img, tile)
            hot = bool(ly.changed[k, r])
            colour = torch.tensor(
                (0.84, 0.15, 0.16) if hot else (0.75, 0.75, 0.75), dtype=torch.float64
            )
            w = frame if hot else 1
            canvas[y0 - w : y0, x0 - w : x0 + tile + w] = colour
            canvas[y0 + tile : y0 + tile + w, x0 - w : x0 + tile + w] = colour
            canvas[y0 : y0 + tile, x0 - w : x0] = colour
            canvas[y0 : y0 + tile, x0 + tile : x0 + tile + w] = colour
            index = int(ly.indices[k, r])
            texts.append(
                (
                    x0 + tile / 2,
                    y0 + tile + frame + 1,
                    f"#{index}" if index >= 0 else "none",
                    {"ha": "center", "va": "top", "fontsize": 6},
                )
            )
    ax.imshow(canvas.numpy(), interpolation="nearest", extent=(0, width, height, 0))
    for x, y, text, style in texts:
        ax.text(x, y, text, **style)
    heading = title or (
        f"Feature evolution: the {show} of each channel's top-1 image\n"
        "red frame: the top-1 image changed since the previous checkpoint"
    )
    ax.text(width / 2, 4, heading, ha="center", va="top", fontsize=7, linespacing=1.3)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    return fig
