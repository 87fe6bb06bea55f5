"""The report's geometry page against independent references.

Layer sizes against a real forward pass with hooks; receptive fields, jumps and centres against
autograd (the support of one unit's gradient on the input, ones weights); the aliasing table
against a direct 2-D DFT in NumPy; overlap ratios against ``F.conv_transpose2d`` of ones; the
explorer links against the modules' own attributes and torch's output shapes. Then the page
end to end from ``assemble_report`` + ``write_report``.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from convlens.explore import describe_state, initial_state, render_explorer
from convlens.lint import BANDS
from convlens.report import ReportData, Summary, assemble_report, write_report
from convlens.report.geometry import geometry_section
from test_report_render import parse

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.MaxPool2d, nn.AvgPool2d)


def _real_sizes(model: nn.Module, shape: tuple[int, ...]) -> dict[str, tuple[str, str]]:
    """(input, output) spatial sizes of every conv/pool module in a real forward pass."""
    seen: dict[str, tuple[str, str]] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, _LAYERS):

            def hook(mod: nn.Module, args: tuple, out: torch.Tensor, name: str = name) -> None:
                size = "×".join(map(str, args[0].shape[2:]))
                seen.setdefault(name, (size, "×".join(map(str, out.shape[2:]))))

            hooks.append(module.register_forward_hook(hook))
    with torch.no_grad():
        model(torch.zeros(1, *shape))
    for h in hooks:
        h.remove()
    return seen


def _generator(kernel: int, stride: int = 2, padding: int = 1, output_padding: int = 1):
    return nn.Sequential(
        nn.ConvTranspose2d(8, 4, kernel, stride, padding, output_padding),
        nn.ReLU(),
        nn.ConvTranspose2d(4, 3, kernel, stride, padding, output_padding),
    )


@pytest.mark.parametrize(
    ("name", "shape"),
    [("chain", (3, 37, 41)), ("resnet18", (3, 64, 64)), ("generator", (8, 6, 6))],
)
def test_layer_sizes_equal_a_real_forward(name: str, shape: tuple[int, ...]) -> None:
    import torchvision

    model = {
        "chain": lambda: nn.Sequential(
            nn.Conv2d(3, 4, 5, 2, 1), nn.ReLU(), nn.MaxPool2d(3, 2, 1), nn.Conv2d(4, 4, 3, 1, 2, 2)
        ),
        "resnet18": lambda: torchvision.models.resnet18(),
        "generator": lambda: _generator(3),
    }[name]().eval()
    section = geometry_section(model, shape)
    real = _real_sizes(model, shape)
    rows = {row.path: (row.input_size, row.output_size) for row in section.layers}
    assert rows == real
    assert section.input_shape == "(1, " + ", ".join(map(str, shape)) + ")"


def _parse_times(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.removesuffix(" px").split("×"))


def test_receptive_fields_equal_the_support_of_a_units_gradient() -> None:
    net = nn.Sequential(
        nn.Conv2d(1, 1, 3, padding=1),
        nn.AvgPool2d(2),
        nn.Conv2d(1, 1, (5, 3), stride=(1, 2), padding=(2, 0)),
        nn.Conv2d(1, 1, 3, dilation=2),
        nn.AvgPool2d(3, stride=2),
    ).double()
    for m in net.modules():
        if isinstance(m, nn.Conv2d) and m.bias is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    side = 96
    section = geometry_section(net, (1, side, side))
    x = torch.rand(1, 1, side, side, dtype=torch.float64, requires_grad=True)
    outputs, h = [], x
    for module in net:
        h = module(h)
        outputs.append(h)
    for row, out in zip(section.layers, outputs):
        centre = tuple(n // 2 for n in out.shape[2:])
        (grad,) = torch.autograd.grad(out[0, 0][centre], x, retain_graph=True)
        rows, cols = np.nonzero(grad[0, 0].numpy())
        support = ((rows.min(), rows.max()), (cols.min(), cols.max()))
        assert _parse_times(row.receptive_field or "") == tuple(hi - lo + 1 for lo, hi in support)
        start = [float(v) for v in (row.start or "").split(", ")]
        jump = _parse_times(row.jump or "")
        for axis in range(2):
            lo, hi = support[axis]
            assert start[axis] + centre[axis] * jump[axis] == (lo + hi) / 2
        # the neighbouring unit's support is one jump further
        nxt = (centre[0] + 1, centre[1])
        (g2,) = torch.autograd.grad(out[0, 0][nxt], x, retain_graph=True)
        assert np.nonzero(g2[0, 0].numpy())[0].min() - support[0][0] == jump[0]


def _direct_shares(w: np.ndarray, stride: int, n: int = 64) -> tuple[float, float, float, float]:
    """Alias share and low/mid/high shares of one filter (C_in, k, k) by a direct DFT."""
    power = (np.abs(np.fft.fft2(w, s=(n, n))) ** 2).sum(0)  # the input channels' spectra summed
    f = np.fft.fftfreq(n)
    fy, fx = np.meshgrid(np.abs(f), np.abs(f), indexing="ij")
    total = power.sum()
    alias = power[(fy > 1 / (2 * stride)) | (fx > 1 / (2 * stride))].sum() / total
    nu = np.maximum(fy, fx)
    low = power[nu < BANDS[0]].sum() / total
    high = power[nu >= BANDS[1]].sum() / total
    return float(alias), float(low), float(1 - low - high), float(high)


def test_the_aliasing_table_equals_a_direct_dft() -> None:
    conv = nn.Conv2d(3, 3, 5, stride=2)
    yy, xx = np.mgrid[-2:3, -2:3]
    gauss = np.exp(-(yy**2 + xx**2) / 2.0)
    checker = (-1.0) ** (yy + xx)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0] = torch.from_numpy(gauss)  # the same on every input channel
        conv.weight[1] = torch.from_numpy(checker)
    net = nn.Sequential(conv, nn.ReLU(), nn.Conv2d(3, 2, 3))
    section = geometry_section(net, (3, 32, 32))
    a = section.aliasing
    assert a is not None
    assert a.layer == "0"
    assert a.dead == (2,)
    rows = a.filters.rows
    weights = conv.weight.detach().double().numpy()
    for i in (0, 1):
        assert rows[i][1:5] == pytest.approx(_direct_shares(weights[i], 2), abs=1e-9)
    assert rows[2][1:5] == (None, None, None, None)
    assert rows[2][-1] == "dead"
    assert rows[0][1] < 0.05 < 0.9 < rows[1][1]  # smooth vs checkerboard
    facts = dict(a.facts)
    assert facts["stride"] == "2×2"
    assert facts["dead filters"] == "1: 2"
    assert facts["Nyquist frequency"] == "0.25, 0.25 cycles per pixel"
    with Image.open(io.BytesIO(a.figure)) as chart:  # type: ignore[arg-type]
        assert chart.format == "PNG"
        assert chart.width > 400
    assert len(a.thumbnails) == 3


def _torch_interior_ratio(kernel: int, stride: int, layers: int, size: int = 12) -> float:
    y = torch.ones(1, 1, size, size, dtype=torch.float64)
    w = torch.ones(1, 1, kernel, kernel, dtype=torch.float64)
    for _ in range(layers):
        y = F.conv_transpose2d(y, w, stride=stride)
    border = (kernel - 1) * layers * 2  # well inside: no pixel there misses a tap
    inner = y[0, 0, border:-border, border:-border]
    return float(inner.max() / inner.min())


@pytest.mark.parametrize(("kernel", "flagged"), [(3, True), (4, False)])
def test_overlap_maps_of_a_generator_equal_conv_transpose_of_ones(
    kernel: int, flagged: bool
) -> None:
    section = geometry_section(
        _generator(kernel, output_padding=1 if kernel == 3 else 0), (8, 6, 6)
    )
    assert section.has_transposed
    assert section.flagged is flagged
    assert len(section.overlaps) == 3  # two layers, then the compounded chain
    one, two = _torch_interior_ratio(kernel, 2, 1), _torch_interior_ratio(kernel, 2, 2)
    for figure, expected in zip(section.overlaps, (one, one, two)):
        shown = float(re.search(r"ratio ([0-9.]+)", figure.title).group(1))  # type: ignore[union-attr]
        assert shown == pytest.approx(expected)
        with Image.open(io.BytesIO(figure.picture)) as image:  # type: ignore[arg-type]
            assert image.format == "PNG"
    assert (one, two) == ((4.0, 9.0) if kernel == 3 else (1.0, 1.0))  # 1-D: 2 and 3, squared
    flags = [row[section.lint.columns.index("flagged")] for row in section.lint.rows]
    assert flags == (["yes", "yes"] if flagged else ["no", "no"])


def test_a_model_without_transposed_layers_has_no_maps_and_says_so(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.ReLU(), nn.MaxPool2d(2))
    section = geometry_section(net, (1, 16, 16))
    assert section.overlaps == ()
    assert not section.has_transposed
    out = write_report(ReportData(Summary("m", "d", "c"), geometry=section), tmp_path / "r")
    text = " ".join("".join(parse(out.parent / "geometry.html").text).split())
    assert "This model has no transposed convolution" in text


def test_explorer_links_hold_the_layers_settings() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 4, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1, output_padding=1),
        nn.Conv2d(2, 1, 40),  # kernel beyond the explorer's limit: no link
    )
    shape = (3, 100, 90)
    section = geometry_section(net, shape)
    real = _real_sizes(net, shape)
    modules = dict(net.named_modules())
    links = {row.path: row for row in section.layers}
    assert links["2"].explore is None  # pooling: not in the explorer
    assert links["4"].explore is None
    for path in ("0", "3"):
        row, module = links[path], modules[path]
        assert row.explore is not None
        query = dict(parse_qsl(row.explore.removeprefix("?")))
        state = initial_state(**{k: v if k in ("mode",) else _ints(v) for k, v in query.items()})
        assert state["kernel"] == list(module.kernel_size)
        assert state["stride"] == list(module.stride)
        assert state["padding"] == list(module.padding)
        assert state["dilation"] == list(module.dilation)
        assert state["mode"] == ("transpose" if path == "3" else "conv")
        given = [int(v) for v in real[path][0].split("×")]
        assert state["input"] == [min(v, 32) for v in given]
        # torch on the explorer's input gives the size the explorer computes
        x = torch.zeros(1, module.in_channels, *state["input"])
        with torch.no_grad():
            y = module(x)
        assert describe_state(**state).endswith(" → " + "×".join(map(str, y.shape[2:])))
        if state["input"] == given:
            assert "×".join(map(str, y.shape[2:])) == row.output_size
            assert row.explore_note is None
        else:
            assert row.explore_note == (
                f"shown with a {'×'.join(map(str, state['input']))} input; "
                f"the layer runs on {real[path][0]}"
            )
    assert links["3"].explore is not None
    assert "output_padding=1" in links["3"].explore
    assert section.explorer is not None
    assert dict(section.explorer.state)["kernel"] == [3, 5]
    assert section.explorer.label.startswith("0: conv 32×32 → ")


def _ints(text: str) -> int | list[int] | str:
    if not re.fullmatch(r"[0-9,]+", text):
        return text
    values = [int(v) for v in text.split(",")]
    return values[0] if len(values) == 1 else values


def test_vgg16_starts_the_explorer_on_its_first_conv_and_3d_models_on_the_defaults() -> None:
    import torchvision

    vgg = torchvision.models.vgg16()
    section = geometry_section(vgg, (3, 224, 224))
    assert section.explorer is not None
    state = dict(section.explorer.state)
    assert (state["kernel"], state["stride"], state["padding"], state["input"]) == (
        [3, 3],
        [1, 1],
        [1, 1],
        [32, 32],
    )
    assert section.explorer.label == (
        "features.0: conv 32×32 → 32×32 (shown with a 32×32 input; the layer runs on 224×224)"
    )
    assert len(section.layers) == 18  # 13 convs and 5 max pools
    assert section.layers[-1].receptive_field == "212×212 px"  # pool5 (Araujo et al., Distill)
    volume = nn.Sequential(nn.Conv3d(1, 2, 3), nn.ReLU())
    assert geometry_section(volume, (1, 8, 8, 8)).explorer is None


def test_a_model_the_walk_cannot_trace_gets_a_note() -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("this model only runs on Tuesdays")

    section = geometry_section(Broken(), (1, 8, 8))
    assert section.layers == ()
    assert len(section.notes) == 1
    assert "could not trace this model" in section.notes[0]


def test_the_report_gets_its_geometry_page_and_explorer(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 4, stride=2), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(100, 3)
    )
    data = [(torch.rand(1, 16, 16), i % 3) for i in range(6)]
    report = assemble_report(
        net, data, command="c", dataset_name="d", top=2, occlusion_images=0, accuracy=False
    )
    assert report.geometry is not None
    index = write_report(report, tmp_path / "out")
    root = index.parent
    page = parse(root / "geometry.html")
    assert page.h1.strip() == "Geometry"
    assert "geometry.html" in parse(root / "index.html").attrs("a", "href")
    text = " ".join("".join(page.text).split())
    assert "First-layer aliasing: 0" in text
    for src in page.attrs("img", "src"):
        with Image.open(root / src) as image:
            assert image.width > 0
    start = dict(report.explorer.state)  # type: ignore[union-attr]
    assert (start["kernel"], start["stride"], start["input"]) == ([4, 4], [2, 2], [16, 16])
    assert (root / "explorer.html").read_text(encoding="utf-8") == render_explorer(**start)
    assert math.isfinite(dict(report.summary.timings)["geometry"])
