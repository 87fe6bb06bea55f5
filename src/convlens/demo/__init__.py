"""The embedded default: a small Zeiler–Fergus-style CNN trained on Fashion-MNIST, its weights
(safetensors) and a bundled sample of the test set, so ``convlens demo`` works offline.

Fashion-MNIST: Xiao, Rasul & Vollgraf (arXiv:1708.07747), Zalando SE, MIT licence
(``assets/LICENSE-fashion-mnist.txt``). The model follows Zeiler & Fergus (arXiv:1311.2901).

>>> loaded = load_demo_model()
>>> loaded.model(load_demo_sample()[0][0].unsqueeze(0)).shape
torch.Size([1, 10])
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import nn

from convlens.demo.data import SAMPLE_PATH, DemoSample, load_demo_sample, preprocess
from convlens.demo.model import FASHION_CLASSES, INPUT_SIZE, DemoCNN, build_demo_model
from convlens.errors import ParameterError
from convlens.io import sha256_file
from convlens.loaded import LoadedModel

__all__ = [
    "DEMO_REPORT",
    "DEMO_REPORT_QUICK",
    "FASHION_CLASSES",
    "INPUT_SIZE",
    "SAMPLE_PATH",
    "WEIGHTS_PATH",
    "DemoCNN",
    "DemoSample",
    "build_demo_model",
    "demo_metrics",
    "load_demo_model",
    "load_demo_sample",
    "load_demo_weights",
]

ASSETS = Path(__file__).resolve().parent / "assets"

#: What ``convlens demo`` shows: every image of the bundled sample, every channel of every conv
#: layer (options of :func:`convlens.report.build.run_report`); ``analyses``: the evolution
#: page over the shipped checkpoints (epochs 0, 1, 2, 5, 10) on every 4th image, invariance
#: and correspondence with their defaults (:class:`convlens.report.analyses.AnalysisOptions`).
DEMO_REPORT: dict[str, Any] = {
    "top": 9,
    "occlusion_images": 4,
    "occlusion_size": 10,
    "batch_size": 128,
    "analyses": {"checkpoints": ("demo",), "evolution_every": 4},
}
#: ``convlens demo --quick``: every 4th image, channels 0-7, one occlusion image; evolution on
#: every 16th image with 2 channels per layer, invariance of 2 images over coarser amounts,
#: correspondence with 3 images per part and 3 random controls.
DEMO_REPORT_QUICK: dict[str, Any] = {
    "top": 9,
    "every": 4,
    "channels": tuple(range(8)),
    "occlusion_images": 1,
    "occlusion_size": 10,
    "batch_size": 128,
    "analyses": {
        "checkpoints": ("demo",),
        "evolution_every": 16,
        "evolution_per_layer": 2,
        "invariance_count": 2,
        "invariance_amounts": {
            "translate": [-6.0, -3.0, 0.0, 3.0, 6.0],
            "scale": [0.6, 0.8, 1.0, 1.2, 1.4, 1.6],
            "rotate": [0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0, 360.0],
        },
        "correspondence_per_part": 3,
        "correspondence_repeats": 3,
    },
}
#: The shipped weights and their metrics (``demo_cnn.json``: accuracy, seed, time, sha256).
WEIGHTS_PATH = ASSETS / "demo_cnn.safetensors"


def demo_metrics(weights: str | os.PathLike[str] = WEIGHTS_PATH) -> dict[str, Any]:
    """The JSON written beside ``weights`` by ``train-demo`` ({} when there is none)."""
    meta = Path(weights).with_suffix(".json")
    return json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {}


def load_demo_weights(
    weights: str | os.PathLike[str] = WEIGHTS_PATH,
) -> tuple[nn.Module, str]:
    """The demo CNN (eval mode) with ``weights`` (safetensors only) and the file's sha256.

    When a JSON from ``train-demo`` lies beside the file, its recorded sha256 must match.
    """
    path = Path(weights)
    if not path.is_file():
        raise ParameterError("weights", "a safetensors file of the demo CNN", str(path))
    digest = sha256_file(path)
    recorded = demo_metrics(path).get("weights_sha256")
    if recorded is not None and recorded != digest:
        raise ParameterError(
            "weights", f"a file with sha256 {recorded} (as recorded beside it)", digest
        )
    from safetensors.torch import load_file

    model = build_demo_model()
    try:
        state = load_file(str(path))
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # safetensors and load_state_dict raise several types
        raise ParameterError(
            "weights", "the demo CNN's weights (safetensors)", str(path), hint=str(exc)[:300]
        ) from exc
    return model.eval(), digest


def load_demo_model(weights: str | os.PathLike[str] = WEIGHTS_PATH) -> LoadedModel:
    """The embedded default model, ready to use: a :class:`convlens.models.LoadedModel` holding
    the eval-mode CNN, its preprocessing (PIL image -> (1, 28, 28)), input size (28, 28),
    the class names and the weights' sha256."""
    model, digest = load_demo_weights(weights)
    return LoadedModel(
        model=model,
        name="demo",
        preprocess=preprocess,
        input_size=INPUT_SIZE[1:],
        weights_sha256=digest,
        class_names=FASHION_CLASSES,
        source=f"embedded demo model ({Path(weights).name})",
    )
