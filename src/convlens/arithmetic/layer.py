"""One layer's geometry: convolution, transposed convolution, max and average pooling.

:class:`LayerSpec` is a frozen value type. It holds what decides the spatial arithmetic of a
layer in 1, 2 or 3 dimensions and computes output sizes exactly as PyTorch does (``ceil_mode``
and the asymmetric ``padding='same'`` split included). See Dumoulin & Visin, *A guide to
convolution arithmetic for deep learning*, arXiv:1603.07285.

>>> spec = LayerSpec.conv(3, stride=2, padding=1)
>>> spec.output_size((5, 5))
(3, 3)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from convlens._utils import as_tuple, check_int, check_positive, infer_ndim
from convlens.arithmetic._modules import module_geometry
from convlens.errors import ParameterError
from convlens.index import PADDING_MODES

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = [
    "PADDING_MODES",
    "LayerKind",
    "LayerSpec",
    "conv_output_length",
    "conv_transpose_output_length",
    "infer_ndim",
    "pool_output_length",
    "spec_from_module",
]

LayerKind = Literal["conv", "conv_transpose", "max_pool", "avg_pool"]
_KINDS = ("conv", "conv_transpose", "max_pool", "avg_pool")
# the order in which output_size reports refusals (equal ranks: the first dimension)
_RANK = {"transpose": 0, "reflect": 1, "circular": 1, "avg3d": 2, "kernel": 3, "input": 3}
_NAMES = {
    "conv": "a convolution",
    "conv_transpose": "a transposed convolution",
    "max_pool": "max pooling",
    "avg_pool": "average pooling",
}


def conv_output_length(
    i: int, k: int, s: int = 1, p_lo: int = 0, p_hi: int | None = None, d: int = 1
) -> int:
    """Output length of a convolution along one dimension (floor division, as PyTorch).

    >>> conv_output_length(5, 3, s=2, p_lo=1)
    3
    """
    p_hi = p_lo if p_hi is None else p_hi
    return (i + p_lo + p_hi - d * (k - 1) - 1) // s + 1


def conv_transpose_output_length(
    i: int, k: int, s: int = 1, p: int = 0, d: int = 1, output_padding: int = 0
) -> int:
    """Output length of a transposed convolution along one dimension (may be < 1, as PyTorch's
    formula): ``(i - 1)*s - 2p + d*(k-1) + output_padding + 1``.

    >>> conv_transpose_output_length(6, 3, s=2, p=1, output_padding=1)
    12
    """
    return (i - 1) * s - 2 * p + d * (k - 1) + output_padding + 1


def pool_output_length(i: int, k: int, s: int, p: int, d: int = 1, ceil_mode: bool = False) -> int:
    """Output length of max/avg pooling along one dimension, ``ceil_mode`` as PyTorch has it.

    With ``ceil_mode`` the last window may start past the input, unless it would start in the
    right padding only, in which case it is dropped.

    >>> pool_output_length(6, 3, 2, 0, ceil_mode=False), pool_output_length(6, 3, 2, 0, ceil_mode=True)
    (2, 3)
    """
    num = i + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)
    out = num // s + 1
    if ceil_mode and (out - 1) * s >= i + p:
        out -= 1
    return out


def spec_from_module(module: nn.Module, path: str = "module") -> LayerSpec:
    """The geometry of a conv, transposed-conv or pooling module (``path`` names it in errors).

    >>> import torch.nn as nn
    >>> spec_from_module(nn.Conv2d(3, 8, 5, stride=2)).output_size(32)
    (14, 14)
    """
    kind, ndim, kwargs = module_geometry(module, path)
    k = kwargs.pop("kernel_size")
    s, p, d, op = (kwargs.pop(n) for n in ("stride", "padding", "dilation", "output_padding"))
    return LayerSpec._make(kind, k, s, p, d, op, ndim, **kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class LayerSpec:
    """Geometry of one convolution, transposed convolution or pooling layer.

    Build it with :meth:`conv`, :meth:`conv_transpose`, :meth:`max_pool`, :meth:`avg_pool`
    or :meth:`from_module`. Every per-dimension field is a tuple of ``ndim`` ints; ``padding``
    may also be the string ``'same'`` or ``'valid'`` (convolutions only).

    >>> import torch.nn as nn
    >>> LayerSpec.from_module(nn.MaxPool2d(3, 2, ceil_mode=True)).output_size((6, 6))
    (3, 3)
    """

    kind: LayerKind
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...] | Literal["same", "valid"]
    dilation: tuple[int, ...]
    output_padding: tuple[int, ...]
    groups: int = 1
    ceil_mode: bool = False
    padding_mode: str = "zeros"
    in_channels: int | None = None
    out_channels: int | None = None
    count_include_pad: bool = True

    # ------------------------------------------------------------------ construction
    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ParameterError("kind", f"one of {', '.join(_KINDS)}", self.kind)
        n = len(self.kernel_size)
        if n not in (1, 2, 3):
            raise ParameterError("kernel_size", "1, 2 or 3 spatial dimensions", self.kernel_size)
        for name in ("stride", "dilation", "output_padding"):
            if len(getattr(self, name)) != n:
                raise ParameterError(name, f"{n} values (one per dimension)", getattr(self, name))
        check_positive(self.kernel_size, "kernel_size")
        check_positive(self.stride, "stride")
        check_positive(self.dilation, "dilation")
        check_positive(self.output_padding, "output_padding", allow_zero=True)
        if isinstance(self.padding, str):
            if self.padding not in ("same", "valid"):
                raise ParameterError(
                    "padding", "an int, a tuple of ints, 'same' or 'valid'", self.padding
                )
            if self.kind != "conv":
                raise ParameterError(
                    "padding",
                    f"ints for {_NAMES[self.kind]} (strings are for conv only)",
                    self.padding,
                )
            if self.padding == "same" and any(s != 1 for s in self.stride):
                raise ParameterError(
                    "stride",
                    "1 in every dimension with padding='same' "
                    "(PyTorch does not support 'same' for strided convolutions)",
                    self.stride if n > 1 else self.stride[0],
                )
        else:
            if len(self.padding) != n:
                raise ParameterError("padding", f"{n} values (one per dimension)", self.padding)
            check_positive(self.padding, "padding", allow_zero=True)
        if self.padding_mode not in PADDING_MODES:
            raise ParameterError(
                "padding_mode", f"one of {', '.join(PADDING_MODES)}", self.padding_mode
            )
        if self.kind == "conv_transpose" and self.padding_mode != "zeros":
            raise ParameterError(
                "padding_mode",
                "'zeros' for a transposed convolution (PyTorch supports no other)",
                self.padding_mode,
            )
        if self.kind == "conv_transpose":
            bad = [
                (op, s, d)
                for op, s, d in zip(self.output_padding, self.stride, self.dilation)
                if not (op < s or op < d)
            ]
            if bad:
                raise ParameterError(
                    "output_padding",
                    "a value smaller than either stride or dilation in each "
                    f"dimension (stride={self.stride}, dilation={self.dilation})",
                    self.output_padding if n > 1 else self.output_padding[0],
                )
        elif any(self.output_padding):
            raise ParameterError("output_padding", f"0 for {self.kind}", self.output_padding)
        if self.kind in ("max_pool", "avg_pool"):
            assert isinstance(self.padding, tuple)
            half = tuple(k // 2 for k in self.kernel_size)
            if any(p > h for p, h in zip(self.padding, half)):
                raise ParameterError(
                    "padding",
                    f"at most half the kernel size {half} for pooling",
                    self.padding if n > 1 else self.padding[0],
                )
            if self.kind == "avg_pool" and any(d != 1 for d in self.dilation):
                raise ParameterError("dilation", "1 for average pooling", self.dilation)
        check_int(self.groups, "groups")
        for name in ("in_channels", "out_channels"):
            c = getattr(self, name)
            if c is not None:
                check_int(c, name)
            if c is not None and c % self.groups:
                raise ParameterError("groups", f"a divisor of {name}={c}", self.groups)

    @classmethod
    def _make(
        cls,
        kind: LayerKind,
        kernel_size: Any,
        stride: Any,
        padding: Any,
        dilation: Any,
        output_padding: Any,
        ndim: int | None,
        **rest: Any,
    ) -> LayerSpec:
        n = ndim or infer_ndim(kernel_size, stride, padding, dilation, output_padding)
        if isinstance(padding, str):
            pad: tuple[int, ...] | str = padding
        else:
            pad = as_tuple(padding, n, "padding")
        return cls(
            kind=kind,
            kernel_size=as_tuple(kernel_size, n, "kernel_size"),
            stride=as_tuple(stride, n, "stride"),
            padding=pad,  # type: ignore[arg-type]
            dilation=as_tuple(dilation, n, "dilation"),
            output_padding=as_tuple(output_padding, n, "output_padding"),
            **rest,
        )

    @classmethod
    def conv(
        cls,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        padding_mode: str = "zeros",
        *,
        in_channels: int | None = None,
        out_channels: int | None = None,
        ndim: int | None = None,
    ) -> LayerSpec:
        """A convolution (``nn.ConvNd``). ``ndim`` defaults to the length of any tuple given, else 2."""
        return cls._make(
            "conv",
            kernel_size,
            stride,
            padding,
            dilation,
            0,
            ndim,
            groups=groups,
            padding_mode=padding_mode,
            in_channels=in_channels,
            out_channels=out_channels,
        )

    @classmethod
    def conv_transpose(
        cls,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        output_padding: Any = 0,
        groups: int = 1,
        dilation: Any = 1,
        *,
        in_channels: int | None = None,
        out_channels: int | None = None,
        ndim: int | None = None,
    ) -> LayerSpec:
        """A transposed convolution (``nn.ConvTransposeNd``); arguments in PyTorch's order."""
        return cls._make(
            "conv_transpose",
            kernel_size,
            stride,
            padding,
            dilation,
            output_padding,
            ndim,
            groups=groups,
            in_channels=in_channels,
            out_channels=out_channels,
        )

    @classmethod
    def max_pool(
        cls,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        dilation: Any = 1,
        ceil_mode: bool = False,
        *,
        ndim: int | None = None,
    ) -> LayerSpec:
        """Max pooling (``nn.MaxPoolNd``); ``stride`` defaults to ``kernel_size``."""
        return cls._make(
            "max_pool",
            kernel_size,
            kernel_size if stride is None else stride,
            padding,
            dilation,
            0,
            ndim,
            ceil_mode=bool(ceil_mode),
        )

    @classmethod
    def avg_pool(
        cls,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        *,
        dilation: Any = 1,
        ndim: int | None = None,
    ) -> LayerSpec:
        """Average pooling (``nn.AvgPoolNd``); ``stride`` defaults to ``kernel_size``.

        ``dilation`` must be 1 (PyTorch's average pooling has none); it is a parameter so that
        a caller holding one gets the library's error.
        """
        return cls._make(
            "avg_pool",
            kernel_size,
            kernel_size if stride is None else stride,
            padding,
            dilation,
            0,
            ndim,
            ceil_mode=bool(ceil_mode),
            count_include_pad=bool(count_include_pad),
        )

    @classmethod
    def from_module(cls, module: nn.Module) -> LayerSpec:
        """The geometry of a Conv1/2/3d, ConvTranspose1/2/3d, MaxPool1/2/3d or AvgPool1/2/3d."""
        return spec_from_module(module)

    def replace(self, **changes: Any) -> LayerSpec:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    # ------------------------------------------------------------------ arithmetic
    @property
    def ndim(self) -> int:
        """Number of spatial dimensions."""
        return len(self.kernel_size)

    @property
    def effective_kernel(self) -> tuple[int, ...]:
        """Kernel extent with dilation: ``d*(k-1)+1`` per dimension."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation))

    def padding_pairs(self) -> tuple[tuple[int, int], ...]:
        """Padding as ``(before, after)`` per dimension, ``'same'`` split as PyTorch splits it.

        PyTorch puts the smaller half first: total ``d*(k-1)``, before ``total // 2``.

        >>> LayerSpec.conv(4, padding="same", ndim=1).padding_pairs()
        ((1, 2),)
        """
        if self.padding == "valid":
            return tuple((0, 0) for _ in self.kernel_size)
        if self.padding == "same":
            totals = [d * (k - 1) for k, d in zip(self.kernel_size, self.dilation)]
            return tuple((t // 2, t - t // 2) for t in totals)
        return tuple((p, p) for p in self.padding)

    def check_input_size(self, input_size: Any, *, name: str = "input_size") -> tuple[int, ...]:
        """A spatial size (an int or one int per dimension) as a tuple of positive ints.

        ``name`` is the parameter named in the error (``output_size`` for a size wanted out).

        >>> LayerSpec.conv(3).check_input_size(5)
        (5, 5)
        """
        size = as_tuple(input_size, self.ndim, name)
        check_positive(size, name)
        return size

    def output_length(self, dim: int, i: int) -> int | None:
        """Output length along ``dim`` for input length ``i``; ``None`` where PyTorch refuses.

        >>> LayerSpec.conv(3, stride=2, ndim=1).output_length(0, 7), LayerSpec.conv(5).output_length(0, 3)
        (3, None)
        """
        return self._length(dim, i)[0]

    def _length(self, dim: int, i: int) -> tuple[int | None, str | None]:
        """``(length, None)``, or ``(None, reason)`` with the rule that refuses ``i``."""
        k, s, d = self.kernel_size[dim], self.stride[dim], self.dilation[dim]
        lo, hi = self.padding_pairs()[dim]
        if i < 1:
            return None, "input"
        if self.kind == "conv_transpose":
            o = conv_transpose_output_length(i, k, s, lo, d, self.output_padding[dim])
            return (o, None) if o >= 1 else (None, "transpose")
        if self.kind == "conv":
            if self.padding_mode == "reflect" and max(lo, hi) >= i:
                return None, "reflect"
            if self.padding_mode == "circular" and max(lo, hi) > i:
                return None, "circular"
        if self.kind == "avg_pool" and self.ndim == 3 and i < k:
            return None, "avg3d"
        e = d * (k - 1) + 1
        if self.kind == "conv":
            o = conv_output_length(i, k, s, lo, hi, d)
        else:
            o = pool_output_length(i, k, s, lo, d, self.ceil_mode)
        # A pooling window may hang over the padded input with ceil_mode (PyTorch allows
        # it as long as the window starts inside), so only o < 1 is an error there.
        if i + lo + hi < e and (self.kind == "conv" or o < 1):
            return None, "kernel"
        return (o, None) if o >= 1 else (None, "input")

    def output_size(self, input_size: Any) -> tuple[int, ...]:
        """Spatial output size for spatial ``input_size``, exactly as PyTorch computes it.

        Raises :class:`~convlens.errors.ParameterError` where PyTorch would refuse the input
        (a kernel larger than the padded input, reflect padding not smaller than the input...).

        >>> LayerSpec.conv_transpose(3, stride=2, padding=1, output_padding=1).output_size(6)
        (12, 12)
        """
        size = self.check_input_size(input_size)
        results = [self._length(dim, i) for dim, i in enumerate(size)]
        refused = [(_RANK[r], dim, r) for dim, (_, r) in enumerate(results) if r is not None]
        if refused:  # the first refusal in the order PyTorch checks: by rule, then dimension
            _, dim, reason = min(refused)
            raise self._refusal(reason, dim, size)
        return tuple(o for o, _ in results if o is not None)

    def _refusal(self, reason: str, dim: int, size: tuple[int, ...]) -> ParameterError:
        pads = self.padding_pairs()
        if reason == "transpose":
            sizes = tuple(
                conv_transpose_output_length(i, k, s, lo, d, op)
                for i, s, (lo, _), d, k, op in zip(
                    size, self.stride, pads, self.dilation, self.kernel_size, self.output_padding
                )
            )
            return ParameterError(
                "padding",
                "a padding that leaves at least one output of the transposed convolution",
                self.padding if self.ndim > 1 else self.padding[0],
                hint=f"input_size={size} gives output size {sizes}",
            )
        if reason in ("reflect", "circular"):
            rel = "smaller than" if reason == "reflect" else "at most"
            return ParameterError(
                "padding",
                f"a value {rel} the input size {size} with padding_mode={self.padding_mode!r}",
                self.padding,
            )
        if reason == "avg3d":
            return ParameterError(
                "kernel_size",
                f"a kernel no larger than the unpadded input {size} "
                "(PyTorch's 3-D average pooling checks it)",
                self.kernel_size,
            )
        i, (lo, hi), e = size[dim], pads[dim], self.effective_kernel[dim]
        if reason == "kernel":
            return ParameterError(
                "kernel_size",
                f"an effective kernel (dilation*(kernel-1)+1 = {e}) no larger "
                f"than the padded input ({i}+{lo}+{hi} = {i + lo + hi})",
                self.kernel_size,
                hint=f"input_size={size}",
            )
        o = (
            conv_output_length(
                i, self.kernel_size[dim], self.stride[dim], lo, hi, self.dilation[dim]
            )
            if self.kind == "conv"
            else pool_output_length(
                i, self.kernel_size[dim], self.stride[dim], lo, self.dilation[dim], self.ceil_mode
            )
        )
        return ParameterError(
            "input_size", "an input large enough for one output", size, hint=f"output would be {o}"
        )

    def formula(self, input_size: Any) -> tuple[str, ...]:
        """Per dimension, the output-size formula and the same with the numbers filled in.

        >>> LayerSpec.conv(3, stride=2, padding=1, ndim=1).formula(5)[0]
        'o = floor((i + p_lo + p_hi - d*(k-1) - 1) / s) + 1 = floor((5 + 1 + 1 - 1*(3-1) - 1) / 2) + 1 = 3'
        """
        size = self.check_input_size(input_size)
        out = self.output_size(size)
        lines = []
        for i, (lo, hi), k, s, d, op, o in zip(
            size,
            self.padding_pairs(),
            self.kernel_size,
            self.stride,
            self.dilation,
            self.output_padding,
            out,
        ):
            if self.kind == "conv_transpose":
                text = (
                    "o = (i - 1)*s - 2p + d*(k-1) + output_padding + 1 = "
                    f"({i} - 1)*{s} - 2*{lo} + {d}*({k}-1) + {op} + 1 = {o}"
                )
            elif self.kind == "conv":
                text = (
                    "o = floor((i + p_lo + p_hi - d*(k-1) - 1) / s) + 1 = "
                    f"floor(({i} + {lo} + {hi} - {d}*({k}-1) - 1) / {s}) + 1 = {o}"
                )
            else:
                rnd = "ceil" if self.ceil_mode else "floor"
                text = (
                    f"o = {rnd}((i + 2p - d*(k-1) - 1) / s) + 1 = "
                    f"{rnd}(({i} + 2*{lo} - {d}*({k}-1) - 1) / {s}) + 1"
                )
                raw = -(-(i + 2 * lo - d * (k - 1) - 1) // s) + 1 if self.ceil_mode else o
                if raw != o:
                    text += f" = {raw}, minus the last window that starts in the padding = {o}"
                else:
                    text += f" = {o}"
            lines.append(text)
        return tuple(lines)

    def output_shape(self, input_shape: Any) -> tuple[int, ...]:
        """Output shape for a full input shape ``(N, C, *spatial)`` or ``(C, *spatial)``.

        The channel count becomes ``out_channels`` where it is known.
        """
        shape = tuple(int(v) for v in input_shape)
        if len(shape) not in (self.ndim + 1, self.ndim + 2):
            raise ParameterError(
                "input_shape", f"(N, C, *{self.ndim} spatial) or (C, *spatial)", shape
            )
        lead, spatial = shape[: -self.ndim], shape[-self.ndim :]
        c = lead[-1]
        if self.in_channels is not None and c != self.in_channels:
            raise ParameterError("input_shape", f"{self.in_channels} channels", c)
        c_out = (
            self.out_channels
            if self.kind in ("conv", "conv_transpose") and self.out_channels is not None
            else c
        )
        return (*lead[:-1], c_out, *self.output_size(spatial))

    def describe(self) -> str:
        """A one-line PyTorch-like description, e.g. ``conv k=(3, 3) s=(2, 2) p=(1, 1)``."""
        parts = [f"{self.kind} k={self.kernel_size}", f"s={self.stride}", f"p={self.padding}"]
        if any(d != 1 for d in self.dilation):
            parts.append(f"d={self.dilation}")
        if any(self.output_padding):
            parts.append(f"op={self.output_padding}")
        if self.groups != 1:
            parts.append(f"g={self.groups}")
        if self.ceil_mode:
            parts.append("ceil")
        if self.padding_mode != "zeros":
            parts.append(self.padding_mode)
        return " ".join(parts)

    def summary(self) -> str:
        """A one-line description with PyTorch's argument names (1-D values as plain ints).

        >>> LayerSpec.conv(3, stride=2, padding=1, ndim=1).summary()
        'conv (1-D) kernel=3 stride=2 padding=1'
        """
        parts = [f"kernel={_one(self.kernel_size)}", f"stride={_one(self.stride)}"]
        pad = self.padding if isinstance(self.padding, str) else _one(self.padding)
        parts.append(f"padding={pad}")
        if any(d != 1 for d in self.dilation):
            parts.append(f"dilation={_one(self.dilation)}")
        if any(self.output_padding):
            parts.append(f"output_padding={_one(self.output_padding)}")
        if self.groups != 1:
            parts.append(f"groups={self.groups}")
        if self.ceil_mode:
            parts.append("ceil_mode")
        if self.padding_mode != "zeros":
            parts.append(f"padding_mode={self.padding_mode!r}")
        return f"{self.kind} ({self.ndim}-D) " + " ".join(parts)

    def torch_call(self) -> str:
        """The PyTorch module call with this geometry (channels as ``C_in``, ``C_out`` where
        unknown), e.g. to print the transposed conv that undoes a conv.

        >>> LayerSpec.conv_transpose(3, stride=2, padding=1, output_padding=1, ndim=1).torch_call()
        'ConvTranspose1d(kernel_size=3, stride=2, padding=1, output_padding=1)'
        """
        name = {"conv": "Conv", "conv_transpose": "ConvTranspose", "max_pool": "MaxPool"}.get(
            self.kind, "AvgPool"
        )
        pad = repr(self.padding) if isinstance(self.padding, str) else _one(self.padding)
        args = [f"kernel_size={_one(self.kernel_size)}", f"stride={_one(self.stride)}"]
        args.append(f"padding={pad}")
        if self.kind == "conv_transpose":
            args.append(f"output_padding={_one(self.output_padding)}")
        if any(d != 1 for d in self.dilation):
            args.append(f"dilation={_one(self.dilation)}")
        if self.groups != 1:
            args.append(f"groups={self.groups}")
        if self.ceil_mode:
            args.append("ceil_mode=True")
        if self.padding_mode != "zeros":
            args.append(f"padding_mode={self.padding_mode!r}")
        if self.kind == "avg_pool" and not self.count_include_pad:
            args.append("count_include_pad=False")
        return f"{name}{self.ndim}d({', '.join(args)})"

    def _repr_html_(self) -> str:
        """In a notebook: the geometry, the size formula and a few input -> output sizes."""
        from convlens.notebook import layer_spec_html

        return layer_spec_html(self)


def _one(values: tuple[int, ...]) -> int | tuple[int, ...]:
    """One value for a 1-D tuple, else the tuple."""
    return values[0] if len(values) == 1 else values
