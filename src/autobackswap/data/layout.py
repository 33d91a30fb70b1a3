"""Read and validate a dataset in the Waterbirds layout (DESIGN.md section 2).

``DATA/metadata.csv`` has ``img_filename,y,split,place`` and optionally ``img_id``; other columns
are ignored. ``img_filename`` is resolved against ``DATA/`` and then ``DATA/images/``. Optional:
``DATA/segmentations/<img_filename with .png suffix>`` and ``DATA/masks.csv`` (``info,mask``).

Every problem is a :class:`~autobackswap.errors.DataError` naming the file and the row (the line
number in the CSV file, header = line 1), raised before any training starts.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .grid import string_to_grid
from .images import decode_images, decode_masks

log = logging.getLogger(__name__)

SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
REQUIRED_COLUMNS = ("img_filename", "y", "split", "place")


@dataclass(frozen=True)
class Record:
    """One row of ``metadata.csv``."""

    row: int | None  # line number in metadata.csv (header is line 1); None where a layout has no CSV row
    img_id: str
    img_filename: str
    path: Path
    y: int
    split: int
    place: int


@dataclass
class ImageDataset:
    """A validated dataset in the Waterbirds layout. Build it with :func:`read_dataset`."""

    root: Path
    records: list[Record]
    classes: list[int] = field(default_factory=list)
    # Set by the other layouts (data/layouts/); the defaults are the Waterbirds layout's.
    layout: str = "waterbirds"
    source: Path | None = None  # the file or folder that defines the dataset (default metadata.csv)
    mask_paths: dict[str, Path] | None = None  # img_filename -> its ground-truth mask file
    masks_csv: Path | None = None  # where the layout keeps patch labels (default DATA/masks.csv)
    shared_labels_root: Path | None = None  # masks.csv rows naming another image under it (another variant's) are skipped
    class_names: dict[int, str] = field(default_factory=dict)
    place_names: dict[int, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what a report should say about the data

    @property
    def metadata_path(self) -> Path:
        return self.source or self.root / "metadata.csv"

    def split(self, name: str) -> list[Record]:
        code = SPLITS[name]
        return [r for r in self.records if r.split == code]

    def segmentation_path(self, record: Record) -> Path:
        if self.mask_paths is not None:
            return self.mask_paths[record.img_filename]
        return (self.root / "segmentations" / record.img_filename).with_suffix(".png")

    @property
    def has_segmentations(self) -> bool:
        train = self.split("train")
        return bool(train) and all(self.segmentation_path(r).is_file() for r in train)

    @property
    def masks_csv_path(self) -> Path:
        return self.masks_csv or self.root / "masks.csv"

    def lookup(self) -> dict[str, Record]:
        """Index by ``img_id`` and by ``img_filename`` (the keys ``masks.csv`` may use)."""
        index: dict[str, Record] = {}
        for r in self.records:
            index[r.img_filename] = r
            index[r.img_id] = r
        return index


def _parse_int(value: str | None, column: str, path: Path, row: int) -> int:
    if value is None or value.strip() == "":
        raise DataError(path, f"column {column!r} is empty", row)
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        raise DataError(path, f"column {column!r} must be an integer, got {text!r}", row) from None
    if not number.is_integer():
        raise DataError(path, f"column {column!r} must be an integer, got {text!r}", row)
    return int(number)


def read_dataset(root: str | Path, check_files: bool = True) -> ImageDataset:
    """Parse ``root/metadata.csv`` and validate every row (file existence included)."""
    root = Path(root)
    meta = root / "metadata.csv"
    if not root.is_dir():
        raise DataError(root, "dataset folder not found")
    if not meta.is_file():
        raise DataError(meta, "metadata.csv not found (expected columns img_filename,y,split,place)")
    with open(meta, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise DataError(meta, f"missing column(s) {', '.join(missing)}; found {', '.join(columns)}", 1)
        records: list[Record] = []
        seen: dict[str, int] = {}
        for row in reader:
            line = reader.line_num
            if None in row:  # more fields than the header
                raise DataError(meta, f"row has {len(columns) + len(row[None])} fields, header has {len(columns)}", line)
            if any(value is None for value in row.values()):  # fewer fields than the header
                raise DataError(meta, f"row has fewer fields than the header ({len(columns)})", line)
            name = (row["img_filename"] or "").strip()
            if not name:
                raise DataError(meta, "column 'img_filename' is empty", line)
            y = _parse_int(row["y"], "y", meta, line)
            split = _parse_int(row["split"], "split", meta, line)
            if split not in SPLITS.values():
                raise DataError(meta, f"unknown split value {split} (expected 0 train, 1 val, 2 test)", line)
            place = _parse_int(row["place"], "place", meta, line)
            img_id = (row.get("img_id") or "").strip() or name
            if name in seen:
                raise DataError(meta, f"img_filename {name!r} repeats row {seen[name]}", line)
            seen[name] = line
            path = _resolve(root, name)
            if check_files and path is None:
                raise DataError(meta, f"image {name!r} not found under {root} or {root / 'images'}", line)
            records.append(Record(line, img_id, name, path or root / name, y, split, place))
    for split_name, code in SPLITS.items():
        if not any(r.split == code for r in records):
            raise DataError(meta, f"the {split_name} split (split={code}) has no rows")
    classes = sorted({r.y for r in records if r.split == 0})
    if len(classes) < 2:
        raise DataError(meta, f"the train split has a single class ({classes}); a classifier needs two or more")
    for r in records:
        if r.y not in classes:
            raise DataError(meta, f"label y={r.y} does not occur in the train split", r.row)
    return ImageDataset(root=root, records=records, classes=classes)


def _resolve(root: Path, name: str) -> Path | None:
    for base in (root, root / "images"):
        candidate = base / name
        if candidate.is_file():
            return candidate
    return None


def load_images(records: Sequence[Record], size: int, desc: str = "loading images") -> np.ndarray:
    """Decode and resize every record's image: ``(N, size, size, 3)`` uint8 RGB."""
    return decode_images([r.path for r in records], [r.row for r in records], size, desc)


def load_segmentations(dataset: ImageDataset, records: Sequence[Record], size: int) -> np.ndarray:
    """Ground-truth masks at the working size: ``(N, size, size)`` uint8, 255 = foreground."""
    return decode_masks([dataset.segmentation_path(r) for r in records], [r.row for r in records], size,
                        [r.img_filename for r in records])


def read_masks_csv(path: str | Path, dataset: ImageDataset) -> dict[str, np.ndarray]:
    """Read patch labels in the reference format; keys are ``img_filename``.

    ``info`` may be an ``img_id`` or an ``img_filename``. All rows must share one G.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "masks.csv not found")
    index = dataset.lookup()
    labels: dict[str, np.ndarray] = {}
    grid: int | None = None
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "info" not in reader.fieldnames or "mask" not in reader.fieldnames:
            raise DataError(path, f"expected columns info,mask; found {','.join(reader.fieldnames or [])}", 1)
        for row in reader:
            line = reader.line_num
            info = (row.get("info") or "").strip()
            record = index.get(info)
            if record is None and dataset.shared_labels_root is not None and (
                    dataset.shared_labels_root / info.lstrip("/")).is_file():
                continue
            if record is None:
                raise DataError(path, f"unknown id {info!r}: no img_id or img_filename in metadata.csv matches", line)
            try:
                g = string_to_grid(row.get("mask") or "")
            except ValueError as exc:
                raise DataError(path, str(exc), line) from None
            if grid is None:
                grid = g.shape[0]
            elif g.shape[0] != grid:
                raise DataError(path, f"mask has {g.size} characters; earlier rows have {grid * grid} ({grid}x{grid})", line)
            labels[record.img_filename] = g
    if not labels:
        raise DataError(path, "masks.csv has no rows")
    return labels
