"""``convlens arith``: convolution arithmetic from the command line."""

from __future__ import annotations

import click


@click.group("arith")
def arith() -> None:
    """Convolution arithmetic: output sizes, inverses, receptive fields."""


def register(group: click.Group) -> None:
    group.add_command(arith)
