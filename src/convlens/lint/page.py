"""The lint as plain data for pictures and a report page.

:func:`overlap_panels` gives the heat-map panels of a layer or chain (``title``, ``counts``,
``interior`` as nested lists), ready for :class:`convlens.figures.overlap.OverlapPanel`.
:func:`geometry_page` gathers what a report's "geometry" page shows for a model: the layer
table (with receptive fields where the model is a chain), the first-layer aliasing per filter,
and the overlap panels of the transposed layers and of the compounded chain. Everything is
JSON-ready (lists, numbers, strings, ``None``); no figure is drawn here (the figures sit beside
this package, not below it).

>>> from convlens.arithmetic import LayerSpec
>>> [p["title"] for p in overlap_panels(LayerSpec.conv_transpose(3, 2, ndim=2), 4, layers=2)]
['1 layer: conv_transpose k=(3, 3) s=(2, 2) p=(0, 0), 4x4 -> 9x9, ratio 4', '2 layers: 4x4 -> 19x19, ratio 9']
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from convlens._utils import check_int
from convlens.arithmetic import LayerSpec, receptive_fields
from convlens.errors import ConvLensError, ParameterTypeError
from convlens.lint.overlap import OverlapMap, compound_overlap, overlap_map
from convlens.lint.walk import ModelLint

__all__ = ["MAX_PANEL_SIDE", "geometry_page", "overlap_panels", "panel"]

#: Panels larger than this per side show their top-left corner only (the pattern repeats).
MAX_PANEL_SIDE = 48


def _show(size: Any) -> str:
    return "x".join(str(v) for v in size)


def _ratio(m: OverlapMap) -> str:
    return "inf" if math.isinf(m.ratio) else f"{m.ratio:g}"


def panel(m: OverlapMap, title: str, *, max_side: int = MAX_PANEL_SIDE) -> dict[str, Any]:
    """One heat-map panel of ``m``: its 2-D view (3-D: the middle slice of the first axis;
    cropped to ``max_side`` per side, said in the title) as ``title``, ``counts``, ``interior``.
    """
    axes, inner = list(m.axes), list(m.interior_axes)
    note = []
    if len(axes) == 3:
        mid = axes[0].size // 2
        note.append(f"slice {mid} of axis 0")
        scale = int(axes[0][mid])
        axes, inner = axes[1:], inner[1:]
        in_mid = bool(m.interior_axes[0][mid])
    else:
        scale, in_mid = 1, True
    if any(a.size > max_side for a in axes):
        note.append(f"top-left {max_side}x{max_side}" if len(axes) == 2 else f"first {max_side}")
        axes = [a[:max_side] for a in axes]
        inner = [i[:max_side] for i in inner]
    counts = np.multiply.outer(*axes) if len(axes) == 2 else axes[0]
    mask = np.logical_and.outer(*inner) if len(inner) == 2 else inner[0]
    text = title + (f" ({', '.join(note)})" if note else "")
    return {
        "title": text,
        "counts": (counts * scale).tolist(),
        "interior": (mask & in_mid).tolist(),
    }


def overlap_panels(
    spec: LayerSpec, input_size: Any, *, layers: int = 1, max_side: int = MAX_PANEL_SIDE
) -> list[dict[str, Any]]:
    """Panels for ``spec`` on ``input_size``: its overlap map, and with ``layers > 1`` the
    compounded map of ``layers`` copies of it (``convlens figure overlap``).
    """
    if not isinstance(spec, LayerSpec):
        raise ParameterTypeError("spec", "a LayerSpec", spec)
    n = check_int(layers, "layers")
    one = overlap_map(spec, input_size)
    where = "on the input (gradient)" if one.gradient else ""
    first = (
        f"1 layer: {spec.describe()}, {_show(one.input_size)} -> "
        f"{_show(spec.output_size(one.input_size))}{where and ', ' + where}, ratio {_ratio(one)}"
    )
    out = [panel(one, first, max_side=max_side)]
    if n > 1:
        chain = compound_overlap([spec] * n, input_size, gradient=one.gradient)
        size = chain.shape if not chain.gradient else chain.input_size
        title = f"{n} layers: {_show(one.input_size)} -> {_show(size)}, ratio {_ratio(chain)}"
        out.append(panel(chain, title, max_side=max_side))
    return out


def _fields(model: Any, size: tuple[int, ...]) -> dict[str, Any] | None:
    if model is None:
        return None
    try:
        fields = receptive_fields(model, size)
    except ConvLensError:
        return None  # not a chain (residual, branching, transposed): no receptive-field column
    return {
        f.path: {"size": list(f.size), "jump": list(f.jump), "start": list(f.start)} for f in fields
    }


def geometry_page(
    result: ModelLint, *, model: Any = None, max_side: int = MAX_PANEL_SIDE
) -> dict[str, Any]:
    """What a report's "geometry" page shows for a linted model, as plain data.

    ``table``: the per-layer rows of :meth:`ModelLint.to_dict`, each with ``receptive_field``
    (``size``, ``jump``, ``start``; ``None`` where the model is not a chain of conv/pool layers,
    pass ``model`` to compute them). ``aliasing``: the first layer's summary plus per-filter
    ``alias_share``, ``low``, ``mid``, ``high``, ``rms`` lists (``None`` where the first layer
    is not a convolution with weights). ``overlap_panels``: one panel per transposed conv, then
    the compounded chain (``[]`` without transposed convs). ``compound``, ``flagged``,
    ``input_shape`` as in :meth:`ModelLint.to_dict`.
    """
    if not isinstance(result, ModelLint):
        raise ParameterTypeError("result", "a ModelLint (from lint_model)", result)
    data = result.to_dict()
    fields = _fields(model, result.input_shape[2:])
    for row in data["layers"]:
        path = row["path"]
        row["receptive_field"] = None if fields is None else fields.get(path)
    panels = []
    for layer in result.layers:
        if layer.spec.kind == "conv_transpose":
            title = (
                f"{layer.path}: {layer.spec.describe()}, {_show(layer.input_size)} -> "
                f"{_show(layer.output_size)}, ratio {_ratio(layer.overlap)}"
            )
            panels.append(panel(layer.overlap, title, max_side=max_side))
    if result.compound is not None and len(result.compound.paths) > 1:
        m = result.compound.overlap
        title = (
            f"compound of {len(result.compound.paths)} layers, {_show(m.input_size)} -> "
            f"{_show(m.shape)}, ratio {_ratio(m)}"
        )
        panels.append(panel(m, title, max_side=max_side))
    aliasing = data["aliasing"]
    if aliasing is not None and result.aliasing is not None:
        a = result.aliasing

        def values(arr: np.ndarray) -> list[float | None]:
            return [None if not np.isfinite(v) else float(v) for v in arr]

        aliasing["per_filter"] = {
            "alias_share": values(a.alias_share),
            "low": values(a.low),
            "mid": values(a.mid),
            "high": values(a.high),
            "rms": values(a.rms),
        }
    return {
        "input_shape": data["input_shape"],
        "flagged": data["flagged"],
        "table": data["layers"],
        "compound": data["compound"],
        "aliasing": aliasing,
        "overlap_panels": panels,
    }
