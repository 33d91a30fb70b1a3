"""Classifier batch augmentations, registered by name; every method's training batches can take them.

An augmentation maps an NCHW float batch in [0, 1] to one of the same shape, drawing only from the
``torch.Generator`` it is given. ``TrainConfig.augment`` names a ``+``-separated chain of them
(``"crop+color"``); they run in the training loop after the batch source (whose own flips and
compositions come first), so they apply to ERM, AutoBackSwap and every baseline alike.
"""

from __future__ import annotations

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
        return uniform(n, 1 - s, 1 + s, generator).view(n, 1, 1, 1)

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
        m = from_yiq @ rot @ to_yiq  # (n, 3, 3)
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
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.clamp_(0.0, 1.0).contiguous(memory_format=torch.channels_last)


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
