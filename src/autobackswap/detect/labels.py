"""Where patch labels come from: ``masks.csv``, the labelling app's SQLite store, or segmentations.

:func:`patch_labels` returns the indices (into the train split) of the labelled images and their
(N, G, G) bool grids. Only train-split images are used: labels on val/test images are dropped, so
they cannot leak into training.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .. import seeding
from ..data.grid import mask_to_grid
from ..data.labelstore import LabelStore
from ..data.layout import ImageDataset, Record, load_segmentations, read_masks_csv
from ..errors import AutoBackSwapError, DataError

log = logging.getLogger(__name__)


def read_label_source(source: str | Path, dataset: ImageDataset) -> dict[str, np.ndarray]:
    """Grids keyed by ``img_filename`` from a ``masks.csv`` or a ``.sqlite`` label store."""
    path = Path(source)
    if path.suffix in (".sqlite", ".sqlite3", ".db"):
        if not path.is_file():
            raise DataError(path, "label store not found")
        return LabelStore(path).grids()
    return read_masks_csv(path, dataset)


def patch_labels(
    dataset: ImageDataset,
    train_records: list[Record],
    image_size: int,
    grid: int = 16,
    source: str | Path | None = None,
    budget: int = 200,
    threshold: float = 0.25,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(indices into ``train_records``, (N, G, G) bool grids) of the labelled training images.

    With ``source`` (masks.csv / labels.sqlite) every labelled train image is used, up to
    ``budget`` of them in a seeded sample. Without it, ``budget`` train images are drawn (seeded)
    and labelled from ``segmentations/``: a patch is foreground when more than ``threshold`` of its
    pixels are foreground.
    """
    if budget <= 0:
        raise AutoBackSwapError(f"the label budget must be positive, got {budget}")
    rng = seeding.rng(seed, "label_sample")
    position = {r.img_filename: i for i, r in enumerate(train_records)}
    if source is not None:
        labels = read_label_source(source, dataset)
        if not labels:
            raise AutoBackSwapError(f"{source}: the label set is empty")
        dropped = [k for k in labels if k not in position]
        if dropped:
            log.warning("%s: %d labelled images are not in the train split and are ignored", source, len(dropped))
        keys = sorted((k for k in labels if k in position), key=lambda k: position[k])
        if not keys:
            raise AutoBackSwapError(f"{source}: none of the labelled images is in the train split")
        sizes = {labels[k].shape[0] for k in keys}
        if len(sizes) != 1:
            raise AutoBackSwapError(f"{source}: labels mix grid sizes {sorted(sizes)}")
        if len(keys) > budget:
            keys = [keys[i] for i in sorted(rng.choice(len(keys), budget, replace=False))]
        idx = np.array([position[k] for k in keys], dtype=np.int64)
        grids = np.stack([labels[k] for k in keys]).astype(bool)
        if grids.shape[1] != grid:
            log.info("%s: labels are %dx%d grids; using G=%d", source, grids.shape[1], grids.shape[1], grids.shape[1])
        return idx, grids
    if not dataset.has_segmentations:
        missing = next((r for r in train_records if not dataset.segmentation_path(r).is_file()), train_records[0])
        raise AutoBackSwapError(
            f"{dataset.root}: no patch labels given and no ground-truth mask to derive them from for every training "
            f"image (the first missing: {dataset.segmentation_path(missing)} for {missing.img_filename!r}); "
            "pass --labels masks.csv or a label store made with `autobackswap label`"
        )
    n = min(budget, len(train_records))
    idx = np.sort(rng.choice(len(train_records), n, replace=False)).astype(np.int64)
    masks = load_segmentations(dataset, [train_records[i] for i in idx], image_size)
    grids = np.stack([mask_to_grid(m, grid, threshold) for m in masks])
    return idx, grids
