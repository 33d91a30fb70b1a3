"""Background swapping for training: a batch transform, a torch ``Dataset`` wrapper, and the batch
source used by ``experiment``.

All three draw from the same banks (RGBA foregrounds and inpainted backgrounds at the working size)
and the same functional core (:mod:`.functional`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import seeding
from ..data.stream import DiskArray
from ..runtime import to_device
from ..tensors import to_tensor
from .functional import (
    JitterConfig,
    SwapParams,
    apply_params,
    donors_by_class,
    permute_channels,
    sample_params,
)

log = logging.getLogger(__name__)


@dataclass
class SwapConfig:
    p: float = 1.0  # probability an image is replaced by a composite, per epoch
    jitter: JitterConfig = field(default_factory=JitterConfig)
    # Permute each background's RGB channels at random (colours the training photos never had appear
    # behind every class). Off by default (the reference method); an option for real photos.
    bg_shuffle: bool = False
    # Extra inpainted backgrounds per batch, as a fraction of the batch size, each trained toward the
    # uniform prediction: background pixels learn to carry no class evidence. Used by the built-in
    # training (SwapSource); 0 (default) is the reference method.
    bg_only: float = 0.0
    # Probability of a second cut-out (class drawn uniformly) pasted behind the object: a bird-like
    # distractor in the background that must not decide the class. 0 (default) is the reference method.
    distractor: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"p is a probability in [0, 1], got {self.p}")
        if not 0.0 <= self.distractor <= 1.0:
            raise ValueError(f"distractor is a probability in [0, 1], got {self.distractor}")
        if not 0.0 <= self.bg_only <= 4.0:
            raise ValueError(f"bg_only must lie in [0, 4] (extra backgrounds per batch image), got {self.bg_only}")


def as_bank(x: np.ndarray | DiskArray) -> torch.Tensor | DiskArray:
    """An NHWC uint8 bank as a tensor; a bank on disk stays there (indexing it by a tensor reads rows)."""
    if isinstance(x, DiskArray):
        return x
    return torch.from_numpy(np.ascontiguousarray(x))


def usable_images(foregrounds: torch.Tensor | DiskArray, chunk: int = 4096) -> torch.Tensor:
    """(N,) bool: the cut-out has both foreground and background pixels (alpha > 127), read in chunks."""
    parts = []
    for start in range(0, len(foregrounds), chunk):
        fg = torch.as_tensor(np.asarray(foregrounds[start : start + chunk])[..., 3] > 127).flatten(1)
        parts.append(fg.any(1) & ~fg.all(1))
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.bool)


class BackgroundSwap:
    """Drop-in batch transform for your own training loop.

    ``swap(images, indices, generator)``: ``images`` NCHW float [0, 1] (the batch you already
    have), ``indices`` the dataset indices of those images. Each image is replaced (with
    probability ``p``) by its own foreground pasted on a class-balanced inpainted background.
    """

    def __init__(self, foregrounds: np.ndarray | DiskArray, backgrounds: np.ndarray | DiskArray, labels: np.ndarray,
                 config: SwapConfig | None = None, num_classes: int | None = None,
                 keep_original: np.ndarray | None = None) -> None:
        """``foregrounds`` (N, H, W, 4) uint8 RGBA, ``backgrounds`` (N, H, W, 3) uint8, ``labels`` (N,) ints;
        ``keep_original`` (N,) bool marks images to keep as they are: never swapped, never a donor
        (e.g. a separation the detector is not confident of)."""
        if not (len(foregrounds) == len(backgrounds) == len(labels)):
            raise ValueError("foregrounds, backgrounds and labels must have the same length")
        if keep_original is not None and np.shape(keep_original) != (len(labels),):
            raise ValueError(f"keep_original must be one bool per image, shape ({len(labels)},), "
                             f"got {np.shape(keep_original)}")
        self.config = config or SwapConfig()
        self.fg = as_bank(foregrounds)  # NHWC uint8, converted per batch
        self.bg = as_bank(backgrounds)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.usable = usable_images(self.fg)  # images with a real cut-out and a real background
        if keep_original is not None:
            self.usable &= ~torch.as_tensor(np.asarray(keep_original, dtype=bool))
        k = num_classes or int(self.labels.max()) + 1
        self.donors = donors_by_class(self.labels, self.usable, k)
        if not bool(self.usable.any()):
            log.warning("background swap: no image has both a foreground and a background (all no-fg or "
                        "all-fg): nothing will be swapped")

    def sample(self, indices: torch.Tensor, generator: torch.Generator, p: float | None = None) -> SwapParams:
        """Swap parameters for the images ``indices`` (``p`` overrides the configured probability)."""
        p = self.config.p if p is None else p
        return sample_params(len(indices), self.donors, self.config.jitter, p, generator,
                             swappable=self.usable[indices], shuffle_bg_channels=self.config.bg_shuffle,
                             distractor=self.config.distractor)

    def backgrounds_only(self, n: int, generator: torch.Generator, device: torch.device | None = None) -> torch.Tensor:
        """``n`` inpainted backgrounds (NCHW float, on ``device``; default the CPU), drawn class-balanced
        like the composites' (channels shuffled when ``bg_shuffle`` is on)."""
        params = sample_params(n, self.donors, self.config.jitter, 1.0, generator,
                               shuffle_bg_channels=self.config.bg_shuffle)
        device = device or torch.device("cpu")
        bg = self._rows(self.bg, params.bg_index, device)
        return bg if params.bg_channels is None else permute_channels(bg, params.bg_channels.to(device))

    @staticmethod
    def _rows(bank: torch.Tensor | DiskArray, index: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Rows ``index`` of an NHWC uint8 bank as NCHW float in [0, 1] on ``device`` (copied as uint8)."""
        return to_device(bank[index], device).permute(0, 3, 1, 2).float().div_(255.0)

    def apply(self, images: torch.Tensor, indices: torch.Tensor, params: SwapParams,
              device: torch.device | None = None) -> torch.Tensor:
        """``images``: NCHW float in [0, 1], or NCHW uint8 (converted only where not swapped).

        The composites are made on ``device`` (default: where ``images`` are): the batch's rows of the
        banks are copied there as uint8 and the warp and paste run there, in one batch."""
        device = torch.device(device) if device is not None else images.device
        fg = self._rows(self.fg, indices, device)
        bg = self._rows(self.bg, params.bg_index, device)
        distractors = None
        if params.distractor is not None:
            distractors = self._rows(self.fg, params.distractor.index.clamp_min(0), device)
        if not bool(params.swap.all()):  # some originals are kept (when all are swapped, none is needed there)
            images = to_device(images, device)
            if images.dtype == torch.uint8:
                images = images.float().div_(255.0)
        return apply_params(images, fg, bg, params.to(device), distractors=distractors)

    def __call__(self, images: torch.Tensor, indices: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        indices = torch.as_tensor(indices, dtype=torch.long)
        return self.apply(images, indices, self.sample(indices, generator))


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A generator for one (seed, epoch, index): independent of worker, order and process."""
    return seeding.generator(seed, "composition", epoch, index)


class BackSwapDataset(torch.utils.data.Dataset):
    """A torch ``Dataset`` wrapper: item ``i`` is ``(composite CHW float, label)``.

    Randomness is derived from ``(seed, epoch, i)``, so DataLoader workers never repeat each other's
    streams (the reference implementation's bug) and results do not depend on ``num_workers``.
    Call :meth:`set_epoch` at the start of every epoch.
    """

    def __init__(self, images: np.ndarray, swap: BackgroundSwap, seed: int = 0) -> None:
        self.images = as_bank(images)
        self.swap = swap
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        generator = item_generator(self.seed, self.epoch, i)
        x = to_tensor(self.images[i : i + 1])
        idx = torch.tensor([i])
        out = self.swap(x, idx, generator)[0].contiguous()
        return out, int(self.swap.labels[i])


