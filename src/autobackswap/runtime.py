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
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from . import seeding
from .errors import AutoBackSwapError
from .io import digest

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


def all_gather_object(obj: Any) -> list[Any]:
    info = current()
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def rank_generator(seed: int, rank: int) -> torch.Generator:
    """The per-rank augmentation / composition stream: differs per rank, reproducible per (seed, rank)."""
    return seeding.generator(seed, "rank", rank)


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
    parts: list[str | bytes] = []
    for name, t in model.state_dict().items():
        parts += [name, t.detach().cpu().contiguous().numpy().tobytes()]
    return digest(*parts, length=16)
