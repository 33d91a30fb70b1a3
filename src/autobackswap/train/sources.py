"""Training-batch sources: each yields one epoch of ``(NCHW float in [0, 1], targets)`` batches.

Every source has ``order(generator)`` (the epoch's index order) and ``batch(idx, generator)``;
:func:`epoch_batches` walks the order in chunks. ERM's :class:`ArraySource` shuffles and flips,
:class:`SwapSource` composes background swaps, and :class:`ShardedSource` gives each torchrun rank
its share of every global batch. All randomness comes from an explicit ``torch.Generator`` (on the
CPU, so a seed draws the same numbers whatever the device).

``source.to(device)`` makes a source build its batches on ``device``: the uint8 rows are gathered on
the CPU, copied from pinned memory, and converted, flipped and composed on the device. On the CPU
(the default) the batches are exactly what they were before devices existed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
import torch

from ..compose.functional import SwapParams
from ..compose.swap import BackgroundSwap, as_bank
from ..data.stream import is_disk_backed
from ..errors import AutoBackSwapError
from ..runtime import DistInfo, to_device
from ..tensors import to_tensor


class BatchSource(Protocol):
    """Yields one epoch of training batches: (NCHW float in [0, 1], labels)."""

    def __len__(self) -> int: ...

    def batches(
        self, epoch: int, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


class IndexedSource:
    """The common part of the sources over a training set's indices: labels, flips, the device the
    batches are built on, a uniform shuffle per epoch; subclasses implement ``batch(idx, generator)``."""

    def __init__(self, labels: np.ndarray, hflip: bool = True) -> None:
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.hflip = hflip
        self.device = torch.device("cpu")

    def to(self, device: torch.device) -> IndexedSource:
        """Build the batches on ``device`` (the uint8 rows go there and are converted there)."""
        self.device = torch.device(device)
        return self

    def __len__(self) -> int:
        return len(self.labels)

    def order(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(len(self.labels), generator=generator)

    def batch(self, idx: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def batches(
        self, epoch: int, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return epoch_batches(self, batch_size, generator)


class ArraySource(IndexedSource):
    """Shuffled batches from in-memory arrays, with optional horizontal flips and per-sample weights."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        hflip: bool = True,
        sample_weights: np.ndarray | None = None,
    ) -> None:
        super().__init__(labels, hflip)
        # NHWC uint8; a DiskArray stays on disk and is read per batch (indexing it by a tensor gives a tensor)
        self.images = images if is_disk_backed(images) else torch.from_numpy(np.ascontiguousarray(images))
        self.sample_weights = None if sample_weights is None else torch.as_tensor(sample_weights, dtype=torch.double)

    def order(self, generator: torch.Generator) -> torch.Tensor:
        if self.sample_weights is not None:
            return torch.multinomial(self.sample_weights, len(self.labels), replacement=True, generator=generator)
        return super().order(generator)

    def batch(self, idx: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = to_tensor(to_device(self.images[idx], self.device))
        return (maybe_flip(x, generator) if self.hflip else x), self.labels[idx]


def epoch_batches(source: Any, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of ``source.batch(idx, generator)`` over ``source.order(generator)``, in chunks of
    ``batch_size`` (a last chunk of one image is dropped: a batch of one breaks BatchNorm)."""
    order = source.order(generator)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        if len(idx) < 2:
            continue
        yield source.batch(idx, generator)


def maybe_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each NCHW image horizontally with probability 0.5."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    if flip.any():
        rows = torch.nonzero(flip).flatten().to(x.device)  # indices made on the CPU: no device sync
        x[rows] = x[rows].flip(-1)
    return x


class SwapSource(IndexedSource):
    """The training-batch source used by the ``autobackswap`` and ``oracle`` methods (composed on the
    source's device: each batch's rows of the banks go there and are pasted there)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, swap: BackgroundSwap, hflip: bool = True) -> None:
        super().__init__(labels, hflip)
        self.images = as_bank(images)
        self.swap = swap
        self.last_params: SwapParams | None = None

    def batch(self, idx: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and targets for dataset indices ``idx``: the composites with their labels, and with
        ``bg_only`` > 0 some inpainted backgrounds appended, the targets then class probabilities
        (one-hot for the composites, uniform for the backgrounds)."""
        params = self.swap.sample(idx, generator)
        originals = self.images[idx].permute(0, 3, 1, 2)  # uint8 view; floats made only if needed
        x = self.swap.apply(originals, idx, params, device=self.device)
        self.last_params = params
        y = self.labels[idx]
        k = round(self.swap.config.bg_only * len(idx))
        if k > 0:
            k_classes = len(self.swap.donors)
            x = torch.cat([x, self.swap.backgrounds_only(k, generator, device=self.device)])
            y = torch.cat([torch.nn.functional.one_hot(y, k_classes).float(), torch.full((k, k_classes), 1.0 / k_classes)])
        x = x.contiguous(memory_format=torch.channels_last)
        return (maybe_flip(x, generator) if self.hflip else x), y


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

    @property
    def labels(self) -> Any:
        return getattr(self.source, "labels", None)

    def to(self, device: torch.device) -> ShardedSource:
        to = getattr(self.source, "to", None)
        if callable(to):
            to(device)
        return self

    def __len__(self) -> int:
        return len(self.source)

    def batches(self, epoch: int, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.source.order(self.order_generator)
        for idx in shard_batches(order, batch_size, self.info.rank, self.info.world_size):
            self.samples_seen += len(idx)
            yield self.source.batch(idx, generator)
