"""Symbolic convolution with sympy: C, the conv output and the transposed result as matrices of
symbols, rendered as LaTeX, Unicode or Markdown (Dumoulin & Visin, arXiv:1603.07285).

Loads sympy (and NumPy), not torch: C's pattern comes from the index engine :mod:`convlens.index`.

>>> from convlens.symbolic import symbolic_conv
>>> symbolic_conv(4, 3).C(layout="row")[5, 3]
w_{11}
"""

from convlens.symbolic.build import (
    MAX_ENTRIES,
    SymbolicConv,
    numeric_matrix,
    symbol_grid,
    symbolic_conv,
    symbolic_conv_transpose,
    symbolic_size,
    symbolic_undo,
)
from convlens.symbolic.render import SHOWS, printed_entries, render
from convlens.symbolic.text import (
    FORMATS,
    latex_matrix,
    markdown_matrix,
    render_matrix,
    unicode_entry,
    unicode_matrix,
)

__all__ = [
    "FORMATS",
    "MAX_ENTRIES",
    "SHOWS",
    "SymbolicConv",
    "latex_matrix",
    "markdown_matrix",
    "numeric_matrix",
    "printed_entries",
    "render",
    "render_matrix",
    "symbol_grid",
    "symbolic_conv",
    "symbolic_conv_transpose",
    "symbolic_size",
    "symbolic_undo",
    "unicode_entry",
    "unicode_matrix",
]
