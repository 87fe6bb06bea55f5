"""Options shared by the commands that load a model and read a dataset (project, scan, report).

One definition per option, so the help texts, defaults and parsing cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from convlens.choices import MAX_PIXELS, RULES
from convlens.errors import ParameterError

F = TypeVar("F", bound=Callable[..., Any])

MODEL_HELP = (
    "torchvision architecture name (with --weights), 'demo' (the embedded Fashion-MNIST CNN), "
    "'package.module:factory' or a TorchScript file."
)
DATA_HELP = (
    "A folder of images (recursive; class sub-folders give labels) or 'demo' "
    "(the bundled Fashion-MNIST test sample)."
)


def model_options(func: F) -> F:
    """``--model`` (as ``model_spec``, default ``demo``), ``--weights``, ``--allow-random`` and
    ``--seed``."""
    func = click.option(
        "--seed",
        type=click.IntRange(min=0, max=2**63 - 1),
        default=0,
        show_default=True,
        help="Seed of the random weights (--allow-random) and of a factory's own random "
        "draws: the same network in every run and every process; recorded in the results.",
    )(func)
    func = click.option(
        "--allow-random",
        is_flag=True,
        help="Run a torchvision architecture with random weights when no --weights is given "
        "(a loud warning).",
    )(func)
    func = click.option(
        "--weights",
        type=click.Path(dir_okay=False),
        default=None,
        help="Local weights file: a state dict saved by torch.save or safetensors (loaded with "
        "weights_only=True; pickled models are refused).",
    )(func)
    return click.option(
        "--model", "model_spec", default="demo", show_default=True, help=MODEL_HELP
    )(func)


def max_pixels_option(func: F) -> F:
    """``--max-image-pixels`` (as ``max_pixels``): the decompression-bomb limit per image."""
    return click.option(
        "--max-image-pixels",
        "max_pixels",
        type=click.IntRange(min=1),
        default=MAX_PIXELS,
        show_default=True,
        help="Refuse images with more pixels than this (a decompression-bomb guard; "
        "Pillow's limit by default).",
    )(func)


def rule_option(func: F) -> F:
    """``--rule``: the backward rule at each ReLU (Springenberg et al., arXiv:1412.6806)."""
    return click.option(
        "--rule",
        type=click.Choice(RULES),
        default="deconvnet",
        show_default=True,
        help="Backward rule at each ReLU: deconvnet (Zeiler & Fergus), guided, gradient.",
    )(func)


def parse_channels(text: str, param: str = "--channels") -> tuple[int, ...]:
    """Channel indices from ``"0-7,12"`` (ranges inclusive, in the order given, no repeats).

    >>> parse_channels("0-3,12,2")
    (0, 1, 2, 3, 12)
    """
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        try:
            first = int(low)
            last = int(high) if dash else first
        except ValueError:
            raise ParameterError(
                param, "channel indices and ranges such as '0-7,12'", text
            ) from None
        if first < 0 or last < first:
            raise ParameterError(param, "ranges 'a-b' with 0 <= a <= b", part)
        out.extend(c for c in range(first, last + 1) if c not in out)
    return tuple(out)


DEVICE_HELP = "cpu, cuda, cuda:1 ..."


def device_option(func: F) -> F:
    """``--device`` (default ``cpu``): the torch device the model runs on."""
    return click.option("--device", default="cpu", show_default=True, help=DEVICE_HELP)(func)


def demo_data_option(func: F) -> F:
    """``--data`` (default ``demo``, the bundled sample), for commands that run on the demo."""
    return click.option("--data", "data", default="demo", show_default=True, help=DATA_HELP)(func)


def batch_size_option(default: int) -> Callable[[F], F]:
    """``--batch-size`` (a positive int, default ``default``): images per forward pass."""

    def decorate(func: F) -> F:
        return click.option(
            "--batch-size",
            type=click.IntRange(min=1),
            default=default,
            show_default=True,
            help="Images per forward pass.",
        )(func)

    return decorate
