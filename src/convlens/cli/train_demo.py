"""``convlens train-demo``: reproduce the embedded default model's weights."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("train-demo")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs [default: 10].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every RNG used.")
@click.option(
    "--renormalize/--no-renormalize",
    default=False,
    show_default=True,
    help="Cap first-layer filters at RMS 0.1 after every update (Zeiler & Fergus §3).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("demo_cnn.safetensors"),
    show_default=True,
    help="Weights file (safetensors); a JSON of metrics is written beside it.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue from the checkpoint (OUT + .ckpt) of a stopped run, if there is one.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder with Fashion-MNIST's .gz files [default: $CONVLENS_FASHION_MNIST or "
    "/usr/share/datasets/fashion-mnist].",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Train on the first N images."
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="CPU threads; part of the recipe (float sums, hence the weights' bits, depend on it).",
)
@click.option(
    "--checkpoints",
    default="",
    metavar="EPOCHS",
    help="Also save the weights after these epochs (0 = initial), e.g. 0,1,2,5,10, into the "
    "folder OUT's stem + .checkpoints (for `convlens evolution`, Zeiler & Fergus Fig. 4).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_demo_command(
    epochs: int | None,
    seed: int,
    renormalize: bool,
    out: Path,
    resume: bool,
    data_dir: Path | None,
    limit: int | None,
    threads: int,
    checkpoints: str,
    quiet: bool,
) -> None:
    """Train the demo CNN on Fashion-MNIST (deterministic on the CPU) and save its weights.

    With the defaults this reproduces the weights shipped in convlens/demo/assets.
    """
    from convlens.demo.train import EPOCHS, save_weights, train_demo

    checkpoint = out.with_name(out.name + ".ckpt")
    try:
        save_epochs = [int(e) for e in checkpoints.split(",") if e.strip()]
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated epochs such as 0,1,2,5,10, received {checkpoints!r}",
            param_hint="--checkpoints",
        ) from None
    save_dir = out.with_name(out.stem + ".checkpoints")
    model, metrics = train_demo(
        seed=seed,
        epochs=EPOCHS if epochs is None else epochs,
        renormalize_first_layer=renormalize,
        data_dir=data_dir,
        progress=not quiet,
        checkpoint=checkpoint,
        resume=resume,
        limit=limit,
        threads=threads,
        save_epochs=save_epochs,
        save_dir=save_dir if save_epochs else None,
    )
    metrics["command"] = " ".join(["convlens", *sys.argv[1:]]) if sys.argv else "convlens"
    digest = save_weights(model, out, metrics)
    checkpoint.unlink(missing_ok=True)
    click.echo(
        f"test accuracy {metrics['accuracy']:.4f} after {metrics['epochs_done']} epochs "
        f"({metrics['elapsed_seconds']:.0f} s); weights {out} (sha256 {digest[:12]}...)"
    )
    if save_epochs:
        click.echo(
            f"weights after epochs {','.join(map(str, sorted(set(save_epochs))))}: {save_dir}/"
        )


def register(group: click.Group) -> None:
    group.add_command(train_demo_command)
