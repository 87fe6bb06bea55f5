"""Loading models safely: torchvision architectures with local weights, factories, TorchScript
and the embedded demo.

Weights are only ever read as plain tensors: ``torch.load(..., weights_only=True)`` or
safetensors. A file holding a pickled model or any other pickled object is refused, and a state
dict that does not fit the architecture is reported key by key. Nothing is downloaded; random
weights need ``allow_random=True``, come with a :class:`RandomWeightsWarning` and are drawn
from a seeded generator (``seed``, default 0; the global one is left as it was), so that two
runs, a resumed run and every process of a torchrun job hold the same network. A factory runs
under the same seed. The device is checked before anything moves there
(:func:`check_device`), and a model whose weights are on the meta device is refused.

>>> import warnings
>>> with warnings.catch_warnings():
...     warnings.simplefilter("ignore")
...     loaded = load_model("alexnet", allow_random=True)
>>> loaded.name, loaded.input_size, loaded.weights_sha256, loaded.model.training
('alexnet', (224, 224), None, False)
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

import convlens.demo as demo
from convlens.checks import check_materialised
from convlens.demo.data import preprocess as demo_preprocess
from convlens.errors import ConvLensError, ParameterError, ParameterTypeError, verbatim
from convlens.io import sha256_file
from convlens.loaded import LoadedModel
from convlens.models.images import Preprocess, default_preprocess, torchvision_preprocess

__all__ = [
    "LoadedModel",
    "RandomWeightsWarning",
    "apply_weights",
    "check_device",
    "load_model",
    "read_weights",
    "seeded",
    "sha256_file",
    "state_sha256",
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


def check_device(device: Any, param: str = "device") -> torch.device:
    """``device`` as a ``torch.device`` this machine has (``"cuda"`` becomes the current GPU's
    ``cuda:N``); a GPU that is not there, or the meta device, is an error naming ``param``.

    >>> check_device("cpu")
    device(type='cpu')
    >>> try:
    ...     check_device("cuda:99")
    ... except ParameterError as exc:
    ...     print(str(exc).split(" (")[0])
    device: expected a device this machine has
    """
    if isinstance(device, torch.device):
        dev = device
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise ParameterError(
                param, "a torch device such as 'cpu', 'cuda' or 'cuda:0'", device
            ) from exc
    if dev.type == "meta":
        raise ParameterError(param, "a device that computes (cpu, cuda, ...)", str(device))
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = (
            dev.index if dev.index is not None else (torch.cuda.current_device() if count else 0)
        )
        if index >= count:
            have = (
                f"{count} CUDA GPU(s)"
                if count
                else "no CUDA GPU (torch.cuda.is_available() is False)"
            )
            raise ParameterError(
                param,
                f"a device this machine has ({have})",
                str(device),
                hint="use --device cpu" if not count else f"use cuda:0 .. cuda:{count - 1}",
            )
        return torch.device("cuda", index)
    if dev.type != "cpu":
        try:
            torch.empty(0, device=dev)
        except Exception as exc:
            raise ParameterError(
                param, "a device this machine has", str(device), hint=f"{type(exc).__name__}: {exc}"
            ) from exc
    return dev


def state_sha256(model: nn.Module) -> str:
    """The hex SHA-256 of a model's state: every parameter and buffer by name, dtype, shape and
    bytes (independent of the device it is on). Two processes hold the same network exactly
    when these agree.

    >>> a = nn.Linear(2, 2); b = nn.Linear(2, 2); _ = b.load_state_dict(a.state_dict())
    >>> state_sha256(a) == state_sha256(b), state_sha256(a) == state_sha256(nn.Linear(2, 2))
    (True, False)
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}\t{t.dtype}\t{tuple(tensor.shape)}\n".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ParameterTypeError("seed", "an int", seed)
    if not 0 <= seed < 2**63:
        raise ParameterError("seed", "an int in 0 .. 2**63 - 1", seed)
    return seed


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's generators seeded by ``seed``, then put them back as they
    were: random weights drawn inside are the same in every process and every run.

    >>> with seeded(3):
    ...     a = torch.rand(2)
    >>> with seeded(3):
    ...     b = torch.rand(2)
    >>> torch.equal(a, b)
    True
    """
    seed = _check_seed(seed)
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _random_warning(name: str, seed: int) -> None:
    warnings.warn(
        RandomWeightsWarning(
            f"{name} runs with RANDOM weights (allow_random=True, no weights file; seed {seed}): "
            "its projections show the architecture, not anything learned"
        ),
        stacklevel=3,
    )


def _finish(loaded: LoadedModel, device: torch.device) -> LoadedModel:
    if not isinstance(loaded.model, nn.Module):
        raise ParameterTypeError("model", "a torch.nn.Module", loaded.model)
    check_materialised(loaded.model)
    try:
        loaded.model.to(device)
    except Exception as exc:
        raise ParameterError(
            "device",
            f"a device the model {loaded.name!r} can move to",
            str(device),
            hint=f"{type(exc).__name__}: {exc}",
        ) from exc
    loaded.model.eval()
    return loaded


def _from_torchvision(
    name: str, weights: Any, device: torch.device, allow_random: bool, seed: int
) -> LoadedModel:
    import torchvision.models as tvm

    if weights is None and not allow_random:
        raise ParameterError(
            "weights",
            f"a local weights file for {name} (or allow_random=True for random weights)",
            None,
            hint="nothing is downloaded; save a state dict with torch.save or safetensors",
        )
    with seeded(seed):
        model = tvm.get_model(name, weights=None)
    preprocess, size = torchvision_preprocess(name)
    classes: tuple[str, ...] | None = None
    try:
        meta = tvm.get_model_weights(name).DEFAULT.meta
        classes = tuple(meta["categories"]) if meta.get("categories") else None
    except Exception:  # no weights enum for this architecture
        classes = None
    digest = None
    used_seed: int | None = None
    if weights is not None:
        apply_weights(model, read_weights(weights, device), name, weights)
        digest = sha256_file(weights)
        source = f"torchvision architecture {name} with weights {os.fspath(weights)}"
    else:
        _random_warning(name, seed)
        used_seed = seed
        source = f"torchvision architecture {name} with random weights (seed {seed})"
    loaded = LoadedModel(model, name, preprocess, size, digest, classes, source, used_seed)
    return _finish(loaded, device)


def _import_hint(module_name: str, exc: ImportError) -> str:
    """Why ``module_name`` did not import, and where Python looked for it."""
    missing = getattr(exc, "name", None)
    top = module_name.split(".")[0]
    if isinstance(exc, ModuleNotFoundError) and missing and top.startswith(missing.split(".")[0]):
        here = Path.cwd() / top
        local = here.with_suffix(".py").is_file() or (here / "__init__.py").is_file()
        where = f" ({top} is in the current folder)" if local else ""
        return (
            f"no module named {missing!r}{where}: the `convlens` command finds only installed "
            "modules and those on PYTHONPATH; run `PYTHONPATH=. convlens ...` (or "
            "`python -m convlens ...`) for a module in the current folder"
        )
    return f"{type(exc).__name__}: {exc}"


def _required_arguments(factory: Any) -> list[str]:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin without a signature: just call it
        return []
    kinds = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )
    return [
        p.name
        for p in signature.parameters.values()
        if p.kind in kinds and p.default is inspect.Parameter.empty
    ]


def _from_factory(spec: str, weights: Any, device: torch.device, seed: int) -> LoadedModel:
    module_name, _, attr = spec.partition(":")
    expected = "an importable 'package.module:factory'"
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ParameterError("model", expected, spec, hint=_import_hint(module_name, exc)) from exc
    except Exception as exc:  # the module itself raised while importing
        raise ParameterError(
            "model",
            expected,
            spec,
            hint=f"importing {module_name} raised {type(exc).__name__}: {exc}",
        ) from exc
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError as exc:
        raise ParameterError("model", expected, spec, hint=str(exc)) from exc
    if not callable(obj):
        raise ParameterTypeError("model", "a callable factory", obj)
    needed = _required_arguments(obj)
    if needed:
        raise ParameterError(
            "model",
            "a factory that takes no arguments",
            verbatim(f"{spec} needing {', '.join(needed)}"),
            hint="write a small function without arguments that calls it with yours",
        )
    try:
        with seeded(seed):
            made = obj()
    except ConvLensError:
        raise
    except Exception as exc:
        raise ParameterError(
            "model",
            "a factory that builds a model",
            spec,
            hint=f"{spec}() raised {type(exc).__name__}: {exc}",
        ) from exc
    if isinstance(made, LoadedModel):
        loaded = made
        if loaded.seed is None and loaded.weights_sha256 is None:
            loaded.seed = seed
    elif isinstance(made, nn.Module):
        loaded = LoadedModel(
            made, spec, default_preprocess(), (224, 224), None, None, f"factory {spec}", seed
        )
    else:
        raise ParameterError(
            "model", f"a factory returning an nn.Module ({spec})", verbatim(type(made).__name__)
        )
    if not isinstance(loaded.model, nn.Module):
        raise ParameterError(
            "model",
            f"a factory whose LoadedModel holds an nn.Module ({spec})",
            verbatim(type(loaded.model).__name__),
        )
    if weights is not None:
        check_materialised(loaded.model)
        apply_weights(loaded.model, read_weights(weights, device), spec, weights)
        loaded.weights_sha256 = sha256_file(weights)
        loaded.source = f"factory {spec} with weights {os.fspath(weights)}"
        loaded.seed = None
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
    seed: int = 0,
) -> LoadedModel:
    """Load the model named by ``spec``, safely, in eval mode on ``device``
    (:func:`check_device`).

    ``spec`` is ``"demo"`` (the embedded default), a path to a TorchScript file,
    ``"package.module:factory"`` (a callable returning an ``nn.Module`` or a
    :class:`LoadedModel`; used as it comes unless ``weights`` is given), or a torchvision
    architecture name (built by ``torchvision.models.get_model(name, weights=None)``, then
    ``weights`` loaded from a local file; random weights only with ``allow_random=True``).
    Preprocessing: torchvision's own weights transforms for torchvision names, else
    :func:`~convlens.models.images.default_preprocess`. Random weights and factories are
    built under ``seed`` (:func:`seeded`), kept as ``LoadedModel.seed``.

    >>> try:
    ...     load_model("not_a_model")
    ... except ParameterError as exc:
    ...     print(str(exc)[:45])
    model: expected a torchvision architecture na
    """
    if not isinstance(spec, (str, os.PathLike)):
        raise ParameterTypeError("model", "a model spec (str)", spec)
    dev = check_device(device)
    seed = _check_seed(seed)
    text = os.fspath(spec)
    if text == "demo":
        return _from_demo(weights, dev)
    if os.path.isfile(text):
        return _from_torchscript(Path(text), weights, dev)
    if ":" in text:
        return _from_factory(text, weights, dev, seed)
    import torchvision.models as tvm

    if text in tvm.list_models():
        return _from_torchvision(text, weights, dev, allow_random, seed)
    raise ParameterError(
        "model",
        "a torchvision architecture name (torchvision.models.list_models()), 'demo', "
        "'package.module:factory' or a TorchScript file",
        text,
    )


__all__ += ["Preprocess"]
