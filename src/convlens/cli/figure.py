"""``convlens figure``: pictures of a convolution, drawn for the geometry you give.

Thin over :mod:`convlens.figures`: the format comes from ``--out`` (.png / .svg still, .gif
animation).
"""

from __future__ import annotations

from typing import Any

import click

from convlens.cli.arith import INTS, geometry_options
from convlens.figures import (
    MAX_CELLS,
    MAX_FRAMES,
    MAX_MATRIX_CELLS,
    Scene,
    connection_scene,
    conv_scene,
    fractional_scene,
    matrix_scene,
    save_scene,
    scatter_scene,
)

_OUT = click.option(
    "--out",
    type=click.Path(dir_okay=False),
    required=True,
    help="Output file: .gif (every frame), .png or .svg (one frame).",
)
_FRAME = click.option(
    "--frame",
    type=click.IntRange(min=0),
    default=None,
    help="For a .png/.svg still: which frame (0-based, as in the library; default 0).",
)
_FPS = click.option(
    "--fps", type=float, default=2.0, show_default=True, help="GIF frames per second (0.01-100)."
)
_MAX_CELLS = click.option(
    "--max-cells",
    type=int,
    default=MAX_CELLS,
    show_default=True,
    help="Refuse (before drawing) a picture of more grid cells than this.",
)
_MAX_FRAMES = click.option(
    "--max-frames",
    type=int,
    default=MAX_FRAMES,
    show_default=True,
    help="Refuse (before drawing) a GIF of more frames than this.",
)


def _gif_frames(out: str, max_frames: int) -> int | None:
    """The frame limit to build with: every frame of a .gif is drawn; a still draws one."""
    return max_frames if out.lower().endswith(".gif") else None


def _save(scene: Scene, out: str, frame: int | None, fps: float, max_frames: int | None) -> None:
    path = save_scene(scene, out, frame=frame, fps=fps, max_frames=max_frames)
    if path.suffix.lower() == ".gif":
        click.echo(f"wrote {path} ({scene.n_frames} frames)")
    else:
        click.echo(f"wrote {path} (frame {frame or 0} of frames 0..{scene.n_frames - 1})")


@click.group("figure")
def figure() -> None:
    """Draw the kernel sliding (conv), the transposed conv (scatter or fractional) and C."""


@figure.command("conv")
@geometry_options
@_OUT
@_FRAME
@_FPS
@_MAX_CELLS
@_MAX_FRAMES
def conv_cmd(
    input_size: Any,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    out: str,
    frame: int | None,
    fps: float,
    max_cells: int,
    max_frames: int,
) -> None:
    """The kernel sliding over the padded input, one frame per output pixel."""
    scene = conv_scene(
        input_size, kernel_size, stride=stride, padding=padding, dilation=dilation,
        max_cells=max_cells, max_frames=_gif_frames(out, max_frames),
    )  # fmt: skip
    _save(scene, out, frame, fps, max_frames)


@figure.command("transpose")
@geometry_options
@click.option("--output-padding", type=INTS, default=0, show_default=True)
@click.option(
    "--view",
    type=click.Choice(["scatter", "fractional"]),
    default="scatter",
    show_default=True,
    help="scatter: one frame per input pixel stamping the kernel; fractional: the flipped "
    "kernel over the zero-inserted input, one frame per output pixel.",
)
@_OUT
@_FRAME
@_FPS
@_MAX_CELLS
@_MAX_FRAMES
def transpose_cmd(
    input_size: Any,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    output_padding: Any,
    view: str,
    out: str,
    frame: int | None,
    fps: float,
    max_cells: int,
    max_frames: int,
) -> None:
    """A transposed convolution (--input is its input size) in the scatter or fractional view."""
    make = scatter_scene if view == "scatter" else fractional_scene
    scene = make(
        input_size,
        kernel_size,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        max_cells=max_cells,
        max_frames=_gif_frames(out, max_frames),
    )
    _save(scene, out, frame, fps, max_frames)


@figure.command("matrix")
@geometry_options
@click.option(
    "--view",
    type=click.Choice(["pattern", "connections"]),
    default="pattern",
    show_default=True,
    help="pattern: C with each kernel entry in its colour; connections: input-output lines.",
)
@click.option(
    "--layout",
    type=click.Choice(["torch", "row"]),
    default="torch",
    show_default=True,
    help="Pattern only: torch (out, in) as the guide's 4x16, or the seed's row (in, out).",
)
@_OUT
@click.option(
    "--max-cells",
    type=int,
    default=None,
    help="Refuse (before building) a picture of more entries of C (pattern) or lines and "
    f"points (connections) than this [default: {MAX_MATRIX_CELLS:,} and {MAX_CELLS:,}].",
)
def matrix_cmd(
    input_size: Any,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    view: str,
    layout: str,
    out: str,
    max_cells: int | None,
) -> None:
    """The conv matrix C as a coloured pattern or as input-output connections (.png / .svg)."""
    kw = {"stride": stride, "padding": padding, "dilation": dilation, "max_cells": max_cells}
    if view == "pattern":
        scene: Scene = matrix_scene(input_size, kernel_size, layout=layout, **kw)
    else:
        scene = connection_scene(input_size, kernel_size, **kw)
    _save(scene, out, None, 2.0, None)


@figure.command("overlap")
@click.option("--kernel", "kernel_size", type=INTS, required=True, help="Kernel size.")
@click.option("--stride", type=INTS, default=1, show_default=True)
@click.option("--padding", type=INTS, default=0, show_default=True, help="Zero padding.")
@click.option("--dilation", type=INTS, default=1, show_default=True)
@click.option("--output-padding", type=INTS, default=0, show_default=True)
@click.option("--input", "input_size", type=INTS, default=4, show_default=True, help="Input size.")
@click.option("--dims", type=click.IntRange(1, 2), default=2, show_default=True)
@click.option(
    "--layers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Also draw the compounded map of this many copies of the layer.",
)
@click.option(
    "--out", type=click.Path(dir_okay=False), required=True, help="Output file: .png or .svg."
)
def overlap_cmd(
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    output_padding: Any,
    input_size: Any,
    dims: int,
    layers: int,
    out: str,
) -> None:
    """The overlap (checkerboard) map of a transposed conv, and of a stack of them, as heat maps."""
    from convlens.arithmetic import LayerSpec
    from convlens.figures.overlap import OverlapPanel, save_overlap_figure
    from convlens.lint import overlap_panels

    spec = LayerSpec.conv_transpose(
        kernel_size, stride, padding, output_padding, 1, dilation, ndim=dims
    )
    panels = [OverlapPanel(**p) for p in overlap_panels(spec, input_size, layers=layers)]
    click.echo(f"wrote {save_overlap_figure(panels, out)}")


def register(group: click.Group) -> None:
    group.add_command(figure)
