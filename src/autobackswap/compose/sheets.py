"""Contact sheets: pictures of what the pipeline did, to look at rather than trust.

The separation sheet has one row per image under a row of column titles: image | p(fg) grid (the
detector's prediction, on the :func:`heat` scale) | alpha (the refined mask) | cut-out on a
checkerboard | background (inpainted) | composites on class-balanced backgrounds. With learned masks its
rows are the least confident separations (:func:`sheet_rows`), each titled with its image index and
confidence.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from .. import seeding
from ..data.images import image_grid
from ..io import write_png
from ..tensors import to_images, to_tensor
from .swap import BackgroundSwap


def gray3(x: np.ndarray) -> np.ndarray:
    x8 = np.clip(np.round(x * 255), 0, 255).astype(np.uint8) if x.dtype != np.uint8 else x
    return np.repeat(x8[..., None], 3, axis=2)


def heat(p: np.ndarray) -> np.ndarray:
    """p in [0, 1] -> HWC uint8 RGB on OpenCV's viridis scale: dark purple at 0 (background), teal at 0.5,
    yellow at 1 (foreground)."""
    x8 = np.clip(np.round(p * 255), 0, 255).astype(np.uint8)
    return cv2.applyColorMap(x8, cv2.COLORMAP_VIRIDIS)[..., ::-1]


def checker(size: int, cell: int = 8) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    board = ((yy // cell + xx // cell) % 2).astype(np.uint8)
    return np.repeat((150 + 60 * board)[..., None], 3, axis=2).astype(np.uint8)


def over_checker(rgba: np.ndarray) -> np.ndarray:
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    return np.round(rgba[..., :3] * a + checker(rgba.shape[0], max(2, rgba.shape[0] // 8)) * (1 - a)).astype(np.uint8)


def sheet_titles(n_composites: int, with_grid: bool, background: str = "background") -> list[str]:
    """The column titles of :func:`separation_sheet`."""
    composites = ["composite"] if n_composites == 1 else [f"composite {k + 1}" for k in range(n_composites)]
    return ["image", *(["p(fg) grid"] if with_grid else []), "alpha", "cut-out", background, *composites]


def sheet_rows(n: int, k: int = 8, confidence: np.ndarray | None = None) -> np.ndarray:
    """Which of ``n`` images a sheet shows: the ``k`` least confident, least first (ties by index),
    when a separation confidence per image is given; else ``k`` spread evenly over the split."""
    if confidence is None:
        return np.linspace(0, n - 1, min(k, n)).round().astype(int)
    conf = np.asarray(confidence, np.float64)
    if conf.shape != (n,):
        raise ValueError(f"confidence must hold one score per image, shape ({n},), got {conf.shape}")
    return np.lexsort((np.arange(n), conf))[:k]


def confidence_titles(indices: np.ndarray, confidence: np.ndarray) -> list[str]:
    """Row titles naming each row's image and its separation confidence."""
    return [f"#{int(i)}\nconf\n{float(confidence[i]):.2f}" for i in indices]


def separation_sheet(
    path: str | Path,
    images: np.ndarray,
    foregrounds: np.ndarray,
    backgrounds: np.ndarray,
    composites: np.ndarray,
    p_fg: np.ndarray | None = None,
    tile: int = 96,
    gap: int = 2,
    background_title: str = "background",
    row_titles: list[str] | None = None,
) -> Path:
    """Write the sheet for the first ``len(images)`` rows; ``composites`` is (N, K, H, W, 3). The column
    titles say what each column is (``background_title`` names the background column); ``row_titles``
    (one per row, e.g. :func:`confidence_titles`) go on the left."""
    rows = []
    for i in range(len(images)):
        cells = [images[i]]
        if p_fg is not None:
            cells.append(heat(p_fg[i]))
        cells += [gray3(foregrounds[i, ..., 3]), over_checker(foregrounds[i]), backgrounds[i], *composites[i]]
        rows.append(cells)
    titles = sheet_titles(composites.shape[1], p_fg is not None, background_title)
    sheet = image_grid(rows, col_titles=titles, row_titles=row_titles, tile=tile, gap=gap)
    path = Path(path)
    write_png(path, sheet)
    return path


def composites_for(swap: BackgroundSwap, images: np.ndarray, indices: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` composites per index from a :class:`~autobackswap.compose.BackgroundSwap` (forced p=1)."""
    idx = torch.as_tensor(np.repeat(indices, k), dtype=torch.long)
    params = swap.sample(idx, seeding.generator(seed, "composition"), p=1.0)
    out = swap.apply(to_tensor(images[idx.numpy()]), idx, params)
    arr = to_images(out)
    return arr.reshape(len(indices), k, *arr.shape[1:])
