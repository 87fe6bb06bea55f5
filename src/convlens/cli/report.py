"""``convlens report`` and ``convlens demo``: the static HTML report (Zeiler & Fergus Figs. 2, 4,
5, 6, 7 and Table 1)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import click

from convlens.cli._options import (
    DATA_HELP,
    max_pixels_option,
    model_options,
    parse_channels,
    rule_option,
)


def _command_line(ctx: click.Context) -> str:
    """The command as typed when it came from the shell, else rebuilt from the options."""
    if sys.argv[1:2] == [ctx.info_name]:
        return shlex.join(["convlens", *sys.argv[1:]])
    words = ["convlens", str(ctx.info_name)]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if not isinstance(param, click.Option) or value in (None, False):
            continue
        flag = max(param.opts, key=len)
        words += [flag] if param.is_flag else [flag, str(value)]
    return shlex.join(words)


def _paths(text: str | None) -> list[str] | None:
    """Comma-separated module paths, or None for none given."""
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def _finish(index: Path) -> None:
    click.echo(f"report written: {index}")
    click.echo(f"open it in a browser: {index.as_uri()}")


@click.command("report")
@model_options
@click.option("--data", required=True, help=DATA_HELP)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Report folder (new, empty, or an earlier report, which is replaced; files convlens "
    "did not write are never deleted).",
)
@click.option(
    "--layers", default=None, help="Comma-separated module paths [default: every convolution]."
)
@click.option(
    "--channels", default=None, help="Channels shown per layer, e.g. '0-7,12' [default: all]."
)
@click.option(
    "--top", type=click.IntRange(min=1), default=9, show_default=True, help="Images per channel."
)
@rule_option
@click.option(
    "--occlusion-images",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Images with occlusion maps (0: none).",
)
@click.option(
    "--occlusion-size",
    type=click.IntRange(min=1),
    default=None,
    help="Side of the grey square in pixels [default: a third of the image].",
)
@click.option(
    "--occlusion-stride",
    type=click.IntRange(min=1),
    default=None,
    help="Step of the square in pixels [default: a sixteenth of the image].",
)
@click.option(
    "--checkpoints",
    multiple=True,
    help="Checkpoint files or a folder of them, in training order (repeatable): adds the "
    "feature-evolution page (Fig. 4) [default: no such page]. 'demo': the demo CNN's epochs.",
)
@click.option(
    "--evolution-every",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Evolution scans every N-th image (one scan per checkpoint).",
)
@click.option(
    "--invariance-layers",
    default=None,
    help="A low and a high layer for the invariance page (Fig. 5), comma-separated "
    "[default: the first conv (or its ReLU) and the layer feeding the final linear one].",
)
@click.option(
    "--invariance-images",
    default=None,
    help="Dataset indices for the invariance page, e.g. 0-4 [default: of 5 classes, the "
    "first image the model classifies correctly].",
)
@click.option("--no-invariance", is_flag=True, help="No invariance page.")
@click.option(
    "--parts",
    type=click.Path(dir_okay=False),
    default=None,
    help="JSON or CSV of (image, box) rows (image, top, left, height, width, part) for the "
    "correspondence page (Table 1) [default: the built-in parts on --data demo, else no page].",
)
@click.option(
    "--correspondence-layers",
    default=None,
    help="Layers of the correspondence page, comma-separated [default: the last conv and the "
    "high invariance layer].",
)
@click.option("--no-correspondence", is_flag=True, help="No correspondence page.")
@click.option("--device", default="cpu", show_default=True, help="Torch device, e.g. cuda.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted report: the scan goes on from its last checkpoint in OUT.scan.",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@max_pixels_option
@click.pass_context
def report_command(ctx: click.Context, **opts: Any) -> None:
    """Scan a dataset and write a browsable HTML report: per layer the top-k projections
    beside their image patches, the first-layer filters, occlusion maps, feature evolution over
    checkpoints (with --checkpoints), invariance, correspondence of parts (with --parts, or the
    demo data) and a summary."""
    from convlens.report.build import run_report

    layers = _paths(opts["layers"])
    channels = parse_channels(opts["channels"]) if opts["channels"] else None
    images = opts["invariance_images"]
    analyses = {
        "checkpoints": tuple(opts["checkpoints"]),
        "evolution_every": opts["evolution_every"],
        "invariance": not opts["no_invariance"],
        "invariance_layers": _paths(opts["invariance_layers"]),
        "invariance_images": parse_channels(images, "--invariance-images") if images else None,
        "correspondence": not opts["no_correspondence"],
        "parts": opts["parts"],
        "correspondence_layers": _paths(opts["correspondence_layers"]),
    }
    index = run_report(
        opts["model_spec"],
        opts["data"],
        opts["out"],
        command=_command_line(ctx),
        weights=opts["weights"],
        allow_random=opts["allow_random"],
        seed=opts["seed"],
        max_pixels=opts["max_pixels"],
        device=opts["device"],
        progress=not opts["quiet"],
        layers=layers,
        channels=channels,
        top=opts["top"],
        rule=opts["rule"],
        batch_size=opts["batch_size"],
        occlusion_images=opts["occlusion_images"],
        occlusion_size=opts["occlusion_size"],
        occlusion_stride=opts["occlusion_stride"],
        resume=opts["resume"],
        analyses=analyses,
    )
    _finish(index)


@click.command("demo")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("convlens-demo"),
    show_default=True,
    help="Report folder.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="A smaller report: every 4th image, channels 0-7, one occlusion image; evolution on "
    "every 16th image, invariance of 2 images, correspondence with fewer images and controls.",
)
@click.option("--device", default="cpu", show_default=True, help="Torch device, e.g. cuda.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def demo_command(ctx: click.Context, out: Path, quick: bool, device: str, quiet: bool) -> None:
    """The report for the embedded demo CNN (trained on Fashion-MNIST) on the bundled test
    sample: no model, no data, nothing downloaded."""
    from convlens.report.build import run_demo

    index = run_demo(
        out, command=_command_line(ctx), quick=quick, device=device, progress=not quiet
    )
    _finish(index)


def register(group: click.Group) -> None:
    group.add_command(report_command)
    group.add_command(demo_command)
