"""Networks from torchvision and timm by their standard names, without their classifier.

``tv:<name>`` is ``torchvision.models.get_model(name)`` and ``timm:<name>`` is ``timm.create_model(name)``. A
pretrained *tag* (a torchvision weight enum name such as ``IMAGENET1K_V1``, resolved through
``torchvision.models.get_model_weights``, or a timm tag such as ``tv_in1k`` / ``resnet50.tv_in1k``) is fetched the
library's usual way (torch.hub / the Hugging Face hub, into their caches); a weight *file* is loaded by the caller
with :func:`autobackswap.weights.load_weights`, offline.

:func:`build` returns a :class:`Body`: the network with its classification head taken off, so its forward gives
pooled features (N x D); D; the normalisation and input settings its weights expect (``data_config``: mean, std,
interpolation, input size, crop fraction; read from the weights' ``transforms()`` or timm's pretrained config,
never downloaded); and the reference key names a weight file may use. The classifier
(:mod:`autobackswap.train.models`) and the detector (:mod:`autobackswap.detect.model`) put their own heads on it and
normalise inside their forward, so their input stays NCHW float in [0, 1].

torchvision and timm are imported when a network is first built (they add a second or more to every import).
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import offline
from .errors import AutoBackSwapError
from .weights import KeyPlan, WeightFile

log = logging.getLogger(__name__)

SOURCES = {"tv": "torchvision", "timm": "timm"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Body:
    """A reference network without its classifier: ``net(x_normalised)`` -> (N, ``num_features``)."""

    net: nn.Module
    num_features: int
    data_config: dict[str, Any]  # mean, std, interpolation, input_size, crop_pct, weights
    head_keys: tuple[str, ...]  # the reference's classifier keys (weight, bias) a weight file may hold
    dropped_keys: tuple[str, ...] = ()  # other reference keys the body no longer has (auxiliary classifiers)

    def plan(self, prefix: str, head: str | None, optional: frozenset[str]) -> KeyPlan:
        """How a reference-format file maps onto a model that holds this body at ``prefix`` and its new head at
        ``head`` (``None``: the reference classifier is unused, as in a detector)."""
        aliases = {k: prefix + k for k in self.net.state_dict()}
        unused = set(self.dropped_keys)
        if head is None:
            unused |= set(self.head_keys)
        else:
            aliases.update({k: f"{head}.{k.rsplit('.', 1)[1]}" for k in self.head_keys})
        return KeyPlan(aliases, optional, frozenset(unused))


def _suggest(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    return f"; close: {', '.join(close)}" if close else ""


def tv_models() -> list[str]:
    import torchvision.models

    return list(torchvision.models.list_models(module=torchvision.models))


def check_arch(source: str, arch: str) -> None:
    """A KeyError (with close names) when ``source`` has no network ``arch``; nothing is built or fetched."""
    if source == "tv":
        names = tv_models()
        if arch not in names:
            raise KeyError(f"torchvision has no classification model {arch!r}{_suggest(arch, names)} "
                           "(torchvision.models.list_models())")
    elif source == "timm":
        import timm

        if not timm.is_model(arch):
            names = timm.list_models()
            raise KeyError(f"timm has no model {arch!r}{_suggest(arch, names)} (timm.list_models())")
    else:
        raise KeyError(f"unknown network source {source!r}; valid: {', '.join(f'{s}:<name>' for s in SOURCES)}")


def tv_weights(arch: str, tag: str) -> Any:
    """The torchvision weight enum member ``tag`` (``IMAGENET1K_V1``, ``DEFAULT``, ``ResNet50_Weights.IMAGENET1K_V1``)."""
    from torchvision.models import get_model_weights

    source = offline.offline_tag(tag)
    if source is not None:
        raise AutoBackSwapError(f"pretrained tag {tag} is for timm:{source.arch}, not tv:{arch}; available offline: "
                                f"{offline.available()}")
    enum = get_model_weights(arch)
    name = tag.rsplit(".", 1)[-1]
    if name not in enum.__members__:
        raise KeyError(f"tv:{arch} has no pretrained weights {tag!r}; valid: {', '.join(enum.__members__)}")
    return enum[name]


def timm_name(arch: str, tag: str | None) -> str:
    """``arch.tag`` for timm; ``tag`` may be ``tv_in1k`` or ``resnet50.tv_in1k`` (its model must be ``arch``)."""
    base, _, own = arch.partition(".")
    if tag and "." in tag:
        model, _, tag = tag.partition(".")
        if model != base:
            raise AutoBackSwapError(f"pretrained tag {model}.{tag} is for timm:{model}, not timm:{arch}; available "
                                    f"offline: {offline.available()}")
    tag = tag or own
    return f"{base}.{tag}" if tag else base


def timm_pretrained_cfg(arch: str, tag: str | None) -> dict[str, Any]:
    import timm.models

    name = timm_name(arch, tag)
    try:
        cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=False)
    except RuntimeError:
        if not tag:  # a network without any pretrained config: the defaults
            return {}
        tags = [t.partition(".")[2] for t in timm.list_pretrained(f"{name.partition('.')[0]}.*")]
        raise KeyError(f"timm:{arch} has no pretrained tag {tag!r}; valid: {', '.join(tags) or 'none'}") from None
    return cfg.to_dict() if cfg is not None else {}


def data_config(source: str, arch: str, tag: str | None) -> dict[str, Any]:
    """Mean, std, interpolation, input size and crop fraction the weights ``tag`` expect (ImageNet's for
    torchvision without a tag; timm's default tag for timm); nothing is downloaded."""
    if source == "tv":
        if not tag:
            return {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "interpolation": "bilinear", "input_size": 224,
                    "crop_pct": 224 / 256, "weights": None}
        t = tv_weights(arch, tag).transforms()
        return {"mean": tuple(t.mean), "std": tuple(t.std), "interpolation": t.interpolation.value,
                "input_size": int(t.crop_size[0]), "crop_pct": t.crop_size[0] / t.resize_size[0], "weights": tag}
    cfg = timm_pretrained_cfg(arch, tag)
    size = cfg.get("input_size") or (3, 224, 224)
    return {"mean": tuple(cfg.get("mean") or IMAGENET_MEAN), "std": tuple(cfg.get("std") or IMAGENET_STD),
            "interpolation": cfg.get("interpolation") or "bilinear", "input_size": int(size[-1]),
            "crop_pct": cfg.get("crop_pct"), "weights": timm_name(arch, tag) if tag else None}


def _fetch_error(source: str, arch: str, tag: str, exc: BaseException) -> AutoBackSwapError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    return AutoBackSwapError(f"{source}:{arch}: cannot fetch the pretrained weights {tag!r} ({first}); without "
                             "internet, save them once elsewhere and pass the file: --pretrained PATH.pth|.safetensors "
                             f"(available offline: {offline.available()})")


def offline_weights(source: str, arch: str, tag: str | None) -> WeightFile | None:
    """The pretrained weights ``tag`` of ``source:arch`` from an installed package (:mod:`autobackswap.offline`),
    converted to timm's keys, or None when they are not held offline (they are fetched). A tag of an offline
    source on another architecture is one error naming what is available offline."""
    if not tag:
        return None
    if source == "tv":
        tv_weights(arch, tag)  # an offline tag on a torchvision network: the error line
        return None
    return offline.resolve(timm_name(arch, tag))


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


def _strip_tv_head(net: nn.Module, arch: str) -> tuple[int, tuple[str, ...]]:
    """Replace torchvision's classification head (its last ``nn.Linear``) with the identity; when it sits in a
    Sequential after nothing but dropout (EfficientNet's ``classifier``), the whole Sequential goes, so the body
    ends at the pooled features."""
    linears = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise AutoBackSwapError(f"tv:{arch} has no linear classification head (e.g. SqueezeNet): pick another network")
    name, head = linears[-1]
    keys = tuple(f"{name}.{p}" for p, _ in head.named_parameters())
    parent_name, _, child = name.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    if (parent_name and isinstance(parent, nn.Sequential) and list(parent._modules)[-1] == child
            and all(isinstance(m, nn.Dropout) for k, m in parent._modules.items() if k != child)):
        _set_module(net, parent_name, nn.Identity())
    else:
        _set_module(net, name, nn.Identity())
    return head.in_features, keys


def build(source: str, arch: str, tag: str | None = None, fetch: bool = True, **kwargs: Any) -> Body:
    """The network ``source:arch`` without its classifier, random-init or with the pretrained weights ``tag``
    (fetched when ``fetch``; otherwise only ``tag``'s normalisation is used: rebuilding a saved model)."""
    check_arch(source, arch)
    config = data_config(source, arch, tag)
    if source == "tv":
        from torchvision.models import get_model

        weights = tv_weights(arch, tag) if tag and fetch else None
        try:
            net = get_model(arch, weights=weights, **kwargs)
        except (OSError, RuntimeError) as exc:
            if weights is None:
                raise
            raise _fetch_error(source, arch, tag or "", exc) from None
        reference = set(net.state_dict())
        if getattr(net, "aux_logits", False):  # inception_v3, googlenet: one output, no auxiliary classifiers
            net.aux_logits = False  # type: ignore[assignment]
            for name in ("AuxLogits", "aux1", "aux2"):
                if hasattr(net, name):
                    setattr(net, name, None)
        features, head = _strip_tv_head(net, arch)
    else:
        import timm

        name = timm_name(arch, tag)
        try:
            net = timm.create_model(name, pretrained=bool(tag and fetch), num_classes=0, **kwargs)
        except (OSError, RuntimeError, ValueError) as exc:
            if not (tag and fetch):
                raise
            raise _fetch_error(source, arch, tag or "", exc) from None
        info: Any = net  # timm's attributes (num_features, head_hidden_size, pretrained_cfg)
        features = int(getattr(info, "head_hidden_size", None) or info.num_features)
        classifier = info.pretrained_cfg.get("classifier") or "fc"
        names = (classifier,) if isinstance(classifier, str) else tuple(classifier)
        head = (f"{names[0]}.weight", f"{names[0]}.bias")
        reference = set(net.state_dict()) | {f"{n}.{p}" for n in names for p in ("weight", "bias")}
    body_keys = set(net.state_dict())
    dropped = tuple(sorted(reference - body_keys - set(head)))
    log.info("%s:%s%s: %d features; its weights expect mean %s, std %s, %s interpolation, %d px", source, arch,
             f" ({tag})" if tag else "", features, _fmt(config["mean"]), _fmt(config["std"]),
             config["interpolation"], config["input_size"])
    return Body(net, features, config, head, dropped)


def build_feature_map(arch: str, tag: str | None = None, fetch: bool = True,
                      **kwargs: Any) -> tuple[nn.Module, list[int], dict[str, Any], KeyPlan]:
    """timm's ``features_only`` network ``arch``: ``net(x)`` -> its feature maps (``out_indices`` in ``kwargs``
    picks which); returns ``(net, the channels of each map, data_config, plan)``, the plan mapping a full timm
    state dict (flattened module names, its head and classifier unused) onto ``net``'s keys, without the ``net.``
    prefix."""
    import timm

    check_arch("timm", arch)
    config = data_config("timm", arch, tag)
    name = timm_name(arch, tag)
    try:
        net = timm.create_model(name, pretrained=bool(tag and fetch), features_only=True, **kwargs)
    except (OSError, RuntimeError, ValueError) as exc:
        if not (tag and fetch):
            raise
        raise _fetch_error("timm", arch, tag or "", exc) from None
    own = set(net.state_dict())
    with torch.device("meta"):  # key names only, no memory
        full = timm.create_model(name.partition(".")[0])
    aliases, unused = {}, set()
    for k in full.state_dict():
        if k in own:
            continue
        flat = k.replace(".", "_", 1)  # features_only flattens top-level Sequentials: stages.0 -> stages_0
        if flat in own:
            aliases[k] = flat
        else:
            unused.add(k)
    info: Any = net  # timm's feature_info
    return net, [int(c) for c in info.feature_info.channels()], config, KeyPlan(aliases, frozenset(), frozenset(unused))


def _fmt(values: Any) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"


class Normalize(nn.Module):
    """``(x - mean) / std`` with the weights' own constants (buffers, not saved: they follow from the name and tag)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Any, std: Any) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def stage_names(net: nn.Module, name: str) -> list[list[str]]:
    """The stem and then the stages of a torchvision / timm network, in order, as lists of module names: timm's
    coarse ``group_matcher``, timm's ``features_only`` EfficientNets (``conv_stem``, ``bn1``, ``blocks.i``),
    torchvision's ResNets (``conv1``, ``bn1``, ``layerN``) and ``features``-Sequential networks (EfficientNet,
    MobileNet, ConvNeXt: ``features.i``). Another network is an error naming ``name``."""
    matcher = getattr(net, "group_matcher", None)
    if callable(matcher):
        from timm.models import group_modules

        groups = group_modules(net, matcher(coarse=True))
        return [list(groups[k]) for k in sorted(groups)]
    children = dict(net.named_children())
    if {"conv_stem", "bn1", "blocks"} <= set(children):
        return [["conv_stem", "bn1"]] + [[f"blocks.{i}"] for i in range(len(children["blocks"]))]  # type: ignore[arg-type]
    if {"conv1", "bn1", "layer1"} <= set(children):
        return [["conv1", "bn1"]] + [[n] for n in children if n.startswith("layer")]
    features = children.get("features")
    if isinstance(features, nn.Sequential):
        return [[f"features.{i}"] for i in range(len(features))]
    raise AutoBackSwapError(f"{name}: cannot tell its stages apart to freeze them (a timm network, a torchvision "
                            "ResNet or a network with a features Sequential can be frozen)")


def freeze_stages(net: nn.Module, n: int, name: str) -> list[str]:
    """Freeze the stem and the first ``n`` stages of ``net`` (:func:`stage_names`) in place with timm's
    ``freeze``: their weights stop training and their BatchNorm layers become ``FrozenBatchNorm2d`` (fixed
    statistics, as fine-tuning from pretrained weights does). Returns the frozen module names; ``n`` = 0 freezes
    nothing, more stages than the network has is an error."""
    if n <= 0:
        return []
    from timm.utils.model import freeze

    stages = stage_names(net, name)
    if n > len(stages) - 1:
        raise AutoBackSwapError(f"freeze={n}: {name} has a stem and {len(stages) - 1} stages (freeze at most "
                                f"{len(stages) - 1})")
    modules = [m for group in stages[: n + 1] for m in group]
    freeze(net, modules)
    log.info("%s: froze the stem and %d of %d stages (%d modules)", name, n, len(stages) - 1, len(modules))
    return modules
