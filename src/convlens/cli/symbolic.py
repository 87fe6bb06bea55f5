"""``convlens symbolic``: C, the conv output and the transposed result as symbols.

Thin over :mod:`convlens.symbolic`: parse the options, build, render, print.
"""

from __future__ import annotations

from typing import Any

import click

from convlens.cli.arith import CHANNELS, INTS, geometry_options
from convlens.symbolic import (
    FORMATS,
    MAX_ENTRIES,
    SHOWS,
    render,
    symbolic_conv,
    symbolic_undo,
)


@click.command("symbolic")
@geometry_options
@click.option(
    "--channels",
    type=CHANNELS,
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
@click.option(
    "--max-entries",
    type=int,
    default=MAX_ENTRIES,
    show_default=True,
    help="Refuse (before building) more non-zeros of C plus symbols, or (before printing) "
    "more printed entries, than this.",
)
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
    max_entries: int,
) -> None:
    """Derive C, the conv output and the transposed-conv result with sympy.

    Example: convlens symbolic --input 4 --kernel 3 --show C (the seed's 16x4 C).
    """
    cin, cout = channels if isinstance(channels, tuple) else (channels, channels)
    sc = symbolic_conv(
        input_size, kernel_size, stride=stride, padding=padding, dilation=dilation,
        in_channels=cin, out_channels=cout, groups=groups, index_base=0 if zero_based else 1,
        max_entries=max_entries,
    )  # fmt: skip
    if output_padding is not None:
        sc = symbolic_undo(sc, output_padding, max_entries=max_entries)
    text = render(
        sc, show, fmt, layout=layout, max_rows=max_rows, max_cols=max_cols, blocks=blocks,
        max_entries=max_entries,
    )  # fmt: skip
    click.echo(text)


def register(group: click.Group) -> None:
    group.add_command(symbolic_cmd)
