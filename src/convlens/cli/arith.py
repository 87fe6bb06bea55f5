"""``convlens arith``: convolution arithmetic from the command line.

Thin over :mod:`convlens.arithmetic`: parse the options, call the library, print. Also the one
size parser (``5`` or ``5,7``) and the geometry options that ``symbolic`` and ``figure`` share
(this module is as light as a command module gets).
"""

from __future__ import annotations

import re
from typing import Any

import click

from convlens.arithmetic import (
    LayerSpec,
    colliding_size_ranges,
    infer_ndim,
    invert_conv,
    output_padding_for,
    torchvision_architecture,
    trace_chain,
    transpose_size_range,
)
from convlens.errors import ParameterError
from convlens.lint.overlap import overlap_map

_INT = re.compile(r"\s*[+-]?[0-9]+\s*")


class Ints(click.ParamType):
    """An int or a comma list of at most ``max_len`` ints, one per dimension (``5`` or ``5,7``);
    ``words`` are accepted as they are, in any case (``same``, ``valid``). Digits are ASCII."""

    name = "INT[,INT...]"

    def __init__(self, words: tuple[str, ...] = (), max_len: int = 3, what: str = "") -> None:
        self.words, self.max_len = words, max_len
        self.what = what or f"one per spatial dimension, at most {max_len}"

    def convert(self, value: Any, param: click.Parameter | None, ctx: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip().lower()
        if text in self.words:
            return text
        name = param.opts[0] if param is not None and param.opts else "value"
        extra = f", or {' / '.join(self.words)}" if self.words else ""
        expected = f"an int or a comma list of ints ({self.what}){extra}"
        parts = text.split(",")
        if len(parts) > self.max_len or not all(_INT.fullmatch(p) for p in parts):
            raise ParameterError(name, expected, value)
        try:
            items = tuple(int(v) for v in parts)
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            raise ParameterError(name, expected, value) from None
        return items[0] if len(items) == 1 else items


INTS = Ints()
PADDING = Ints(("same", "valid"))
#: ``--output-size``: the spatial size, or with the batch and channel sizes in front.
SIZE_NC = Ints(max_len=5, what="spatial sizes, optionally after N and C")
#: ``--channels``: C (in = out) or C_IN,C_OUT.
CHANNELS = Ints(max_len=2, what="C, or C_IN,C_OUT")


def geometry_options(fn: Any) -> Any:
    """The options shared by ``symbolic`` and ``figure``: input, kernel, stride, padding, dilation."""
    for opt in reversed(
        [
            click.option(
                "--input", "input_size", type=INTS, required=True, help="Input size (5 or 5,7)."
            ),
            click.option("--kernel", "kernel_size", type=INTS, required=True, help="Kernel size."),
            click.option("--stride", type=INTS, default=1, show_default=True),
            click.option(
                "--padding", type=INTS, default=0, show_default=True, help="Zero padding."
            ),
            click.option("--dilation", type=INTS, default=1, show_default=True),
        ]
    ):
        fn = opt(fn)
    return fn


def _ndim(dims: int | None, *values: Any) -> int:
    # the library's one rule: --dims, else the longest comma list, else 2-D (as LayerSpec)
    return dims if dims is not None else infer_ndim(*values)


def _show(values: tuple[int, ...] | list[int]) -> str:
    return " x ".join(str(v) for v in values)


def _per_dim(values: tuple[Any, ...]) -> Any:
    return values[0] if len(values) == 1 else values


def _formulas(spec: LayerSpec, size: tuple[int, ...]) -> None:
    lines = spec.formula(size)
    for dim, line in enumerate(lines):
        click.echo(f"  {line}" if len(set(lines)) == 1 else f"  dim {dim}: {line}")
        if len(set(lines)) == 1:
            break


def _collisions(sizes: tuple[range, ...], what: str, out: tuple[int, ...]) -> None:
    for dim, group in enumerate(sizes):
        where = f"dim {dim}: " if len(sizes) > 1 else ""
        if len(group) > 8:
            listed = f"{group[0]}, {group[1]}, ..., {group[-1]} ({len(group):,} sizes)"
        else:
            listed = ", ".join(map(str, group)) if group else "none"
        note = "  (ambiguous)" if len(group) > 1 else ""
        click.echo(f"{where}{what} giving {out[dim]}: {listed}{note}")


_DIMS = click.option(
    "--dims",
    type=click.IntRange(1, 3),
    default=None,
    help="Spatial dimensions (default: the longest comma list, else 2, as the library).",
)


@click.group("arith")
def arith() -> None:
    """Convolution arithmetic: output sizes, inverses, receptive fields.

    Sizes are an int or a comma list with one int per dimension (5 or 5,7). A plain int is
    2-D (5 means 5x5) unless --dims or a comma list says otherwise, as in the library.
    """


@arith.command("conv", short_help="Conv output size, formula, and the transposed conv undoing it.")
@click.option("--input", "input_size", type=INTS, required=True, help="Input size.")
@click.option("--kernel", type=INTS, required=True, help="Kernel size.")
@click.option("--stride", type=INTS, default=1, show_default=True)
@click.option("--padding", type=PADDING, default=0, show_default=True, help="Ints, same or valid.")
@click.option("--dilation", type=INTS, default=1, show_default=True)
@_DIMS
def conv_cmd(
    input_size: Any, kernel: Any, stride: Any, padding: Any, dilation: Any, dims: int | None
) -> None:
    """Output size of a convolution, its formula, and the transposed conv that undoes it."""
    n = _ndim(dims, input_size, kernel, stride, padding, dilation)
    spec = LayerSpec.conv(kernel, stride, padding, dilation, ndim=n)
    inv = invert_conv(spec, input_size)
    click.echo(spec.summary())
    click.echo(f"input {_show(inv.input_size)} -> output {_show(inv.conv_output_size)}")
    _formulas(spec, inv.input_size)
    click.echo(f"undo with {inv.transpose.torch_call()}")
    if inv.output_size is not None:
        click.echo(f"  or in forward: tconv(y, output_size={list(inv.output_size)})")
    else:
        crop = [after for _, after in inv.crop]
        click.echo(
            f"  then drop the last {_show(crop)} output rows: padding='same' is asymmetric "
            f"{spec.padding_pairs()} here and a transposed conv pads symmetrically"
        )
    _collisions(inv.colliding_ranges, "conv input sizes", inv.conv_output_size)
    if inv.ambiguous:
        click.echo(
            f"output_padding={_per_dim(inv.output_padding)} picks {_show(inv.input_size)} "
            "(output_padding = size - smallest colliding size)"
        )


@arith.command("transpose", short_help="Transposed conv output size and colliding conv sizes.")
@click.option("--input", "input_size", type=INTS, required=True, help="Input size.")
@click.option("--kernel", type=INTS, required=True, help="Kernel size.")
@click.option("--stride", type=INTS, default=1, show_default=True)
@click.option("--padding", type=INTS, default=0, show_default=True)
@click.option("--output-padding", type=INTS, default=0, show_default=True)
@click.option("--dilation", type=INTS, default=1, show_default=True)
@click.option(
    "--output-size", type=SIZE_NC, default=None, help="Solve for output_padding, as forward does."
)
@_DIMS
def transpose_cmd(
    input_size: Any,
    kernel: Any,
    stride: Any,
    padding: Any,
    output_padding: Any,
    dilation: Any,
    output_size: Any,
    dims: int | None,
) -> None:
    """Output size of a transposed convolution and the conv input sizes that collide."""
    # --output-size may hold N and C in front: it implies the dimensions only as 1-3 sizes
    spatial = output_size if not (isinstance(output_size, tuple) and len(output_size) > 3) else 1
    n = _ndim(dims, input_size, kernel, stride, padding, output_padding, dilation, spatial)
    spec = LayerSpec.conv_transpose(kernel, stride, padding, output_padding, 1, dilation, ndim=n)
    if output_size is not None:
        spec = spec.replace(output_padding=output_padding_for(spec, input_size, output_size))
    size = spec.check_input_size(input_size)
    out = spec.output_size(size)
    click.echo(spec.summary())
    click.echo(f"input {_show(size)} -> output {_show(out)}")
    _formulas(spec, size)
    ranges = transpose_size_range(spec, size)
    reach = ", ".join(f"{lo}..{hi}" for lo, hi in ranges)
    click.echo(f"output_size= reaches {reach} (output_padding 0..stride-1)")
    _collisions(colliding_size_ranges(spec, size), "conv input sizes", size)
    click.echo(overlap_map(spec, size).describe())


@arith.command("pool", short_help="Pooling output size and colliding input sizes.")
@click.option("--input", "input_size", type=INTS, required=True, help="Input size.")
@click.option("--kernel", type=INTS, required=True, help="Kernel size.")
@click.option("--stride", type=INTS, default=None, help="Stride [default: the kernel size].")
@click.option("--padding", type=INTS, default=0, show_default=True)
@click.option("--dilation", type=INTS, default=1, show_default=True, help="Max pooling only.")
@click.option("--ceil-mode", is_flag=True, help="Round the output size up.")
@click.option("--avg", is_flag=True, help="Average pooling (default: max pooling).")
@_DIMS
def pool_cmd(
    input_size: Any,
    kernel: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: bool,
    avg: bool,
    dims: int | None,
) -> None:
    """Output size of max or average pooling and the input sizes that collide."""
    n = _ndim(dims, input_size, kernel, stride, padding, dilation)
    if avg:
        spec = LayerSpec.avg_pool(kernel, stride, padding, ceil_mode, dilation=dilation, ndim=n)
    else:
        spec = LayerSpec.max_pool(kernel, stride, padding, dilation, ceil_mode, ndim=n)
    size = spec.check_input_size(input_size)
    out = spec.output_size(size)
    click.echo(spec.summary())
    click.echo(f"input {_show(size)} -> output {_show(out)}")
    _formulas(spec, size)
    _collisions(colliding_size_ranges(spec, size), "input sizes", out)


@arith.command("model", short_help="Shapes and receptive fields of a torchvision model.")
@click.argument("name")
@click.option("--input", "input_size", type=INTS, default=224, show_default=True)
@click.option("--channels", type=int, default=3, show_default=True)
def model_cmd(name: str, input_size: Any, channels: int) -> None:
    """Every conv and pool layer of a torchvision architecture (no weights needed):
    output shape, receptive field, jump and start (centre of unit 0, input pixels).

    Valid for chains such as alexnet or vgg16; residual networks are refused.
    """
    from rich.console import Console
    from rich.table import Table

    layers = trace_chain(torchvision_architecture(name), input_size, channels)
    spatial = layers[0].field.spec.check_input_size(input_size)
    table = Table(title=f"{name}, input {_show((channels, *spatial))}")
    for col in ("path", "type", "output", "RF", "jump", "start"):
        table.add_column(col, justify="left" if col in ("path", "type") else "right")
    for t in layers:
        f = t.field
        table.add_row(
            f.path,
            t.module_type,
            _show(t.output_shape),
            _show(f.size),
            _show(f.jump),
            " x ".join(f"{s:g}" for s in f.start),
        )
    Console(width=100).print(table)


def register(group: click.Group) -> None:
    group.add_command(arith)
