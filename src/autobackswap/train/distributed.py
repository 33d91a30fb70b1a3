"""Data-parallel training under ``torchrun``: process group, sharding, per-rank randomness.

``torchrun --nproc_per_node N -m autobackswap train ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and a rendezvous address in their environment; :func:`setup` joins
them into a process group (``gloo`` on CPU, ``nccl`` when every rank has a GPU). Without those
variables, or with ``WORLD_SIZE=1``, nothing here does anything and training is the
single-process loop, unchanged.

How an epoch is split (:class:`ShardedSource`):

* Every rank draws the **same** permutation of the training set from an *order* generator seeded
  with the training seed (the equivalent of ``DistributedSampler(shuffle=True)`` with
  ``set_epoch``), and cuts it into the same global batches of ``batch_size`` images as a single
  process would. Rank ``r`` of ``W`` takes ``batch[r::W]``; DDP averages the gradients, so one step
  sees the global batch. A last global batch too small to give every rank two images is dropped.
* Augmentation and composition draw from a *per-rank* generator seeded from ``(seed, rank)``: the
  ranks' random streams differ, and a rerun with the same seed and world size repeats them.
  (Per-item streams for DataLoader workers are :func:`~autobackswap.compose.swap.item_generator`.)
* Only rank 0 writes files (:func:`is_main`); work that writes shared caches (the image cache,
  the separation) runs on rank 0 first while the others wait (:func:`main_process_first`), after
  which they read what rank 0 wrote.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..errors import AutoBackSwapError

log = logging.getLogger(__name__)

# Rank 0 may separate the whole train split while the others wait at a barrier: allow for it.
TIMEOUT = datetime.timedelta(seconds=float(os.environ.get("AUTOBACKSWAP_DIST_TIMEOUT_S", 4 * 3600)))


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: str = "cpu"

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """Whether this process was started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(backend: str | None = None) -> DistInfo:
    """Join the process group torchrun described in the environment (no-op for one process)."""
    if dist.is_available() and dist.is_initialized():
        return current()
    if not launched():
        return DistInfo()
    if not dist.is_available():
        raise AutoBackSwapError("torch.distributed is not available in this torch build")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() and torch.cuda.device_count() > local_rank else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, timeout=TIMEOUT)
    info = current()
    log.info("distributed: rank %d of %d, backend %s, device %s", info.rank, info.world_size, backend, info.device)
    return info


def current() -> DistInfo:
    """The process group this process belongs to (rank 0 of 1 when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    backend = str(dist.get_backend())
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = f"cuda:{local_rank}" if backend == "nccl" else "cpu"
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, backend, device)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main() -> bool:
    return current().is_main


def barrier() -> None:
    info = current()
    if info.enabled:
        if info.backend == "nccl":
            dist.barrier(device_ids=[info.local_rank])
        else:
            dist.barrier()


@contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (and writes its caches); the other ranks run it afterwards."""
    info = current()
    if info.enabled and not info.is_main:
        barrier()
    yield
    if info.enabled and info.is_main:
        barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank (picklable objects)."""
    if not current().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    info = current()
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def rank_generator(seed: int, rank: int) -> torch.Generator:
    """The per-rank augmentation / composition stream: differs per rank, reproducible per (seed, rank)."""
    state = np.random.SeedSequence([seed, rank, 0xD15]).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def shard_batches(order: torch.Tensor, batch_size: int, rank: int, world_size: int) -> Iterator[torch.Tensor]:
    """Rank ``rank``'s part of each global batch of ``batch_size`` indices of ``order``."""
    if batch_size < 2 * world_size:
        raise AutoBackSwapError(f"batch size {batch_size} is too small for {world_size} processes: "
                                f"each needs at least 2 images per step (BatchNorm)")
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        if len(idx) < 2 * world_size:
            continue
        yield idx[rank::world_size]


class ShardedSource:
    """Wraps a batch source that has ``order(generator)`` and ``batch(idx, generator) -> (x, y)``:
    every rank walks the same global batches and makes its own share of each."""

    def __init__(self, source: Any, info: DistInfo, order_generator: torch.Generator) -> None:
        for attr in ("order", "batch"):
            if not hasattr(source, attr):
                raise AutoBackSwapError(f"{type(source).__name__} cannot be sharded across processes "
                                        f"(it has no {attr!r}); run this method in one process")
        self.source = source
        self.info = info
        self.order_generator = order_generator
        self.samples_seen = 0

    def __len__(self) -> int:
        return len(self.source)

    def batches(self, epoch: int, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.source.order(self.order_generator)
        for idx in shard_batches(order, batch_size, self.info.rank, self.info.world_size):
            self.samples_seen += len(idx)
            yield self.source.batch(idx, generator)


def wrap_model(model: nn.Module, info: DistInfo) -> nn.Module:
    """DistributedDataParallel around ``model`` (already on ``info.device``)."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [info.local_rank] if info.device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=ids)


def sync_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank, so evaluation and model
    selection are identical everywhere."""
    if current().enabled:
        for buf in model.buffers():
            dist.broadcast(buf, 0)


def all_reduce_mean(value: float) -> float:
    info = current()
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def state_checksum(model: nn.Module) -> str:
    """A digest of every parameter and buffer (equal on every rank when the replicas agree)."""
    h = hashlib.sha1()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
