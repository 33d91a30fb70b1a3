"""ERM with generic augmentation: MixUp / CutMix and the image augmentations of the one registry."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data.splits import ExperimentData
from ..train.augment import AUGMENTS, Augment, build_augment
from ..train.loop import TrainConfig, fit
from ..train.sources import ArraySource
from .base import METHODS, Method, MethodContext, MethodOutput

MIXERS = ("mixup", "cutmix")  # label-mixing; every other name comes from train.augment.AUGMENTS


def mixup(x: torch.Tensor, target: torch.Tensor, lam: float, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return lam * x + (1 - lam) * x[perm], lam * target + (1 - lam) * target[perm]


def cutmix_box(h: int, w: int, lam: float, generator: torch.Generator) -> tuple[int, int, int, int]:
    """A box of area about ``(1 - lam) h w`` at a random centre, clipped: ``(y0, y1, x0, x1)``."""
    r = float(np.sqrt(1 - lam))
    ch, cw = int(h * r), int(w * r)
    cy = int(torch.randint(0, h, (1,), generator=generator))
    cx = int(torch.randint(0, w, (1,), generator=generator))
    return max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)


def cutmix(x: torch.Tensor, target: torch.Tensor, box: tuple[int, int, int, int], perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    y0, y1, x0, x1 = box
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
    lam = 1 - (y1 - y0) * (x1 - x0) / (x.shape[2] * x.shape[3])  # the area actually kept
    return out, lam * target + (1 - lam) * target[perm]


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * F.log_softmax(logits, 1)).sum(1).mean()


class AugmentedSource(ArraySource):
    """ArraySource batches through the image augmentations named in ``augs`` (from
    :data:`~autobackswap.train.augment.AUGMENTS`), then MixUp or CutMix (one per batch, chosen at
    random among those named); yields soft targets ``(B, K)``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int, augs: tuple[str, ...],
                 hflip: bool = True, mixup_alpha: float = 0.4, cutmix_alpha: float = 1.0) -> None:
        super().__init__(images, labels, hflip)
        self.num_classes = num_classes
        self.mixers = tuple(a for a in augs if a in MIXERS)
        self.augment: Augment | None = build_augment("+".join(a for a in augs if a not in MIXERS))
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha

    def batches(self, epoch: int, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in super().batches(epoch, batch_size, generator):
            target = F.one_hot(y, self.num_classes).float()
            if self.augment is not None:
                x = self.augment(x, generator)
            if self.mixers:
                kind = self.mixers[int(torch.randint(0, len(self.mixers), (1,), generator=generator))]
                rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
                perm = torch.randperm(len(y), generator=generator)
                if kind == "mixup":
                    x, target = mixup(x, target, float(rng.beta(self.mixup_alpha, self.mixup_alpha)), perm)
                else:
                    lam = float(rng.beta(self.cutmix_alpha, self.cutmix_alpha))
                    x, target = cutmix(x, target, cutmix_box(x.shape[2], x.shape[3], lam, generator), perm)
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, target


@dataclass
class ERMAugOptions:
    aug: str = "mixup+cutmix+color"  # '+'-separated: mixup, cutmix, and any name of train.augment.AUGMENTS
    mixup_alpha: float = 0.4
    cutmix_alpha: float = 1.0

    def __post_init__(self) -> None:
        self.split()

    def split(self) -> tuple[str, ...]:
        """The names in ``aug``, checked."""
        names = tuple(a.strip() for a in str(self.aug).split("+") if a.strip())
        bad = [a for a in names if a not in MIXERS and a not in AUGMENTS]
        if bad or not names:
            raise ValueError(f"erm_aug:aug={self.aug!r}: choose '+'-separated from "
                             f"{', '.join([*MIXERS, *AUGMENTS.names()])}")
        return names


@METHODS.register("erm_aug")
class ERMAug(Method):
    """ERM with generic augmentation: ``aug`` is a ``+``-separated list of ``mixup``, ``cutmix`` and the
    image augmentations of :data:`~autobackswap.train.augment.AUGMENTS` (default mixup+cutmix+color:
    the registry's colour jitter on every batch, then MixUp or CutMix)."""

    name = "erm_aug"
    needs = "no group labels"
    Options = ERMAugOptions

    def run(self, data: ExperimentData, cfg: TrainConfig, ctx: MethodContext) -> MethodOutput:
        p = self.params
        source = AugmentedSource(data.train.images, data.train.labels, data.num_classes, p.split(), cfg.hflip,
                                 p.mixup_alpha, p.cutmix_alpha)
        result = fit(source, data.val.images, data.val.labels, data.num_classes, cfg, loss_fn=soft_cross_entropy)
        return MethodOutput(result.model, result, {"augmentations": list(p.split())})
