"""convlens.figures: the content of every picture, checked against autograd and F.conv*.

Frame k of the conv animation must highlight exactly the input cells output k reads (the
non-zeros of d output_k / d input); the scatter frame of input k exactly the outputs it writes;
the fractional view, summed over its window with the flipped kernel, must give
F.conv_transpose2d. The colours of the C picture must match C's entries, in the pure data and
in the rendered pixels. Written files: GIF frame counts via Pillow, PNG/SVG non-trivial.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from hypothesis import assume, given
from hypothesis import strategies as st
from PIL import Image

from convlens import ParameterError
from convlens.cli import cli, main
from convlens.figures import (
    connection_scene,
    connections,
    conv_frames,
    conv_scene,
    fractional_frames,
    fractional_scene,
    kernel_colours,
    matrix_colours,
    matrix_entries,
    matrix_scene,
    save_scene,
    scatter_scene,
    transpose_scatter_frames,
)
from convlens.figures.draw import _lighten

pair = st.tuples(st.integers(1, 3), st.integers(1, 3))


@st.composite
def conv_geometry(draw: st.DrawFn) -> dict:  # type: ignore[type-arg]
    g = {
        "input_size": draw(st.tuples(st.integers(1, 7), st.integers(1, 7))),
        "kernel_size": draw(pair),
        "stride": draw(pair),
        "padding": draw(st.tuples(st.integers(0, 2), st.integers(0, 2))),
        "dilation": draw(st.tuples(st.integers(1, 2), st.integers(1, 2))),
    }
    for n, k, p, d in zip(g["input_size"], g["kernel_size"], g["padding"], g["dilation"]):
        assume(n + 2 * p >= d * (k - 1) + 1)
    return g


@st.composite
def transpose_geometry(draw: st.DrawFn) -> dict:  # type: ignore[type-arg]
    g = {
        "input_size": draw(st.tuples(st.integers(1, 4), st.integers(1, 4))),
        "kernel_size": draw(pair),
        "stride": draw(pair),
        "padding": draw(st.tuples(st.integers(0, 2), st.integers(0, 2))),
        "dilation": draw(st.tuples(st.integers(1, 2), st.integers(1, 2))),
        "output_padding": draw(st.tuples(st.integers(0, 2), st.integers(0, 2))),
    }
    for i, k, s, p, d, op in zip(
        *(
            g[n]
            for n in (
                "input_size",
                "kernel_size",
                "stride",
                "padding",
                "dilation",
                "output_padding",
            )
        )
    ):
        assume(op < max(s, d))
        assume((i - 1) * s - 2 * p + d * (k - 1) + op + 1 >= 1)
    return g


def _nonzero_cells(t: torch.Tensor) -> set[tuple[int, int]]:
    return {(int(a), int(b)) for a, b in torch.nonzero(t).tolist()}


def _weights(k: tuple[int, int], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 9, (1, 1, *k), generator=g).double()


# ---------------------------------------------------------------------- frame contents
@given(conv_geometry())
def test_conv_frame_k_highlights_exactly_the_cells_output_k_reads(g: dict) -> None:  # type: ignore[type-arg]
    f = conv_frames(**g)
    geo = {n: g[n] for n in ("stride", "padding", "dilation")}
    x = torch.zeros(1, 1, *g["input_size"], dtype=torch.float64)
    ones = torch.ones(1, 1, *g["kernel_size"], dtype=torch.float64)
    out = F.conv2d(x, ones, **geo)
    assert f.n_frames == out.numel()
    assert f.output_size == tuple(out.shape[2:])
    # row k of the Jacobian = d output_k / d input
    jac = torch.autograd.functional.jacobian(
        lambda v: F.conv2d(v, ones, **geo).reshape(-1), x, vectorize=True
    )
    for k in range(f.n_frames):
        assert f.reads(k) == _nonzero_cells(jac[k, 0, 0])
    # the kernel entry at each highlighted cell: summing weight * padded input gives F.conv2d
    w = _weights(g["kernel_size"])
    xv = torch.randint(-4, 5, (1, 1, *g["input_size"])).double()
    ref = F.conv2d(xv, w, **geo).reshape(-1)
    padded = F.pad(xv, (g["padding"][1],) * 2 + (g["padding"][0],) * 2)[0, 0]
    for k, window in enumerate(f.windows):
        assert (
            sum(float(w.reshape(-1)[t] * padded[cell]) for t, cell in enumerate(window)) == ref[k]
        )


@given(transpose_geometry())
def test_scatter_frame_k_stamps_exactly_the_outputs_input_k_writes(g: dict) -> None:  # type: ignore[type-arg]
    f = transpose_scatter_frames(**g)
    geo = {n: g[n] for n in ("stride", "padding", "dilation", "output_padding")}
    n_in = g["input_size"][0] * g["input_size"][1]
    ones = torch.ones(1, 1, *g["kernel_size"], dtype=torch.float64)
    assert f.n_frames == n_in
    for k in range(n_in):
        onehot = torch.zeros(1, 1, *g["input_size"], dtype=torch.float64)
        onehot.view(-1)[k] = 1.0
        out = F.conv_transpose2d(onehot, ones, **geo)
        assert f.output_size == tuple(out.shape[2:])
        assert f.writes(k) == _nonzero_cells(out[0, 0])
    # stamping y_k * w into the full canvas and cropping gives F.conv_transpose2d
    w = _weights(g["kernel_size"], 1)
    yv = torch.randint(-4, 5, (1, 1, *g["input_size"])).double()
    canvas = torch.zeros(f.full_size, dtype=torch.float64)
    for k, stamp in enumerate(f.stamps):
        for t, cell in enumerate(stamp):
            canvas[cell] += yv.view(-1)[k] * w.view(-1)[t]
    p, o = g["padding"], f.output_size
    cropped = canvas[p[0] : p[0] + o[0], p[1] : p[1] + o[1]]
    assert torch.equal(cropped, F.conv_transpose2d(yv, w, **geo)[0, 0])


@given(transpose_geometry())
def test_fractional_frames_slide_the_flipped_kernel(g: dict) -> None:  # type: ignore[type-arg]
    f = fractional_frames(**g)
    geo = {n: g[n] for n in ("stride", "padding", "dilation", "output_padding")}
    w = _weights(g["kernel_size"], 2)
    yv = torch.randint(-4, 5, (1, 1, *g["input_size"])).double()
    ref = F.conv_transpose2d(yv, w, **geo)
    assert f.n_frames == ref.numel()
    canvas = torch.zeros(f.canvas_size, dtype=torch.float64)
    for n, cell in enumerate(f.input_cells):
        canvas[cell] = yv.detach().view(-1)[n]
    ones = torch.ones_like(w)
    jac = torch.autograd.functional.jacobian(
        lambda v: F.conv_transpose2d(v, ones, **geo).reshape(-1), yv, vectorize=True
    )
    flat_w, grid, ref_flat = w.view(-1).tolist(), canvas.numpy(), ref.reshape(-1).tolist()
    nonzero = (jac[:, 0, 0] != 0).numpy()
    for k, window in enumerate(f.windows):
        value = sum(flat_w[f.kernel_entry[t]] * grid[cell] for t, cell in enumerate(window))
        assert value == ref_flat[k]
        assert set(f.reads(k)) == {(int(a), int(b)) for a, b in zip(*np.nonzero(nonzero[k]))}


@given(conv_geometry(), st.sampled_from(["torch", "row"]))
def test_matrix_entries_and_connections_match_the_jacobian(g: dict, layout: str) -> None:  # type: ignore[type-arg]
    geo = {n: g[n] for n in ("stride", "padding", "dilation")}
    k = g["kernel_size"]
    distinct = torch.arange(1, k[0] * k[1] + 1, dtype=torch.float64).reshape(1, 1, *k)
    n_in = g["input_size"][0] * g["input_size"][1]
    jac = torch.autograd.functional.jacobian(
        lambda v: F.conv2d(v.reshape(1, 1, *g["input_size"]), distinct, **geo).reshape(-1),
        torch.zeros(n_in, dtype=torch.float64),
    )
    ref = jac.numpy().astype(np.int64)
    entries = matrix_entries(**g, layout=layout)
    np.testing.assert_array_equal(entries, ref if layout == "torch" else ref.T)
    links = connections(**g)
    o1 = (
        jac.shape[0]
        and (F.conv2d(torch.zeros(1, 1, *g["input_size"]), distinct.float(), **geo).shape[3])
    )
    expected = {
        (divmod(i, g["input_size"][1]), divmod(o, o1), int(ref[o, i]) - 1)
        for o, i in zip(*np.nonzero(ref))
    }
    assert set(links) == expected
    assert len(links) == len(expected)


def test_matrix_colours_match_entries_in_data_and_in_pixels() -> None:
    entries = matrix_entries(4, 3)
    assert entries.shape == (4, 16)  # the guide's 4×16
    pal = kernel_colours(9)
    rgb = matrix_colours(entries, 9)
    for (r, c), e in np.ndenumerate(entries):
        expected = np.ones(3) if e == 0 else pal[e - 1]
        np.testing.assert_array_equal(rgb[r, c], expected)
    # the rendered picture: sample the pixel at each cell centre
    scene = matrix_scene(4, 3)
    pixels = scene.rgb().astype(int)
    height = pixels.shape[0]
    for (r, c), e in np.ndenumerate(entries):
        px, py = scene.ax.transData.transform((c, r))
        got = pixels[round(height - py), round(px)]
        expected = np.round((np.ones(3) if e == 0 else pal[e - 1]) * 255).astype(int)
        assert np.abs(got - expected).max() <= 2, (r, c, got, expected)


def test_kernel_colours_are_distinct() -> None:
    for n in (1, 4, 9, 10, 16, 25, 49):
        cols = kernel_colours(n)
        assert cols.shape == (n, 3)
        assert len({tuple(np.round(c, 6)) for c in cols}) == n
        assert (cols >= 0).all()
        assert (cols <= 1).all()


# ---------------------------------------------------------------------- what the scenes paint
def test_conv_scene_paints_the_window_in_kernel_colours() -> None:
    scene = conv_scene(5, 3, stride=2, padding=1)
    pal = kernel_colours(9)
    for k in (0, 4, 8):
        scene.show(k)
        for t, cell in enumerate(scene.frames.windows[k]):
            face = scene.input.cells[cell].get_facecolor()[:3]
            np.testing.assert_allclose(face, _lighten(pal[t]))
            np.testing.assert_allclose(scene.input.cells[cell].get_edgecolor()[:3], pal[t])
        current = divmod(k, 3)
        assert scene.output.cells[current].get_linewidth() > 1.0


def test_scatter_and_fractional_scenes_paint_their_frames() -> None:
    scene = scatter_scene(3, 3, stride=2, padding=1, output_padding=1)
    pal = kernel_colours(9)
    scene.show(4)
    for t, cell in enumerate(scene.frames.stamps[4]):
        np.testing.assert_allclose(scene.output.cells[cell].get_facecolor()[:3], _lighten(pal[t]))
    frac = fractional_scene(3, 3, stride=2, padding=1, output_padding=1)
    frac.show(7)
    for t, cell in enumerate(frac.frames.windows[7]):
        e = frac.frames.kernel_entry[t]
        np.testing.assert_allclose(frac.canvas.cells[cell].get_facecolor()[:3], _lighten(pal[e]))


def test_connection_scene_draws_one_line_per_nonzero() -> None:
    scene = connection_scene(4, 3)
    pal = kernel_colours(9)
    assert len(scene.lines) == int((matrix_entries(4, 3) > 0).sum())
    for line, (_, _, t) in zip(scene.lines, scene.links):
        np.testing.assert_allclose(np.asarray(line.get_color())[:3], pal[t])


# ---------------------------------------------------------------------- files
def test_written_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tmp = tmp_path
    cases = [
        (conv_scene(4, 3), 4),
        (scatter_scene(2, 3, stride=2), 4),
        (fractional_scene((1, 2), 2), 6),
    ]
    for n, (scene, frames) in enumerate(cases):
        assert scene.n_frames == frames
        path = save_scene(scene, tmp / f"a{n}.gif")
        with Image.open(path) as im:
            assert im.n_frames == frames
            assert im.size[0] > 200
    png = save_scene(conv_scene(4, 3), tmp / "c.png", frame=3)
    with Image.open(png) as im:
        arr = np.asarray(im.convert("RGB"))
        assert arr.shape[0] > 100
        assert len(np.unique(arr.reshape(-1, 3), axis=0)) > 10
    for make in (matrix_scene, connection_scene):
        svg = save_scene(make(4, 3), tmp / "m.svg")
        text = svg.read_text()
        assert "<svg" in text
        assert len(text) > 5000
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith(".")) == []


def test_save_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParameterError, match=r"out: expected a path ending in .png, .svg or .gif"):
        save_scene(conv_scene(4, 3), tmp_path / "x.jpg")
    with pytest.raises(ParameterError, match=r"out: expected a .png or .svg path for a still"):
        save_scene(matrix_scene(4, 3), tmp_path / "x.gif")
    with pytest.raises(ParameterError, match=r"frame: expected an int in 0..3, received 4"):
        save_scene(conv_scene(4, 3), tmp_path / "x.png", frame=4)
    with pytest.raises(ParameterError, match=r"output_padding: expected a value smaller than"):
        scatter_scene(3, 3, stride=2, output_padding=2)
    with pytest.raises(ParameterError, match=r"input_size: expected an int or a pair of ints"):
        conv_frames((4, 4, 4), 3)
    with pytest.raises(
        ParameterError,
        match=r"kernel_size: expected an effective kernel \(dilation\*\(kernel-1\)\+1 = 3\) no "
        r"larger than the padded input \(2\+0\+0 = 2\)",
    ):
        conv_frames(2, 3)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- CLI
def test_cli_figure_commands(tmp_path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    base = ["--input", "5", "--kernel", "3", "--stride", "2", "--padding", "1"]
    res = runner.invoke(cli, ["figure", "conv", *base, "--out", str(tmp_path / "c.gif")])
    assert res.exit_code == 0, res.output
    assert "9 frames" in res.output
    with Image.open(tmp_path / "c.gif") as im:
        assert im.n_frames == 9
    res = runner.invoke(
        cli,
        [
            *("figure", "transpose", "--input", "2", "--kernel", "3", "--stride", "2"),
            *("--view", "scatter", "--out", str(tmp_path / "s.gif"), "--fps", "4"),
        ],
    )
    assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "s.gif") as im:
        assert im.n_frames == 4
    res = runner.invoke(
        cli,
        [
            *("figure", "transpose", "--input", "2", "--kernel", "3", "--stride", "2"),
            *("--view", "fractional", "--out", str(tmp_path / "f.png"), "--frame", "24"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "frame 24 of frames 0..24" in res.output
    for view in ("pattern", "connections"):
        res = runner.invoke(
            cli, ["figure", "matrix", *base, "--view", view, "--out", str(tmp_path / f"{view}.svg")]
        )
        assert res.exit_code == 0, res.output
        assert (tmp_path / f"{view}.svg").stat().st_size > 5000


def test_cli_figure_error_exit_2(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exc:
        main(
            ["figure", "matrix", "--input", "4", "--kernel", "3", "--out", str(tmp_path / "m.gif")]
        )
    assert exc.value.code == 2
    assert "out: expected a .png or .svg path for a still picture" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(
            [
                *("figure", "conv", "--input", "4", "--kernel", "3", "--frame", "4"),
                *("--out", str(tmp_path / "c.png")),
            ]
        )
    assert exc.value.code == 2
    assert "frame: expected an int in 0..3, received 4" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
