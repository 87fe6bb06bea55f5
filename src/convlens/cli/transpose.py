"""``convlens transpose``: the four routes to transposed convolution, checked against PyTorch."""

from __future__ import annotations

import sys

import click

from convlens.transpose import verify_routes


def _ints(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    """Parse ``"3"`` or ``"3,5"`` into a tuple of ints."""
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(
            f"expected an int or comma-separated ints, received {value!r}"
        ) from None


def _one_or_all(values: tuple[int, ...]) -> int | tuple[int, ...]:
    return values[0] if len(values) == 1 else values


@click.group("transpose")
def transpose() -> None:
    """Transposed convolution four ways: matmul, scatter, fractional, autograd."""


@transpose.command("verify")
@click.option(
    "--input",
    "input_size",
    default="5",
    callback=_ints,
    show_default=True,
    help="Spatial input size of the transposed conv (int, or one per dim: 5,7).",
)
@click.option("--kernel", default="3", callback=_ints, show_default=True, help="Kernel size.")
@click.option("--stride", default="1", callback=_ints, show_default=True, help="Stride.")
@click.option("--padding", default="0", callback=_ints, show_default=True, help="Padding.")
@click.option(
    "--output-padding",
    default="0",
    callback=_ints,
    show_default=True,
    help="Output padding (smaller than stride or dilation).",
)
@click.option("--dilation", default="1", callback=_ints, show_default=True, help="Dilation.")
@click.option("--groups", default=1, type=int, show_default=True, help="Groups.")
@click.option(
    "--channels",
    default=None,
    callback=_ints,
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
    help="Largest accepted max-abs difference (float64).",
)
def verify(
    input_size: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    output_padding: tuple[int, ...],
    dilation: tuple[int, ...],
    groups: int,
    channels: tuple[int, ...] | None,
    dims: int,
    batch: int,
    seed: int,
    tol: float,
) -> None:
    """Run the four routes against F.conv_transposeNd on random float64 data.

    Prints each route's max abs difference; exits with status 1 if any exceeds --tol.
    """
    if channels is not None and len(channels) not in (1, 2):
        raise click.BadParameter("expected C or C_IN,C_OUT", param_hint="--channels")
    pair = None if channels is None else (channels[0], channels[-1])
    shape, checks = verify_routes(
        _one_or_all(input_size),
        _one_or_all(kernel),
        stride=_one_or_all(stride),
        padding=_one_or_all(padding),
        output_padding=_one_or_all(output_padding),
        dilation=_one_or_all(dilation),
        groups=groups,
        channels=pair,
        dims=dims,
        batch=batch,
        seed=seed,
        tol=tol,
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
