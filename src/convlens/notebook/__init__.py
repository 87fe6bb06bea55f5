"""Rich output in notebooks: the HTML (and PNG) that convlens's results show in Jupyter.

Every result a notebook user holds has a one-line ``_repr_html_`` that calls a function here:
:class:`~convlens.deconvnet.Projection` (:func:`projection_html`), the scan's
:class:`~convlens.scan.ScanResult` (:func:`scan_html`), :class:`~convlens.scan.TopProjections`
(:func:`top_projections_html`, the Figure-2 grid of Zeiler & Fergus, arXiv:1311.2901),
:class:`~convlens.arithmetic.LayerSpec` (:func:`layer_spec_html`), the list that
:func:`~convlens.arithmetic.receptive_fields` returns (:func:`receptive_field_html`) and the
model lint :class:`~convlens.lint.ModelLint` (:func:`lint_html`).

The HTML comes from small Jinja2 templates (``templates/*.html.j2``, autoescape on: every layer
path, module and model name is escaped); pictures are PNG data inside the page
(``data:image/png;base64``), so nothing is written to disk. The functions read the results by
their attributes (this module sits at the bottom of the import layers: it imports nothing of
convlens above :mod:`convlens.errors`, and Jinja2, NumPy and Pillow only when it renders), and
the pictures of projections are drawn by the function the caller passes
(:func:`convlens.deconvnet.display.to_image`, the paper's display). A large result stays small:
at most :data:`MAX_TILES` pictures and :data:`MAX_IMAGE_BYTES` bytes of them, at most
:data:`MAX_ROWS` table rows per layer, and the repr says how many more there are.

>>> from convlens.arithmetic import LayerSpec
>>> html = layer_spec_html(LayerSpec.conv(3, stride=2, padding=1))
>>> "Conv2d(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))" in html
True
"""

from __future__ import annotations

import base64
import functools
import io
import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from convlens.errors import ParameterError

if TYPE_CHECKING:
    import jinja2
    import numpy as np
    from PIL import Image

__all__ = [
    "MAX_CHANNELS",
    "MAX_COLUMNS",
    "MAX_IMAGE_BYTES",
    "MAX_LAYERS",
    "MAX_ROWS",
    "MAX_TILES",
    "TILE_PX",
    "data_uri",
    "format_number",
    "layer_spec_html",
    "lint_html",
    "patch_picture",
    "png_bytes",
    "projection_html",
    "projection_png",
    "receptive_field_html",
    "render",
    "scan_html",
    "stretch_patch",
    "top_projections_html",
    "top_projections_png",
]

#: Most pictures in one repr (the rest are counted: "… N more").
MAX_TILES = 160
#: Most bytes of PNG data in one repr's pictures.
MAX_IMAGE_BYTES = 160_000
#: Most table rows (channels, layers, inputs) shown per table.
MAX_ROWS = 12
#: Most table columns (top-k ranks, targets) shown per table.
MAX_COLUMNS = 9
#: Most layers of a scan or of top projections shown.
MAX_LAYERS = 8
#: Most channels per layer in the inline Figure-2 grid.
MAX_CHANNELS = 6
#: Longest side, in pixels, of an inline picture's data (larger pictures are scaled down).
TILE_PX = 64
#: Longest side, in CSS pixels, a picture is shown at (small ones are enlarged, pixelated).
SHOW_PX = 56
#: Most rows (inputs, channels) and columns of pictures in a ``_repr_png_`` sheet.
PNG_ROWS, PNG_COLUMNS = 8, 8
#: Side, in pixels, of one picture in a ``_repr_png_`` sheet.
PNG_TILE = 48

#: Draws one projection ``(C, H, W)`` as a picture (e.g. ``convlens.deconvnet.to_image``).
Picture = Callable[[Any], "Image.Image"]


# ---------------------------------------------------------------------------- rendering
@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("convlens.notebook", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = format_number
    env.filters["size"] = _size
    env.filters["tuple"] = _tuple
    return env


def render(template: str, **context: Any) -> str:
    """Render ``templates/<template>`` (autoescape on) with ``context``.

    >>> "&lt;b&gt;" in render("message.html.j2", title="x", text="<b>")
    True
    """
    return _environment().get_template(template).render(**context)


def format_number(value: Any) -> str:
    """Numbers for captions and tables: floats with 4 significant digits, others as text.

    >>> format_number(3.14159), format_number(12), format_number(None), format_number(float("inf"))
    ('3.142', '12', '–', '∞')
    """
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        return f"{value:.4g}"
    return str(value)


def _size(value: Any) -> str:
    """A size tuple as ``4×4`` (``–`` for None)."""
    if value is None:
        return "–"
    if isinstance(value, (int, float)):
        return format_number(value)
    return "×".join(format_number(v) for v in value)


def _tuple(value: Any) -> str:
    """A per-axis tuple as ``(1, 2)`` (``–`` for None)."""
    if value is None:
        return "–"
    return "(" + ", ".join(format_number(v) for v in value) + ")"


# ---------------------------------------------------------------------------- pictures
def png_bytes(image: Image.Image) -> bytes:
    """The PNG encoding of a Pillow image (in memory)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def data_uri(image: Image.Image) -> str:
    """A Pillow image as a ``data:image/png;base64,...`` address (nothing is written).

    >>> from PIL import Image
    >>> data_uri(Image.new("L", (2, 2))).startswith("data:image/png;base64,")
    True
    """
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def _fit(image: Image.Image, side: int = TILE_PX) -> Image.Image:
    """Scale down (bilinear) so that the longest side is at most ``side``; never up."""
    from PIL import Image

    w, h = image.size
    if max(w, h) <= side:
        return image
    scale = side / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def _show_size(size: tuple[int, int]) -> tuple[int, int]:
    """CSS width and height: the longest side :data:`SHOW_PX`, thin strips at least 6 px."""
    w, h = size
    scale = SHOW_PX / max(w, h)
    return max(6, round(w * scale)), max(6, round(h * scale))


class _Budget:
    """How many pictures and PNG bytes a repr may still take."""

    def __init__(self, tiles: int = MAX_TILES, nbytes: int = MAX_IMAGE_BYTES):
        self.tiles, self.nbytes, self.refused = tiles, nbytes, 0

    @property
    def full(self) -> bool:
        return self.tiles <= 0 or self.nbytes <= 0

    def take(self, image: Image.Image) -> dict[str, Any] | None:
        """The picture as ``{src, width, height}`` (shown size), or None over the budget."""
        if self.full:
            self.refused += 1
            return None
        image = _fit(image)
        src = data_uri(image)
        self.tiles -= 1
        self.nbytes -= len(src)
        width, height = _show_size(image.size)
        return {"src": src, "width": width, "height": height}


def _numpy(value: Any) -> np.ndarray:
    """A tensor or array as a float64 NumPy array (on the CPU)."""
    import numpy as np

    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if str(getattr(value, "dtype", "")) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    return np.asarray(value, dtype=np.float64)


def _as_2d(sample: Any) -> Any | None:
    """A sample ``(C, H, W)`` as it is, ``(C, L)`` as a strip ``(C, 1, L)``, else None."""
    ndim = len(sample.shape)
    if ndim == 3:
        return sample
    if ndim == 2:
        return sample.reshape(sample.shape[0], 1, sample.shape[1])
    return None


def stretch_patch(patch: Any, clip: Any = None) -> np.ndarray:
    """An input patch ``(C, H, W)`` (or ``(C, L)``) min-max stretched on its own to [0, 1] over
    the pixels on the image; the part off the image (``clip (ndim, 2)``: pixels before/after
    the image per dimension) at 0.5. Float64, shape ``(C, H, W)`` (``(C, 1, L)`` for 1-D). The
    one rule of the Figure-2 patches, in notebooks and in :func:`convlens.scan.grid.patch_image`.

    >>> import numpy as np
    >>> stretch_patch(np.array([[[0.0, 1.0, 2.0, 9.0]]]), [[0, 0], [0, 1]]).tolist()
    [[[0.0, 0.5, 1.0, 0.5]]]
    """
    import numpy as np

    x = _numpy(patch)
    if x.ndim == 2:
        x = x[:, None, :]
        clip = None if clip is None else [[0, 0], *_numpy(clip).astype(int).tolist()]
    if x.ndim != 3:
        raise ParameterError("patch", "a patch (C, H, W) or (C, L)", tuple(x.shape))
    inside = np.ones(x.shape[1:], dtype=bool)
    if clip is not None:
        c = _numpy(clip).astype(int)
        for d in range(2):
            before, after = int(c[d, 0]), int(c[d, 1])
            index: list[Any] = [slice(None), slice(None)]
            if before:
                index[d] = slice(0, before)
                inside[tuple(index)] = False
                index[d] = slice(None)
            if after:
                index[d] = slice(x.shape[1 + d] - after, None)
                inside[tuple(index)] = False
    values = x[:, inside]
    lo, hi = (values.min(), values.max()) if values.size else (0.0, 0.0)
    shown = (x - lo) / (hi - lo) if hi > lo else np.full_like(x, 0.5)
    shown[:, ~inside] = 0.5
    return shown


def patch_picture(patch: Any, clip: Any = None) -> Image.Image:
    """:func:`stretch_patch` as a picture, as in the Figure-2 grids of
    :func:`convlens.scan.grid.patch_image`. Three channels are RGB, other counts averaged to
    grey.

    >>> import numpy as np
    >>> np.asarray(patch_picture(np.array([[[0.0, 1.0, 2.0, 9.0]]]), [[0, 0], [0, 1]])).tolist()
    [[0, 128, 255, 128]]
    """
    import numpy as np
    from PIL import Image

    shown = stretch_patch(patch, clip)
    if shown.shape[0] != 3:
        shown = shown.mean(0, keepdims=True)
    pixels = np.clip(np.round(shown * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    if pixels.shape[2] == 1:
        return Image.fromarray(np.ascontiguousarray(pixels[:, :, 0]))
    return Image.fromarray(np.ascontiguousarray(pixels))


def _heat(counts: Any) -> Image.Image:
    """A small count map (2-D, or 1-D as a strip) as grey: its minimum black, maximum white."""
    import numpy as np
    from PIL import Image

    a = np.asarray(counts, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    lo, hi = float(a.min()), float(a.max())
    shown = (a - lo) / (hi - lo) if hi > lo else np.full_like(a, 0.5)
    return Image.fromarray(np.round(shown * 255).astype(np.uint8))


def _sheet(
    rows: Sequence[Sequence[tuple[Image.Image | None, str | None]]], title: str, side: int = 64
) -> Image.Image:
    """Pictures on one white canvas, row by row, each enlarged to ``side`` with a caption;
    ``(None, caption)`` is an empty (light grey) slot, ``(None, None)`` a blank gap."""
    from PIL import Image, ImageDraw

    cols = max((len(r) for r in rows), default=0)
    caption_h, gap, head = 12, 4, 16
    width = max(cols * (side + gap) + gap, 8 * len(title) + 2 * gap)
    height = head + len(rows) * (side + caption_h + gap) + gap
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((gap, 2), title, fill=(20, 20, 20))
    for r, row in enumerate(rows):
        y = head + r * (side + caption_h + gap)
        for c, (image, caption) in enumerate(row):
            x = gap + c * (side + gap)
            if image is None and caption is None:
                continue
            if image is not None:
                w, h = image.size
                scale = side / max(w, h)
                size = (max(1, round(w * scale)), max(1, round(h * scale)))
                canvas.paste(image.convert("RGB").resize(size, Image.Resampling.NEAREST), (x, y))
            else:
                canvas.paste(Image.new("RGB", (side, side), (230, 230, 230)), (x, y))
            draw.text((x, y + side), caption or "", fill=(20, 20, 20))
    return canvas


# ---------------------------------------------------------------------------- Projection
def _target_label(target: Any) -> dict[str, str]:
    position = target.position
    where = position if isinstance(position, str) else "(" + ", ".join(map(str, position)) + ")"
    return {"layer": str(target.layer), "channel": str(target.channel), "position": where}


def _position(positions: Any) -> str:
    values = [int(v) for v in positions]
    if not values or values[0] < 0:
        return "map"
    return "(" + ", ".join(str(v) for v in values) + ")"


def _projection_cells(
    result: Any, picture: Picture, budget: _Budget, rows: int, cols: int
) -> list[list[dict[str, Any]]]:
    values = _numpy(result.values)
    out = []
    for n in range(rows):
        row = []
        for t in range(cols):
            sample = _as_2d(result.projections[n, t])
            tile = None if sample is None else budget.take(picture(sample))
            row.append(
                {
                    "tile": tile,
                    "value": float(values[n, t]),
                    "position": _position(result.positions[n, t]),
                }
            )
        out.append(row)
    return out


def projection_html(result: Any, picture: Picture) -> str:
    """The HTML of a :class:`~convlens.deconvnet.Projection`: one row per input, one column per
    target, each projection drawn by ``picture`` with its value and unit as the caption.

    >>> import torch, torch.nn as nn
    >>> from convlens.deconvnet import Target, project, to_image
    >>> out = project(nn.Sequential(nn.Conv2d(1, 2, 3)), torch.randn(2, 1, 6, 6), Target("0", 1))
    >>> projection_html(out, to_image).count("<img")
    2
    """
    n, t = int(result.values.shape[0]), int(result.values.shape[1])
    rows, cols = min(n, MAX_ROWS), min(t, MAX_COLUMNS)
    budget = _Budget()
    cells = _projection_cells(result, picture, budget, rows, cols)
    sample = tuple(int(v) for v in result.projections.shape[2:])
    return render(
        "projection.html.j2",
        n=n,
        t=t,
        rule=str(result.rule),
        engine=str(result.engine),
        sample=sample,
        pictures=_as_2d(result.projections[0, 0]) is not None if n and t else False,
        targets=[_target_label(x) for x in result.targets[:cols]],
        cells=cells,
        more_rows=n - rows,
        more_cols=t - cols,
        not_shown=budget.refused,
    )


def projection_png(result: Any, picture: Picture) -> bytes | None:
    """A PNG of a :class:`~convlens.deconvnet.Projection` (the tiles of :func:`projection_html`),
    ``None`` for samples that are not 1-D or 2-D."""
    n, t = int(result.values.shape[0]), int(result.values.shape[1])
    if not n or not t or _as_2d(result.projections[0, 0]) is None:
        return None
    rows, cols = min(n, PNG_ROWS), min(t, PNG_COLUMNS)
    values = _numpy(result.values)
    sheet = [
        [
            (
                _fit(picture(_as_2d(result.projections[i, j])), PNG_TILE),
                format_number(float(values[i, j])),
            )
            for j in range(cols)
        ]
        for i in range(rows)
    ]
    title = f"Projection: {n} inputs x {t} targets ({result.rule})"
    return png_bytes(_sheet(sheet, title, side=PNG_TILE))


# ---------------------------------------------------------------------------- ScanResult
def _top_rows(top: Any, rows: int, cols: int) -> list[dict[str, Any]]:
    values, indices = _numpy(top.values), _numpy(top.indices).astype(int)
    out = []
    for c in range(rows):
        cells = [
            {"value": float(values[c, j]), "index": int(indices[c, j])}
            if indices[c, j] >= 0
            else None
            for j in range(cols)
        ]
        out.append({"channel": c, "cells": cells})
    return out


def scan_html(result: Any) -> str:
    """The HTML of a :class:`~convlens.scan.ScanResult`: what was scanned, then per layer a
    table of the top values and the dataset indices of their images (first channels)."""
    layers = []
    for name in list(result.layers)[:MAX_LAYERS]:
        top = result.layers[name]
        channels, k = int(top.values.shape[0]), int(top.values.shape[1])
        rows, cols = min(channels, MAX_ROWS), min(k, MAX_COLUMNS)
        layers.append(
            {
                "name": str(name),
                "channels": channels,
                "k": k,
                "rows": _top_rows(top, rows, cols),
                "cols": cols,
                "more_rows": channels - rows,
                "more_cols": k - cols,
            }
        )
    model = result.meta.get("model") if isinstance(result.meta, dict) else None
    model_name = model.get("name") if isinstance(model, dict) else model
    return render(
        "scan.html.j2",
        layers=layers,
        more_layers=len(result.layers) - len(layers),
        more_names=[str(n) for n in list(result.layers)[MAX_LAYERS : MAX_LAYERS + 20]],
        counts=dict(result.counts),
        skipped=list(result.skipped)[:5],
        top=result.top,
        model=None if model_name is None else str(model_name),
    )


# ---------------------------------------------------------------------------- TopProjections
def _channel_blocks(
    lp: Any, picture: Picture, budget: _Budget, channels: int
) -> list[dict[str, Any]]:
    values, indices = _numpy(lp.values), _numpy(lp.indices).astype(int)
    k = int(values.shape[1])
    blocks = []
    for row in range(channels):
        tiles: list[dict[str, Any]] = []
        for j in range(k):
            if indices[row, j] < 0:
                continue
            proj = _as_2d(lp.projections[row, j])
            if proj is None:
                tiles.append({"projection": None, "patch": None})
            else:
                tiles.append(
                    {
                        "projection": budget.take(picture(proj)),
                        "patch": budget.take(patch_picture(lp.patches[row, j], lp.clips[row, j])),
                    }
                )
            tiles[-1].update(value=float(values[row, j]), index=int(indices[row, j]), rank=j)
        blocks.append(
            {
                "channel": int(lp.channels[row]),
                "tiles": tiles,
                "columns": max(1, math.ceil(math.sqrt(k))),
            }
        )
    return blocks


def top_projections_html(result: Any, picture: Picture) -> str:
    """The HTML of :class:`~convlens.scan.TopProjections`: the Figure-2 grid of Zeiler & Fergus
    (arXiv:1311.2901), per channel the top-k projections (drawn by ``picture``) beside the image
    patches under their receptive fields, the activation under each projection and the
    dataset index under each patch."""
    budget = _Budget()
    layers = []
    for name in list(result.layers)[:MAX_LAYERS]:
        lp = result.layers[name]
        total = len(lp.channels)
        shown = min(total, MAX_CHANNELS)
        layers.append(
            {
                "name": str(name),
                "method": str(lp.method),
                "total": total,
                "k": int(lp.values.shape[1]),
                "box": tuple(int(v) for v in lp.projections.shape[3:]),
                "blocks": _channel_blocks(lp, picture, budget, shown),
                "more": total - shown,
            }
        )
    return render(
        "top.html.j2",
        rule=str(result.rule),
        layers=layers,
        more_layers=len(result.layers) - len(layers),
        not_shown=budget.refused,
    )


def top_projections_png(result: Any, picture: Picture) -> bytes | None:
    """A PNG of the first layer's inline Figure-2 grid: per channel a row of its top
    projections, a gap, then their image patches; ``None`` when there is no 1-D or 2-D
    projection to draw."""
    if not result.layers:
        return None
    name = next(iter(result.layers))
    lp = result.layers[name]
    if not len(lp.channels) or _as_2d(lp.projections[0, 0]) is None:
        return None
    values, indices = _numpy(lp.values), _numpy(lp.indices).astype(int)
    k = min(int(values.shape[1]), MAX_COLUMNS)
    rows = []
    for row in range(min(len(lp.channels), PNG_ROWS // 2)):
        projections: list[tuple[Image.Image | None, str | None]] = []
        patches: list[tuple[Image.Image | None, str | None]] = []
        for j in range(k):
            if indices[row, j] < 0:
                projections.append((None, ""))
                patches.append((None, ""))
                continue
            proj = _fit(picture(_as_2d(lp.projections[row, j])), PNG_TILE)
            patch = _fit(patch_picture(lp.patches[row, j], lp.clips[row, j]), PNG_TILE)
            projections.append((proj, format_number(float(values[row, j]))))
            patches.append((patch, f"#{indices[row, j]}"))
        rows.append([*projections, (None, None), *patches])
    title = f"layer {name}: channels {', '.join(str(c) for c in lp.channels[: len(rows)])}"
    return png_bytes(_sheet(rows, title, side=PNG_TILE))


# ---------------------------------------------------------------------------- LayerSpec
#: Input lengths the LayerSpec repr shows the output size for (with the smallest valid one).
EXAMPLE_INPUTS = (7, 8, 32, 224)


def _smallest_input(spec: Any, limit: int = 4096) -> int | None:
    for i in range(1, limit + 1):
        if all(spec.output_length(d, i) is not None for d in range(spec.ndim)):
            return i
    return None


def _formula_parts(text: str) -> tuple[str, str]:
    """``"o = GENERIC = FILLED ... = o"`` -> (``"o = GENERIC"``, ``"FILLED ... = o"``)."""
    parts = text.split(" = ")
    return " = ".join(parts[:2]), " = ".join(parts[2:])


def _one(values: Any) -> str:
    if isinstance(values, str):
        return values
    values = tuple(values)
    if len(set(values)) == 1:
        return str(values[0])
    return "(" + ", ".join(str(v) for v in values) + ")"


def layer_spec_html(spec: Any) -> str:
    """The HTML of a :class:`~convlens.arithmetic.LayerSpec`: its geometry, the PyTorch module
    with that geometry, the output-size formula and the output size for a few input sizes
    (computed by the spec, as PyTorch computes them).

    >>> from convlens.arithmetic import LayerSpec
    >>> "floor((i + p_lo + p_hi - d*(k-1) - 1) / s) + 1" in layer_spec_html(LayerSpec.conv(3))
    True
    """
    rows: list[tuple[str, str]] = [
        ("kind", f"{spec.kind} ({spec.ndim}-D)"),
        ("kernel_size", _one(spec.kernel_size)),
        ("stride", _one(spec.stride)),
        ("padding", _one(spec.padding)),
    ]
    pairs = spec.padding_pairs()
    if any(lo != hi for lo, hi in pairs) or isinstance(spec.padding, str):
        rows.append(("padding (before, after)", ", ".join(f"({lo}, {hi})" for lo, hi in pairs)))
    rows.append(("dilation", _one(spec.dilation)))
    rows.append(("effective kernel d·(k−1)+1", _one(spec.effective_kernel)))
    if spec.kind == "conv_transpose":
        rows.append(("output_padding", _one(spec.output_padding)))
    if spec.kind in ("conv", "conv_transpose"):
        rows.append(("groups", str(spec.groups)))
        if spec.in_channels is not None or spec.out_channels is not None:
            rows.append(("channels in → out", f"{spec.in_channels} → {spec.out_channels}"))
        rows.append(("padding_mode", str(spec.padding_mode)))
    else:
        rows.append(("ceil_mode", "yes" if spec.ceil_mode else "no"))
        if spec.kind == "avg_pool":
            rows.append(("count_include_pad", "yes" if spec.count_include_pad else "no"))
    smallest = _smallest_input(spec)
    examples = []
    formulas: list[str] = []
    same_axes = True
    if smallest is not None:
        sizes = sorted({smallest, *(i for i in EXAMPLE_INPUTS if i >= smallest)})
        for i in sizes:
            size = (i,) * spec.ndim
            lines = spec.formula(size)
            filled = [_formula_parts(line)[1] for line in lines]
            examples.append({"input": size, "output": spec.output_size(size), "filled": filled[0]})
            same_axes = same_axes and len(set(filled)) == 1
        formulas = [_formula_parts(line)[0] for line in spec.formula((sizes[0],) * spec.ndim)]
    if not same_axes:
        for e in examples:
            e["filled"] = "; ".join(
                f"axis {a}: {_formula_parts(line)[1]}"
                for a, line in enumerate(spec.formula(e["input"]))
            )
    return render(
        "layer_spec.html.j2",
        title=spec.summary(),
        call=spec.torch_call(),
        rows=rows,
        formula=formulas[0] if formulas else None,
        examples=examples,
        smallest=smallest,
        per_axis=not same_axes,
        ndim=spec.ndim,
    )


# ---------------------------------------------------------------------------- receptive fields
def receptive_field_html(fields: Iterable[Any]) -> str:
    """The HTML of what :func:`~convlens.arithmetic.receptive_fields` returns: one row per
    conv/pool layer with its geometry, output size, receptive-field size, jump and start."""
    items = list(fields)
    limit = 4 * MAX_ROWS
    rows = [
        {
            "index": f.index,
            "path": str(f.path),
            "geometry": f.spec.describe(),
            "output": f.output_size,
            "size": f.size,
            "jump": f.jump,
            "start": f.start,
            "first": f.first,
        }
        for f in items[:limit]
    ]
    return render("receptive.html.j2", rows=rows, more=len(items) - len(rows))


# ---------------------------------------------------------------------------- lint
def lint_html(result: Any) -> str:
    """The HTML of a :class:`~convlens.lint.ModelLint`: the per-layer table (role, geometry,
    sizes, overlap range and ratio, dead pixels, colliding input sizes, flag, suggestion) with
    the interior overlap pattern of each upsampling layer, the compounded chain and the
    first-layer aliasing."""
    data = result.to_dict()
    budget = _Budget()
    limit = 4 * MAX_ROWS
    rows = []
    for layer, row in zip(result.layers[:limit], data["layers"][:limit]):
        phase = layer.overlap.phase
        tile = None
        if layer.spec.kind == "conv_transpose" and phase.ndim in (1, 2) and phase.size <= 4096:
            tile = budget.take(_heat(phase))
        rows.append({**row, "phase": tile, "period": layer.overlap.period})
    return render(
        "lint.html.j2",
        input_shape=data["input_shape"],
        flagged=data["flagged"],
        strict=data["strict"],
        rows=rows,
        more=len(data["layers"]) - len(rows),
        compound=data["compound"],
        aliasing=data["aliasing"],
    )
