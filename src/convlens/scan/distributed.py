"""Scans across processes: torchrun detection, sharding, and an exact merge of the top-k.

``torchrun --nproc_per_node=N -m convlens scan ...`` starts N processes with ``RANK`` and
``WORLD_SIZE`` in their environment. Each one scans its share of the dataset, keeps its own
top-k, and the shares are merged with ``all_gather`` and the same total order (value, then
dataset index) that a single process uses, so the result is identical to a one-process run.

The shards are whole batches, dealt round-robin (``batch b`` goes to rank ``b % world``): every
image is then forwarded in exactly the batch it has in a one-process run, so even a backend
whose per-image results depend on the batch it sits in gives identical values.

>>> shard_batches(5, rank=1, world_size=2)
[1, 3]
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from convlens.errors import ParameterError
from convlens.scan.topk import TopK, merge_many

__all__ = [
    "DistInfo",
    "all_gather_json",
    "detect",
    "gather_topk",
    "process_group",
    "rank_device",
    "shard_batches",
]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def detect(environ: dict[str, str] | None = None) -> DistInfo:
    """Read ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` as torchrun sets them (else 0, 1, 0)."""
    env = os.environ if environ is None else environ
    try:
        rank = int(env.get("RANK", "0"))
        world = int(env.get("WORLD_SIZE", "1"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise ParameterError(
            "RANK/WORLD_SIZE", "integers (as torchrun sets them)", str(exc)
        ) from exc
    if world < 1 or not 0 <= rank < world:
        raise ParameterError("RANK", f"0 <= RANK < WORLD_SIZE={world}", rank)
    return DistInfo(rank, world, local)


def rank_device(device: str, info: DistInfo) -> str:
    """The device of this process: under torchrun, plain ``"cuda"`` means this rank's own GPU
    (``cuda:LOCAL_RANK``); anything else is used as given.

    >>> rank_device("cuda", DistInfo(1, 2, 1)), rank_device("cuda", DistInfo()), rank_device("cpu", DistInfo(1, 2, 1))
    ('cuda:1', 'cuda', 'cpu')
    """
    return f"cuda:{info.local_rank}" if info.active and device == "cuda" else device


def shard_batches(num_batches: int, rank: int, world_size: int) -> list[int]:
    """The batches (by number) that ``rank`` scans: ``rank, rank + world, ...``."""
    return list(range(rank, num_batches, world_size))


@contextlib.contextmanager
def process_group(info: DistInfo, device: torch.device) -> Iterator[None]:
    """Initialise the default process group for ``info`` (gloo on CPU, nccl on CUDA) and
    destroy it on exit, unless one was already initialised by the caller."""
    if not info.active or dist.is_initialized():
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_topk(state: TopK) -> TopK:
    """Merge every rank's top-k of one layer into the top-k of their union (on every rank)."""
    dev = _comm_device()
    parts = []
    for tensor in (state.values, state.indices, state.positions):
        local = tensor.to(dev).contiguous()
        bucket = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(bucket, local)
        parts.append([b.cpu() for b in bucket])
    return merge_many([TopK(v, i, p) for v, i, p in zip(*parts)])


def all_gather_json(obj: Any) -> list[Any]:
    """Every rank's JSON-able ``obj``, in rank order (sent as UTF-8 bytes, not pickled)."""
    dev = _comm_device()
    data = torch.tensor(list(json.dumps(obj).encode()), dtype=torch.uint8, device=dev)
    size = torch.tensor([data.numel()], dtype=torch.int64, device=dev)
    sizes = [torch.empty_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    longest = int(max(int(s) for s in sizes))
    padded = torch.zeros(longest, dtype=torch.uint8, device=dev)
    padded[: data.numel()] = data
    bucket = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(bucket, padded)
    return [json.loads(bytes(b[: int(s)].cpu().tolist()).decode()) for b, s in zip(bucket, sizes)]
