"""The size options of the geometry commands (arith, symbolic, figure): one parser for
``5`` or ``5,7`` and one definition of the shared geometry options.

Imports click and the error family only, so every command that uses it stays light.
"""

from __future__ import annotations

from typing import Any

import click

from convlens.errors import ParameterError

__all__ = ["INTS", "PADDING", "Ints", "geometry_options"]


class Ints(click.ParamType):
    """An int or a comma list of ints, one per dimension (``5`` or ``5,7``); ``words`` are
    accepted as they are (``same``, ``valid``)."""

    name = "INT[,INT...]"

    def __init__(self, words: tuple[str, ...] = ()) -> None:
        self.words = words

    def convert(self, value: Any, param: click.Parameter | None, ctx: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip().lower()
        if text in self.words:
            return text
        try:
            items = tuple(int(v) for v in text.split(","))
        except ValueError:
            extra = f", or {' / '.join(self.words)}" if self.words else ""
            name = param.opts[0] if param is not None and param.opts else "value"
            raise ParameterError(name, f"an int or a comma list of ints{extra}", value) from None
        return items[0] if len(items) == 1 else items


INTS = Ints()
PADDING = Ints(("same", "valid"))


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
