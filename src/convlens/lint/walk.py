"""The model walk: every transposed conv, strided conv and pooling layer of a real model, linted.

:func:`trace_model` runs one forward pass (on the ``meta`` device: shapes only, no memory, the
model's weights untouched) with forward hooks on every conv, transposed conv and pooling module,
so residual, branching and skip-concatenating models (torchvision ResNets, U-Nets) are seen as
they execute. :func:`lint_model` then reports, per layer, its output size and formula (from
:class:`~convlens.arithmetic.LayerSpec`), the conv input sizes that collide on it and the
``output_padding`` that selects each (:func:`~convlens.arithmetic.colliding_input_sizes`,
:func:`~convlens.arithmetic.output_padding_for`, :func:`~convlens.arithmetic.invert_conv`), its
overlap map (:func:`~convlens.lint.overlap_map`), dead pixels and a suggestion; the compounded
overlap of the upsampling chain; and the aliasing of the first layer's filters.

Flagged (what :attr:`ModelLint.flagged` and ``convlens lint``'s exit status 1 report): a
transposed convolution, or the compounded upsampling chain, whose interior overlap is uneven
(the checkerboard of Odena, Dumoulin & Olah, Distill 2016) or that leaves pixels unwritten.
Strided convolutions and pooling layers carry the same pattern in their gradient only
(deconvnet projections, saliency maps); they are reported and flagged only with
``strict=True``.

>>> import torch.nn as nn
>>> net = nn.Sequential(nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1))
>>> result = lint_model(net, 4)
>>> row = result.layers[0]
>>> row.output_size, row.overlap.ratio, row.flagged
((8, 8), 4.0, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from convlens._utils import as_tuple, check_positive
from convlens.arithmetic import (
    LayerSpec,
    colliding_input_sizes,
    invert_conv,
    is_geometric,
    output_padding_for,
    spec_from_module,
)
from convlens.errors import ConvLensError, ParameterError, ParameterTypeError
from convlens.lint.aliasing import FilterAliasing, filter_aliasing
from convlens.lint.overlap import OverlapMap, WeightedOverlap, compound_overlap, overlap_map
from convlens.lint.overlap import weighted_overlap as _weighted

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = [
    "MAX_TRACE_ELEMENTS",
    "CompoundLint",
    "LayerLint",
    "ModelLint",
    "TracedCall",
    "lint_model",
    "suggest",
    "trace_model",
]

#: Largest input (elements) a real (non-meta) forward pass may take when the meta trace fails.
MAX_TRACE_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class TracedCall:
    """One executed conv, transposed conv or pooling module.

    ``path``: its module path (``"path (call n)"`` for the n-th call of a module run several
    times). ``spec``: its geometry as it ran (a transposed conv called with ``output_size=``
    gets the ``output_padding`` that size needs). Sizes are spatial.
    """

    path: str
    module_type: str
    spec: LayerSpec
    input_size: tuple[int, ...]
    output_size: tuple[int, ...]
    module: Any = field(repr=False, compare=False)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _input_shape(model: nn.Module, input_size: Any, channels: int | None) -> tuple[int, ...]:
    first = next((m for m in model.modules() if is_geometric(m)), None)
    if first is None:
        raise ParameterError(
            "model", "a model with a conv, transposed conv or pooling layer", type(model).__name__
        )
    spec = spec_from_module(first)
    size = as_tuple(input_size, spec.ndim, "input_size")
    check_positive(size, "input_size")
    if channels is None:
        channels = spec.in_channels
    if channels is None:
        raise ParameterError(
            "channels",
            "the number of input channels (the model's first layer is a pooling layer)",
            None,
        )
    check_positive((channels,), "channels")
    return (1, int(channels), *size)


def _run(
    model: nn.Module, shape: tuple[int, ...], meta: bool
) -> list[tuple[str, nn.Module, tuple[int, ...], tuple[int, ...]]]:
    import torch
    from torch.func import functional_call

    modules = dict(model.named_modules())
    seen: list[tuple[str, nn.Module, tuple[int, ...], tuple[int, ...]]] = []
    calls: dict[str, int] = {}
    stack: list[str] = []
    handles = []

    def pre(path: str) -> Any:
        def hook(_module: nn.Module, _args: Any) -> None:
            stack.append(path)

        return hook

    def post(path: str, geometric: bool) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if stack and stack[-1] == path:
                stack.pop()
            if geometric:
                out = output[0] if isinstance(output, (tuple, list)) else output
                calls[path] = calls.get(path, 0) + 1
                name = path if calls[path] == 1 else f"{path} (call {calls[path]})"
                seen.append((name, module, tuple(args[0].shape), tuple(out.shape)))

        return hook

    for path, module in modules.items():
        handles.append(module.register_forward_pre_hook(pre(path or "<model>")))
        handles.append(module.register_forward_hook(post(path or "<model>", is_geometric(module))))
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            if meta:
                state = {
                    name: torch.empty_like(t, device="meta")
                    for name, t in (*model.named_parameters(), *model.named_buffers())
                }
                x = torch.zeros(shape, device="meta")
                functional_call(model, state, (x,))
            else:
                param = next(model.parameters(), None)
                device = param.device if param is not None else torch.device("cpu")
                dtype = param.dtype if param is not None and param.is_floating_point() else None
                model(torch.zeros(shape, device=device, dtype=dtype))
    except Exception as exc:
        where = stack[-1] if stack else "<model>"
        what = type(modules.get(where, model) if where != "<model>" else model).__name__
        raise _TraceError(where, what, exc) from exc
    finally:
        for h in handles:
            h.remove()
        model.train(training)
    return seen


class _TraceError(Exception):
    def __init__(self, path: str, module_type: str, exc: BaseException):
        super().__init__(path)
        self.path, self.module_type, self.exc = path, module_type, exc


def trace_model(
    model: nn.Module,
    input_size: Any,
    *,
    channels: int | None = None,
) -> tuple[TracedCall, ...]:
    """Run ``model`` once on zeros ``(1, channels, *input_size)`` and record its geometric calls.

    ``channels`` defaults to the ``in_channels`` of the first conv module; the number of
    spatial dimensions is that module's. The pass runs on the ``meta`` device (shapes only;
    the model's weights and buffers are neither read nor changed) and, if the model cannot run
    there (a data-dependent operation), once for real in eval mode (refused beyond
    :data:`MAX_TRACE_ELEMENTS` input elements). A size the model cannot take raises
    :class:`~convlens.errors.ParameterError` for ``input_size`` naming the layer that refused
    it. Modules called through ``torch.nn.functional`` are not seen; TorchScript modules are
    refused (they run no Python hooks).

    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.MaxPool2d(2))
    >>> [(c.path, c.input_size, c.output_size) for c in trace_model(net, 9)]
    [('0', (9, 9), (4, 4)), ('1', (4, 4), (2, 2))]
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        raise ParameterTypeError("model", "a torch.nn.Module", model)
    if isinstance(model, torch.jit.ScriptModule):
        raise ParameterTypeError(
            "model",
            "an nn.Module that runs Python forward hooks (TorchScript modules do not)",
            model,
        )
    shape = _input_shape(model, input_size, channels)
    try:
        try:
            raw = _run(model, shape, meta=True)
        except _TraceError:
            if math.prod(shape) > MAX_TRACE_ELEMENTS:
                raise
            raw = _run(model, shape, meta=False)
    except _TraceError as err:
        raise ParameterError(
            "input_size",
            f"a size the model accepts with {shape[1]} input channels",
            shape[2:],
            hint=f"layer {err.path!r} ({err.module_type}) raised {_first_line(err.exc)}",
        ) from None
    return tuple(_call(*item) for item in raw)


def _call(
    path: str, module: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> TracedCall:
    spec = spec_from_module(module, path)
    size, out = in_shape[-spec.ndim :], out_shape[-spec.ndim :]
    if spec.kind == "conv_transpose" and spec.output_size(size) != out:
        spec = spec.replace(output_padding=output_padding_for(spec, size, out))
    if spec.output_size(size) != out:  # the one geometry disagrees with PyTorch: never guess
        raise ConvLensError(
            f"module {path!r}: LayerSpec gives output size {spec.output_size(size)} for input "
            f"{size}, PyTorch gave {out} ({spec.describe()})"
        )
    return TracedCall(path, type(module).__name__, spec, size, out, module)


# ---------------------------------------------------------------------------- suggestions


def _axis_fix(spec: LayerSpec, axis: int, n: int, target: int) -> tuple[int, int, int] | None:
    """Along one axis: ``(kernel, padding, output_padding)`` with the kernel divisible by the
    stride, output length ``target`` and an even overlap, closest to the layer's own."""
    k, s, d = spec.kernel_size[axis], spec.stride[axis], spec.dilation[axis]
    p0 = spec.padding_pairs()[axis][0]
    kernels = sorted({-(-k // s) * s, max(s, (k // s) * s)}, key=lambda v: (abs(v - k), -v))
    ops = range(s) if spec.kind == "conv_transpose" else range(1)
    for k2 in kernels:
        found = []
        for p2 in range(0, d * k2 + 1):
            for op2 in ops:
                try:
                    cand = LayerSpec(
                        kind=spec.kind,
                        kernel_size=(k2,),
                        stride=(s,),
                        padding=(p2,),
                        dilation=(d,),
                        output_padding=(op2,),
                    )
                    if cand.output_size(n) != (target,):
                        continue
                    m = overlap_map(cand, n)
                except ParameterError:
                    continue
                if not m.uneven and m.dead_pixels == 0:
                    found.append((abs(p2 - p0), op2, k2, p2))
        if found:
            _, op2, k2, p2 = min(found)
            return k2, p2, op2
    return None


def _kernel_fix(spec: LayerSpec, size: tuple[int, ...], target: tuple[int, ...]) -> str | None:
    """The arguments of a kernel divisible by the stride keeping the output size ``target``."""
    if spec.kind not in ("conv", "conv_transpose"):
        return None
    fixes = [_axis_fix(spec, a, n, t) for a, (n, t) in enumerate(zip(size, target))]
    if any(f is None for f in fixes):
        return None
    ks, ps, ops = zip(*fixes)

    def show(v: tuple[int, ...]) -> str:
        return str(v[0]) if len(set(v)) == 1 else str(tuple(v))

    parts = [f"kernel_size={show(ks)}", f"padding={show(ps)}"]
    if spec.kind == "conv_transpose" and (any(ops) or any(spec.output_padding)):
        parts.append(f"output_padding={show(ops)}")
    return ", ".join(parts)


def suggest(spec: LayerSpec, input_size: Any, overlap: OverlapMap | None = None) -> str | None:
    """A fix for an uneven or hole-leaving layer, checked with the same geometry; else ``None``.

    For a transposed conv: a kernel divisible by the stride (with the padding and
    ``output_padding`` that keep the output size, verified even); else resize-then-conv
    (Odena et al., Distill 2016) or, in 2-D, a sub-pixel convolution with ``nn.PixelShuffle``
    (Shi et al., arXiv:1609.05158) initialised with ICNR (Aitken et al., arXiv:1707.02937). For a
    strided conv or pooling layer: what its gradient shows, and the kernel that evens it.

    >>> from convlens.arithmetic import LayerSpec
    >>> print(suggest(LayerSpec.conv_transpose(3, 2, 1, 1, ndim=1), 8))  # doctest: +ELLIPSIS
    uneven overlap (ratio 2): use kernel_size=4, padding=1, output_padding=0 ...
    """
    size = as_tuple(input_size, spec.ndim, "input_size")
    m = overlap if overlap is not None else overlap_map(spec, size)
    if not m.uneven and m.dead_pixels == 0:
        return None
    s = spec.stride
    target = spec.output_size(size)
    ratio = "inf" if math.isinf(m.ratio) else f"{m.ratio:g}"
    period = s[0] if len(set(s)) == 1 else s
    shared = any(math.gcd(d, st) > 1 for d, st in zip(spec.dilation, s))
    if spec.kind == "conv_transpose":
        if m.phase_min == 0:
            why = (
                f"dilation {spec.dilation} shares a factor with stride {s}"
                if shared
                else f"kernel {spec.kernel_size} smaller than stride {s}"
            )
            text = f"{m.dead_pixels} output pixels are never written ({why})"
            base = spec.replace(dilation=(1,) * spec.ndim) if shared else spec
            fix = _kernel_fix(base, size, target)
            if fix is not None:
                text += f": use {'dilation=1, ' if shared else ''}{fix}"
        elif m.uneven:
            text = f"uneven overlap (ratio {ratio})"
            fix = _kernel_fix(spec, size, target)
            if fix is not None:
                text += f": use {fix} (kernel divisible by the stride, same output size)"
        else:
            text = f"{m.dead_pixels} output pixels at the border are never written"
        text += (
            f"; or resize-then-conv: nn.Upsample(scale_factor={period}, mode='nearest') then a "
            "stride-1 conv (Odena et al., Distill 2016)"
        )
        if spec.ndim == 2 and len(set(s)) == 1:
            c_in = spec.in_channels if spec.in_channels is not None else "C_in"
            c_out = (
                spec.out_channels * s[0] ** 2
                if spec.out_channels is not None
                else f"C_out*{s[0] ** 2}"
            )
            k = spec.kernel_size[0]
            text += (
                f"; or sub-pixel conv: nn.Conv2d({c_in}, {c_out}, {k}, padding={k // 2}) + "
                f"nn.PixelShuffle({s[0]}) (Shi et al., arXiv:1609.05158) with ICNR init "
                "(Aitken et al., arXiv:1707.02937)"
            )
        return text
    if m.phase_min == 0:
        return (
            f"{m.dead_pixels} input pixels are never read (kernel {spec.kernel_size}, stride {s}, "
            f"dilation {spec.dilation}): the layer skips them (aliasing); its gradient has holes"
        )
    if not m.uneven:
        return (
            f"{m.dead_pixels} input pixels at the far border are never read (the floor in the "
            "output size drops them)"
        )
    what = "pooling windows overlap" if spec.kind != "conv" else "its gradient overlaps"
    text = (
        f"{what} unevenly (ratio {ratio}): deconvnet projections and saliency maps through "
        f"it show a period-{period} grid"
    )
    fix = _kernel_fix(spec, size, target)
    if fix is not None:
        text += f"; {fix} evens it"
    return text


# ---------------------------------------------------------------------------- the lint


@dataclass(frozen=True)
class LayerLint:
    """The lint of one transposed conv, strided conv or pooling call.

    ``role``: ``upsampling`` (transposed conv), ``downsampling`` (strided conv) or
    ``pooling``. ``colliding[a]``: the conv input sizes that collide on this layer along axis
    ``a`` (for a transposed conv: the sizes of the matching conv's input that give its input
    size; for a conv/pool: the input sizes giving its output size); ``output_paddings[a]``: the
    ``output_padding`` that selects each (for a conv: of :func:`~convlens.arithmetic.invert_conv`;
    ``None`` for pooling). ``overlap``: the map on the output (transposed conv) or the
    gradient map on the input (conv, pooling). ``weighted``: the weighted view with the
    module's actual weights (``None`` for pooling or weights on the meta device).
    """

    path: str
    module_type: str
    role: str
    spec: LayerSpec
    input_size: tuple[int, ...]
    output_size: tuple[int, ...]
    formula: tuple[str, ...]
    colliding: tuple[tuple[int, ...], ...]
    output_paddings: tuple[tuple[int | None, ...], ...]
    overlap: OverlapMap
    weighted: WeightedOverlap | None
    flagged: bool
    suggestion: str | None

    @property
    def ambiguous(self) -> bool:
        """Whether several conv input sizes collide on this layer."""
        return any(len(c) > 1 for c in self.colliding)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (``ratio`` ``None`` for infinite)."""
        o = self.overlap
        wr = None
        if self.weighted is not None:
            cr = self.weighted.channel_ratio
            finite = cr[np.isfinite(cr)]
            wr = float(np.median(finite)) if finite.size == cr.size and cr.size else None
        return {
            "path": self.path,
            "type": self.module_type,
            "kind": self.spec.kind,
            "role": self.role,
            "geometry": self.spec.describe(),
            "input_size": list(self.input_size),
            "output_size": list(self.output_size),
            "formula": list(self.formula),
            "overlap_on": "input (gradient)" if o.gradient else "output",
            "overlap_min": o.phase_min,
            "overlap_max": o.phase_max,
            "ratio": None if math.isinf(o.ratio) else o.ratio,
            "uneven": o.uneven,
            "dead_pixels": o.dead_pixels,
            "interior_min": o.interior_min,
            "interior_max": o.interior_max,
            "border_min": o.border_min,
            "border_max": o.border_max,
            "ambiguous": self.ambiguous,
            "ambiguous_inputs": [
                [{"size": v, "output_padding": op} for v, op in zip(sizes, ops)]
                for sizes, ops in zip(self.colliding, self.output_paddings)
            ],
            "weighted_ratio": wr,
            "flagged": self.flagged,
            "suggestion": self.suggestion,
        }


@dataclass(frozen=True)
class CompoundLint:
    """The compounded overlap of the upsampling chain (per channel: paths through one channel).

    ``paths``: the calls in the chain, from the first transposed conv on, every conv or
    transposed conv whose input has the running size (the main path; stride-1 convs included,
    as paths go through them); ``skipped``: the later conv calls not on it.
    """

    paths: tuple[str, ...]
    skipped: tuple[str, ...]
    overlap: OverlapMap
    flagged: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        o = self.overlap
        return {
            "layers": list(self.paths),
            "skipped": list(self.skipped),
            "input_size": list(o.input_size),
            "output_size": list(o.shape),
            "overlap_min": o.phase_min,
            "overlap_max": o.phase_max,
            "ratio": None if math.isinf(o.ratio) else o.ratio,
            "uneven": o.uneven,
            "dead_pixels": o.dead_pixels,
            "interior_min": o.interior_min,
            "interior_max": o.interior_max,
            "flagged": self.flagged,
        }


@dataclass(frozen=True)
class ModelLint:
    """The lint of a whole model: its table, the compounded chain and first-layer aliasing."""

    input_shape: tuple[int, ...]
    layers: tuple[LayerLint, ...]
    traced: tuple[TracedCall, ...]
    compound: CompoundLint | None
    aliasing_path: str | None
    aliasing: FilterAliasing | None
    strict: bool

    @property
    def flagged(self) -> bool:
        """Whether any layer (or the compounded chain) is flagged."""
        return any(layer.flagged for layer in self.layers) or bool(
            self.compound is not None and self.compound.flagged
        )

    def _repr_html_(self) -> str:
        """In a notebook: the layer table, the compounded chain and the first-layer aliasing."""
        from convlens.notebook import lint_html

        return lint_html(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values: ``layers``, ``compound``, ``aliasing``, ``flagged``."""
        return {
            "input_shape": list(self.input_shape),
            "strict": self.strict,
            "flagged": self.flagged,
            "layers": [layer.to_dict() for layer in self.layers],
            "compound": None if self.compound is None else self.compound.to_dict(),
            "aliasing": None
            if self.aliasing is None
            else {"path": self.aliasing_path, **self.aliasing.summary()},
        }


def _role(spec: LayerSpec) -> str | None:
    if spec.kind == "conv_transpose":
        return "upsampling"
    if spec.kind == "conv":
        return "downsampling" if any(s > 1 for s in spec.stride) else None
    return "pooling"


def _collisions(
    spec: LayerSpec, size: tuple[int, ...], out: tuple[int, ...]
) -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[int | None, ...], ...]]:
    sizes = colliding_input_sizes(spec, size)
    pads: list[tuple[int | None, ...]] = []
    for a, options in enumerate(sizes):
        row: list[int | None] = []
        for v in options:
            if spec.kind == "conv_transpose":
                want = tuple(v if b == a else o for b, o in enumerate(out))
                row.append(output_padding_for(spec, size, want)[a])
            elif spec.kind == "conv":
                want = tuple(v if b == a else i for b, i in enumerate(size))
                row.append(invert_conv(spec, want).output_padding[a])
            else:
                row.append(None)
        pads.append(tuple(row))
    return sizes, tuple(pads)


def _weight(module: Any) -> Any:
    w = getattr(module, "weight", None)
    if w is None or getattr(w, "is_meta", False):
        return None
    return w


def _layer(call: TracedCall, strict: bool) -> LayerLint | None:
    role = _role(call.spec)
    if role is None:
        return None
    spec, size = call.spec, call.input_size
    m = overlap_map(spec, size)
    weighted = None
    w = _weight(call.module)
    if w is not None and spec.kind in ("conv", "conv_transpose"):
        weighted = _weighted(spec, size, w)
    bad = m.uneven or m.dead_pixels > 0
    colliding, pads = _collisions(spec, size, call.output_size)
    return LayerLint(
        path=call.path,
        module_type=call.module_type,
        role=role,
        spec=spec,
        input_size=size,
        output_size=call.output_size,
        formula=spec.formula(size),
        colliding=colliding,
        output_paddings=pads,
        overlap=m,
        weighted=weighted,
        flagged=bad and (role == "upsampling" or strict),
        suggestion=suggest(spec, size, m) if bad else None,
    )


def _no_channels(spec: LayerSpec) -> LayerSpec:
    return spec.replace(in_channels=None, out_channels=None)


def _compound(traced: Sequence[TracedCall]) -> CompoundLint | None:
    start = next((n for n, c in enumerate(traced) if c.spec.kind == "conv_transpose"), None)
    if start is None:
        return None
    chain, paths, skipped = [], [], []
    current = traced[start].input_size
    for call in traced[start:]:
        if call.spec.kind not in ("conv", "conv_transpose"):
            continue
        if call.input_size == current:
            chain.append(_no_channels(call.spec))
            paths.append(call.path)
            current = call.output_size
        else:
            skipped.append(call.path)
    m = compound_overlap(chain, traced[start].input_size)
    return CompoundLint(tuple(paths), tuple(skipped), m, m.uneven or m.dead_pixels > 0)


def lint_model(
    model: nn.Module,
    input_size: Any,
    *,
    channels: int | None = None,
    strict: bool = False,
) -> ModelLint:
    """Lint every transposed conv, strided conv and pooling layer of ``model``.

    Traced with :func:`trace_model` on ``(1, channels, *input_size)``; see the module docstring
    for what is flagged (``strict=True`` flags strided convs and pooling too). The first-layer
    aliasing (:func:`~convlens.lint.filter_aliasing`) is that of the first conv executed, when it
    is a convolution with weights.

    >>> import torch.nn as nn
    >>> gen = nn.Sequential(nn.ConvTranspose2d(16, 8, 4, 2, 1), nn.ReLU(),
    ...                     nn.ConvTranspose2d(8, 3, 4, 2, 1))
    >>> result = lint_model(gen, 4)
    >>> result.flagged, result.compound.overlap.shape, result.compound.overlap.ratio
    (False, (16, 16), 1.0)
    """
    traced = trace_model(model, input_size, channels=channels)
    shape = _input_shape(model, input_size, channels)
    layers = tuple(row for row in (_layer(c, strict) for c in traced) if row is not None)
    first = next((c for c in traced if c.spec.kind in ("conv", "conv_transpose")), None)
    aliasing, where = None, None
    if first is not None and first.spec.kind == "conv" and _weight(first.module) is not None:
        aliasing = filter_aliasing(first.module.weight, first.spec.stride)
        where = first.path
    return ModelLint(
        input_shape=shape,
        layers=layers,
        traced=traced,
        compound=_compound(traced),
        aliasing_path=where,
        aliasing=aliasing,
        strict=strict,
    )
