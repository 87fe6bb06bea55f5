"""``convlens scan``: top-k activations over a dataset, projected and cropped (Fig. 2)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from convlens.cli._options import DATA_HELP, model_options, parse_channels, rule_option
from convlens.scan.crop import METHODS


@click.command("scan")
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
def scan_command(
    model_spec: str,
    weights: str | None,
    allow_random: bool,
    data: str,
    layers: str,
    top: int,
    out_dir: str,
    resume: bool,
    device: str,
    batch_size: int,
    workers: int,
    checkpoint_every: int | None,
    rule: str,
    method: str,
    channels: str | None,
    no_project: bool,
    progress: bool | None,
) -> None:
    """Scan a dataset for the top-k images of every channel of LAYERS, project them with the
    deconvnet and cut their receptive fields (Zeiler & Fergus, arXiv:1311.2901, Fig. 2).

    Under `torchrun --nproc_per_node=N -m convlens scan ...` the ranks share the batches and
    merge exactly; rank 0 writes. Results: scan.json and scan.safetensors; with projections,
    grid_<layer>.png (per channel the projections beside the patches), layers/<layer>/ch<c>/
    per item and figures.json.
    """
    from convlens.models import load_model
    from convlens.scan.checkpoint import atomic_write_text
    from convlens.scan.crop import project_top
    from convlens.scan.data import open_dataset
    from convlens.scan.distributed import detect
    from convlens.scan.grid import write_figures
    from convlens.scan.run import scan

    wanted = list(parse_channels(channels)) if channels else None
    info = detect()
    if info.active and device == "cuda":  # one GPU per torchrun process
        device = f"cuda:{info.local_rank}"
    loaded = load_model(model_spec, weights=weights, device=device, allow_random=allow_random)
    dataset, _ = open_dataset(data, loaded.preprocess)
    if data == "demo":
        prep_text = "demo sample: grey 28×28, (x/255 - 0.2860) / 0.3530"
    else:
        prep_text = getattr(loaded.preprocess, "description", repr(loaded.preprocess))
    result = scan(
        loaded,
        dataset,
        [s for s in layers.split(",") if s],
        top=top,
        batch_size=batch_size,
        workers=workers,
        device=device,
        out=out_dir,
        resume=resume,
        checkpoint_every=checkpoint_every,
        progress=progress,
        meta={"preprocessing": prep_text, "model_spec": model_spec},
    )
    if not info.is_main:
        return
    counts = result.counts
    click.echo(
        f"scanned {counts['scanned']} of {counts['total']} images "
        f"({counts['skipped']} skipped) -> {Path(out_dir) / 'scan.json'}"
    )
    if no_project:
        return
    projections = project_top(loaded, dataset, result, rule=rule, channels=wanted, method=method)
    index = write_figures(projections, out_dir)
    atomic_write_text(
        Path(out_dir) / "figures.json",
        json.dumps({"rule": rule, "layers": index}, indent=1) + "\n",
    )
    for name, entry in index.items():
        click.echo(f"{name}: {entry['method']} projections -> {Path(out_dir) / entry['grid']}")


def register(group: click.Group) -> None:
    group.add_command(scan_command)
