"""Loading models safely: torchvision architectures with local weights, factories, TorchScript
and the embedded demo.

Weights are only ever read as plain tensors: ``torch.load(..., weights_only=True)`` or
safetensors. A file holding a pickled model or any other pickled object is refused, and a state
dict that does not fit the architecture is reported key by key. Nothing is downloaded; random
weights need ``allow_random=True`` and come with a :class:`RandomWeightsWarning`.

>>> import warnings
>>> with warnings.catch_warnings():
...     warnings.simplefilter("ignore")
...     loaded = load_model("alexnet", allow_random=True)
>>> loaded.name, loaded.input_size, loaded.weights_sha256, loaded.model.training
('alexnet', (224, 224), None, False)
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

import convlens.demo as demo
from convlens.demo.data import preprocess as demo_preprocess
from convlens.errors import ParameterError, ParameterTypeError, verbatim
from convlens.io import sha256_file
from convlens.loaded import LoadedModel
from convlens.models.images import Preprocess, default_preprocess, torchvision_preprocess

__all__ = [
    "LoadedModel",
    "RandomWeightsWarning",
    "apply_weights",
    "load_model",
    "read_weights",
    "sha256_file",
]


class RandomWeightsWarning(UserWarning):
    """The model runs with random weights: its projections show nothing learned."""


def _existing_file(path: str | os.PathLike[str], param: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise ParameterError(param, "an existing file", verbatim(repr(os.fspath(path))))
    return p


def read_weights(path: str | os.PathLike[str], device: Any = "cpu") -> dict[str, Tensor]:
    """A state dict (tensors by name) from a safetensors file or a ``torch.save`` file.

    ``torch.load`` runs with ``weights_only=True``: a pickled model or any pickle holding
    more than tensors, containers and numbers is refused with a
    :class:`~convlens.errors.ParameterError` saying that only plain weights are accepted.
    """
    p = _existing_file(path, "weights")
    shown = verbatim(repr(os.fspath(path)))
    plain = "a file of plain weights (a state dict: tensors by name)"
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(os.fspath(p), device=str(device))
        except Exception as exc:
            raise ParameterError(
                "weights", "a readable safetensors file", shown, hint=str(exc)
            ) from exc
    with open(p, "rb") as f:
        head = f.read(4)
    is_torch_file = zipfile.is_zipfile(p) or head[:1] == b"\x80"  # zip archive or a pickle
    try:
        if not is_torch_file:
            raise ValueError("neither a zip archive (torch.save) nor a pickle")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(p, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported (global: GLOBAL [\w.]+|operand \d+)", str(exc))
        detail = f" (refused: {found.group(0)})" if found else ""
        raise ParameterError(
            "weights",
            plain,
            shown,
            hint="it holds pickled objects other than tensors (a whole pickled model or an "
            "arbitrary pickle), which are never unpickled; save model.state_dict() with "
            f"torch.save or safetensors instead{detail}",
        ) from exc
    except Exception as exc:
        raise ParameterError(
            "weights",
            "a PyTorch (torch.save) or safetensors weights file",
            shown,
            hint=f"{type(exc).__name__}: {exc}",
        ) from exc
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        what = type(state).__name__
        if isinstance(state, Mapping):
            bad = [k for k, v in state.items() if not isinstance(v, Tensor)][:3]
            what = f"a {what} with non-tensor entries {bad}"
        raise ParameterError(
            "weights",
            plain,
            shown,
            hint=f"it holds {what}; save model.state_dict() instead",
        )
    return dict(state)


def _listing(items: list[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def apply_weights(model: nn.Module, state: Mapping[str, Tensor], name: str, path: Any) -> None:
    """Load ``state`` into ``model`` strictly; a mismatch raises
    :class:`~convlens.errors.ParameterError` naming missing and unexpected keys and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: model {tuple(own[k].shape)}, file {tuple(v.shape)}"
        for k, v in state.items()
        if k in own and tuple(own[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys [{_listing(missing)}]")
    if unexpected:
        problems.append(f"unexpected keys [{_listing(unexpected)}]")
    if shapes:
        problems.append(f"shape mismatch [{_listing(shapes, 3)}]")
    if problems:
        raise ParameterError(
            "weights",
            f"a state dict that matches the {name} architecture",
            verbatim(repr(os.fspath(path))),
            hint="; ".join(problems),
        )
    model.load_state_dict(state, strict=True)


def _device(device: Any) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ParameterError("device", "a torch device such as 'cpu' or 'cuda:0'", device) from exc


def _random_warning(name: str) -> None:
    warnings.warn(
        RandomWeightsWarning(
            f"{name} runs with RANDOM weights (allow_random=True, no weights file): "
            "its projections show the architecture, not anything learned"
        ),
        stacklevel=3,
    )


def _finish(loaded: LoadedModel, device: torch.device) -> LoadedModel:
    loaded.model.to(device)
    loaded.model.eval()
    return loaded


def _from_torchvision(
    name: str, weights: Any, device: torch.device, allow_random: bool
) -> LoadedModel:
    import torchvision.models as tvm

    if weights is None and not allow_random:
        raise ParameterError(
            "weights",
            f"a local weights file for {name} (or allow_random=True for random weights)",
            None,
            hint="nothing is downloaded; save a state dict with torch.save or safetensors",
        )
    model = tvm.get_model(name, weights=None)
    preprocess, size = torchvision_preprocess(name)
    classes: tuple[str, ...] | None = None
    try:
        meta = tvm.get_model_weights(name).DEFAULT.meta
        classes = tuple(meta["categories"]) if meta.get("categories") else None
    except Exception:  # no weights enum for this architecture
        classes = None
    digest = None
    if weights is not None:
        apply_weights(model, read_weights(weights, device), name, weights)
        digest = sha256_file(weights)
        source = f"torchvision architecture {name} with weights {os.fspath(weights)}"
    else:
        _random_warning(name)
        source = f"torchvision architecture {name} with random weights"
    return _finish(LoadedModel(model, name, preprocess, size, digest, classes, source), device)


def _from_factory(spec: str, weights: Any, device: torch.device) -> LoadedModel:
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ParameterError(
            "model", "an importable 'package.module:factory'", spec, hint=str(exc)
        ) from exc
    if not callable(obj):
        raise ParameterTypeError("model", "a callable factory", obj)
    made = obj()
    if isinstance(made, LoadedModel):
        loaded = made
    elif isinstance(made, nn.Module):
        loaded = LoadedModel(
            made, spec, default_preprocess(), (224, 224), None, None, f"factory {spec}"
        )
    else:
        raise ParameterError(
            "model", f"a factory returning an nn.Module ({spec})", verbatim(type(made).__name__)
        )
    if weights is not None:
        apply_weights(loaded.model, read_weights(weights, device), spec, weights)
        loaded.weights_sha256 = sha256_file(weights)
        loaded.source = f"factory {spec} with weights {os.fspath(weights)}"
    return _finish(loaded, device)


def _from_torchscript(path: Path, weights: Any, device: torch.device) -> LoadedModel:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice
            model = torch.jit.load(os.fspath(path), map_location=device)
    except Exception as exc:
        raise ParameterError(
            "model",
            "a torchvision architecture name, 'demo', 'package.module:factory' or a "
            "TorchScript file",
            verbatim(repr(os.fspath(path))),
            hint=f"the file is not TorchScript ({type(exc).__name__})",
        ) from exc
    digest = sha256_file(path)
    loaded = LoadedModel(
        model,
        path.stem,
        default_preprocess(),
        (224, 224),
        digest,
        None,
        f"TorchScript file {os.fspath(path)}",
    )
    if weights is not None:
        apply_weights(model, read_weights(weights, device), path.stem, weights)
        loaded.weights_sha256 = sha256_file(weights)
    return _finish(loaded, device)


def _from_demo(weights: Any, device: torch.device) -> LoadedModel:
    if weights is None:
        return _finish(demo.load_demo_model(), device)
    model = demo.build_demo_model()
    apply_weights(model, read_weights(weights, device), "demo", weights)
    return _finish(
        LoadedModel(
            model,
            "demo",
            demo_preprocess,
            tuple(demo.INPUT_SIZE[1:]),
            sha256_file(weights),
            tuple(demo.FASHION_CLASSES),
            f"demo architecture with weights {os.fspath(weights)}",
        ),
        device,
    )


def load_model(
    spec: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    device: Any = "cpu",
    allow_random: bool = False,
) -> LoadedModel:
    """Load the model named by ``spec``, safely, in eval mode on ``device``.

    ``spec`` is ``"demo"`` (the embedded default), a path to a TorchScript file,
    ``"package.module:factory"`` (a callable returning an ``nn.Module`` or a
    :class:`LoadedModel`; used as it comes unless ``weights`` is given), or a torchvision
    architecture name (built by ``torchvision.models.get_model(name, weights=None)``, then
    ``weights`` loaded from a local file; random weights only with ``allow_random=True``).
    Preprocessing: torchvision's own weights transforms for torchvision names, else
    :func:`~convlens.models.images.default_preprocess`.

    >>> try:
    ...     load_model("not_a_model")
    ... except ParameterError as exc:
    ...     print(str(exc)[:45])
    model: expected a torchvision architecture na
    """
    if not isinstance(spec, (str, os.PathLike)):
        raise ParameterTypeError("model", "a model spec (str)", spec)
    dev = _device(device)
    text = os.fspath(spec)
    if text == "demo":
        return _from_demo(weights, dev)
    if os.path.isfile(text):
        return _from_torchscript(Path(text), weights, dev)
    if ":" in text:
        return _from_factory(text, weights, dev)
    import torchvision.models as tvm

    if text in tvm.list_models():
        return _from_torchvision(text, weights, dev, allow_random)
    raise ParameterError(
        "model",
        "a torchvision architecture name (torchvision.models.list_models()), 'demo', "
        "'package.module:factory' or a TorchScript file",
        text,
    )


__all__ += ["Preprocess"]
