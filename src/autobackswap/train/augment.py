"""Classifier batch augmentations, registered by name; every method's training batches can take them.

An augmentation maps an NCHW float batch in [0, 1] to one of the same shape, drawing only from the
``torch.Generator`` it is given. ``TrainConfig.augment`` names a ``+``-separated chain of them
(``"crop+color"``); they run in the training loop after the batch source (whose own flips and
compositions come first), so they apply to ERM, AutoBackSwap and every baseline alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..registry import Registry

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
AUGMENTS: Registry[Augment] = Registry("augmentation")


def uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def color_jitter(x: torch.Tensor, brightness: float, contrast: float, saturation: float, hue: float,
                 generator: torch.Generator) -> torch.Tensor:
    """Per-image random brightness, contrast, saturation and hue (NCHW float in [0, 1]).

    Factors are drawn uniformly from ``[1 - s, 1 + s]``; hue rotates the chroma plane (YIQ) by up to
    ``hue`` of a full turn.
    """
    n = x.shape[0]

    def factor(s: float) -> torch.Tensor:
        return uniform(n, 1 - s, 1 + s, generator).view(n, 1, 1, 1).to(x.device)

    x = x * factor(brightness)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * factor(contrast) + mean
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = (x - gray) * factor(saturation) + gray
    if hue > 0:
        theta = uniform(n, -hue, hue, generator) * 2 * np.pi
        to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
        from_yiq = torch.linalg.inv(to_yiq)
        cos, sin = torch.cos(theta), torch.sin(theta)
        rot = torch.zeros(n, 3, 3)
        rot[:, 0, 0] = 1
        rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
        m = (from_yiq @ rot @ to_yiq).to(x.device, x.dtype)  # (n, 3, 3)
        x = torch.einsum("nij,njhw->nihw", m, x)
    return x.clamp_(0.0, 1.0).contiguous(memory_format=torch.channels_last)


def random_resized_crop(x: torch.Tensor, min_side: float, shift: float, generator: torch.Generator) -> torch.Tensor:
    """Per image, a square crop of side ``s ~ U[min_side, 1]`` of the image's side at a random place,
    resized back to the full size (bilinear).

    The crop may reach ``shift`` of the side past the edges; the border is mirrored there. With
    ``min_side=1, shift=0`` it is the identity.
    """
    n = x.shape[0]
    side = uniform(n, min_side, 1.0, generator)
    reach = (1.0 - side) + 2 * shift  # affine_grid spans [-1, 1]: a shift of one side is 2 units
    tx, ty = uniform(n, -1.0, 1.0, generator) * reach, uniform(n, -1.0, 1.0, generator) * reach
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = side, side, tx, ty
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.clamp_(0.0, 1.0).contiguous(memory_format=torch.channels_last)


def scale_ratio_crop(x: torch.Tensor, scale: tuple[float, float], ratio: tuple[float, float],
                     generator: torch.Generator, tries: int = 10) -> torch.Tensor:
    """torchvision's ``RandomResizedCrop`` on a batch: per image, a crop covering ``scale`` of the area with
    aspect ratio (w / h) log-uniform in ``ratio``, at a uniformly random place inside the image, resized
    back to the full size (bilinear).

    As in torchvision, up to ``tries`` (area, ratio) draws are made and the first crop that fits inside
    the image is used; when none fits, the whole image is kept (the fallback for a square image whose
    ratio range holds 1)."""
    n = x.shape[0]
    area = uniform(n * tries, scale[0], scale[1], generator).view(n, tries)
    log_r = uniform(n * tries, math.log(ratio[0]), math.log(ratio[1]), generator).view(n, tries)
    w, h = torch.sqrt(area * torch.exp(log_r)), torch.sqrt(area / torch.exp(log_r))  # fractions of the side
    fits = (w <= 1.0) & (h <= 1.0)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.full((n,), -1))
    rows = torch.arange(n)
    w = torch.where(first >= 0, w[rows, first.clamp_min(0)], torch.ones(n))
    h = torch.where(first >= 0, h[rows, first.clamp_min(0)], torch.ones(n))
    cx = (w - 1.0) + 2.0 * (1.0 - w) * uniform(n, 0.0, 1.0, generator)  # crop centre in [-1, 1] units
    cy = (h - 1.0) + 2.0 * (1.0 - h) * uniform(n, 0.0, 1.0, generator)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = w, h, cx, cy
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.clamp_(0.0, 1.0).contiguous(memory_format=torch.channels_last)


@AUGMENTS.register("resized_crop")
def resized_crop(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The reference's Waterbirds training crop: ``RandomResizedCrop(scale=(0.7, 1.0), ratio=(3/4, 4/3))``
    (cesro7/spur-corr ``utils.py``, ``get_train_transform``)."""
    return scale_ratio_crop(x, (0.7, 1.0), (3 / 4, 4 / 3), generator)


@AUGMENTS.register("crop")
def crop(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random square crop of 0.75 to 1 of the side, up to 1/16 past the edges, resized back."""
    return random_resized_crop(x, 0.75, 1 / 16, generator)


@AUGMENTS.register("color")
def color(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mild colour jitter: brightness, contrast and saturation by up to 20 %, hue by up to 2 %."""
    return color_jitter(x, 0.2, 0.2, 0.2, 0.02, generator)


def build_augment(spec: str) -> Augment | None:
    """The chain named by ``spec`` (``"crop+color"``), or None for ``""``; an unknown name raises
    a ValueError that lists the valid ones."""
    names = [s.strip() for s in spec.split("+") if s.strip()]
    bad = [s for s in names if s not in AUGMENTS]
    if bad:
        raise ValueError(f"augment={spec!r}: unknown {', '.join(bad)}; choose '+'-separated from "
                         f"{', '.join(AUGMENTS.names())}")
    if not names:
        return None
    chain = [AUGMENTS.get(s) for s in names]

    def apply(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for aug in chain:
            x = aug(x, generator)
        return x

    return apply
