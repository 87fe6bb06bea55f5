"""``convlens explore``: write the interactive page for conv, transposed conv and C.

Thin over :func:`convlens.explore.write_explorer`: the options are the page's initial state.
"""

from __future__ import annotations

from typing import Any

import click

from convlens.cli.arith import INTS, PADDING
from convlens.explore import describe_state, write_explorer


@click.command(
    "explore", short_help="Write an interactive HTML page for conv, transposed conv and C."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    required=True,
    help="The HTML file to write (self-contained: open it from disk, nothing is fetched).",
)
@click.option(
    "--mode",
    type=click.Choice(["conv", "transpose"]),
    default="conv",
    show_default=True,
    help="Start with a convolution or a transposed convolution.",
)
@click.option(
    "--dims",
    type=click.IntRange(1, 2),
    default=None,
    help="Spatial dimensions (default: the length of any comma list, else 2).",
)
@click.option("--input", "input_size", type=INTS, default=5, show_default=True, help="Input size.")
@click.option("--kernel", type=INTS, default=3, show_default=True, help="Kernel size.")
@click.option("--stride", type=INTS, default=1, show_default=True)
@click.option("--padding", type=PADDING, default=0, show_default=True, help="Ints, same or valid.")
@click.option("--dilation", type=INTS, default=1, show_default=True)
@click.option(
    "--output-padding", type=INTS, default=0, show_default=True, help="Transposed conv only."
)
def explore(
    out: str,
    mode: str,
    dims: int | None,
    input_size: Any,
    kernel: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    output_padding: Any,
) -> None:
    """Write an interactive HTML page for conv, transposed conv and C.

    The options set the page's starting point; on the page every setting can be changed, and
    the URL query (?mode=transpose&input=5&kernel=3&stride=2&padding=1&output_padding=1) keeps
    the configuration, so a link shares it.
    """
    state = {
        "mode": mode,
        "dims": dims,
        "input": input_size,
        "kernel": kernel,
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "output_padding": output_padding,
    }
    path = write_explorer(out, **state)
    click.echo(f"wrote {path} ({describe_state(**state)}); open it in a browser")


def register(group: click.Group) -> None:
    """Add the ``explore`` command to the ``convlens`` CLI."""
    group.add_command(explore)
