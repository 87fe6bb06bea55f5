"""The lint as plain data (panels, the geometry page) and the overlap heat map picture."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from convlens.arithmetic import LayerSpec
from convlens.errors import ParameterError, ParameterTypeError
from convlens.figures.overlap import OverlapPanel, overlap_png, save_overlap_figure
from convlens.lint import geometry_page, lint_model, overlap_panels


def _tconv_ones(x: torch.Tensor, k: int, s: int, p: int = 0, d: int = 1) -> torch.Tensor:
    w = torch.ones(1, 1, *(k,) * (x.dim() - 2), dtype=torch.float64)
    fn = {3: F.conv_transpose1d, 4: F.conv_transpose2d, 5: F.conv_transpose3d}[x.dim()]
    return fn(x, w, stride=s, padding=p, dilation=d)


def test_panels_hold_the_torch_maps():
    spec = LayerSpec.conv_transpose(3, stride=2, padding=1, ndim=2)
    one, two = overlap_panels(spec, 4, layers=2)
    x = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    y1 = _tconv_ones(x, 3, 2, 1)
    y2 = _tconv_ones(y1, 3, 2, 1)
    assert np.array_equal(np.array(one["counts"]), y1[0, 0].numpy())
    assert np.array_equal(np.array(two["counts"]), y2[0, 0].numpy())
    assert np.array(one["interior"]).shape == y1.shape[2:]
    json.dumps([one, two])  # plain data


def test_three_d_panel_is_the_middle_slice_and_large_maps_are_cropped():
    spec = LayerSpec.conv_transpose(3, stride=2, ndim=3)
    (p3,) = overlap_panels(spec, 3)
    y = _tconv_ones(torch.ones(1, 1, 3, 3, 3, dtype=torch.float64), 3, 2)[0, 0]
    mid = y.shape[0] // 2
    assert np.array_equal(np.array(p3["counts"]), y[mid].numpy())
    assert f"slice {mid} of axis 0" in p3["title"]
    (big,) = overlap_panels(LayerSpec.conv_transpose(3, stride=2, ndim=2), 60, max_side=16)
    y = _tconv_ones(torch.ones(1, 1, 60, 60, dtype=torch.float64), 3, 2)[0, 0]
    assert np.array_equal(np.array(big["counts"]), y[:16, :16].numpy())
    assert "top-left 16x16" in big["title"]


def test_geometry_page_for_a_generator_and_a_chain():
    gen = nn.Sequential(
        nn.ConvTranspose2d(8, 4, 3, 2, 1, 1), nn.ReLU(), nn.ConvTranspose2d(4, 3, 3, 2, 1, 1)
    )
    page = geometry_page(lint_model(gen, 4), model=gen)
    json.dumps(page)
    assert page["flagged"] is True
    assert [p["title"].split(":")[0] for p in page["overlap_panels"][:2]] == ["0", "2"]
    assert page["overlap_panels"][-1]["title"].startswith("compound of 2 layers")
    x = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    w = torch.ones(1, 1, 3, 3, dtype=torch.float64)
    y = F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1)
    y = F.conv_transpose2d(y, w, stride=2, padding=1, output_padding=1)
    assert np.array_equal(np.array(page["overlap_panels"][-1]["counts"]), y[0, 0].numpy())
    assert page["aliasing"] is None  # the first layer upsamples
    assert all(row["receptive_field"] is None for row in page["table"])  # not a conv chain

    chain = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2))
    page = geometry_page(lint_model(chain, 17), model=chain)
    # receptive field of two 3x3 stride-2 convs: 3 + (3-1)*2 = 7, jump 4 (Araujo et al. 2019)
    assert page["table"][1]["receptive_field"]["size"] == [7, 7]
    assert page["table"][1]["receptive_field"]["jump"] == [4, 4]
    per = page["aliasing"]["per_filter"]
    assert len(per["alias_share"]) == 4
    assert page["overlap_panels"] == []


def test_heat_map_png_shows_the_counts_as_colours():
    counts = np.array([[0, 1], [2, 4]])
    png = overlap_png([OverlapPanel("t", counts, np.array([[True, False], [True, True]]))])
    with Image.open(io.BytesIO(png)) as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)
    # viridis from 0 (dark purple) to the max (yellow): both ends appear in the picture
    assert (np.abs(rgb - (68, 1, 84)).sum(axis=-1) < 30).sum() > 100
    assert (np.abs(rgb - (253, 231, 37)).sum(axis=-1) < 30).sum() > 100
    # the picture depends on the counts, and only on them
    again = overlap_png([OverlapPanel("t", counts, np.array([[True, False], [True, True]]))])
    other = overlap_png([OverlapPanel("t", counts[::-1], np.array([[True, False], [True, True]]))])
    assert png == again
    assert png != other
    with pytest.raises(ParameterError, match="interior"):
        overlap_png([OverlapPanel("t", counts, np.ones((3, 3), bool))])
    with pytest.raises(ParameterError, match="counts"):
        overlap_png([OverlapPanel("t", np.zeros((2, 2, 2)))])
    with pytest.raises(ParameterTypeError, match="panels"):
        overlap_png([])


def test_save_overlap_figure_is_atomic_and_checks_the_path(tmp_path):
    out = tmp_path / "m.svg"
    save_overlap_figure([OverlapPanel("1-D", [1, 2, 1, 2])], out)
    assert out.read_text().lstrip().startswith("<?xml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.svg"]
    with pytest.raises(ParameterError, match="out"):
        save_overlap_figure([OverlapPanel("x", [1])], tmp_path / "m.gif")
    with pytest.raises(ParameterError, match="out"):
        save_overlap_figure([OverlapPanel("x", [1])], tmp_path / "missing" / "m.png")
