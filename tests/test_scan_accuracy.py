"""dataset_accuracy: equal to a plain loop in eval mode, and the model's training flags
(every module's own) exactly as they were afterwards, also when the forward raises.

References: a hand-written loop over the items with ``torch.no_grad`` in eval mode; the flags
recorded from ``model.modules()`` before the call.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from convlens.scan.accuracy import dataset_accuracy


def _net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(3 * 4 * 4, 4),
    ).double()


def _data(n: int = 11, seed: int = 1) -> list[tuple[torch.Tensor, int]]:
    torch.manual_seed(seed)
    return [(torch.randn(1, 6, 6, dtype=torch.float64), i % 4) for i in range(n)]


def _flags(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


class _Boom(nn.Module):
    """Raises on the ``after``-th call: a forward that fails half-way through the dataset."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after, self.calls = after, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > self.after:
            raise RuntimeError("forward failed")
        return x


def test_accuracy_is_the_eval_mode_accuracy_and_flags_stay() -> None:
    net, data = _net(), _data()
    net.train()
    net[1].eval()  # a frozen BatchNorm inside a training model
    before = _flags(net)
    got = dataset_accuracy(net, data, batch_size=4)
    assert _flags(net) == before
    reference = _net()  # same weights; train flags never matter to the reference
    reference.eval()
    with torch.no_grad():
        correct = sum(int(reference(x[None]).argmax(1)[0]) == y for x, y in data)
    assert got == correct / len(data)


@settings(max_examples=20)
@given(st.lists(st.booleans(), min_size=7, max_size=7), st.integers(0, 2))
def test_flags_are_restored_exactly_also_when_the_forward_raises(
    flags: list[bool], fail_after: int
) -> None:
    net = nn.Sequential(_net(), _Boom(fail_after))
    modules = list(net.modules())[: len(flags)]
    for module, flag in zip(modules, flags):
        module.training = flag
    before = _flags(net)
    with pytest.raises(RuntimeError, match="forward failed"):
        dataset_accuracy(net, _data(), batch_size=4)  # 3 batches: the last one always fails
    assert _flags(net) == before


def test_no_labels_gives_none_and_the_flags_stay() -> None:
    net = _net().train()
    data = [(x, -1) for x, _ in _data(5)]
    assert dataset_accuracy(net, data, batch_size=2) is None
    assert all(_flags(net))
