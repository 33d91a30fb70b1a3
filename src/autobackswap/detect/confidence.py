"""Separation confidence: how far to trust the detector's grid for one image (pure functions).

Three signals, each in [0, 1] (1 = trust), computed from the detector's p(foreground) grid ``p`` of an
image and ``q``, its grid for the horizontally flipped image:

* ``certainty = 1 - mean binary entropy (bits) of p over the patches``: 1 when every patch is 0 or 1,
  0 when every patch is a coin flip. A detector trained with label smoothing 0.1 tops out near 0.71
  (``1 - H(0.05)``), so compare scores, not the raw value against 1.
* ``flip_agreement = 1 - mean |p - fliplr(q)|``: the flipped image's grid flipped back should be the
  same grid; a detector that is guessing disagrees with itself.
* ``area_fit``: the tight foreground's share of the patches, ``fg_area = mean(p > 1 - t_tight)`` (the
  patches with p_bg < t_tight), against the range ``[lo, hi]`` of foreground shares in the labelled
  images: ``1 - d / AREA_MARGIN`` clipped to [0, 1], where ``d`` is how far ``fg_area`` lies outside
  ``[lo, hi]`` (0 inside). Without a range (an old detector checkpoint), ``area_fit`` is 1.

With flip test-time augmentation (``detector_tta``) the masks come from the mean of ``p`` and ``fliplr(q)``:
certainty and area are computed on that mean, the flip agreement still on the raw ``p`` and ``q`` (the mean is
flip-symmetric, so it would always agree with itself).

``confidence = certainty * flip_agreement * area_fit``: any one failing signal pulls the image down.

``OUT/confidence.csv`` holds one row per image, least confident first:
``index,confidence,certainty,flip_agreement,fg_area,area_fit``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import csv_bytes, write_bytes

CONFIDENCE_FILE = "confidence.csv"  # in a separation folder
AREA_MARGIN = 0.1  # a tight foreground this share of the image outside the labelled range scores 0
COLUMNS = ("index", "confidence", "certainty", "flip_agreement", "fg_area", "area_fit")


def patch_entropy(p_fg: np.ndarray) -> np.ndarray:
    """Mean binary entropy (bits) over the patches of each grid: (N, G, G) -> (N,). 0 = sure, 1 = coin flip."""
    p = np.clip(np.asarray(p_fg, dtype=np.float64), 1e-6, 1 - 1e-6)
    h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return h.reshape(len(h), -1).mean(axis=1)


def flip_agreement(p_fg: np.ndarray, p_fg_flipped: np.ndarray) -> np.ndarray:
    """``1 - mean |p - fliplr(q)|`` per image; ``q`` is the grid predicted for the flipped image."""
    p, q = np.asarray(p_fg, np.float64), np.asarray(p_fg_flipped, np.float64)
    if p.shape != q.shape or p.ndim != 3:
        raise ValueError(f"flip_agreement needs two (N, G, G) grids of one shape, got {p.shape} and {q.shape}")
    return 1.0 - np.abs(p - q[:, :, ::-1]).reshape(len(p), -1).mean(axis=1)


def tight_area(p_fg: np.ndarray, t_tight: float) -> np.ndarray:
    """Share of each grid's patches in the tight foreground (p_bg < t_tight): (N, G, G) -> (N,)."""
    p = np.asarray(p_fg, np.float64)
    return (p > 1.0 - t_tight).reshape(len(p), -1).mean(axis=1)


def area_range(grids: np.ndarray) -> tuple[float, float]:
    """(smallest, largest) foreground share of the labelled (N, G, G) bool grids."""
    g = np.asarray(grids, bool)
    if g.ndim != 3 or len(g) == 0:
        raise ValueError(f"area_range needs (N, G, G) label grids with N >= 1, got shape {g.shape}")
    share = g.reshape(len(g), -1).mean(axis=1)
    return float(share.min()), float(share.max())


def area_fit(area: np.ndarray, labelled: tuple[float, float] | None, margin: float = AREA_MARGIN) -> np.ndarray:
    """1 inside the labelled range, falling linearly to 0 at ``margin`` outside it (1 without a range)."""
    a = np.asarray(area, np.float64)
    if labelled is None:
        return np.ones_like(a)
    lo, hi = labelled
    outside = np.maximum(np.maximum(lo - a, a - hi), 0.0)
    return np.clip(1.0 - outside / margin, 0.0, 1.0)


def separation_confidence(p_fg: np.ndarray, p_fg_flipped: np.ndarray, t_tight: float,
                          labelled: tuple[float, float] | None, p_used: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every column of ``confidence.csv`` but the index, one value per image. ``p_fg`` / ``p_fg_flipped`` are the
    model's raw grids (the flip agreement); ``p_used``, the grid the masks are cut from (flip test-time
    augmentation: their mean), gives the certainty and the area (default ``p_fg``)."""
    used = p_fg if p_used is None else p_used
    certainty = 1.0 - patch_entropy(used)
    agreement = flip_agreement(p_fg, p_fg_flipped)
    area = tight_area(used, t_tight)
    fit = area_fit(area, labelled)
    return {"confidence": certainty * agreement * fit, "certainty": certainty, "flip_agreement": agreement,
            "fg_area": area, "area_fit": fit}


def write_confidence(path: str | Path, indices: np.ndarray, parts: dict[str, np.ndarray]) -> None:
    """Write the rows (atomically), least confident first (ties by index)."""
    idx = np.asarray(indices, np.int64)
    order = np.lexsort((idx, np.round(parts["confidence"], 6)))
    rows = [{"index": int(idx[k]), **{c: f"{float(parts[c][k]):.6f}" for c in COLUMNS[1:]}} for k in order]
    write_bytes(path, csv_bytes(rows) if rows else (",".join(COLUMNS) + "\n").encode())


def read_confidence(path: str | Path) -> dict[str, np.ndarray]:
    """The columns of a confidence file, in its row order; a malformed row raises naming the file and row."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "confidence file not found (a separation with learned masks writes it)")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise DataError(path, f"expected the columns {','.join(COLUMNS)}, got {reader.fieldnames}", row=1)
        cols: dict[str, list[float]] = {c: [] for c in COLUMNS}
        for line, row in enumerate(reader, start=2):
            try:
                for c in COLUMNS:
                    cols[c].append(int(row[c]) if c == "index" else float(row[c]))
            except (TypeError, ValueError):
                raise DataError(path, f"not a number in {dict(row)}", row=line) from None
    return {c: np.asarray(v, np.int64 if c == "index" else np.float64) for c, v in cols.items()}


def confidence_by_index(path: str | Path, n: int) -> np.ndarray:
    """(n,) confidence per image index, from a file that must cover indices 0..n-1 exactly once."""
    cols = read_confidence(path)
    idx = cols["index"]
    if len(idx) != n or not np.array_equal(np.sort(idx), np.arange(n)):
        raise DataError(path, f"expected one row for each of {n} images (indices 0..{n - 1}), got {len(idx)} rows "
                        f"(is it the separation of this train split?)")
    out = np.empty(n, np.float64)
    out[idx] = cols["confidence"]
    return out
