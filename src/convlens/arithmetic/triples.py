"""A layer's (output, tap, input) triples per spatial axis, from its :class:`LayerSpec`.

The bridge between the geometry (:class:`~convlens.arithmetic.LayerSpec`) and the index engine
(:mod:`convlens.index`): sizes, padding splits and ``output_padding`` come from the spec, the
triples from :func:`convlens.index.axis_triples`. Dumoulin & Visin, arXiv:1603.07285, §2-§4.

>>> from convlens.arithmetic import LayerSpec
>>> (t,) = layer_triples(LayerSpec.conv(3, padding=1, ndim=1), 4)
>>> t.out_length, t.inp[:3].tolist()
(4, [0, 1, 0])
"""

from __future__ import annotations

import math
from typing import Any

from convlens.arithmetic.layer import LayerSpec
from convlens.errors import ParameterError, ParameterTypeError
from convlens.index import (
    AxisTriples,
    ConvEntries,
    axis_triples,
    conv_entries,
    count_axis_triples,
    grid_triples,
)

__all__ = ["count_layer_entries", "layer_entries", "layer_triples"]


def _axes(spec: LayerSpec, input_size: Any) -> list[tuple[Any, ...]]:
    """Per axis, the arguments of :func:`~convlens.index.axis_triples` for ``spec``."""
    if not isinstance(spec, LayerSpec):
        raise ParameterTypeError("spec", "a LayerSpec", spec)
    size = spec.check_input_size(input_size)
    out = spec.output_size(size)
    mode = spec.padding_mode if spec.kind == "conv" else "zeros"
    if spec.kind == "conv_transpose":
        size, out = out, size
    return [
        (i, k, s, pad, d, mode, o)
        for i, o, k, s, pad, d in zip(
            size, out, spec.kernel_size, spec.stride, spec.padding_pairs(), spec.dilation
        )
    ]


def layer_triples(
    spec: LayerSpec, input_size: Any, *, max_bytes: int | None = None
) -> tuple[AxisTriples, ...]:
    """One :class:`~convlens.index.AxisTriples` per spatial axis of ``spec`` on ``input_size``.

    A conv: the conv applied to ``input_size`` (its padding mode included). A transposed conv
    applied to ``input_size``: the triples of its adjoint conv (same kernel, stride, padding,
    dilation) from the transposed *output* size (``output_padding`` included) down to
    ``input_size``, so ``out`` indexes the transposed conv's input and ``inp`` its output.
    Max/avg pooling: the windows (zeros-padding semantics, ``ceil_mode`` honoured).
    ``max_bytes`` limits each axis (:func:`~convlens.index.axis_triples`).

    >>> (t,) = layer_triples(LayerSpec.conv_transpose(3, stride=2, ndim=1), 2)
    >>> t.in_length, t.out_length, t.inp.tolist()
    (5, 2, [0, 1, 2, 2, 3, 4])
    """
    return tuple(
        axis_triples(i, k, s, pad, d, mode, out_length=o, max_bytes=max_bytes)
        for i, k, s, pad, d, mode, o in _axes(spec, input_size)
    )


def layer_entries(spec: LayerSpec, input_size: Any) -> ConvEntries:
    """The non-zeros of the matrix ``C`` of a conv (or of the conv a transposed conv transposes).

    For a conv, ``C`` maps vec(input) to vec(output); for a transposed conv applied to
    ``input_size``, ``C`` is its adjoint conv's (from the transposed output to ``input_size``),
    whose transpose the transposed conv is. Channels default to one per group where the spec
    does not know them. Taps that coincide (reflect, replicate, circular) stay separate entries.

    >>> e = layer_entries(LayerSpec.conv(2, ndim=1), 3)
    >>> e.shape, e.out.tolist(), e.inp.tolist(), e.weight_index.tolist()
    ((2, 3), [0, 0, 1, 1], [0, 1, 1, 2], [0, 1, 0, 1])
    """
    c_in, c_out = _channels(spec)
    return conv_entries(grid_triples(layer_triples(spec, input_size)), c_in, c_out, spec.groups)


def _channels(spec: Any) -> tuple[int, int]:
    """(input, output) channels of ``C`` (one per group where the spec does not know them)."""
    if not isinstance(spec, LayerSpec):
        raise ParameterTypeError("spec", "a LayerSpec", spec)
    if spec.kind not in ("conv", "conv_transpose"):
        raise ParameterError("spec", "a LayerSpec of kind conv or conv_transpose", spec.kind)
    c_in = spec.in_channels if spec.in_channels is not None else spec.groups
    c_out = spec.out_channels if spec.out_channels is not None else spec.groups
    return (c_out, c_in) if spec.kind == "conv_transpose" else (c_in, c_out)


def count_layer_entries(spec: LayerSpec, input_size: Any) -> int:
    """``len(layer_entries(spec, input_size).out)`` in closed form, building nothing (the
    per-axis counts of :func:`~convlens.index.count_axis_triples` times the channel pairs),
    so that what ``C`` would cost can be estimated and refused before it is built.

    >>> count_layer_entries(LayerSpec.conv(3, padding=1, in_channels=2, out_channels=4), 10**6)
    71999904000032
    """
    c_in, c_out = _channels(spec)
    per_axis = math.prod(
        count_axis_triples(i, k, s, pad, d, mode, out_length=o)
        for i, k, s, pad, d, mode, o in _axes(spec, input_size)
    )
    return c_out * (c_in // spec.groups) * per_axis
