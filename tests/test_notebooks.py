"""The tutorial notebooks (docs/tutorial.py and its Korean twin docs/tutorial.ko.py, jupytext
percent format, paired with the .ipynb files beside them) execute from a clean kernel, every
cell that asserts a claim shows it, and the pairs and the two languages stay in step."""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

DOCS = Path(__file__).resolve().parents[1] / "docs"
NOTEBOOKS = ("tutorial", "tutorial.ko")
HANGUL = re.compile(r"[\uac00-\ud7a3]")


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_ipynb_is_the_paired_py_without_outputs(name: str) -> None:
    source = jupytext.read(DOCS / f"{name}.py")
    stored = nbformat.read(DOCS / f"{name}.ipynb", as_version=4)
    assert _cells(stored) == _cells(source), f"run: jupytext --sync docs/{name}.py"
    assert stored.metadata.jupytext.formats == "ipynb,py:percent"
    # outputs are made by the test and the docs build, never stored
    assert all(not c.outputs for c in stored.cells if c.cell_type == "code")


def test_korean_notebook_has_the_same_cells() -> None:
    en, ko = (jupytext.read(DOCS / f"{n}.py") for n in NOTEBOOKS)
    assert [t for t, _ in _cells(en)] == [t for t, _ in _cells(ko)]
    assert [s for t, s in _cells(en) if t == "code"] == [s for t, s in _cells(ko) if t == "code"]
    prose = [(e, k) for (t, e), (_, k) in zip(_cells(en), _cells(ko)) if t == "markdown"]
    for en_text, ko_text in prose:  # every markdown cell is translated
        assert en_text != ko_text
        assert HANGUL.search(ko_text), en_text[:60]


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes_and_shows_what_it_asserts(name: str, tmp_path: Path) -> None:
    nb = jupytext.read(DOCS / f"{name}.py")
    # a fresh kernel of this interpreter (jupyter_client runs "python" as sys.executable)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell or assertion

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    for cell in code:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, cell.source[:80]
        if "assert " in cell.source:
            assert cell.outputs, f"a cell asserts without showing anything: {cell.source[:80]}"

    outputs = [o for c in code for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    data = [o["data"] for o in outputs if o.output_type in ("display_data", "execute_result")]
    latex = "".join(d.get("text/latex", "") for d in data)
    images = [d for d in data if "image/png" in d]
    # the post's C, printed from the LaTeX of convlens.symbolic.render and in Unicode
    assert r"C = \begin{bmatrix}w_{11} & 0 & 0 & 0\\w_{12} & w_{11} & 0 & 0" in latex
    assert "equal to the seed's Jacobian: True" in text
    assert "x⁽ˡ⁾₂₂ ⎢  w₂₂       w₂₁       w₁₂       w₁₁   ⎥" in text
    for route in ("nn.ConvTranspose2d", "autograd input gradient", "conv_transpose_fractional"):
        assert re.search(rf"{re.escape(route)} +max \|difference\| from vec\(y\) @ C\^T = ", text)
    assert "every input pixel writes the block that F.conv_transpose2d writes" in text
    assert text.count("max |convlens - by hand| = ") == 6  # 3 rules x 2 channels
    # pictures: sliding kernel, C, scatter, fractional, projections, the Figure-2 grid
    assert len(images) >= 6
