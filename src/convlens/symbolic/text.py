"""Symbolic matrices as text: LaTeX (bmatrix), Unicode for the terminal, Markdown tables.

Large matrices stay readable: ``max_rows`` / ``max_cols`` keep the first and last rows and
columns and elide the middle (``\\vdots``, ``\\cdots``, ``\\ddots``), or ``blocks=True``
splits the matrix into labelled blocks of at most that many rows and columns (nothing elided).

>>> import sympy as sp
>>> print(latex_matrix(sp.Matrix([[sp.Symbol("w_{11}"), 0]])))
\\begin{bmatrix}w_{11} & 0\\end{bmatrix}
>>> print(unicode_matrix(sp.Matrix([[sp.Symbol("x^{(l)}_{12}"), 0]])))
[x⁽ˡ⁾₁₂  0]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import sympy as sp
from sympy.printing.str import StrPrinter

from convlens.errors import ParameterError

__all__ = [
    "FORMATS",
    "as_matrix",
    "latex_matrix",
    "markdown_matrix",
    "render_matrix",
    "unicode_entry",
    "unicode_matrix",
]

Format = Literal["latex", "unicode", "markdown"]
FORMATS = ("latex", "unicode", "markdown")

_SUP = str.maketrans("0123456789+-()l=", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁽⁾ˡ⁼")
_SUB = str.maketrans("0123456789+-()", "₀₁₂₃₄₅₆₇₈₉₊₋₍₎")
_NAME = re.compile(r"^(?P<base>[^_^{}]+)(?:\^\{(?P<sup>[^{}]*)\})?(?:_\{(?P<sub>[^{}]*)\})?$")


def _unicode_name(name: str) -> str:
    m = _NAME.match(name)
    if m is None:
        return name
    return m["base"] + (m["sup"] or "").translate(_SUP) + (m["sub"] or "").translate(_SUB)


class _UnicodePrinter(StrPrinter):
    def _print_Symbol(self, expr: sp.Symbol) -> str:
        return _unicode_name(expr.name)


def unicode_entry(expr: Any) -> str:
    """One expression in terminal Unicode: ``w₁₁·x⁽ˡ⁾₁₁ + w₁₂·x⁽ˡ⁾₁₂``.

    >>> unicode_entry(sp.Symbol("w_{1,2,11}") * sp.Symbol("x^{(l+1)}_{3}"))
    'w₁,₂,₁₁·x⁽ˡ⁺¹⁾₃'
    """
    text: str = _UnicodePrinter().doprint(sp.sympify(expr))
    return text.replace("**", "^").replace("*", "·")


def _kept(n: int, limit: int | None) -> list[int | None]:
    """Indices shown of ``n``: all, or head and tail around one ``None`` (the elision)."""
    if limit is None or n <= limit:
        return list(range(n))
    if limit < 2:
        raise ParameterError("max_rows/max_cols", "at least 2 (or None)", limit)
    head = (limit + 1) // 2
    return [*range(head), None, *range(n - (limit - head), n)]


def _check_limits(max_rows: int | None, max_cols: int | None) -> None:
    for name, v in (("max_rows", max_rows), ("max_cols", max_cols)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 2):
            raise ParameterError(name, "an int >= 2 or None", v)


def _cells(
    m: sp.MatrixBase, max_rows: int | None, max_cols: int | None, entry: Any, dots: Sequence[str]
) -> list[list[str]]:
    """Strings of the kept cells; ``dots`` = (vertical, horizontal, diagonal)."""
    _check_limits(max_rows, max_cols)
    rows, cols = _kept(m.rows, max_rows), _kept(m.cols, max_cols)
    out = []
    for r in rows:
        line = []
        for c in cols:
            if r is None:
                line.append(dots[2] if c is None else dots[0])
            elif c is None:
                line.append(dots[1])
            else:
                line.append(entry(m[r, c]))
        out.append(line)
    return out


def latex_matrix(
    m: sp.MatrixBase,
    *,
    max_rows: int | None = None,
    max_cols: int | None = None,
    env: str = "bmatrix",
) -> str:
    """``\\begin{bmatrix} ... \\end{bmatrix}`` with sympy's LaTeX for every kept entry.

    >>> latex_matrix(sp.eye(5), max_rows=2, max_cols=2)
    '\\\\begin{bmatrix}1 & \\\\cdots & 0\\\\\\\\\\\\vdots & \\\\ddots & \\\\vdots\\\\\\\\0 & \\\\cdots & 1\\\\end{bmatrix}'
    """
    cells = _cells(m, max_rows, max_cols, sp.latex, (r"\vdots", r"\cdots", r"\ddots"))
    body = r"\\".join(" & ".join(row) for row in cells)
    return rf"\begin{{{env}}}{body}\end{{{env}}}"


def _labelled(
    rows: list[int | None],
    cols: list[int | None],
    row_labels: Sequence[str] | None,
    col_labels: Sequence[str] | None,
    dots: tuple[str, str],
) -> tuple[list[str] | None, list[str] | None]:
    rl = None if row_labels is None else [dots[0] if r is None else row_labels[r] for r in rows]
    cl = None if col_labels is None else [dots[1] if c is None else col_labels[c] for c in cols]
    return rl, cl


def unicode_matrix(
    m: sp.MatrixBase,
    *,
    max_rows: int | None = None,
    max_cols: int | None = None,
    zero: str = "0",
    row_labels: Sequence[Any] | None = None,
    col_labels: Sequence[Any] | None = None,
) -> str:
    """A bracketed grid for the terminal; ``zero`` replaces zero entries (``"·"`` thins C).

    >>> print(unicode_matrix(sp.eye(2), zero="·"))
    ⎡1  ·⎤
    ⎣·  1⎦
    """
    cells = _cells(
        m,
        max_rows,
        max_cols,
        lambda e: zero if e == 0 else unicode_entry(e),
        ("⋮", "⋯", "⋱"),
    )
    rows, cols = _kept(m.rows, max_rows), _kept(m.cols, max_cols)
    rl, cl = _labelled(
        rows,
        cols,
        None if row_labels is None else [unicode_entry(s) for s in row_labels],
        None if col_labels is None else [unicode_entry(s) for s in col_labels],
        ("⋮", "⋯"),
    )
    widths = [max(len(row[j]) for row in cells) for j in range(len(cols))]
    if cl is not None:
        widths = [max(w, len(c)) for w, c in zip(widths, cl)]
    lw = max((len(s) for s in rl), default=0) + 1 if rl is not None else 0
    n = len(cells)
    lines = []
    if cl is not None:
        lines.append(" " * (lw + 1) + "  ".join(c.center(w) for c, w in zip(cl, widths)))
    for i, row in enumerate(cells):
        left, right = (
            ("[", "]")
            if n == 1
            else ("⎡", "⎤")
            if i == 0
            else ("⎣", "⎦")
            if i == n - 1
            else ("⎢", "⎥")
        )
        label = "" if rl is None else rl[i].rjust(lw - 1) + " "
        lines.append(label + left + "  ".join(c.center(w) for c, w in zip(row, widths)) + right)
    return "\n".join(line.rstrip() for line in lines)


def markdown_matrix(
    m: sp.MatrixBase,
    *,
    max_rows: int | None = None,
    max_cols: int | None = None,
    row_labels: Sequence[Any] | None = None,
    col_labels: Sequence[Any] | None = None,
) -> str:
    """A Markdown table whose cells hold inline LaTeX (``$w_{11}$``), rendered by GitHub/Jupyter.

    >>> print(markdown_matrix(sp.Matrix([[sp.Symbol("w_{11}"), 0]])))
    | 1 | 2 |
    |---|---|
    | $w_{11}$ | $0$ |
    """
    cells = _cells(m, max_rows, max_cols, lambda e: f"${sp.latex(e)}$", ("⋮", "⋯", "⋱"))
    rows, cols = _kept(m.rows, max_rows), _kept(m.cols, max_cols)
    rl, cl = _labelled(
        rows,
        cols,
        None if row_labels is None else [f"${sp.latex(s)}$" for s in row_labels],
        None if col_labels is None else [f"${sp.latex(s)}$" for s in col_labels],
        ("⋮", "⋯"),
    )
    header = cl if cl is not None else ["⋯" if c is None else str(c + 1) for c in cols]
    if rl is not None:
        header = ["", *header]
        cells = [[lab, *row] for lab, row in zip(rl, cells)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def render_matrix(
    m: sp.MatrixBase,
    format: str = "latex",
    *,
    max_rows: int | None = None,
    max_cols: int | None = None,
    blocks: bool = False,
    row_labels: Sequence[Any] | None = None,
    col_labels: Sequence[Any] | None = None,
    zero: str = "0",
) -> str:
    """One matrix in ``format``; with ``blocks`` it is cut into blocks of at most
    ``max_rows`` × ``max_cols`` (1-based row/column ranges in a header line) instead of elided.

    >>> print(render_matrix(sp.eye(3), "unicode", max_cols=2, blocks=True))
    rows 1-3, columns 1-2:
    ⎡1  0⎤
    ⎢0  1⎥
    ⎣0  0⎦
    rows 1-3, columns 3-3:
    ⎡0⎤
    ⎢0⎥
    ⎣1⎦
    """
    if format not in FORMATS:
        raise ParameterError("format", f"one of {', '.join(FORMATS)}", format)
    _check_limits(max_rows, max_cols)
    if blocks:
        rs = max_rows or m.rows
        cs = max_cols or m.cols
        parts = []
        for r0 in range(0, m.rows, rs):
            for c0 in range(0, m.cols, cs):
                r1, c1 = min(r0 + rs, m.rows), min(c0 + cs, m.cols)
                sub = m[r0:r1, c0:c1]
                head = f"rows {r0 + 1}-{r1}, columns {c0 + 1}-{c1}:"
                body = render_matrix(
                    sub,
                    format,
                    row_labels=None if row_labels is None else row_labels[r0:r1],
                    col_labels=None if col_labels is None else col_labels[c0:c1],
                    zero=zero,
                )
                parts.append(f"% {head}\n{body}" if format == "latex" else f"{head}\n{body}")
        return "\n".join(parts)
    if format == "latex":
        return latex_matrix(m, max_rows=max_rows, max_cols=max_cols)
    if format == "unicode":
        return unicode_matrix(
            m,
            max_rows=max_rows,
            max_cols=max_cols,
            zero=zero,
            row_labels=row_labels,
            col_labels=col_labels,
        )
    return markdown_matrix(
        m, max_rows=max_rows, max_cols=max_cols, row_labels=row_labels, col_labels=col_labels
    )


def as_matrix(grid: np.ndarray) -> sp.Matrix:
    """A 1-D grid as a 1×n row, a 2-D grid as it is; 3-D grids are stacked along rows.

    >>> as_matrix(np.array([1, 2], dtype=object))
    Matrix([[1, 2]])
    """
    if grid.ndim == 1:
        return sp.Matrix(1, grid.shape[0], list(grid))
    return sp.Matrix(grid.reshape(-1, grid.shape[-1]).tolist())
