"""``convlens scan``: top-k activations over a dataset, projected and cropped (Fig. 2)."""

from __future__ import annotations

import click

from convlens.choices import METHODS
from convlens.cli._options import (
    DATA_HELP,
    max_pixels_option,
    model_options,
    parse_channels,
    rule_option,
)


def _note(message: str) -> None:
    click.echo(f"convlens: {message}", err=True)


@click.command(
    "scan",
    short_help="Scan a dataset for the top-k images of every channel of LAYERS and project them "
    "(Zeiler & Fergus, Fig. 2).",
)
@model_options
@click.option("--data", "data", required=True, help=DATA_HELP)
@click.option("--layers", required=True, help="Comma-separated module paths, e.g. features.28.")
@click.option("--top", type=int, default=9, show_default=True, help="Images kept per channel.")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Run folder: scan.json, scan.safetensors, checkpoints, grids.",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted scan in --out.")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Start over in a --out that holds an earlier scan (only files convlens wrote are "
    "removed).",
)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1 ...")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--workers", type=int, default=0, show_default=True, help="DataLoader workers.")
@click.option(
    "--checkpoint-every",
    type=int,
    default=None,
    help="Images between checkpoints (default: about 5% of the data).",
)
@rule_option
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="auto",
    show_default=True,
    help="Projections on the receptive field only (crop), at full size, or auto.",
)
@click.option("--channels", default=None, help="Channels to project, e.g. 0-7,12 (default all).")
@click.option("--no-project", is_flag=True, help="Only scan: no projections, no grids.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a tty).")
@max_pixels_option
def scan_command(
    model_spec: str,
    weights: str | None,
    allow_random: bool,
    seed: int,
    data: str,
    layers: str,
    top: int,
    out_dir: str,
    resume: bool,
    overwrite: bool,
    device: str,
    batch_size: int,
    workers: int,
    checkpoint_every: int | None,
    rule: str,
    method: str,
    channels: str | None,
    no_project: bool,
    progress: bool | None,
    max_pixels: int,
) -> None:
    """Scan a dataset for the top-k images of every channel of LAYERS, project them with the
    deconvnet and cut their receptive fields (Zeiler & Fergus, arXiv:1311.2901, Fig. 2).

    Under `torchrun --nproc_per_node=N -m convlens scan ...` the ranks share the batches and
    merge exactly; rank 0 writes. Results: scan.json and scan.safetensors; with projections,
    grid_<layer>.png (per channel the projections beside the patches), layers/<layer>/ch<c>/
    per item and figures.json.
    """
    from convlens.pipeline import run_scan

    run = run_scan(
        model_spec,
        data,
        layers,
        out_dir,
        weights=weights,
        allow_random=allow_random,
        seed=seed,
        top=top,
        resume=resume,
        overwrite=overwrite,
        device=device,
        batch_size=batch_size,
        workers=workers,
        checkpoint_every=checkpoint_every,
        rule=rule,
        method=method,
        channels=parse_channels(channels) if channels else None,
        project=not no_project,
        progress=progress,
        max_pixels=max_pixels,
        note=_note,
    )
    if not run.is_main:
        return
    counts = run.result.counts
    click.echo(
        f"scanned {counts['scanned']} of {counts['total']} images "
        f"({counts['skipped']} skipped) -> {run.scan_json}"
    )
    for name, entry in (run.figures or {}).get("layers", {}).items():
        click.echo(f"{name}: {entry['method']} projections -> {run.out / entry['grid']}")


def register(group: click.Group) -> None:
    group.add_command(scan_command)
