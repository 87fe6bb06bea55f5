"""``convlens evolution``, ``convlens invariance``, ``convlens correspondence``: the rest of
Zeiler & Fergus (arXiv:1311.2901) — Fig. 4, Fig. 5 and Table 1. Thin: parse, call
:mod:`convlens.pipeline.analyze`, print."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from convlens.cli._options import (
    F,
    batch_size_option,
    demo_data_option,
    device_option,
    model_options,
    parse_channels,
    rule_option,
)
from convlens.errors import ParameterError

_OUT_HELP = (
    "Run folder (new or empty; an earlier run of this command only with --resume or --overwrite)."
)


def _inputs(func: F) -> F:
    """What every analysis reads: ``--model`` and its weights (:func:`model_options`), then
    ``--data``."""
    return model_options(demo_data_option(func))


def _layers(demo_default: str, what: str = "Comma-separated module paths") -> Callable[[F], F]:
    """``--layers`` (comma-separated module paths; ``demo_default`` for the demo model)."""
    return click.option(
        "--layers", default=None, help=f"{what} [default for the demo: {demo_default}]."
    )


def _run(batch_size: int | None = None) -> Callable[[F], F]:
    """The options every analysis ends with: ``--batch-size`` (when ``batch_size`` is its
    default), ``--device``, then the run folder: ``--out`` (as ``out_dir``), ``--resume``,
    ``--overwrite`` and ``--progress/--no-progress``."""

    def decorate(func: F) -> F:
        func = click.option(
            "--progress/--no-progress", default=None, help="Progress bars (default: on a tty)."
        )(func)
        func = click.option(
            "--overwrite",
            is_flag=True,
            help="Replace the files an earlier run of this command wrote in --out (nothing else).",
        )(func)
        func = click.option("--resume", is_flag=True, help="Continue an earlier run in --out.")(
            func
        )
        func = click.option(
            "--out", "out_dir", required=True, type=click.Path(file_okay=False), help=_OUT_HELP
        )(func)
        func = device_option(func)
        return batch_size_option(batch_size)(func) if batch_size is not None else func

    return decorate


def _floats(text: str | None, param: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ParameterError(param, "comma-separated numbers", text) from None


def _layer_channels(
    layers: str | None, channels: tuple[str, ...]
) -> dict[str, list[int] | None] | None:
    spec: dict[str, list[int] | None] = {}
    if layers:
        spec.update(dict.fromkeys(s for s in layers.split(",") if s))
    for item in channels:
        layer, sep, chans = item.partition("=")
        if not sep or not layer:
            raise ParameterError("--channels", "LAYER=CHANNELS such as features.3=0-3,7", item)
        spec[layer] = list(parse_channels(chans))
    return spec or None


@click.command("evolution")
@_inputs
@click.option(
    "--checkpoints",
    multiple=True,
    default=("demo",),
    show_default=True,
    help="Checkpoint files or folders of them (safetensors, or torch.save state dicts read "
    "with weights_only=True), in training order; repeat the option. 'demo': the demo CNN at "
    "epochs 0, 1, 2, 5, 10.",
)
@_layers("features.0,features.3,features.6")
@click.option(
    "--channels",
    multiple=True,
    metavar="LAYER=CHANNELS",
    help="Channels of one layer, e.g. features.3=0-3,7 (repeatable; other layers: a random "
    "subset).",
)
@click.option(
    "--per-layer",
    type=click.IntRange(min=1),
    default=6,
    show_default=True,
    help="Channels chosen at random per layer.",
)
@click.option("--channel-seed", type=int, default=0, show_default=True, help="Seed of that choice.")
@rule_option
@click.option(
    "--every",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Scan every N-th image only.",
)
@_run(batch_size=64)
def evolution_command(
    model_spec: str,
    weights: str | None,
    allow_random: bool,
    checkpoints: tuple[str, ...],
    data: str,
    layers: str | None,
    channels: tuple[str, ...],
    per_layer: int,
    seed: int,
    channel_seed: int,
    rule: str,
    every: int,
    batch_size: int,
    device: str,
    out_dir: str,
    resume: bool,
    overwrite: bool,
    progress: bool | None,
) -> None:
    """Feature evolution during training (Zeiler & Fergus, arXiv:1311.2901, Figure 4).

    For every checkpoint: one scan of the dataset (top-1 per channel; resumable, a run folder
    per checkpoint under OUT/scans/), then the deconvnet projection of the strongest
    activation of each chosen channel. Writes evolution.png (rows: channels, columns:
    checkpoints; a red frame where the top-1 image changed), evolution_patches.png,
    evolution.json and evolution.safetensors.
    """
    from convlens.pipeline.analyze import run_evolution

    def announce(k: int, checkpoint: Any) -> None:
        if progress is not False:
            click.echo(f"checkpoint {k + 1}: {checkpoint.label}", err=True)

    run = run_evolution(
        model_spec,
        data,
        out_dir,
        checkpoints=checkpoints,
        layers=_layer_channels(layers, channels),
        weights=weights,
        allow_random=allow_random,
        per_layer=per_layer,
        seed=channel_seed,
        model_seed=seed,
        rule=rule,
        batch_size=batch_size,
        every=every,
        device=device,
        resume=resume,
        overwrite=overwrite,
        progress=progress,
        on_checkpoint=announce,
    )
    result = run.result
    for name, layer in result.layers.items():
        changes = ", ".join(
            f"ch {c}: {int(n)}" for c, n in zip(layer.channels, layer.changed.sum(0))
        )
        click.echo(f"{name}: top-1 image changes over {len(result.labels)} checkpoints: {changes}")
    for path in run.files:
        click.echo(f"wrote {path}")


@click.command("invariance")
@_inputs
@_layers("features.1,classifier.3", "A low and a high layer, comma-separated")
@click.option(
    "--images",
    default=None,
    help="Dataset indices, e.g. 0-4,17 [default: of 5 classes, the first image the model classifies correctly].",
)
@click.option(
    "--translate",
    default=None,
    help="Vertical shifts in whole pixels, e.g. -7,-3,0,3,7 [default: every pixel up "
    "to a quarter of the height].",
)
@click.option("--scale", default=None, help="Scale factors [default: 0.6 to 1.6 by 0.1].")
@click.option("--rotate", default=None, help="Angles in degrees [default: 0 to 360 by 15].")
@click.option(
    "--fill",
    default="black",
    show_default=True,
    help="Border fill: black (a black pixel through the preprocessing), zero (the "
    "normalised mean) or a number in the model's input units.",
)
@click.option(
    "--true-class",
    type=click.Choice(["auto", "dataset", "predicted"]),
    default="auto",
    show_default=True,
    help="The class whose probability is shown: the dataset's label or the model's "
    "prediction on the original (auto: dataset for --data demo).",
)
@_run(batch_size=256)
def invariance_command(
    model_spec: str,
    weights: str | None,
    allow_random: bool,
    seed: int,
    data: str,
    layers: str | None,
    images: str | None,
    translate: str | None,
    scale: str | None,
    rotate: str | None,
    fill: str,
    true_class: str,
    batch_size: int,
    device: str,
    out_dir: str,
    resume: bool,
    overwrite: bool,
    progress: bool | None,
) -> None:
    """Invariance to vertical translation, scale and rotation (Zeiler & Fergus,
    arXiv:1311.2901, Figure 5).

    Per image and amount: the Euclidean distance between the feature vectors of the original
    and the transformed image at a low and a high layer (also divided by the original's
    norm), and the probability of the true class. torchvision transforms v2, output the input's
    size, centred; border pixels get --fill. Writes invariance.png, invariance_normalized.png,
    invariance.csv and invariance.json.
    """
    from convlens.pipeline.analyze import run_invariance

    amounts = {
        kind: values
        for kind, values in (
            ("translate", _floats(translate, "--translate")),
            ("scale", _floats(scale, "--scale")),
            ("rotate", _floats(rotate, "--rotate")),
        )
        if values is not None
    }
    fill_value: float | str = fill
    if fill not in ("black", "zero"):
        try:
            fill_value = float(fill)
        except ValueError:
            raise ParameterError("--fill", "black, zero or a number", fill) from None
    run = run_invariance(
        model_spec,
        data,
        out_dir,
        weights=weights,
        allow_random=allow_random,
        model_seed=seed,
        layers=[s for s in layers.split(",") if s] if layers else None,
        images=list(parse_channels(images, "--images")) if images else None,
        amounts=amounts or None,
        fill=fill_value,
        true_class=true_class,
        batch_size=batch_size,
        device=device,
        resume=resume,
        overwrite=overwrite,
        progress=progress,
    )
    result = run.result
    for kind, values in result.amounts.items():
        worst = result.probability[kind].min(0).values
        shown = ", ".join(f"{result.name_of(n)} {float(w):.2f}" for n, w in enumerate(worst))
        click.echo(f"{kind} ({len(values)} amounts): lowest true-class probability: {shown}")
    for line in run.extra.get("skipped", ()):
        click.echo(line)
    for path in run.files:
        click.echo(f"wrote {path}")


@click.command("correspondence")
@_inputs
@click.option(
    "--boxes",
    type=click.Path(dir_okay=False),
    default=None,
    help="JSON or CSV of (image, box) rows: image (dataset index or path), top, left, height, "
    "width, part [default for --data demo: built-in parts of five classes].",
)
@_layers("features.3,features.7,classifier.3")
@click.option(
    "--per-part",
    type=click.IntRange(min=2),
    default=5,
    show_default=True,
    help="Images per built-in demo part.",
)
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Random-box controls per part (mean ± std).",
)
@click.option(
    "--box-seed", type=int, default=0, show_default=True, help="Seed of the random boxes."
)
@click.option(
    "--zero",
    type=click.Choice(["value", "drop"]),
    default="value",
    show_default=True,
    help="sign(0): a value of its own, or dropped from the pair's comparison.",
)
@click.option(
    "--fill",
    type=float,
    default=0.0,
    show_default=True,
    help="The occluder's value in the model's input units (0: grey, the mean).",
)
@_run()
def correspondence_command(
    model_spec: str,
    weights: str | None,
    allow_random: bool,
    data: str,
    boxes: str | None,
    layers: str | None,
    per_part: int,
    repeats: int,
    seed: int,
    box_seed: int,
    zero: str,
    fill: float,
    device: str,
    out_dir: str,
    resume: bool,
    overwrite: bool,
    progress: bool | None,
) -> None:
    """Correspondence of object parts across images (Zeiler & Fergus, arXiv:1311.2901, §4.3,
    Table 1).

    Δ_l = Σ_{i≠j} H(sign ε_i, sign ε_j), ε_i the change of layer l's features when the part is
    occluded in image i; H the Hamming distance divided by the vector length (the raw counts
    too). Each part is compared with random boxes of its size; lower Δ means the layer
    corresponds the part. Writes correspondence.txt (the table), .json and .png.
    """
    from convlens.pipeline.analyze import run_correspondence

    run = run_correspondence(
        model_spec,
        data,
        out_dir,
        boxes=boxes,
        weights=weights,
        allow_random=allow_random,
        layers=[s for s in layers.split(",") if s] if layers else None,
        per_part=per_part,
        repeats=repeats,
        seed=box_seed,
        model_seed=seed,
        zero=zero,
        fill=fill,
        device=device,
        resume=resume,
        overwrite=overwrite,
        progress=progress,
    )
    click.echo(run.extra["table"])
    for path in run.files:
        click.echo(f"wrote {path}")


def register(group: click.Group) -> None:
    group.add_command(evolution_command)
    group.add_command(invariance_command)
    group.add_command(correspondence_command)
