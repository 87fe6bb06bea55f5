"""Direct construction of the symbolic conv matrix C vs the seed's differentiation.

The seed builds the conv output with sympy (``MatrixSymbol`` slices, ``multiply_elementwise``)
and differentiates it by the input; on sympy >= 1.13 ``Matrix.diff(Matrix)`` returns an array,
so the seed's final ``reshape`` + ``@`` needs ``Matrix(Array(...))`` (done here). convlens
builds C straight from the integer index pattern, O(nnz). Both results are checked equal.

    python benchmarks/bench_symbolic.py            # input 16, kernel 3: C is 256x196
    python benchmarks/bench_symbolic.py --quick    # input 8, kernel 3: C is 64x36

Timings are ratios against the seed's method measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import sympy as sp
from sympy import Matrix, MatrixSymbol

from convlens.index import clear_caches
from convlens.symbolic import symbol_grid, symbolic_conv


def seed_convolution(x: MatrixSymbol, w: MatrixSymbol, K: int, N: int) -> Matrix:
    """The seed post's ``convolution`` function, verbatim."""
    res = []
    for i in range(N - K + 1):
        for j in range(N - K + 1):
            a = sum(Matrix(x)[i : (K + i), j : (K + j)].multiply_elementwise(Matrix(w)))
            res.append(a)
    return Matrix(res).reshape(N - K + 1, N - K + 1)


def seed_C(N: int, K: int) -> tuple[Matrix, MatrixSymbol]:
    """The seed's C (row layout), fixed for sympy >= 1.13 (diff of a Matrix by a Matrix is an
    array of shape (N*N, 1, 1, O*O) there)."""
    x_input = MatrixSymbol("x^{(l)}", N, N)
    w = MatrixSymbol("w", K, K)
    n_out = (N - K + 1) ** 2
    output = seed_convolution(x_input, w, K=K, N=N)
    raw = output.reshape(1, n_out).diff(Matrix(x_input).reshape(N * N, 1))
    return Matrix(sp.Array(raw).reshape(N * N, n_out)), w


def timed(fn, repeat: int = 1):  # type: ignore[no-untyped-def]
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="input 8 instead of 16")
    ap.add_argument("--input", type=int, default=None)
    ap.add_argument("--kernel", type=int, default=3)
    args = ap.parse_args()
    N = args.input or (8 if args.quick else 16)
    K = args.kernel
    print(f"sympy {sp.__version__}; input {N}x{N}, kernel {K}x{K}")

    def direct():  # type: ignore[no-untyped-def]
        clear_caches()  # cold: no cached pattern or symbols
        symbol_grid.cache_clear()
        return symbolic_conv(N, K).C(layout="row")

    t_direct, c_direct = timed(direct, repeat=3)
    print(
        f"direct (index pattern, cold):   {t_direct:8.3f} s   C {c_direct.shape}, nnz {c_direct.nnz()}"
    )
    t_jac, c_jac = timed(lambda: symbolic_conv(N, K).C_by_diff(layout="row"))
    print(f"convlens C_by_diff (jacobian):  {t_jac:8.3f} s")
    t_seed, (c_seed, w) = timed(lambda: seed_C(N, K))
    print(f"seed (slice + Matrix.diff):     {t_seed:8.3f} s")

    # the three agree entry for entry (seed symbols w[a, b] renamed to ours)
    sc = symbolic_conv(N, K)
    rename = {w[a, b]: sc.w[0, 0, a, b] for a in range(K) for b in range(K)}
    assert c_seed.xreplace(rename) == Matrix(c_direct), "seed C differs from the direct C"
    assert c_jac == Matrix(c_direct), "C_by_diff differs from the direct C"
    print("all three C agree entry for entry")
    print(f"speed-up of direct over the seed's method: {t_seed / t_direct:,.0f}x")
    print(f"speed-up of direct over C_by_diff:          {t_jac / t_direct:,.0f}x")


if __name__ == "__main__":
    main()
