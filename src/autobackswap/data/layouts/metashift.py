"""``metashift``: MetaShift cats vs. dogs, indoor vs. outdoor, in the folder layout SubpopBench uses.

Follows YyzHarry/SubpopBench ``subpopbench/scripts/download.py`` (``generate_metadata_metashift``) and
``subpopbench/dataset/datasets.py`` (``MetaShift``): the images sit in
``ROOT/MetaShift-Cat-Dog-indoor-outdoor/{train/cat/cat(indoor), train/dog/dog(outdoor), test/cat/cat(outdoor),
test/dog/dog(indoor)}/*.jpg``; ``y`` is 1 for cat, 0 for dog; the attribute ``a`` is 1 indoor, 0 outdoor.
``ROOT`` is SubpopBench's ``data/metashift`` (or the ``MetaShift-Cat-Dog-indoor-outdoor`` folder itself).

Splits: SubpopBench pools the four folders and draws 25 % test, then 10 % val, with
``np.random.RandomState(42)``, and writes ``ROOT/metadata_metashift.csv`` (``filename,y,a,split``). When that
file is there it is read as is (its ``filename`` may be an absolute path from the machine that wrote it; the
part after ``MetaShift-Cat-Dog-indoor-outdoor/`` is then found under ``ROOT``). Without it the same draw is
made here over the files in sorted order; SubpopBench lists them in the filesystem's order, so that split
is SubpopBench's procedure but not necessarily its exact images. The draw is the benchmark's fixed
definition (seed 42), not experiment randomness.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..layout import ImageDataset, Record
from .base import ALL_SPLITS, Layout, make_record, parse_int, register_layout, unique_records

FOLDER = "MetaShift-Cat-Dog-indoor-outdoor"
SUBSETS = {  # folder -> (y, a), SubpopBench's generate_metadata_metashift
    "train/cat/cat(indoor)": (1, 1),
    "train/dog/dog(outdoor)": (0, 0),
    "test/cat/cat(outdoor)": (1, 0),
    "test/dog/dog(indoor)": (0, 1),
}
CLASS_NAMES = {0: "dog", 1: "cat"}
PLACE_NAMES = {0: "outdoor", 1: "indoor"}
TEST_PCT, VAL_PCT, SPLIT_SEED = 0.25, 0.1, 42
METADATA = "metadata_metashift.csv"
EXPECTS = f"ROOT/{FOLDER}/{{train/cat/cat(indoor),train/dog/dog(outdoor),test/cat/cat(outdoor),test/dog/dog(indoor)}}/*.jpg"


def image_folder(root: Path) -> Path | None:
    for base in (root / FOLDER, root):
        if (base / "train" / "cat" / "cat(indoor)").is_dir():
            return base
    return None


def detect_metashift(root: Path) -> bool:
    return image_folder(root) is not None or (root / METADATA).is_file()


def subpopbench_splits(n: int) -> np.ndarray:
    """SubpopBench's split codes for ``n`` pooled images: 25 % test, then 10 % val of the rest, seed 42."""
    rng = np.random.RandomState(SPLIT_SEED)  # the benchmark's fixed split, reproduced
    test = rng.choice(np.arange(n), size=int(n * TEST_PCT), replace=False)
    val = rng.choice(np.setdiff1d(np.arange(n), test), size=int(n * VAL_PCT), replace=False)
    split = np.zeros(n, dtype=np.int64)
    split[val] = 1
    split[test] = 2
    return split


def records_from_folders(root: Path, base: Path) -> list[Record]:
    items = []
    for folder, (y, a) in SUBSETS.items():
        if not (base / folder).is_dir():
            raise DataError(base / folder, f"folder not found (metashift layout: {EXPECTS})")
        items += [(path, y, a) for path in sorted((base / folder).glob("*.jpg"))]
    split = subpopbench_splits(len(items))
    return [make_record(root, path, y, ALL_SPLITS[s], a) for (path, y, a), s in zip(items, split.tolist(), strict=True)]


def resolve_image(root: Path, filename: str) -> Path:
    path = Path(filename)
    if path.is_absolute() and path.is_file():
        return path
    parts = Path(filename.replace("\\", "/")).parts
    if FOLDER in parts:
        return root / FOLDER / Path(*parts[parts.index(FOLDER) + 1:])
    return root / filename


def records_from_csv(root: Path, meta: Path) -> list[Record]:
    records = []
    with open(meta, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("filename", "y", "a", "split") if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(meta, f"missing column(s) {', '.join(missing)}; found {','.join(reader.fieldnames or [])}", 1)
        for row in reader:
            line = reader.line_num
            path = resolve_image(root, (row["filename"] or "").strip())
            if not path.is_file():
                raise DataError(meta, f"image {row['filename']!r} not found (looked for {path})", line)
            split = parse_int(row["split"], "split", meta, line)
            if split not in (0, 1, 2):
                raise DataError(meta, f"unknown split value {split} (expected 0 train, 1 val, 2 test)", line)
            records.append(make_record(root, path, parse_int(row["y"], "y", meta, line), ALL_SPLITS[split],
                                       parse_int(row["a"], "a", meta, line), line))
    return records


def read_metashift(root: Path, options: dict[str, str]) -> ImageDataset:
    meta = root / METADATA
    base = image_folder(root)
    if meta.is_file():
        records, notes = records_from_csv(root, meta), [f"splits from {METADATA} (SubpopBench)"]
    elif base is not None:
        records = records_from_folders(root, base)
        notes = ["splits drawn as SubpopBench does (25 % test, 10 % val, seed 42) over the files in sorted order"]
    else:
        raise DataError(root, f"neither {METADATA} nor the image folders found (metashift layout: {EXPECTS})")
    records = unique_records(records, meta if meta.is_file() else root)
    masks = {r.img_filename: (root / "segmentations" / r.img_filename).with_suffix(".png") for r in records}
    return ImageDataset(root, records, layout="metashift", source=meta if meta.is_file() else root, mask_paths=masks,
                        class_names=dict(CLASS_NAMES), place_names=dict(PLACE_NAMES), notes=notes)


METASHIFT = register_layout(Layout("metashift", EXPECTS, detect_metashift, read_metashift, priority=40))
