"""The dataset-layout registry and what every reader shares.

A :class:`Layout` turns a folder into the one :class:`~autobackswap.data.layout.ImageDataset` (records
with ``y``, ``split`` and ``place``; ground-truth mask paths; names), so nothing downstream knows which
layout it came from. ``detect`` says whether a folder looks like the layout; ``read`` builds the dataset
or raises one :class:`~autobackswap.errors.DataError` naming the file (and the row) that is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...errors import AutoBackSwapError, DataError
from ...registry import Registry
from ..layout import SPLITS, ImageDataset, Record

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
ALL_SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class Layout:
    """A registered reader. ``expects`` is one line saying what the folder must hold (shown when
    detection or reading fails); ``options`` are the ``name:key=value`` options ``read`` accepts;
    auto-detection tries layouts by ascending ``priority`` (the most generic last)."""

    name: str
    expects: str
    detect: Callable[[Path], bool]
    read: Callable[[Path, dict[str, str]], ImageDataset]
    options: tuple[str, ...] = ()
    priority: int = 50


LAYOUTS: Registry[Layout] = Registry("dataset layout")


def register_layout(layout: Layout) -> Layout:
    LAYOUTS.register(layout.name)(layout)
    return layout


def detect_order() -> list[str]:
    """Layout names in the order auto-detection tries them."""
    return sorted(LAYOUTS.names(), key=lambda n: (LAYOUTS.get(n).priority, n))


def parse_layout_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"spawrious:variant=m2m_hard"`` -> ``("spawrious", {"variant": "m2m_hard"})``; ``auto`` has no options."""
    name, *parts = (spec or "auto").strip().split(":")
    options: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise AutoBackSwapError(f"layout option {part!r} in {spec!r} must look like key=value")
        options[key.strip()] = value.strip()
    if name == "auto":
        if options:
            raise AutoBackSwapError(f"--layout auto takes no options; name the layout, e.g. spawrious:{parts[0]}")
        return name, options
    layout = LAYOUTS.get(name)  # raises with the valid names
    unknown = sorted(set(options) - set(layout.options))
    if unknown:
        valid = ", ".join(layout.options) or "none"
        raise AutoBackSwapError(f"layout {name!r} has no option {unknown[0]!r}; its options: {valid}")
    return name, options


def detect_layout(root: Path) -> str:
    """The first registered layout whose ``detect`` accepts ``root``; else one line listing what each expects."""
    for name in detect_order():
        if LAYOUTS.get(name).detect(root):
            return name
    here = f"{root}/"
    expected = "; ".join(f"{n}: {LAYOUTS.get(n).expects.replace('DATA/', here).replace('ROOT/', here)}"
                         for n in detect_order())
    raise DataError(root, f"no dataset layout recognised, expected files not found: {expected}; pass --layout NAME")


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_images(folder: Path, key: Callable[[Path], tuple[int, str]] | None = None) -> list[Path]:
    """The image files directly in ``folder`` (by suffix, case-insensitive), sorted by name or ``key``."""
    return sorted((p for p in folder.iterdir() if is_image(p)), key=key or (lambda p: (0, p.name)))


def subfolders(folder: Path) -> list[str]:
    """Names of the visible subfolders of ``folder``, sorted."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def parse_int(value: str | None, column: str, path: Path, row: int) -> int:
    text = (value or "").strip()
    try:
        number = float(text)
    except ValueError:
        raise DataError(path, f"column {column!r} must be an integer, got {text!r}", row) from None
    if not number.is_integer():
        raise DataError(path, f"column {column!r} must be an integer, got {text!r}", row)
    return int(number)


def make_record(root: Path, path: Path, y: int, split: str, place: int, row: int | None = None,
                img_id: str | None = None) -> Record:
    """A record whose ``img_filename`` is ``path`` relative to ``root`` (POSIX), or ``path`` itself
    when it lies outside ``root``."""
    try:
        name = path.relative_to(root).as_posix()
    except ValueError:
        name = path.as_posix()
    return Record(row, img_id or name, name, path, y, SPLITS[split], place)


def unique_records(records: Iterable[Record], source: Path) -> list[Record]:
    """``records`` in order; an image listed twice is a DataError naming it."""
    seen: set[str] = set()
    out = []
    for r in records:
        if r.img_filename in seen:
            raise DataError(source, f"image {r.img_filename!r} is listed twice", r.row)
        seen.add(r.img_filename)
        out.append(r)
    return out


def check_dataset(dataset: ImageDataset, need: Sequence[str] = ALL_SPLITS) -> ImageDataset:
    """Every split in ``need`` has images; the classes are the train split's (the test split's for a
    test-only read) and number two or more; every other label is one of them. Sets ``dataset.classes``."""
    source = dataset.metadata_path
    expects = LAYOUTS.get(dataset.layout).expects if dataset.layout in LAYOUTS else ""
    for name in need:
        if not dataset.split(name):
            raise DataError(source, f"the {name} split has no images ({dataset.layout} layout: {expects})")
    basis = "train" if "train" in need else need[0]
    classes = sorted({r.y for r in dataset.split(basis)})
    if "train" in need and len(classes) < 2:
        names = [dataset.class_names.get(c, str(c)) for c in classes]
        raise DataError(source, f"the train split has a single class ({', '.join(names)}); a classifier needs two or more")
    for r in dataset.records:
        if r.y not in classes and ALL_SPLITS[r.split] in need:
            raise DataError(r.path, f"class {dataset.class_names.get(r.y, r.y)!r} does not occur in the {basis} split",
                            r.row)
    dataset.classes = classes
    return dataset
