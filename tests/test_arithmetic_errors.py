"""Bad input raises the library's own errors (ValueError/TypeError subclasses), with messages
"param: expected X, received Y" naming the parameter, tested by their text."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from convlens.arithmetic import (
    LayerSpec,
    colliding_input_sizes,
    invert_conv,
    output_padding_for,
    spec_from_module,
)
from convlens.errors import ConvLensError, ParameterError, ParameterTypeError

BAD = [
    (lambda: LayerSpec.conv(0), r"kernel_size: expected positive ints, received \(0, 0\)"),
    (lambda: LayerSpec.conv(3, stride=0, ndim=1), r"stride: expected positive ints, received 0$"),
    (lambda: LayerSpec.conv(3, stride=-2), r"stride: expected positive ints, received \(-2, -2\)"),
    (lambda: LayerSpec.max_pool(3, dilation=0), "dilation: expected positive ints, received"),
    (lambda: LayerSpec.conv(3, padding=-1), "padding: expected non-negative ints, received"),
    (
        lambda: LayerSpec.conv_transpose(3, stride=2, output_padding=2, ndim=1),
        r"output_padding: expected a value smaller than either stride or dilation in each "
        r"dimension \(stride=\(2,\), dilation=\(1,\)\), received 2",
    ),
    (
        lambda: LayerSpec.conv_transpose(3, stride=2, output_padding=(1, 2), dilation=2),
        r"output_padding: expected a value smaller than either stride or dilation .* "
        r"received \(1, 2\)",
    ),
    (
        lambda: LayerSpec.conv(5, ndim=1).output_size(3),
        r"kernel_size: expected an effective kernel \(dilation\*\(kernel-1\)\+1 = 5\) no larger "
        r"than the padded input \(3\+0\+0 = 3\), received \(5,\)",
    ),
    (
        lambda: LayerSpec.conv(3, dilation=3, padding=1, ndim=1).output_size(4),
        r"kernel_size: expected an effective kernel .* = 7\) no larger than the padded input "
        r"\(4\+1\+1 = 6\)",
    ),
    (
        lambda: LayerSpec.conv(3, groups=2, in_channels=3, out_channels=4),
        "groups: expected a divisor of in_channels=3, received 2",
    ),
    (
        lambda: LayerSpec.conv(3, groups=2, in_channels=4, out_channels=5),
        "groups: expected a divisor of out_channels=5, received 2",
    ),
    (
        lambda: LayerSpec.conv(3, stride=2, padding="same", ndim=1),
        "stride: expected 1 in every dimension with padding='same'.*, received 2",
    ),
    (lambda: LayerSpec.conv(3, padding="full"), "padding: expected an int, a tuple of ints"),
    (lambda: LayerSpec.max_pool(3, padding=2), "padding: expected at most half the kernel"),
    (lambda: LayerSpec.conv(3).output_size(0), "input_size: expected positive ints"),
    (
        lambda: LayerSpec.conv(3, padding=2, padding_mode="reflect").output_size(2),
        "padding: expected a value smaller than the input size",
    ),
    (
        lambda: output_padding_for(LayerSpec.conv_transpose(3, 2, 1, ndim=1), 6, 13),
        r"output_size: expected a size from 11 to 12 in dimension 0 for input size \(6,\)"
        r".*, received 13",
    ),
    (
        lambda: invert_conv(LayerSpec.conv_transpose(3), 5),
        "conv: expected a LayerSpec of kind conv, received 'conv_transpose'",
    ),
    (
        lambda: LayerSpec.conv_transpose(1, padding=1, ndim=1).output_size(1),
        r"padding: expected a padding that leaves at least one output .* received 1",
    ),
]


@pytest.mark.parametrize(("make", "message"), BAD)
def test_bad_input_raises_parameter_error(make, message):
    with pytest.raises(ParameterError, match=message) as info:
        make()
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, ConvLensError)


def test_bad_types_raise_parameter_type_error():
    with pytest.raises(ParameterTypeError, match="stride: expected an int or a sequence"):
        LayerSpec.conv(3, stride=1.5)
    with pytest.raises(ParameterTypeError, match="spec: expected a LayerSpec, received str"):
        colliding_input_sizes("conv", 5)
    with pytest.raises(ParameterTypeError, match=r"module: expected a torch\.nn\.Module"):
        spec_from_module("conv")


@pytest.mark.parametrize(
    ("make", "spec"),
    [
        (lambda: nn.Conv1d(1, 1, 0), lambda: LayerSpec.conv(0, ndim=1)),
        (lambda: nn.Conv1d(1, 1, 3, stride=0), lambda: LayerSpec.conv(3, stride=0, ndim=1)),
        (lambda: nn.Conv1d(1, 1, 3, padding=-1), lambda: LayerSpec.conv(3, padding=-1, ndim=1)),
        (lambda: nn.Conv1d(4, 4, 3, groups=3), lambda: LayerSpec.conv(3, groups=3, in_channels=4)),
        (lambda: nn.Conv1d(1, 1, 3, 2, "same"), lambda: LayerSpec.conv(3, 2, "same", ndim=1)),
    ],
)
def test_torch_refuses_the_same_modules(make, spec):
    """Each refused configuration is refused by PyTorch as well (the reference)."""

    def run():
        module = make()
        return module(torch.zeros(1, module.in_channels, 8))

    with pytest.raises((ValueError, RuntimeError)):
        run()
    with pytest.raises(ParameterError):
        spec()


@pytest.mark.parametrize("name", ["layer", "_modules", "inverse", "receptive"])
def test_docstring_examples_run(name):
    import doctest
    import importlib

    module = importlib.import_module(f"convlens.arithmetic.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
