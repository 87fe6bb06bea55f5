"""Figure-2 pictures of a scan: per channel, the top-k projections beside their image patches.

Zeiler & Fergus (arXiv:1311.2901, Fig. 2) show, for a few feature maps of each layer, the 9
strongest activations over the validation set projected to pixel space (a 3×3 block) beside
the image patches they come from (another 3×3 block). :func:`layer_grid` draws that for every
projected channel of a layer, labelled with the channel and, under each tile, the activation.
Projections are shown as the paper does: each stretched on its own, zero at mid-grey
(:func:`convlens.deconvnet.display.stretch`); patches are min-max stretched, and the part of a
box that lies off the image is drawn in mid-grey.

>>> import torch
>>> from convlens.scan.crop import LayerProjections
>>> z = torch.zeros(1, 2, 1, 5, 5)
>>> lp = LayerProjections("x", [0], torch.ones(1, 2), torch.zeros(1, 2, dtype=torch.long),
...     torch.zeros(1, 2, 2, dtype=torch.long), z, z, torch.zeros(1, 2, 2, 2, dtype=torch.long),
...     torch.zeros(1, 2, 2, 2, dtype=torch.long), "crop")
>>> layer_grid(lp, tile=8).size[0] > 0
True
"""

from __future__ import annotations

import io
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from convlens.deconvnet.display import stretch
from convlens.errors import ParameterError
from convlens.io import atomic_write_bytes
from convlens.notebook import stretch_patch
from convlens.scan.crop import LayerProjections, TopProjections

__all__ = ["channel_block", "layer_grid", "patch_image", "projection_image", "write_figures"]

_BG = (255, 255, 255)
_TEXT = (20, 20, 20)


def _to_pil(shown: Tensor) -> Image.Image:
    """(C, H, W) in [0, 1] -> RGB image (three channels as RGB, others averaged to grey)."""
    if shown.shape[0] != 3:
        shown = shown.mean(0, keepdim=True).expand(3, -1, -1)
    pixels = (shown * 255).round().clamp(0, 255).to(torch.uint8)
    return Image.fromarray(np.ascontiguousarray(pixels.permute(1, 2, 0).numpy()), mode="RGB")


def projection_image(projection: Tensor) -> Image.Image:
    """A projection (C, *box) stretched on its own, zero at mid-grey."""
    return _to_pil(stretch(projection).to(torch.float32))


def patch_image(patch: Tensor, clip: Tensor | None = None) -> Image.Image:
    """An input patch (C, H, W) min-max stretched; the clipped part (``clip (2, 2)``: pixels
    before/after the image per dimension) in mid-grey (:func:`convlens.notebook.stretch_patch`)."""
    return _to_pil(torch.from_numpy(stretch_patch(patch, clip)).to(torch.float32))


def _resize(image: Image.Image, tile: int) -> Image.Image:
    if image.size == (tile, tile):
        return image
    grow = tile >= max(image.size)
    return image.resize(
        (tile, tile), Image.Resampling.NEAREST if grow else Image.Resampling.BILINEAR
    )


def _check_2d(lp: LayerProjections) -> None:
    if lp.projections.dim() != 5:
        raise ParameterError(
            "projections", "2-D images (C', k, Cin, H, W) for grids", tuple(lp.projections.shape)
        )


def channel_block(lp: LayerProjections, row: int, *, tile: int = 64) -> Image.Image:
    """One channel: the k projections (square block) beside the k patches, labelled."""
    _check_2d(lp)
    k = lp.values.shape[1]
    side = math.ceil(math.sqrt(k))
    label_h, value_h, gap = 14, 12, 6
    block_w = side * (tile + 2)
    width = 2 * block_w + gap
    height = label_h + side * (tile + value_h + 2)
    canvas = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 1), f"ch {lp.channels[row]}", fill=_TEXT)
    for j in range(k):
        r, c = divmod(j, side)
        y = label_h + r * (tile + value_h + 2)
        empty = int(lp.indices[row, j]) < 0
        for b, picture in enumerate(("proj", "patch")):
            x = b * (block_w + gap) + c * (tile + 2)
            if empty:
                canvas.paste(Image.new("RGB", (tile, tile), (230, 230, 230)), (x, y))
                continue
            if picture == "proj":
                img = projection_image(lp.projections[row, j])
            else:
                img = patch_image(lp.patches[row, j], lp.clips[row, j])
            canvas.paste(_resize(img, tile), (x, y))
        if not empty:
            draw.text((c * (tile + 2), y + tile), f"{float(lp.values[row, j]):.3g}", fill=_TEXT)
    return canvas


def layer_grid(lp: LayerProjections, *, tile: int = 64, columns: int | None = None) -> Image.Image:
    """Every projected channel of a layer as :func:`channel_block` s on one canvas."""
    _check_2d(lp)
    blocks = [channel_block(lp, r, tile=tile) for r in range(len(lp.channels))]
    if not blocks:
        raise ParameterError("channels", "at least one projected channel", lp.channels)
    cols = columns or max(1, min(len(blocks), round(math.sqrt(len(blocks) / 2)) or 1))
    rows = math.ceil(len(blocks) / cols)
    bw, bh = blocks[0].size
    pad = 10
    canvas = Image.new("RGB", (cols * (bw + pad) + pad, rows * (bh + pad) + pad + 16), _BG)
    ImageDraw.Draw(canvas).text((pad, 2), f"layer {lp.layer}", fill=_TEXT)
    for i, block in enumerate(blocks):
        r, c = divmod(i, cols)
        canvas.paste(block, (pad + c * (bw + pad), 16 + pad + r * (bh + pad)))
    return canvas


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def write_figures(
    projections: TopProjections, out: str | os.PathLike[str], *, tile: int = 64
) -> dict[str, Any]:
    """Write ``grid_<layer>.png`` per layer and, per kept item,
    ``layers/<layer>/ch<c>/proj<j>.png`` and ``patch<j>.png`` (``j`` = rank). Returns an index
    of the files written (paths relative to ``out``)."""
    out = Path(out)
    index: dict[str, Any] = {}
    for name, lp in projections.layers.items():
        if lp.projections.dim() != 5:
            continue
        grid = f"grid_{_safe(name)}.png"
        atomic_write_bytes(out / grid, _png(layer_grid(lp, tile=tile)))
        items = []
        for row, ch in enumerate(lp.channels):
            folder = Path("layers") / _safe(name) / f"ch{ch}"
            for j in range(lp.values.shape[1]):
                if int(lp.indices[row, j]) < 0:
                    continue
                proj, patch = folder / f"proj{j}.png", folder / f"patch{j}.png"
                atomic_write_bytes(out / proj, _png(projection_image(lp.projections[row, j])))
                atomic_write_bytes(
                    out / patch, _png(patch_image(lp.patches[row, j], lp.clips[row, j]))
                )
                items.append(
                    {
                        "channel": ch,
                        "rank": j,
                        "value": float(lp.values[row, j]),
                        "index": int(lp.indices[row, j]),
                        "position": lp.positions[row, j].tolist(),
                        "box": lp.boxes[row, j].tolist(),
                        "clip": lp.clips[row, j].tolist(),
                        "projection": proj.as_posix(),
                        "patch": patch.as_posix(),
                    }
                )
        index[name] = {"grid": grid, "method": lp.method, "items": items}
    return index
