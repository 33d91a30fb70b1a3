"""Read and validate a dataset in the Waterbirds layout (DESIGN.md section 2).

``DATA/metadata.csv`` has ``img_filename,y,split,place`` and optionally ``img_id``; other columns
are ignored. ``img_filename`` is resolved against ``DATA/`` and then ``DATA/images/``. Optional:
``DATA/segmentations/<img_filename with .png suffix>`` and ``DATA/masks.csv`` (``info,mask``).

Every problem is a :class:`~autobackswap.errors.DataError` naming the file and the row (the line
number in the CSV file, header = line 1), raised before any training starts: a file that is not UTF-8
text or not CSV, a repeated ``img_filename`` or ``img_id`` (naming both rows), a label that is not an
integer, an ``img_filename`` that leaves the dataset folder, and in ``masks.csv`` a repeated image
(naming both rows), an unknown id or a bad mask.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import posixpath
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .grid import string_to_grid
from .images import decode_images, decode_masks

log = logging.getLogger(__name__)

SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
REQUIRED_COLUMNS = ("img_filename", "y", "split", "place")
INTEGER = re.compile(r"[+-]?[0-9]+(\.0*)?")  # "3", "-1", and "3.0" as pandas writes integer columns
MAX_LABEL = 2**31 - 1  # y and place are small integers; beyond this a value is a typo, not a class


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
    if not INTEGER.fullmatch(text):
        raise DataError(path, f"column {column!r} must be an integer, got {text[:40]!r}", row)
    digits = text.split(".")[0]
    if len(digits.lstrip("+-0")) > len(str(MAX_LABEL)) or abs(number := int(digits)) > MAX_LABEL:
        raise DataError(path, f"column {column!r} must be an integer of at most {MAX_LABEL}, got {text[:40]!r}", row)
    return number


def read_csv_text(path: Path) -> str:
    """The text of a CSV file; a file that is not UTF-8 is a DataError naming the line of the first bad byte."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(path, f"cannot read the file ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(path, f"not UTF-8 text (byte 0x{data[exc.start]:02x} cannot be decoded); save it as UTF-8",
                        line) from None


def csv_rows(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict[str, str | None]]]:
    """``(line number, row)`` for every data row of the CSV file at ``path`` (header = line 1), after
    checking that the header has the ``required`` columns. Malformed CSV (an oversized field, a stray
    quote) and rows with more or fewer fields than the header are DataErrors naming the row."""
    reader = csv.DictReader(io.StringIO(read_csv_text(path), newline=""))
    try:
        columns = reader.fieldnames or []
        missing = [c for c in required if c not in columns]
        if missing:
            raise DataError(path, f"missing column(s) {', '.join(missing)} (expected columns {','.join(required)}); "
                                  f"found {', '.join(columns)[:200]}", 1)
        for row in reader:
            line = reader.line_num
            if None in row:  # more fields than the header
                extra = row[None]  # type: ignore[index]
                raise DataError(path, f"row has {len(columns) + len(extra)} fields, header has {len(columns)}", line)
            if any(value is None for value in row.values()):  # fewer fields than the header
                raise DataError(path, f"row has fewer fields than the header ({len(columns)})", line)
            yield line, row  # type: ignore[misc]
    except csv.Error as exc:
        raise DataError(path, f"malformed CSV ({exc})", max(reader.reader.line_num, 1)) from None


def leaves_root(name: str) -> bool:
    """True when ``name`` (an ``img_filename``) is absolute or climbs out of the folder it is resolved
    against (``..``), as the labelling app refuses to serve such files."""
    if name.startswith(("/", "\\")) or os.path.isabs(name):
        return True
    parts = posixpath.normpath(name.replace("\\", "/")).split("/")
    return parts[0] == ".."


def inside(path: str | Path, root: str | Path) -> bool:
    """True when ``path`` lies under ``root`` lexically (``..`` resolved, symlinks allowed)."""
    p, r = os.path.normpath(os.path.abspath(path)), os.path.normpath(os.path.abspath(root))
    return p == r or p.startswith(r + os.sep)


def read_dataset(root: str | Path, check_files: bool = True) -> ImageDataset:
    """Parse ``root/metadata.csv`` and validate every row (file existence included)."""
    root = Path(root)
    meta = root / "metadata.csv"
    if not root.is_dir():
        raise DataError(root, "dataset folder not found")
    if not meta.is_file():
        raise DataError(meta, "metadata.csv not found (expected columns img_filename,y,split,place)")
    records = [_record(root, meta, line, row, check_files) for line, row in csv_rows(meta, REQUIRED_COLUMNS)]
    _check_unique(meta, records)
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


def _record(root: Path, meta: Path, line: int, row: dict[str, str | None], check_files: bool) -> Record:
    """One validated row of ``metadata.csv``."""
    name = (row["img_filename"] or "").strip()
    if not name:
        raise DataError(meta, "column 'img_filename' is empty", line)
    if leaves_root(name):
        raise DataError(meta, f"img_filename {name[:200]!r} leaves the dataset folder (absolute or ..); "
                              "give paths relative to it", line)
    y = _parse_int(row["y"], "y", meta, line)
    split = _parse_int(row["split"], "split", meta, line)
    if split not in SPLITS.values():
        raise DataError(meta, f"unknown split value {split} (expected 0 train, 1 val, 2 test)", line)
    place = _parse_int(row["place"], "place", meta, line)
    img_id = (row.get("img_id") or "").strip() or name
    path = _resolve(root, name)
    if check_files and path is None:
        raise DataError(meta, f"image {name[:200]!r} not found under {root} or {root / 'images'}", line)
    return Record(line, img_id, name, path or root / name, y, split, place)


def _check_unique(meta: Path, records: Sequence[Record]) -> None:
    """Every ``img_filename`` and every ``img_id`` names one row, and no id is another row's filename
    (``masks.csv`` keys by either), or labels keyed by it would land on the wrong image or be lost."""
    names: dict[str, int | None] = {}
    ids: dict[str, int | None] = {}
    for r in records:
        if r.img_filename in names:
            raise DataError(meta, f"img_filename {r.img_filename[:200]!r} repeats row {names[r.img_filename]}", r.row)
        names[r.img_filename] = r.row
        if r.img_id in ids:
            raise DataError(meta, f"img_id {r.img_id[:200]!r} repeats row {ids[r.img_id]}", r.row)
        ids[r.img_id] = r.row
    for r in records:
        other = names.get(r.img_id)
        if other is not None and other != r.row:
            raise DataError(meta, f"img_id {r.img_id[:200]!r} is the img_filename of row {other}: a masks.csv "
                                  "row keyed by it would be ambiguous", r.row)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, or with a NUL byte
        return False


def _resolve(root: Path, name: str) -> Path | None:
    for base in (root, root / "images"):
        if _is_file(base / name):
            return base / name
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

    ``info`` may be an ``img_id`` or an ``img_filename``. All rows must share one G, and each image may
    have one row only: a second row for the same image (by either key) is an error naming both rows.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "masks.csv not found")
    index = dataset.lookup()
    labels: dict[str, np.ndarray] = {}
    first_row: dict[str, int] = {}
    grid: int | None = None
    for line, row in csv_rows(path, ("info", "mask")):
        info = (row.get("info") or "").strip()
        record = index.get(info)
        if record is None and dataset.shared_labels_root is not None and _is_file(
                dataset.shared_labels_root / info.lstrip("/")):
            continue
        if record is None:
            raise DataError(path, f"unknown id {info[:200]!r}: no img_id or img_filename in metadata.csv matches", line)
        if record.img_filename in first_row:
            raise DataError(path, f"a second label for image {record.img_filename[:200]!r} (img_id {record.img_id[:200]!r}); "
                                  f"row {first_row[record.img_filename]} labels it already", line)
        try:
            g = string_to_grid(row.get("mask") or "")
        except ValueError as exc:
            raise DataError(path, str(exc)[:300], line) from None
        if grid is None:
            grid = g.shape[0]
        elif g.shape[0] != grid:
            raise DataError(path, f"mask has {g.size} characters; earlier rows have {grid * grid} ({grid}x{grid})", line)
        labels[record.img_filename] = g
        first_row[record.img_filename] = line
    if not labels:
        raise DataError(path, "masks.csv has no rows")
    return labels
