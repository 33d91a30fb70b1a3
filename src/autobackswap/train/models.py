"""Classifier models in plain torch, registered by name (timm's ``create_model`` pattern).

Every model takes NCHW float input in [0, 1] and exposes ``forward_features`` (pooled features,
used by last-layer methods such as DFR) and ``head`` (the linear classifier).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..registry import Registry
from ..tensors import load_weights

MODELS: Registry[Callable[..., nn.Module]] = Registry("classifier model")


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A ResNet with a configurable stem and stages; input NCHW float in [0, 1]."""

    mean: torch.Tensor  # buffers (typed for mypy)
    std: torch.Tensor

    def __init__(
        self,
        num_classes: int,
        widths: tuple[int, ...] = (32, 64, 128),
        blocks: tuple[int, ...] = (1, 1, 1),
        stem_stride: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1), persistent=False)
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, stem_stride, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        layers: list[nn.Module] = []
        cin = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(n):
                layers.append(BasicBlock(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(cin, num_classes)
        self.num_features = cin

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return torch.flatten(self.pool(self.layers(self.stem(x))), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.forward_features(x)))


@MODELS.register("small_resnet")
def small_resnet(num_classes: int, width: int = 24, **kwargs: Any) -> nn.Module:
    """Default: a 3-stage ResNet for 32-128 px images, fast on a 2-core CPU."""
    return ResNet(num_classes, widths=(width, 2 * width, 4 * width), blocks=(1, 1, 1), **kwargs)


@MODELS.register("resnet18")
def resnet18(num_classes: int, width: int = 64, **kwargs: Any) -> nn.Module:
    """A ResNet-18-shaped network (4 stages of 2 blocks) for larger images or more compute."""
    return ResNet(
        num_classes, widths=(width, 2 * width, 4 * width, 8 * width), blocks=(2, 2, 2, 2), **kwargs
    )


def create_model(name: str, num_classes: int, weights: str | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model; ``weights`` optionally loads a local state dict (e.g. pretrained)."""
    model = MODELS.get(name)(num_classes, **kwargs)
    if weights:
        load_weights(model, weights, "classifier weights file")
    return model
