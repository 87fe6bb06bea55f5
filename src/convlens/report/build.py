"""Reports end to end: assemble, write atomically, and the library side of ``convlens report``
and ``convlens demo``.

:func:`build_report` checks the output folder before any work, keeps the scan's checkpoints in
``OUT.scan`` beside the report while it is being built (so a crash or Ctrl-C loses at most
one checkpoint interval, and ``resume=True`` continues) and removes them once the report is
written: exactly the files convlens wrote there (its manifest, :mod:`convlens.io`). An
``OUT.scan`` that is a file, holds files convlens did not write, or holds an interrupted
report's scan without ``resume`` is refused before any work; nothing is ever deleted that
convlens did not write. :func:`run_report` starts from ``--model`` and ``--data``
(:func:`convlens.pipeline.open_inputs`); :func:`run_demo` is the report of the embedded demo
with its presets (:data:`convlens.demo.DEMO_REPORT`).

>>> scan_work_dir("reports/vgg16").as_posix()
'reports/vgg16.scan'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from convlens.demo import DEMO_REPORT, DEMO_REPORT_QUICK
from convlens.errors import ParameterError, verbatim
from convlens.io import check_folder, remove_written, written_files
from convlens.models import MAX_PIXELS
from convlens.pipeline.inputs import DEMO_DATA, open_inputs
from convlens.report.analyses import AnalysisOptions, AnalysisPlan, add_analyses, plan_analyses
from convlens.report.assemble import assemble_report
from convlens.report.render import check_out, write_report

__all__ = ["build_report", "check_scan_work_dir", "run_demo", "run_report", "scan_work_dir"]


def scan_work_dir(out: str | os.PathLike[str]) -> Path:
    """Where the report for ``out`` keeps its scan checkpoints: the sibling ``OUT.scan``."""
    out = Path(out)
    return out.with_name(out.name + ".scan")


def check_scan_work_dir(out: str | os.PathLike[str], *, resume: bool = False) -> Path:
    """``OUT.scan`` when the report for ``out`` may use it: missing, empty, or (with
    ``resume``) an interrupted report's scan; a file, a folder holding files convlens did not
    write, or an earlier scan without ``resume`` are refused, naming ``out``.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "report"
    >>> check_scan_work_dir(out).name
    'report.scan'
    """
    work = scan_work_dir(out)
    hint = (
        f"convlens keeps a report's scan in {work.name} beside the report while it is built; "
        "choose another --out, or move what is in the way"
    )
    check_folder(
        work,
        param="out",
        expected=f"a free {work.name} beside the report for its scan",
        hint=hint,
    )
    earlier = sorted(f for f in written_files(work) if (work / f).exists())
    if earlier and not resume:
        raise ParameterError(
            "out",
            f"no interrupted report scan in {work.name} (or --resume to continue it)",
            verbatim(f"the folder {os.fspath(work.absolute())!r} with the scan of an earlier run"),
            hint=f"--resume continues that scan; delete {work.name} to start over",
        )
    return work


def build_report(
    model: Any,
    dataset: Any,
    out: str | os.PathLike[str],
    *,
    progress: bool = False,
    resume: bool = False,
    analyses: AnalysisPlan | None = None,
    **options: Any,
) -> Path:
    """Assemble the report (:func:`~convlens.report.assemble.assemble_report` with
    ``options``) and write it to ``out`` atomically; return the path of its ``index.html``.
    ``analyses``: the evolution, invariance and correspondence pages to add after the scan
    (:func:`convlens.report.analyses.plan_analyses`; none without).

    The dataset scan checkpoints into the folder ``OUT.scan`` beside the report while the
    report is being built, so a crash, Ctrl-C or kill loses at most one checkpoint interval:
    ``resume=True`` continues from there. Both folders are checked before any work
    (:func:`~convlens.report.render.check_out`, :func:`check_scan_work_dir`); what convlens
    wrote in ``OUT.scan`` is removed once the report is written.
    """
    check_out(out)  # before hours of scanning, not after
    scan_dir = check_scan_work_dir(out, resume=resume)
    data = assemble_report(
        model, dataset, progress=progress, scan_dir=scan_dir, resume=resume, **options
    )
    if analyses is not None:
        data = add_analyses(data, analyses, progress=progress)
    index = write_report(data, out, progress=progress)
    remove_written(scan_dir)
    return index


def run_report(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    command: str,
    weights: str | os.PathLike[str] | None = None,
    allow_random: bool = False,
    seed: int = 0,
    device: str = "cpu",
    every: int = 1,
    max_pixels: int | None = MAX_PIXELS,
    progress: bool = False,
    resume: bool = False,
    analyses: AnalysisOptions | dict[str, Any] | None = None,
    **options: Any,
) -> Path:
    """``convlens report``: load ``model`` (random weights from ``seed``) and open ``data``
    (every ``every``-th item, images of at most ``max_pixels`` pixels;
    :func:`convlens.pipeline.open_inputs`), build the report into ``out`` and return the path
    of its index.html. The output folders are checked before the model is loaded. Warnings
    raised while loading reach the terminal and the report's front page. ``options`` go to
    :func:`~convlens.report.assemble.assemble_report`; ``analyses``
    (:class:`~convlens.report.analyses.AnalysisOptions` or a mapping of its fields) choose
    the evolution, invariance and correspondence pages, checked before the scan."""
    check_out(out)
    check_scan_work_dir(out, resume=resume)
    inputs = open_inputs(
        model, data, weights=weights, allow_random=allow_random, seed=seed, device=device,
        every=every, max_pixels=max_pixels,
    )  # fmt: skip
    loaded = inputs.loaded
    facts = [("model source", loaded.source)]
    if loaded.input_size:
        facts.append(("input size", "×".join(str(v) for v in loaded.input_size)))
    if loaded.seed is not None and loaded.weights_sha256 is None:
        facts.append(("random seed", str(loaded.seed)))
    if inputs.image_depth is not None:
        facts.append(("image bit depth", inputs.image_depth))
    plan = plan_analyses(
        analyses, loaded, inputs.dataset, model=model, data=data, weights=weights,
        allow_random=allow_random, model_seed=seed, device=device,
        batch_size=int(options.get("batch_size", 64)), layers=options.get("layers"),
        known_notes=inputs.notes,
    )  # fmt: skip
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
        resume=resume,
        analyses=plan,
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
    every 4th image, channels 0-7, one occlusion image), with the evolution, invariance and
    correspondence pages (their presets: the ``analyses`` entry)."""
    settings = DEMO_REPORT_QUICK if quick else DEMO_REPORT
    return run_report(
        "demo", DEMO_DATA, out, command=command, device=device, progress=progress, **settings
    )
