"""Reports end to end: assemble, write atomically, and the library side of ``convlens report``
and ``convlens demo``.

:func:`build_report` checks the output folder before any work, keeps the scan's checkpoints in
``OUT.scan`` beside the report while it is being built (so a crash or Ctrl-C loses at most
one checkpoint interval, and ``resume=True`` continues) and removes them once the report is
written. :func:`run_report` starts from ``--model`` and ``--data``
(:func:`convlens.pipeline.open_inputs`); :func:`run_demo` is the report of the embedded demo
with its presets (:data:`convlens.demo.DEMO_REPORT`).

>>> scan_work_dir("reports/vgg16").as_posix()
'reports/vgg16.scan'
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from convlens.demo import DEMO_REPORT, DEMO_REPORT_QUICK
from convlens.pipeline.inputs import DEMO_DATA, open_inputs
from convlens.report.assemble import assemble_report
from convlens.report.render import check_out, write_report

__all__ = ["build_report", "run_demo", "run_report", "scan_work_dir"]


def scan_work_dir(out: str | os.PathLike[str]) -> Path:
    """Where the report for ``out`` keeps its scan checkpoints: the sibling ``OUT.scan``."""
    out = Path(out)
    return out.with_name(out.name + ".scan")


def build_report(
    model: Any,
    dataset: Any,
    out: str | os.PathLike[str],
    *,
    progress: bool = False,
    resume: bool = False,
    **options: Any,
) -> Path:
    """Assemble the report (:func:`~convlens.report.assemble.assemble_report` with
    ``options``) and write it to ``out`` atomically; return the path of its ``index.html``.

    The dataset scan checkpoints into the folder ``OUT.scan`` beside the report while the
    report is being built, so a crash, Ctrl-C or kill loses at most one checkpoint interval:
    ``resume=True`` continues from there. The folder is removed once the report is written.
    """
    check_out(out)  # before hours of scanning, not after
    scan_dir = scan_work_dir(out)
    data = assemble_report(
        model, dataset, progress=progress, scan_dir=scan_dir, resume=resume, **options
    )
    index = write_report(data, out, progress=progress)
    shutil.rmtree(scan_dir, ignore_errors=True)
    return index


def run_report(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    command: str,
    weights: str | os.PathLike[str] | None = None,
    allow_random: bool = False,
    device: str = "cpu",
    every: int = 1,
    progress: bool = False,
    **options: Any,
) -> Path:
    """``convlens report``: load ``model`` and open ``data`` (every ``every``-th item;
    :func:`convlens.pipeline.open_inputs`), build the report into ``out`` and return the path
    of its index.html. Warnings raised while loading reach the terminal and the report's
    front page. ``options`` go to :func:`~convlens.report.assemble.assemble_report`."""
    inputs = open_inputs(
        model, data, weights=weights, allow_random=allow_random, device=device, every=every
    )
    loaded = inputs.loaded
    facts = [("model source", loaded.source)]
    if loaded.input_size:
        facts.append(("input size", "×".join(str(v) for v in loaded.input_size)))
    return build_report(
        loaded,
        inputs.dataset,
        out,
        command=command,
        dataset_name=inputs.description,
        device=device,
        progress=progress,
        warnings=inputs.notes,
        facts=facts,
        **options,
    )


def run_demo(
    out: str | os.PathLike[str],
    *,
    command: str,
    quick: bool = False,
    device: str = "cpu",
    progress: bool = False,
) -> Path:
    """``convlens demo``: the report of the embedded demo CNN on the bundled Fashion-MNIST
    sample (:data:`convlens.demo.DEMO_REPORT`, or :data:`convlens.demo.DEMO_REPORT_QUICK`:
    every 4th image, channels 0-7, one occlusion image)."""
    settings = DEMO_REPORT_QUICK if quick else DEMO_REPORT
    return run_report(
        "demo", DEMO_DATA, out, command=command, device=device, progress=progress, **settings
    )
