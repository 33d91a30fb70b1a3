"""``in9``: the ImageNet-9 backgrounds challenge (Xiao et al. 2020), trained on IN-9L.

Follows MadryLab/backgrounds_challenge: ``tools/datasets.py`` (``make_loaders``: a variant's test images are
``<variant>/val/<class>/*``, read with ``ImageFolder``, classes in sorted folder order), ``in9_eval.py``
(``--eval-dataset`` names the variant folder under the data path) and ``challenge_eval.py`` (foreground
masks ``fg_mask/val/<class>/<name>.npy`` beside ``original/val/<class>/<name>.JPEG``); the README lists the
variants and the IN-9L training data. The folder names (``in9l/{train,val}``, ``bg_challenge/<variant>/val``,
classes ``00_dog`` ... ``08_fish``) are those of YyzHarry/SubpopBench ``subpopbench/scripts/download.py``
(``generate_metadata_imagenetbg``), which sets the attribute to 0 for every image, as here.

``ROOT`` holds ``in9l/train`` (train), ``in9l/val`` (val) and ``bg_challenge/original/val`` (test, with the
``.npy`` masks). ``ROOT`` may also be one variant folder (``bg_challenge/mixed_rand``): a test-only dataset,
for ``--also-test mixed_rand=ROOT/bg_challenge/mixed_rand``, so the official BG-gap
(``mixed_same - mixed_rand``) comes from the official images. IN-9L has no masks: label its training images
(``autobackswap label``) or pass ``--labels``.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ..layout import ImageDataset, Record
from .base import Layout, list_images, make_record, register_layout, subfolders, unique_records

VARIANTS = ("original", "only_fg", "no_fg", "only_bg_b", "only_bg_t", "mixed_same", "mixed_rand", "mixed_next")
EXPECTS = ("ROOT/in9l/{train,val}/<class>/ and ROOT/bg_challenge/original/val/<class>/ (masks in "
           "bg_challenge/fg_mask/val/), or one variant folder <variant>/val/<class>/")
NOTE = ("IN-9 has no background label: every image has attribute 0, so the groups are the classes; the official "
        "BG-gap comes from --also-test mixed_same=... and mixed_rand=... (bg_gap_official)")


def challenge_folder(root: Path) -> Path | None:
    for base in (root / "bg_challenge", root):
        if (base / "original" / "val").is_dir():
            return base
    return None


def is_variant(root: Path) -> bool:
    return root.name in VARIANTS and (root / "val").is_dir()


def detect_in9(root: Path) -> bool:
    return is_variant(root) or (root / "in9l" / "train").is_dir() or challenge_folder(root) is not None


def split_records(root: Path, folder: Path, split: str, classes: list[str], masks: Path,
                  mask_paths: dict[str, Path]) -> list[Record]:
    """Every image of ``folder/<class>/``; class folders must be among ``classes``."""
    if not folder.is_dir():
        raise DataError(folder, f"folder not found (in9 layout: {EXPECTS})")
    records = []
    for name in subfolders(folder):
        if name not in classes:
            raise DataError(folder / name, f"class folder {name!r} is not an IN-9 class here ({', '.join(classes)})")
        for path in list_images(folder / name):
            record = make_record(root, path, classes.index(name), split, 0)
            mask_paths[record.img_filename] = masks / name / f"{path.stem}.npy"
            records.append(record)
    return records


def read_in9(root: Path, options: dict[str, str]) -> ImageDataset:
    masks: dict[str, Path] = {}
    if is_variant(root):
        classes = subfolders(root / "val")
        records = split_records(root, root / "val", "test", classes, root.parent / "fg_mask" / "val", masks)
        notes = [NOTE, f"test-only: the {root.name} variant of the backgrounds challenge"]
    else:
        train = root / "in9l" / "train"
        if not train.is_dir():
            raise DataError(train, "IN-9L training images not found (from the challenge's in9l.tar.gz; in9 layout: "
                            f"{EXPECTS})")
        challenge = challenge_folder(root)
        if challenge is None:
            raise DataError(root / "bg_challenge" / "original" / "val", "test images not found (from "
                            f"backgrounds_challenge_data.tar.gz; in9 layout: {EXPECTS})")
        classes = subfolders(train)
        none = root / "in9l" / "fg_mask"  # IN-9L ships no masks: these paths never exist
        records = (split_records(root, train, "train", classes, none / "train", masks)
                   + split_records(root, root / "in9l" / "val", "val", classes, none / "val", masks)
                   + split_records(root, challenge / "original" / "val", "test", classes,
                                   challenge / "fg_mask" / "val", masks))
        notes = [NOTE]
    return ImageDataset(root, unique_records(records, root), layout="in9", source=root, mask_paths=masks,
                        class_names=dict(enumerate(classes)), notes=notes)


IN9 = register_layout(Layout("in9", EXPECTS, detect_in9, read_in9, priority=30))
