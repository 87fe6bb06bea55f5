"""``convlens transpose``: the four routes to transposed convolution, checked against PyTorch."""

from __future__ import annotations

import sys
from typing import Any

import click

from convlens.cli.arith import CHANNELS, INTS
from convlens.transpose import verify_routes


@click.group("transpose")
def transpose() -> None:
    """Transposed convolution four ways: matmul, scatter, fractional, autograd."""


@transpose.command("verify")
@click.option(
    "--input",
    "input_size",
    default=5,
    type=INTS,
    show_default=True,
    help="Spatial input size of the transposed conv (int, or one per dim: 5,7).",
)
@click.option("--kernel", default=3, type=INTS, show_default=True, help="Kernel size.")
@click.option("--stride", default=1, type=INTS, show_default=True, help="Stride.")
@click.option("--padding", default=0, type=INTS, show_default=True, help="Padding.")
@click.option(
    "--output-padding",
    default=0,
    type=INTS,
    show_default=True,
    help="Output padding (smaller than stride or dilation).",
)
@click.option("--dilation", default=1, type=INTS, show_default=True, help="Dilation.")
@click.option("--groups", default=1, type=int, show_default=True, help="Groups.")
@click.option(
    "--channels",
    default=None,
    type=CHANNELS,
    help="C (in and out) or C_IN,C_OUT of the transposed conv [default: 2*groups].",
)
@click.option(
    "--dims", default=2, type=click.IntRange(1, 3), show_default=True, help="Spatial dimensions."
)
@click.option("--batch", default=2, type=click.IntRange(min=1), show_default=True)
@click.option("--seed", default=0, type=int, show_default=True, help="Random seed.")
@click.option(
    "--tol",
    default=1e-9,
    type=float,
    show_default=True,
    help="Largest accepted max-abs difference (float64), a finite number >= 0.",
)
@click.option(
    "--max-bytes",
    default=None,
    type=int,
    help="Refuse a run estimated to need more memory [default: 2 GiB, or half the available].",
)
def verify(
    input_size: Any,
    kernel: Any,
    stride: Any,
    padding: Any,
    output_padding: Any,
    dilation: Any,
    groups: int,
    channels: Any,
    dims: int,
    batch: int,
    seed: int,
    tol: float,
    max_bytes: int | None,
) -> None:
    """Run the four routes against F.conv_transposeNd on random float64 data.

    Prints each route's max abs difference; exits with status 1 if any exceeds --tol.
    """
    shape, checks = verify_routes(
        input_size,
        kernel,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
        channels=channels,
        dims=dims,
        batch=batch,
        seed=seed,
        tol=tol,
        max_bytes=max_bytes,
    )
    click.echo(f"F.conv_transpose{dims}d output shape {shape}, float64, tolerance {tol:g}")
    click.echo(f"{'route':<12}{'max |diff|':>12}  result")
    for c in checks:
        click.echo(f"{c.route:<12}{c.max_abs_diff:>12.3g}  {'ok' if c.ok else 'DIFFERS'}")
    if not all(c.ok for c in checks):
        sys.exit(1)


def register(group: click.Group) -> None:
    """Add the ``transpose`` command group to the ``convlens`` CLI."""
    group.add_command(transpose)
