"""``waterbirds``: the Waterbirds layout (``DATA/metadata.csv``), read by :func:`..layout.read_dataset`.

Follows ``waterbird_complete95_forest2water2`` as the group-DRO release ships it and as the seed paper's
repository reads it (cesro7/spur-corr ``data/README.md``: ``images/``, ``segmentations/``, ``masks.csv``,
``metadata.csv``). Ground-truth masks are looked up the way images are: ``segmentations/<img_filename>.png``
(relative to the root), or with a leading ``images/`` dropped, so ``img_filename = images/<class>/<name>.png``
finds ``segmentations/<class>/<name>.png``. When ``segmentations/`` exists but holds no mask for any image,
reading fails with the first path it expected.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ..layout import ImageDataset, read_dataset
from .base import Layout, register_layout

EXPECTS = "DATA/metadata.csv with img_filename,y,split,place (+ optional segmentations/, masks.csv)"


def segmentation_candidates(root: Path, img_filename: str) -> list[Path]:
    """Where the mask of ``img_filename`` may be: under ``segmentations/`` as named, then without ``images/``."""
    base = root / "segmentations"
    out = [(base / img_filename).with_suffix(".png")]
    if img_filename.startswith("images/"):
        out.append((base / img_filename[len("images/"):]).with_suffix(".png"))
    return out


def resolve_segmentations(dataset: ImageDataset) -> dict[str, Path] | None:
    """Each image's mask path (a missing one at the place its neighbours use); None without ``segmentations/``."""
    if not (dataset.root / "segmentations").is_dir():
        return None
    candidates = {r.img_filename: segmentation_candidates(dataset.root, r.img_filename) for r in dataset.records}
    found = {name: next((i for i, c in enumerate(cands) if c.is_file()), None) for name, cands in candidates.items()}
    hits = [i for i in found.values() if i is not None]
    if not hits:
        first = dataset.records[0]
        looked = " or ".join(str(c) for c in candidates[first.img_filename])
        raise DataError(dataset.metadata_path, f"segmentations/ holds no mask for any image: expected {looked} for "
                        f"{first.img_filename!r}", first.row)
    usual = max(set(hits), key=hits.count)
    paths = {}
    for name, cands in candidates.items():
        index = found[name]
        paths[name] = cands[index if index is not None else min(usual, len(cands) - 1)]
    return paths


def read_waterbirds(root: Path, options: dict[str, str]) -> ImageDataset:
    dataset = read_dataset(root)
    dataset.mask_paths = resolve_segmentations(dataset)
    return dataset


WATERBIRDS = register_layout(Layout("waterbirds", EXPECTS, lambda root: (root / "metadata.csv").is_file(),
                                    read_waterbirds, priority=10))
