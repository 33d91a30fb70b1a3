"""Secondary-network backbones: image -> G x G foreground logits, registered by name.

The default ``fcn`` is fully convolutional and trains from scratch on a CPU in seconds: a strided
stem to 1/4 resolution, dilated residual convolutions for context, a global-context branch (the
whole image decides what is background), and a 1x1 head. The logit map is average-pooled to G x G,
so any image size works. A user with local pretrained weights registers another backbone here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry
from ..tensors import load_weights

BACKBONES: Registry[Callable[..., nn.Module]] = Registry("detector backbone")


def conv_bn(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class DilatedBlock(nn.Module):
    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels, 1, dilation),
                                  nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class PatchFCN(nn.Module):
    """NCHW float [0, 1] -> (N, G, G) foreground logits."""

    mean: torch.Tensor  # buffers (typed for mypy)
    std: torch.Tensor

    def __init__(self, grid: int = 16, width: int = 32, dilations: tuple[int, ...] = (1, 2, 4, 8)) -> None:
        super().__init__()
        self.grid = grid
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1), persistent=False)
        self.stem = nn.Sequential(conv_bn(3, width // 2, 1), conv_bn(width // 2, width, 2), conv_bn(width, 2 * width, 2))
        c = 2 * width
        self.blocks = nn.Sequential(*[DilatedBlock(c, d) for d in dilations])
        self.context = nn.Sequential(nn.Linear(c, c), nn.ReLU(inplace=True))
        self.head = nn.Conv2d(2 * c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        f = self.blocks(self.stem(x))
        ctx = self.context(f.mean(dim=(2, 3)))[:, :, None, None].expand_as(f)
        logits = self.head(torch.cat([f, ctx], dim=1))
        if logits.shape[-1] != self.grid or logits.shape[-2] != self.grid:
            logits = F.adaptive_avg_pool2d(logits, self.grid)
        return logits[:, 0]


@BACKBONES.register("fcn")
def fcn(grid: int = 16, width: int = 32, **kwargs: Any) -> nn.Module:
    return PatchFCN(grid=grid, width=width, **kwargs)


@BACKBONES.register("fcn_small")
def fcn_small(grid: int = 16, width: int = 16, **kwargs: Any) -> nn.Module:
    return PatchFCN(grid=grid, width=width, dilations=(1, 2, 4), **kwargs)


def create_backbone(name: str, grid: int, weights: str | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered backbone; ``weights`` optionally loads a local state dict."""
    model = BACKBONES.get(name)(grid=grid, **kwargs)
    if weights:
        load_weights(model, weights, "detector weights file")
    return model
