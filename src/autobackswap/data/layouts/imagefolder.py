"""``imagefolder``: plain class folders, ``ROOT/{train,val,test}/<class>/<images>``.

The torchvision ``ImageFolder`` convention, one tree per split; classes are the folder names of
``train/``, numbered in sorted order (``y``). No public repository defines this layout; it is ours.

The spurious attribute comes from an optional CSV (default ``ROOT/attributes.csv``, or the ``attributes``
option) with columns ``path`` (relative to ``ROOT``, e.g. ``train/cat/001.jpg``) and ``attribute`` (or
``place``): integers, or names numbered in sorted order. Every image needs a row. Without the CSV every
image has attribute 0, so the groups are the classes; the dataset's notes (and the report) say so.
Optional ``ROOT/segmentations/<path>.png`` masks and a ``masks.csv`` keyed by ``path``, as for Waterbirds.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ...errors import DataError
from ..layout import ImageDataset
from .base import ALL_SPLITS, Layout, list_images, make_record, register_layout, subfolders, unique_records

EXPECTS = "ROOT/{train,val,test}/<class>/<images> (+ optional attributes.csv with path,attribute)"
NO_ATTRIBUTE_NOTE = ("no attribute CSV: every image has attribute 0, so the groups are the classes and worst-group "
                     "accuracy is worst-class accuracy")


def detect_imagefolder(root: Path) -> bool:
    return all((root / s).is_dir() for s in ALL_SPLITS) and bool(subfolders(root / "train"))


def list_split_images(root: Path) -> tuple[list[str], list[tuple[Path, int, str]]]:
    """The class names (train's folders) and every image as ``(path, y, split)``."""
    for split in ALL_SPLITS:
        if not (root / split).is_dir():
            raise DataError(root / split, f"split folder not found (imagefolder layout: {EXPECTS})")
    names = subfolders(root / "train")
    index = {n: i for i, n in enumerate(names)}
    items = []
    for split in ALL_SPLITS:
        for name in subfolders(root / split):
            if name not in index:
                raise DataError(root / split / name, f"class folder {name!r} is not one of train/'s classes "
                                f"({', '.join(names)})")
            items += [(path, index[name], split) for path in list_images(root / split / name)]
    return names, items


def read_attributes(path: Path, root: Path, images: set[str]) -> tuple[dict[str, int], dict[int, str]]:
    """``{relative path: attribute}`` for every image, and the attribute names (when they are not numbers)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        value_column = next((c for c in ("attribute", "place") if c in columns), None)
        if "path" not in columns or value_column is None:
            raise DataError(path, f"expected columns path,attribute; found {','.join(columns)}", 1)
        raw: dict[str, tuple[str, int]] = {}
        for row in reader:
            line = reader.line_num
            key = (row.get("path") or "").strip().replace("\\", "/").removeprefix("./")
            value = (row.get(value_column) or "").strip()
            if key not in images:
                raise DataError(path, f"no image {key!r} under {root}/{{train,val,test}}/<class>/", line)
            if key in raw:
                raise DataError(path, f"image {key!r} repeats row {raw[key][1]}", line)
            if not value:
                raise DataError(path, f"column {value_column!r} is empty", line)
            raw[key] = (value, line)
    missing = sorted(images - set(raw))
    if missing:
        raise DataError(path, f"no attribute for {len(missing)} image(s), first {missing[0]!r}; every image needs a row")
    values = sorted({v for v, _ in raw.values()})
    if all(v.lstrip("-").isdigit() for v in values):
        return {k: int(v) for k, (v, _) in raw.items()}, {}
    number = {v: i for i, v in enumerate(values)}
    return {k: number[v] for k, (v, _) in raw.items()}, {i: v for v, i in number.items()}


def read_imagefolder(root: Path, options: dict[str, str]) -> ImageDataset:
    names, items = list_split_images(root)
    attr_path = root / options.get("attributes", "attributes.csv")
    if "attributes" in options and not attr_path.is_file():
        raise DataError(attr_path, "attribute CSV not found")
    notes: list[str] = []
    if attr_path.is_file():
        rel = {p.relative_to(root).as_posix() for p, _, _ in items}
        places, place_names = read_attributes(attr_path, root, rel)
    else:
        places, place_names = {}, {}
        notes.append(NO_ATTRIBUTE_NOTE)
    records = unique_records((make_record(root, path, y, split, places.get(path.relative_to(root).as_posix(), 0))
                              for path, y, split in items), root)
    masks = {r.img_filename: (root / "segmentations" / r.img_filename).with_suffix(".png") for r in records}
    return ImageDataset(root, records, layout="imagefolder", source=root, mask_paths=masks,
                        class_names=dict(enumerate(names)), place_names=place_names, notes=notes)


IMAGEFOLDER = register_layout(Layout("imagefolder", EXPECTS, detect_imagefolder, read_imagefolder, ("attributes",), priority=90))
