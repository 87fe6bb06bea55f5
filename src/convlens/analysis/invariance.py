"""Invariance of features to translation, scale and rotation (Zeiler & Fergus,
arXiv:1311.2901, §4.4, Fig. 5).

For a few images and a range of amounts of three transformations (vertical translation,
scaling, rotation), the Euclidean distance between the feature vector (a layer's output,
flattened) of the original and of the transformed image at a low and a high layer, the
distance divided by the original vector's norm, and the probability of the true class.

Transforms are torchvision's ``transforms.v2.functional`` on the batch of images, one call
per amount. Policy: the output has the input's size; translation moves the image down by an
integer number of pixels (negative: up; nearest interpolation, so pixels are copied exactly);
scaling zooms about the image centre (factor > 1 crops the border away, < 1 shrinks the image
inside the frame); rotation turns about the centre, counter-clockwise in degrees, without
expanding the frame; scale and rotation interpolate bilinearly. Pixels that come from outside
the image get ``fill``, in the model's input units (after preprocessing: for a normalised
model, 0 is the dataset mean; :func:`background_fill` gives the value of a black pixel). The
identity amount (0 px, factor 1, 0°) returns the images unchanged.

>>> import torch, torch.nn as nn
>>> net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3))
>>> res = invariance(net, torch.rand(2, 1, 4, 4), torch.tensor([0, 2]), ("1", "3"),
...                  amounts={"translate": [-1, 0, 1]})
>>> res.distance["translate"]["1"].shape, float(res.distance["translate"]["1"][1].abs().max())
(torch.Size([3, 2]), 0.0)
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from convlens.deconvnet.project import eval_mode
from convlens.deconvnet.rules import capture_outputs, check_seen
from convlens.errors import ParameterError, ParameterTypeError
from convlens.progress import progress_bar

__all__ = [
    "IDENTITY",
    "TRANSFORMS",
    "InvarianceResult",
    "background_fill",
    "default_amounts",
    "invariance",
    "invariance_figure",
    "layer_features",
    "transform_images",
]

#: The transformations of Fig. 5, in the paper's column order.
TRANSFORMS = ("translate", "scale", "rotate")
#: The amount of each transformation that changes nothing.
IDENTITY = {"translate": 0.0, "scale": 1.0, "rotate": 0.0}
_UNITS = {
    "translate": "vertical translation (pixels, + = down)",
    "scale": "scale factor",
    "rotate": "rotation (degrees, counter-clockwise)",
}


def default_amounts(size: Sequence[int]) -> dict[str, list[float]]:
    """The default ranges for an image of ``size`` (H, W): translation by every integer up
    to a quarter of the height each way, scale 0.6 to 1.6 in steps of 0.1, rotation 0° to 360°
    in steps of 15°.

    >>> {k: (v[0], v[-1], len(v)) for k, v in default_amounts((28, 28)).items()}
    {'translate': (-7.0, 7.0, 15), 'scale': (0.6, 1.6, 11), 'rotate': (0.0, 360.0, 25)}
    """
    reach = max(1, round(int(size[0]) / 4))
    return {
        "translate": [float(t) for t in range(-reach, reach + 1)],
        "scale": [round(0.6 + 0.1 * i, 10) for i in range(11)],
        "rotate": [15.0 * i for i in range(25)],
    }


def background_fill(preprocess: Any, size: Sequence[int], mode: str = "L") -> list[float]:
    """The model-input value of a black pixel: ``preprocess`` applied to a black PIL image of
    ``size`` (H, W), read at its corner, one value per channel.

    >>> background_fill(lambda im: torch.zeros(1, *im.size[::-1]) - 0.5, (4, 4))
    [-0.5]
    """
    from PIL import Image

    picture = Image.new(mode, (int(size[1]), int(size[0])))
    x = preprocess(picture)
    if not isinstance(x, Tensor) or x.dim() != 3:
        raise ParameterError("preprocess", "a function PIL image -> tensor (C, H, W)", type(x))
    return [float(v) for v in x[:, 0, 0]]


def _check_amounts(kind: str, amounts: Sequence[float]) -> list[float]:
    if kind not in TRANSFORMS:
        raise ParameterError("transform", f"one of {', '.join(TRANSFORMS)}", kind)
    values = [float(a) for a in amounts]
    if not values:
        raise ParameterError(f"amounts[{kind!r}]", "at least one amount", list(amounts))
    for a in values:
        if not math.isfinite(a):
            raise ParameterError(f"amounts[{kind!r}]", "finite numbers", a)
        if kind == "translate" and a != round(a):
            raise ParameterError("amounts['translate']", "whole pixels", a)
        if kind == "scale" and a <= 0:
            raise ParameterError("amounts['scale']", "positive factors", a)
    return values


def transform_images(
    images: Tensor, kind: str, amount: float, fill: float | Sequence[float] = 0.0
) -> Tensor:
    """``images`` (N, C, H, W) transformed by ``amount`` of ``kind`` (see the module's policy),
    same size, ``fill`` outside.

    >>> x = torch.arange(9.0).view(1, 1, 3, 3)
    >>> transform_images(x, "translate", 1, fill=-1.0)[0, 0].tolist()
    [[-1.0, -1.0, -1.0], [0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    (value,) = _check_amounts(kind, [amount])
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ParameterError("images", "a tensor (N, C, H, W)", getattr(images, "shape", images))
    if value == IDENTITY[kind]:
        return images.clone()
    fill_list = [float(fill)] if isinstance(fill, (int, float)) else [float(f) for f in fill]
    if len(fill_list) not in (1, images.shape[1]):
        raise ParameterError("fill", f"a number or {images.shape[1]} values", fill)
    if kind == "translate":
        return TF.affine(
            images,
            angle=0.0,
            translate=[0, int(value)],
            scale=1.0,
            shear=[0.0, 0.0],
            interpolation=InterpolationMode.NEAREST,
            fill=fill_list,
        )
    if kind == "scale":
        return TF.affine(
            images,
            angle=0.0,
            translate=[0, 0],
            scale=value,
            shear=[0.0, 0.0],
            interpolation=InterpolationMode.BILINEAR,
            fill=fill_list,
        )
    return TF.rotate(
        images, value, interpolation=InterpolationMode.BILINEAR, expand=False, fill=fill_list
    )


def layer_features(
    model: nn.Module, images: Tensor, layers: Sequence[str]
) -> tuple[dict[str, Tensor], Tensor]:
    """The flattened outputs (N, D) of ``layers`` and the model's output (N, classes) for
    ``images``, in one forward pass in eval mode without gradients.

    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    >>> feats, logits = layer_features(net, torch.rand(5, 1, 4, 4), ["1"])
    >>> feats["1"].shape, logits.shape
    (torch.Size([5, 8]), torch.Size([5, 3]))
    """
    with eval_mode(model), torch.no_grad(), capture_outputs(model, list(layers)) as seen:
        logits = model(images)
    check_seen(list(layers), seen)  # each layer ran, once
    feats = {name: seen[name].reshape(len(images), -1).clone() for name in layers}
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        raise ParameterError(
            "model", "a classifier: output (N, classes)", getattr(logits, "shape", logits)
        )
    return feats, logits


@dataclass
class InvarianceResult:
    """Fig. 5's numbers. For each transformation ``kind`` in ``amounts``:
    ``distance[kind][layer]`` and ``normalized[kind][layer]`` (A, N) — ``‖f(x) − f(Tx)‖`` and
    that over ``‖f(x)‖`` (NaN where ``f(x) = 0``) — and ``probability[kind]`` (A, N) of the
    true class, ``predicted[kind]`` (A, N) the most probable class; ``labels`` (N) the true
    classes, ``fill`` and ``policy`` how borders were filled and images cropped."""

    layers: tuple[str, ...]
    amounts: dict[str, list[float]]
    labels: list[int]
    distance: dict[str, dict[str, Tensor]]
    normalized: dict[str, dict[str, Tensor]]
    probability: dict[str, Tensor]
    predicted: dict[str, Tensor]
    fill: list[float]
    images: list[int] = field(default_factory=list)
    class_names: tuple[str, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    policy = (
        "output size = input size; translation: whole pixels, nearest; scale: zoom about the "
        "centre, bilinear; rotation: about the centre, counter-clockwise, no expansion, "
        "bilinear; pixels from outside the image = fill; identity amount = image unchanged"
    )

    def name_of(self, n: int) -> str:
        label = self.labels[n]
        cls = (
            self.class_names[label]
            if self.class_names and 0 <= label < len(self.class_names)
            else str(label)
        )
        which = f"#{self.images[n]}" if self.images else f"image {n}"
        return f"{which} ({cls})"

    def rows(self) -> list[dict[str, Any]]:
        """One row per (transform, amount, image): distances per layer, probability."""
        out = []
        for kind, amounts in self.amounts.items():
            for a, amount in enumerate(amounts):
                for n, label in enumerate(self.labels):
                    row: dict[str, Any] = {
                        "transform": kind,
                        "amount": amount,
                        "image": self.images[n] if self.images else n,
                        "label": label,
                    }
                    for layer in self.layers:
                        row[f"distance[{layer}]"] = float(self.distance[kind][layer][a, n])
                        row[f"normalized[{layer}]"] = float(self.normalized[kind][layer][a, n])
                    row["probability"] = float(self.probability[kind][a, n])
                    row["predicted"] = int(self.predicted[kind][a, n])
                    out.append(row)
        return out

    def csv_text(self) -> str:
        """:meth:`rows` as CSV."""
        rows = self.rows()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()

    def summary(self) -> dict[str, Any]:
        """JSON-ready: settings and, per transformation, the curves."""
        return {
            "format": "convlens-invariance/1",
            "paper": "Zeiler & Fergus, arXiv:1311.2901, §4.4, Fig. 5",
            "layers": list(self.layers),
            "images": self.images,
            "labels": self.labels,
            "class_names": list(self.class_names) if self.class_names else None,
            "fill": self.fill,
            "policy": self.policy,
            "meta": self.meta,
            "transforms": {
                kind: {
                    "amounts": amounts,
                    "unit": _UNITS[kind],
                    "distance": {ly: self.distance[kind][ly].tolist() for ly in self.layers},
                    "normalized": {ly: self.normalized[kind][ly].tolist() for ly in self.layers},
                    "probability": self.probability[kind].tolist(),
                    "predicted": self.predicted[kind].tolist(),
                }
                for kind, amounts in self.amounts.items()
            },
        }


def invariance(
    model: Any,
    images: Tensor,
    labels: Tensor | Sequence[int],
    layers: Sequence[str],
    *,
    amounts: Mapping[str, Sequence[float]] | None = None,
    fill: float | Sequence[float] = 0.0,
    batch_size: int = 256,
    image_ids: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    progress: bool | None = False,
) -> InvarianceResult:
    """Fig. 5 for ``images`` (N, C, H, W) with true classes ``labels`` at ``layers`` (e.g. a
    low and a high one; any number). ``amounts``: ``{kind: [amount, ...]}`` for kinds in
    :data:`TRANSFORMS` (default :func:`default_amounts`). Each amount's transformed images
    go through the model as one batch (split in groups of ``batch_size``, the same groups as
    the originals', so that an unchanged image gives bit-identical features). See the module
    docstring for the border and crop policy. ``progress``: a bar over the amounts.
    """
    net = model if isinstance(model, nn.Module) else getattr(model, "model", None)
    if not isinstance(net, nn.Module):
        raise ParameterTypeError("model", "an nn.Module or a LoadedModel", model)
    if not isinstance(images, Tensor) or images.dim() != 4 or len(images) < 1:
        raise ParameterError(
            "images", "a tensor (N, C, H, W) with N >= 1", getattr(images, "shape", images)
        )
    label_t = torch.as_tensor(labels, dtype=torch.long).flatten()
    if label_t.numel() != len(images):
        raise ParameterError("labels", f"{len(images)} class indices", label_t.numel())
    if isinstance(layers, str):
        layers = [s for s in layers.split(",") if s]
    layers = tuple(layers)
    if not layers:
        raise ParameterError("layers", "at least one layer", list(layers))
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ParameterError("batch_size", "a positive int", batch_size)
    given = default_amounts(images.shape[2:]) if amounts is None else amounts
    plan = {kind: _check_amounts(kind, values) for kind, values in given.items()}
    if not plan:
        raise ParameterError("amounts", "at least one transformation", amounts)
    first = next(net.parameters(), None)
    device = first.device if first is not None else images.device
    x = images.to(device)
    fill_list = [float(fill)] if isinstance(fill, (int, float)) else [float(f) for f in fill]

    groups = [slice(i, i + batch_size) for i in range(0, len(x), batch_size)]

    def forward(batch: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        # the same image groups for originals and transformed images: equal inputs give
        # bit-identical outputs (a matmul's rounding depends on the batch shape)
        parts = [layer_features(net, batch[g], layers) for g in groups]
        feats = {ly: torch.cat([p[0][ly] for p in parts]) for ly in layers}
        return feats, torch.cat([p[1] for p in parts])

    base, base_logits = forward(x)
    if int(label_t.min()) < 0 or int(label_t.max()) >= base_logits.shape[1]:
        raise ParameterError("labels", f"classes 0..{base_logits.shape[1] - 1}", label_t.tolist())
    n = len(images)
    distance: dict[str, dict[str, Tensor]] = {}
    normalized: dict[str, dict[str, Tensor]] = {}
    probability: dict[str, Tensor] = {}
    predicted: dict[str, Tensor] = {}
    norms = {ly: base[ly].norm(dim=1).cpu() for ly in layers}
    lab = label_t.to(device).view(n, 1)
    total = sum(len(v) for v in plan.values())
    with progress_bar("invariance", total, enabled=progress) as bar:
        for kind, values in plan.items():
            dist = {ly: torch.empty(len(values), n, dtype=base[ly].dtype) for ly in layers}
            prob = torch.empty(len(values), n, dtype=base_logits.dtype)
            pred = torch.empty(len(values), n, dtype=torch.long)
            for a, amount in enumerate(values):
                feats, logits = forward(transform_images(x, kind, amount, fill_list))
                for ly in layers:
                    dist[ly][a] = (feats[ly] - base[ly]).norm(dim=1).cpu()
                p = logits.softmax(dim=1)
                prob[a] = p.gather(1, lab)[:, 0].cpu()
                pred[a] = p.argmax(1).cpu()
                bar.advance()
            distance[kind] = dist
            normalized[kind] = {
                ly: torch.where(norms[ly] > 0, dist[ly] / norms[ly], math.nan) for ly in layers
            }
            probability[kind] = prob
            predicted[kind] = pred
    return InvarianceResult(
        layers,
        plan,
        label_t.tolist(),
        distance,
        normalized,
        probability,
        predicted,
        fill_list,
        list(image_ids) if image_ids is not None else [],
        tuple(class_names) if class_names is not None else None,
        {"batch_size": batch_size, "dtype": str(base_logits.dtype)},
    )


def invariance_figure(
    result: InvarianceResult, *, normalized: bool = False, title: str | None = None
) -> Any:
    """Fig. 5 as a matplotlib Figure: one column per transformation; rows: distance at each
    layer (normalised by ``‖f(x)‖`` with ``normalized=True``), then the true-class
    probability; one line per image."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    kinds = list(result.amounts)
    nrows = len(result.layers) + 1
    fig, axes = plt.subplots(
        nrows, len(kinds), figsize=(3.4 * len(kinds), 2.3 * nrows), squeeze=False
    )
    cmap = plt.get_cmap("tab10")
    source = result.normalized if normalized else result.distance
    what = "‖f(x)−f(Tx)‖ / ‖f(x)‖" if normalized else "‖f(x)−f(Tx)‖"
    for c, kind in enumerate(kinds):
        xs = result.amounts[kind]
        for r, layer in enumerate(result.layers):
            ax = axes[r][c]
            for n in range(len(result.labels)):
                ax.plot(
                    xs,
                    source[kind][layer][:, n].tolist(),
                    color=cmap(n % 10),
                    lw=1.2,
                    marker=".",
                    ms=3,
                )
            if c == 0:
                ax.set_ylabel(f"{layer}\n{what}", fontsize=8)
            if r == 0:
                ax.set_title(_UNITS[kind], fontsize=9)
        ax = axes[-1][c]
        for n in range(len(result.labels)):
            ax.plot(
                xs,
                result.probability[kind][:, n].tolist(),
                color=cmap(n % 10),
                lw=1.2,
                marker=".",
                ms=3,
                label=result.name_of(n),
            )
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel(_UNITS[kind], fontsize=8)
        if c == 0:
            ax.set_ylabel("P(true class)", fontsize=8)
        for r in range(nrows):
            axes[r][c].tick_params(labelsize=7)
            axes[r][c].grid(True, lw=0.3, alpha=0.5)
    handles, names = axes[-1][0].get_legend_handles_labels()
    fig.legend(
        handles, names, loc="lower center", ncol=min(5, len(names)), fontsize=7, frameon=False
    )
    default = "Invariance (Zeiler & Fergus Fig. 5)" + (
        ": distances divided by ‖f(x)‖" if normalized else ""
    )
    fig.suptitle(title or default, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    return fig
