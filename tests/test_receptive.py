"""Receptive fields and unit boxes against brute force.

References:
- torchvision AlexNet and VGG16 ``features`` (random weights): the support of the input
  gradient of one unit, with every ReLU made the identity, every max pool an average pool of
  the same geometry and every conv weight 1, in float64 (so no gradient cancels or vanishes);
- random 1-D/2-D chains: which input pixels reach a unit, found by pushing one-hot inputs
  through the real modules (ones-weight convs, real max/avg pools incl. dilation and
  ceil_mode) and looking where the output is non-zero;
- the unclipped box (which lies partly in the padding) by embedding the input in a larger
  canvas, shifted by a multiple of the jump, where the same unit is interior.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from convlens.arithmetic import (
    LayerSpec,
    receptive_fields,
    trace_chain,
    unit_box,
)
from convlens.arithmetic.receptive import _fields
from convlens.errors import ParameterError, ParameterTypeError, UnsupportedModuleError

torch.manual_seed(0)


# ----------------------------------------------------------------------------- references
def _ones_replica(features: nn.Sequential, channels: bool) -> nn.Sequential:
    """The same chain with ReLU -> Identity, MaxPool -> AvgPool, conv weights 1, float64.

    With ``channels=False`` every conv has 1 input and 1 output channel (the support of a
    positive network does not depend on the channel count); geometry is read off the
    modules' own attributes, not through convlens.
    """
    layers: list[nn.Module] = []
    for m in features:
        if isinstance(m, nn.Conv2d):
            if channels:
                conv = copy.deepcopy(m)
            else:
                conv = nn.Conv2d(1, 1, m.kernel_size, m.stride, m.padding, m.dilation)
            nn.init.ones_(conv.weight)
            nn.init.zeros_(conv.bias)
            layers.append(conv)
        elif isinstance(m, nn.MaxPool2d):
            assert m.dilation in (1, (1, 1))
            layers.append(nn.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode))
        else:
            layers.append(nn.Identity())
    return nn.Sequential(*layers).double()


def _gradient_supports(net: nn.Sequential, upto: int, size: int, units, in_ch: int):
    """Bool masks (B, H, W): the input-gradient support of each unit (row, col) of layer upto."""
    x = torch.zeros(len(units), in_ch, size, size, dtype=torch.float64, requires_grad=True)
    out = net[: upto + 1](x)
    picked = torch.stack([out[b, 0, r, c] for b, (r, c) in enumerate(units)])
    (grad,) = torch.autograd.grad(picked.sum(), x)
    return grad.abs().sum(1) > 0


def _bbox(mask: torch.Tensor) -> tuple[tuple[int, int], tuple[int, int]]:
    rows = torch.nonzero(mask.any(1)).flatten()
    cols = torch.nonzero(mask.any(0)).flatten()
    return (int(rows.min()), int(cols.min())), (int(rows.max()) + 1, int(cols.max()) + 1)


def _check_model(model: nn.Module, layer: str, size: int, units, channels: bool):
    """Boxes of ``units`` at ``layer`` (a path such as "features.12") against gradient supports."""
    features = model.features
    net = _ones_replica(features, channels)
    box0 = unit_box(model, layer, units[0], size)
    upto = int(box0.path.removeprefix("features."))
    in_ch = features[0].in_channels if channels else 1
    masks = _gradient_supports(net, upto, size, units, in_ch)
    field = next(f for f in receptive_fields(model, size) if f.path == box0.path)
    jump = field.jump[0]
    # A canvas M pixels larger on each side, M a multiple of the jump: unit + M/jump is interior.
    margin = jump * (-(-field.size[0] // jump) + 1)
    shifted = [(r + margin // jump, c + margin // jump) for r, c in units]
    big = _ones_replica(features, False)
    big_masks = _gradient_supports(big, upto, size + 2 * margin, shifted, 1)
    for unit, mask, big_mask in zip(units, masks, big_masks):
        box = unit_box(model, layer, unit, size)
        lo, hi = _bbox(mask)
        assert (box.clipped_start, box.clipped_stop) == (lo, hi)
        assert (box.support_start, box.support_stop) == (lo, hi)
        # hole-free chain: the support fills its bounding box
        assert bool(mask[lo[0] : hi[0], lo[1] : hi[1]].all())
        assert int(mask.sum()) == (hi[0] - lo[0]) * (hi[1] - lo[1])
        big_lo, big_hi = _bbox(big_mask)
        assert min(big_lo) > 0
        assert max(big_hi) < size + 2 * margin
        start = tuple(v - margin for v in big_lo)
        stop = tuple(v - margin for v in big_hi)
        assert (box.start, box.stop) == (start, stop)
        assert box.clip_before == tuple(a - b for a, b in zip(lo, start))
        assert box.clip_after == tuple(b - a for a, b in zip(hi, stop))
        assert field.size == tuple(b - a for a, b in zip(start, stop))
        assert bool(big_mask[big_lo[0] : big_hi[0], big_lo[1] : big_hi[1]].all())
    return field, big_masks


@pytest.fixture(scope="module")
def alexnet() -> nn.Module:
    return torchvision.models.alexnet(weights=None).eval()


@pytest.fixture(scope="module")
def vgg16() -> nn.Module:
    return torchvision.models.vgg16(weights=None).eval()


# ----------------------------------------------------------------------------- torchvision
def test_alexnet_boxes_equal_gradient_support_real_channels(alexnet):
    """AlexNet features at 127x127 (3x3 at pool5), the real 64..384-channel modules."""
    units = [(0, 0), (2, 2), (1, 0), (0, 2)]
    field, _ = _check_model(alexnet, "features.12", 127, units, channels=True)
    assert field.output_size == (3, 3)
    assert field.size == (195, 195)  # as published (Araujo et al., Distill 2019)


def test_alexnet_middle_layer_and_jump(alexnet):
    """conv2 (features.3, resolved from its ReLU features.4) at 127: jump 8, start 7."""
    units = [(0, 0), (6, 6), (7, 7), (14, 0)]
    field, big_masks = _check_model(alexnet, "features.4", 127, units, channels=False)
    assert field.path == "features.3"
    (lo6, _), (lo7, _) = _bbox(big_masks[1]), _bbox(big_masks[2])
    assert field.jump == tuple(b - a for a, b in zip(lo6, lo7))
    # start: centre of unit 0 = mean of its unclipped first and last pixel
    box = unit_box(alexnet, "features.3", (0, 0), 127)
    assert field.start == tuple((a + b - 1) / 2 for a, b in zip(box.start, box.stop))


def test_vgg16_boxes_equal_gradient_support_real_channels(vgg16):
    """VGG16 features at 32x32 with the real channel counts (heavy; few units)."""
    _check_model(vgg16, "features.16", 32, [(0, 0), (3, 3), (1, 2)], channels=True)


@pytest.mark.parametrize(
    ("layer", "units"),
    [
        ("features.29", [(0, 0), (5, 5), (2, 3), (0, 4)]),  # ReLU -> conv5_3 (features.28)
        ("features.30", [(0, 0), (2, 2), (1, 1)]),  # pool5: 212 px field on a 96 px image
        ("features.14", [(0, 0), (23, 23), (11, 12), (0, 23)]),
        ("features.4", [(0, 0), (47, 47), (20, 21)]),
    ],
)
def test_vgg16_boxes_equal_gradient_support(vgg16, layer, units):
    _check_model(vgg16, layer, 96, units, channels=False)


def test_vgg16_whole_model_and_known_fields(vgg16):
    fields = receptive_fields(vgg16, 224)  # the classifier after the adaptive pool is left out
    # VGG16 is configuration "D" of Simonyan & Zisserman: each conv is followed by a ReLU.
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    paths, index = [], 0
    for item in cfg:
        paths.append(f"features.{index}")
        index += 1 if item == "M" else 2
    assert [f.path for f in fields] == paths
    assert fields[-1].size == (212, 212)  # as published (Araujo et al., Distill 2019)
    assert fields[-1].jump == (32, 32)
    assert fields[-1].output_size == tuple(vgg16.features(torch.zeros(1, 3, 224, 224)).shape[2:])
    assert unit_box(vgg16, "features", (0, 0), 224).path == "features.30"
    with pytest.raises(ParameterError, match="layer: expected a module before the first"):
        unit_box(vgg16, "classifier.0", (0, 0), 224)


def test_trace_chain_refuses_residual_networks():
    with torch.device("meta"):
        resnet = torchvision.models.resnet18(weights=None)
    with pytest.raises(UnsupportedModuleError, match=r"module 'layer2\.0\.downsample\.0'"):
        trace_chain(resnet, 64)


def test_trace_chain_output_shapes_match_forward(alexnet):
    traced = trace_chain(alexnet, 127)
    x = torch.zeros(1, 3, 127, 127)
    shapes = {}
    for path, m in alexnet.features.named_children():
        x = m(x)
        shapes[f"features.{path}"] = tuple(x.shape[1:])
    assert all(t.output_shape == shapes[t.field.path] for t in traced)
    assert [t.module_type for t in traced][:2] == ["Conv2d", "MaxPool2d"]


# ----------------------------------------------------------------------------- random chains
def _reach(layers: list[nn.Module], size: tuple[int, ...]) -> torch.Tensor:
    """Bool (input pixels..., output units...): which pixels reach which unit, via one-hots."""
    n = len(size)
    count = int(torch.tensor(size).prod())
    x = torch.eye(count, dtype=torch.float64).reshape(count, 1, *size)
    with torch.no_grad():
        for m in layers:
            x = m(x)
    return (x[:, 0] > 0).reshape(*size, *x.shape[2:]) if n else x


def _modules_for(spec: LayerSpec) -> nn.Module:
    n = spec.ndim
    if spec.kind == "conv":
        conv = (nn.Conv1d, nn.Conv2d)[n - 1](
            1,
            1,
            spec.kernel_size,
            spec.stride,
            spec.padding,
            spec.dilation,
            bias=False,
            padding_mode=spec.padding_mode,
        ).double()
        nn.init.ones_(conv.weight)
        return conv
    if spec.kind == "max_pool":
        return (nn.MaxPool1d, nn.MaxPool2d)[n - 1](
            spec.kernel_size, spec.stride, spec.padding, spec.dilation, ceil_mode=spec.ceil_mode
        )
    return (nn.AvgPool1d, nn.AvgPool2d)[n - 1](
        spec.kernel_size, spec.stride, spec.padding, ceil_mode=spec.ceil_mode
    )


@st.composite
def layer_specs(draw, n: int, modes: bool):
    k = tuple(draw(st.integers(1, 4)) for _ in range(n))
    s = tuple(draw(st.integers(1, 3)) for _ in range(n))
    d = tuple(draw(st.integers(1, 2)) for _ in range(n))
    kind = draw(st.sampled_from(["conv", "conv", "same", "max", "avg"]))
    if kind in ("conv", "same"):
        mode = draw(st.sampled_from(["zeros", "reflect", "replicate"])) if modes else "zeros"
        if kind == "same":
            return LayerSpec.conv(k, 1, "same", d, padding_mode=mode, ndim=n)
        p = tuple(draw(st.integers(0, 2)) for _ in range(n))
        return LayerSpec.conv(k, s, p, d, padding_mode=mode, ndim=n)
    p = tuple(draw(st.integers(0, kk // 2)) for kk in k)
    ceil = draw(st.booleans())
    if kind == "max":
        return LayerSpec.max_pool(k, s, p, d, ceil, ndim=n)
    return LayerSpec.avg_pool(k, s, p, ceil, ndim=n)


@st.composite
def chains(draw, modes: bool = False, ndims: tuple[int, ...] = (1, 1, 2)):
    n = draw(st.sampled_from(ndims))
    specs = draw(st.lists(layer_specs(n, modes), min_size=1, max_size=4))
    size = tuple(draw(st.integers(4, 24 if n == 1 else 9)) for _ in range(n))
    return specs, size


def _valid(specs, size) -> bool:
    try:
        receptive_fields(specs, size)
    except ParameterError:
        return False
    return True


@settings(max_examples=30)
@given(chains())
def test_unit_boxes_bound_the_pixels_that_reach_each_unit(chain):
    specs, size = chain
    if not _valid(specs, size):
        return
    reach = _reach([_modules_for(s) for s in specs], size)
    n = len(size)
    fields = receptive_fields(specs, size)
    assert tuple(reach.shape[n:]) == fields[-1].output_size
    hole_free = all(
        d == 1 and k >= s
        for spec in specs
        for k, s, d in zip(spec.kernel_size, spec.stride, spec.dilation)
    )
    for unit in torch.cartesian_prod(*[torch.arange(o) for o in fields[-1].output_size]):
        pos = tuple(int(v) for v in unit.reshape(-1))
        box = unit_box(specs, len(specs) - 1, pos, size)
        mask = reach[(..., *pos)]
        assert box.size == fields[-1].size
        pixels = [range(a, b) for a, b in zip(box.start, box.stop)]
        assert box.clip_before == tuple(sum(v < 0 for v in r) for r in pixels)
        assert box.clip_after == tuple(sum(v >= w for v in r) for r, w in zip(pixels, size))
        inside = [[v for v in r if 0 <= v < w] for r, w in zip(pixels, size)]
        assert box.clipped_start == tuple(
            r[0] if r else c for r, c in zip(inside, box.clipped_start)
        )
        assert box.clipped_stop == tuple(
            r[-1] + 1 if r else c for r, c in zip(inside, box.clipped_start)
        )
        if not mask.any():  # a unit that only reads padding (along some dimension)
            assert any(a == b for a, b in zip(box.support_start, box.support_stop))
            continue
        idx = torch.nonzero(mask)
        lo = tuple(int(v) for v in idx.min(0).values)
        hi = tuple(int(v) + 1 for v in idx.max(0).values)
        assert (box.support_start, box.support_stop) == (lo, hi)
        assert all(a >= b for a, b in zip(lo, box.clipped_start))
        assert all(a <= b for a, b in zip(hi, box.clipped_stop))
        if hole_free:
            assert int(mask.sum()) == int(torch.tensor([b - a for a, b in zip(lo, hi)]).prod())


@settings(max_examples=30)
@given(chains(ndims=(1,)))
def test_unclipped_box_is_the_box_of_the_same_unit_on_a_larger_canvas(chain):
    """1-D only: the one-hot reference costs pixels squared (2-D: AlexNet/VGG16 tests)."""
    specs, size = chain
    if not _valid(specs, size):
        return
    fields = receptive_fields(specs, size)
    last = fields[-1]
    # margins (multiples of the jump) wide enough for boxes that reach far into the padding;
    # the embedded units must then be interior, which the assertions below confirm
    _, far = last.box(tuple(o - 1 for o in last.output_size))
    reach_out = [
        r + max(0, -f) + max(0, e - w) for r, f, e, w in zip(last.size, last.first, far, size)
    ]
    margins = tuple(j * (-(-r // j) + 1) for r, j in zip(reach_out, last.jump))
    big = tuple(w + 2 * m for w, m in zip(size, margins))
    reach = _reach([_modules_for(s) for s in specs], big)
    for corner in (0, 1):
        pos = tuple(0 if corner == 0 else o - 1 for o in last.output_size)
        box = unit_box(specs, -1, pos, size)
        moved = tuple(p + m // j for p, m, j in zip(pos, margins, last.jump))
        idx = torch.nonzero(reach[(..., *moved)])
        assert int(idx.min()) > 0
        assert all(int(v) < w - 1 for v, w in zip(idx.max(0).values, big))
        lo = tuple(int(v) - m for v, m in zip(idx.min(0).values, margins))
        hi = tuple(int(v) + 1 - m for v, m in zip(idx.max(0).values, margins))
        assert (box.start, box.stop) == (lo, hi)
        pixels = [range(a, b) for a, b in zip(lo, hi)]
        assert box.clip_before == tuple(sum(v < 0 for v in r) for r in pixels)
        assert box.clip_after == tuple(sum(v >= w for v in r) for r, w in zip(pixels, size))


@settings(max_examples=25)
@given(chains(modes=True))
def test_copying_padding_modes_are_exact_or_refused(chain):
    """reflect/replicate padding copies image pixels: boxes that reach into it are refused."""
    specs, size = chain
    if not _valid(specs, size):
        return
    reach = _reach([_modules_for(s) for s in specs], size)
    last = receptive_fields(specs, size)[-1]
    pos = tuple(o // 2 for o in last.output_size)
    start, stop = last.box(pos)
    into_padding = min(start) < 0 or any(b > w for b, w in zip(stop, size))
    copying = any(s.padding_mode != "zeros" and any(sum(s.padding_pairs(), ())) for s in specs)
    if into_padding and copying:
        with pytest.raises(UnsupportedModuleError, match="padding_mode="):
            unit_box(specs, -1, pos, size)
        return
    box = unit_box(specs, -1, pos, size)
    mask = reach[(..., *pos)]
    idx = torch.nonzero(mask)
    if len(idx):
        lo = tuple(int(v) for v in idx.min(0).values)
        hi = tuple(int(v) + 1 for v in idx.max(0).values)
        assert (box.support_start, box.support_stop) == (lo, hi)
    else:
        assert any(a == b for a, b in zip(box.support_start, box.support_stop))


# ----------------------------------------------------------------------------- API details
def test_chain_forms_agree_and_are_cached():
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.Dropout(),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(2, 2, 4, padding="same", dilation=2),
    )
    specs = [LayerSpec.from_module(net[i]) for i in (0, 4, 5)]
    a = receptive_fields(net, 9)
    b = receptive_fields(specs, 9)
    c = receptive_fields(list(zip(["0", "4", "5"], specs)), 9)
    assert [f.size for f in a] == [f.size for f in b] == [f.size for f in c]
    assert [f.path for f in a] == [f.path for f in c] == ["0", "4", "5"]
    assert a[-1].output_size == tuple(net(torch.zeros(1, 1, 9, 9)).shape[2:])
    hits = _fields.cache_info().hits
    receptive_fields(net, 9)
    assert _fields.cache_info().hits == hits + 1
    assert unit_box(net, "3", (1, 1), 9).path == "0"  # Dropout resolves to the conv before it
    assert unit_box(net, "", (0, 0), 9).path == "5"  # the whole net: its last layer
    assert receptive_fields(net)[0].output_size is None


def test_ceil_mode_window_over_the_right_edge():
    spec = LayerSpec.max_pool(3, 2, ceil_mode=True, ndim=1)
    (out,) = spec.output_size(6)
    assert out == nn.MaxPool1d(3, 2, ceil_mode=True)(torch.zeros(1, 1, 6)).shape[-1] == 3
    box = unit_box([spec], 0, out - 1, 6)
    assert (box.start, box.stop, box.clipped_stop, box.clip_after) == ((4,), (7,), (6,), (1,))
    assert box.slices() == (slice(4, 6),)


def test_transposed_conv_in_a_chain_is_refused():
    net = nn.Sequential(nn.Conv2d(1, 1, 3), nn.ConvTranspose2d(1, 1, 3))
    with pytest.raises(UnsupportedModuleError, match=r"module '1': expected one of Conv1d"):
        receptive_fields(net)
    with pytest.raises(UnsupportedModuleError, match="conv_transpose LayerSpec"):
        receptive_fields([LayerSpec.conv_transpose(3)])


def test_bad_chains_and_arguments():
    with pytest.raises(ParameterError, match="chain: expected at least one conv or pooling"):
        receptive_fields(nn.Sequential(nn.ReLU()))
    with pytest.raises(ParameterTypeError, match=r"chain\[1\]: expected a LayerSpec"):
        receptive_fields([LayerSpec.conv(3), "conv"])
    with pytest.raises(ParameterError, match="chain: expected layers with one number"):
        receptive_fields([LayerSpec.conv(3, ndim=1), LayerSpec.conv(3, ndim=2)])
    with pytest.raises(UnsupportedModuleError, match=r"module '1': .* received Upsample"):
        receptive_fields(
            nn.Sequential(nn.Conv2d(1, 1, 3), nn.Upsample(scale_factor=2), nn.Conv2d(1, 1, 3))
        )
    net = nn.Sequential(nn.ReLU(), nn.Conv2d(1, 1, 3, stride=2))
    with pytest.raises(ParameterError, match="layer: expected a module at or after the first"):
        unit_box(net, "0", (0, 0), 9)
    with pytest.raises(ParameterError, match="layer: expected a module path of the chain"):
        unit_box(net, "7", (0, 0), 9)
    with pytest.raises(ParameterError, match=r"layer: expected an index from -1 to 0, received 3"):
        unit_box(net, 3, (0, 0), 9)
    with pytest.raises(ParameterError, match=r"position: expected indices in \[0, \(4, 4\)\)"):
        unit_box(net, "1", (4, 0), 9)
    with pytest.raises(ParameterError, match=r"kernel_size: expected .*at layer '1'"):
        receptive_fields(net, 2)


class _Refuses(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.shape[-1] != 5:
            raise RuntimeError("only 7x7 inputs")
        return y


def test_trace_chain_reports_a_refusing_forward_and_removes_its_hooks():
    model = _Refuses()
    with pytest.raises(ParameterError, match="its forward raised RuntimeError: only 7x7 inputs"):
        trace_chain(model, 9)
    assert not model.conv._forward_hooks
    traced = trace_chain(model, 7)
    assert traced[0].output_shape == tuple(model(torch.zeros(1, 3, 7, 7)).shape[1:])
    assert not model.conv._forward_hooks
