"""Correspondence of object parts across images (Zeiler & Fergus, arXiv:1311.2901, §4.3,
Table 1).

For images ``x_1..x_N`` that each show the same kind of part inside a box, occlude the part
(``x̃_i``: the box set to ``fill``) and take, at layer ``l``, ``ε_i = f_l(x_i) − f_l(x̃_i)`` (the
flattened layer output). The layer corresponds the part across images when the ε's change the
same way: ``Δ_l = Σ_{i≠j} H(sign ε_i, sign ε_j)`` over ordered pairs, ``H`` the Hamming
distance. A control occludes a random box of the same size in every image; lower Δ for the
part than for the control means correspondence.

``H`` is normalised by default (the paper's values near 0.07 are fractions): divided by the
vector length D. ``zero`` says how ``sign(0) = 0`` counts: ``"value"`` (default) — 0 is a third
sign value, so 0 against ±1 is a difference; ``"drop"`` — a position where either vector's
sign is 0 is left out of that pair, and the normalised H divides by the positions kept (a
pair with none kept contributes 0). The raw form is the sum of the counts.

>>> signs = torch.tensor([[1.0, -1.0, 0.0], [1.0, 1.0, 0.0]])
>>> sign_change(signs), sign_change(signs, normalize=False), sign_change(signs, zero="drop")
(0.6666666666666666, 2.0, 1.0)
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from convlens.analysis.invariance import layer_features
from convlens.analysis.occlusion import occlude
from convlens.errors import ParameterError, ParameterTypeError
from convlens.progress import progress_bar

__all__ = [
    "DEMO_PARTS",
    "ZERO_MODES",
    "Box",
    "CorrespondenceResult",
    "Part",
    "correspondence",
    "correspondence_figure",
    "correspondence_table",
    "demo_parts",
    "pairwise_hamming",
    "random_boxes",
    "read_parts",
    "sign_change",
]

#: How sign(0) counts: as its own value, or dropped from a pair.
ZERO_MODES = ("value", "drop")


@dataclass(frozen=True)
class Box:
    """A box in pixels: rows ``top .. top+height-1``, columns ``left .. left+width-1``."""

    top: int
    left: int
    height: int
    width: int

    def check(self, size: Sequence[int], where: str = "box") -> Box:
        """Raise unless the box has a positive size and lies inside an image of ``size``."""
        h, w = int(size[0]), int(size[1])
        ok = (
            self.height >= 1
            and self.width >= 1
            and self.top >= 0
            and self.left >= 0
            and self.top + self.height <= h
            and self.left + self.width <= w
        )
        if not ok:
            raise ParameterError(where, f"a box inside the {h}×{w} image", self)
        return self


@dataclass(frozen=True)
class Part:
    """A named part: dataset ``images`` and each one's ``boxes`` (same size in every image:
    the random control uses that size)."""

    name: str
    images: tuple[int, ...]
    boxes: tuple[Box, ...]

    def __post_init__(self) -> None:
        if len(self.images) != len(self.boxes) or len(self.images) < 2:
            raise ParameterError(
                f"part {self.name!r}", "at least two images, one box each", len(self.images)
            )
        sizes = {(b.height, b.width) for b in self.boxes}
        if len(sizes) != 1:
            raise ParameterError(
                f"part {self.name!r}", "boxes of one size (the control's size)", sorted(sizes)
            )

    @property
    def size(self) -> tuple[int, int]:
        return (self.boxes[0].height, self.boxes[0].width)


#: The demo's parts, chosen by hand on the bundled Fashion-MNIST sample (28×28, objects centred
#: and scaled by the dataset): (class, part, box) where the part sits in nearly every image of
#: the class. Sneakers point left; boots' heels are at the bottom right.
DEMO_PARTS: tuple[tuple[str, str, Box], ...] = (
    ("T-shirt/top", "neckline", Box(0, 8, 6, 12)),
    ("Trouser", "waistband", Box(0, 8, 5, 12)),
    ("Pullover", "left sleeve", Box(8, 0, 14, 6)),
    ("Sneaker", "toe", Box(12, 0, 9, 9)),
    ("Ankle boot", "heel", Box(18, 19, 9, 9)),
)


def demo_parts(labels: Sequence[int], class_names: Sequence[str], per_part: int = 5) -> list[Part]:
    """:data:`DEMO_PARTS` on a dataset with these ``labels``: for each part, the first
    ``per_part`` images of its class (in dataset order) with the part's box.

    >>> [p.images for p in demo_parts([0, 0, 1, 1, 1], ["T-shirt/top", "Trouser"], 2)]
    [(0, 1), (2, 3)]
    """
    out = []
    for cls, part, box in DEMO_PARTS:
        if cls not in class_names:
            continue
        c = list(class_names).index(cls)
        chosen = tuple(i for i, y in enumerate(labels) if int(y) == c)[:per_part]
        if len(chosen) >= 2:
            out.append(Part(f"{cls}: {part}", chosen, (box,) * len(chosen)))
    if not out:
        raise ParameterError("dataset", "images of the demo parts' classes", list(class_names))
    return out


def read_parts(path: str | os.PathLike[str], resolve: Any = None) -> list[Part]:
    """Parts from a JSON list or a CSV of rows ``image, top, left, height, width[, part]``
    (JSON: objects with ``image``, ``box`` = [top, left, height, width] and optional ``part``).
    ``image`` is a dataset index, or a path turned into one by ``resolve(path)``. Rows with the
    same part name form one part (default name ``"part"``), in file order.

    >>> import tempfile
    >>> f = tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False)
    >>> _ = f.write("image,top,left,height,width,part\\n0,1,1,2,2,eye\\n3,0,2,2,2,eye\\n"); f.close()
    >>> read_parts(f.name)[0].images
    (0, 3)
    """
    p = Path(path)
    if not p.is_file():
        raise ParameterError("boxes", "a JSON or CSV file of (image, box) rows", os.fspath(p))
    text = p.read_text(encoding="utf-8")
    rows: list[dict[str, Any]] = []
    try:
        if p.suffix.lower() == ".json":
            for item in json.loads(text):
                top, left, height, width = (int(v) for v in item["box"])
                rows.append(
                    {
                        "image": item["image"],
                        "box": Box(top, left, height, width),
                        "part": str(item.get("part", "part")),
                    }
                )
        else:
            for item in csv.DictReader(io.StringIO(text)):
                box = Box(*(int(item[k]) for k in ("top", "left", "height", "width")))
                rows.append(
                    {"image": item["image"], "box": box, "part": str(item.get("part") or "part")}
                )
    except (ValueError, KeyError, TypeError) as exc:
        raise ParameterError(
            "boxes",
            "rows image, top, left, height, width[, part] (CSV) or "
            '[{"image": ..., "box": [top, left, height, width], "part": ...}] (JSON)',
            os.fspath(p),
            hint=f"{type(exc).__name__}: {exc}",
        ) from exc
    groups: dict[str, list[tuple[int, Box]]] = {}
    for row in rows:
        image = row["image"]
        if isinstance(image, str) and image.strip().lstrip("-").isdigit():
            index = int(image)
        elif isinstance(image, int):
            index = image
        elif resolve is not None:
            index = int(resolve(str(image)))
        else:
            raise ParameterError("boxes", "dataset indices in the image column", image)
        groups.setdefault(row["part"], []).append((index, row["box"]))
    return [
        Part(name, tuple(i for i, _ in g), tuple(b for _, b in g)) for name, g in groups.items()
    ]


def pairwise_hamming(signs: Tensor, *, zero: str = "value") -> tuple[Tensor, Tensor]:
    """Hamming distances between the rows of ``signs`` (N, D) with values in {-1, 0, 1}:
    ``(H, L)``, both (N, N): ``H[i, j]`` the positions where the signs differ, ``L[i, j]`` the
    positions compared (D for ``zero="value"``; for ``"drop"`` those where neither is 0).

    >>> h, n = pairwise_hamming(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), zero="drop")
    >>> h.tolist(), n.tolist()
    ([[0.0, 1.0], [1.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]])
    """
    if zero not in ZERO_MODES:
        raise ParameterError("zero", f"one of {', '.join(ZERO_MODES)}", zero)
    s = signs.to(torch.float64)
    pos, neg = (s > 0).to(torch.float64), (s < 0).to(torch.float64)
    same = pos @ pos.T + neg @ neg.T
    if zero == "value":
        nil = (s == 0).to(torch.float64)
        same = same + nil @ nil.T
        compared = torch.full_like(same, float(s.shape[1]))
    else:
        kept = pos + neg
        compared = kept @ kept.T
    return compared - same, compared


def sign_change(signs: Tensor, *, normalize: bool = True, zero: str = "value") -> float:
    """``Δ = Σ_{i≠j} H(signs_i, signs_j)`` over ordered pairs; with ``normalize`` each ``H``
    is divided by the positions it compares (see the module docstring)."""
    if not isinstance(signs, Tensor) or signs.dim() != 2:
        raise ParameterError("signs", "a tensor (N, D)", getattr(signs, "shape", signs))
    h, compared = pairwise_hamming(signs, zero=zero)
    if normalize:
        h = torch.where(compared > 0, h / compared.clamp(min=1), torch.zeros_like(h))
    h.fill_diagonal_(0)
    return float(h.sum())


def random_boxes(
    size: Sequence[int], box: tuple[int, int], count: int, generator: torch.Generator
) -> list[Box]:
    """``count`` boxes of ``box`` = (height, width) at uniformly random positions inside an
    image of ``size`` (H, W).

    >>> [b.top for b in random_boxes((3, 3), (3, 3), 2, torch.Generator().manual_seed(0))]
    [0, 0]
    """
    h, w = int(size[0]), int(size[1])
    bh, bw = box
    Box(0, 0, bh, bw).check(size, "box size")
    tops = torch.randint(0, h - bh + 1, (count,), generator=generator)
    lefts = torch.randint(0, w - bw + 1, (count,), generator=generator)
    return [Box(int(t), int(left), bh, bw) for t, left in zip(tops, lefts)]


@dataclass
class CorrespondenceResult:
    """Table 1's numbers. ``parts`` names; ``delta[part][layer]``: Δ with the part occluded
    (one value: no randomness); ``control[part][layer]``: Δ per repeat with random boxes
    (R values); ``raw``/``control_raw`` the same unnormalised; settings in ``meta``."""

    layers: tuple[str, ...]
    parts: list[Part]
    delta: dict[str, dict[str, float]]
    raw: dict[str, dict[str, float]]
    control: dict[str, dict[str, list[float]]]
    control_raw: dict[str, dict[str, list[float]]]
    zero: str
    fill: list[float]
    seed: int
    repeats: int
    meta: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        def stats(values: list[float]) -> dict[str, float]:
            t = torch.tensor(values, dtype=torch.float64)
            std = float(t.std(unbiased=True)) if len(values) > 1 else 0.0
            return {"mean": float(t.mean()), "std": std}

        return {
            "format": "convlens-correspondence/1",
            "paper": "Zeiler & Fergus, arXiv:1311.2901, §4.3, Table 1",
            "formula": "Δ_l = Σ_{i≠j} H(sign ε_i, sign ε_j), ε_i = f_l(x_i) − f_l(x̃_i), "
            "ordered pairs; normalised: H divided by the positions compared",
            "zero": self.zero,
            "fill": self.fill,
            "seed": self.seed,
            "repeats": self.repeats,
            "layers": list(self.layers),
            "meta": self.meta,
            "parts": [
                {
                    "name": p.name,
                    "images": list(p.images),
                    "boxes": [[b.top, b.left, b.height, b.width] for b in p.boxes],
                    "delta": self.delta[p.name],
                    "delta_raw": self.raw[p.name],
                    "delta_per_pair": {
                        ly: v / (len(p.images) * (len(p.images) - 1))
                        for ly, v in self.delta[p.name].items()
                    },
                    "control": {ly: stats(v) for ly, v in self.control[p.name].items()},
                    "control_values": self.control[p.name],
                    "control_raw": self.control_raw[p.name],
                }
                for p in self.parts
            ],
        }


def _check_image(dataset: Any, index: int) -> Tensor:
    try:
        item = dataset[index]
    except (IndexError, KeyError) as exc:
        raise ParameterError("images", f"dataset indices 0..{len(dataset) - 1}", index) from exc
    x = item[0] if isinstance(item, (tuple, list)) else item
    if not isinstance(x, Tensor) or x.dim() != 3:
        raise ParameterError("dataset", "items whose image is a tensor (C, H, W)", type(x))
    return x


def _occluded(images: Tensor, boxes: Sequence[Box], fill: Any) -> Tensor:
    out = []
    for x, b in zip(images, boxes):
        out.append(occlude(x, torch.tensor([[b.top, b.left]]), (b.height, b.width), fill)[0])
    return torch.stack(out)


def correspondence(
    model: Any,
    dataset: Any,
    parts: Sequence[Part],
    layers: Sequence[str],
    *,
    repeats: int = 10,
    seed: int = 0,
    zero: str = "value",
    fill: float | Sequence[float] = 0.0,
    progress: bool | None = False,
) -> CorrespondenceResult:
    """Δ_l of each part at each of ``layers`` and of ``repeats`` random-box controls
    (same images, same box size, positions drawn with a generator seeded with ``seed``).
    ``fill``: the occluder's value in the model's input units (0 = the mean of a normalised
    input, the paper's grey square). ``progress``: a bar over parts × (1 + repeats).
    """
    net = model if isinstance(model, nn.Module) else getattr(model, "model", None)
    if not isinstance(net, nn.Module):
        raise ParameterTypeError("model", "an nn.Module or a LoadedModel", model)
    if zero not in ZERO_MODES:
        raise ParameterError("zero", f"one of {', '.join(ZERO_MODES)}", zero)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ParameterError("repeats", "a positive int", repeats)
    if isinstance(layers, str):
        layers = [s for s in layers.split(",") if s]
    layers = tuple(layers)
    if not layers:
        raise ParameterError("layers", "at least one layer", list(layers))
    parts = list(parts)
    if not parts or not all(isinstance(p, Part) for p in parts):
        raise ParameterError("parts", "at least one Part", parts)
    if len({p.name for p in parts}) != len(parts):
        raise ParameterError("parts", "distinct part names", [p.name for p in parts])
    first = next(net.parameters(), None)
    fill_value: Any = fill if isinstance(fill, (int, float)) else list(fill)
    gen = torch.Generator().manual_seed(seed)
    loaded = {}
    for p in parts:  # validate everything before the work starts
        images = torch.stack([_check_image(dataset, i) for i in p.images])
        for i, b in zip(p.images, p.boxes):
            b.check(images.shape[2:], f"box of image {i} ({p.name})")
        loaded[p.name] = images

    def deltas(images: Tensor, occluded: Tensor) -> tuple[dict[str, float], dict[str, float]]:
        feats, _ = layer_features(net, images, layers)
        hidden, _ = layer_features(net, occluded, layers)
        norm, raw = {}, {}
        for ly in layers:
            signs = torch.sign(feats[ly] - hidden[ly])
            norm[ly] = sign_change(signs, zero=zero)
            raw[ly] = sign_change(signs, normalize=False, zero=zero)
        return norm, raw

    delta: dict[str, dict[str, float]] = {}
    raw: dict[str, dict[str, float]] = {}
    control: dict[str, dict[str, list[float]]] = {}
    control_raw: dict[str, dict[str, list[float]]] = {}
    with progress_bar("correspondence", len(parts) * (1 + repeats), enabled=progress) as bar:
        for p in parts:
            images = loaded[p.name]
            if first is not None:
                images = images.to(first.device, first.dtype)
            delta[p.name], raw[p.name] = deltas(images, _occluded(images, p.boxes, fill_value))
            bar.advance()
            control[p.name] = {ly: [] for ly in layers}
            control_raw[p.name] = {ly: [] for ly in layers}
            for _ in range(repeats):
                boxes = random_boxes(images.shape[2:], p.size, len(p.images), gen)
                norm_r, raw_r = deltas(images, _occluded(images, boxes, fill_value))
                for ly in layers:
                    control[p.name][ly].append(norm_r[ly])
                    control_raw[p.name][ly].append(raw_r[ly])
                bar.advance()
    fills = [float(fill)] if isinstance(fill, (int, float)) else [float(f) for f in fill]
    return CorrespondenceResult(
        layers, parts, delta, raw, control, control_raw, zero, fills, seed, repeats
    )


def correspondence_table(result: CorrespondenceResult, *, raw: bool = False) -> str:
    """Table 1 as text: per part its Δ and the random control's mean ± std, per layer
    (``raw``: the unnormalised counts)."""
    kind = "raw counts" if raw else "normalised Hamming"
    digits = 1 if raw else 4
    rows: list[list[str]] = [["part", "images", *result.layers]]
    for p in result.parts:
        values = result.raw[p.name] if raw else result.delta[p.name]
        rows.append(
            [p.name, str(len(p.images)), *(f"{values[ly]:.{digits}f}" for ly in result.layers)]
        )
        ctrl = result.control_raw[p.name] if raw else result.control[p.name]
        cells = []
        for ly in result.layers:
            t = torch.tensor(ctrl[ly], dtype=torch.float64)
            std = float(t.std(unbiased=True)) if len(t) > 1 else 0.0
            cells.append(f"{float(t.mean()):.{digits}f} ± {std:.{digits}f}")
        rows.append([f"  random {p.size[0]}×{p.size[1]} box", str(len(p.images)), *cells])
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = [
        "Mean feature sign change Δ_l (Zeiler & Fergus §4.3, Table 1): "
        f"{kind}, sign(0) {'as its own value' if result.zero == 'value' else 'dropped'}; "
        f"random control: mean ± std over {result.repeats} repeats (seed {result.seed})"
    ]
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [r[c].rjust(widths[c]) for c in range(1, len(r))]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def correspondence_figure(result: CorrespondenceResult, dataset: Any = None) -> Any:
    """Bars per layer: each part's Δ beside its random control (mean ± std); with
    ``dataset``, a row of the parts' first images with their boxes drawn."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n_layers = len(result.layers)
    extra = 1 if dataset is not None else 0
    fig = plt.figure(figsize=(max(6.0, 1.6 * len(result.parts) + 1), 2.8 * n_layers + 1.9 * extra))
    grid = fig.add_gridspec(
        n_layers + extra, max(1, len(result.parts)), height_ratios=[1.0] * extra + [1.6] * n_layers
    )
    if dataset is not None:
        for k, p in enumerate(result.parts):
            ax = fig.add_subplot(grid[0, k])
            x = _check_image(dataset, p.images[0]).detach().to(torch.float64)
            shown = x.permute(1, 2, 0).numpy() if x.shape[0] == 3 else x.mean(0).numpy()
            if x.shape[0] == 3:
                lo, hi = shown.min(), shown.max()
                shown = (shown - lo) / (hi - lo) if hi > lo else shown * 0 + 0.5
            ax.imshow(shown, cmap="gray", interpolation="nearest")
            b = p.boxes[0]
            ax.add_patch(
                Rectangle(
                    (b.left - 0.5, b.top - 0.5),
                    b.width,
                    b.height,
                    fill=False,
                    edgecolor="#d62728",
                    lw=1.5,
                )
            )
            ax.set_title(p.name, fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    xs = torch.arange(len(result.parts), dtype=torch.float64)
    for r, ly in enumerate(result.layers):
        ax = fig.add_subplot(grid[extra + r, :])
        part_vals = [result.delta[p.name][ly] for p in result.parts]
        ctrl = [torch.tensor(result.control[p.name][ly], dtype=torch.float64) for p in result.parts]
        means = [float(c.mean()) for c in ctrl]
        stds = [float(c.std(unbiased=True)) if len(c) > 1 else 0.0 for c in ctrl]
        ax.bar((xs - 0.2).tolist(), part_vals, width=0.38, color="#1f77b4", label="part occluded")
        ax.bar(
            (xs + 0.2).tolist(),
            means,
            width=0.38,
            yerr=stds,
            capsize=3,
            color="#bbbbbb",
            label=f"random box (mean ± std, {result.repeats} repeats)",
        )
        ax.set_xticks(xs.tolist())
        ax.set_xticklabels([p.name for p in result.parts], fontsize=7)
        ax.set_ylabel(f"Δ at {ly}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, axis="y", lw=0.3, alpha=0.5)
        if r == 0:
            ax.legend(fontsize=7, frameon=False, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2)
    fig.suptitle(
        "Correspondence (Zeiler & Fergus §4.3): lower Δ than the random control = the layer "
        "corresponds the part across images",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig
