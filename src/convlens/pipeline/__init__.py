"""The application layer under the commands: what ``convlens scan``, ``report``, ``demo`` and
``project`` do, as library calls.

One pipeline (:func:`top_projections`): scan a dataset for the top-k images of every channel
(Zeiler & Fergus, arXiv:1311.2901, Fig. 2), project them with the deconvnet and cut their
receptive fields; the scan command draws grids from it (:func:`run_scan`), the report pages
(:mod:`convlens.report`). :func:`open_inputs` turns ``--model`` and ``--data`` into a loaded
model and a dataset. Layers: below the report, above scan, analysis, models and the demo.

>>> from convlens.pipeline import open_dataset
>>> open_dataset("demo", None)[1]
'bundled Fashion-MNIST test sample (2000 images, 10 classes)'
"""

from convlens.pipeline.commands import (
    FIGURES_JSON,
    ProjectRun,
    ScanRun,
    project_images,
    run_scan,
)
from convlens.pipeline.inputs import (
    DEMO_DATA,
    Inputs,
    load_model_noting,
    open_dataset,
    open_inputs,
)
from convlens.pipeline.top import (
    CHANNEL_CHUNK,
    TopRun,
    check_channels,
    join_projections,
    project_in_chunks,
    top_projections,
)

__all__ = [
    "CHANNEL_CHUNK",
    "DEMO_DATA",
    "FIGURES_JSON",
    "Inputs",
    "ProjectRun",
    "ScanRun",
    "TopRun",
    "check_channels",
    "join_projections",
    "load_model_noting",
    "open_dataset",
    "open_inputs",
    "project_images",
    "project_in_chunks",
    "run_scan",
    "top_projections",
]
