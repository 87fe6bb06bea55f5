"""Fill a :class:`~convlens.report.data.ReportData` from a model and a dataset.

The steps, each timed and each with a progress bar when asked: the scan for the top-k images of
every channel (:func:`convlens.scan.scan`), their deconvnet projections and receptive-field
patches (:func:`convlens.scan.project_top`), the first layer's filters and every layer's filter
statistics, occlusion sensitivity for a few images, and the accuracy where the dataset's classes
are the model's. Zeiler & Fergus, arXiv:1311.2901, Figures 2, 6 and 7.

>>> import torch, torch.nn as nn
>>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
>>> conv_layers(net)
['0']
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from convlens.errors import ParameterError, ParameterTypeError
from convlens.layer_paths import find_modules
from convlens.progress import progress_bar, track
from convlens.report.data import (
    ChannelBlock,
    FilterSection,
    LayerSection,
    LegendEntry,
    OcclusionItem,
    OcclusionSection,
    Panel,
    ReportData,
    Summary,
    Table,
    Tile,
)
from convlens.report.render import check_out, write_report

__all__ = [
    "assemble_report",
    "build_report",
    "conv_layers",
    "describe_module",
    "filter_section",
    "patch_pictures",
    "projection_picture",
]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: RMS above which Zeiler & Fergus renormalise a first-layer filter (Sec. 3).
RMS_LIMIT = 0.1


def conv_layers(model: nn.Module) -> list[str]:
    """Paths of the convolution modules of ``model``, in registration order (the default
    layers of a report)."""
    return [name for name, m in model.named_modules() if isinstance(m, _CONV)]


def _times(values: Sequence[int]) -> str:
    return "×".join(str(v) for v in values)


def _compact(values: Sequence[int]) -> str:
    return str(values[0]) if len(set(values)) == 1 else _times(values)


def describe_module(module: nn.Module) -> str:
    """A one-line description of a layer for people.

    >>> describe_module(nn.Conv2d(1, 32, 5, padding=2))
    'Conv2d 1→32, kernel 5×5, stride 1, padding 2'
    """
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


# --------------------------------------------------------------------------------- pictures


def projection_picture(projection: Tensor) -> np.ndarray:
    """A projection ``(C, *spatial)`` as uint8 pixels, contrast-stretched on its own with zero
    at mid-grey (the paper's display; :func:`convlens.deconvnet.display.stretch`)."""
    from convlens.deconvnet.display import to_image

    return np.asarray(to_image(projection.detach().cpu()))


def patch_pictures(patches: Tensor, low: float, high: float) -> np.ndarray:
    """Input patches ``(N, C, h, w)`` as uint8 pixels ``(N, h, w)`` or ``(N, h, w, 3)``,
    mapped linearly from ``[low, high]`` (one range for the whole report, so an image looks
    the same everywhere).

    >>> patch_pictures(torch.tensor([[[[0.0, 1.0]]]]), 0.0, 1.0).tolist()
    [[[0, 255]]]
    """
    x = patches.detach().cpu().to(torch.float64)
    if x.shape[1] not in (1, 3):
        x = x.mean(1, keepdim=True)
    span = high - low if high > low else 1.0
    scaled = ((x - low) / span * 255).round().clamp(0, 255).to(torch.uint8)
    pixels: np.ndarray = scaled.permute(0, 2, 3, 1).numpy()
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


# ---------------------------------------------------------------------------------- filters


def filter_section(model: nn.Module) -> FilterSection | None:
    """The first convolution's filters as pictures, each stretched on its own (Fig. 6), and
    statistics of every convolution's filters (RMS, norms, and the share above the RMS of 0.1
    at which Zeiler & Fergus renormalise, Sec. 3); None for a model without convolutions.

    >>> section = filter_section(nn.Sequential(nn.Conv2d(3, 4, 3)))
    >>> len(section.filters), section.stats.rows[0][:3]
    (4, ('0', 'Conv2d', '4×3×3×3'))
    """
    from convlens.analysis.filters import filter_images, filter_statistics, first_conv

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
        tiles = filter_images(weight.detach().cpu(), stretch="minmax")
    except ParameterError as exc:
        note = f"no pictures of these filters: {exc}"
    else:
        pixels = (tiles * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        pictures = tuple(p[..., 0] if p.shape[-1] == 1 else p for p in pixels)
    return FilterSection(
        layer=name,
        filters=pictures,
        captions=tuple(str(i) for i in range(len(pictures))),
        stats=Table(
            (
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
            ),
            rows,
        ),
        note=note,
    )


# ------------------------------------------------------------------------------- assembling


class _Clock:
    def __init__(self) -> None:
        self.timings: list[tuple[str, float]] = []

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings.append((name, time.perf_counter() - start))


def _unwrap(model: Any) -> tuple[nn.Module, dict[str, Any]]:
    net = getattr(model, "model", model)
    if not isinstance(net, nn.Module):
        raise ParameterTypeError("model", "an nn.Module or a LoadedModel", model)
    info = {
        "name": getattr(model, "name", type(net).__name__),
        "source": getattr(model, "source", None),
        "weights_sha256": getattr(model, "weights_sha256", None),
        "class_names": getattr(model, "class_names", None),
        "input_size": getattr(model, "input_size", None),
    }
    return net, info


def _class_names(dataset: Any) -> list[str] | None:
    for attr in ("class_names", "classes"):
        names = getattr(dataset, attr, None)
        if isinstance(names, Sequence) and not isinstance(names, str) and names:
            return [str(n) for n in names]
    return None


def _label_of(dataset: Any, index: int) -> int | None:
    labels = getattr(dataset, "labels", None)
    if labels is not None:
        try:
            value = int(labels[index])
        except (TypeError, ValueError, IndexError):
            return None
        return value if value >= 0 else None
    return None


def _name_of(dataset: Any, index: int) -> str:
    from convlens.scan.data import dataset_path

    return dataset_path(dataset, index) or f"item {index}"


def _label_text(label: int | None, names: Sequence[str] | None) -> str | None:
    if label is None:
        return None
    if names is not None and 0 <= label < len(names):
        return names[label]
    return str(label)


def _check_channels(channels: Sequence[int] | None, counts: dict[str, int]) -> None:
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


def _receptive_sizes(net: nn.Module, layers: Sequence[str]) -> dict[str, str]:
    """Receptive-field sizes by layer (they do not depend on the input size)."""
    try:
        from convlens.arithmetic.receptive import receptive_fields

        fields = receptive_fields(net, None)
    except Exception:  # receptive fields are a caption: a model they cannot walk gets none
        return {}
    by_path = {f.path: f for f in fields}
    return {name: f"{_times(by_path[name].size)} px" for name in layers if name in by_path}


def _input_range(dataset: Any, indices: Sequence[int]) -> tuple[float, float]:
    low, high = math.inf, -math.inf
    for i in indices:
        x = dataset[i]
        x = x[0] if isinstance(x, (tuple, list)) else x
        low, high = min(low, float(x.min())), max(high, float(x.max()))
    return (low, high) if low < high else (0.0, 1.0)


def assemble_report(
    model: Any,
    dataset: Any,
    *,
    command: str,
    dataset_name: str,
    layers: Sequence[str] | None = None,
    channels: Sequence[int] | None = None,
    top: int = 9,
    rule: str = "deconvnet",
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = False,
    warnings: Sequence[str] = (),
    facts: Sequence[tuple[str, str]] = (),
    occlusion_images: int = 3,
    occlusion_size: int | None = None,
    occlusion_stride: int | None = None,
    accuracy: bool | None = None,
    scan_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
) -> ReportData:
    """Everything the report shows for ``model`` (an ``nn.Module`` or a ``LoadedModel``) on
    ``dataset`` (a map-style dataset of ``(input, label)``).

    ``layers`` default to every convolution; ``channels`` to all of each layer. Occlusion
    (:func:`occlusion_section`) runs on ``occlusion_images`` images. ``accuracy``: measure the
    model's accuracy on the dataset; by default only when the dataset's class names are the
    model's (so its labels are the model's class indices). ``scan_dir``: where the scan
    checkpoints (and ``resume`` continues from), as in :func:`convlens.scan.run.scan`.
    """
    from convlens.deconvnet.project import eval_mode

    net, info = _unwrap(model)
    with eval_mode(net):
        return _assemble(
            net, info, dataset, command=command, dataset_name=dataset_name, layers=layers,
            channels=channels, top=top, rule=rule, batch_size=batch_size, device=device,
            progress=progress, warnings=warnings, facts=facts,
            occlusion_images=occlusion_images, occlusion_size=occlusion_size,
            occlusion_stride=occlusion_stride, accuracy=accuracy, scan_dir=scan_dir,
            resume=resume,
        )  # fmt: skip


def _assemble(
    net: nn.Module,
    info: dict[str, Any],
    dataset: Any,
    *,
    command: str,
    dataset_name: str,
    layers: Sequence[str] | None,
    channels: Sequence[int] | None,
    top: int,
    rule: str,
    batch_size: int,
    device: str | torch.device,
    progress: bool,
    warnings: Sequence[str],
    facts: Sequence[tuple[str, str]],
    occlusion_images: int,
    occlusion_size: int | None,
    occlusion_stride: int | None,
    accuracy: bool | None,
    scan_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
) -> ReportData:
    from convlens.scan import project_top, scan

    clock = _Clock()
    modules = dict(net.named_modules())
    chosen = list(layers) if layers else conv_layers(net)
    if not chosen:
        raise ParameterError("layers", "a model with at least one convolution", info["name"])
    find_modules(net, chosen, "layers")
    # fail before the scan where the channel counts are known from the modules
    _check_channels(
        channels,
        {n: int(modules[n].out_channels) for n in chosen if isinstance(modules[n], _CONV)},
    )
    with clock.step(f"scan ({len(dataset)} images)"):
        result = scan(
            net,
            dataset,
            chosen,
            top=top,
            batch_size=batch_size,
            device=device,
            progress=progress,
            out=scan_dir,
            resume=resume and scan_dir is not None and Path(scan_dir).is_dir(),
        )
    counts = {name: int(result.layers[name].values.shape[0]) for name in chosen}
    _check_channels(channels, counts)
    with clock.step("projections and patches"):
        projected = _project_in_chunks(
            project_top, net, dataset, result, chosen, counts, channels, rule, device, progress
        )

    names = info["class_names"] or _class_names(dataset)
    used = sorted(
        {
            int(i)
            for name in chosen
            for i in result.layers[name].indices.flatten().tolist()
            if i >= 0
        }
    )
    low, high = _input_range(dataset, used[:256]) if used else (0.0, 1.0)
    rf = _receptive_sizes(net, chosen)
    sections = []
    for name in track(chosen, "report: layers", enabled=progress):
        sections.append(
            _layer_section(
                name,
                modules[name],
                counts[name],
                projected[name],
                dataset,
                names,
                (low, high),
                rf.get(name),
            )
        )
    with clock.step("filters"):
        filters = filter_section(net)
    occlusion = None
    if occlusion_images > 0:
        plural = "s" if occlusion_images != 1 else ""
        with clock.step(f"occlusion ({occlusion_images} image{plural})"):
            occlusion = occlusion_section(
                net,
                dataset,
                images=occlusion_images,
                size=occlusion_size,
                stride=occlusion_stride,
                class_names=names,
                value_range=(low, high),
                batch_size=batch_size,
                progress=progress,
                skip=[int(s["index"]) for s in result.skipped if "index" in s],
                device=device,
            )
    data_names = _class_names(dataset)
    if accuracy is None:
        model_names = info["class_names"]
        accuracy = data_names is not None and list(data_names) == list(model_names or [])
    measured = None
    if accuracy:
        with clock.step("accuracy"):
            measured = dataset_accuracy(
                net, dataset, batch_size=batch_size, device=device, progress=progress
            )

    layer_rows = tuple(
        (
            name,
            describe_module(modules[name]),
            counts[name],
            rf.get(name, "–"),
            len(sections[i].blocks),
        )
        for i, name in enumerate(chosen)
    )
    skipped = tuple(
        (str(s.get("path") or f"item {s.get('index')}"), str(s.get("error")))
        for s in result.skipped
    )
    summary = Summary(
        model=str(info["name"]),
        dataset=dataset_name,
        command=command,
        images=int(result.counts.get("scanned", len(dataset))),
        accuracy=measured,
        facts=tuple(facts)
        + ((("weights sha256", str(info["weights_sha256"])),) if info["weights_sha256"] else ())
        + ((("deconvnet rule", rule), ("top", str(top)))),
        layers=Table(
            ("layer", "module", "channels", "receptive field", "channels shown"), layer_rows
        ),
        timings=tuple(clock.timings),
        skipped=skipped,
        warnings=tuple(warnings),
    )
    return ReportData(summary=summary, layers=tuple(sections), filters=filters, occlusion=occlusion)


#: Channels projected per call of ``project_top`` (the unit of the progress bar).
CHANNEL_CHUNK = 32


def _project_in_chunks(
    project_top: Callable[..., Any],
    net: nn.Module,
    dataset: Any,
    result: Any,
    layers: Sequence[str],
    counts: dict[str, int],
    channels: Sequence[int] | None,
    rule: str,
    device: Any,
    progress: bool,
) -> dict[str, SimpleNamespace]:
    """:func:`convlens.scan.project_top` layer by layer, ``CHANNEL_CHUNK`` channels at a time
    (so a progress bar can follow), joined per layer along the channel axis."""
    jobs = []
    for name in layers:
        wanted = list(channels) if channels is not None else list(range(counts[name]))
        jobs += [
            (name, wanted[i : i + CHANNEL_CHUNK]) for i in range(0, len(wanted), CHANNEL_CHUNK)
        ]
    parts: dict[str, list[Any]] = {name: [] for name in layers}
    with progress_bar("projections", sum(len(c) for _, c in jobs), enabled=progress) as bar:
        for name, chunk in jobs:
            done = project_top(
                net, dataset, result, rule=rule, channels=chunk, layers=[name], device=device
            )
            parts[name].append(done.layers[name])
            bar.advance(len(chunk))
    joined = {}
    for name in layers:
        pieces = parts[name]
        joined[name] = SimpleNamespace(
            channels=[c for piece in pieces for c in piece.channels],
            **{
                key: torch.cat([getattr(piece, key) for piece in pieces])
                for key in ("values", "indices", "positions", "projections", "patches")
            },
        )
    return joined


def _layer_section(
    name: str,
    module: nn.Module,
    count: int,
    projected: Any,
    dataset: Any,
    names: Sequence[str] | None,
    value_range: tuple[float, float],
    receptive: str | None,
) -> LayerSection:
    """One layer page from :class:`convlens.scan.LayerProjections` (rows = its channels)."""
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
                    image_name=_name_of(dataset, index),
                    label=_label_text(_label_of(dataset, index), names),
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


def build_report(
    model: Any,
    dataset: Any,
    out: str | os.PathLike[str],
    *,
    progress: bool = False,
    resume: bool = False,
    **options: Any,
) -> Path:
    """Assemble the report (:func:`assemble_report` with ``options``) and write it to
    ``out`` atomically; return the path of its ``index.html``.

    The dataset scan checkpoints into the folder ``OUT.scan`` beside the report while the
    report is being built, so a crash, Ctrl-C or kill loses at most one checkpoint interval:
    ``resume=True`` continues from there. The folder is removed once the report is written.
    """
    check_out(out)  # before hours of scanning, not after
    scan_dir = scan_work_dir(out)
    data = assemble_report(
        model, dataset, progress=progress, scan_dir=scan_dir, resume=resume, **options
    )
    index = write_report(data, out, progress=progress)
    shutil.rmtree(scan_dir, ignore_errors=True)
    return index


def scan_work_dir(out: str | os.PathLike[str]) -> Path:
    """Where the report for ``out`` keeps its scan checkpoints: the sibling ``OUT.scan``.

    >>> scan_work_dir("reports/vgg16").as_posix()
    'reports/vgg16.scan'
    """
    out = Path(out)
    return out.with_name(out.name + ".scan")


# -------------------------------------------------------------------------------- occlusion


def _colormap(values: Tensor, low: float, high: float, name: str = "viridis") -> np.ndarray:
    """A 2-D map as RGB uint8 through a matplotlib colour map over ``[low, high]``."""
    from matplotlib import colormaps

    x = values.detach().cpu().to(torch.float64).numpy()
    span = high - low if high > low else 1.0
    rgba = colormaps[name](np.clip((x - low) / span, 0.0, 1.0))
    return (rgba[..., :3] * 255).round().astype(np.uint8)


#: Colour of the image border that no square's centre reaches, in the aligned maps.
_OUTSIDE = (230, 230, 230)


def align_map(cells: np.ndarray, size: int, stride: int, image_size: tuple[int, int]) -> np.ndarray:
    """Place a map over square positions ``(rows, cols, 3)`` on the image's pixel grid: cell
    ``(i, j)`` covers the ``stride``×``stride`` pixels around the centre of its square, so
    maps and image line up; the border no centre reaches is light grey.

    >>> align_map(np.full((2, 2, 3), 9, np.uint8), 2, 1, (3, 3))[..., 0].tolist()
    [[9, 9, 230], [9, 9, 230], [230, 230, 230]]
    """
    height, width = image_size
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[...] = _OUTSIDE
    big = cells.repeat(stride, 0).repeat(stride, 1)
    offset = max(0, (size - stride) // 2)
    h, w = min(big.shape[0], height - offset), min(big.shape[1], width - offset)
    canvas[offset : offset + h, offset : offset + w] = big[:h, :w]
    return canvas


def _class_colors(classes: Sequence[int], num_classes: int | None) -> dict[int, str]:
    """Colours (matplotlib's tab10 / tab20) for the classes present in a map: by class index
    when the model has at most 20 classes (a class keeps its colour from image to image),
    else in order of appearance.

    >>> _class_colors([3, 0], 10)
    {3: '#d62728', 0: '#1f77b4'}
    """
    from matplotlib import colormaps

    by_index = num_classes is not None and num_classes <= 20
    size = num_classes if by_index and num_classes is not None else len(classes)
    count = 10 if size <= 10 else 20
    palette = colormaps[f"tab{count}"]
    colors = {}
    for i, c in enumerate(classes):
        r, g, b, _ = palette((c if by_index else i) % count)
        colors[c] = f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"
    return colors


def occlusion_indices(dataset: Any, count: int, skip: Sequence[int] = ()) -> list[int]:
    """``count`` dataset indices for occlusion figures: the first image of each label in
    dataset order, then the next images, so that several classes are shown; indices in
    ``skip`` (unreadable items) are never chosen.

    >>> occlusion_indices([(None, 1), (None, 1), (None, 0)], 2)
    [0, 2]
    """
    # without a ``labels`` attribute, labels are read from items: look at a bounded prefix
    limit = len(dataset) if getattr(dataset, "labels", None) is not None else min(len(dataset), 500)
    excluded = set(skip)
    labels = [None if i in excluded else _item_label(dataset, i) for i in range(limit)]
    seen: set[int | None] = set()
    first: list[int] = []
    for i, label in enumerate(labels):
        if i in excluded:
            continue
        if label not in seen:
            seen.add(label)
            first.append(i)
    rest = [i for i in range(len(labels)) if i not in set(first) and i not in excluded]
    return sorted((first + rest)[:count])


def _item_label(dataset: Any, index: int) -> int | None:
    label = _label_of(dataset, index)
    if label is not None or getattr(dataset, "labels", None) is not None:
        return label
    item = dataset[index]
    if isinstance(item, (tuple, list)) and len(item) > 1:
        try:
            value = int(item[1])
        except (TypeError, ValueError):
            return None
        return value if value >= 0 else None
    return None


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
) -> OcclusionSection | None:
    """Figure 7 (b)–(e) for ``images`` images of ``dataset`` (:func:`occlusion_indices`),
    with :func:`convlens.analysis.occlusion_maps`; None when ``images`` is 0.

    A grey square (0 in the model's input units: the mean for a mean-normalised input) of
    ``size`` pixels moves by ``stride``; the maps are over square positions. Images without a
    label use the class the model predicts for the unoccluded image.
    """
    from convlens.analysis.occlusion import occlude, occlusion_maps

    if images <= 0:
        return None
    picked = occlusion_indices(dataset, images, skip)
    items = []
    layer = ""
    square = stride_used = 0
    for index in track(picked, "occlusion", enabled=progress):
        x = dataset[index]
        x = x[0] if isinstance(x, (tuple, list)) else x
        if x.dim() != 3:
            return None
        if device is not None:
            x = x.to(device)
        h, w = int(x.shape[-2]), int(x.shape[-1])
        d_size, d_stride = default_occlusion_geometry(h, w)
        square = min(size or d_size, h, w)
        stride_used = stride or d_stride
        label = _item_label(dataset, index)
        note = None
        if label is None:
            with torch.no_grad():
                label = int(net(x.unsqueeze(0)).argmax(1)[0])
            note = "no label: (d) is the probability of the class predicted for the whole image"
        res = occlusion_maps(
            net, x, label, size=square, stride=stride_used, batch_size=batch_size, project=True
        )
        layer = res.layer
        name_of = _name_of(dataset, index)
        label_name = _label_text(label, class_names)
        # (a) the input, with the square where the correct class's probability is lowest
        worst = int(res.probability.flatten().argmin())
        covered = occlude(x.cpu(), res.positions[worst : worst + 1], square, 0.0)[0]
        a = patch_pictures(covered.unsqueeze(0), *value_range)[0]
        amax = float(res.activation.max())
        amin = float(res.activation.min())
        classes = sorted(
            {int(c) for c in res.predicted.flatten().tolist()} | {res.unoccluded_predicted}
        )
        colors = _class_colors(classes, len(class_names) if class_names else None)
        e = np.zeros((*res.predicted.shape, 3), dtype=np.uint8)
        for c, color in colors.items():
            rgb = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
            e[(res.predicted == c).cpu().numpy()] = rgb
        rows, cols = res.probability.shape
        grid = f"{rows}×{cols} positions"
        aligned = functools.partial(align_map, size=square, stride=stride_used, image_size=(h, w))

        panels = (
            Panel("a", "input", a, f"square where p({label_name}) is lowest"),
            Panel(
                "b",
                f"total activation of map {res.channel}",
                aligned(_colormap(res.activation, amin, amax)),
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
                f"p({label_name})",
                aligned(_colormap(res.probability, 0.0, 1.0)),
                f"{grid}; dark 0 … bright 1; unoccluded {res.unoccluded_probability:.3f}",
            ),
            Panel(
                "e",
                "most probable class",
                aligned(e),
                f"{grid}; unoccluded: {_label_text(res.unoccluded_predicted, class_names)}",
            ),
        )
        legend = tuple(
            LegendEntry(colors[c], _label_text(c, class_names) or str(c)) for c in classes
        )
        items.append(OcclusionItem(name_of, label_name, panels, legend, note))
    return OcclusionSection(layer=layer, square=square, stride=stride_used, items=tuple(items))


# --------------------------------------------------------------------------------- accuracy


def dataset_accuracy(
    net: nn.Module,
    dataset: Any,
    *,
    batch_size: int = 64,
    device: Any = "cpu",
    progress: bool = False,
) -> float | None:
    """Top-1 accuracy of ``net`` on the labelled items of ``dataset`` (unreadable items are
    left out), or None when no item has a label.

    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(1, 2, bias=False))
    >>> _ = net[1].weight.data.copy_(torch.tensor([[1.0], [-1.0]]))
    >>> dataset_accuracy(net, [(torch.ones(1), 0), (torch.ones(1), 1)])
    0.5
    """
    from torch.utils.data import DataLoader

    from convlens.scan.data import SafeDataset, collate_safe

    loader = DataLoader(SafeDataset(dataset), batch_size=batch_size, collate_fn=collate_safe)
    correct = total = 0
    net.eval()
    batches = math.ceil(len(dataset) / batch_size)
    for batch in track(loader, "accuracy", enabled=progress, total=batches):
        if batch.inputs is None or len(batch.indices) == 0:
            continue
        found = [_item_label(dataset, int(i)) for i in batch.indices.tolist()]
        labels = torch.tensor([-1 if v is None else v for v in found])
        with torch.no_grad():
            predicted = net(batch.inputs.to(device)).argmax(1).cpu()
        known = labels >= 0
        correct += int((predicted[known] == labels[known]).sum())
        total += int(known.sum())
    return correct / total if total else None


# ------------------------------------------------------------------------------- arguments


class SubsetView:
    """Items ``indices`` of ``dataset``, keeping what a report reads from it: ``paths``,
    ``labels`` and ``class_names`` / ``classes``.

    >>> view = SubsetView([(0, 5), (1, 6), (2, 7)], [0, 2])
    >>> len(view), view[1]
    (2, (2, 7))
    """

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = [int(i) for i in indices]
        paths = getattr(dataset, "paths", None)
        if isinstance(paths, Sequence):
            self.paths = [paths[i] for i in self.indices]
        labels = getattr(dataset, "labels", None)
        if labels is not None:
            self.labels = [int(labels[i]) for i in self.indices]
        for attr in ("class_names", "classes"):
            if getattr(dataset, attr, None) is not None:
                setattr(self, attr, getattr(dataset, attr))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[self.indices[index]]


# ------------------------------------------------------------------------------ entry points


def run_report(
    model: str,
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    command: str,
    weights: str | os.PathLike[str] | None = None,
    allow_random: bool = False,
    device: str = "cpu",
    every: int = 1,
    progress: bool = False,
    **options: Any,
) -> Path:
    """Load ``model`` (:func:`convlens.models.load_model`), open ``data``
    (:func:`convlens.scan.data.open_dataset`; every ``every``-th item), build the report into ``out`` and return
    the path of its index.html. ``options`` go to :func:`assemble_report`."""
    import warnings as warnings_

    from convlens.models import load_model
    from convlens.scan.data import open_dataset

    with warnings_.catch_warnings(record=True) as caught:
        warnings_.simplefilter("always")
        loaded = load_model(model, weights=weights, device=device, allow_random=allow_random)
    notes = [str(w.message) for w in caught]
    for w in caught:  # still shown on the terminal, and kept for the report's front page
        warnings_.warn_explicit(w.message, w.category, w.filename, w.lineno)
    dataset, description = open_dataset(data, loaded.preprocess)
    if every > 1:
        dataset = SubsetView(dataset, range(0, len(dataset), every))
        description += f"; every {every}th image: {len(dataset)} images"
    facts = [("model source", loaded.source)]
    if loaded.input_size:
        facts.append(("input size", _times(loaded.input_size)))
    return build_report(
        loaded,
        dataset,
        out,
        command=command,
        dataset_name=description,
        device=device,
        progress=progress,
        warnings=notes,
        facts=facts,
        **options,
    )


#: ``convlens demo``: every image of the bundled sample, every channel of every conv layer.
DEMO_FULL: dict[str, Any] = {
    "top": 9,
    "occlusion_images": 4,
    "occlusion_size": 10,
    "batch_size": 128,
}
#: ``convlens demo --quick``: every 4th image, channels 0-7, one occlusion image.
DEMO_QUICK: dict[str, Any] = {
    "top": 9,
    "every": 4,
    "channels": tuple(range(8)),
    "occlusion_images": 1,
    "occlusion_size": 10,
    "batch_size": 128,
}
