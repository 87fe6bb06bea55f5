"""The transposed convolution that undoes a convolution's shape, and the sizes that collide.

A strided convolution maps several input sizes to one output size: with kernel 3, stride 2 and
padding 1 both 11 and 12 give 6. Its transposed convolution (same kernel, stride, padding,
dilation and groups) therefore cannot know which size to return; PyTorch lets the caller pick
with ``output_padding`` (an extra ``0 .. stride-1`` rows on the far side) or with the
``output_size=`` argument of ``ConvTransposeNd.forward``. Dumoulin & Visin, *A guide to
convolution arithmetic for deep learning*, arXiv:1603.07285, relationships 13-14.

>>> from convlens.arithmetic import LayerSpec
>>> inv = invert_conv(LayerSpec.conv(3, stride=2, padding=1, ndim=1), 12)
>>> inv.output_padding, inv.colliding, inv.ambiguous
((1,), ((11, 12),), True)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from convlens.arithmetic.layer import LayerSpec, conv_transpose_output_length
from convlens.errors import ParameterError, ParameterTypeError
from convlens.index import check_budget

__all__ = [
    "MAX_SIZES",
    "ConvInverse",
    "colliding_input_sizes",
    "colliding_size_ranges",
    "input_size_ranges",
    "input_sizes_for",
    "invert_conv",
    "output_padding_for",
    "transpose_size_range",
]

#: The default limit on the sizes listed per dimension by :func:`input_sizes_for` and
#: :func:`colliding_input_sizes` (a conv lists about ``stride`` of them); the ``*_ranges``
#: functions give the same sizes as ``range`` objects for any stride.
MAX_SIZES = 100_000


@dataclass(frozen=True)
class ConvInverse:
    """The transposed convolution that maps a convolution's output back to its input size.

    ``transpose`` is a ``conv_transpose`` :class:`LayerSpec` with the conv's kernel, stride,
    dilation, groups, the conv's padding before each dimension, and ``output_padding``.
    ``crop`` is ``(before, after)`` per dimension to cut off its output; it is non-zero only
    for an asymmetric ``padding='same'`` (even kernel), which no transposed convolution can
    express: ``padding=p_lo`` then dropping the last ``p_hi - p_lo`` rows is the exact
    transpose there. ``output_size`` is the value to pass as ``ConvTransposeNd.forward(y,
    output_size=...)`` (``None`` where cropping is needed). ``colliding`` lists per dimension
    every conv input size giving the same output (``colliding_ranges``: the same as ``range``
    objects, cheap for any stride). ``adjoint`` is whether the transposed conv is
    the exact transpose (adjoint) of the conv, and not just a shape inverse: true for zero
    padding, false for ``reflect``/``replicate``/``circular``.
    """

    conv: LayerSpec
    input_size: tuple[int, ...]
    conv_output_size: tuple[int, ...]
    transpose: LayerSpec
    crop: tuple[tuple[int, int], ...]
    colliding_ranges: tuple[range, ...]

    @property
    def colliding(self) -> tuple[tuple[int, ...], ...]:
        """Per dimension, every conv input size giving the same output (as tuples; at most
        :data:`MAX_SIZES` per dimension, else refused: :attr:`colliding_ranges` has them all)."""
        return _listed(self.colliding_ranges, None)

    @property
    def output_padding(self) -> tuple[int, ...]:
        """The ``output_padding`` of :attr:`transpose`."""
        return self.transpose.output_padding

    @property
    def output_size(self) -> tuple[int, ...] | None:
        """The ``output_size=`` argument of ``ConvTransposeNd.forward`` that gives the input size."""
        return None if any(lo or hi for lo, hi in self.crop) else self.input_size

    @property
    def ambiguous(self) -> bool:
        """Whether more than one conv input size gives the conv's output size."""
        return any(len(c) > 1 for c in self.colliding_ranges)

    @property
    def adjoint(self) -> bool:
        """Whether :attr:`transpose` (with :attr:`crop`) is the exact transpose of the conv."""
        return self.conv.padding_mode == "zeros"


@functools.lru_cache(maxsize=4096)
def _preimage(spec: LayerSpec, dim: int, o: int) -> range:
    """The input lengths ``i`` with ``output_length(dim, i) == o``: an interval, as the output
    length never decreases with ``i`` (where it is refused, ``i`` is below a threshold);
    found by bisection, O(log stride)."""
    k, s, d = spec.kernel_size[dim], spec.stride[dim], spec.dilation[dim]
    lo, hi = spec.padding_pairs()[dim]
    # o = floor((i + lo + hi - e) / s) + 1  =>  i in [(o-1)s + e - lo - hi, ... + s - 1];
    # ceil_mode moves that by less than one stride, so search one stride either side.
    base = (o - 1) * s + d * (k - 1) + 1 - lo - hi
    first, stop = max(1, base - s), max(1, base + 2 * s)

    def reaching(target: int) -> int:
        """The first ``i`` in ``[first, stop)`` whose output length is ``>= target``."""
        a, b = first, stop
        while a < b:
            mid = (a + b) // 2
            length = spec.output_length(dim, mid)
            if length is not None and length >= target:
                b = mid
            else:
                a = mid + 1
        return a

    return range(reaching(o), reaching(o + 1))


def _listed(ranges: tuple[range, ...], max_sizes: Any) -> tuple[tuple[int, ...], ...]:
    """The ranges as tuples, refusing more than ``max_sizes`` (default MAX_SIZES) in one."""
    limit = MAX_SIZES if max_sizes is None else max_sizes
    for dim, r in enumerate(ranges):
        check_budget(
            len(r), limit, param="max_sizes", what="a list of input sizes",
            received=f"sizes {r.start}..{r.stop - 1} in dimension {dim}", unit="sizes",
            cli=False,
        )  # fmt: skip
    return tuple(tuple(r) for r in ranges)


def _check_spec(spec: Any, kinds: Sequence[str], name: str = "spec") -> LayerSpec:
    if not isinstance(spec, LayerSpec):
        raise ParameterTypeError(name, "a LayerSpec", spec)
    if spec.kind not in kinds:
        raise ParameterError(name, f"a LayerSpec of kind {' or '.join(kinds)}", spec.kind)
    return spec


def input_size_ranges(spec: LayerSpec, output_size: Any) -> tuple[range, ...]:
    """Per dimension, the input sizes that a conv or pooling layer maps to ``output_size``, as
    a ``range`` (consecutive sizes; empty where none, possible with ``ceil_mode``). O(log
    stride) for any stride.

    >>> input_size_ranges(LayerSpec.conv(3, stride=10**9, ndim=1), 2)
    (range(1000000003, 2000000003),)
    """
    spec = _check_spec(spec, ("conv", "max_pool", "avg_pool"))
    out = spec.check_input_size(output_size, name="output_size")
    return tuple(_preimage(spec, dim, o) for dim, o in enumerate(out))


def input_sizes_for(
    spec: LayerSpec, output_size: Any, *, max_sizes: int | None = None
) -> tuple[tuple[int, ...], ...]:
    """Per dimension, every input size that a conv or pooling layer maps to ``output_size``.

    Empty where no input size gives that output (possible with ``ceil_mode``). More than
    ``max_sizes`` (default :data:`MAX_SIZES`) in one dimension is refused; the same sizes as
    ``range`` objects, for any stride: :func:`input_size_ranges`.

    >>> input_sizes_for(LayerSpec.conv(3, stride=2, padding=1, ndim=1), 6)
    ((11, 12),)
    """
    return _listed(input_size_ranges(spec, output_size), max_sizes)


def _conv_of(transpose: LayerSpec) -> LayerSpec:
    """The convolution whose transpose ``transpose`` is (same geometry, channels swapped)."""
    return LayerSpec(
        kind="conv",
        kernel_size=transpose.kernel_size,
        stride=transpose.stride,
        padding=transpose.padding,
        dilation=transpose.dilation,
        output_padding=(0,) * transpose.ndim,
        groups=transpose.groups,
        in_channels=transpose.out_channels,
        out_channels=transpose.in_channels,
    )


def colliding_size_ranges(spec: LayerSpec, input_size: Any) -> tuple[range, ...]:
    """:func:`colliding_input_sizes` as ``range`` objects (consecutive sizes), for any stride.

    >>> colliding_size_ranges(LayerSpec.conv_transpose(3, stride=2, padding=1, ndim=1), 6)
    (range(11, 13),)
    """
    spec = _check_spec(spec, ("conv", "conv_transpose", "max_pool", "avg_pool"))
    size = spec.check_input_size(input_size)
    if spec.kind == "conv_transpose":
        return input_size_ranges(_conv_of(spec), size)
    return input_size_ranges(spec, spec.output_size(size))


def colliding_input_sizes(
    spec: LayerSpec, input_size: Any, *, max_sizes: int | None = None
) -> tuple[tuple[int, ...], ...]:
    """Per dimension, the conv input sizes that collide.

    For a conv or pooling ``spec`` and its ``input_size``: every input size giving the same
    output. For a transposed conv and *its* input size: every input size of the matching
    convolution (same kernel, stride, padding, dilation) that gives that size; the transposed
    conv's ``output_padding`` picks one of them (``output_padding = size - min(sizes)``).
    More than ``max_sizes`` (default :data:`MAX_SIZES`) in one dimension is refused
    (:func:`colliding_size_ranges` gives them as ranges).

    >>> colliding_input_sizes(LayerSpec.conv_transpose(3, stride=2, padding=1, ndim=1), 6)
    ((11, 12),)
    >>> colliding_input_sizes(LayerSpec.conv(3, stride=2, padding=1, ndim=1), 12)
    ((11, 12),)
    """
    return _listed(colliding_size_ranges(spec, input_size), max_sizes)


def transpose_size_range(spec: LayerSpec, input_size: Any) -> tuple[tuple[int, int], ...]:
    """Per dimension, ``(min, max)`` output sizes a transposed conv reaches via ``output_size=``.

    As ``ConvTransposeNd._output_padding``: ``min`` is the size with ``output_padding=0``
    and ``max = min + stride - 1``.

    >>> transpose_size_range(LayerSpec.conv_transpose(3, stride=2, padding=1, ndim=1), 6)
    ((11, 12),)
    """
    spec = _check_spec(spec, ("conv_transpose",))
    size = spec.check_input_size(input_size)
    ranges = tuple((lo, lo + s - 1) for lo, s in zip(_min_sizes(spec, size), spec.stride))
    for dim, (_lo, hi) in enumerate(ranges):
        if hi < 1:
            raise ParameterError(
                "padding",
                "a padding that leaves at least one output of the transposed convolution",
                spec.padding,
                hint=f"input size {size} gives at most {hi} in dimension {dim}",
            )
    return tuple((max(lo, 1), hi) for lo, hi in ranges)


def _min_sizes(spec: LayerSpec, size: tuple[int, ...]) -> tuple[int, ...]:
    """Transposed-conv output sizes with ``output_padding=0`` (may be < 1, as in PyTorch)."""
    return tuple(
        conv_transpose_output_length(i, k, s, lo, d)
        for i, s, (lo, _), d, k in zip(
            size, spec.stride, spec.padding_pairs(), spec.dilation, spec.kernel_size
        )
    )


def output_padding_for(spec: LayerSpec, input_size: Any, output_size: Any) -> tuple[int, ...]:
    """The ``output_padding`` a transposed conv needs to return ``output_size``.

    The same rule as the ``output_size=`` argument of PyTorch's ``ConvTransposeNd.forward``
    (which ignores the module's own ``output_padding``): ``output_size`` may hold the spatial
    sizes, or also the batch and channel sizes in front. Raises
    :class:`~convlens.errors.ParameterError` when a size lies outside ``[min, min + stride - 1]``.

    >>> output_padding_for(LayerSpec.conv_transpose(3, stride=2, padding=1, ndim=1), 6, 12)
    (1,)
    """
    spec = _check_spec(spec, ("conv_transpose",))
    n = spec.ndim
    if isinstance(output_size, Sequence) and not isinstance(output_size, str):
        if len(output_size) == n + 2:
            output_size = tuple(output_size)[2:]
        elif len(output_size) != n:
            raise ParameterError(
                "output_size", f"{n} or {n + 2} values (spatial, or with N and C)", output_size
            )
    size = spec.check_input_size(input_size)
    want = spec.check_input_size(output_size, name="output_size")
    ranges = transpose_size_range(spec, size)
    for dim, (w, (lo, hi)) in enumerate(zip(want, ranges)):
        if not lo <= w <= hi:
            raise ParameterError(
                "output_size",
                f"a size from {lo} to {hi} in dimension {dim} for input size {size} "
                f"(stride {spec.stride[dim]} reaches min..min+stride-1)",
                want if n > 1 else w,
            )
    return tuple(w - m for w, m in zip(want, _min_sizes(spec, size)))


def invert_conv(conv: LayerSpec, input_size: Any) -> ConvInverse:
    """The transposed conv that maps ``conv``'s output back to exactly ``input_size``.

    Same kernel, stride, dilation and groups; padding = the conv's padding before each
    dimension (``0`` for ``'valid'``); ``output_padding = input_size - min_size`` per dimension,
    where ``min_size`` is the transposed conv's output without it. That is the exact transpose
    of the conv for zero padding (``vec(x) -> C^T vec(y)``). For an asymmetric ``'same'``
    padding (even ``dilation*(kernel-1)``) the transposed output is one row longer and
    :attr:`ConvInverse.crop` says what to drop. Dumoulin & Visin, arXiv:1603.07285, §4.

    >>> inv = invert_conv(LayerSpec.conv(3, stride=2, padding=1), (12, 11))
    >>> inv.transpose.output_padding, inv.output_size
    ((1, 0), (12, 11))
    >>> invert_conv(LayerSpec.conv(4, padding="same", ndim=1), 7).crop
    ((0, 1),)
    """
    conv = _check_spec(conv, ("conv",), "conv")
    size = conv.check_input_size(input_size)
    out = conv.output_size(size)
    lows = tuple(lo for lo, _ in conv.padding_pairs())
    transpose = LayerSpec(
        kind="conv_transpose",
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=lows,
        dilation=conv.dilation,
        output_padding=(0,) * conv.ndim,
        groups=conv.groups,
        in_channels=conv.out_channels,
        out_channels=conv.in_channels,
    )
    mins = _min_sizes(transpose, out)
    # Since i >= (o-1)s + e - lo - hi, i - min >= lo - hi: a shortfall only with hi > lo.
    # And i - min <= s - 1 + lo - hi, so output_padding < stride.
    pads = tuple(max(0, i - m) for i, m in zip(size, mins))
    crop = tuple((0, max(0, m - i)) for i, m in zip(size, mins))
    return ConvInverse(
        conv=conv,
        input_size=size,
        conv_output_size=out,
        transpose=transpose.replace(output_padding=pads),
        crop=crop,
        colliding_ranges=input_size_ranges(conv, out),
    )
