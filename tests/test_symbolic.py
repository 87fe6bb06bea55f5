"""convlens.symbolic: the seed's matrices entry for entry, symbolic == numeric, rendering
(parsed back into sympy) and the ``convlens symbolic`` command.

References: the seed post's C (16×4) and transposed result (4×4) typed in by hand, the
Jacobian of F.convNd by autograd, F.convNd / F.conv_transposeNd, and convlens.conv_matrix.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import sympy as sp
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from hypothesis import assume, given
from hypothesis import strategies as st

from convlens import ParameterError, ParameterTypeError
from convlens.cli import cli, main
from convlens.matrix import conv_matrix
from convlens.symbolic import (
    latex_matrix,
    markdown_matrix,
    numeric_matrix,
    render,
    render_matrix,
    symbol_grid,
    symbolic_conv,
    symbolic_conv_transpose,
    unicode_entry,
    unicode_matrix,
)

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONVT = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def w(ij: str) -> sp.Symbol:
    return sp.Symbol(f"w_{{{ij}}}")


def x(ij: str) -> sp.Symbol:
    return sp.Symbol(f"x^{{(l)}}_{{{ij}}}")


def y(ij: str) -> sp.Symbol:
    return sp.Symbol(f"x^{{(l+1)}}_{{{ij}}}")


# The seed's C (row layout, 16×4), typed from the post.
SEED_C = sp.Matrix(
    [
        [w("11"), 0, 0, 0],
        [w("12"), w("11"), 0, 0],
        [w("13"), w("12"), 0, 0],
        [0, w("13"), 0, 0],
        [w("21"), 0, w("11"), 0],
        [w("22"), w("21"), w("12"), w("11")],
        [w("23"), w("22"), w("13"), w("12")],
        [0, w("23"), 0, w("13")],
        [w("31"), 0, w("21"), 0],
        [w("32"), w("31"), w("22"), w("21")],
        [w("33"), w("32"), w("23"), w("22")],
        [0, w("33"), 0, w("23")],
        [0, 0, w("31"), 0],
        [0, 0, w("32"), w("31")],
        [0, 0, w("33"), w("32")],
        [0, 0, 0, w("33")],
    ]
)

# The seed's transposed result vec(x^{(l+1)}) C^T reshaped to 4×4, typed from the post.
SEED_T = sp.Matrix(
    [
        [
            w("11") * y("11"),
            w("11") * y("12") + w("12") * y("11"),
            w("12") * y("12") + w("13") * y("11"),
            w("13") * y("12"),
        ],
        [
            w("11") * y("21") + w("21") * y("11"),
            w("11") * y("22") + w("12") * y("21") + w("21") * y("12") + w("22") * y("11"),
            w("12") * y("22") + w("13") * y("21") + w("22") * y("12") + w("23") * y("11"),
            w("13") * y("22") + w("23") * y("12"),
        ],
        [
            w("21") * y("21") + w("31") * y("11"),
            w("21") * y("22") + w("22") * y("21") + w("31") * y("12") + w("32") * y("11"),
            w("22") * y("22") + w("23") * y("21") + w("32") * y("12") + w("33") * y("11"),
            w("23") * y("22") + w("33") * y("12"),
        ],
        [
            w("31") * y("21"),
            w("31") * y("22") + w("32") * y("21"),
            w("32") * y("22") + w("33") * y("21"),
            w("33") * y("22"),
        ],
    ]
)


def _seed_forward_entry(i: int, j: int) -> sp.Expr:
    """The seed's x^{(l+1)}_{ij} = sum_{p,q} w_{pq} x^{(l)}_{i+p-1, j+q-1} (1-based)."""
    return sp.Add(
        *[w(f"{p}{q}") * x(f"{i + p - 1}{j + q - 1}") for p in range(1, 4) for q in range(1, 4)]
    )


def _diff(a: sp.MatrixBase, b: sp.MatrixBase) -> bool:
    return a.shape == b.shape and all(sp.expand(e) == 0 for e in (sp.Matrix(a) - sp.Matrix(b)))


# ---------------------------------------------------------------------- the seed, entry for entry
def test_seed_C_entry_for_entry() -> None:
    sc = symbolic_conv(4, 3)
    assert sc.C(layout="row").shape == (16, 4)
    assert sp.Matrix(sc.C(layout="row")) == SEED_C
    assert sp.Matrix(sc.C(layout="torch")) == SEED_C.T
    assert sc.C_by_diff(layout="row") == SEED_C


def test_seed_transposed_result_entry_for_entry() -> None:
    sc = symbolic_conv(4, 3)
    (t,) = sc.transpose()
    assert t.shape == (4, 4)
    assert _diff(t, SEED_T)
    # the seed's own route: (vec(x^{(l+1)})^T C^T) reshaped, with the seed's C
    seed_route = (sp.Matrix(1, 4, [y("11"), y("12"), y("21"), y("22")]) * SEED_C.T).reshape(4, 4)
    assert _diff(seed_route, SEED_T)


def test_seed_forward_and_vec_x_times_C() -> None:
    sc = symbolic_conv(4, 3)
    (out,) = sc.forward()
    expected = sp.Matrix(2, 2, lambda i, j: _seed_forward_entry(i + 1, j + 1))
    assert _diff(out, expected)
    xs = sp.Matrix(1, 16, [x(f"{i}{j}") for i in range(1, 5) for j in range(1, 5)])
    assert _diff((xs * SEED_C).reshape(2, 2), expected)


def test_seed_diff_idiom_is_fixed_by_jacobian() -> None:
    """On sympy >= 1.13 the seed's Matrix.diff(Matrix) gives an array; C_by_diff does not."""
    sc = symbolic_conv(4, 3)
    out = sc.forward_by_sliding()
    raw = out.reshape(1, 4).diff(sp.Matrix(sc.x.ravel()).reshape(16, 1))
    as_matrix = sp.Matrix(sp.Array(raw).reshape(16, 4))
    assert as_matrix == SEED_C
    assert isinstance(sc.C_by_diff(), sp.MatrixBase)
    assert sc.C_by_diff() == SEED_C.T


# ---------------------------------------------------------------------- symbolic == numeric
def _ints(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-5, 6, shape, generator=g).double()


def _jacobian(fn, inp: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return torch.autograd.functional.jacobian(lambda v: fn(v).reshape(-1), inp).reshape(
        -1, inp.numel()
    )


geometry = st.fixed_dictionaries(
    {
        "ndim": st.sampled_from([1, 2, 2, 3]),
        "n": st.integers(1, 6),
        "k": st.integers(1, 3),
        "s": st.integers(1, 3),
        "p": st.integers(0, 2),
        "d": st.integers(1, 2),
        "groups": st.sampled_from([1, 1, 2]),
        "cin_g": st.integers(1, 2),
        "cout_g": st.integers(1, 2),
        "seed": st.integers(0, 2**16),
    }
)


def _setup(g: dict) -> tuple:  # type: ignore[type-arg]
    nd = g["ndim"]
    n = g["n"] if nd < 3 else min(g["n"], 4)
    assume(n + 2 * g["p"] >= g["d"] * (g["k"] - 1) + 1)
    cin, cout = g["cin_g"] * g["groups"], g["cout_g"] * g["groups"]
    size = (n,) * nd
    sc = symbolic_conv(
        size,
        (g["k"],) * nd,
        stride=(g["s"],) * nd,
        padding=(g["p"],) * nd,
        dilation=(g["d"],) * nd,
        in_channels=cin,
        out_channels=cout,
        groups=g["groups"],
    )
    weight = _ints((cout, g["cin_g"], *(g["k"],) * nd), g["seed"])
    return sc, weight, size, cin, cout


@given(geometry)
def test_C_substituted_equals_autograd_jacobian_and_conv_matrix(g: dict) -> None:  # type: ignore[type-arg]
    sc, weight, size, cin, _ = _setup(g)
    kw = sc.torch_kwargs()
    conv = CONV[g["ndim"]]
    ref = _jacobian(
        lambda v: conv(v.reshape(1, cin, *size), weight, **kw),
        torch.zeros(cin * int(np.prod(size)), dtype=torch.float64),
    )
    got = numeric_matrix(sc.C(), sc.values(weight=weight))
    np.testing.assert_array_equal(got, ref.numpy())
    dense = conv_matrix(weight, size, format="dense", **kw)
    np.testing.assert_array_equal(got, dense.numpy())
    row = conv_matrix(weight, size, format="dense", layout="row", **kw)
    np.testing.assert_array_equal(
        numeric_matrix(sc.C(layout="row"), sc.values(weight=weight)), row.numpy()
    )


@given(geometry)
def test_forward_and_transpose_substituted_equal_F(g: dict) -> None:  # type: ignore[type-arg]
    sc, weight, size, cin, cout = _setup(g)
    nd = g["ndim"]
    inp = _ints((1, cin, *size), g["seed"] + 1)
    out = CONV[nd](inp, weight, **sc.torch_kwargs())
    assert sc.y.shape == out.shape[1:]
    got = numeric_matrix(sc.forward_vec(), sc.values(weight=weight, input=inp))
    np.testing.assert_array_equal(got.ravel(), out.reshape(-1).numpy())
    yv = _ints(tuple(out.shape), g["seed"] + 2)
    back = CONVT[nd](yv, weight, **sc.torch_kwargs(transpose=True))
    assert back.shape == inp.shape
    got_t = numeric_matrix(sc.transpose_vec(), sc.values(weight=weight, output=yv))
    np.testing.assert_array_equal(got_t.ravel(), back.reshape(-1).numpy())
    if nd <= 2 and cout == 1 and cin == 1:
        assert _diff(
            sc.transpose()[0].reshape(*((1, size[0]) if nd == 1 else size)), sc.transpose()[0]
        )


@given(
    st.integers(1, 4),
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(0, 2),
    st.integers(0, 2),
    st.integers(1, 2),
    st.integers(0, 2**16),
)
def test_conv_transpose_with_output_padding_equals_F(
    i: int, k: int, s: int, p: int, op: int, d: int, seed: int
) -> None:
    assume(op < max(s, d))
    assume((i - 1) * s - 2 * p + d * (k - 1) + op + 1 >= 1)
    sc = symbolic_conv_transpose(
        (i, i + 1),
        k,
        stride=s,
        padding=p,
        output_padding=op,
        dilation=d,
        in_channels=2,
        out_channels=1,
    )
    weight = _ints((2, 1, k, k), seed)
    yv = _ints((1, 2, i, i + 1), seed + 1)
    ref = F.conv_transpose2d(yv, weight, stride=s, padding=p, output_padding=op, dilation=d)
    assert sc.output_padding == (op, op)
    assert (1, *sc.x.shape) == tuple(ref.shape)
    got = numeric_matrix(sc.transpose_vec(), sc.values(weight=weight, output=yv))
    np.testing.assert_array_equal(got.ravel(), ref.reshape(-1).numpy())


@given(geometry)
def test_C_by_diff_equals_direct_C(g: dict) -> None:  # type: ignore[type-arg]
    sc, *_ = _setup(g)
    assume(sc.shape[0] * sc.shape[1] <= 600)
    assert sp.Matrix(sc.C()) == sc.C_by_diff()
    assert sp.Matrix(sc.C(layout="row")) == sc.C_by_diff(layout="row")


def test_non_integer_values_are_exact_rationals() -> None:
    sc = symbolic_conv(3, 2, stride=1, padding=1)
    weight = torch.tensor([[[[0.1, -0.25], [1 / 3, 2.5]]]], dtype=torch.float64)
    inp = torch.tensor(
        [[[[0.3, 0.7, -1.1], [2.0, 0.2, 0.9], [-0.4, 0.5, 0.6]]]], dtype=torch.float64
    )
    vals = sc.values(weight=weight, input=inp)
    assert all(isinstance(v, sp.Rational) for v in vals.values())
    got = numeric_matrix(sc.forward_vec(), vals).ravel()
    ref = F.conv2d(inp, weight, padding=1).reshape(-1).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-15, atol=1e-15)


def test_256x196_direct_C_has_the_right_pattern() -> None:
    sc = symbolic_conv(16, 3)
    c = sc.C(layout="row")
    assert c.shape == (256, 196)
    assert c.nnz() == 196 * 9
    weight = _ints((1, 1, 3, 3), 7)
    dense = conv_matrix(weight, (16, 16), format="dense", layout="row")
    np.testing.assert_array_equal(numeric_matrix(c, sc.values(weight=weight)), dense.numpy())


# ---------------------------------------------------------------------- symbols
def test_symbol_names_channels_and_index_base() -> None:
    sc = symbolic_conv(3, 2, in_channels=2, out_channels=3)
    assert sc.w[2, 1, 0, 1] == sp.Symbol("w_{3,2,12}")
    assert sc.x[1, 2, 0] == sp.Symbol("x^{(l)}_{2,31}")
    assert sc.y[0, 1, 1] == sp.Symbol("x^{(l+1)}_{1,22}")
    z = symbolic_conv(3, 2, index_base=0)
    assert z.w[0, 0, 1, 1] == sp.Symbol("w_{11}")
    assert z.x[0, 0, 0] == sp.Symbol("x^{(l)}_{00}")
    big = symbol_grid("x", (1,), (12, 3))
    assert big[0, 11, 2] == sp.Symbol("x_{12,3}")
    one_d = symbolic_conv((5,), 2)
    assert one_d.forward()[0].shape == (1, 4)
    assert one_d.forward()[0][0, 0] == sp.Symbol("w_{1}") * sp.Symbol("x^{(l)}_{1}") + sp.Symbol(
        "w_{2}"
    ) * sp.Symbol("x^{(l)}_{2}")


def test_groups_block_structure() -> None:
    sc = symbolic_conv(3, 2, in_channels=4, out_channels=2, groups=2)
    c = sp.Matrix(sc.C())
    # output channel 1 reads input channels 1-2 only, output channel 2 input channels 3-4
    assert c[:4, 18:].is_zero_matrix
    assert c[4:, :18].is_zero_matrix
    assert not c[:4, :18].is_zero_matrix


# ---------------------------------------------------------------------- errors
def test_errors_name_the_parameter() -> None:
    with pytest.raises(
        ParameterError,
        match=r"kernel_size: expected an effective kernel \(dilation\*\(kernel-1\)\+1 = 3\) no "
        r"larger than the padded input \(2\+0\+0 = 2\)",
    ):
        symbolic_conv(2, 3)
    with pytest.raises(ParameterError, match=r"groups: expected a divisor of in_channels=3"):
        symbolic_conv(4, 3, in_channels=3, out_channels=2, groups=2)
    with pytest.raises(ParameterError, match=r"index_base: expected 0 or 1, received 2"):
        symbolic_conv(4, 3, index_base=2)
    with pytest.raises(ParameterError, match=r"layout: expected 'torch' or 'row', received 'col'"):
        symbolic_conv(4, 3).C(layout="col")  # type: ignore[arg-type]
    with pytest.raises(
        ParameterError, match=r"output_padding: expected a value smaller than either"
    ):
        symbolic_conv_transpose(3, 3, stride=2, output_padding=2)
    with pytest.raises(
        ParameterError,
        match=r"padding: expected a padding that leaves at least one output of the transposed",
    ):
        symbolic_conv_transpose(2, 3, padding=3)
    with pytest.raises(ParameterError, match=r"stride: expected positive ints, received \(0, 0\)"):
        symbolic_conv(4, 3, stride=0)
    with pytest.raises(ParameterTypeError, match=r"in_channels: expected an int, received str"):
        symbolic_conv(4, 3, in_channels="2")  # type: ignore[arg-type]
    with pytest.raises(
        ParameterError, match=r"weight: expected 9 numbers \(shape \(1, 1, 3, 3\)\)"
    ):
        symbolic_conv(4, 3).values(weight=torch.zeros(2, 2))
    with pytest.raises(ParameterError, match=r"values: expected a number for every symbol"):
        numeric_matrix(
            symbolic_conv(4, 3).forward_vec(), symbolic_conv(4, 3).values(weight=torch.ones(9))
        )


# ====================================================================== rendering and CLI
_SUB = str.maketrans("₀₁₂₃₄₅₆₇₈₉", "0123456789")
_SUP = str.maketrans("⁽ˡ⁺¹⁾", "(l+1)")


def parse_latex_entry(text: str) -> sp.Expr:
    """Our LaTeX entries are sums of products of symbols (names without spaces), or integers."""
    text = text.strip()
    terms = []
    for term in text.split(" + "):
        factors = [
            sp.Integer(f) if re.fullmatch(r"-?\d+", f) else sp.Symbol(f) for f in term.split(" ")
        ]
        terms.append(sp.Mul(*factors))
    return sp.Add(*terms)


def parse_bmatrix(text: str) -> list[list[str]]:
    m = re.search(r"\\begin\{bmatrix\}(.*?)\\end\{bmatrix\}", text, re.S)
    assert m is not None
    return [row.split(" & ") for row in m.group(1).split(r"\\")]


def as_sympy(cells: list[list[str]]) -> sp.Matrix:
    return sp.Matrix([[parse_latex_entry(c) for c in row] for row in cells])


def parse_unicode_name(text: str) -> sp.Symbol:
    """``x⁽ˡ⁺¹⁾₁₂`` -> ``x^{(l+1)}_{12}`` (our names: base, optional superscript, subscript)."""
    m = re.fullmatch(r"([a-z])([⁽ˡ⁺¹⁾]*)([₀-₉,]+)", text)
    assert m is not None, text
    sup = m.group(2).translate(_SUP)
    return sp.Symbol(
        m.group(1) + (f"^{{{sup}}}" if sup else "") + f"_{{{m.group(3).translate(_SUB)}}}"
    )


def parse_unicode_entry(text: str) -> sp.Expr:
    if text in ("·", "0"):
        return sp.Integer(0)
    return sp.Add(
        *[sp.Mul(*[parse_unicode_name(f) for f in t.split("·")]) for t in text.split(" + ")]
    )


# ---------------------------------------------------------------------- the seed through the CLI
def test_cli_latex_carries_the_seed_C_and_transposed_result() -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["symbolic", "--input", "4", "--kernel", "3", "--show", "C"])
    assert res.exit_code == 0, res.output
    assert as_sympy(parse_bmatrix(res.output)) == SEED_C
    res = runner.invoke(
        cli,
        ["symbolic", "--input", "4", "--kernel", "3", "--show", "transpose", "--format", "latex"],
    )
    assert res.exit_code == 0, res.output
    got = as_sympy(parse_bmatrix(res.output))
    assert all(sp.expand(e) == 0 for e in got - SEED_T)
    # each entry is printed exactly as sympy prints the hand-typed seed entry
    cells = [c for row in parse_bmatrix(res.output) for c in row]
    for cell, entry in zip(cells, SEED_T):
        assert cell == sp.latex(entry)


def test_cli_all_sections_unicode_and_markdown() -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["symbolic", "--input", "4", "--kernel", "3", "--format", "unicode"])
    assert res.exit_code == 0, res.output
    for title in (
        "input X^{(l)}",
        "kernel W",
        "conv output",
        "C, row layout",
        "transposed convolution",
    ):
        assert title in res.output
    res = runner.invoke(
        cli, ["symbolic", "--input", "4", "--kernel", "3", "--show", "C", "--format", "markdown"]
    )
    assert res.exit_code == 0, res.output
    rows = [line for line in res.output.splitlines() if line.startswith("| $x")]
    assert len(rows) == 16
    got = sp.Matrix(
        [[parse_latex_entry(c.strip().strip("$")) for c in r.split("|")[2:-1]] for r in rows]
    )
    assert got == SEED_C


def test_cli_torch_layout_zero_based_channels_and_output_padding() -> None:
    runner = CliRunner()
    args = ["symbolic", "--input", "3", "--kernel", "2", "--show", "C", "--layout", "torch"]
    res = runner.invoke(cli, [*args, "--zero-based"])
    assert res.exit_code == 0, res.output
    sc = symbolic_conv(3, 2, index_base=0)
    assert as_sympy(parse_bmatrix(res.output)) == sp.Matrix(sc.C())
    res = runner.invoke(cli, [*args, "--channels", "2,3", "--groups", "1", "--max-cols", "40"])
    assert res.exit_code == 0, res.output
    sc = symbolic_conv(3, 2, in_channels=2, out_channels=3)
    assert as_sympy(parse_bmatrix(res.output)) == sp.Matrix(sc.C())
    res = runner.invoke(
        cli,
        [
            *("symbolic", "--input", "5", "--kernel", "3", "--stride", "2"),
            *("--output-padding", "1", "--show", "transpose"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "output_padding (1, 1)" in res.output
    assert as_sympy(parse_bmatrix(res.output)).shape == (6, 6)


def test_cli_errors_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["symbolic", "--input", "2", "--kernel", "3"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert (
        "kernel_size: expected an effective kernel (dilation*(kernel-1)+1 = 3) no larger than "
        "the padded input (2+0+0 = 2)" in err
    )
    with pytest.raises(SystemExit) as exc:
        main(["symbolic", "--input", "4,x", "--kernel", "3"])
    assert exc.value.code == 2
    assert (
        "--input: expected an int or a comma list of ints (one per spatial dimension, at most 3), received '4,x'"
        in capsys.readouterr().err
    )


# ---------------------------------------------------------------------- renderers
def test_unicode_grid_of_seed_C_parses_back() -> None:
    sc = symbolic_conv(4, 3)
    text = unicode_matrix(sc.C(layout="row"), zero="·")
    lines = text.splitlines()
    assert len(lines) == 16
    assert lines[0][0] == "⎡"
    assert lines[-1][-1] == "⎦"
    got = sp.Matrix([[parse_unicode_entry(c) for c in line[1:-1].split()] for line in lines])
    assert got == SEED_C
    assert unicode_entry(SEED_T[0, 1]) == "w₁₁·x⁽ˡ⁺¹⁾₁₂ + w₁₂·x⁽ˡ⁺¹⁾₁₁"


def test_unicode_labels_name_rows_and_columns() -> None:
    sc = symbolic_conv(4, 3)
    text = unicode_matrix(
        sc.C(layout="row"), zero="·", row_labels=list(sc.x.ravel()), col_labels=list(sc.y.ravel())
    )
    lines = text.splitlines()
    assert [parse_unicode_name(t) for t in lines[0].split()] == list(sc.y.ravel())
    assert [parse_unicode_name(line.split()[0]) for line in lines[1:]] == list(sc.x.ravel())


@given(
    st.integers(3, 30),
    st.integers(3, 30),
    st.integers(2, 8),
    st.integers(2, 8),
)
def test_elision_keeps_head_and_tail(rows: int, cols: int, max_rows: int, max_cols: int) -> None:
    m = sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"a_{{{i},{j}}}"))
    cells = parse_bmatrix(latex_matrix(m, max_rows=max_rows, max_cols=max_cols))
    keep_r = list(range(rows)) if rows <= max_rows else None
    keep_c = list(range(cols)) if cols <= max_cols else None
    assert len(cells) == (rows if keep_r else max_rows + 1)
    assert all(len(r) == (cols if keep_c else max_cols + 1) for r in cells)
    # the first and the last entries are the matrix's own corners
    assert parse_latex_entry(cells[0][0]) == m[0, 0]
    assert parse_latex_entry(cells[-1][-1]) == m[rows - 1, cols - 1]
    if keep_r is None:
        head = (max_rows + 1) // 2
        assert cells[head][0] == r"\vdots"
        assert parse_latex_entry(cells[head - 1][0]) == m[head - 1, 0]
        assert parse_latex_entry(cells[head + 1][0]) == m[rows - (max_rows - head), 0]
    if keep_c is None:
        head = (max_cols + 1) // 2
        assert cells[0][head] == r"\cdots"
    if keep_r is None and keep_c is None:
        assert cells[(max_rows + 1) // 2][(max_cols + 1) // 2] == r"\ddots"


def test_blocks_reassemble_the_matrix() -> None:
    c = symbolic_conv(5, 3, stride=2, padding=1).C(layout="row")
    text = render_matrix(c, "latex", max_rows=7, max_cols=4, blocks=True)
    heads = re.findall(r"% rows (\d+)-(\d+), columns (\d+)-(\d+):", text)
    bodies = re.findall(r"\\begin\{bmatrix\}.*?\\end\{bmatrix\}", text, re.S)
    assert len(heads) == len(bodies) == 4 * 3  # ceil(25/7) x ceil(9/4)
    rebuilt = sp.zeros(*c.shape)
    for (r0, r1, c0, c1), body in zip(heads, bodies):
        block = as_sympy(parse_bmatrix(body))
        assert block.shape == (int(r1) - int(r0) + 1, int(c1) - int(c0) + 1)
        rebuilt[int(r0) - 1 : int(r1), int(c0) - 1 : int(c1)] = block
    assert rebuilt == sp.Matrix(c)


def test_markdown_and_repr_latex() -> None:
    m = sp.Matrix([[sp.Symbol("w_{11}"), 0], [0, sp.Symbol("w_{22}")]])
    lines = markdown_matrix(m).splitlines()
    assert lines[0] == "| 1 | 2 |"
    assert lines[2] == "| $w_{11}$ | $0$ |"
    sc = symbolic_conv(4, 3)
    rep = sc._repr_latex_()
    assert rep.startswith("$$C = ")
    assert as_sympy(parse_bmatrix(rep)) == SEED_C
    assert "\\vdots" in symbolic_conv(16, 3)._repr_latex_()


def test_render_errors() -> None:
    sc = symbolic_conv(4, 3)
    with pytest.raises(ParameterError, match=r"show: expected one of C, forward, transpose, all"):
        render(sc, "weights")
    with pytest.raises(ParameterError, match=r"format: expected one of latex, unicode, markdown"):
        render(sc, "C", "html")
    with pytest.raises(ParameterError, match=r"max_cols: expected an int >= 2 or None, received 1"):
        render(sc, "C", max_cols=1)
