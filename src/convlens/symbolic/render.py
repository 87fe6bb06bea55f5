"""The derivation as text: symbols, the conv output, C and the transposed result, in LaTeX,
Unicode or Markdown (the matrices formatted by :mod:`convlens.symbolic.text`).

>>> from convlens.symbolic import symbolic_conv
>>> print(render(symbolic_conv(2, 1), "forward", "unicode").splitlines()[1])
⎡w₁₁·x⁽ˡ⁾₁₁  w₁₁·x⁽ˡ⁾₁₂⎤
"""

from __future__ import annotations

import math
from typing import Any

import sympy as sp

from convlens.errors import ParameterError
from convlens.index import check_budget
from convlens.symbolic.build import MAX_ENTRIES, SymbolicConv
from convlens.symbolic.text import FORMATS, as_matrix, render_matrix

__all__ = ["SHOWS", "printed_entries", "render"]

SHOWS = ("C", "forward", "transpose", "all")


def _section(format: str, title: str, lhs: str, body: str) -> str:
    if format == "latex":
        return f"% {title}\n{lhs} = {body}"
    if format == "markdown":
        return f"**{title}**\n\n{body}"
    return f"{title}:\n{body}"


def _grid(size: tuple[int, ...]) -> tuple[int, int]:
    """The shape of :func:`~convlens.symbolic.text.as_matrix` of a grid of ``size``."""
    return (1, size[0]) if len(size) == 1 else (math.prod(size[:-1]), size[-1])


def printed_entries(
    sc: SymbolicConv,
    show: str = "all",
    *,
    layout: str = "row",
    max_rows: int | None = 32,
    max_cols: int | None = 16,
    blocks: bool = False,
) -> int:
    """How many matrix entries :func:`render` would print, from the shapes alone (elided
    matrices print at most ``max_rows`` × ``max_cols``, blocks and ``None`` print them all).

    >>> from convlens.symbolic import symbolic_conv
    >>> printed_entries(symbolic_conv(60, 3), "C"), printed_entries(symbolic_conv(60, 3), "C", blocks=True)
    (512, 12110400)
    """
    g = sc.spec
    mats: list[tuple[int, int]] = []
    if show == "all":
        mats += [_grid(sc.input_size)] * sc.in_channels
        mats += [_grid(g.kernel_size)] * (sc.out_channels * (sc.in_channels // g.groups))
    if show in ("forward", "all"):
        mats += [_grid(sc.output_size)] * sc.out_channels
    if show in ("C", "all"):
        mats.append(sc.shape[::-1] if layout == "row" else sc.shape)
    if show in ("transpose", "all"):
        mats += [_grid(sc.input_size)] * sc.in_channels
    if blocks:
        return sum(r * c for r, c in mats)
    return sum(min(r, max_rows or r) * min(c, max_cols or c) for r, c in mats)


def render(
    sc: SymbolicConv,
    show: str = "all",
    format: str = "latex",
    *,
    layout: str = "row",
    max_rows: int | None = 32,
    max_cols: int | None = 16,
    blocks: bool = False,
    max_entries: int | None = None,
) -> str:
    """The derivation as text: the symbols, the conv output, C (``layout``; the seed's
    ``"row"`` by default) and the transposed result ``C^T vec(x^{(l+1)})``.

    More than ``max_entries`` printed entries (:func:`printed_entries`; default
    :data:`~convlens.symbolic.MAX_ENTRIES`: blocks, or no elision, print every entry of C,
    zeros included) is refused before anything is rendered.

    >>> from convlens.symbolic import symbolic_conv
    >>> print(render(symbolic_conv(2, 1), "C", "latex"))
    % C, row layout (in, out) = (4, 4): vec(x^{(l)})^T C = vec(x^{(l+1)})^T
    C = \\begin{bmatrix}w_{11} & 0 & 0 & 0\\\\0 & w_{11} & 0 & 0\\\\0 & 0 & w_{11} & 0\\\\0 & 0 & 0 & w_{11}\\end{bmatrix}
    """
    if show not in SHOWS:
        raise ParameterError("show", f"one of {', '.join(SHOWS)}", show)
    if format not in FORMATS:
        raise ParameterError("format", f"one of {', '.join(FORMATS)}", format)
    printed = printed_entries(
        sc, show, layout=layout, max_rows=max_rows, max_cols=max_cols, blocks=blocks
    )
    c_rows, c_cols = sc.shape[::-1] if layout == "row" else sc.shape
    check_budget(
        printed,
        MAX_ENTRIES if max_entries is None else max_entries,
        param="max_entries",
        what="a printed derivation",
        received=(
            f"show={show!r} with C of shape ({c_rows}, {c_cols})"
            + (" in blocks" if blocks else f", max_rows={max_rows}, max_cols={max_cols}")
        ),
        unit="printed entries",
    )
    kw: dict[str, Any] = {"max_rows": max_rows, "max_cols": max_cols, "blocks": blocks}
    g = sc.spec
    multi_in, multi_out = sc.x.shape[0] > 1, sc.y.shape[0] > 1
    parts: list[str] = []

    def grids(mats: list[sp.Matrix], name: str, multi: bool, title: str) -> None:
        for c, mat in enumerate(mats):
            idx = f"_{{{c + sc.index_base}}}" if multi else ""
            t = f"{title}, channel {c + sc.index_base}" if multi else title
            parts.append(_section(format, t, f"{name}{idx}", render_matrix(mat, format, **kw)))

    if show == "all":
        grids([as_matrix(c) for c in sc.x], "X^{(l)}", multi_in, "input X^{(l)}")
        ws = sc.w.reshape(-1, *g.kernel_size)
        grids([as_matrix(c) for c in ws], "W", ws.shape[0] > 1, "kernel W (out, in/groups)")
    if show in ("forward", "all"):
        title = (
            f"conv output X^{{(l+1)}} = X^{{(l)}} * W (stride {g.stride}, padding {g.padding}, "
            f"dilation {g.dilation}, groups {g.groups})"
        )
        grids(sc.forward(), "X^{(l+1)}", multi_out, title)
    if show in ("C", "all"):
        cm = sc.C(layout="row" if layout == "row" else "torch")
        xs, ys = list(sc.x.ravel()), list(sc.y.ravel())
        rows, cols = (xs, ys) if layout == "row" else (ys, xs)
        how = (
            "vec(x^{(l)})^T C = vec(x^{(l+1)})^T"
            if layout == "row"
            else "vec(x^{(l+1)}) = C vec(x^{(l)})"
        )
        title = f"C, {layout} layout ({'in, out' if layout == 'row' else 'out, in'}) = {cm.shape}: {how}"
        extra: dict[str, Any] = (
            {} if format == "latex" else {"row_labels": rows, "col_labels": cols}
        )
        body = render_matrix(cm, format, zero="·" if format == "unicode" else "0", **kw, **extra)
        parts.append(_section(format, title, "C", body))
    if show in ("transpose", "all"):
        title = (
            "transposed convolution C^T vec(x^{(l+1)}) = conv_transpose(X^{(l+1)}, W, "
            f"stride {g.stride}, padding {g.padding}, output_padding {sc.output_padding}, "
            f"dilation {g.dilation}, groups {g.groups})"
        )
        grids(sc.transpose(), r"\left[C^{T} \operatorname{vec}(X^{(l+1)})\right]", multi_in, title)
    return "\n\n".join(parts)
