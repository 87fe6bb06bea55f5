"""One geometry: every entry point that takes a layer's geometry refuses the same bad input with
the same error type and message as LayerSpec (which PyTorch refuses too, the reference)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from convlens.arithmetic import LayerSpec
from convlens.errors import ConvLensError
from convlens.figures import conv_frames, matrix_entries, transpose_scatter_frames
from convlens.matrix import conv_matrix
from convlens.symbolic import symbolic_conv, symbolic_conv_transpose
from convlens.transpose import ROUTES, verify_routes

BAD_CONV = {
    "groups is a bool": {"groups": True},
    "zero stride": {"stride": 0},
    "float stride": {"stride": 1.5},
    "negative padding": {"padding": -1},
    "zero dilation": {"dilation": 0},
}


def _conv_entries(kw: dict[str, Any]) -> dict[str, Callable[[], object]]:
    """The conv entry points on a 2-channel 5x5 input with a 3x3 kernel."""
    entries: dict[str, Callable[[], object]] = {
        "conv_matrix": lambda: conv_matrix(torch.zeros(2, 2, 3, 3), 5, **kw),
        "symbolic_conv": lambda: symbolic_conv(5, 3, in_channels=2, out_channels=2, **kw),
        "scatter route": lambda: ROUTES["scatter"](
            torch.zeros(1, 2, 5, 5), torch.zeros(2, 2, 3, 3), **kw
        ),
        "verify_routes": lambda: verify_routes(5, 3, **kw),
    }
    if "groups" not in kw:  # the figures draw one channel
        entries["conv_frames"] = lambda: conv_frames(5, 3, **kw)
        entries["matrix_entries"] = lambda: matrix_entries(5, 3, **kw)
    return entries


def _error(make: Callable[[], object]) -> BaseException:
    with pytest.raises(ConvLensError) as info:
        make()
    return info.value


@pytest.mark.parametrize("case", list(BAD_CONV))
def test_conv_geometry_errors_are_one_type_and_one_message(case: str) -> None:
    kw = BAD_CONV[case]
    with pytest.raises((TypeError, ValueError, RuntimeError)):  # PyTorch refuses it as well
        F.conv2d(torch.zeros(1, 2, 5, 5), torch.zeros(2, 2, 3, 3), **kw)
    ref = _error(lambda: LayerSpec.conv(3, in_channels=2, out_channels=2, **kw).output_size(5))
    for name, make in _conv_entries(kw).items():
        got = _error(make)
        assert (type(got), str(got)) == (type(ref), str(ref)), name


def test_a_kernel_larger_than_the_input_is_one_message() -> None:
    with pytest.raises(RuntimeError):
        F.conv2d(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 3, 3))
    ref = _error(lambda: LayerSpec.conv(3).output_size(2))
    for make in (
        lambda: conv_matrix(torch.zeros(1, 1, 3, 3), 2),
        lambda: symbolic_conv(2, 3),
        lambda: conv_frames(2, 3),
        lambda: matrix_entries(2, 3),
    ):
        got = _error(make)
        assert (type(got), str(got)) == (type(ref), str(ref))


def test_a_too_large_output_padding_is_one_message() -> None:
    with pytest.raises(RuntimeError):
        F.conv_transpose2d(
            torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 3, 3), stride=2, output_padding=2
        )
    ref = _error(lambda: LayerSpec.conv_transpose(3, 2, output_padding=2))
    for make in (
        lambda: ROUTES["matmul"](
            torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 3, 3), stride=2, output_padding=2
        ),
        lambda: symbolic_conv_transpose(3, 3, stride=2, output_padding=2),
        lambda: transpose_scatter_frames(3, 3, stride=2, output_padding=2),
        lambda: verify_routes(3, 3, stride=2, output_padding=2),
    ):
        got = _error(make)
        assert (type(got), str(got)) == (type(ref), str(ref))
