"""Receptive fields of a chain of conv/pool layers, and the input box of one unit.

Per layer and per dimension: the receptive-field ``size`` (input pixels one unit spans),
the ``jump`` (input pixels between neighbouring units, the product of the strides), and the
``start`` (centre of unit 0's field in input pixels; fractional for even sizes, negative
where the field begins in the padding). With ``f`` the first input pixel of unit 0, a layer of
effective kernel ``e = d*(k-1)+1``, stride ``s`` and padding ``p_lo`` before the data maps
``(size, jump, f)`` to ``(size + (e-1)*jump, jump*s, f - p_lo*jump)``. Araujo, Norris & Sim,
*Computing receptive fields of convolutional neural networks*, Distill 2019; Dumoulin & Visin,
arXiv:1603.07285.

A unit's box ``[start, stop)`` is its window traced down the chain: ``size`` pixels from
``first + position * jump``, partly in the padding at the border; its clipped box is that
box clipped to the image. Its support box is the bounding box of the input pixels the unit
actually reads (the support of its input gradient when all weights are positive): inside the
clipped box, smaller only where floor division drops pixels at intermediate layers (or a
dilated window ends in the padding). Dilation (or a stride larger than the kernel) leaves
holes inside it.

>>> import torch.nn as nn
>>> net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
>>> [(f.path, f.size, f.jump, f.start) for f in receptive_fields(net)]
[('0', (3, 3), (1, 1), (0.0, 0.0)), ('2', (4, 4), (2, 2), (0.5, 0.5))]
>>> box = unit_box(net, "2", (0, 3), (8, 8))
>>> box.start, box.stop, box.clipped_start, box.clipped_stop, box.clip_before, box.clip_after
((-1, 5), (3, 9), (0, 5), (3, 8), (1, 0), (0, 1))
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from convlens._utils import as_tuple, check_int
from convlens.arithmetic._modules import SUPPORTED_MODULES, is_geometric, is_module
from convlens.arithmetic.layer import LayerSpec, spec_from_module
from convlens.errors import (
    ParameterError,
    ParameterTypeError,
    UnsupportedModuleError,
)
from convlens.index import axis_triples

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = [
    "Box",
    "ReceptiveField",
    "ReceptiveFieldTable",
    "TracedLayer",
    "elementwise_modules",
    "receptive_fields",
    "torchvision_architecture",
    "trace_chain",
    "unit_box",
]


@functools.lru_cache(maxsize=1)
def elementwise_modules() -> tuple[type[nn.Module], ...]:
    """Modules skipped when walking a model: they act per position (per pixel, or across
    channels only), so they leave receptive fields unchanged. BatchNorm counts as per-position,
    as it is in eval mode. (Also ``ELEMENTWISE_MODULES``, built on first use: it imports torch.)

    >>> import torch.nn as nn
    >>> nn.ReLU in elementwise_modules()
    True
    """
    import torch.nn as nn

    return (
        nn.Identity,
        nn.Flatten,
        nn.modules.dropout._DropoutNd,
        nn.modules.batchnorm._BatchNorm,
        nn.LocalResponseNorm,
        nn.Softmax2d,
        nn.ReLU,
        nn.ReLU6,
        nn.LeakyReLU,
        nn.PReLU,
        nn.RReLU,
        nn.ELU,
        nn.SELU,
        nn.CELU,
        nn.GELU,
        nn.SiLU,
        nn.Mish,
        nn.Sigmoid,
        nn.Tanh,
        nn.Hardtanh,
        nn.Hardswish,
        nn.Hardsigmoid,
        nn.Softplus,
        nn.Softsign,
        nn.Tanhshrink,
        nn.Threshold,
        nn.LogSigmoid,
        nn.Hardshrink,
        nn.Softshrink,
    )


def __getattr__(name: str) -> Any:
    if name == "ELEMENTWISE_MODULES":
        return elementwise_modules()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_RF_MODULES = [n for n in SUPPORTED_MODULES if "Transpose" not in n]
_CHAIN = "receptive fields (a chain of conv/pool layers with only per-position modules between)"


@dataclass(frozen=True)
class ReceptiveField:
    """The receptive field of the units of one layer, per spatial dimension.

    ``size``: input pixels one unit spans; ``jump``: input pixels between neighbouring units;
    ``start``: centre of unit 0's field in input pixels; ``first``: the first input pixel of
    unit 0's field (``start = first + (size - 1) / 2``); ``output_size``: the layer's output
    size (``None`` when no input size was given); ``index``: position in the chain.
    """

    path: str
    spec: LayerSpec
    size: tuple[int, ...]
    jump: tuple[int, ...]
    start: tuple[float, ...]
    first: tuple[int, ...]
    output_size: tuple[int, ...] | None
    index: int

    def box(self, position: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Unclipped half-open ``(start, stop)`` in input pixels of the unit at ``position``."""
        start = tuple(f + p * j for f, p, j in zip(self.first, position, self.jump))
        return start, tuple(a + s for a, s in zip(start, self.size))


class ReceptiveFieldTable(list[ReceptiveField]):
    """What :func:`receptive_fields` returns: a list of :class:`ReceptiveField` (equal to the
    plain list of the same fields), shown as a table in a notebook."""

    __slots__ = ()

    def _repr_html_(self) -> str:
        from convlens.notebook import receptive_field_html

        return receptive_field_html(self)


@dataclass(frozen=True)
class Box:
    """The input box of one unit: half-open ``[start, stop)`` per dimension, in input pixels.

    ``start``/``stop`` are unclipped (they may lie in the padding, before 0 or past the
    image; ``stop - start`` is the receptive-field size); ``clipped_start``/``clipped_stop``
    are the box clipped to the image; ``clip_before``/``clip_after`` count the box's pixels
    before 0 and at or past the image edge (``clipped_start - start`` and
    ``stop - clipped_stop`` whenever the box meets the image), so a crop
    ``image[clipped_start:clipped_stop]`` sits at offset ``clip_before`` of a canvas of the
    full size. ``support_start``/``support_stop`` bound the pixels the unit actually reads
    (within the clipped box; equal to it unless intermediate layers drop pixels at the far
    edge or a dilated window ends in the padding; empty, start == stop, when it reads only
    padding). ``path`` is the conv/pool layer the requested layer resolved to.
    """

    path: str
    position: tuple[int, ...]
    input_size: tuple[int, ...]
    start: tuple[int, ...]
    stop: tuple[int, ...]
    clipped_start: tuple[int, ...]
    clipped_stop: tuple[int, ...]
    clip_before: tuple[int, ...]
    clip_after: tuple[int, ...]
    support_start: tuple[int, ...]
    support_stop: tuple[int, ...]

    @property
    def size(self) -> tuple[int, ...]:
        """Unclipped extent ``stop - start`` (the receptive-field size)."""
        return tuple(b - a for a, b in zip(self.start, self.stop))

    @property
    def clipped(self) -> bool:
        """Whether part of the box lies outside the image."""
        return any(self.clip_before) or any(self.clip_after)

    def slices(self) -> tuple[slice, ...]:
        """Slices of the clipped box, to crop the spatial dimensions of an image.

        >>> Box("0", (0,), (5,), (-1,), (2,), (0,), (2,), (1,), (0,), (0,), (2,)).slices()
        (slice(0, 2, None),)
        """
        return tuple(slice(a, b) for a, b in zip(self.clipped_start, self.clipped_stop))


@dataclass(frozen=True)
class _Walk:
    entries: tuple[tuple[str, LayerSpec], ...]
    # every module path -> index of the last conv/pool at or before it (-1: before the first)
    resolve: dict[str, int]
    # module path -> the reason it cannot be resolved (after a non-per-position module)
    beyond: dict[str, str]


_GEOMETRY = (
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "output_padding",
    "groups",
    "padding_mode",
    "in_channels",
    "out_channels",
    "ceil_mode",
    "count_include_pad",
)
_SPECS: dict[tuple[Any, ...], LayerSpec] = {}


def _spec_of(module: nn.Module, path: str) -> LayerSpec:
    """``spec_from_module``, memoised on the module's geometry (the walk runs on every call)."""
    values = (getattr(module, name, None) for name in _GEOMETRY)
    key = (type(module), *(tuple(v) if isinstance(v, list) else v for v in values))
    spec = _SPECS.get(key)
    if spec is None:
        spec = spec_from_module(module, path)
        if len(_SPECS) < 4096:
            _SPECS[key] = spec
    return spec


def _walk_module(model: nn.Module) -> _Walk:
    entries: list[tuple[str, LayerSpec]] = []
    resolve: dict[str, int] = {}
    beyond: dict[str, str] = {}
    barrier: tuple[str, str] | None = None
    containers: list[str] = []
    for path, module in model.named_modules():
        if next(module.children(), None) is not None:
            containers.append(path)
            continue
        if is_geometric(module):
            if barrier is not None:
                raise UnsupportedModuleError(barrier[0], barrier[1], _RF_MODULES, _CHAIN)
            spec = _spec_of(module, path)
            if spec.kind == "conv_transpose":
                raise UnsupportedModuleError(
                    path, type(module).__name__, _RF_MODULES, "receptive fields"
                )
            entries.append((path, spec))
            resolve[path] = len(entries) - 1
        elif isinstance(module, elementwise_modules()) and barrier is None:
            resolve[path] = len(entries) - 1
        else:
            if barrier is None:
                barrier = (path, type(module).__name__)
            beyond[path] = (
                f"module {barrier[0]!r} ({barrier[1]}) mixes positions in a way receptive "
                "fields do not model"
            )
    for path in containers:
        prefix = f"{path}." if path else ""
        inside = [p for p in resolve if p.startswith(prefix)]
        if any(p.startswith(prefix) for p in beyond):
            beyond[path] = next(v for p, v in beyond.items() if p.startswith(prefix))
        elif inside:
            resolve[path] = max(resolve[p] for p in inside)
    return _Walk(tuple(entries), resolve, beyond)


def _walk(chain: Any) -> _Walk:
    if is_module(chain):
        walk = _walk_module(chain)
    elif isinstance(chain, Sequence) and not isinstance(chain, str):
        items: list[tuple[str, LayerSpec]] = []
        for n, item in enumerate(chain):
            if isinstance(item, LayerSpec):
                items.append((str(n), item))
            elif (
                isinstance(item, Sequence)
                and not isinstance(item, str)
                and len(item) == 2
                and isinstance(item[0], str)
                and isinstance(item[1], LayerSpec)
            ):
                items.append((item[0], item[1]))
            else:
                raise ParameterTypeError(
                    f"chain[{n}]", "a LayerSpec or a (path, LayerSpec) pair", item
                )
        for path, spec in items:
            if spec.kind == "conv_transpose":
                raise UnsupportedModuleError(
                    path, "conv_transpose LayerSpec", _RF_MODULES, "receptive fields"
                )
        walk = _Walk(tuple(items), {p: n for n, (p, _) in enumerate(items)}, {})
    else:
        raise ParameterTypeError("chain", "an nn.Module or a list of LayerSpec", chain)
    if not walk.entries:
        raise ParameterError("chain", "at least one conv or pooling layer", "a chain without any")
    ndims = {spec.ndim for _, spec in walk.entries}
    if len(ndims) > 1:
        raise ParameterError("chain", "layers with one number of spatial dimensions", sorted(ndims))
    return walk


@functools.lru_cache(maxsize=256)
def _fields(
    entries: tuple[tuple[str, LayerSpec], ...], input_size: tuple[int, ...] | None
) -> tuple[ReceptiveField, ...]:
    n = entries[0][1].ndim
    size, jump, first = (1,) * n, (1,) * n, (0,) * n
    current = input_size
    out: list[ReceptiveField] = []
    for index, (path, spec) in enumerate(entries):
        lows = tuple(lo for lo, _ in spec.padding_pairs())
        first = tuple(f - lo * j for f, lo, j in zip(first, lows, jump))
        size = tuple(r + (e - 1) * j for r, e, j in zip(size, spec.effective_kernel, jump))
        jump = tuple(j * s for j, s in zip(jump, spec.stride))
        if current is not None:
            try:
                current = spec.output_size(current)
            except ParameterError as exc:
                where = f"at layer {path!r} ({spec.describe()}) of input size {input_size}"
                hint = f"{exc.hint}; {where}" if exc.hint else where
                raise ParameterError(exc.param, exc.expected, exc.received, hint) from None
        start = tuple(f + (r - 1) / 2 for f, r in zip(first, size))
        out.append(ReceptiveField(path, spec, size, jump, start, first, current, index))
    return tuple(out)


def receptive_fields(chain: Any, input_size: Any = None) -> ReceptiveFieldTable:
    """Receptive field size, jump and start of every conv/pool layer of ``chain``.

    ``chain`` is an ``nn.Module`` (its conv and pooling modules in registration order, with
    the per-position modules of :data:`ELEMENTWISE_MODULES` skipped: right for chains such as
    torchvision's AlexNet or VGG ``features`` or the whole models, not for residual or
    multi-branch networks), a list of :class:`LayerSpec`, or a list of ``(path, LayerSpec)``.
    Modules after the first one that mixes positions otherwise (a Linear, an adaptive pool)
    are left out; a conv/pool after one is an error. Transposed convolutions raise
    :class:`~convlens.errors.UnsupportedModuleError`. With ``input_size`` (spatial) each
    field also has the layer's ``output_size``.

    >>> from convlens.arithmetic import LayerSpec
    >>> rf = receptive_fields([LayerSpec.conv(3, 2, 1), LayerSpec.conv(3, 2, 1)], 8)[-1]
    >>> rf.size, rf.jump, rf.start, rf.output_size
    ((7, 7), (4, 4), (0.0, 0.0), (2, 2))
    """
    walk = _walk(chain)
    size = None if input_size is None else walk.entries[0][1].check_input_size(input_size)
    return ReceptiveFieldTable(_fields(walk.entries, size))


def _resolve(walk: _Walk, layer: Any) -> int:
    if isinstance(layer, bool) or not isinstance(layer, (int, str)):
        raise ParameterTypeError("layer", "a module path (str) or a layer index (int)", layer)
    n = len(walk.entries)
    if isinstance(layer, int):
        if not -n <= layer < n:
            raise ParameterError("layer", f"an index from {-n} to {n - 1}", layer)
        return layer % n
    if layer in walk.beyond:
        raise ParameterError(
            "layer",
            "a module before the first non-per-position module",
            layer,
            hint=walk.beyond[layer],
        )
    if layer not in walk.resolve:
        known = ", ".join(repr(p) for p, _ in walk.entries[:4])
        raise ParameterError(
            "layer", f"a module path of the chain (conv/pool layers: {known}, ...)", layer
        )
    index = walk.resolve[layer]
    if index < 0:
        raise ParameterError("layer", "a module at or after the first conv/pool layer", layer)
    return index


@functools.lru_cache(maxsize=65536)
def _support(
    entries: tuple[tuple[str, LayerSpec], ...], input_size: tuple[int, ...], dim: int, position: int
) -> tuple[int, int] | None:
    """``[min, max + 1)`` of the input pixels along ``dim`` that a unit reads, None if none.

    Walks the windows (:func:`convlens.index.axis_triples`, zeros semantics: padding is read
    by no pixel) down the chain, so pixels that floor division drops are left out.
    """
    sizes = [input_size[dim]]
    sizes += [out[dim] for out in _outputs(entries, input_size)]
    reached = np.zeros(sizes[-1], dtype=bool)
    reached[position] = True
    for (_, spec), n_in, n_out in zip(reversed(entries), reversed(sizes[:-1]), reversed(sizes[1:])):
        t = axis_triples(
            n_in, spec.kernel_size[dim], spec.stride[dim], spec.padding_pairs()[dim],
            spec.dilation[dim], "zeros", out_length=n_out,
        )  # fmt: skip
        below = np.zeros(n_in, dtype=bool)
        below[t.inp[reached[t.out]]] = True
        if not below.any():
            return None
        reached = below
    hits = np.flatnonzero(reached)
    return int(hits[0]), int(hits[-1]) + 1


def _outputs(
    entries: tuple[tuple[str, LayerSpec], ...], input_size: tuple[int, ...]
) -> list[tuple[int, ...]]:
    return [f.output_size for f in _fields(entries, input_size) if f.output_size is not None]


def unit_box(chain: Any, layer: Any, position: Any, input_size: Any) -> Box:
    """The input box of the unit at ``position`` of ``layer``, unclipped and clipped.

    ``layer`` is a module path (a per-position module such as the ReLU after a conv resolves to
    the last conv/pool at or before it; a container to its last one) or an index into
    :func:`receptive_fields`. ``position`` is the unit's spatial index, checked against the
    layer's output size for ``input_size``. The box is exact for any padding, dilation and
    ``ceil_mode`` (a window hanging over the right edge is clipped like any other); where the
    window reaches into the padding and a conv up to the layer pads with ``reflect``,
    ``replicate`` or ``circular`` (whose padding copies image pixels from elsewhere), it
    raises :class:`~convlens.errors.UnsupportedModuleError` rather than return a wrong box.

    >>> from convlens.arithmetic import LayerSpec
    >>> b = unit_box([LayerSpec.conv(3, 2, 1, ndim=1)], 0, 0, 5)
    >>> b.start, b.stop, b.clipped_start, b.clip_before
    ((-1,), (2,), (0,), (1,))
    """
    walk = _walk(chain)
    index = _resolve(walk, layer)
    size = walk.entries[0][1].check_input_size(input_size)
    field = _fields(walk.entries, size)[index]
    assert field.output_size is not None  # computed from size
    pos = as_tuple(position, field.spec.ndim, "position")
    if any(not 0 <= p < o for p, o in zip(pos, field.output_size)):
        raise ParameterError(
            "position",
            f"indices in [0, {field.output_size}) at layer {field.path!r} for input size {size}",
            pos if len(pos) > 1 else pos[0],
        )
    start, stop = field.box(pos)
    lo = tuple(min(max(0, a), w) for a, w in zip(start, size))
    hi = tuple(min(max(0, b), w) for b, w in zip(stop, size))
    reads = [_support(walk.entries[: index + 1], size, dim, p) for dim, p in enumerate(pos)]
    box = Box(
        path=field.path,
        position=pos,
        input_size=size,
        start=start,
        stop=stop,
        clipped_start=lo,
        clipped_stop=hi,
        # box pixels before 0 and at or past the edge (the whole box where it misses the image)
        clip_before=tuple(max(0, min(b, 0) - a) for a, b in zip(start, stop)),
        clip_after=tuple(max(0, b - max(a, w)) for a, b, w in zip(start, stop, size)),
        support_start=tuple(c if r is None else r[0] for r, c in zip(reads, lo)),
        support_stop=tuple(c if r is None else r[1] for r, c in zip(reads, lo)),
    )
    if any(a < 0 for a in start) or any(b > w for b, w in zip(stop, size)):
        for path, spec in walk.entries[: index + 1]:
            if spec.padding_mode != "zeros" and any(
                p for pair in spec.padding_pairs() for p in pair
            ):
                raise UnsupportedModuleError(
                    path,
                    f"conv with padding_mode={spec.padding_mode!r}",
                    ["zero-padded conv", "pooling"],
                    "the clipped box of a unit that reaches into the padding",
                )
    return box


@dataclass(frozen=True)
class TracedLayer:
    """One conv/pool layer of a traced model: its receptive field, type and output shape."""

    field: ReceptiveField
    module_type: str
    output_shape: tuple[int, ...]


def trace_chain(model: nn.Module, input_size: Any, channels: int = 3) -> list[TracedLayer]:
    """Receptive fields of ``model``'s conv/pool layers, checked against one forward pass.

    Runs ``model`` once on zeros of shape ``(1, channels, *input_size)`` (on the device of its
    parameters; build it under ``torch.device("meta")`` to skip the arithmetic) and checks that
    every conv/pool module is called once, on the input size the chain predicts. A residual or
    multi-branch network fails that check with
    :class:`~convlens.errors.UnsupportedModuleError` (a necessary check, not a proof that the
    model is a chain). Hooks are removed even when the forward raises.

    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.MaxPool2d(2))
    >>> [(t.field.path, t.output_shape) for t in trace_chain(net, 9)]
    [('0', (4, 4, 4)), ('2', (4, 2, 2))]
    """
    import torch

    if not is_module(model):
        raise ParameterTypeError("model", "an nn.Module", model)
    check_int(channels, "channels")
    fields = receptive_fields(model, input_size)
    size = fields[0].spec.check_input_size(input_size)
    modules = dict(model.named_modules())
    seen: dict[str, list[tuple[tuple[int, ...], tuple[int, ...]]]] = {f.path: [] for f in fields}

    def hook(path: str) -> Any:
        def record(_module: Any, args: Any, output: Any) -> None:
            seen[path].append((tuple(args[0].shape), tuple(output.shape)))

        return record

    handles = [modules[f.path].register_forward_hook(hook(f.path)) for f in fields]
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            model(torch.zeros((1, channels, *size), device=device))
    except Exception as exc:  # the model's own forward refused this input
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ParameterError(
            "input_size",
            f"a size the model accepts with {channels} channels",
            size,
            hint=f"its forward raised {type(exc).__name__}: {first}",
        ) from exc
    finally:
        for handle in handles:
            handle.remove()
    previous = size
    traced = []
    for f in fields:
        calls = seen[f.path]
        module_type = type(modules[f.path]).__name__
        if len(calls) != 1:
            raise UnsupportedModuleError(
                f.path,
                f"{module_type} called {len(calls)} times in one forward",
                ["conv/pool modules that form a chain (each called once)"],
                "receptive fields",
            )
        (in_shape, out_shape) = calls[0]
        if in_shape[2:] != previous or out_shape[2:] != f.output_size:
            raise UnsupportedModuleError(
                f.path,
                f"{module_type} fed {in_shape[2:]} where a chain gives {previous} "
                "(a residual or branching network)",
                ["conv/pool modules that form a chain"],
                "receptive fields",
            )
        assert f.output_size is not None  # input_size was given
        previous = f.output_size
        traced.append(TracedLayer(f, module_type, out_shape[1:]))
    return traced


def torchvision_architecture(name: str, *, device: Any = "meta") -> nn.Module:
    """A torchvision architecture by name with no weights, for its arithmetic only.

    Built on the ``meta`` device by default: no memory, no random initialisation, and a
    forward pass that only computes shapes. An unknown name raises
    :class:`~convlens.errors.ParameterError` listing close valid names.

    >>> torchvision_architecture("alexnet").features[0]
    Conv2d(3, 64, kernel_size=(11, 11), stride=(4, 4), padding=(2, 2))
    """
    import difflib

    import torch
    import torchvision

    if not isinstance(name, str):
        raise ParameterTypeError("model", "a torchvision architecture name", name)
    names = torchvision.models.list_models()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=6, cutoff=0.5)
        examples = ("alexnet", "vgg16", "vgg16_bn", "vgg19", "zfnet")
        shown = ", ".join(close or [n for n in examples if n in names])
        what = "close names" if close else "for example"
        raise ParameterError(
            "model",
            f"a torchvision architecture name ({what}: {shown}; all: "
            "torchvision.models.list_models())",
            name,
        )
    import inspect

    kwargs: dict[str, Any] = {"weights": None}
    if (
        "weights_backbone"
        in inspect.signature(torchvision.models.get_model_builder(name)).parameters
    ):
        kwargs["weights_backbone"] = None  # detection/segmentation: no pretrained backbone either
    with torch.device(device):
        return torchvision.models.get_model(name, **kwargs)
