"""The one conversion between images and tensors, and the one alpha composite.

Images are HWC (or NHWC) uint8 RGB at every boundary; inside models and composition they are NCHW
float tensors in [0, 1]. Cut-outs are RGBA; the composite works on premultiplied RGBA.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import DataError


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


def load_torch_file(path: str | Path, what: str, weights_only: bool = True) -> Any:
    """``torch.load`` of a file a user named (CPU tensors); a missing, truncated or foreign file is one
    DataError naming it and ``what`` was expected, never an unpickler traceback."""
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except FileNotFoundError:
        raise DataError(path, f"{what} not found") from None
    except IsADirectoryError:
        raise DataError(path, f"is a folder, not a {what}") from None
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle a user's file is "not a checkpoint"
        lines = str(exc).strip().splitlines()
        why = f"{type(exc).__name__}: {lines[0][:200]}" if lines else f"{type(exc).__name__}, the file is empty or cut short"
        raise DataError(path, f"cannot read {what} ({why})") from None


def check_weights_file(path: str | Path, what: str = "state dict") -> None:
    """Refuse, before any work, a weights file that is missing or is not a mapping of names to tensors."""
    _state_dict(path, what)


def _state_dict(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    state = load_torch_file(path, what)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(path, f"not a {what}: expected a mapping of parameter names to tensors")
    return state


def load_weights(model: nn.Module, path: str | Path, what: str = "state dict") -> nn.Module:
    """Load the tensors of a local weights file (a state dict, or a checkpoint with one under
    ``state_dict``) into ``model`` where names match (a new head may differ). A file none of whose tensors
    fit the model, or whose shapes disagree, is a DataError naming it."""
    state = _state_dict(path, what)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        first_line = (str(exc).strip().splitlines() or ["size mismatch"])[-1].strip()[:200]
        raise DataError(path, f"does not fit the model ({first_line})") from None
    if state and len(result.unexpected_keys) == len(state):
        raise DataError(path, f"none of its {len(state)} tensors belongs to this model: a {what} of another network?")
    return model
