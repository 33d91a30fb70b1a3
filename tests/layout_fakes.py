"""Tiny fakes of every dataset layout, written by the tests themselves (no download).

Each image is ``size`` x ``size``: a background colour per attribute (noisy) and a square of a colour per
class at a random spot; its mask is the square. The folder structures follow the real releases as the
readers in ``autobackswap.data.layouts`` document them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from autobackswap.data.grid import grid_to_string, mask_to_grid

FG = [(230, 40, 40), (40, 230, 40), (40, 40, 230), (230, 230, 40)]
BG = [(90, 60, 30), (30, 90, 140), (200, 200, 200), (20, 120, 20), (160, 160, 90), (220, 180, 120)]
SPAWRIOUS_LOCATIONS = ("desert", "jungle", "dirt", "mountain", "snow", "beach")
SPAWRIOUS_BREEDS = ("bulldog", "corgi", "dachshund", "labrador")
# spur-corr data/spawrious224/o2o/easy.json
O2O_EASY = {"bulldog": ["desert", "dirt"], "dachshund": ["jungle", "snow"], "labrador": ["dirt", "desert"],
            "corgi": ["snow", "jungle"], "generic": "beach"}


def render(rng: np.random.Generator, y: int, place: int, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(HWC uint8 image, HW uint8 mask 0/255) for class ``y`` on attribute ``place``."""
    image = np.clip(np.array(BG[place % len(BG)]) + rng.integers(-15, 16, (size, size, 3)), 0, 255).astype(np.uint8)
    mask = np.zeros((size, size), np.uint8)
    side = size // 2
    top, left = rng.integers(0, size - side + 1, 2)
    image[top : top + side, left : left + side] = FG[y % len(FG)]
    mask[top : top + side, left : left + side] = 255
    return image, mask


def save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(path)
    return path


def make_spawrious(root: Path, n: int = 11, size: int = 16, reference: bool = True, masks: bool = True) -> Path:
    """``root/spawrious224/m2m/{0,1}/<location>/<breed>/<location>_<breed>_<i>.png`` (``reference``; else the
    official ``root/spawrious224/{0,1}/...``) for every location and breed, ``n`` images each; with ``masks``
    the SAM masks (``root/spawrious224_segmentation_masks/...tiff``, mode 1) and ``spawrious224/masks.csv``
    (4x4 grids, keys ``/<env>/<location>/<breed>/<file>``); with ``reference`` also ``o2o/easy.json``."""
    rng = np.random.default_rng(7)
    top = root / "spawrious224"
    base = top / "m2m" if reference else top
    rows = []
    for env in (0, 1):
        for p, loc in enumerate(SPAWRIOUS_LOCATIONS):
            for y, breed in enumerate(SPAWRIOUS_BREEDS):
                for i in range(n):
                    rel = f"{env}/{loc}/{breed}/{loc}_{breed}_{i}.png"
                    image, mask = render(rng, y, p, size)
                    save(base / rel, image)
                    if masks:
                        save((root / "spawrious224_segmentation_masks" / base.relative_to(top) / rel).with_suffix(".tiff"),
                             mask, "1")
                        rows.append([f"/{rel}", grid_to_string(mask_to_grid(mask, 4))])
    if reference:
        (top / "o2o").mkdir(parents=True, exist_ok=True)
        (top / "o2o" / "easy.json").write_text(json.dumps(O2O_EASY))
    if masks:
        write_rows(top / "masks.csv", ["info", "mask"], rows)
    return root


IN9_CLASSES = ("00_dog", "01_bird", "02_wheeled vehicle")
IN9_VARIANTS = ("original", "only_fg", "no_fg", "mixed_same", "mixed_rand", "mixed_next")


def make_in9(root: Path, n: int = 4, size: int = 16) -> Path:
    """``root/in9l/{train,val}/<class>/`` (``n`` and ``n // 2`` JPEGs per class) and
    ``root/bg_challenge/<variant>/val/<class>/`` (``n // 2`` per class) with ``bg_challenge/fg_mask/val``
    ``.npy`` masks (0/1) for the original images; three of IN-9's classes."""
    rng = np.random.default_rng(9)
    for split, count in (("train", n), ("val", n // 2)):
        for y, name in enumerate(IN9_CLASSES):
            for i in range(count):
                image, _ = render(rng, y, int(rng.integers(0, 3)), size)
                save(root / "in9l" / split / name / f"n0{y}_{split}{i}.JPEG", image)
    for y, name in enumerate(IN9_CLASSES):
        for i in range(n // 2):
            image, mask = render(rng, y, y, size)
            stem = f"n0{y}_{i}"
            for variant in IN9_VARIANTS:
                shown = image if variant == "original" else render(rng, y, int(rng.integers(0, 3)), size)[0]
                save(root / "bg_challenge" / variant / "val" / name / f"{stem}.JPEG", shown)
            (root / "bg_challenge" / "fg_mask" / "val" / name).mkdir(parents=True, exist_ok=True)
            np.save(root / "bg_challenge" / "fg_mask" / "val" / name / f"{stem}.npy", (mask > 0).astype(np.uint8))
    return root


METASHIFT_FOLDERS = {"train/cat/cat(indoor)": (1, 1), "train/dog/dog(outdoor)": (0, 0),
                     "test/cat/cat(outdoor)": (1, 0), "test/dog/dog(indoor)": (0, 1)}


def make_metashift(root: Path, n: int = 10, size: int = 16, csv_from: str | None = None) -> Path:
    """``root/MetaShift-Cat-Dog-indoor-outdoor/<four folders>/*.jpg``, ``n`` each. With ``csv_from`` (a path
    prefix from "another machine"), also ``root/metadata_metashift.csv`` with absolute filenames under it and
    splits cycling train, val, test over the images."""
    rng = np.random.default_rng(11)
    rows = []
    for folder, (y, a) in METASHIFT_FOLDERS.items():
        for i in range(n):
            rel = f"MetaShift-Cat-Dog-indoor-outdoor/{folder}/{y}{a}{i:03d}.jpg"
            save(root / rel, render(rng, y, a, size)[0])
            rows.append([f"{csv_from}/{rel}", y, a, len(rows) % 3])
    if csv_from is not None:
        write_rows(root / "metadata_metashift.csv", ["filename", "y", "a", "split"], rows)
    return root


def make_imagefolder(root: Path, groups: dict[str, dict[tuple[str, str], int]], size: int = 16,
                     attributes: bool = True, masks: bool = True) -> Path:
    """``root/<split>/<class>/<class>_<attribute>_<i>.png`` with ``groups[split][(class, attribute)]`` images,
    ``root/attributes.csv`` (path,attribute) and ``root/segmentations/<path>.png``."""
    rng = np.random.default_rng(13)
    classes = sorted({c for g in groups.values() for c, _ in g})
    places = sorted({a for g in groups.values() for _, a in g})
    rows = []
    for split, counts in groups.items():
        for (cls, attr), count in counts.items():
            for i in range(count):
                rel = f"{split}/{cls}/{cls}_{attr}_{i}.png"
                image, mask = render(rng, classes.index(cls), places.index(attr), size)
                save(root / rel, image)
                if masks:
                    save((root / "segmentations" / rel).with_suffix(".png"), mask)
                rows.append([rel, attr])
    if attributes:
        write_rows(root / "attributes.csv", ["path", "attribute"], rows)
    return root


def write_rows(path: Path, header: list[str], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def make_waterbirds_images_prefix(root: Path, n: int = 3, size: int = 16) -> Path:
    """The issue's case: ``img_filename = images/<class>/<name>.png`` with masks at
    ``segmentations/<class>/<name>.png`` (not ``segmentations/images/...``); ``n`` per (split, y, place)."""
    rng = np.random.default_rng(17)
    rows = []
    for split in (0, 1, 2):
        for y in (0, 1):
            for place in (0, 1):
                for i in range(n):
                    name = f"images/c{y}/s{split}_p{place}_{i}.png"
                    image, mask = render(rng, y, place, size)
                    save(root / name, image)
                    save((root / "segmentations" / name.removeprefix("images/")), mask)
                    rows.append([len(rows), name, y, split, place])
    write_rows(root / "metadata.csv", ["img_id", "img_filename", "y", "split", "place"], rows)
    return root
