"""``convlens lint``: checkerboard overlap, size ambiguity and first-layer aliasing of a model."""

from __future__ import annotations

import json
import math
import sys
import warnings
from typing import Any

import click

from convlens.cli._options import MODEL_HELP, model_options
from convlens.cli.arith import INTS
from convlens.errors import ParameterError


def _show(values: Any) -> str:
    values = list(values)
    return str(values[0]) if len(values) == 1 else "x".join(str(v) for v in values)


def _ratio(value: float | None) -> str:
    return "inf" if value is None else f"{value:g}"


def _ambiguous(row: dict[str, Any]) -> str:
    if not row["ambiguous"]:
        return "-"
    parts = []
    for dim in row["ambiguous_inputs"]:
        sizes = "|".join(str(e["size"]) for e in dim)
        pads = [e["output_padding"] for e in dim]
        parts.append(sizes if pads[0] is None else f"{sizes} (op {'|'.join(map(str, pads))})")
    return ", ".join(parts) if len(set(parts)) > 1 else parts[0]


def _table(data: dict[str, Any], model: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    table = Table(title=f"convlens lint {model}, input {_show(data['input_shape'][1:])}")
    for name in ("layer", "type", "in -> out", "overlap min..max", "ratio", "dead", "colliding"):
        table.add_column(name)
    table.add_column("flag")
    for row in data["layers"]:
        table.add_row(
            row["path"],
            row["type"],
            f"{_show(row['input_size'])} -> {_show(row['output_size'])}",
            f"{row['overlap_min']}..{row['overlap_max']}",
            _ratio(row["ratio"]),
            str(row["dead_pixels"]),
            _ambiguous(row),
            "[bold red]FLAG[/]" if row["flagged"] else ("note" if row["suggestion"] else ""),
        )
    console.print(table)
    comp = data["compound"]
    if comp is not None:
        state = "[bold red]FLAG[/]" if comp["flagged"] else "even"
        console.print(
            f"compound ({len(comp['layers'])} layers, {_show(comp['input_size'])} -> "
            f"{_show(comp['output_size'])}): overlap {comp['overlap_min']}..{comp['overlap_max']}, "
            f"ratio {_ratio(comp['ratio'])}, dead {comp['dead_pixels']}: {state}",
            highlight=False,
        )
    alias = data["aliasing"]
    if alias is not None:
        mean = alias["mean_alias_share"]
        console.print(
            f"first layer {alias['path']} (stride {_show(alias['stride'])}, Nyquist "
            f"{_show(round(v, 4) for v in alias['nyquist'])} cycles/px): mean energy above "
            f"Nyquist {'n/a' if mean is None else f'{mean:.1%}'}, "
            f"dead filters {len(alias['dead_filters'])}/{alias['filters']}",
            highlight=False,
        )
    for row in data["layers"]:
        if row["suggestion"]:
            console.print(f"{row['path']}: {row['suggestion']}", highlight=False, soft_wrap=True)
    verdict = "flagged" if data["flagged"] else "clean"
    console.print(f"verdict: {verdict}", highlight=False)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


@click.command("lint", short_help="Checkerboard overlap, size ambiguity and aliasing of a model.")
@click.argument("model", required=False, metavar="[MODEL]")
@model_options
@click.option(
    "--input",
    "input_size",
    type=INTS,
    default=None,
    help="Spatial input size (64 or 64,48); default: the model's own (224 for torchvision).",
)
@click.option(
    "--channels", type=int, default=None, help="Input channels (default: the first conv's)."
)
@click.option(
    "--strict",
    is_flag=True,
    help="Also flag strided convs and pooling whose gradient is uneven or has holes.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.pass_context
def lint_cmd(
    ctx: click.Context,
    model: str | None,
    model_spec: str,
    weights: str | None,
    allow_random: bool,
    seed: int,
    input_size: Any,
    channels: int | None,
    strict: bool,
    fmt: str,
) -> None:
    """Checkerboard overlap, size ambiguity and aliasing of a model.

    MODEL (or --model) is as for `convlens project`. Traces one forward pass, then per
    transposed conv, strided conv and pooling layer: output size and formula, the conv input
    sizes that collide on it (with the output_padding that selects each), the overlap of its
    taps (Odena et al., Distill 2016), dead pixels and a suggestion; the compounded overlap of
    the upsampling chain; the first layer's aliasing (Zeiler & Fergus, arXiv:1311.2901, §4.1).
    Exit status: 0 clean, 1 flagged, 2 bad input.
    """
    from convlens.lint import lint_model
    from convlens.models import load_model

    if model is not None:
        source = ctx.get_parameter_source("model_spec")
        if source is click.core.ParameterSource.COMMANDLINE and model_spec != model:
            raise ParameterError("MODEL", f"one model (MODEL or --model; {MODEL_HELP})", model)
        model_spec = model
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_model(model_spec, weights=weights, allow_random=allow_random, seed=seed)
    for w in caught:
        click.echo(f"convlens: warning: {w.message}", err=True)
    size = input_size if input_size is not None else loaded.input_size
    if size is None:
        raise ParameterError("--input", "a spatial input size (the model has no default)", None)
    try:
        result = lint_model(loaded.model, size, channels=channels, strict=strict)
    except ParameterError as exc:
        if exc.param in ("input_size", "channels"):
            name = "--input" if exc.param == "input_size" else "--channels"
            raise ParameterError(name, exc.expected, exc.received, exc.hint) from None
        raise
    data = _jsonable(result.to_dict())
    if fmt == "json":
        click.echo(json.dumps({"model": model_spec, **data}, indent=2))
    else:
        _table(data, model_spec)
    if result.flagged:
        sys.exit(1)


def register(group: click.Group) -> None:
    group.add_command(lint_cmd)
