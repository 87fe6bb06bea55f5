"""``convlens symbolic``: C, the conv output and the transposed result as symbols.

Thin over :mod:`convlens.symbolic`: parse the options, build, render, print.
"""

from __future__ import annotations

from typing import Any

import click

from convlens.errors import ParameterError
from convlens.symbolic import FORMATS, SHOWS, render, symbolic_conv, symbolic_conv_transpose
from convlens.symbolic._pattern import make_geometry


class _Ints(click.ParamType):
    """An int or a comma list of ints, one per dimension (``5`` or ``5,7``)."""

    name = "INT[,INT...]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            items = tuple(int(v) for v in value.strip().split(","))
        except ValueError:
            name = param.opts[0] if param is not None and param.opts else "value"
            raise ParameterError(name, "an int or a comma list of ints", value) from None
        return items[0] if len(items) == 1 else items


INTS = _Ints()


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


@click.command("symbolic")
@geometry_options
@click.option(
    "--channels",
    type=INTS,
    default=1,
    show_default=True,
    help="Channels: C (in = out = C) or CIN,COUT.",
)
@click.option("--groups", type=int, default=1, show_default=True)
@click.option(
    "--output-padding",
    type=INTS,
    default=None,
    help="Show ConvTranspose(..., output_padding) applied to the conv's output; the conv "
    "input grows to (o-1)s - 2p + d(k-1) + output_padding + 1.",
)
@click.option("--show", type=click.Choice(SHOWS), default="all", show_default=True)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="latex", show_default=True)
@click.option(
    "--layout",
    type=click.Choice(["row", "torch"]),
    default="row",
    show_default=True,
    help="C as the seed's (in, out) with vec(x)^T C, or torch's (out, in) with C vec(x).",
)
@click.option("--zero-based", is_flag=True, help="0-based indices (default 1-based, as the seed).")
@click.option("--max-rows", type=int, default=32, show_default=True, help="Elide rows beyond this.")
@click.option(
    "--max-cols", type=int, default=16, show_default=True, help="Elide columns beyond this."
)
@click.option("--blocks", is_flag=True, help="Split large matrices into blocks instead of eliding.")
def symbolic_cmd(
    input_size: Any,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    channels: Any,
    groups: int,
    output_padding: Any,
    show: str,
    fmt: str,
    layout: str,
    zero_based: bool,
    max_rows: int,
    max_cols: int,
    blocks: bool,
) -> None:
    """Derive C, the conv output and the transposed-conv result with sympy.

    Example: convlens symbolic --input 4 --kernel 3 --show C (the seed's 16x4 C).
    """
    cin, cout = channels if isinstance(channels, tuple) else (channels, channels)
    common = {
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
        "index_base": 0 if zero_based else 1,
    }
    if output_padding is None:
        sc = symbolic_conv(input_size, kernel_size, in_channels=cin, out_channels=cout, **common)
    else:
        conv = make_geometry(
            input_size, kernel_size, stride=stride, padding=padding, dilation=dilation
        )
        sc = symbolic_conv_transpose(
            conv.output_size,
            kernel_size,
            output_padding=output_padding,
            in_channels=cout,
            out_channels=cin,
            **common,
        )
    text = render(sc, show, fmt, layout=layout, max_rows=max_rows, max_cols=max_cols, blocks=blocks)
    click.echo(text)


def register(group: click.Group) -> None:
    group.add_command(symbolic_cmd)
