"""Image decoding at the boundaries: any file -> HWC uint8 RGB, EXIF orientation applied."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

from ..errors import DataError
from ..progress import progress


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


def read_npy_mask(path: str | Path, row: int | None = None) -> np.ndarray:
    """A mask stored as a 2-D ``.npy`` array (the backgrounds challenge's ``fg_mask``): values in {0, 1}
    (bool or integer) or 0..255, returned as HW uint8 with 255 = foreground."""
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(path, "mask file not found", row) from None
    except (OSError, ValueError) as exc:
        raise DataError(path, f"cannot read mask array ({exc})", row) from None
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim != 2 or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DataError(path, f"mask array must be 2-D numbers, got shape {array.shape} dtype {array.dtype}", row)
    values = array.astype(np.float64)
    scale = 255.0 if values.max(initial=0.0) <= 1.0 else 1.0
    return np.clip(values * scale, 0, 255).astype(np.uint8)


MASK_READERS = {".npy": read_npy_mask}  # by suffix; every other mask is an image file (read_gray)


def read_mask(path: str | Path, row: int | None = None) -> np.ndarray:
    """Decode a ground-truth mask of any supported kind to HW uint8 (255 = foreground)."""
    return MASK_READERS.get(Path(path).suffix.lower(), read_gray)(path, row)


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


def decode_images(paths: Sequence[str | Path], rows: Sequence[int | None], size: int,
                  desc: str | None = None) -> np.ndarray:
    """The one image reader for a list of files: ``(n, size, size, 3)`` uint8 RGB (a progress bar
    with ``desc`` for long lists)."""
    out = np.empty((len(paths), size, size, 3), np.uint8)
    items = zip(paths, rows, strict=True)
    for k, (path, row) in enumerate(progress(items, total=len(paths), desc=desc,
                                             quiet=desc is None or len(paths) < 500)):
        out[k] = resize_rgb(read_rgb(path, row), size)
    return out


def decode_masks(paths: Sequence[str | Path], rows: Sequence[int | None], size: int,
                 names: Sequence[str] | None = None) -> np.ndarray:
    """The one mask reader for a list of files: ``(n, size, size)`` uint8, 255 = foreground. A missing
    file is a DataError naming the image it belongs to (``names``)."""
    out = np.empty((len(paths), size, size), np.uint8)
    for k, (path, row) in enumerate(zip(paths, rows, strict=True)):
        if not Path(path).is_file():
            what = f"segmentation for {names[k]!r} not found" if names is not None else "segmentation not found"
            raise DataError(path, what, row)
        out[k] = resize_mask(read_mask(path, row), size)
    return out


TITLE_PX = 14  # height of one line of title text


def image_grid(rows: Sequence[Sequence[np.ndarray]], col_titles: Sequence[str] | None = None,
               row_titles: Sequence[str] | None = None, tile: int = 96, gap: int = 2,
               row_title_width: int = 0) -> np.ndarray:
    """The one grid renderer: HWC uint8 images (RGB, or HW gray) as ``tile`` px cells (nearest
    upscaling), ``gap`` px apart on white, with optional column titles on top and row titles on the
    left (``\n`` separates lines). Returns HWC uint8 RGB."""
    if not rows or not rows[0]:
        raise ValueError("no images to draw")
    n_cols = max(len(r) for r in rows)
    top = TITLE_PX * max(t.count("\n") + 1 for t in col_titles) + gap if col_titles else 0
    left = (row_title_width or 6 * max(len(line) for t in row_titles for line in t.split("\n")) + 8) if row_titles else 0
    height = top + len(rows) * (tile + gap) - gap
    width = left + n_cols * (tile + gap) - gap
    sheet = np.full((height, width, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        y = top + r * (tile + gap)
        for c, cell in enumerate(row):
            x = left + c * (tile + gap)
            rgb = cell if cell.ndim == 3 else np.repeat(cell[..., None], 3, axis=2)
            sheet[y : y + tile, x : x + tile] = cv2.resize(np.ascontiguousarray(rgb[..., :3]), (tile, tile),
                                                           interpolation=cv2.INTER_NEAREST)
    if not (col_titles or row_titles):
        return sheet
    canvas = Image.fromarray(sheet)
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(col_titles or []):
        draw.multiline_text((left + c * (tile + gap) + 2, 1), title, fill=(0, 0, 0), spacing=2)
    for r, title in enumerate(row_titles or []):
        draw.multiline_text((4, top + r * (tile + gap) + tile // 2 - TITLE_PX), title, fill=(0, 0, 0), spacing=2)
    return np.asarray(canvas)
