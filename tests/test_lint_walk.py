"""The model walk on real models: DCGAN generators, a U-Net decoder with skips, ResNet-18.

References: the sizes PyTorch's own forward pass produces (hooks written here), maps of
``F.conv_transpose2d`` of ones, and torch building the suggested layers.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from convlens.errors import ParameterError, ParameterTypeError
from convlens.lint import lint_model, trace_model


def dcgan(k: int = 4, p: int = 1, op: int = 0, nz: int = 16) -> nn.Sequential:
    """A DCGAN generator (Radford et al., arXiv:1511.06434): 1x1 -> 4 -> 8 -> 16 -> 32."""
    return nn.Sequential(
        nn.ConvTranspose2d(nz, 32, 4, 1, 0, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.ConvTranspose2d(32, 16, k, 2, p, op, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.ConvTranspose2d(16, 8, k, 2, p, op, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.ConvTranspose2d(8, 3, k, 2, p, op, bias=False),
        nn.Tanh(),
    )


class UNet(nn.Module):
    """A two-level U-Net: encoder convs, a strided conv down, transposed conv up, skip concat."""

    def __init__(self, up_kernel: int = 2, up_padding: int = 0) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.mid = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.up = nn.ConvTranspose2d(16, 8, up_kernel, stride=2, padding=up_padding)
        self.dec = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(8, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.enc(x)
        y = self.mid(self.down(skip))
        y = self.up(y, output_size=skip.shape[-2:])
        return self.head(self.dec(torch.cat([y, skip], dim=1)))


def _torch_sizes(model: nn.Module, shape: tuple[int, ...]) -> list[tuple[str, tuple, tuple]]:
    """(path, input spatial, output spatial) of every conv/pool call, by plain forward hooks."""
    seen = []
    kinds = (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)
    hooks = [
        m.register_forward_hook(
            lambda mod, a, o, path=path: seen.append(
                (path, tuple(a[0].shape[2:]), tuple(o.shape[2:]))
            )
        )
        for path, m in model.named_modules()
        if isinstance(m, kinds)
    ]
    with torch.no_grad():
        model.eval()(torch.zeros(shape))
    for h in hooks:
        h.remove()
    return seen


def _ones_map(k: int, s: int, p: int, op: int, n: int) -> np.ndarray:
    x = torch.ones(1, 1, n, n, dtype=torch.float64)
    w = torch.ones(1, 1, k, k, dtype=torch.float64)
    return F.conv_transpose2d(x, w, stride=s, padding=p, output_padding=op)[0, 0].numpy()


def test_dcgan_k4_s2_p1_lints_clean():
    model = dcgan()
    result = lint_model(model, 1)
    assert not result.flagged
    assert [r.path for r in result.layers] == ["0", "3", "6", "9"]
    assert [r.output_size for r in result.layers] == [
        (4, 4),
        (8, 8),
        (16, 16),
        (32, 32),
    ]
    for row in result.layers[1:]:
        dense = _ones_map(4, 2, 1, 0, row.input_size[0])
        assert np.unique(dense[1:-1, 1:-1]).size == 1  # torch: even away from the border
        assert not row.overlap.uneven
        assert row.suggestion is None
    assert result.compound is not None
    assert not result.compound.flagged
    assert result.compound.paths == ("0", "3", "6", "9")


def test_dcgan_k3_s2_is_flagged_with_its_ratio():
    model = dcgan(k=3, p=1, op=1)
    result = lint_model(model, 1)
    assert result.flagged
    for row in result.layers[1:]:
        n = row.input_size[0]
        dense = _ones_map(3, 2, 1, 1, n)
        inner = dense[2:-2, 2:-2]
        assert row.flagged
        assert row.overlap.ratio == inner.max() / inner.min() == 4.0
        d = row.to_dict()
        assert (d["overlap_min"], d["overlap_max"], d["uneven"]) == (1, 4, True)
        # the suggested kernel/padding, built by torch, keeps the size and evens the overlap
        found = re.search(r"kernel_size=(\d+), padding=(\d+), output_padding=(\d+)", row.suggestion)
        assert found is not None
        k2, p2, op2 = map(int, found.groups())
        fixed = _ones_map(k2, 2, p2, op2, n)
        assert fixed.shape == dense.shape
        assert np.unique(fixed[2:-2, 2:-2]).size == 1
        assert "PixelShuffle" in row.suggestion
        assert "1707.02937" in row.suggestion
    # the compounded map is the chain of the torch maps
    x = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    for k, s, p, op in ((4, 1, 0, 0), (3, 2, 1, 1), (3, 2, 1, 1), (3, 2, 1, 1)):
        x = F.conv_transpose2d(
            x, torch.ones(1, 1, k, k, dtype=torch.float64), stride=s, padding=p, output_padding=op
        )
    assert np.array_equal(result.compound.overlap.counts, x[0, 0].numpy())
    assert result.compound.flagged


def test_dilated_transposed_conv_reports_its_dead_pixels():
    model = nn.Sequential(nn.ConvTranspose2d(4, 4, 3, stride=2, dilation=2))
    result = lint_model(model, 6)
    (row,) = result.layers
    x = torch.ones(1, 4, 6, 6, dtype=torch.float64)
    ref = F.conv_transpose2d(x, torch.ones(4, 4, 3, 3, dtype=torch.float64), stride=2, dilation=2)
    dead = int((ref[0, 0] == 0).sum())
    assert dead > 0
    assert row.overlap.dead_pixels == dead
    assert row.to_dict()["dead_pixels"] == dead
    assert row.flagged
    assert result.flagged
    assert "dilation" in row.suggestion
    assert "never written" in row.suggestion


def test_unet_with_skip_concatenation_and_output_size():
    for size in (16, 15):
        model = UNet(up_kernel=3, up_padding=1)
        result = lint_model(model, size)
        reference = _torch_sizes(model, (1, 3, size, size))
        assert [(c.path, c.input_size, c.output_size) for c in result.traced] == reference
        up = next(r for r in result.layers if r.path == "up")
        assert up.output_size == (size, size)
        assert up.spec.output_size(up.input_size) == (size, size)  # output_padding recovered
        # the colliding sizes and the output_padding that selects each, checked by torch
        tconv = nn.ConvTranspose2d(1, 1, 3, stride=2, padding=1)
        for v, op in zip(up.colliding[0], up.output_paddings[0]):
            tconv.output_padding = (op, op)
            assert tconv(torch.zeros(1, 1, *up.input_size)).shape[-1] == v
        down = next(r for r in result.layers if r.path == "down")
        for v, op in zip(down.colliding[0], down.output_paddings[0]):
            conv_out = nn.Conv2d(1, 1, 3, 2, 1)(torch.zeros(1, 1, v, v)).shape[-1]
            assert conv_out == down.output_size[0]
            back = nn.ConvTranspose2d(1, 1, 3, 2, 1, output_padding=op)
            assert back(torch.zeros(1, 1, conv_out, conv_out)).shape[-1] == v
        assert down.ambiguous
        assert up.ambiguous
        assert result.compound.paths == ("up", "dec.0", "head")
        assert result.flagged  # kernel 3, stride 2 up
    clean = lint_model(UNet(up_kernel=2), 16)
    assert not clean.flagged
    m = clean.compound.overlap
    x = torch.ones(1, 1, 8, 8, dtype=torch.float64)
    x = F.conv_transpose2d(x, torch.ones(1, 1, 2, 2, dtype=torch.float64), stride=2)
    x = F.conv2d(x, torch.ones(1, 1, 3, 3, dtype=torch.float64), padding=1)
    x = F.conv2d(x, torch.ones(1, 1, 1, 1, dtype=torch.float64))
    assert np.array_equal(m.counts, x[0, 0].numpy())


def test_resnet18_residual_branches_are_all_seen():
    model = torchvision.models.resnet18(weights=None).eval()
    result = lint_model(model, 64)
    assert [(c.path, c.input_size, c.output_size) for c in result.traced] == _torch_sizes(
        model, (1, 3, 64, 64)
    )
    paths = [r.path for r in result.layers]
    assert "layer2.0.downsample.0" in paths
    assert "maxpool" in paths
    assert "conv1" in paths
    assert {r.role for r in result.layers} == {"downsampling", "pooling"}
    assert result.compound is None
    assert not result.flagged  # nothing upsamples: gradient patterns are notes
    shortcut = next(r for r in result.layers if r.path == "layer2.0.downsample.0")
    assert shortcut.overlap.dead_pixels == 16 * 16 - 8 * 8  # a 1x1 stride-2 conv reads 1 in 4
    assert lint_model(model, 64, strict=True).flagged
    assert result.aliasing is not None
    assert result.aliasing_path == "conv1"
    assert result.aliasing.alias_share.shape == (64,)


def test_trace_leaves_the_model_untouched():
    model = dcgan()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lint_model(model, 1)
    assert model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_weighted_view_of_a_trained_layer_is_reported():
    model = nn.Sequential(nn.ConvTranspose2d(2, 2, 3, stride=2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.5, 1.0, 0.5]]).T @ torch.tensor([[0.5, 1.0, 0.5]]))
    (row,) = lint_model(model, 5).layers
    assert row.overlap.ratio == 4.0
    assert row.weighted is not None
    assert row.to_dict()["weighted_ratio"] == pytest.approx(1.0)


def test_bad_inputs_name_the_layer():
    model = torchvision.models.resnet18(weights=None)
    with pytest.raises(ParameterError, match="input_size") as info:
        trace_model(nn.Sequential(nn.Conv2d(3, 4, 7), nn.Conv2d(4, 4, 7)), 8)
    assert "'1' (Conv2d)" in str(info.value)
    with pytest.raises(ParameterError, match="input_size"):
        lint_model(model, 0)
    with pytest.raises(ParameterError, match="model"):
        lint_model(nn.Sequential(nn.Linear(3, 3)), 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated
        scripted = torch.jit.script(nn.Sequential(nn.Conv2d(1, 1, 3)))
    with pytest.raises(ParameterTypeError, match="model"):
        lint_model(scripted, 8)
    with pytest.raises(ParameterTypeError, match="model"):
        lint_model("resnet18", 8)  # type: ignore[arg-type]
