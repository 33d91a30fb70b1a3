"""Image decoding at the boundaries: any file -> HWC uint8 RGB, EXIF orientation applied."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError


def pil_to_rgb(img: Image.Image) -> np.ndarray:
    """Convert a PIL image of any mode (L, LA, P, RGBA, CMYK, I;16, I, F, ...) to HWC uint8 RGB."""
    img = ImageOps.exif_transpose(img) or img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        gray = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def read_rgb(path: str | Path, row: int | None = None) -> np.ndarray:
    """Decode ``path`` fully to HWC uint8 RGB; a missing, truncated or corrupt file is a DataError."""
    try:
        with Image.open(path) as img:
            img.load()
            return pil_to_rgb(img)
    except FileNotFoundError:
        raise DataError(path, "image file not found", row) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"cannot decode image ({exc})", row) from None


def read_gray(path: str | Path, row: int | None = None) -> np.ndarray:
    """Decode a mask image to HW uint8 (alpha is used when the image has one)."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
                return np.asarray(img.convert("RGBA"))[..., 3].copy()
            return np.asarray(img.convert("L"), dtype=np.uint8).copy()
    except FileNotFoundError:
        raise DataError(path, "mask file not found", row) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"cannot decode mask ({exc})", row) from None


def resize_rgb(image: np.ndarray, size: int) -> np.ndarray:
    """Resize HWC uint8 to ``size`` x ``size`` (area filter when shrinking)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    shrink = image.shape[0] > size or image.shape[1] > size
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize an HW uint8 mask to ``size`` x ``size`` (area filter, so edges stay soft)."""
    if mask.shape[0] == size and mask.shape[1] == size:
        return mask
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA)
