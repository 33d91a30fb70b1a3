"""Patch-grid helpers: the one place where masks, G x G grids and ``masks.csv`` strings meet.

A grid is a ``(G, G)`` bool array, row-major, ``True`` = foreground. Its string form is G*G
characters of ``0``/``1`` (the reference implementation's ``masks.csv`` format).
"""

from __future__ import annotations

import math

import numpy as np


def mask_to_grid(mask: np.ndarray, grid: int = 16, threshold: float = 0.25) -> np.ndarray:
    """A patch is foreground when more than ``threshold`` of its pixels are foreground.

    ``mask`` is HW, bool or uint8 (> 127 = foreground). H and W need not be multiples of ``grid``:
    patch borders are rounded, as in ``np.linspace``.
    """
    fg = mask > 127 if mask.dtype != bool else mask
    h, w = fg.shape
    if h < grid or w < grid:
        raise ValueError(f"image of {h}x{w} px is smaller than the {grid}x{grid} patch grid")
    fractions = patch_fractions(fg.astype(np.float32), grid)
    return fractions > threshold


def patch_fractions(values: np.ndarray, grid: int) -> np.ndarray:
    """Mean of an HW float array over each cell of a ``grid`` x ``grid`` partition."""
    h, w = values.shape
    ys, xs = _borders(h, grid), _borders(w, grid)
    sums = np.add.reduceat(np.add.reduceat(values, ys[:-1], axis=0), xs[:-1], axis=1)
    areas = np.outer(np.diff(ys), np.diff(xs))
    return sums / areas


def _borders(n: int, grid: int) -> np.ndarray:
    """Pixel borders of ``grid`` cells along an axis of ``n`` px: ``round(linspace(0, n, grid + 1))``."""
    return np.linspace(0, n, grid + 1).round().astype(int)


def _cell_index(n: int, grid: int) -> np.ndarray:
    """For each of ``n`` pixels, the cell it lies in (the partition of :func:`_borders`)."""
    return np.clip(np.searchsorted(_borders(n, grid), np.arange(n), side="right") - 1, 0, grid - 1)


def grid_to_mask(grid: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling of a grid (bool or float) to HW at ``size``.

    Uses the same patch borders as :func:`mask_to_grid`, so ``mask_to_grid(grid_to_mask(g, s))``
    gives ``g`` back at any size of at least G px.
    """
    h, w = (size, size) if isinstance(size, int) else size
    g = grid.shape[0]
    return grid[_cell_index(h, g)][:, _cell_index(w, g)]


def grid_to_string(grid: np.ndarray) -> str:
    return "".join("1" if v else "0" for v in np.asarray(grid, dtype=bool).ravel())


def string_to_grid(text: str) -> np.ndarray:
    """Parse a ``0``/``1`` string of G*G characters; G is inferred from the length."""
    text = text.strip()
    g = math.isqrt(len(text))
    if g == 0 or g * g != len(text):
        raise ValueError(f"mask has {len(text)} characters, which is not a square number G*G")
    if set(text) - {"0", "1"}:
        raise ValueError("mask may contain only the characters 0 and 1")
    return (np.frombuffer(text.encode("ascii"), dtype=np.uint8) == ord("1")).reshape(g, g)
