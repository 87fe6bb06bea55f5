"""Top-k of feature-map maxima: against brute force (every activation kept and sorted)."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from convlens.errors import ParameterError
from convlens.scan.run import ScanResult, scan
from convlens.scan.topk import empty_state, feature_maxima, merge, merge_many


def brute_maxima(fmap: torch.Tensor) -> tuple[list[list[float]], list[list[tuple[int, ...]]]]:
    """Per (n, c): the maximum and the first location holding it, by plain Python loops."""
    n, c = fmap.shape[:2]
    spatial = tuple(fmap.shape[2:])
    values, positions = [], []
    for i in range(n):
        vrow, prow = [], []
        for j in range(c):
            best, where = None, None
            for flat, v in enumerate(fmap[i, j].reshape(-1).tolist()):
                if best is None or v > best:
                    best, where = v, flat
            pos = []
            for s in reversed(spatial):
                pos.append(where % s)
                where //= s
            vrow.append(best)
            prow.append(tuple(reversed(pos)))
        values.append(vrow)
        positions.append(prow)
    return values, positions


def brute_topk(values: list[list[float]], indices: list[int], k: int) -> list[list[int]]:
    """Per channel, the dataset indices of the k largest values, ties to the lower index."""
    channels = len(values[0])
    out = []
    for c in range(channels):
        ranked = sorted(range(len(indices)), key=lambda r: (-values[r][c], indices[r]))
        out.append([indices[r] for r in ranked[:k]] + [-1] * max(0, k - len(indices)))
    return out


@given(
    n=st.integers(1, 4),
    c=st.integers(1, 3),
    spatial=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    seed=st.integers(0, 10_000),
)
def test_feature_maxima_matches_brute_force_with_ties(n, c, spatial, seed):
    g = torch.Generator().manual_seed(seed)
    fmap = torch.randint(0, 3, (n, c, *spatial), generator=g).to(torch.float32)  # many ties
    values, positions = feature_maxima(fmap)
    ref_v, ref_p = brute_maxima(fmap)
    assert values.tolist() == ref_v
    assert [[tuple(p) for p in row] for row in positions.tolist()] == ref_p


@given(
    n=st.integers(1, 30),
    c=st.integers(1, 4),
    k=st.integers(1, 7),
    batch=st.integers(1, 8),
    seed=st.integers(0, 10_000),
)
def test_running_merge_equals_sorting_everything(n, c, k, batch, seed):
    rng = random.Random(seed)
    indices = rng.sample(range(1000), n)
    values = [[float(rng.randint(0, 4)) for _ in range(c)] for _ in range(n)]  # ties
    positions = torch.tensor([[[rng.randint(0, 9)] for _ in range(c)] for _ in range(n)])
    state = empty_state(c, k, 1)
    order = list(range(n))
    rng.shuffle(order)  # batches in any order
    for lo in range(0, n, batch):
        rows = order[lo : lo + batch]
        state = merge(
            state,
            torch.tensor([values[r] for r in rows]),
            torch.tensor([indices[r] for r in rows]),
            positions[rows],
        )
    expected = brute_topk(values, indices, k)
    assert state.indices.tolist() == expected
    row_of = {idx: r for r, idx in enumerate(indices)}
    for ch in range(c):
        for j, idx in enumerate(expected[ch]):
            if idx < 0:
                assert state.values[ch, j] == float("-inf")
            else:
                assert state.values[ch, j].item() == values[row_of[idx]][ch]
                assert state.positions[ch, j].tolist() == positions[row_of[idx], ch].tolist()


@given(n=st.integers(4, 20), k=st.integers(1, 5), parts=st.integers(2, 4), seed=st.integers(0, 999))
def test_merge_many_equals_one_stream(n, k, parts, seed):
    g = torch.Generator().manual_seed(seed)
    values = torch.randint(0, 3, (n, 3), generator=g).float()
    pos = torch.randint(0, 5, (n, 3, 2), generator=g)
    whole = merge(empty_state(3, k, 2), values, torch.arange(n), pos)
    shards = []
    for r in range(parts):
        rows = torch.arange(r, n, parts)
        shards.append(merge(empty_state(3, k, 2), values[rows], rows, pos[rows]))
    merged = merge_many(shards)
    assert torch.equal(merged.values, whole.values)
    assert torch.equal(merged.indices, whole.indices)
    assert torch.equal(merged.positions, whole.positions)


class _Quantised(nn.Module):
    """A conv whose outputs are rounded, so that many images tie."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(torch.round(self.conv(x)))


@settings(max_examples=10)
@given(
    n=st.integers(1, 23),
    k=st.integers(1, 6),
    batch=st.integers(1, 7),
    seed=st.integers(0, 10_000),
)
def test_scan_equals_brute_force_on_a_small_dataset(n, k, batch, seed):
    torch.manual_seed(seed)
    net = _Quantised().eval()
    data = [(torch.randint(-1, 2, (2, 5, 6)).float(), 0) for _ in range(n)]
    result = scan(net, data, ["act", "conv"], top=k, batch_size=batch, progress=False)
    for layer in ("act", "conv"):
        module = dict(net.named_modules())[layer]
        seen = []
        handle = module.register_forward_hook(lambda m, a, o, seen=seen: seen.append(o.clone()))
        with torch.no_grad():
            for x, _ in data:
                net(x.unsqueeze(0))  # one image at a time
        handle.remove()
        maxima = [brute_maxima(s) for s in seen]
        values = [v[0][0] for v in maxima]
        expected = brute_topk(values, list(range(n)), min(k, n))  # top > n keeps all n
        top = result.layers[layer]
        assert top.indices.tolist() == expected
        for ch in range(top.channels):
            for j, idx in enumerate(expected[ch]):
                if idx >= 0:
                    assert top.values[ch, j].item() == pytest.approx(values[idx][ch], abs=1e-6)
                    assert tuple(top.positions[ch, j].tolist()) == maxima[idx][1][0][ch]
    assert result.counts == {"total": n, "scanned": n, "skipped": 0}
    assert result.meta["top"] == min(k, n)
    assert result.meta.get("top_requested", k) == k


def test_hooks_removed_after_scan_and_after_an_error():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    data = [(torch.randn(1, 5, 5), 0)] * 3
    scan(net, data, ["0"], top=2, progress=False)
    assert all(not m._forward_hooks for m in net.modules())
    bad = [(torch.randn(1, 5, 5), 0), (torch.randn(1, 2, 2), 0)]  # second item too small

    with pytest.raises(ParameterError, match=r"model: expected a forward pass that runs"):
        scan(net, bad, ["1"], top=1, batch_size=1, progress=False)
    assert all(not m._forward_hooks for m in net.modules())


def test_result_round_trip(tmp_path):
    net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU())
    data = [(torch.randn(1, 9), 0) for _ in range(5)]
    result = scan(net, data, ["1"], top=3, progress=False, out=tmp_path)
    again = ScanResult.load(tmp_path)
    assert torch.equal(again.layers["1"].values, result.layers["1"].values)
    assert torch.equal(again.layers["1"].indices, result.layers["1"].indices)
    assert torch.equal(again.layers["1"].positions, result.layers["1"].positions)
    assert again.counts == result.counts
    assert again.meta["layers"] == ["1"]


def test_bad_arguments_raise_clear_errors():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    data = [(torch.randn(1, 5, 5), 0)]
    with pytest.raises(
        ParameterError,
        match=r"layers: expected a module path of the model, one of: 0, 1, "
        r"received 'features.3'",
    ):
        scan(net, data, ["features.3"], progress=False)
    with pytest.raises(ParameterError, match="top: expected a positive int, received 0"):
        scan(net, data, ["0"], top=0, progress=False)
    with pytest.raises(ParameterError, match="batch_size: expected a positive int"):
        scan(net, data, ["0"], batch_size=-1, progress=False)
    with pytest.raises(ParameterError, match="resume: expected an output folder"):
        scan(net, data, ["0"], resume=True, progress=False)
    with pytest.raises(ParameterError, match="dataset: expected at least one item"):
        scan(net, [], ["0"], progress=False)


def test_dataloader_workers_give_the_same_result():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2)).eval()
    data = [(torch.randn(1, 8, 8), 0) for _ in range(11)]
    one = scan(net, data, ["0", "2"], top=3, batch_size=4, progress=False)
    two = scan(net, data, ["0", "2"], top=3, batch_size=4, workers=2, progress=False)
    for layer in ("0", "2"):
        assert torch.equal(one.layers[layer].values, two.layers[layer].values)
        assert torch.equal(one.layers[layer].indices, two.layers[layer].indices)
        assert torch.equal(one.layers[layer].positions, two.layers[layer].positions)
