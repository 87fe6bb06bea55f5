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
    quiet: bool,
) -> None:
    """Train the demo CNN on Fashion-MNIST (deterministic on the CPU) and save its weights.

    With the defaults this reproduces the weights shipped in convlens/demo/assets.
    """
    from convlens.demo.train import EPOCHS, save_weights, train_demo

    checkpoint = out.with_name(out.name + ".ckpt")
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
    )
    metrics["command"] = " ".join(["convlens", *sys.argv[1:]]) if sys.argv else "convlens"
    digest = save_weights(model, out, metrics)
    checkpoint.unlink(missing_ok=True)
    click.echo(
        f"test accuracy {metrics['accuracy']:.4f} after {metrics['epochs_done']} epochs "
        f"({metrics['elapsed_seconds']:.0f} s); weights {out} (sha256 {digest[:12]}...)"
    )


def register(group: click.Group) -> None:
    group.add_command(train_demo_command)
