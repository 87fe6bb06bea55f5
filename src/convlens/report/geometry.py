"""The report's "geometry" page from a model: layers, receptive fields, aliasing, overlap maps.

Everything comes from the lint library (:func:`convlens.lint.lint_model`: the model walk on the
meta device, overlap maps, first-layer aliasing) and the one geometry
(:class:`convlens.arithmetic.LayerSpec`, :func:`convlens.arithmetic.receptive_fields`); this
module only turns it into :class:`~convlens.report.data.GeometrySection` (text, tables and
pictures) and draws the aliasing chart. Each conv and transposed conv the explorer can draw
(:mod:`convlens.explore`) gets a link that opens it there, and the first one is where the
report's explorer page starts. Odena, Dumoulin & Olah, *Deconvolution and Checkerboard
Artifacts*, Distill 2016; Zeiler & Fergus, arXiv:1311.2901, Sec. 4.1.

>>> import torch.nn as nn
>>> net = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2), nn.ReLU(), nn.ConvTranspose2d(8, 3, 3, 2))
>>> section = geometry_section(net, (3, 20, 20))
>>> [(row.path, row.output_size, row.receptive_field) for row in section.layers]
[('0', '8×8', None), ('2', '17×17', None)]
>>> section.explorer.label
'0: conv 20×20 → 8×8'
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from convlens.arithmetic import LayerSpec, receptive_fields
from convlens.errors import ConvLensError, ParameterError
from convlens.explore import LIMITS, STATE_KEYS, describe_state, initial_state
from convlens.figures.overlap import OverlapPanel, overlap_png
from convlens.lint import FilterAliasing, LayerLint, ModelLint, lint_model, panel
from convlens.report.data import (
    AliasingSection,
    ExplorerStart,
    GeometryLayer,
    GeometrySection,
    OverlapFigure,
    Table,
)

__all__ = [
    "aliasing_chart",
    "dataset_geometry",
    "explorer_query",
    "explorer_state",
    "geometry_section",
]


def _times(values: Iterable[Any]) -> str:
    return "×".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _compact(values: Sequence[int]) -> str:
    return str(values[0]) if len(set(values)) == 1 else ",".join(str(v) for v in values)


def explorer_state(spec: LayerSpec, input_size: Sequence[int]) -> tuple[dict[str, Any], str | None]:
    """The explorer's settings for a conv or transposed conv, and a note when they differ from
    the layer's (an input larger than the explorer draws is shown at its limit per axis).

    Raises :class:`~convlens.errors.ParameterError` for a layer the explorer cannot show
    (pooling, 3-D, a kernel or stride beyond :data:`convlens.explore.LIMITS`).

    >>> explorer_state(LayerSpec.conv(3, 1, 1, ndim=2), (224, 224))[1]
    'shown with a 32×32 input; the layer runs on 224×224'
    """
    if spec.kind not in ("conv", "conv_transpose"):
        raise ParameterError("spec", "a conv or transposed conv for the explorer", spec.kind)
    size = [min(int(n), LIMITS["input"]) for n in input_size]
    state: dict[str, Any] = {
        "mode": "conv" if spec.kind == "conv" else "transpose",
        "dims": len(spec.kernel_size),
        "input": size,
        "kernel": list(spec.kernel_size),
        "stride": list(spec.stride),
        "padding": spec.padding if isinstance(spec.padding, str) else list(spec.padding),
        "dilation": list(spec.dilation),
    }
    if spec.kind == "conv_transpose":
        state["output_padding"] = list(spec.output_padding)
    state = initial_state(**state)  # the explorer's own validation: raises what it refuses
    note = None
    if tuple(size) != tuple(input_size):
        note = f"shown with a {_times(size)} input; the layer runs on {_times(input_size)}"
    return state, note


def explorer_query(state: Mapping[str, Any]) -> str:
    """The explorer's URL query for a (valid) state, in the page's key order.

    >>> explorer_query(initial_state(mode="transpose", input=5, kernel=3, stride=2))
    '?mode=transpose&dims=2&input=5&kernel=3&stride=2&padding=0&dilation=1&output_padding=0'
    """
    checked = initial_state(**state)
    parts = []
    for key in STATE_KEYS:
        value = checked[key]
        if key == "output_padding" and checked["mode"] == "conv":
            continue
        if key in ("step", "by") and value == initial_state()[key]:
            continue
        text = value if isinstance(value, (str, int)) else _compact(value)
        parts.append(f"{key}={text}")
    return "?" + "&".join(parts)


def _fields(model: Any, size: tuple[int, ...]) -> tuple[dict[str, Any], str | None]:
    try:
        fields = receptive_fields(model, size)
    except ConvLensError as exc:
        return {}, f"Receptive fields are given for chains of conv and pooling layers: {exc}"
    return {f.path: f for f in fields}, None


def _layers(
    result: ModelLint, fields: Mapping[str, Any]
) -> tuple[tuple[GeometryLayer, ...], ExplorerStart | None]:
    rows, start = [], None
    for call in result.traced:
        field = fields.get(call.path)
        query = note = None
        try:
            state, note = explorer_state(call.spec, call.input_size)
            query = explorer_query(state)
            if start is None:
                label = f"{call.path}: {describe_state(**state)}"
                start = ExplorerStart(tuple(state.items()), label + (f" ({note})" if note else ""))
        except ParameterError:
            pass  # pooling, 3-D or beyond the explorer's limits: no link
        rows.append(
            GeometryLayer(
                path=call.path,
                module_type=call.module_type,
                geometry=call.spec.describe(),
                input_size=_times(call.input_size),
                output_size=_times(call.output_size),
                receptive_field=None if field is None else _times(field.size) + " px",
                jump=None if field is None else _times(field.jump),
                start=None if field is None else ", ".join(f"{v:g}" for v in field.start),
                explore=query,
                explore_note=note,
            )
        )
    return tuple(rows), start


def _ratio(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:g}"


def _colliding(layer: LayerLint) -> str:
    def axis(sizes: Sequence[int], pads: Sequence[int | None]) -> str:
        return ", ".join(str(s) if p is None else f"{s} (op {p})" for s, p in zip(sizes, pads))

    texts = [axis(s, p) for s, p in zip(layer.colliding, layer.output_paddings)]
    if len(set(texts)) == 1:
        return texts[0]
    return "; ".join(f"axis {a}: {t}" for a, t in enumerate(texts))


def _lint_table(result: ModelLint) -> Table:
    rows = []
    for layer in result.layers:
        m = layer.overlap
        rows.append(
            (
                layer.path,
                layer.role,
                f"{_times(layer.input_size)} → {_times(layer.output_size)}",
                "input (gradient)" if m.gradient else "output",
                f"{m.phase_min}–{m.phase_max}",
                _ratio(m.ratio),
                m.dead_pixels,
                _colliding(layer),
                "yes" if layer.flagged else "no",
                layer.suggestion or "–",
            )
        )
    columns = (
        "layer",
        "role",
        "size",
        "overlap on",
        "interior overlap",
        "ratio",
        "dead pixels",
        "colliding inputs (op: output_padding)",
        "flagged",
        "suggestion",
    )
    return Table(columns, tuple(rows))


def aliasing_chart(a: FilterAliasing) -> bytes:
    """A PNG chart of one layer's aliasing: per filter its share above Nyquist (top; left out
    at stride 1, where nothing can alias) and its low/mid/high band shares stacked (bottom);
    dead filters marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = int(a.rms.size)
    x = np.arange(n)
    live = ~a.dead
    strided = any(s > 1 for s in a.stride)  # stride 1: nothing can alias, no share panel
    width = min(16.0, max(6.0, 0.11 * n + 1.5))
    fig = Figure(figsize=(width, 4.2 if strided else 2.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    if strided:
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(1, 1.3))
        share = np.where(live, a.alias_share, 0.0)
        top.bar(x, share, color="#c0392b", width=0.8)
        top.set_ylabel("share above\nNyquist")
        top.set_ylim(0, max(0.05, float(share.max()) * 1.15 if n else 1.0))
        axes: tuple[Any, ...] = (top, bottom)
    else:
        bottom = fig.subplots(1, 1)
        top, axes = bottom, (bottom,)
    nyq = ", ".join(f"{v:g}" for v in a.nyquist)
    top.set_title(
        f"stride {_times(a.stride)}: Nyquist {nyq} cycles/pixel; "
        f"mean share above it {_share(a.mean_alias_share)}",
        fontsize=10,
    )
    low = np.where(live, a.low, 0.0)
    mid = np.where(live, a.mid, 0.0)
    high = np.where(live, a.high, 0.0)
    bottom.bar(x, low, color="#2e86c1", width=0.8, label="low (< 1/6)")
    bottom.bar(x, mid, bottom=low, color="#f5b041", width=0.8, label="mid")
    bottom.bar(x, high, bottom=low + mid, color="#7d3c98", width=0.8, label="high (≥ 1/3)")
    for i in np.flatnonzero(a.dead):
        for ax in axes:
            ax.axvspan(i - 0.45, i + 0.45, color="#bbbbbb", alpha=0.7, lw=0)
        bottom.text(i, 0.5, "dead", rotation=90, ha="center", va="center", fontsize=7)
    bottom.set_ylim(0, 1)
    bottom.set_ylabel("band shares")
    bottom.set_xlabel("filter")
    bottom.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    bottom.set_xlim(-0.6, n - 0.4)
    if n <= 64:
        bottom.set_xticks(x[:: max(1, n // 16)])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _share(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.1%}"


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _aliasing(result: ModelLint, model: Any) -> AliasingSection | None:
    a, path = result.aliasing, result.aliasing_path
    if a is None or path is None:
        return None
    summary = a.summary()
    dead = tuple(a.dead_filters)
    facts = (
        ("stride", _times(a.stride)),
        ("Nyquist frequency", ", ".join(f"{v:g}" for v in a.nyquist) + " cycles per pixel"),
        ("FFT size", _times(a.fft_size)),
        ("filters", str(summary["filters"])),
        ("mean share above Nyquist", _share(summary["mean_alias_share"])),
        (
            "mean band shares (low / mid / high)",
            " / ".join(_share(summary[k]) for k in ("mean_low", "mean_mid", "mean_high")),
        ),
        ("dead filters", f"{len(dead)}: " + ", ".join(map(str, dead)) if dead else "none"),
    )
    rows = tuple(
        (
            i,
            _finite(a.alias_share[i]),
            _finite(a.low[i]),
            _finite(a.mid[i]),
            _finite(a.high[i]),
            float(a.rms[i]),
            "dead" if a.dead[i] else "",
        )
        for i in range(int(a.rms.size))
    )
    table = Table(("#", "share above Nyquist", "low", "mid", "high", "RMS", ""), rows)
    thumbnails: tuple[Any, ...] = ()
    module = dict(model.named_modules()).get(path) if hasattr(model, "named_modules") else None
    weight = getattr(module, "weight", None)
    if weight is not None and weight.dim() == 4:
        from convlens.analysis.filters import filter_arrays

        try:
            thumbnails = tuple(filter_arrays(weight.detach().cpu(), stretch="minmax"))
        except ParameterError:
            thumbnails = ()
    note = None
    if all(s == 1 for s in a.stride):
        note = (
            "Stride 1: the layer keeps every input pixel, so its Nyquist frequency is the "
            "input's own (1/2 cycle per pixel) and nothing aliases here; the band shares still "
            "show what each filter passes."
        )
    return AliasingSection(
        layer=path,
        facts=facts,
        filters=table,
        figure=aliasing_chart(a),
        thumbnails=thumbnails,
        dead=dead,
        note=note,
    )


def _overlaps(result: ModelLint) -> tuple[OverlapFigure, ...]:
    figures = []
    for layer in result.layers:
        if layer.spec.kind != "conv_transpose":
            continue
        m = layer.overlap
        title = (
            f"{layer.path}: {layer.spec.describe()}, {_times(layer.input_size)} → "
            f"{_times(layer.output_size)}, ratio {_ratio(m.ratio)}"
        )
        data = panel(m, title)
        caption = (
            f"interior overlap {m.phase_min}–{m.phase_max} (ratio {_ratio(m.ratio)}), "
            f"{m.dead_pixels} dead pixels" + (f"; {layer.suggestion}" if layer.suggestion else "")
        )
        picture = overlap_png([OverlapPanel(data["title"], data["counts"], data["interior"])])
        figures.append(OverlapFigure(data["title"], picture, caption))
    if result.compound is not None and len(result.compound.paths) > 1:
        m = result.compound.overlap
        title = (
            f"compound of {len(result.compound.paths)} layers ({', '.join(result.compound.paths)}),"
            f" {_times(m.input_size)} → {_times(m.shape)}, ratio {_ratio(m.ratio)}"
        )
        data = panel(m, title)
        caption = (
            f"paths from one input pixel to each output pixel; interior {m.phase_min}–"
            f"{m.phase_max}, {m.dead_pixels} dead pixels"
        )
        picture = overlap_png([OverlapPanel(data["title"], data["counts"], data["interior"])])
        figures.append(OverlapFigure(data["title"], picture, caption))
    return tuple(figures)


def geometry_section(model: Any, input_shape: Sequence[int]) -> GeometrySection:
    """The geometry page for ``model`` (an ``nn.Module``) on inputs of ``input_shape``
    ``(channels, *spatial)``: :func:`convlens.lint.lint_model` on that size, receptive fields
    where the model is a chain, first-layer aliasing and the transposed layers' overlap maps.

    A model the walk cannot trace gets a page that says why (it never stops a report).
    """
    shape = tuple(int(v) for v in input_shape)
    shown = "(1, " + ", ".join(map(str, shape)) + ")"
    try:
        result = lint_model(model, shape[1:], channels=shape[0])
    except Exception as exc:  # a caption-level page: a model the walk refuses gets the reason
        return GeometrySection(
            input_shape=shown, notes=(f"The model walk could not trace this model: {exc}",)
        )
    fields, why = _fields(model, shape[1:])
    rows, start = _layers(result, fields)
    notes = (why,) if why else ()
    return GeometrySection(
        input_shape=shown,
        layers=rows,
        lint=_lint_table(result),
        flagged=result.flagged,
        aliasing=_aliasing(result, model),
        overlaps=_overlaps(result),
        has_transposed=any(c.spec.kind == "conv_transpose" for c in result.traced),
        notes=notes,
        explorer=start,
    )


def dataset_geometry(model: Any, dataset: Any, candidates: Sequence[int] = ()) -> GeometrySection:
    """:func:`geometry_section` on the shape of the first readable item of ``dataset`` among
    ``candidates`` (then item 0)."""
    from convlens.scan.data import first_tensor

    last: Exception | None = None
    for index in [*candidates[:1], 0]:
        try:
            shape = tuple(first_tensor(dataset[int(index)]).shape)
        except Exception as exc:  # an unreadable item: try the next
            last = exc
            continue
        return geometry_section(model, shape)
    return GeometrySection(
        input_shape="unknown", notes=(f"No input could be read to trace the model: {last}",)
    )
