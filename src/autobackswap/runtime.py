"""Devices and mixed precision, and data-parallel training under ``torchrun``.

**Devices.** :func:`resolve_device` turns a device setting (``auto``, ``cpu``, ``cuda``, ``cuda:N``,
``mps``) into a ``torch.device``; ``auto`` picks a CUDA GPU when there is one, then Apple's MPS, else
the CPU. An unavailable device is one clear error. :func:`resolve_amp` decides the autocast dtype
(``amp=None``: on for CUDA, bf16 where the GPU supports it, else fp16 with a gradient scaler; off
elsewhere). Under torchrun each rank keeps its own device (``DistInfo.device``), as below.

**torchrun.**

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
from contextlib import contextmanager, nullcontext
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


DEVICE_SPECS = ("auto", "cpu", "cuda", "cuda:N", "mps")


def check_device_spec(spec: str) -> str:
    """``spec`` normalised (lower case, stripped) when it is a valid device setting; else a ValueError.

    Only the spelling is checked here (a checkpoint written on a GPU machine must still load on a
    CPU one); :func:`resolve_device` checks that the device exists."""
    text = str(spec).strip().lower()
    kind, sep, index = text.partition(":")
    if text in ("auto", "cpu", "cuda", "mps") or (kind == "cuda" and sep and index.isdigit()):
        return text
    raise ValueError(f"device {spec!r}: expected one of {', '.join(DEVICE_SPECS)}")


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(spec: str = "auto") -> torch.device:
    """The ``torch.device`` for a device setting; ``auto`` = a CUDA GPU, else MPS, else the CPU.

    Raises :class:`~autobackswap.errors.AutoBackSwapError` (one line) for a device this machine lacks."""
    text = check_device_spec(spec)
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if mps_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not mps_available():
            raise AutoBackSwapError("device 'mps': Apple's MPS backend is not available on this machine "
                                    "(use --device cpu or auto)")
        return torch.device("mps")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise AutoBackSwapError(f"device {text!r}: no CUDA GPU is available (torch {torch.__version__}, "
                                f"CUDA build {torch.version.cuda or 'none'}); use --device cpu or auto")
    index = int(text.partition(":")[2] or torch.cuda.current_device())
    if index >= count:
        raise AutoBackSwapError(f"device {text!r}: this machine has {count} CUDA device"
                                f"{'' if count == 1 else 's'} (cuda:0 to cuda:{count - 1})")
    return torch.device("cuda", index)


@dataclass(frozen=True)
class Precision:
    """How a forward pass runs: ``dtype`` the autocast dtype (None: plain float32) and whether the
    loss is scaled (fp16 gradients underflow without a ``GradScaler``)."""

    dtype: torch.dtype | None = None
    scaler: bool = False

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, str(self.dtype))


def resolve_amp(amp: bool | None, device: torch.device, bf16_supported: bool | None = None) -> Precision:
    """Mixed precision for ``device``: ``amp=None`` means on for CUDA and off elsewhere.

    On CUDA: bf16 where the GPU supports it (``bf16_supported``, asked of torch when None), else fp16
    with a gradient scaler. Asked for explicitly on the CPU or MPS: bf16 autocast (no scaler)."""
    if amp is None:
        amp = device.type == "cuda"
    if not amp:
        return Precision()
    if device.type == "cuda":
        if bf16_supported is None:
            bf16_supported = bool(torch.cuda.is_bf16_supported())
        return Precision(torch.bfloat16) if bf16_supported else Precision(torch.float16, scaler=True)
    return Precision(torch.bfloat16)


def autocast(device: torch.device, precision: Precision) -> Any:
    """The autocast context of ``precision`` on ``device`` (a no-op context for float32)."""
    if precision.dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=precision.dtype)


def tune(device: torch.device) -> None:
    """Speed settings for training on ``device``: on CUDA, cuDNN picks the fastest convolution algorithms for
    the (fixed) batch shapes. Nothing changes on the CPU."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` on ``device``: the same tensor when it is there already; from pinned memory with a
    non-blocking copy to a CUDA device (the copy overlaps with the GPU's work)."""
    if x.device == device:
        return x
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


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
