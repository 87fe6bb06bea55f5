"""``convlens project``: deconvnet projections of images, one PNG per (image, target)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import click

from convlens.cli._options import model_options, rule_option
from convlens.deconvnet.project import ENGINES
from convlens.errors import ParameterError
from convlens.io import staged_directory


def _position(text: str) -> Any:
    if text in ("max", "map"):
        return text
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ParameterError("--position", "'max', 'map' or indices like 3,4", text) from None


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


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
    "--scale", type=int, default=1, show_default=True, help="Enlarge the PNGs by pixel repetition."
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder (written only when everything succeeded).",
)
def project_command(
    images: tuple[str, ...],
    model_spec: str,
    weights: str | None,
    allow_random: bool,
    layer: str,
    channels: tuple[int, ...],
    position: str,
    rule: str,
    engine: str,
    scale: int,
    out_dir: str,
) -> None:
    """Project activations of IMAGE... back to pixel space (Zeiler & Fergus, arXiv:1311.2901).

    Writes one PNG per (image, channel) and projections.json (model, weights hash, layer,
    channel, position, value, rule, files). Display: each projection is contrast-stretched on
    its own, zero at mid-grey: x / (2 max|x|) + 0.5.
    """
    import torch

    from convlens.deconvnet.display import to_image
    from convlens.deconvnet.project import project
    from convlens.deconvnet.target import Target
    from convlens.models import RandomWeightsWarning, load_image, load_model

    targets = [Target(layer, c, _position(position)) for c in channels]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_model(model_spec, weights=weights, allow_random=allow_random)
    for w in caught:
        click.echo(f"convlens: warning: {w.message}", err=True)
    random_weights = any(issubclass(w.category, RandomWeightsWarning) for w in caught)
    batch = torch.stack([load_image(p, loaded.preprocess) for p in images])
    param = next(iter(loaded.model.parameters()), None)
    if param is not None:
        batch = batch.to(param.device)
    result = project(loaded.model, batch, targets, rule=rule, engine=engine)

    records = []
    with staged_directory(out_dir, prefix=".convlens-project-") as tmp:
        for n, image in enumerate(images):
            for t, target in enumerate(targets):
                name = (
                    f"{n:03d}_{_slug(Path(image).stem)}_{_slug(layer)}_c{target.channel}_{rule}.png"
                )
                to_image(result.projections[n, t].cpu(), scale=scale).save(tmp / name)
                records.append(
                    {
                        "image": os.fspath(image),
                        "file": name,
                        "layer": target.layer,
                        "channel": target.channel,
                        "position": result.positions[n, t].tolist()
                        if target.position != "map"
                        else "map",
                        "value": float(result.values[n, t]),
                    }
                )
        meta = {
            "model": loaded.name,
            "source": loaded.source,
            "weights_sha256": loaded.weights_sha256,
            "random_weights": random_weights,
            "preprocess": repr(loaded.preprocess),
            "layer": layer,
            "position_requested": position,
            "rule": rule,
            "engine": result.engine,
            "display": "each projection stretched on its own: x / (2 max|x|) + 0.5",
            "projections": records,
        }
        (tmp / "projections.json").write_text(json.dumps(meta, indent=2) + "\n")
    out = Path(out_dir)
    click.echo(f"wrote {len(records)} projection(s) and projections.json to {out}")


def register(group: click.Group) -> None:
    group.add_command(project_command)
