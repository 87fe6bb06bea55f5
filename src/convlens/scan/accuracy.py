"""Top-1 accuracy of a model over a dataset's labelled items (unreadable items left out).

The model runs in eval mode under ``torch.no_grad``; every module's own ``training`` flag is
restored afterwards, also when the forward raises (:func:`convlens.loaded.eval_mode`).

>>> import torch, torch.nn as nn
>>> net = nn.Sequential(nn.Flatten(), nn.Linear(1, 2, bias=False))
>>> _ = net[1].weight.data.copy_(torch.tensor([[1.0], [-1.0]]))
>>> dataset_accuracy(net, [(torch.ones(1), 0), (torch.ones(1), 1)])
0.5
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from convlens.errors import ParameterError
from convlens.loaded import eval_mode
from convlens.progress import track
from convlens.scan.data import SafeDataset, collate_safe, item_label

__all__ = ["dataset_accuracy"]


def dataset_accuracy(
    net: nn.Module,
    dataset: Any,
    *,
    batch_size: int = 64,
    device: Any = "cpu",
    progress: bool = False,
) -> float | None:
    """Top-1 accuracy of ``net`` on the labelled items of ``dataset`` (labels as
    :func:`convlens.scan.data.item_label` reads them), or None when no item has a label."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ParameterError("batch_size", "a positive int", batch_size)
    loader = DataLoader(SafeDataset(dataset), batch_size=batch_size, collate_fn=collate_safe)
    batches = math.ceil(len(dataset) / batch_size)
    correct = total = 0
    with eval_mode(net), torch.no_grad():
        for batch in track(loader, "accuracy", enabled=progress, total=batches):
            if batch.inputs is None or len(batch.indices) == 0:
                continue
            found = [item_label(dataset, int(i)) for i in batch.indices.tolist()]
            labels = torch.tensor([-1 if v is None else v for v in found])
            predicted = net(batch.inputs.to(device)).argmax(1).cpu()
            known = labels >= 0
            correct += int((predicted[known] == labels[known]).sum())
            total += int(known.sum())
    return correct / total if total else None
