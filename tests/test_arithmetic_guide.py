"""The 15 numbered relationships of Dumoulin & Visin, *A guide to convolution arithmetic for
deep learning* (arXiv:1603.07285), with the paper's own example sizes (its figures).

Each test checks three things against each other: the paper's closed form (written out here),
convlens' arithmetic, and real PyTorch modules. The transposed relationships (8-14) also check
the paper's construction, a direct convolution of the zero-stretched, zero-padded input with
the flipped kernel, value for value against ``F.conv_transpose2d``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from convlens.arithmetic import LayerSpec, colliding_input_sizes, invert_conv

torch.manual_seed(0)


def _torch_conv(i: int, k: int, s: int = 1, p: int = 0, d: int = 1) -> int:
    out = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)(torch.zeros(1, 1, i, i))
    assert out.shape[2] == out.shape[3]
    return out.shape[2]


def _check_conv(i: int, k: int, s: int, p: int, o_paper: int, d: int = 1) -> None:
    ours = LayerSpec.conv(k, s, p, d).output_size((i, i))
    assert ours == (o_paper, o_paper)
    assert _torch_conv(i, k, s, p, d) == o_paper


def _paper_transpose(y: torch.Tensor, w: torch.Tensor, k: int, s: int, p: int, a: int):
    """The paper's equivalent direct convolution: stretch the input with s-1 zeros between
    units, pad k-p-1 on each side and a extra on the bottom/right, convolve (stride 1) with
    the flipped kernel."""
    n = y.shape[-1]
    stretched = y.new_zeros(*y.shape[:2], s * (n - 1) + 1, s * (n - 1) + 1)
    stretched[..., ::s, ::s] = y
    q = k - p - 1
    padded = F.pad(stretched, (q, q + a, q, q + a))
    return F.conv2d(padded, w.transpose(0, 1).flip(-1, -2))


def _check_transpose(i: int, k: int, s: int, p: int, o_prime_paper: int) -> None:
    """Conv (i, k, s, p) and its transpose, whose output the paper gives as o_prime_paper."""
    conv = LayerSpec.conv(k, s, p)
    (o, _) = conv.output_size((i, i))
    a = (i + 2 * p - k) % s  # the paper's a (relationship 14; 0 for 8-13)
    inv = invert_conv(conv, (i, i))
    assert inv.transpose.output_size((o, o)) == (o_prime_paper, o_prime_paper)
    assert o_prime_paper == i
    assert inv.output_padding == (a, a)
    assert inv.transpose.padding == (p, p)
    y = torch.randn(1, 1, o, o, dtype=torch.float64)
    w = torch.randn(1, 1, k, k, dtype=torch.float64)
    ours = F.conv_transpose2d(y, w, stride=s, padding=p, output_padding=a)
    paper = _paper_transpose(y, w, k, s, p, a)
    assert ours.shape[-2:] == (o_prime_paper, o_prime_paper)
    torch.testing.assert_close(ours, paper)
    module = nn.ConvTranspose2d(1, 1, k, stride=s, padding=p).double()
    assert module(y, output_size=[i, i]).shape[-2:] == (i, i)


def test_relationship_01_no_padding_unit_strides():
    i, k = 4, 3  # figure 2.1
    _check_conv(i, k, 1, 0, (i - k) + 1)


def test_relationship_02_zero_padding_unit_strides():
    i, k, p = 5, 4, 2  # figure 2.2
    _check_conv(i, k, 1, p, (i - k) + 2 * p + 1)


def test_relationship_03_half_padding():
    i, k = 5, 3  # figure 2.3: k = 2n + 1, p = n
    p = k // 2
    _check_conv(i, k, 1, p, i)
    assert LayerSpec.conv(k, padding="same").output_size(i) == (i, i)


def test_relationship_04_full_padding():
    i, k = 5, 3  # figure 2.4: p = k - 1
    _check_conv(i, k, 1, k - 1, i + (k - 1))


def test_relationship_05_no_padding_strides():
    i, k, s = 5, 3, 2  # figure 2.5
    _check_conv(i, k, s, 0, (i - k) // s + 1)


@pytest.mark.parametrize("i", [5, 6])  # figures 2.6 and 2.7: 5 and 6 both give 3
def test_relationship_06_padding_strides(i):
    k, s, p = 3, 2, 1
    _check_conv(i, k, s, p, (i + 2 * p - k) // s + 1)
    assert colliding_input_sizes(LayerSpec.conv(k, s, p, ndim=1), i) == ((5, 6),)


@pytest.mark.parametrize("pool", [nn.MaxPool2d, nn.AvgPool2d])
def test_relationship_07_pooling(pool):
    i, k, s = 5, 3, 1  # figures 1.5 and 1.6: 3x3 pooling of a 5x5 input, unit strides
    o_paper = (i - k) // s + 1
    spec = LayerSpec.max_pool(k, s) if pool is nn.MaxPool2d else LayerSpec.avg_pool(k, s)
    assert spec.output_size((i, i)) == (o_paper, o_paper)
    assert pool(k, s)(torch.zeros(1, 1, i, i)).shape[-2:] == (o_paper, o_paper)


def test_relationship_08_transpose_no_padding_unit_strides():
    i, k = 4, 3  # figure 4.1: o = 2, then k' = k, s' = 1, p' = k - 1
    o = i - k + 1
    _check_transpose(i, k, 1, 0, o + (k - 1))


def test_relationship_09_transpose_zero_padding_unit_strides():
    i, k, p = 5, 4, 2  # figure 4.2: o = 6, p' = k - p - 1
    o = i - k + 2 * p + 1
    _check_transpose(i, k, 1, p, o + (k - 1) - 2 * p)


def test_relationship_10_transpose_half_padding():
    i, k = 5, 3  # figure 4.3: p' = p, o' = i'
    o = i
    _check_transpose(i, k, 1, k // 2, o)


def test_relationship_11_transpose_full_padding():
    i, k = 5, 3  # figure 4.4: p = k - 1, so p' = 0 and o' = i' - (k - 1)
    o = i + (k - 1)
    _check_transpose(i, k, 1, k - 1, o - (k - 1))


def test_relationship_12_transpose_no_padding_strides():
    i, k, s = 5, 3, 2  # figure 4.5: i - k a multiple of s
    assert (i - k) % s == 0
    o = (i - k) // s + 1
    _check_transpose(i, k, s, 0, s * (o - 1) + k)


def test_relationship_13_transpose_padding_strides():
    i, k, s, p = 5, 3, 2, 1  # figure 4.6: i + 2p - k a multiple of s
    assert (i + 2 * p - k) % s == 0
    o = (i + 2 * p - k) // s + 1
    _check_transpose(i, k, s, p, s * (o - 1) + k - 2 * p)


def test_relationship_14_transpose_padding_strides_odd():
    i, k, s, p = 6, 3, 2, 1  # figure 4.7: a = (i + 2p - k) mod s = 1
    a = (i + 2 * p - k) % s
    assert a == 1
    o = (i + 2 * p - k) // s + 1
    _check_transpose(i, k, s, p, s * (o - 1) + a + k - 2 * p)
    module = nn.ConvTranspose2d(1, 1, k, stride=s, padding=p, output_padding=a)
    assert module(torch.zeros(1, 1, o, o)).shape[-2:] == (i, i)


def test_relationship_15_dilation():
    i, k, d, s, p = 7, 3, 2, 1, 0  # figure 5.1
    k_hat = k + (k - 1) * (d - 1)
    assert LayerSpec.conv(k, dilation=d).effective_kernel == (k_hat, k_hat)
    _check_conv(i, k, s, p, (i + 2 * p - k - (k - 1) * (d - 1)) // s + 1, d=d)
