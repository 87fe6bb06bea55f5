"""The report's sections from computed results: a layer's page (Fig. 2), the filters (Fig. 6)
and occlusion (Fig. 7) of Zeiler & Fergus (arXiv:1311.2901), as :mod:`convlens.report.data`.

Each function turns tensors into the plain dataclasses the templates render: pictures as
uint8 arrays (:mod:`convlens.report.pictures`), numbers, and names from the dataset.

>>> import torch.nn as nn
>>> describe_module(nn.Conv2d(1, 32, 5, padding=2))
'Conv2d 1→32, kernel 5×5, stride 1, padding 2'
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from convlens.analysis.filters import filter_arrays, filter_statistics, first_conv
from convlens.analysis.occlusion import occlude, occlusion_maps
from convlens.errors import ParameterError
from convlens.progress import track
from convlens.report.data import (
    ChannelBlock,
    FilterSection,
    LayerSection,
    LegendEntry,
    OcclusionItem,
    OcclusionSection,
    Panel,
    Table,
    Tile,
)
from convlens.report.pictures import (
    align_map,
    class_colors,
    colormap_picture,
    hex_to_rgb,
    patch_pictures,
    projection_picture,
)
from convlens.scan import LayerProjections
from convlens.scan.data import first_tensor, item_label, item_name, label_name, spread_over_labels

__all__ = [
    "RMS_LIMIT",
    "default_occlusion_geometry",
    "describe_module",
    "filter_section",
    "layer_section",
    "occlusion_section",
]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: RMS above which Zeiler & Fergus renormalise a first-layer filter (Sec. 3).
RMS_LIMIT = 0.1


def _times(values: Sequence[int]) -> str:
    return "×".join(str(v) for v in values)


def _compact(values: Sequence[int]) -> str:
    return str(values[0]) if len(set(values)) == 1 else _times(values)


def describe_module(module: nn.Module) -> str:
    """A one-line description of a layer for people (its type otherwise)."""
    if isinstance(module, _CONV):
        pad = module.padding if isinstance(module.padding, str) else _compact(module.padding)
        parts = [
            f"{type(module).__name__} {module.in_channels}→{module.out_channels}",
            f"kernel {_times(module.kernel_size)}",
            f"stride {_compact(module.stride)}",
            f"padding {pad}",
        ]
        if any(d != 1 for d in module.dilation):
            parts.append(f"dilation {_compact(module.dilation)}")
        if module.groups != 1:
            parts.append(f"groups {module.groups}")
        return ", ".join(parts)
    return type(module).__name__


def layer_section(
    name: str,
    module: nn.Module,
    count: int,
    projected: LayerProjections,
    dataset: Any,
    names: Sequence[str] | None,
    value_range: tuple[float, float],
    receptive: str | None,
) -> LayerSection:
    """One layer's page from its :class:`convlens.scan.LayerProjections` (one block per
    projected channel: the top-k projections beside their input patches, Fig. 2)."""
    blocks = []
    for row, channel in enumerate(projected.channels):
        tiles = []
        patch_px = patch_pictures(projected.patches[row], *value_range)
        for k in range(int(projected.indices.shape[1])):
            index = int(projected.indices[row, k])
            if index < 0:
                continue
            tiles.append(
                Tile(
                    projection=projection_picture(projected.projections[row, k]),
                    patch=patch_px[k],
                    value=float(projected.values[row, k]),
                    rank=k,
                    image_name=item_name(dataset, index),
                    label=label_name(item_label(dataset, index, read=False), names),
                    position=tuple(int(v) for v in projected.positions[row, k].tolist()),
                )
            )
        note = None
        if tiles and max(t.value for t in tiles) <= 0:
            note = "never positive on this dataset: a ReLU after it would keep it at zero"
        blocks.append(ChannelBlock(channel=int(channel), tiles=tuple(tiles), note=note))
    return LayerSection(
        name=name,
        description=describe_module(module),
        channels_total=count,
        blocks=tuple(blocks),
        receptive_field=receptive,
    )


def filter_section(model: nn.Module) -> FilterSection | None:
    """The first convolution's filters as pictures, each stretched on its own (Fig. 6), and
    statistics of every convolution's filters (RMS, norms, and the share above the RMS of 0.1
    at which Zeiler & Fergus renormalise, Sec. 3); None for a model without convolutions.

    >>> section = filter_section(nn.Sequential(nn.Conv2d(3, 4, 3)))
    >>> len(section.filters), section.stats.rows[0][:3]
    (4, ('0', 'Conv2d', '4×3×3×3'))
    """
    stats = filter_statistics(model, cap=RMS_LIMIT)
    if not stats:
        return None
    rows = tuple(
        (
            s.path,
            s.module_type,
            _times(s.shape),
            s.parameters,
            float(s.rms.min()),
            float(s.rms.mean()),
            float(s.rms.max()),
            float(s.norm.mean()),
            s.max_abs,
            f"{s.fraction_above_cap:.0%}",
        )
        for s in stats
    )
    name, module = first_conv(model)
    pictures: tuple[np.ndarray, ...] = ()
    note = None
    try:
        weight = module.weight
        if not isinstance(weight, Tensor):
            raise ParameterError("model", "a first conv layer with a weight tensor", name)
        pictures = tuple(filter_arrays(weight.detach().cpu(), stretch="minmax"))
    except ParameterError as exc:
        note = f"no pictures of these filters: {exc}"
    header = (
        "layer",
        "type",
        "weight shape",
        "parameters",
        "RMS min",
        "RMS mean",
        "RMS max",
        "mean L2 norm",
        "max |w|",
        f"RMS > {RMS_LIMIT}",
    )
    return FilterSection(
        layer=name,
        filters=pictures,
        captions=tuple(str(i) for i in range(len(pictures))),
        stats=Table(header, rows),
        note=note,
    )


def default_occlusion_geometry(height: int, width: int) -> tuple[int, int]:
    """Square size (a third of the shorter side) and stride (a sixteenth) for an image.

    >>> default_occlusion_geometry(28, 28), default_occlusion_geometry(224, 224)
    ((9, 1), (74, 14))
    """
    side = min(height, width)
    return max(1, side // 3), max(1, side // 16)


def occlusion_section(
    net: nn.Module,
    dataset: Any,
    *,
    images: int = 3,
    size: int | None = None,
    stride: int | None = None,
    class_names: Sequence[str] | None = None,
    value_range: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 64,
    progress: bool = False,
    skip: Sequence[int] = (),
    device: str | torch.device | None = None,
    use_labels: bool = True,
    label_names: Sequence[str] | None = None,
) -> OcclusionSection | None:
    """Figure 7 (a)–(e) for ``images`` images of ``dataset`` (one of each label first:
    :func:`convlens.scan.data.spread_over_labels`), from
    :func:`convlens.analysis.occlusion_maps`; None when ``images`` is 0 or the inputs are no
    images (C, H, W).

    A grey square (0 in the model's input units: the mean for a mean-normalised input) of
    ``size`` pixels moves by ``stride``; the maps are over square positions. Images without a
    label use the class the model predicts for the unoccluded image, and so do all images
    when the dataset's labels are not the model's classes (``use_labels=False``; each image
    is then shown with its own label, named by ``label_names``). ``class_names`` name the
    model's classes.
    """
    if images <= 0:
        return None
    picked = spread_over_labels(dataset, images, skip)
    items = []
    layer = ""
    square = stride_used = 0
    for index in track(picked, "occlusion", enabled=progress):
        x = first_tensor(dataset[index])
        if x.dim() != 3:
            return None
        if device is not None:
            x = x.to(device)
        h, w = int(x.shape[-2]), int(x.shape[-1])
        d_size, d_stride = default_occlusion_geometry(h, w)
        square = min(size or d_size, h, w)
        stride_used = stride or d_stride
        items.append(
            _occlusion_item(
                net,
                dataset,
                index,
                x,
                square,
                stride_used,
                class_names,
                value_range,
                batch_size,
                use_labels,
                label_names,
            )
        )
        layer = items[-1][1]
    return OcclusionSection(
        layer=layer, square=square, stride=stride_used, items=tuple(item for item, _ in items)
    )


def _occlusion_item(
    net: nn.Module,
    dataset: Any,
    index: int,
    x: Tensor,
    square: int,
    stride: int,
    class_names: Sequence[str] | None,
    value_range: tuple[float, float],
    batch_size: int,
    use_labels: bool = True,
    label_names: Sequence[str] | None = None,
) -> tuple[OcclusionItem, str]:
    """The five panels of Fig. 7 for one image, and the layer watched."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    label = item_label(dataset, index) if use_labels else None
    note = None
    if label is None:
        with torch.no_grad():
            label = int(net(x.unsqueeze(0)).argmax(1)[0])
        why = "no label" if use_labels else "the dataset's classes are not the model's"
        note = f"{why}: (d) is the probability of the class predicted for the whole image"
    res = occlusion_maps(
        net, x, label, size=square, stride=stride, batch_size=batch_size, project=True
    )
    shown_label = label_name(label, class_names)
    # (a) the input, with the square where the correct class's probability is lowest
    worst = int(res.probability.flatten().argmin())
    covered = occlude(x.cpu(), res.positions[worst : worst + 1], square, 0.0)[0]
    a = patch_pictures(covered.unsqueeze(0), *value_range)[0]
    amax, amin = float(res.activation.max()), float(res.activation.min())
    classes = sorted(
        {int(c) for c in res.predicted.flatten().tolist()} | {res.unoccluded_predicted}
    )
    colors = class_colors(classes, len(class_names) if class_names else None)
    e = np.zeros((*res.predicted.shape, 3), dtype=np.uint8)
    for c, color in colors.items():
        e[(res.predicted == c).cpu().numpy()] = hex_to_rgb(color)
    rows, cols = res.probability.shape
    grid = f"{rows}×{cols} positions"
    aligned = functools.partial(align_map, size=square, stride=stride, image_size=(h, w))
    panels = (
        Panel("a", "input", a, f"square where p({shown_label}) is lowest"),
        Panel(
            "b",
            f"total activation of map {res.channel}",
            aligned(colormap_picture(res.activation, amin, amax)),
            f"{grid}; dark {amin:.3g} … bright {amax:.3g}; unoccluded "
            f"{res.unoccluded_activation:.3g}",
        ),
        Panel(
            "c",
            f"projection of map {res.channel}",
            projection_picture(res.projection) if res.projection is not None else a,
            "deconvnet, strongest unit, unoccluded image",
        ),
        Panel(
            "d",
            f"p({shown_label})",
            aligned(colormap_picture(res.probability, 0.0, 1.0)),
            f"{grid}; dark 0 … bright 1; unoccluded {res.unoccluded_probability:.3f}",
        ),
        Panel(
            "e",
            "most probable class",
            aligned(e),
            f"{grid}; unoccluded: {label_name(res.unoccluded_predicted, class_names)}",
        ),
    )
    legend = tuple(LegendEntry(colors[c], label_name(c, class_names) or str(c)) for c in classes)
    own = shown_label if use_labels else label_name(item_label(dataset, index), label_names)
    item = OcclusionItem(item_name(dataset, index), own, panels, legend, note)
    return item, res.layer
