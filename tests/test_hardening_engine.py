"""Issue 15, the engine's part: what a hostile user can throw at conv_matrix, the transposed-conv
routes, the symbolic C, the figures and ``convlens arith|transpose|symbolic|figure``.

Grouped by class: (1) sizes estimated and refused *before* anything is allocated, with the
estimate, the limit and the keyword/option that raises it; the estimates checked against
independent references (PyTorch's own output shapes on the meta device, autograd Jacobians,
PIL's frame count, brute force); (2) dtypes and devices of the routes' tensors; (3) every
hostile command line ends in one ``convlens: error: ...`` line with exit status 2, never a
traceback, never a hang (each call bounded by an alarm).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from convlens.arithmetic import (
    LayerSpec,
    colliding_input_sizes,
    colliding_size_ranges,
    input_size_ranges,
    input_sizes_for,
    invert_conv,
)
from convlens.cli import main
from convlens.errors import ConvLensError, ParameterError, ParameterTypeError
from convlens.figures import (
    MAX_CELLS,
    conv_frames,
    conv_scene,
    fractional_scene,
    matrix_entries,
    matrix_scene,
    save_scene,
    scatter_scene,
    transpose_scatter_frames,
)
from convlens.figures import draw as figures_draw
from convlens.index import axis_triples, check_budget, conv_entries, grid_triples
from convlens.matrix import conv_geometry, conv_matrix, conv_matrix_nbytes, nnz_upper_bound
from convlens.symbolic import MAX_ENTRIES, printed_entries, render, symbolic_conv, symbolic_size
from convlens.transpose import ROUTES, conv_transpose_matmul, verify_routes

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


@contextmanager
def bounded(seconds: int = 120) -> Iterator[None]:
    """Fail (instead of hanging the suite) if the block runs longer than ``seconds``."""

    def stop(signum, frame):  # type: ignore[no-untyped-def]
        raise TimeoutError(f"no answer within {seconds} s: a hang")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def meta_conv_shape(x_shape, w_shape, **kw) -> tuple[int, ...]:
    """PyTorch's own output shape (meta tensors: nothing is allocated)."""
    x = torch.empty(x_shape, device="meta")
    w = torch.empty(w_shape, device="meta")
    return tuple(CONV[len(w_shape) - 2](x, w, **kw).shape)


# =============================================================================================
# 1. Sizes: estimated and refused before allocating, with the estimate and the limit
# =============================================================================================


def test_conv_matrix_of_an_absurd_size_is_refused_with_its_sizes_and_estimate():
    w = torch.zeros(64, 3, 3, 3)
    with bounded(60), pytest.raises(ParameterError) as info:
        conv_matrix(w, 100_000, padding=1)
    err = info.value
    _, c_out, h, wd = meta_conv_shape((1, 3, 100_000, 100_000), w.shape, padding=1)
    rows, cols = c_out * h * wd, 3 * 100_000**2
    assert err.param == "max_bytes"
    msg = str(err)
    assert f"C of shape ({rows}, {cols})" in msg
    # every output pixel away from the border reads 3*3*3 inputs: nnz <= rows * 27
    nnz = int(re.search(r"with up to ([\d,]+) non-zeros", msg)[1].replace(",", ""))
    assert (rows - 4 * c_out * 100_000) * 27 <= nnz <= rows * 27
    assert re.search(r"at most 2\.0 GiB|at most \d+\.\d \w+", msg)  # the limit
    assert re.search(r"about [\d.]+ TiB", msg)  # the estimate
    assert "max_bytes" in msg
    assert "--max-bytes" in msg


@given(
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(1, 2),
    st.integers(0, 2),
    st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
    st.integers(4, 7),
)
def test_nnz_estimate_is_the_jacobians_support_and_bytes_cover_the_result(k, s, d, p, mode, n):
    if mode != "zeros" and p >= n:
        return
    w = torch.randn(2, 2, k, k, dtype=torch.float64)
    try:
        geom = conv_geometry(tuple(w.shape), n, stride=s, padding=p, dilation=d, padding_mode=mode)
    except ParameterError:
        return  # the kernel does not fit; refused as PyTorch refuses it
    conv = torch.nn.Conv2d(2, 2, k, s, p, d, bias=False, padding_mode=mode).double()
    conv.weight.data.copy_(w)
    jac = torch.autograd.functional.jacobian(
        lambda x: conv(x.reshape(1, 2, n, n)).reshape(-1), torch.randn(2 * n * n).double()
    )
    support = int((jac != 0).sum())
    bound = nnz_upper_bound(geom)
    assert support == bound if mode == "zeros" else support <= bound
    C = conv_matrix(w, n, stride=s, padding=p, dilation=d, padding_mode=mode)
    actual = sum(
        t.numel() * t.element_size() for t in (C.crow_indices(), C.col_indices(), C.values())
    )
    assert actual <= conv_matrix_nbytes(geom, w.dtype)


def test_max_bytes_raises_the_limit_exactly_at_the_estimate():
    w = torch.randn(3, 2, 3, 3)
    need = conv_matrix_nbytes(conv_geometry(tuple(w.shape), 9), w.dtype, "dense")
    with pytest.raises(ParameterError, match=r"max_bytes: expected a conv matrix of at most"):
        conv_matrix(w, 9, format="dense", max_bytes=need - 1)
    got = conv_matrix(w, 9, format="dense", max_bytes=need)
    ref = torch.autograd.functional.jacobian(
        lambda x: F.conv2d(x.reshape(1, 2, 9, 9), w).reshape(-1), torch.zeros(2 * 81)
    )
    assert torch.allclose(got, ref)
    with pytest.raises(ParameterTypeError, match="max_bytes: expected an int"):
        conv_matrix(w, 9, max_bytes=2.5e9)


def test_the_matmul_and_scatter_routes_refuse_an_absurd_pattern_before_building_it():
    x, w = torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 3, 3)
    with bounded(60):
        with pytest.raises(ParameterError, match=r"max_bytes: expected a conv matrix"):
            conv_transpose_matmul(x, w, stride=2, max_bytes=1000)
        with pytest.raises(ParameterError, match=r"max_bytes: expected n-D index triples"):
            ROUTES["scatter"](x, w, stride=2, max_bytes=1000)
    ref = F.conv_transpose2d(x + 1, w + 1, stride=2)
    assert torch.equal(conv_transpose_matmul(x + 1, w + 1, stride=2), ref)


def test_the_index_engine_refuses_absurd_triples_before_allocating():
    with bounded(60):
        with pytest.raises(ParameterError, match=r"max_bytes: expected index triples") as info:
            axis_triples(10**12, 3)
        assert "999,999,999,998 outputs x 3 taps" in str(info.value)
        axes = [axis_triples(2000, 3)] * 3
        with pytest.raises(ParameterError, match=r"max_bytes: expected n-D index triples"):
            grid_triples(axes)
        small = grid_triples([axis_triples(4, 3)])
        with pytest.raises(ParameterError, match=r"max_bytes: expected the entries of C"):
            conv_entries(small, 10**6, 10**6)
    assert len(axis_triples(5, 3)) == 9  # and the ordinary sizes pass


def test_symbolic_input_1000_is_refused_at_once_with_the_estimate():
    # issue 15: `symbolic --input 1000` ran 93 s and took 4 GB before printing an elided matrix
    with bounded(60), pytest.raises(ParameterError) as info:
        symbolic_conv(1000, 3)
    _, _, oh, ow = meta_conv_shape((1, 1, 1000, 1000), (1, 1, 3, 3))
    rows, cols = oh * ow, 1000 * 1000
    nnz = rows * 9  # no padding: every output reads all nine taps
    symbols = rows + cols + 9
    msg = str(info.value)
    assert info.value.param == "max_entries"
    assert f"C of shape ({rows}, {cols}) with {nnz:,} non-zeros and {symbols:,} symbols" in msg
    assert f"{nnz + symbols:,} entries" in msg
    assert f"at most {MAX_ENTRIES:,} entries" in msg
    assert "--max-entries" in msg


@given(
    st.integers(3, 6), st.integers(1, 3), st.integers(1, 2), st.integers(0, 1), st.integers(1, 2)
)
def test_symbolic_size_is_what_gets_built(n, k, s, p, c):
    sc = symbolic_conv(n, k, stride=s, padding=p, in_channels=c, out_channels=2)
    (rows, cols), nnz, symbols = symbolic_size(sc.spec, sc.size)
    by_diff = sc.C_by_diff()  # sympy's own Jacobian of the sliding-window output
    assert (rows, cols) == by_diff.shape
    assert nnz == sum(1 for v in by_diff if v != 0)
    assert symbols == sc.x.size + sc.y.size + sc.w.size


def test_max_entries_raises_the_symbolic_limit():
    (_, _), nnz, symbols = symbolic_size(LayerSpec.conv(3), 6)
    with pytest.raises(ParameterError, match="max_entries"):
        symbolic_conv(6, 3, max_entries=nnz + symbols - 1)
    sc = symbolic_conv(6, 3, max_entries=nnz + symbols)
    assert sc.C().nnz() == nnz
    with pytest.raises(ParameterError, match=r"max_entries: expected a Jacobian"):
        sc.C_by_diff(max_entries=10)


def test_printed_entries_are_counted_before_rendering():
    sc = symbolic_conv(4, 3)
    # blocks print every entry: count the Markdown table cells of C (row layout: 16 x 4)
    text = render(sc, "C", "markdown", max_rows=5, max_cols=3, blocks=True)
    body = [line for line in text.splitlines() if line.startswith("| $x")]  # labelled rows
    cells = sum(line.count("|") - 2 for line in body)  # minus the label column
    assert cells == printed_entries(sc, "C", max_rows=5, max_cols=3, blocks=True) == 16 * 4
    with pytest.raises(ParameterError, match=r"max_entries: expected a printed derivation"):
        render(sc, "C", "markdown", blocks=True, max_entries=63)
    big = symbolic_conv(60, 3)  # allowed to exist (its C is built only on use) ...
    with bounded(60), pytest.raises(ParameterError) as info:
        render(big, "C", blocks=True)  # ... not to be printed whole
    rows, cols = meta_conv_shape((1, 1, 60, 60), (1, 1, 3, 3))[-1] ** 2, 3600
    assert f"C of shape ({cols}, {rows}) in blocks: {rows * cols:,} printed entries" in str(
        info.value
    )
    assert printed_entries(big, "C") == 32 * 16  # elided: the kept rows and columns


def test_figure_cells_are_refused_before_building_and_match_pytorchs_sizes():
    with bounded(60), pytest.raises(ParameterError) as info:
        conv_frames(1000, 3)
    _, _, oh, ow = meta_conv_shape((1, 1, 1000, 1000), (1, 1, 3, 3))
    cells = 1000 * 1000 + 9 + oh * ow
    assert info.value.param == "max_cells"
    assert f"{cells:,} cells" in str(info.value)
    assert "--max-cells" in str(info.value)
    with bounded(60):
        with pytest.raises(ParameterError, match="max_cells"):
            transpose_scatter_frames(5, 3, stride=100_000)
        with pytest.raises(ParameterError, match="max_cells"):
            matrix_entries(5, 3, padding=100_000)  # a dense C of 8e10 x 25 entries
    # within the limit: the frames are PyTorch's output pixels
    f = conv_frames(7, 3, stride=2, padding=1, max_cells=200)
    _, _, oh, ow = meta_conv_shape((1, 1, 7, 7), (1, 1, 3, 3), stride=2, padding=1)
    assert f.n_frames == oh * ow
    with pytest.raises(ParameterError, match="max_cells"):
        conv_frames(7, 3, stride=2, padding=1, max_cells=81 + 9 + oh * ow - 1)


def test_a_gif_over_max_frames_is_refused_before_any_frame_is_drawn(tmp_path, monkeypatch):
    drawn: list[int] = []
    rgb = figures_draw.Scene.rgb
    monkeypatch.setattr(
        figures_draw.Scene, "rgb", lambda self, k=0: drawn.append(k) or rgb(self, k)
    )
    scene = conv_scene(5, 3)
    out = tmp_path / "conv.gif"
    with pytest.raises(ParameterError, match=r"max_frames: expected an animation of at most 8"):
        save_scene(scene, out, max_frames=8)
    assert drawn == []
    assert not out.exists()
    with pytest.raises(ParameterError, match="max_frames"):
        conv_scene(5, 3, max_frames=8)  # the CLI asks before the scene is built
    save_scene(scene, out, max_frames=9)
    assert drawn == list(range(9))
    with Image.open(out) as gif:
        assert gif.n_frames == 9 == meta_conv_shape((1, 1, 5, 5), (1, 1, 3, 3))[-1] ** 2


@pytest.mark.parametrize("fps", [0, -1, 1e-300, 1000, float("inf"), float("nan")])
def test_gif_speed_is_bounded(tmp_path, fps):
    with pytest.raises(ParameterError, match=r"fps: expected a number from 0.01 to 100"):
        save_scene(conv_scene(3, 2), tmp_path / "a.gif", fps=fps)
    assert not (tmp_path / "a.gif").exists()


def test_gif_speed_of_the_wrong_type():
    with pytest.raises(ParameterTypeError, match="fps"):
        save_scene(conv_scene(3, 2), "a.gif", fps=True)


@pytest.mark.parametrize(
    "make",
    [
        lambda n: conv_scene(n, 3),
        lambda n: scatter_scene(max(1, n // 3), 3, stride=2),
        lambda n: fractional_scene(max(1, n // 3), 3, stride=2),
        lambda n: matrix_scene(min(n, 30), 3),
    ],
)
def test_the_picture_scale_is_bounded_for_every_size_the_limits_allow(make):
    # the largest conv picture within MAX_CELLS: (n^2 + 9 + (n-2)^2 <= MAX_CELLS)
    biggest = max(n for n in range(3, 200) if n * n + 9 + (n - 2) ** 2 <= MAX_CELLS)
    for n in (4, 12, biggest):
        scene = make(n)
        width, height = scene.fig.get_size_inches() * scene.fig.dpi
        assert 100 <= width <= 1200, (n, width)
        assert 100 <= height <= 1200, (n, height)


def test_colliding_sizes_of_a_huge_stride_are_ranges_checked_by_pytorch():
    spec = LayerSpec.conv(3, stride=10**9, ndim=1)
    with bounded(60):
        (r,) = input_size_ranges(spec, 2)

    def length(i: int) -> int:
        return meta_conv_shape((1, 1, i), (1, 1, 3), stride=10**9)[-1]

    assert (length(r.start - 1), length(r.start), length(r.stop - 1), length(r.stop)) == (
        1,
        2,
        2,
        3,
    )
    with pytest.raises(ParameterError, match=r"max_sizes: expected a list of input sizes"):
        input_sizes_for(spec, 2)
    inv = invert_conv(spec, 10**9 + 5)
    assert inv.colliding_ranges == (r,)
    assert inv.ambiguous
    assert colliding_size_ranges(spec, 10**9 + 5) == (r,)
    with pytest.raises(ParameterError, match="max_sizes"):
        colliding_input_sizes(spec, 10**9 + 5)
    small = LayerSpec.conv(3, stride=1000, ndim=1)
    assert colliding_input_sizes(small, 2500, max_sizes=1000) == (
        tuple(
            i
            for i in range(2000, 3010)
            if meta_conv_shape((1, 1, i), (1, 1, 3), stride=1000)[-1] == 3
        ),
    )
    with pytest.raises(ParameterError, match="max_sizes"):
        colliding_input_sizes(small, 2500, max_sizes=999)


@given(st.integers(1, 4), st.integers(1, 4), st.integers(0, 2), st.integers(1, 2), st.booleans())
def test_size_ranges_are_every_size_pytorch_maps_there(k, s, p, d, pool):
    spec = (
        LayerSpec.max_pool(k, s, min(p, k // 2), d, ceil_mode=True, ndim=1)
        if pool
        else LayerSpec.conv(k, s, p, d, ndim=1)
    )
    op = F.max_pool1d if pool else F.conv1d

    def length(i: int) -> int | None:
        x = torch.zeros(1, 1, i)
        try:
            if pool:
                return op(x, k, s, min(p, k // 2), d, ceil_mode=True).shape[-1]
            return op(x, torch.zeros(1, 1, k), stride=s, padding=p, dilation=d).shape[-1]
        except RuntimeError:
            return None

    lengths = {i: length(i) for i in range(1, 40)}
    for o in range(1, 8):
        brute = tuple(i for i, v in lengths.items() if v == o)
        if brute and max(brute) < 39:
            assert tuple(input_size_ranges(spec, o)[0]) == brute


def test_the_budget_check_names_the_limit_the_sizes_and_the_estimate():
    assert check_budget(5, 5, param="max_cells", what="x", received="y", unit="cells") == 5
    with pytest.raises(ParameterError) as info:
        check_budget(3 * 2**30, 2**30, param="max_bytes", what="a thing", received="1 x 2")
    assert str(info.value) == (
        "max_bytes: expected a thing of at most 1.0 GiB, received 1 x 2: about 3.0 GiB. "
        "Pass a larger max_bytes (command line: --max-bytes) to allow it"
    )
    with pytest.raises(ParameterError, match="max_bytes: expected a positive int"):
        check_budget(1, 0, param="max_bytes", what="x", received="y")


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"tol": -1.0}, "tol"),
        ({"tol": float("nan")}, "tol"),
        ({"tol": float("inf")}, "tol"),
        ({"seed": 2**70}, "seed"),
        ({"dims": True}, "dims"),
        ({"max_bytes": 1000}, "max_bytes"),
        ({"input_size": 100_000}, "max_bytes"),
        ({"dilation": 100_000}, "max_bytes"),
    ],
)
def test_verify_routes_checks_everything_before_making_a_tensor(kwargs, param, monkeypatch):
    made: list[tuple] = []
    randn = torch.randn
    monkeypatch.setattr(torch, "randn", lambda *a, **k: made.append(a) or randn(*a, **k))
    args = {"input_size": 5, "kernel_size": 3, **kwargs}
    with bounded(60), pytest.raises(ParameterError) as info:
        verify_routes(args.pop("input_size"), args.pop("kernel_size"), **args)
    assert info.value.param == param
    assert made == []


def test_verify_routes_tol_of_the_wrong_type():
    with pytest.raises(ParameterTypeError, match="tol"):
        verify_routes(5, 3, tol="1e-9")
    with pytest.raises(ParameterTypeError, match="tol"):
        verify_routes(5, 3, tol=True)


# =============================================================================================
# 2. The routes' tensors: one dtype, one device, floating point or complex
# =============================================================================================


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
def test_every_route_refuses_integer_and_bool_tensors_alike(route, dtype):
    x, w = torch.ones(1, 2, 3, 3, dtype=dtype), torch.ones(2, 2, 3, 3, dtype=dtype)
    with pytest.raises(ParameterTypeError) as info:
        ROUTES[route](x, w, stride=2)
    name = str(dtype).removeprefix("torch.")
    assert str(info.value) == (
        "weight: expected a floating-point or complex tensor (float16, bfloat16, float32, "
        f"float64, complex64, complex128), received Tensor. weight has dtype {name}"
    )


@pytest.mark.parametrize("route", list(ROUTES))
def test_every_route_refuses_mixed_dtypes_and_devices_naming_the_tensor(route):
    x, w, b = torch.ones(1, 2, 3, 3), torch.ones(2, 2, 3, 3), torch.ones(2)
    with pytest.raises(RuntimeError):  # PyTorch refuses the mix too (with its own words)
        F.conv_transpose2d(x.double(), w)
    cases = [
        ((x.double(), w, None), "input", r"the weight's dtype float32.*input has dtype float64"),
        ((x, w, b.half()), "bias", r"the weight's dtype float32.*bias has dtype float16"),
        ((x.to("meta"), w, None), "input", r"on the weight's device cpu.*input is on device meta"),
        ((x, w, b.to("meta")), "bias", r"on the weight's device cpu.*bias is on device meta"),
        ((x.to("meta"), w.to("meta"), None), "weight", r"not on the meta device"),
    ]
    for args, param, message in cases:
        with pytest.raises(ParameterTypeError) as info:
            ROUTES[route](*args, stride=2)
        assert info.value.param == param
        assert re.search(message, str(info.value)), str(info.value)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_supported_on_every_route(dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 4, generator=gen).to(dtype)
    w = torch.randn(3, 2, 3, 3, generator=gen).to(dtype)
    b = torch.randn(2, generator=gen).to(dtype)
    kw = {"stride": 2, "padding": 1, "output_padding": 1}
    ref = F.conv_transpose2d(x.double(), w.double(), b.double(), **kw)
    eps = torch.finfo(dtype).eps
    for name, route in ROUTES.items():
        y = route(x, w, b, **kw)
        assert y.dtype == dtype, name
        assert y.shape == ref.shape, name
        # a few roundings in the working precision: within a few units in the last place
        assert ((y.double() - ref).abs() <= 4 * eps * (ref.abs() + 1)).all(), name
    # matmul computes in float32 and rounds once: the correctly rounded float32 result
    y32 = F.conv_transpose2d(x.float(), w.float(), b.float(), **kw)
    assert ((conv_transpose_matmul(x, w, b, **kw).double() - y32.double()).abs()
            <= eps * y32.double().abs()).all()  # fmt: skip


def test_complex_tensors_on_every_route():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 4, 4, dtype=torch.complex128, generator=gen)
    w = torch.randn(2, 3, 3, 3, dtype=torch.complex128, generator=gen)
    ref = F.conv_transpose2d(x, w, stride=2, padding=1)
    for name, route in ROUTES.items():
        assert torch.allclose(route(x, w, stride=2, padding=1), ref), name


# =============================================================================================
# 3. The command line: one line, exit 2, bounded, whatever the input
# =============================================================================================

HOSTILE: list[tuple[str, str]] = [
    # arith
    ("arith conv --input -5 --kernel 3", r"input_size: expected positive ints"),
    ("arith conv --input 0 --kernel 3", r"input_size: expected positive ints"),
    ("arith conv --input nan --kernel 3", r"--input: expected an int or a comma list"),
    ("arith conv --input inf --kernel 3", r"--input: expected an int"),
    ("arith conv --input 5.5 --kernel 3", r"--input: expected an int"),
    ("arith conv --input true --kernel 3", r"--input: expected an int"),
    ("arith conv --input , --kernel 3", r"--input: expected an int"),
    ("arith conv --input 1,2,3,4 --kernel 3", r"--input: expected .*at most 3.*'1,2,3,4'"),
    ("arith conv --input \uff15 --kernel 3", r"--input: expected an int"),  # fullwidth 5
    ("arith conv --input " + "9" * 5000 + " --kernel 3", r"--input: expected an int"),
    ("arith conv --input 5 --kernel 3 --stride --5", r"--stride: expected an int"),
    ("arith conv --input 5 --kernel 3 --dilation 1000000000000", r"kernel_size: expected an "),
    ("arith conv --input 5 --kernel 3 --stride 2 --padding SAME", r"stride: expected 1 in every"),
    ("arith conv --input 5 --kernel 3,3 --dims 1", r"kernel_size: expected an int or a sequence"),
    ("arith transpose --input 5 --kernel 3 --output-padding -1", r"output_padding: expected non"),
    ("arith transpose --input 5 --kernel 3 --padding 10", r"padding: expected a padding that"),
    ("arith transpose --input 5 --kernel 3 --padding same", r"--padding: expected an int"),
    (
        "arith transpose --input 99999999999 --kernel 3 --stride 99999999 --dims 1",
        r"max_\w+: expected",
    ),
    ("arith pool --input 5 --kernel 3 --padding 5", r"padding: expected at most half"),
    ("arith pool --input 5 --kernel 0", r"kernel_size: expected positive ints"),
    # transpose verify
    ("transpose verify --input 1,2,3,4", r"--input: expected .*at most 3"),
    ("transpose verify --tol -1", r"tol: expected a finite number >= 0, received -1.0"),
    ("transpose verify --tol nan", r"tol: expected a finite number >= 0, received nan"),
    ("transpose verify --tol inf", r"tol: expected a finite number >= 0, received inf"),
    ("transpose verify --input 100000", r"max_bytes: expected a verification run .*TiB"),
    ("transpose verify --dilation 100000", r"max_bytes: expected a verification run"),
    ("transpose verify --batch 100000 --input 100", r"max_bytes: expected a verification run"),
    ("transpose verify --max-bytes 0", r"max_bytes: expected a positive int"),
    ("transpose verify --channels 0", r"channels: expected positive multiples"),
    ("transpose verify --channels 1,2,3", r"--channels: expected .*C, or C_IN,C_OUT"),
    ("transpose verify --groups 0", r"groups: expected a positive int"),
    ("transpose verify --output-padding 5", r"output_padding: expected a value smaller"),
    ("transpose verify --seed 99999999999999999999999", r"seed: expected an int from"),
    # symbolic
    ("symbolic --input 1000 --kernel 3", r"max_entries: expected a symbolic convolution"),
    ("symbolic --input 5 --kernel 3 --channels 1000", r"max_entries: expected a symbolic"),
    ("symbolic --input 5 --kernel 3 --channels 1,2,3", r"--channels: expected"),
    ("symbolic --input 5 --kernel 3 --padding 100000", r"max_entries: expected a symbolic"),
    ("symbolic --input 5 --kernel 3 --max-entries -1", r"max_entries: expected a positive int"),
    ("symbolic --input 5 --kernel 3 --max-rows 1", r"max_rows: expected an int >= 2"),
    ("symbolic --input 5 --kernel 3 --output-padding 5", r"output_padding: expected a value"),
    ("symbolic --input 1,2,3,4 --kernel 3", r"--input: expected .*at most 3"),
    ("symbolic --input 5 --kernel 3 --groups 2", r"groups: expected a divisor"),
    ("symbolic --input 60 --kernel 3 --blocks", r"max_entries: expected a printed derivation"),
    (
        "symbolic --input 60 --kernel 3 --max-rows 9999 --max-cols 9999",
        r"max_entries: expected a printed derivation",
    ),
    # figure
    ("figure conv --input 1000 --kernel 3 --out OUT/a.gif", r"max_cells: expected a figure"),
    ("figure conv --input 30 --kernel 3 --out OUT/a.gif", r"max_frames: expected an animation"),
    ("figure conv --input 5 --kernel 3 --out OUT/a.gif --fps inf", r"fps: expected a number"),
    ("figure conv --input 5 --kernel 3 --out OUT/a.gif --fps 1e-300", r"fps: expected a number"),
    ("figure conv --input 5 --kernel 3 --out OUT/a.gif --fps nan", r"fps: expected a number"),
    ("figure conv --input 5 --kernel 3 --padding 100000 --out OUT/a.png", r"max_cells"),
    ("figure conv --input 5 --kernel 3 --out OUT/a.txt", r"out: expected a path ending in"),
    (
        "figure conv --input 5 --kernel 3 --out /proc/convlens.png",  # not writable: --out named
        r"out: expected a path in a folder convlens can write, received '/proc/convlens.png'",
    ),
    ("figure conv --input 5,5,5 --kernel 3 --out OUT/a.png", r"input_size: expected .*2-D"),
    ("figure conv --input 5 --kernel 3 --out OUT/a.png --frame 100", r"frame: expected an int"),
    ("figure conv --input 5 --kernel 3 --out OUT/a.png --max-cells 0", r"max_cells: expected a"),
    ("figure conv --input 5 --kernel 3 --out OUT/a.gif --max-frames 0", r"max_frames: expected"),
    ("figure transpose --input 5 --kernel 3 --stride 100000 --out OUT/a.png", r"max_cells"),
    (
        "figure transpose --input 5 --kernel 3 --view fractional --dilation 50000 --out OUT/a.png",
        r"max_cells",
    ),
    ("figure matrix --input 300 --kernel 3 --out OUT/m.png", r"max_cells: .*1,000,000 cells"),
    ("figure matrix --input 300 --kernel 3 --view connections --out OUT/m.png", r"max_cells"),
]


def _invoke(args: list[str]) -> tuple[int, str, str]:
    """``convlens ARGS`` in-process, its output captured by click's test runner."""
    runner = CliRunner()
    with runner.isolation() as (out, err, _), bounded(120):
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue().decode(), err.getvalue().decode()


@pytest.mark.parametrize(("line", "message"), HOSTILE, ids=[c[0][:60] for c in HOSTILE])
def test_hostile_command_lines_end_in_one_line_and_exit_2(tmp_path, line, message):
    args = [a.replace("OUT", str(tmp_path)) for a in line.split(" ")]
    code, _, err = _invoke(args)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("convlens: error: "), err
    assert "Traceback" not in err
    assert re.search(message, lines[0]), lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing half-written


@pytest.mark.parametrize(
    "line",
    [
        "symbolic --input 1000 --kernel 3",
        "arith conv --input 1,2,3,4 --kernel 3",
        "transpose verify --tol nan",
        "figure conv --input 1000 --kernel 3 --out OUT/a.gif",
        "arith transpose --input 99999999999 --kernel 3 --stride 99999999 --dims 1",
    ],
)
def test_hostile_command_lines_in_a_real_process(tmp_path, line):
    args = [a.replace("OUT", str(tmp_path)) for a in line.split(" ")]
    proc = subprocess.run(
        [sys.executable, "-m", "convlens", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("convlens: error: "), proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_same_padding_in_any_case_on_the_command_line_is_same(tmp_path):
    # the CLI reads words case-insensitively; the library is strict, as PyTorch
    code, upper, _ = _invoke(
        ["arith", "conv", "--input", "7", "--kernel", "4", "--padding", "SAME"]
    )
    code2, lower, _ = _invoke(
        ["arith", "conv", "--input", "7", "--kernel", "4", "--padding", "same"]
    )
    assert code == code2 == 0
    assert upper == lower
    size = F.conv2d(torch.zeros(1, 1, 7, 7), torch.zeros(1, 1, 4, 4), padding="same").shape
    assert f"input 7 x 7 -> output {size[-2]} x {size[-1]}" in upper
    with pytest.raises(ValueError, match="Invalid padding string 'SAME'"):
        torch.nn.Conv2d(1, 1, 4, padding="SAME")
    with pytest.raises(ParameterError, match="padding: expected an int, a tuple of ints, 'same'"):
        LayerSpec.conv(4, padding="SAME")


def test_raised_limits_on_the_command_line_let_the_work_through(tmp_path):
    (_, _), nnz, symbols = symbolic_size(LayerSpec.conv(3), 12)
    args = ["symbolic", "--input", "12", "--kernel", "3", "--show", "C", "--max-entries"]
    code, _, err = _invoke([*args, str(nnz + symbols - 1)])
    assert code == 2
    assert "max_entries" in err
    code, out, _ = _invoke([*args, str(nnz + symbols)])
    assert code == 0
    assert "C, row layout (in, out) = (144, 100)" in out
    gif = tmp_path / "a.gif"
    code, _, err = _invoke(["figure", "conv", "--input", "5", "--kernel", "3", "--out", str(gif),
                            "--max-frames", "8"])  # fmt: skip
    assert code == 2
    assert "max_frames" in err
    assert not gif.exists()
    code, out, _ = _invoke(["figure", "conv", "--input", "5", "--kernel", "3", "--out", str(gif),
                            "--max-frames", "9"])  # fmt: skip
    assert code == 0
    assert "9 frames" in out
    with Image.open(gif) as im:
        assert im.n_frames == 9
    code, out, _ = _invoke(["transpose", "verify", "--max-bytes", str(2**31)])
    assert code == 0
    assert out.count(" ok") == 4


def test_every_refusal_is_a_convlens_error():
    # the classes above are the family: a caller can catch them all at once
    for make in (
        lambda: conv_matrix(torch.zeros(1, 1, 3), 10**15),
        lambda: symbolic_conv(1000, 3),
        lambda: conv_frames(1000, 3),
        lambda: verify_routes(5, 3, tol=float("nan")),
        lambda: ROUTES["matmul"](torch.ones(1, 1, 3), torch.ones(1, 1, 2, dtype=torch.int64)),
    ):
        with pytest.raises(ConvLensError):
            make()
