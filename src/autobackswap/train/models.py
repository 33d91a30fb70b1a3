"""Classifier models, registered by name (timm's ``create_model`` pattern).

Built in: small ResNets in plain torch (``small_resnet``, ``resnet18``), fast from scratch on a CPU. By their
standard names: ``tv:<name>`` (``torchvision.models.get_model``) and ``timm:<name>`` (``timm.create_model``), e.g.
``tv:resnet50``, ``timm:efficientnet_b0``, ``timm:vit_small_patch16_224``, with ``pretrained`` = a weight tag
(``IMAGENET1K_V1``, ``resnet50.tv_in1k``: fetched) or a local file (``.pt``, ``.pth``, ``.safetensors``: loaded
strictly, :mod:`autobackswap.weights`).

Every model takes NCHW float input in [0, 1] (a torchvision / timm model applies its weights' own mean and std
inside ``forward``) and exposes ``forward_features`` (pooled features, N x D, used by last-layer methods such as
DFR), ``head`` (the linear classifier, sized to the dataset's classes) and ``num_features`` (D).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .. import hub
from ..errors import AutoBackSwapError
from ..registry import Registry
from ..weights import KeyPlan, load_weight_file, load_weights, split_pretrained

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


class HubClassifier(nn.Module):
    """A torchvision / timm network (``net``, its classifier taken off) and a new linear ``head``.

    The keys (``net.*``, ``head.*``) are those of the reference implementation's ``Classifier``
    (cesro7/spur-corr, ``methods/common/model.py``); :meth:`weight_plan` maps torchvision / timm files onto them."""

    def __init__(self, body: hub.Body, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.normalize = hub.Normalize(body.data_config["mean"], body.data_config["std"])
        self.net = body.net
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(body.num_features, num_classes)
        self.num_features = body.num_features
        self.data_config = body.data_config
        self.reference_keys = (body.head_keys, body.dropped_keys)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.forward_features(x)))

    def weight_plan(self) -> KeyPlan:
        body = hub.Body(self.net, self.num_features, self.data_config, *self.reference_keys)
        return body.plan("net.", "head", frozenset({"head.weight", "head.bias"}))


def hub_classifier(source: str, arch: str, num_classes: int, pretrained: str | None = None, fetch: bool = True,
                   width: int | None = None, dropout: float = 0.0, **kwargs: Any) -> nn.Module:
    """``source:arch`` with a head for ``num_classes``; ``width`` (the built-in models' knob) is ignored and other
    keyword arguments go to ``get_model`` / ``create_model`` (e.g. ``drop_path_rate``)."""
    return HubClassifier(hub.build(source, arch, pretrained, fetch, **kwargs), num_classes, dropout)


def _family(source: str) -> Callable[[str], Callable[..., nn.Module]]:
    def resolve(arch: str) -> Callable[..., nn.Module]:
        hub.check_arch(source, arch)  # a KeyError with close names, before anything is built
        return functools.partial(hub_classifier, source, arch)

    return resolve


for _source in hub.SOURCES:
    MODELS.register_family(_source)(_family(_source))


def create_model(name: str, num_classes: int, weights: str | None = None, *, pretrained: str | None = None,
                 load: bool = True, freeze: int = 0, **kwargs: Any) -> nn.Module:
    """Build a registered model.

    ``pretrained``: a weight tag (torchvision / timm models only; read from an installed package when one holds
    it, :mod:`autobackswap.offline`, else fetched) or a weight file; ``weights``: a weight file loaded after it
    (``--model-weights``). Files load strictly (:func:`autobackswap.weights.load_weights`). ``freeze``: the stem
    and this many first stages of a torchvision / timm network stop training (:func:`~autobackswap.hub.freeze_stages`),
    after the weights are in. ``load=False`` rebuilds a saved model: nothing is fetched or read, a tag only sets the
    normalisation."""
    factory = MODELS.get(name)
    tag, file = split_pretrained(pretrained)
    family = MODELS.family(name)
    if family is None and tag:
        raise AutoBackSwapError(f"pretrained {tag!r}: a weight tag needs a torchvision or timm model (tv:<name>, "
                                f"timm:<name>); {name!r} is built in, so pass a weight file instead")
    if family is None and freeze:
        raise AutoBackSwapError(f"freeze={freeze}: {name!r} is built in and trains from scratch; freezing needs a "
                                "pretrained torchvision or timm model (tv:<name>, timm:<name>)")
    target = f"classifier {name!r}"
    held = hub.offline_weights(family, name.partition(":")[2], tag) if family and load else None
    if family is not None:
        model = factory(num_classes, pretrained=tag, fetch=load and held is None, **kwargs)
    else:
        model = factory(num_classes, **kwargs)
    if held is not None:
        load_weight_file(model, held, "pretrained weights", target)
    if load:
        for path, what in ((file, "pretrained weights"), (weights, "model weights")):
            if path:
                load_weights(model, path, what, target)
    if freeze:
        hub.freeze_stages(model.net, freeze, name)  # type: ignore[arg-type]
    return model
