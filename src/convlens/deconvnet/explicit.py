"""The explicit reversed network of Zeiler & Fergus (arXiv:1311.2901, §2.1), layer by layer.

A deconvnet runs a chain of layers forwards, recording what each layer needs to be reversed
(the max-pool *switches*, the sign of each ReLU input, the input size), then passes a signal
back down: unpool through the switches, apply the ReLU rule, filter with the transposed
filters (``conv_transpose`` with the forward conv's own weights, no bias). Springenberg et al.
(arXiv:1412.6806) show that deconvnet, plain backprop and guided backprop differ only in the
rule at each ReLU; :func:`relu_backward` has all three.

Every layer has a pure forward, :func:`layer_forward` ``(module, x) -> (y, state)``, and a pure
backward, :func:`layer_backward` ``(module, signal, state, rule) -> signal``. Both work on
batches. One forward pass serves T targets per input: a signal of N*T rows (sample-major) runs
against the states of the N inputs, which are broadcast, never copied T times. The reversed
pass uses the kernels autograd uses for the gradient (``convolution_backward`` for the
transposed filtering), and unpools a max pool whose windows never overlap with a switch mask
(one broadcast product) instead of a scatter.

>>> import torch, torch.nn as nn
>>> chain = chain_of(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2)))
>>> x = torch.randn(1, 1, 8, 8)
>>> outputs, states = forward_chain(chain, x, upto=2)
>>> backward_chain(chain, outputs[2], states, start=2, rule="deconvnet").shape
torch.Size([1, 1, 8, 8])
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from convlens.arithmetic import LayerSpec
from convlens.choices import RULES
from convlens.errors import ParameterError, ParameterTypeError, UnsupportedModuleError

__all__ = [
    "RULES",
    "SUPPORTED",
    "ConvState",
    "Forward",
    "PoolState",
    "ReluState",
    "Scratch",
    "avg_unpool",
    "backward_bytes",
    "backward_chain",
    "chain_of",
    "check_chain",
    "check_rule",
    "conv_backward",
    "expand_state",
    "forward_chain",
    "forward_states",
    "layer_backward",
    "layer_forward",
    "max_unpool",
    "prepare_states",
    "relu_backward",
    "slice_state",
    "switch_unpool",
    "with_switch_grid",
]


_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_MAX = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
_AVG = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_PASS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Identity)
_ALL = (*_CONV, nn.ReLU, *_MAX, *_AVG, *_BN, *_PASS)
#: Module types the explicit engine can reverse.
SUPPORTED = tuple(t.__name__ for t in _ALL)

_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_MAXPOOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVGPOOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


# ---------------------------------------------------------------------------- states
@dataclass(frozen=True)
class ConvState:
    """What a conv or average pool needs on the way back: the spatial size of its input."""

    input_size: tuple[int, ...]


@dataclass(frozen=True)
class ReluState:
    """The sign of a ReLU's input: ``positive`` is ``input > 0`` (bool, same shape)."""

    positive: Tensor


@dataclass(frozen=True)
class PoolState:
    """Max-pool switches: ``indices`` (N, C, *out) flat into the input map of ``input_size``;
    where the pool's windows never overlap, also ``switches``: the same switches as the block
    grid (N, C, *(out*stride)) that :func:`switch_unpool` reads (bool, or a 0/1 mask of the
    signal's dtype, see :func:`prepare_states`)."""

    indices: Tensor
    input_size: tuple[int, ...]
    switches: Tensor | None = None


State = Any  # ConvState | ReluState | PoolState | None


def expand_state(state: State, times: int) -> State:
    """``state`` with every batch row repeated ``times`` times (row ``n`` -> rows ``n*times..``).

    >>> expand_state(ReluState(torch.tensor([[True], [False]])), 2).positive.flatten().tolist()
    [True, True, False, False]
    """
    if times == 1 or state is None or isinstance(state, ConvState):
        return state
    if isinstance(state, ReluState):
        return ReluState(state.positive.repeat_interleave(times, 0))
    if isinstance(state, PoolState):
        sw = state.switches
        return PoolState(
            state.indices.repeat_interleave(times, 0),
            state.input_size,
            None if sw is None else sw.repeat_interleave(times, 0),
        )
    raise ParameterTypeError("state", "a ConvState, ReluState, PoolState or None", state)


def slice_state(state: State, rows: slice) -> State:
    """``state`` for the batch rows ``rows`` only (views, no copies).

    >>> slice_state(ReluState(torch.tensor([[True], [False]])), slice(1, 2)).positive.tolist()
    [[False]]
    """
    if state is None or isinstance(state, ConvState):
        return state
    if isinstance(state, ReluState):
        return ReluState(state.positive[rows])
    if isinstance(state, PoolState):
        sw = state.switches
        return PoolState(state.indices[rows], state.input_size, None if sw is None else sw[rows])
    raise ParameterTypeError("state", "a ConvState, ReluState, PoolState or None", state)


def check_rule(rule: Any) -> str:
    """``rule`` if it is one of :data:`RULES`, else :class:`ParameterError`."""
    if rule not in RULES:
        raise ParameterError("rule", f"one of {', '.join(RULES)}", rule)
    return str(rule)


# ---------------------------------------------------------------------------- per-op pieces
def relu_backward(signal: Tensor, positive: Tensor, rule: str, inplace: bool = False) -> Tensor:
    """The signal below a ReLU under ``rule`` (Springenberg et al., arXiv:1412.6806).

    ``deconvnet``: ``relu(signal)`` (Zeiler & Fergus: rectify the reconstruction);
    ``guided``: ``relu(signal) * (input > 0)``; ``gradient``: ``signal * (input > 0)``.
    ``positive`` broadcasts against ``signal``; ``inplace`` overwrites ``signal``.

    >>> s, pos = torch.tensor([-1.0, 2.0, 3.0]), torch.tensor([True, True, False])
    >>> [relu_backward(s, pos, r).tolist() for r in RULES]
    [[0.0, 2.0, 3.0], [0.0, 2.0, 0.0], [-1.0, 2.0, 0.0]]
    """
    if rule not in RULES:
        raise ParameterError("rule", f"one of {', '.join(RULES)}", rule)
    if rule in ("deconvnet", "guided"):
        signal = F.relu_(signal) if inplace else F.relu(signal)
        inplace = True  # a fresh tensor from here on
    if rule == "deconvnet":
        return signal
    return signal.mul_(positive) if inplace else signal * positive


def _ints(value: Any, n: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value),) * n


def _padding_pairs(conv: Any, n: int) -> list[tuple[int, int]]:
    if conv.padding == "valid":
        return [(0, 0)] * n
    if isinstance(conv.padding, str):  # 'same': the split LayerSpec defines
        return list(LayerSpec.from_module(conv).padding_pairs())
    return [(p, p) for p in _ints(conv.padding, n)]


class Scratch:
    """One reusable zero buffer per dtype and device, for the input that
    ``aten.convolution_backward`` reads only for its shape (the input gradient does not depend
    on it): a contiguous tensor it does not copy first, as it does an expanded one (measured
    about 12 % of VGG16's full-size reversed pass). Held by the caller for many reversed passes;
    it grows to the largest conv input of a batch.

    >>> scratch = Scratch()
    >>> scratch.view((2, 3), torch.ones(1)).shape, scratch.view((1, 2), torch.ones(1)).sum()
    (torch.Size([2, 3]), tensor(0.))
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[torch.dtype, torch.device], Tensor] = {}

    def view(self, shape: Sequence[int], like: Tensor) -> Tensor:
        """A zero tensor of ``shape`` with ``like``'s dtype and device, from the buffer."""
        key = (like.dtype, like.device)
        size = math.prod(int(v) for v in shape)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < size:
            buffer = like.new_zeros(size)
            self._buffers[key] = buffer
        return buffer[:size].view(*shape)


def conv_backward(
    signal: Tensor, conv: Any, input_size: Sequence[int], scratch: Scratch | None = None
) -> Tensor:
    """The transposed convolution with ``conv``'s own weights and no bias, back to ``input_size``.

    This is the adjoint (transpose) of the convolution: the input gradient autograd computes,
    by the same kernel (``aten.convolution_backward``), zero where the forward conv never
    reached (the floor in its output size). For an asymmetric padding (``padding='same'`` with
    an even effective kernel) the full ``conv_transpose`` (no padding), which spans the padded
    input from ``-pad_before``, is cut to the real input. ``scratch`` (:class:`Scratch`) gives
    the kernel a real tensor for the input it reads for its shape.

    >>> conv = nn.Conv1d(1, 1, 3, stride=2, bias=False)
    >>> conv_backward(torch.ones(1, 1, 3), conv, (8,)).shape
    torch.Size([1, 1, 8])
    """
    n = signal.dim() - 2
    weight = conv.weight
    stride, dilation = _ints(conv.stride, n), _ints(conv.dilation, n)
    pairs = _padding_pairs(conv, n)
    if all(lo == hi for lo, hi in pairs):
        shape = (signal.shape[0], weight.shape[1] * conv.groups, *input_size)
        # only its shape matters (the values are not used for the input gradient)
        dummy = (
            signal.new_empty(1).expand(shape) if scratch is None else scratch.view(shape, signal)
        )
        return torch.ops.aten.convolution_backward(
            signal,
            dummy,
            weight,
            None,
            list(stride),
            [lo for lo, _ in pairs],
            list(dilation),
            False,
            [0] * n,
            conv.groups,
            (True, False, False),
        )[0]
    out = _CONV_T[n](signal, weight, None, stride, 0, 0, conv.groups, dilation)
    fix: list[int] = []
    for size, got, (lo, _) in zip(*(reversed(list(v)) for v in (input_size, out.shape[2:], pairs))):
        fix += [-lo, int(size) + lo - int(got)]
    return F.pad(out, fix) if any(fix) else out


def _windows_per_sample(
    kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]
) -> tuple[int, ...]:
    """Per dimension, how many consecutive windows can share an input sample."""
    return tuple(math.ceil((d * (k - 1) + 1) / s) for k, s, d in zip(kernel, stride, dilation))


def max_unpool(
    signal: Tensor, indices: Tensor, input_size: Sequence[int], phases: Sequence[int]
) -> Tensor:
    """Place each pooled value back at its switch (the argmax in the input), *adding* repeats.

    ``indices`` (N, C, *out) are flat indices into the input map, as
    ``max_pool(..., return_indices=True)`` gives them; ``signal`` has N or N*T rows
    (sample-major: the indices of input ``n`` serve rows ``n*T..n*T+T-1``). Where windows
    overlap (AlexNet's 3/2), one input sample can be the switch of several windows; its values
    add up. The windows are split into ``prod(phases)`` classes by output index modulo
    ``phases`` (from :func:`_windows_per_sample`); windows of one class never overlap, so each
    class is a collision-free scatter-add and the classes add in a fixed order: deterministic
    on every device, unlike ``F.max_unpool`` (which keeps one of the repeats) or an atomic
    scatter-add with collisions.

    >>> s = torch.tensor([[[1.0, 2.0]]]); idx = torch.tensor([[[1, 1]]])
    >>> max_unpool(s, idx, (3,), (2,)).tolist()
    [[[0.0, 3.0, 0.0]]]
    """
    rows, c = signal.shape[:2]
    times = _times(rows, indices.shape[0], "indices")
    length = math.prod(int(v) for v in input_size)
    out = signal.new_zeros((rows, c, length))
    for phase in _phase_slices(tuple(signal.shape[2:]), tuple(phases)):
        src = signal[phase].reshape(rows, c, -1)
        idx = indices[phase]
        if times > 1:
            idx = idx.unsqueeze(1).expand(idx.shape[0], times, *idx.shape[1:])
        out.scatter_add_(2, idx.reshape(rows, c, -1), src)
    return out.reshape(rows, c, *input_size)


def switch_unpool(
    signal: Tensor, grid: Tensor, input_size: Sequence[int], padding: Sequence[int]
) -> Tensor:
    """Unpooling for a max pool whose windows never overlap (``dilation*(kernel-1) < stride``).

    ``grid`` (N, C, *(out*stride)), bool or 0/1, is the pool's padded input cut into one block of
    ``stride`` samples per window (window ``o`` covers ``o*stride .. o*stride + stride - 1``,
    its taps and the gap after them), True at each window's switch; ``padding`` is the pool's
    padding before the data. Each block takes its window's value where the switch is: one
    broadcast product (the grid broadcast over the T rows of an input, ``signal`` having N or
    N*T rows, sample-major), then the block layout is cut back to ``input_size``. Equal to
    :func:`max_unpool` (no repeats can occur), without a scatter or an index per row.

    >>> s = torch.tensor([[[1.0, 2.0]]]); grid = torch.tensor([[[False, True, True, False]]])
    >>> switch_unpool(s, grid, (5,), (0,)).tolist()
    [[[0.0, 1.0, 2.0, 0.0, 0.0]]]
    """
    rows, c = signal.shape[:2]
    out = tuple(signal.shape[2:])
    n = grid.shape[0]
    times = _times(rows, n, "switch grid")
    blocks = tuple(g // o for g, o in zip(grid.shape[2:], out))
    sig = signal.reshape(n, times, c, *(v for o in out for v in (o, 1)))
    mask = grid.view(n, 1, c, *(v for o, b in zip(out, blocks) for v in (o, b)))
    up = (sig * mask).view(rows, c, *grid.shape[2:])
    fix: list[int] = []
    for size, got, lo in zip(*(reversed(list(v)) for v in (input_size, grid.shape[2:], padding))):
        fix += [-int(lo), int(size) + int(lo) - int(got)]
    return F.pad(up, fix) if any(fix) else up


def _switch_grid(
    indices: Tensor, input_size: Sequence[int], stride: Sequence[int], padding: Sequence[int]
) -> Tensor:
    """The bool block grid of :func:`switch_unpool` from max-pool ``indices`` (N, C, *out)."""
    out = tuple(indices.shape[2:])
    grid_size = tuple(o * s for o, s in zip(out, stride))
    cell = indices.flatten(2)
    if grid_size != tuple(int(v) for v in input_size) or any(padding):
        # the grid is not the input map itself (as it is for VGG's 2x2 pools on even sizes)
        rest, cell = cell, torch.zeros_like(cell)
        for d in range(len(out) - 1, -1, -1):
            coord = rest % int(input_size[d]) + int(padding[d])
            rest = rest // int(input_size[d])
            cell += coord * math.prod(grid_size[d + 1 :])
    grid = torch.zeros(
        (*indices.shape[:2], math.prod(grid_size)), dtype=torch.bool, device=indices.device
    )
    grid.scatter_(2, cell, True)
    return grid.view(*indices.shape[:2], *grid_size)


def with_switch_grid(module: nn.Module, state: State) -> State:
    """``state`` with the switch grid of :func:`switch_unpool` added, for a max pool whose
    windows never overlap (other states as they are). Computed once per forward pass, it
    serves every batch of targets of the reversed pass.

    >>> pool = nn.MaxPool1d(2)
    >>> _, st = layer_forward(pool, torch.tensor([[[1.0, 3.0, 2.0, 0.0]]]))
    >>> with_switch_grid(pool, st).switches.tolist()
    [[[False, True, True, False]]]
    """
    if not isinstance(state, PoolState) or state.switches is not None:
        return state
    if not isinstance(module, _MAX):
        raise ParameterTypeError("module", "the max pool that recorded this PoolState", module)
    k, s, p, d = _pool_geometry(module, len(state.input_size))
    if any(w > 1 for w in _windows_per_sample(k, s, d)):
        return state
    grid = _switch_grid(state.indices, state.input_size, s, p)
    return PoolState(state.indices, state.input_size, grid)


def prepare_states(
    chain: Sequence[tuple[str, nn.Module]], states: Sequence[State], dtype: torch.dtype, rule: str
) -> list[State]:
    """The states of a forward pass made ready for many reversed passes: the switch grids of
    the max pools whose windows never overlap (:func:`with_switch_grid`), and the ReLU signs
    and switch grids as masks of the signal's ``dtype`` (a product with a bool mask converts it
    on every call). The ReLU signs are dropped under the deconvnet rule, which ignores them.

    >>> net = nn.Sequential(nn.ReLU(), nn.MaxPool1d(2))
    >>> _, states = forward_chain(chain_of(net), torch.tensor([[[1.0, -3.0]]]), 1)
    >>> [type(s).__name__ for s in prepare_states(chain_of(net), states, torch.float32, "guided")]
    ['ReluState', 'PoolState']
    """
    out: list[State] = []
    for (_, module), state in zip(chain, states):
        state = with_switch_grid(module, state)
        if isinstance(state, ReluState):
            keep = rule != "deconvnet"
            state = ReluState(state.positive.to(dtype) if keep else state.positive[:0])
        elif isinstance(state, PoolState) and state.switches is not None:
            state = PoolState(state.indices, state.input_size, state.switches.to(dtype))
        out.append(state)
    return out


def _times(rows: int, state_rows: int, name: str) -> int:
    """How many signal rows each state row serves (signal rows are sample-major)."""
    if state_rows == rows:
        return 1
    if state_rows == 0 or rows % state_rows:
        raise ParameterError(
            "signal", f"a multiple of the {state_rows} rows of the state's {name}", rows
        )
    return rows // state_rows


def _pool_geometry(pool: Any, n: int) -> tuple[tuple[int, ...], ...]:
    k = _ints(pool.kernel_size, n)
    s = _ints(pool.stride if pool.stride is not None else pool.kernel_size, n)
    return k, s, _ints(pool.padding, n), _ints(pool.dilation, n)


@functools.lru_cache(maxsize=512)
def _phase_slices(
    out_size: tuple[int, ...], phases: tuple[int, ...]
) -> tuple[tuple[slice, ...], ...]:
    """Index tuples selecting each class of mutually disjoint pooling windows (cached)."""
    combos: list[tuple[int, ...]] = [()]
    for p, o in zip(phases, out_size):
        combos = [(*c, r) for c in combos for r in range(min(p, o))]
    return tuple(
        (slice(None), slice(None), *(slice(r, None, p) for r, p in zip(combo, phases)))
        for combo in combos
    )


def avg_unpool(signal: Tensor, pool: nn.Module, input_size: Sequence[int]) -> Tensor:
    """The adjoint (transpose) of average pooling ``pool``, back to ``input_size``.

    Average pooling is linear, so its transpose is its vector-Jacobian product, computed
    here by autograd on a zero input; this honours ``count_include_pad``, ``ceil_mode`` and
    ``divisor_override`` exactly as PyTorch's forward defines them.

    >>> avg_unpool(torch.ones(1, 1, 2), nn.AvgPool1d(2), (4,)).tolist()
    [[[0.5, 0.5, 0.5, 0.5]]]
    """
    n = signal.dim() - 2
    probe = signal.new_zeros((*signal.shape[:2], *input_size)).requires_grad_(True)
    with torch.enable_grad():
        pooled = _avg_pool(pool, probe, n)
        (grad,) = torch.autograd.grad(pooled, probe, signal)
    return grad


def _avg_pool(pool: Any, x: Tensor, n: int) -> Tensor:
    kwargs: dict[str, Any] = {
        "kernel_size": pool.kernel_size,
        "stride": pool.stride,
        "padding": pool.padding,
        "ceil_mode": pool.ceil_mode,
        "count_include_pad": pool.count_include_pad,
    }
    if n > 1:
        kwargs["divisor_override"] = pool.divisor_override
    return _AVGPOOL[n](x, **kwargs)


def _bn_scale(bn: Any, like: Tensor) -> Tensor:
    scale = torch.rsqrt(bn.running_var.to(like) + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.to(like)
    return scale.reshape(1, -1, *([1] * (like.dim() - 2)))


# ---------------------------------------------------------------------------- one layer
def _check_module(module: nn.Module, path: str) -> None:
    if not isinstance(module, _ALL):
        raise UnsupportedModuleError(
            path, type(module).__name__, list(SUPPORTED), "the explicit deconvnet"
        )
    if isinstance(module, _CONV) and module.padding_mode != "zeros":
        raise UnsupportedModuleError(
            path,
            f"{type(module).__name__} with padding_mode={module.padding_mode!r}",
            [f"{t} with padding_mode='zeros'" for t in ("Conv1d", "Conv2d", "Conv3d")],
            "the explicit deconvnet",
        )
    if isinstance(module, _BN) and module.running_var is None:
        raise UnsupportedModuleError(
            path,
            f"{type(module).__name__} without running statistics",
            ["BatchNorm with track_running_stats=True (eval mode)"],
            "the explicit deconvnet",
        )


def layer_forward(module: nn.Module, x: Tensor, path: str = "module") -> tuple[Tensor, State]:
    """Run one layer forwards in eval mode; return its output and what its backward needs.

    Conv and average pool record their input size (:class:`ConvState`), ReLU the sign of its
    input (:class:`ReluState`), max pool its switches (:class:`PoolState`); BatchNorm (with
    its running statistics), Dropout and Identity record nothing. Inplace modules do not
    modify ``x``. Other modules raise :class:`~convlens.errors.UnsupportedModuleError`.

    >>> y, state = layer_forward(nn.MaxPool1d(2), torch.tensor([[[1.0, 3.0, 2.0, 0.0]]]))
    >>> y.tolist(), state.indices.tolist()
    ([[[3.0, 2.0]]], [[[1, 2]]])
    """
    _check_module(module, path)
    m: Any = module
    n = x.dim() - 2
    if isinstance(module, _CONV):
        return module(x), ConvState(tuple(x.shape[2:]))
    if isinstance(module, nn.ReLU):
        return F.relu(x), ReluState(x > 0)
    if isinstance(module, _MAX):
        y, idx = _MAXPOOL[n](
            x,
            m.kernel_size,
            m.stride,
            m.padding,
            m.dilation,
            ceil_mode=m.ceil_mode,
            return_indices=True,
        )
        return y, PoolState(idx, tuple(x.shape[2:]))
    if isinstance(module, _AVG):
        return _avg_pool(m, x, n), ConvState(tuple(x.shape[2:]))
    if isinstance(module, _BN):
        y = F.batch_norm(
            x, m.running_mean, m.running_var, m.weight, m.bias, training=False, eps=m.eps
        )
        return y, None
    return x, None  # Dropout (eval) and Identity


def layer_backward(
    module: nn.Module,
    signal: Tensor,
    state: State,
    rule: str,
    path: str = "module",
    inplace: bool = False,
    scratch: Scratch | None = None,
) -> Tensor:
    """Pass ``signal`` (at ``module``'s output) down to its input, given the forward ``state``.

    Conv: transposed conv with the same weights, no bias (:func:`conv_backward`). ReLU: the
    rule (:func:`relu_backward`). Max pool: unpool through the switches, adding repeats
    (:func:`max_unpool`). Average pool: its transpose (:func:`avg_unpool`). BatchNorm (eval):
    its linear part, ``signal * weight / sqrt(running_var + eps)``. Dropout, Identity: as is.
    ``state`` has the batch rows of the forward pass, N; ``signal`` N or N*T rows
    (sample-major: rows ``n*T..n*T+T-1`` belong to input ``n``), the state broadcast over them.
    ``inplace``: the ReLU rules may overwrite ``signal`` (the reversed pass owns it).
    ``scratch``: for the transposed convs (:func:`conv_backward`).

    >>> conv = nn.Conv2d(1, 1, 3, padding=1)
    >>> y, st = layer_forward(conv, torch.randn(2, 1, 5, 5))
    >>> layer_backward(conv, torch.ones_like(y), st, "deconvnet").shape
    torch.Size([2, 1, 5, 5])
    """
    _check_module(module, path)
    m: Any = module
    if isinstance(module, _CONV):
        return conv_backward(signal, module, state.input_size, scratch)
    if isinstance(module, nn.ReLU):
        if rule == "deconvnet":  # the deconvnet rule ignores the forward signs
            return relu_backward(signal, state.positive, rule, inplace)
        positive = state.positive
        times = _times(signal.shape[0], positive.shape[0], "ReLU signs")
        if times == 1:
            return relu_backward(signal, positive, rule, inplace)
        grouped = signal.view(positive.shape[0], times, *signal.shape[1:])
        return relu_backward(grouped, positive.unsqueeze(1), rule, inplace).view(signal.shape)
    if isinstance(module, _MAX):
        n = signal.dim() - 2
        k, s, p, d = _pool_geometry(m, n)
        # with one row per forward row, max_unpool's scatter (one class of windows where they
        # never overlap) measured 2.5x faster on a CPU than the switch grid's product; the grid
        # broadcasts over T rows per input where a batch holds several targets per image
        one_row = signal.device.type == "cpu" and state.indices.shape == signal.shape
        if state.switches is not None and not one_row:
            return switch_unpool(signal, state.switches, state.input_size, p)
        return max_unpool(signal, state.indices, state.input_size, _windows_per_sample(k, s, d))
    if isinstance(module, _AVG):
        return avg_unpool(signal, m, state.input_size)
    if isinstance(module, _BN):
        return signal * _bn_scale(m, signal)
    return signal


# ---------------------------------------------------------------------------- chains
def chain_of(model: Any) -> list[tuple[str, nn.Module]]:
    """The layers of a chain model as ``(path, module)`` in forward order.

    ``model`` is an ``nn.Sequential`` (nested ones are flattened), a model whose ``features``
    attribute is an ``nn.Sequential`` that its forward runs first (torchvision AlexNet, VGG:
    paths ``"features.N"``), or a list of modules (paths ``"0"``, ``"1"``...). Paths are those
    of ``model.named_modules()``.

    >>> [p for p, _ in chain_of(nn.Sequential(nn.Conv1d(1, 1, 1), nn.Sequential(nn.ReLU())))]
    ['0', '1.0']
    """
    if isinstance(model, nn.Sequential):
        return _flatten(model, "")
    if isinstance(model, nn.Module):
        features = getattr(model, "features", None)
        if isinstance(features, nn.Sequential):
            return _flatten(features, "features.")
        raise ParameterError(
            "model",
            "an nn.Sequential, a model with an nn.Sequential 'features', or a list of modules "
            "for the explicit engine",
            type(model).__name__,
            hint="use engine='rules' for other models",
        )
    if isinstance(model, (list, tuple)) and all(isinstance(m, nn.Module) for m in model):
        return _flatten(nn.Sequential(*model), "")
    raise ParameterTypeError("model", "an nn.Module or a list of modules", model)


def _flatten(seq: nn.Sequential, prefix: str) -> list[tuple[str, nn.Module]]:
    out: list[tuple[str, nn.Module]] = []
    # every entry, as the Sequential's forward runs them: named_children() would skip a
    # module placed twice (one ReLU object reused), and the chain would lose a layer
    for name, child in seq._modules.items():
        if child is None:
            continue
        if isinstance(child, nn.Sequential):
            out += _flatten(child, f"{prefix}{name}.")
        else:
            out.append((f"{prefix}{name}", child))
    return out


def check_chain(chain: Sequence[tuple[str, nn.Module]], upto: int) -> None:
    """Raise :class:`~convlens.errors.UnsupportedModuleError` for the first layer in
    ``chain[: upto + 1]`` the explicit engine cannot reverse."""
    for path, module in chain[: upto + 1]:
        _check_module(module, path)


@dataclass(frozen=True)
class Forward:
    """One forward pass of a chain: the ``outputs`` kept (layer index -> output), every
    layer's ``states``, and per layer the per-sample element counts ``sizes[i] = (input,
    output)`` that the reversed pass's memory estimate (:func:`backward_bytes`) reads."""

    outputs: dict[int, Tensor]
    states: list[State]
    sizes: list[tuple[int, int]]


def forward_states(
    chain: Sequence[tuple[str, nn.Module]], x: Tensor, upto: int, keep: Sequence[int] = ()
) -> Forward:
    """Run ``chain[: upto + 1]`` on ``x``, keeping the outputs of the layers ``keep`` only.

    >>> fwd = forward_states(chain_of(nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU())), torch.ones(1, 1, 5), 1, [1])
    >>> list(fwd.outputs), fwd.sizes
    ([1], [(5, 6), (6, 6)])
    """
    check_chain(chain, upto)
    wanted = set(keep)
    outputs: dict[int, Tensor] = {}
    states: list[State] = []
    sizes: list[tuple[int, int]] = []
    with torch.no_grad():
        for i, (path, module) in enumerate(chain[: upto + 1]):
            before = x[0].numel() if x.shape[0] else 0
            x, state = layer_forward(module, x, path)
            sizes.append((before, x[0].numel() if x.shape[0] else 0))
            if i in wanted:
                outputs[i] = x
            states.append(state)
    return Forward(outputs, states, sizes)


def forward_chain(
    chain: Sequence[tuple[str, nn.Module]], x: Tensor, upto: int
) -> tuple[list[Tensor], list[State]]:
    """Run ``chain[: upto + 1]`` on ``x``; return every layer's output and forward state."""
    fwd = forward_states(chain, x, upto, range(upto + 1))
    return [fwd.outputs[i] for i in range(upto + 1)], fwd.states


def backward_bytes(
    chain: Sequence[tuple[str, nn.Module]], forward: Forward, start: int, itemsize: int
) -> int:
    """About the working memory of one signal row of :func:`backward_chain` from layer
    ``start``: per layer its input and output signal (twice, for temporaries), plus the
    per-row switch indices of a max pool whose windows overlap, plus the largest conv input
    (the :class:`Scratch`).

    >>> fwd = forward_states(chain_of(nn.Sequential(nn.Conv1d(1, 2, 3))), torch.ones(1, 1, 5), 0)
    >>> backward_bytes(chain_of(nn.Sequential(nn.Conv1d(1, 2, 3))), fwd, 0, 4)
    108
    """
    worst = 0
    scratch = 0
    for i in range(start + 1):
        n_in, n_out = forward.sizes[i]
        need = 2 * itemsize * (n_in + n_out)
        module: Any = chain[i][1]
        if isinstance(module, _MAX):
            k, s, _, d = _pool_geometry(module, len(forward.states[i].input_size))
            if any(w > 1 for w in _windows_per_sample(k, s, d)):
                need += 8 * n_out  # the switch indices, per row
        if isinstance(chain[i][1], _AVG):
            need += itemsize * n_in  # the probe of avg_unpool
        if isinstance(module, _CONV):
            scratch = max(scratch, itemsize * n_in)
        worst = max(worst, need)
    return worst + scratch


def backward_chain(
    chain: Sequence[tuple[str, nn.Module]],
    signal: Tensor,
    states: Sequence[State],
    start: int,
    rule: str,
    scratch: Scratch | None = None,
) -> Tensor:
    """Pass ``signal`` (at the output of ``chain[start]``) down to the chain's input.

    ``states`` come from :func:`forward_chain` (or :func:`forward_states`); ``signal`` may
    have ``T`` rows per input sample (sample-major), the states are broadcast over them. Max
    pools whose windows never overlap unpool by their switch grid (:func:`with_switch_grid`;
    pass states that have it to compute it once for many calls); pass one :class:`Scratch` to
    many calls too.
    """
    check_rule(rule)
    owned = False  # the caller's signal is read, never written; the pass owns what it makes
    with torch.no_grad():
        for i in range(start, -1, -1):
            path, module = chain[i]
            state = with_switch_grid(module, states[i])
            out = layer_backward(module, signal, state, rule, path, inplace=owned, scratch=scratch)
            owned = owned or out is not signal
            signal = out
    return signal
