"""The one conversion between images and tensors, and the one alpha composite.

Images are HWC (or NHWC) uint8 RGB at every boundary; inside models and composition they are NCHW
float tensors in [0, 1]. Cut-outs are RGBA; the composite works on premultiplied RGBA.
"""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """NHWC uint8 -> NCHW float in [0, 1], channels-last memory format."""
    t = torch.as_tensor(images)
    return t.permute(0, 3, 1, 2).float().div_(255.0).contiguous(memory_format=torch.channels_last)


def to_images(x: torch.Tensor) -> np.ndarray:
    """NCHW float in [0, 1] -> NHWC uint8 (rounded)."""
    return (x.detach().cpu().permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def premultiply(rgba: torch.Tensor) -> torch.Tensor:
    """NCHW float RGBA -> premultiplied RGBA (colour times alpha)."""
    return torch.cat([rgba[:, :3] * rgba[:, 3:4], rgba[:, 3:4]], 1)


def composite(premult_fg: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Alpha-composite premultiplied RGBA over RGB (NCHW float): ``F + (1 - a) B``."""
    return (premult_fg[:, :3] + (1.0 - premult_fg[:, 3:4]) * background).clamp_(0.0, 1.0)


def paste_rgba(cutout: np.ndarray, background: np.ndarray) -> np.ndarray:
    """An HWC uint8 RGBA cut-out over an HWC uint8 RGB background of the same size -> HWC uint8 RGB."""
    fg = torch.from_numpy(np.ascontiguousarray(cutout)).permute(2, 0, 1)[None].float() / 255.0
    bg = torch.from_numpy(np.ascontiguousarray(background)).permute(2, 0, 1)[None].float() / 255.0
    out = composite(premultiply(fg), bg)[0].permute(1, 2, 0).numpy()
    return np.round(out * 255.0).astype(np.uint8)
