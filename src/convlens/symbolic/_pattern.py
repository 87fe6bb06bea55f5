"""The index pattern of a convolution: which input entry each weight entry meets in each output.

Pure integer arithmetic, no sympy and no torch: one row per non-zero of the conv matrix C
(Dumoulin & Visin, arXiv:1603.07285, section 4), computed in O(nnz) and cached by geometry.

>>> p = conv_pattern((4, 4), (2, 2), (3, 3), (1, 1), (0, 0), (1, 1))
>>> len(p.out_index), p.out_index[:3].tolist(), p.in_index[:3].tolist()
(36, [0, 0, 0], [0, 1, 2])
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import prod

import numpy as np

from convlens._utils import as_tuple, check_positive
from convlens.arithmetic import conv_output_length
from convlens.errors import ParameterError, ParameterTypeError

__all__ = ["ConvGeometry", "Pattern", "conv_pattern", "make_geometry"]


@dataclass(frozen=True)
class Pattern:
    """Flat indices of the non-zeros of C: ``C[out_index, in_index] = weight.flatten()[w_index]``.

    ``out_index`` indexes vec(y) over (out channel, *output spatial), ``in_index`` vec(x) over
    (in channel, *input spatial), ``w_index`` the weight (out, in / groups, *kernel), C order.
    Entries come sorted by output, then by input channel and kernel offset.
    """

    out_index: np.ndarray
    in_index: np.ndarray
    w_index: np.ndarray


@dataclass(frozen=True)
class ConvGeometry:
    """Everything that fixes the index pattern of one convolution (hashable, so cacheable).

    ``output_size`` may be smaller than the conv arithmetic gives: a transposed convolution with
    ``output_padding`` is the transpose of the first ``output_size`` rows of a larger conv.
    """

    input_size: tuple[int, ...]
    output_size: tuple[int, ...]
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    in_channels: int = 1
    out_channels: int = 1
    groups: int = 1

    @property
    def ndim(self) -> int:
        return len(self.input_size)

    @property
    def output_padding(self) -> tuple[int, ...]:
        """The ``output_padding`` that makes ``conv_transpose`` return ``input_size``."""
        return tuple(
            n + 2 * p - d * (k - 1) - 1 - (o - 1) * s
            for n, o, k, s, p, d in zip(
                self.input_size,
                self.output_size,
                self.kernel_size,
                self.stride,
                self.padding,
                self.dilation,
            )
        )


def _int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParameterTypeError(name, "an int", value)
    if value < 1:
        raise ParameterError(name, "a positive int", value)
    return value


def _sizes(value: object, ndim: int, name: str, *, allow_zero: bool = False) -> tuple[int, ...]:
    """``as_tuple`` + a range check whose message shows the value as the user gave it."""
    t = as_tuple(value, ndim, name)
    try:
        check_positive(t, name, allow_zero=allow_zero)
    except ParameterError as exc:
        raise ParameterError(name, exc.expected, value) from None
    return t


def make_geometry(
    input_size: object,
    kernel_size: object,
    *,
    stride: object = 1,
    padding: object = 0,
    dilation: object = 1,
    in_channels: int = 1,
    out_channels: int = 1,
    groups: int = 1,
    output_size: object = None,
    ndim: int | None = None,
) -> ConvGeometry:
    """Validate and normalise the arguments of a convolution into a :class:`ConvGeometry`.

    ``ndim`` defaults to the length of the first tuple among the sizes, else 2.

    >>> make_geometry(5, 3, stride=2, padding=1).output_size
    (3, 3)
    """
    if ndim is None:
        ndim = 2
        for v in (input_size, kernel_size, stride, padding, dilation):
            if isinstance(v, (tuple, list)):
                ndim = len(v)
                break
    if ndim not in (1, 2, 3):
        raise ParameterError("input_size", "1, 2 or 3 spatial dimensions", input_size)
    n = _sizes(input_size, ndim, "input_size")
    k = _sizes(kernel_size, ndim, "kernel_size")
    s = _sizes(stride, ndim, "stride")
    p = _sizes(padding, ndim, "padding", allow_zero=True)
    d = _sizes(dilation, ndim, "dilation")
    cin = _int(in_channels, "in_channels")
    cout = _int(out_channels, "out_channels")
    g = _int(groups, "groups")
    if cin % g or cout % g:
        raise ParameterError(
            "groups", f"a divisor of in_channels={cin} and out_channels={cout}", groups
        )
    natural = tuple(conv_output_length(*a) for a in zip(n, k, s, p, p, d))
    if any(o < 1 for o in natural):
        raise ParameterError(
            "kernel_size",
            f"a dilated kernel that fits the padded input {tuple(x + 2 * q for x, q in zip(n, p))}",
            kernel_size,
        )
    if output_size is None:
        out = natural
    else:
        out = as_tuple(output_size, ndim, "output_size")
        if any(o < 1 or o > m for o, m in zip(out, natural)):
            raise ParameterError("output_size", f"1 to {natural} per dimension", output_size)
    return ConvGeometry(n, out, k, s, p, d, cin, cout, g)


@lru_cache(maxsize=256)
def conv_pattern(
    input_size: tuple[int, ...],
    output_size: tuple[int, ...],
    kernel_size: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
    in_channels: int = 1,
    out_channels: int = 1,
    groups: int = 1,
) -> Pattern:
    """Non-zeros of C for one geometry (already validated), in O(nnz) integer arithmetic.

    Input position of output ``o`` and kernel offset ``t`` along a dimension: ``o*s - p + t*d``.
    """
    ndim = len(input_size)
    # per output position and kernel offset, the input position along every dimension
    grids = np.meshgrid(
        *[np.arange(o) for o in output_size], *[np.arange(k) for k in kernel_size], indexing="ij"
    )
    out_pos, ker_pos = grids[:ndim], grids[ndim:]
    in_pos = [
        o * s - p + t * d for o, t, s, p, d in zip(out_pos, ker_pos, stride, padding, dilation)
    ]
    valid = np.ones(in_pos[0].shape, dtype=bool)
    for pos, n in zip(in_pos, input_size):
        valid &= (pos >= 0) & (pos < n)
    o_flat = np.ravel_multi_index([a[valid] for a in out_pos], output_size)
    i_flat = np.ravel_multi_index([a[valid] for a in in_pos], input_size)
    k_flat = np.ravel_multi_index([a[valid] for a in ker_pos], kernel_size)
    # channels: output channel oc reads the in_channels/groups channels of its group
    cin_g, cout_g = in_channels // groups, out_channels // groups
    oc = np.repeat(np.arange(out_channels), cin_g)
    cl = np.tile(np.arange(cin_g), out_channels)
    ci = (oc // cout_g) * cin_g + cl
    n_out, n_in, n_k = prod(output_size), prod(input_size), prod(kernel_size)
    out_index = (oc[:, None] * n_out + o_flat[None, :]).reshape(out_channels, cin_g, -1)
    in_index = (ci[:, None] * n_in + i_flat[None, :]).reshape(out_channels, cin_g, -1)
    w_index = ((oc * cin_g + cl)[:, None] * n_k + k_flat[None, :]).reshape(out_channels, cin_g, -1)
    # order: out channel, output position, in channel, kernel offset
    order = np.lexsort((in_index.ravel(), out_index.ravel()))
    arrays = [a.ravel()[order] for a in (out_index, in_index, w_index)]
    for a in arrays:
        a.flags.writeable = False
    return Pattern(*arrays)
