"""The gallery page, drawn while the site is built: every picture is made by running the
``convlens figure ...`` command printed under it (in-process, through ``convlens.cli.main``),
so what a reader copies is exactly what drew the picture.

Used by docs/hooks.py (``on_files``) and by tests/test_docs.py; plain Python, no MkDocs import.
"""

from __future__ import annotations

import contextlib
import io
import shlex
from dataclasses import dataclass
from pathlib import Path

from convlens.cli import main


@dataclass(frozen=True)
class Figure:
    """One picture of the gallery: ``command`` (a ``convlens ...`` line whose ``--out`` is
    ``file``), its section and what it shows."""

    section: str
    file: str
    command: str
    caption: str


SECTIONS = {
    "The kernel sliding over the input": (
        "The convolution, one frame per output pixel: the kernel's window over the (padded) "
        "input, the output filled in as it goes. See [convolution as a matrix]"
        "(concepts/conv-matrix.md)."
    ),
    "The transposed convolution as a scatter": (
        "One frame per *input* pixel of the transposed convolution: the kernel, scaled by that "
        "pixel, is stamped onto the output and overlaps add. This is multiplication by Cᵀ read "
        "column by column. See [four routes](concepts/transposed.md)."
    ),
    "The transposed convolution, fractionally strided": (
        "The same result as an ordinary convolution: `stride − 1` zeros inserted between the "
        "input pixels, `k − 1 − padding` around them, and the kernel flipped; one frame per "
        "output pixel."
    ),
    "The conv matrix C": (
        "C with each non-zero coloured by the kernel entry it holds: every row (torch layout) "
        "is one copy of the kernel, placed where that output's window lies."
    ),
    "Overlap (checkerboard) maps": (
        "How many (input pixel, kernel tap) pairs write each output pixel of a transposed "
        "convolution, and of a stack of them (Odena, Dumoulin & Olah, Distill 2016). See "
        "[linting a decoder](how-to/lint-decoder.md)."
    ),
}

FIGURES = (
    Figure(
        "The kernel sliding over the input",
        "conv-seed.gif",
        "convlens figure conv --input 4 --kernel 3 --out conv-seed.gif",
        "The seed's example: a 4×4 input, a 3×3 kernel, no padding, stride 1: a 2×2 output.",
    ),
    Figure(
        "The kernel sliding over the input",
        "conv-strided.gif",
        "convlens figure conv --input 5 --kernel 3 --stride 2 --padding 1 --out conv-strided.gif",
        "Input 5×5, kernel 3×3, stride 2, padding 1: a 3×3 output.",
    ),
    Figure(
        "The transposed convolution as a scatter",
        "scatter-seed.gif",
        "convlens figure transpose --input 2 --kernel 3 --view scatter --out scatter-seed.gif",
        "Back from the seed's 2×2 output to 4×4.",
    ),
    Figure(
        "The transposed convolution as a scatter",
        "scatter-strided.gif",
        "convlens figure transpose --input 3 --kernel 3 --stride 2 --padding 1 --view scatter "
        "--out scatter-strided.gif",
        "Stride 2, padding 1: 3×3 back to 5×5; the stamps overlap only every other row and column.",
    ),
    Figure(
        "The transposed convolution, fractionally strided",
        "fractional-seed.gif",
        "convlens figure transpose --input 2 --kernel 3 --view fractional "
        "--out fractional-seed.gif",
        "The seed's 2×2 padded by 2 on each side; the flipped kernel slides over it.",
    ),
    Figure(
        "The transposed convolution, fractionally strided",
        "fractional-strided.gif",
        "convlens figure transpose --input 3 --kernel 3 --stride 2 --padding 1 --view fractional "
        "--out fractional-strided.gif",
        "Stride 2: one zero between input pixels, the kernel moves half an input pixel per "
        "output pixel.",
    ),
    Figure(
        "The conv matrix C",
        "matrix-seed.png",
        "convlens figure matrix --input 4 --kernel 3 --out matrix-seed.png",
        "The seed's C in torch layout, (out, in) = 4×16, as in Dumoulin & Visin's guide.",
    ),
    Figure(
        "The conv matrix C",
        "matrix-seed-row.png",
        "convlens figure matrix --input 4 --kernel 3 --layout row --out matrix-seed-row.png",
        "The same C in the seed's row layout, (in, out) = 16×4, as the post prints it.",
    ),
    Figure(
        "The conv matrix C",
        "connections-seed.png",
        "convlens figure matrix --input 4 --kernel 3 --view connections --out connections-seed.png",
        "Each non-zero of C as a line from an input pixel to an output pixel.",
    ),
    Figure(
        "Overlap (checkerboard) maps",
        "overlap-k3s2.png",
        "convlens figure overlap --kernel 3 --stride 2 --layers 2 --out overlap-k3s2.png",
        "Kernel 3, stride 2: the interior alternates 1, 2 and 4 writes (ratio 4 in 2-D), and "
        "two such layers compound it.",
    ),
    Figure(
        "Overlap (checkerboard) maps",
        "overlap-k4s2.png",
        "convlens figure overlap --kernel 4 --stride 2 --padding 1 --layers 2 "
        "--out overlap-k4s2.png",
        "Kernel 4, stride 2, padding 1 (DCGAN's choice): an even interior, uneven only at the "
        "border.",
    ),
)


def draw(folder: str | Path) -> list[Path]:
    """Run every figure's command with its output in ``folder``; return the files written."""
    folder = Path(folder)
    written = []
    for figure in FIGURES:
        args = shlex.split(figure.command)[1:]
        args[args.index("--out") + 1] = str(folder / figure.file)
        with contextlib.redirect_stdout(io.StringIO()):
            main(args)
        written.append(folder / figure.file)
    return written


def page(prefix: str = "gallery/") -> str:
    """The gallery's Markdown, with the pictures under ``prefix``."""
    lines = [
        "# Gallery",
        "",
        "The pictures of convolution arithmetic that `convlens figure` draws, for any 1- or 2-D "
        "geometry. These were drawn while this site was built, each by the command printed "
        "under it; the same scenes are in Python in `convlens.figures` (`conv_scene`, "
        "`scatter_scene`, `fractional_scene`, `matrix_scene`, `connection_scene`, `save_scene`).",
    ]
    for section, text in SECTIONS.items():
        lines += ["", f"## {section}", "", text]
        for figure in (f for f in FIGURES if f.section == section):
            lines += [
                "",
                f"![{figure.caption}]({prefix}{figure.file})",
                "",
                f"{figure.caption}",
                "",
                "```bash",
                figure.command,
                "```",
            ]
    return "\n".join(lines) + "\n"
