"""``convlens project``: deconvnet projections of images, one PNG per (image, target)."""

from __future__ import annotations

from typing import Any

import click

from convlens.choices import ENGINES, SEEDS
from convlens.cli._options import max_pixels_option, model_options, rule_option
from convlens.errors import ParameterError


def _position(text: str) -> Any:
    if text in ("max", "map"):
        return text
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ParameterError("--position", "'max', 'map' or indices like 3,4", text) from None


@click.command("project")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@model_options
@click.option("--layer", required=True, help="Module path of the layer, e.g. features.28.")
@click.option(
    "--channel",
    "channels",
    type=int,
    multiple=True,
    required=True,
    help="Channel of that layer (repeat for several).",
)
@click.option(
    "--position",
    default="max",
    show_default=True,
    help="'max' (strongest unit), 'map' (whole feature map) or indices i,j.",
)
@rule_option
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="auto",
    show_default=True,
    help="explicit reversed network, autograd rules, or auto.",
)
@click.option(
    "--signal-seed",
    type=click.Choice(SEEDS),
    default="value",
    show_default=True,
    help="Start the reversed pass from the activation's value (Zeiler & Fergus) or from 1 "
    "(as Captum and zennit do); they differ for units that are not positive.",
)
@click.option(
    "--scale", type=int, default=1, show_default=True, help="Enlarge the PNGs by pixel repetition."
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder (written only when everything succeeded; files convlens did not "
    "write there are never replaced).",
)
@max_pixels_option
def project_command(
    images: tuple[str, ...],
    model_spec: str,
    weights: str | None,
    allow_random: bool,
    seed: int,
    layer: str,
    channels: tuple[int, ...],
    position: str,
    rule: str,
    engine: str,
    signal_seed: str,
    scale: int,
    out_dir: str,
    max_pixels: int,
) -> None:
    """Project activations of IMAGE... back to pixel space (Zeiler & Fergus, arXiv:1311.2901).

    Writes one PNG per (image, channel) and projections.json (model, weights hash, layer,
    channel, position, value, rule, signal seed, the engine that ran and why, files). Display: each projection is contrast-stretched on
    its own, zero at mid-grey: x / (2 max|x|) + 0.5.
    """
    from convlens.pipeline import project_images

    run = project_images(
        images,
        model_spec,
        layer=layer,
        channels=channels,
        out=out_dir,
        position=_position(position),
        rule=rule,
        engine=engine,
        scale=scale,
        weights=weights,
        allow_random=allow_random,
        seed=seed,
        max_pixels=max_pixels,
        signal_seed=signal_seed,
    )
    for message in run.warnings:
        click.echo(f"convlens: warning: {message}", err=True)
    click.echo(f"engine: {run.engine_note}")
    click.echo(f"wrote {len(run.records)} projection(s) and projections.json to {run.out}")


def register(group: click.Group) -> None:
    group.add_command(project_command)
