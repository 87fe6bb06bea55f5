"""The one index engine: which input position each kernel tap of each output reads.

Per spatial axis of a convolution (or pooling window), output position ``o`` reads input
position ``i = o*s + k*d - p_lo`` through kernel tap ``k``. With ``padding_mode='zeros'`` the
taps that fall in the padding are dropped; with ``reflect``, ``replicate`` or ``circular`` the
position is mapped back into the input (so one output may read one input several times).
Everything that needs the pattern of the conv matrix ``C`` builds on these triples: the sparse
``C`` (:mod:`convlens.matrix`), the symbolic ``C`` (:mod:`convlens.symbolic`), the scatter route
of transposed convolution, the figures' windows and the receptive support. Dumoulin & Visin,
*A guide to convolution arithmetic for deep learning*, arXiv:1603.07285, §2 and §4.

NumPy only (no torch), at the bottom of the package: it imports :mod:`convlens.errors` and
:mod:`convlens._utils`. Per-layer triples from a :class:`~convlens.arithmetic.LayerSpec` are
:func:`convlens.arithmetic.layer_triples`.

>>> t = axis_triples(4, 3, padding=(1, 1))
>>> t.out.tolist(), t.tap.tolist(), t.inp.tolist()
([0, 0, 1, 1, 1, 2, 2, 2, 3, 3], [1, 2, 0, 1, 2, 0, 1, 2, 0, 1], [0, 1, 0, 1, 2, 1, 2, 3, 2, 3])
"""

from __future__ import annotations

import functools
import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from convlens._utils import check_int, check_pair
from convlens.errors import ParameterError, ParameterTypeError, verbatim

__all__ = [
    "PADDING_MODES",
    "AxisTriples",
    "ConvEntries",
    "GridTriples",
    "axis_triples",
    "check_budget",
    "clear_caches",
    "conv_entries",
    "count_axis_triples",
    "default_max_bytes",
    "exclusive_cumsum",
    "flat_index",
    "format_bytes",
    "grid_triples",
    "row_product",
]

#: The padding modes of ``nn.ConvNd`` (``'zeros'`` is also the semantics of pooling windows).
PADDING_MODES: tuple[str, ...] = ("zeros", "reflect", "replicate", "circular")

_I64 = np.int64


@dataclass(frozen=True, eq=False)
class AxisTriples:
    """The (output, tap, input) triples of one spatial axis, sorted by output, then tap.

    ``out[n]`` reads ``inp[n]`` through kernel tap ``tap[n]``; all three are read-only int64
    arrays of one length. ``in_length``/``out_length`` are the axis' input and output lengths
    and ``kernel`` its number of taps.
    """

    out: np.ndarray
    tap: np.ndarray
    inp: np.ndarray
    in_length: int
    out_length: int
    kernel: int = 1

    def __len__(self) -> int:
        return int(self.out.size)


def _natural_length(n: int, k: int, s: int, lo: int, hi: int, d: int) -> int:
    return (n + lo + hi - d * (k - 1) - 1) // s + 1


def axis_triples(
    in_length: int,
    kernel: int,
    stride: int = 1,
    padding: tuple[int, int] = (0, 0),
    dilation: int = 1,
    padding_mode: str = "zeros",
    *,
    out_length: int | None = None,
    max_bytes: int | None = None,
) -> AxisTriples:
    """The (output, tap, input) triples of one axis of a convolution, cached.

    ``padding`` is ``(before, after)``; ``out_length`` defaults to the convolution's
    ``(n + p_lo + p_hi - d*(k-1) - 1) // s + 1``. A different ``out_length`` keeps the first
    outputs only (a transposed convolution's adjoint) or adds windows past the end (pooling with
    ``ceil_mode``; zeros padding only), whose taps outside the input are dropped. Their number,
    without building them, is :func:`count_axis_triples`.

    The arrays' size is estimated first: over ``max_bytes`` (default
    :func:`default_max_bytes`) the call is refused before anything is allocated.

    >>> t = axis_triples(5, 3, stride=2, padding=(1, 1), padding_mode="reflect")
    >>> t.out_length, t.inp.tolist()
    (3, [1, 0, 1, 1, 2, 3, 3, 4, 3])
    """
    args = _axis_args(in_length, kernel, stride, padding, dilation, padding_mode, out_length)
    n, k, m = args[0], args[1], args[-1]
    check_budget(
        48 * m * k,  # out, tap, inp and the mask, before and after dropping the padding
        max_bytes,
        param="max_bytes",
        what="index triples",
        cli=False,
        received=f"{m:,} outputs x {k:,} taps over an input of {n:,} along one axis",
    )
    return _axis_triples(*args)


def _axis_args(
    in_length: Any,
    kernel: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    padding_mode: Any,
    out_length: Any,
) -> tuple[int, int, int, int, int, int, str, int]:
    """The validated arguments of one axis: ``(n, k, s, lo, hi, d, mode, m)``."""
    n = check_int(in_length, "in_length")
    k = check_int(kernel, "kernel")
    s = check_int(stride, "stride")
    d = check_int(dilation, "dilation")
    lo, hi = check_pair(padding, "padding")
    if not isinstance(padding_mode, str):
        raise ParameterTypeError("padding_mode", f"one of {', '.join(PADDING_MODES)}", padding_mode)
    if padding_mode not in PADDING_MODES:
        raise ParameterError("padding_mode", f"one of {', '.join(PADDING_MODES)}", padding_mode)
    if padding_mode != "zeros":
        limit_ok = max(lo, hi) < n if padding_mode == "reflect" else max(lo, hi) <= n
        if padding_mode == "replicate":
            limit_ok = True
        if not limit_ok:
            rel = "smaller than" if padding_mode == "reflect" else "at most"
            raise ParameterError(
                "padding",
                f"a value {rel} the input length {n} with padding_mode={padding_mode!r}",
                (lo, hi),
            )
    natural = _natural_length(n, k, s, lo, hi, d)
    if out_length is None:
        if natural < 1:
            e = d * (k - 1) + 1
            raise ParameterError(
                "kernel",
                f"an effective kernel (dilation*(kernel-1)+1 = {e}) no larger "
                f"than the padded input ({n}+{lo}+{hi} = {n + lo + hi})",
                k,
            )
        m = natural
    else:
        m = check_int(out_length, "out_length")
        if padding_mode != "zeros" and m > natural:
            raise ParameterError(
                "out_length",
                f"at most {natural} outputs with padding_mode={padding_mode!r}",
                m,
            )
    return n, k, s, lo, hi, d, padding_mode, m


def _floor_sum(n: int, m: int, a: int, b: int) -> int:
    """``sum(floor((a*i + b) / m) for i in range(n))`` in O(log m) (any ints ``a``, ``b``;
    ``m > 0``, ``n >= 0``): the Euclid-like reduction of the AtCoder Library's ``floor_sum``."""
    if n <= 0:
        return 0
    total = 0
    a0, b0 = a % m, b % m
    total += n * (n - 1) // 2 * ((a - a0) // m) + n * ((b - b0) // m)
    a, b = a0, b0
    while True:
        if a >= m:
            total += n * (n - 1) // 2 * (a // m)
            a %= m
        if b >= m:
            total += n * (b // m)
            b %= m
        y_max = a * n + b
        if y_max < m:
            return total
        n, b = divmod(y_max, m)
        m, a = a, m


def count_axis_triples(
    in_length: int,
    kernel: int,
    stride: int = 1,
    padding: tuple[int, int] = (0, 0),
    dilation: int = 1,
    padding_mode: str = "zeros",
    *,
    out_length: int | None = None,
) -> int:
    """``len(axis_triples(...))`` in closed form, without building the triples: O(log) time
    and memory for any sizes, so that a caller can estimate what it would allocate first.

    With ``padding_mode='zeros'`` it counts the pairs ``0 <= o < m``, ``0 <= t < k`` with
    ``0 <= o*s + t*d - p_lo < n`` (a floor sum per piece of the taps); other modes keep all
    ``m * k`` pairs.

    >>> count_axis_triples(4, 3, padding=(1, 1)), len(axis_triples(4, 3, padding=(1, 1)))
    (10, 10)
    >>> count_axis_triples(10**12, 3, stride=7)
    428571428571
    """
    n, k, s, lo, _, d, mode, m = _axis_args(
        in_length, kernel, stride, padding, dilation, padding_mode, out_length
    )
    if mode != "zeros":
        return m * k
    # tap t reaches outputs o in [G(t), F(t)] clipped to [0, m-1], where
    # F(t) = floor((n - 1 + lo - t*d) / s) and G(t) = ceil((lo - t*d) / s); both fall with t.
    t_first = max(0, -(((m - 1) * s - lo) // d))  # ceil((lo - (m-1)*s) / d)
    t_last = min(k - 1, (n - 1 + lo) // d)  # F(t) >= 0 and G(t) <= m - 1 between these
    if t_first > t_last:
        return 0
    t_full_hi = (n - 1 + lo - (m - 1) * s) // d  # F(t) >= m - 1 up to here
    t_full_lo = -(-lo // d)  # G(t) <= 0 from here on
    cuts = sorted({t_first, t_last + 1, *(c for c in (t_full_hi + 1, t_full_lo)
                                           if t_first < c <= t_last)})  # fmt: skip
    total = 0
    for a, b in itertools.pairwise(cuts):
        count = b - a
        if b - 1 <= t_full_hi:
            total += (m - 1) * count
        else:  # sum of F(t) for t = b-1 down to a
            total += _floor_sum(count, s, d, n - 1 + lo - (b - 1) * d)
        if a < t_full_lo:  # minus the sum of G(t) = -floor((t*d - lo) / s)
            total += _floor_sum(count, s, d, a * d - lo)
        total += count
    return total


@functools.lru_cache(maxsize=1024)
def _axis_triples(
    n: int, k: int, s: int, lo: int, hi: int, d: int, mode: str, m: int
) -> AxisTriples:
    out = np.repeat(np.arange(m, dtype=_I64), k)
    tap = np.tile(np.arange(k, dtype=_I64), m)
    inp = out * s + tap * d - lo
    if mode == "zeros":
        keep = (inp >= 0) & (inp < n)
        out, tap, inp = out[keep], tap[keep], inp[keep]
    elif mode == "reflect":
        inp = np.where(inp < 0, -inp, inp)
        inp = np.where(inp >= n, 2 * (n - 1) - inp, inp)
    elif mode == "replicate":
        inp = np.clip(inp, 0, n - 1)
    else:  # circular
        inp = np.mod(inp, n)
    for a in (out, tap, inp):
        a.flags.writeable = False
    return AxisTriples(out=out, tap=tap, inp=inp, in_length=n, out_length=m, kernel=k)


# --------------------------------------------------------------------------- several axes


def exclusive_cumsum(counts: np.ndarray) -> np.ndarray:
    """``[0, c0, c0+c1, ...]``: where each group of a grouped array starts (and the total).

    >>> exclusive_cumsum(np.array([2, 0, 3])).tolist()
    [0, 2, 2, 5]
    """
    out = np.zeros(counts.size + 1, dtype=_I64)
    np.cumsum(counts, out=out[1:])
    return out


def row_product(counts: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Row-major product of per-axis entry lists that are grouped by row.

    ``counts[j][r]`` is the number of entries of axis ``j`` in its row ``r`` (entries stored
    row by row). Returns the per-row counts of the product (rows in C order over the axes'
    rows), the row of each product entry, and for each axis the index of the axis entry that
    each product entry uses. Entries of one product row come in lexicographic order of their
    axis entries. O(product size).

    >>> cnt, rows, comps = row_product([np.array([1, 2]), np.array([2])])
    >>> cnt.tolist(), rows.tolist(), [c.tolist() for c in comps]
    ([2, 4], [0, 0, 1, 1, 1, 1], [[0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1]])
    """
    cnt = np.asarray(counts[0], dtype=_I64)
    comps = [np.arange(int(cnt.sum()), dtype=_I64)]
    for cb in counts[1:]:
        cb = np.asarray(cb, dtype=_I64)
        ptr_a, ptr_b = exclusive_cumsum(cnt), exclusive_cumsum(cb)
        new = (cnt[:, None] * cb[None, :]).reshape(-1)
        rows = np.repeat(np.arange(new.size, dtype=_I64), new)
        t = np.arange(rows.size, dtype=_I64) - exclusive_cumsum(new)[rows]
        a, b = rows // cb.size, rows % cb.size
        cbb = cb[b]
        ea, eb = ptr_a[a] + t // cbb, ptr_b[b] + t % cbb
        comps = [c[ea] for c in comps] + [eb]
        cnt = new
    rows = np.repeat(np.arange(cnt.size, dtype=_I64), cnt)
    return cnt, rows, comps


def flat_index(parts: Sequence[np.ndarray], sizes: Sequence[int]) -> np.ndarray:
    """C-order flat index of per-axis indices ``parts`` in an array of shape ``sizes``.

    >>> flat_index([np.array([1]), np.array([2])], (3, 4)).tolist()
    [6]
    """
    out = np.zeros_like(np.asarray(parts[0], dtype=_I64))
    for part, size in zip(parts, sizes):
        out = out * size + part
    return out


@dataclass(frozen=True, eq=False)
class GridTriples:
    """The (output, tap, input) triples of an n-D window, as C-order flat indices.

    Sorted by ``out``, then ``tap``; ``out`` indexes ``out_shape``, ``tap`` ``kernel_shape``,
    ``inp`` ``in_shape``.
    """

    out: np.ndarray
    tap: np.ndarray
    inp: np.ndarray
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...]

    def __len__(self) -> int:
        return int(self.out.size)


def grid_triples(axes: Sequence[AxisTriples], *, max_bytes: int | None = None) -> GridTriples:
    """The n-D triples: the Cartesian product of one :class:`AxisTriples` per axis.

    Refused before anything is allocated when the product's arrays are estimated over
    ``max_bytes`` (default :func:`default_max_bytes`).

    >>> g = grid_triples([axis_triples(3, 2), axis_triples(3, 2)])
    >>> g.out_shape, g.out[:4].tolist(), g.tap[:4].tolist(), g.inp[:4].tolist()
    ((2, 2), [0, 0, 0, 0], [0, 1, 2, 3], [0, 1, 3, 4])
    """
    if not axes or not all(isinstance(a, AxisTriples) for a in axes):
        raise ParameterTypeError("axes", "a non-empty sequence of AxisTriples", axes)
    size = math.prod(len(a) for a in axes)
    check_budget(
        112 * size,  # the product's indices and their temporaries, int64
        max_bytes,
        param="max_bytes",
        what="n-D index triples",
        cli=False,
        received=f"{' x '.join(f'{len(a):,}' for a in axes)} = {size:,} triples",
    )
    return _grid_triples(tuple(axes))


@functools.lru_cache(maxsize=64)
def _grid_triples(axes: tuple[AxisTriples, ...]) -> GridTriples:
    counts = [np.bincount(a.out, minlength=a.out_length) for a in axes]
    _, rows, comps = row_product(counts)
    in_shape = tuple(a.in_length for a in axes)
    kernel_shape = tuple(a.kernel for a in axes)
    tap = flat_index([a.tap[c] for a, c in zip(axes, comps)], kernel_shape)
    inp = flat_index([a.inp[c] for a, c in zip(axes, comps)], in_shape)
    for arr in (rows, tap, inp):
        arr.flags.writeable = False
    return GridTriples(
        out=rows,
        tap=tap,
        inp=inp,
        in_shape=in_shape,
        out_shape=tuple(a.out_length for a in axes),
        kernel_shape=kernel_shape,
    )


@dataclass(frozen=True, eq=False)
class ConvEntries:
    """The non-zeros of ``C``: ``C[out, inp] += weight.flatten()[weight_index]``.

    ``out`` indexes vec(y) over (out channel, *output spatial), ``inp`` vec(x) over
    (in channel, *input spatial), ``weight_index`` the weight (C_out, C_in/groups, *kernel),
    all C order. Sorted by output, then input channel, then tap. ``shape`` is ``C``'s
    ``(out, in)``.
    """

    out: np.ndarray
    inp: np.ndarray
    weight_index: np.ndarray
    shape: tuple[int, int]


def conv_entries(
    grid: GridTriples,
    in_channels: int = 1,
    out_channels: int = 1,
    groups: int = 1,
    *,
    max_bytes: int | None = None,
) -> ConvEntries:
    """The triples of ``grid`` repeated over the channels of a (grouped) convolution.

    Output channel ``oc`` reads the ``in_channels/groups`` input channels of its group.
    Refused before anything is allocated when estimated over ``max_bytes`` (default
    :func:`default_max_bytes`).

    >>> e = conv_entries(grid_triples([axis_triples(3, 2)]), in_channels=2, out_channels=2, groups=2)
    >>> e.shape, e.out.tolist(), e.inp.tolist(), e.weight_index.tolist()
    ((4, 6), [0, 0, 1, 1, 2, 2, 3, 3], [0, 1, 1, 2, 3, 4, 4, 5], [0, 1, 0, 1, 2, 3, 2, 3])
    """
    if not isinstance(grid, GridTriples):
        raise ParameterTypeError("grid", "a GridTriples", grid)
    g = check_int(groups, "groups")
    c_in, c_out = check_int(in_channels, "in_channels"), check_int(out_channels, "out_channels")
    if c_in % g or c_out % g:
        raise ParameterError(
            "groups", f"a divisor of in_channels={c_in} and out_channels={c_out}", groups
        )
    total = c_out * (c_in // g) * len(grid)
    check_budget(
        80 * total,  # out, inp, weight index and their temporaries, int64
        max_bytes,
        param="max_bytes",
        what="the entries of C",
        cli=False,
        received=f"{c_in} -> {c_out} channels (groups {g}) x {len(grid):,} triples = {total:,}",
    )
    return _conv_entries(grid, c_in, c_out, g)


@functools.lru_cache(maxsize=64)
def _conv_entries(grid: GridTriples, c_in: int, c_out: int, g: int) -> ConvEntries:
    cin_g, cout_g = c_in // g, c_out // g
    n_out, n_in, n_k = (
        math.prod(grid.out_shape),
        math.prod(grid.in_shape),
        math.prod(grid.kernel_shape),
    )
    # one output channel's block: its rows, each row's entries repeated over the cin_g channels
    ptr = exclusive_cumsum(np.bincount(grid.out, minlength=n_out))
    per_row = np.diff(ptr)
    rows = np.repeat(np.arange(n_out, dtype=_I64), per_row * cin_g)
    t = np.arange(rows.size, dtype=_I64) - exclusive_cumsum(per_row * cin_g)[rows]
    cl, el = t // per_row[rows], t % per_row[rows]
    entry = ptr[rows] + el
    oc = np.repeat(np.arange(c_out, dtype=_I64), rows.size)
    rows_all, cl_all = np.tile(rows, c_out), np.tile(cl, c_out)
    entry_all = np.tile(entry, c_out)
    ci = (oc // cout_g) * cin_g + cl_all
    out = oc * n_out + rows_all
    inp = ci * n_in + grid.inp[entry_all]
    widx = (oc * cin_g + cl_all) * n_k + grid.tap[entry_all]
    for arr in (out, inp, widx):
        arr.flags.writeable = False
    return ConvEntries(out=out, inp=inp, weight_index=widx, shape=(c_out * n_out, c_in * n_in))


# --------------------------------------------------------------------------- size limits

#: The default limit on what one call may allocate: 2 GiB (lowered to half the memory
#: available when that is less; see :func:`default_max_bytes`).
DEFAULT_MAX_BYTES = 2 * 2**30
_FAST = 64 * 2**20  # estimates below this pass a default limit without reading the memory


def _available_memory() -> int | None:
    """Bytes of memory available now (``MemAvailable`` of ``/proc/meminfo``, else sysconf)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def default_max_bytes() -> int:
    """The default ``max_bytes``: 2 GiB, or half the memory available now if that is less.

    >>> 0 < default_max_bytes() <= DEFAULT_MAX_BYTES
    True
    """
    avail = _available_memory()
    return DEFAULT_MAX_BYTES if avail is None else max(1, min(DEFAULT_MAX_BYTES, avail // 2))


def format_bytes(n: int) -> str:
    """A byte count for people: ``'1.5 GiB'``.

    >>> format_bytes(3 * 2**29), format_bytes(512)
    ('1.5 GiB', '512 bytes')
    """
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def check_budget(
    estimate: int,
    limit: Any,
    *,
    param: str,
    what: str,
    received: str,
    unit: str = "bytes",
    cli: bool = True,
) -> int:
    """Refuse, before anything is allocated, what is estimated over the limit.

    ``limit`` is the caller's ``param`` (``max_bytes``, ``max_entries``...), a positive int;
    ``estimate`` is in ``unit`` (``"bytes"`` or a noun such as ``"entries"``); ``what`` and
    ``received`` describe the thing and its sizes. The :class:`ParameterError` names the
    parameter that raises the limit, the limit, the sizes and the estimate. ``limit=None``
    (bytes only) is :func:`default_max_bytes` (not read for estimates under 64 MiB). With
    ``cli`` the hint also names the command-line option (``--max-cells``). Returns the limit.

    >>> check_budget(10, 100, param="max_cells", what="a figure", received="3 x 3 cells", unit="cells")
    100
    >>> check_budget(300, 100, param="max_cells", what="a figure", received="20 x 15 cells", unit="cells")
    Traceback (most recent call last):
    ...
    convlens.errors.ParameterError: max_cells: expected a figure of at most 100 cells, received 20 x 15 cells: 300 cells. Pass a larger max_cells (command line: --max-cells) to allow it
    """
    if limit is None:
        if unit != "bytes":
            raise ParameterError("unit", "'bytes' when limit is None", unit)
        if estimate <= _FAST:
            return _FAST
        limit = default_max_bytes()
    lim = check_int(limit, param)
    if estimate <= lim:
        return lim
    show = format_bytes if unit == "bytes" else (lambda v: f"{v:,} {unit}")
    amount = f"about {show(estimate)}" if unit == "bytes" else show(estimate)
    option = f" (command line: --{param.replace('_', '-')})" if cli else ""
    raise ParameterError(
        param,
        f"{what} of at most {show(lim)}",
        verbatim(f"{received}: {amount}"),
        hint=f"Pass a larger {param}{option} to allow it",
    )


def clear_caches() -> None:
    """Forget every cached triple (for cold-start benchmarks; the caches are small).

    >>> clear_caches()
    """
    _axis_triples.cache_clear()
    _grid_triples.cache_clear()
    _conv_entries.cache_clear()
