"""``spawrious``: Spawrious (Lynch et al. 2023), four dog breeds on six backgrounds; the O2O and M2M splits.

Images: ``ROOT/spawrious224/{0,1}/<location>/<breed>/*.png`` (the official download, aengusl/spawrious
``spawrious/torch.py``), or ``ROOT/spawrious224/m2m/{0,1}/...`` as the seed paper's repository keeps them
(cesro7/spur-corr ``data/spawrious224/readme.txt``). ``y`` is the breed's index in
``("bulldog", "corgi", "dachshund", "labrador")`` and ``place`` the location's in
``("desert", "jungle", "dirt", "mountain", "snow", "beach")`` (both as in spur-corr
``methods/common/spawrious.py``). Options: ``variant`` (``o2o_easy`` default, as spur-corr's
``config_spawrious.yaml``; ``o2o_medium``, ``o2o_hard``, ``m2m_easy``, ``m2m_medium``, ``m2m_hard``) and
``splits``:

* ``reference`` (default), spur-corr ``methods/common/spawrious.py``: locations from
  ``spawrious224/{o2o,m2m}/<difficulty>.json`` (built-in copies of those files when absent). O2O trains on
  each breed's location from env folders 0 and 1 with the last 3 % / 13 % of each list replaced by the
  ``generic`` location; M2M trains on one location per env folder. Test: the test locations, both env folders.
  Files are ordered by their numeric suffix.
* ``official``, aengusl/spawrious ``spawrious/torch.py`` (``_get_combinations``, ``build_combination``,
  ``_create_data_list``): the same O2O lists with fixed counts (the first 3072 / 2756 images of 3168, plus
  96 / 412 filler images); M2M reads every location from env folder 0. The official code takes files in
  ``os.listdir`` order; here they are ordered by numeric suffix, so the counts match but a truncated list
  may hold other files.

Validation (the official code has none): 20 % of each (breed, env) training list, shuffled with
``random.Random(0)`` as spur-corr's ``split_train_valid`` does; the benchmark's fixed split, not experiment
randomness. Ground-truth masks: ``ROOT/spawrious224_segmentation_masks/<same relative path>.tiff``
(spur-corr ``data/generate_segmentation_masks.py``); patch labels: ``spawrious224/masks.csv``, keyed by the
image's path below the image root with a leading ``/`` (``/0/snow/labrador/snow_labrador_0.png``), which is
each record's ``img_id``; its rows for images the variant does not use are skipped.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from ...errors import DataError
from ..layout import ImageDataset, Record
from .base import Layout, list_images, make_record, register_layout, unique_records

CLASS_NAMES = ("bulldog", "corgi", "dachshund", "labrador")
LOCATION_NAMES = ("desert", "jungle", "dirt", "mountain", "snow", "beach")
VALID_RATIO = 0.2
O2O_MU = (0.97, 0.87)  # share of each env's list kept at the breed's own location (the rest: generic)
TOTAL = 3168  # the official per-list count
OFFICIAL_BREEDS = ("bulldog", "dachshund", "labrador", "corgi")  # order of the official location lists
OFFICIAL = {  # variant -> (train locations, test locations, o2o filler), aengusl/spawrious _get_combinations
    "o2o_easy": (("desert", "jungle", "dirt", "snow"), ("dirt", "snow", "desert", "jungle"), "beach"),
    "o2o_medium": (("mountain", "beach", "dirt", "jungle"), ("jungle", "dirt", "beach", "snow"), "desert"),
    "o2o_hard": (("jungle", "mountain", "snow", "desert"), ("mountain", "snow", "desert", "jungle"), "beach"),
    "m2m_hard": (("dirt", "jungle", "snow", "beach"), ("snow", "beach", "dirt", "jungle"), None),
    "m2m_easy": (("desert", "mountain", "dirt", "jungle"), ("dirt", "jungle", "mountain", "desert"), None),
    "m2m_medium": (("beach", "snow", "mountain", "desert"), ("desert", "mountain", "beach", "snow"), None),
}
OFFICIAL_M2M_PAIRS = ((0, 1), (1, 0), (2, 3), (3, 2))  # per breed: which two locations (env 0, env 1)
REFERENCE_M2M = {  # copies of spur-corr data/spawrious224/m2m/<difficulty>.json
    "m2m_easy": {"bulldog": [["desert", "mountain"], ["dirt", "jungle"]],
                 "dachshund": [["mountain", "desert"], ["dirt", "jungle"]],
                 "labrador": [["dirt", "jungle"], ["desert", "mountain"]],
                 "corgi": [["jungle", "dirt"], ["desert", "mountain"]]},
    "m2m_medium": {"bulldog": [["beach", "snow"], ["desert", "mountain"]],
                   "dachshund": [["beach", "snow"], ["desert", "mountain"]],
                   "labrador": [["mountain", "desert"], ["beach", "snow"]],
                   "corgi": [["mountain", "desert"], ["beach", "snow"]]},
    "m2m_hard": {"bulldog": [["dirt", "jungle"], ["snow", "beach"]],
                 "dachshund": [["jungle", "dirt"], ["snow", "beach"]],
                 "labrador": [["snow", "beach"], ["dirt", "jungle"]],
                 "corgi": [["beach", "snow"], ["dirt", "jungle"]]},
}
EXPECTS = "ROOT/spawrious224/{0,1}/<location>/<breed>/*.png (or spawrious224/m2m/{0,1}/...)"
Items = list[tuple[Path, str]]  # (image, location)
Lists = list[tuple[str, str, int, Items]]  # (train | test, breed, env, items)


def top_folder(root: Path) -> Path:
    return root / "spawrious224" if (root / "spawrious224").is_dir() else root


def image_base(root: Path) -> Path | None:
    top = top_folder(root)
    for base in (top / "m2m", top):
        if (base / "0").is_dir() and any((base / "0" / loc).is_dir() for loc in LOCATION_NAMES):
            return base
    return None


def detect_spawrious(root: Path) -> bool:
    return image_base(root) is not None


def suffix_number(path: Path) -> tuple[int, str]:
    tail = path.stem.split("_")[-1]
    return (int(tail) if tail.isdigit() else -1, path.name)


def images_at(base: Path, env: int, location: str, breed: str) -> list[Path]:
    folder = base / str(env) / location / breed
    if not folder.is_dir():
        raise DataError(folder, f"folder not found: the variant reads {breed} on {location} from env folder {env} "
                        f"(spawrious layout: {EXPECTS})")
    return list_images(folder, key=suffix_number)


def reference_table(top: Path, variant: str) -> dict[str, Any]:
    """The variant's location table: ``spawrious224/<type>/<difficulty>.json`` or the built-in copy."""
    path = top / variant.split("_")[0] / f"{variant.split('_')[1]}.json"
    if path.is_file():
        try:
            table: dict[str, Any] = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(path, f"not valid JSON ({exc.msg})", exc.lineno) from None
        missing = [b for b in CLASS_NAMES if b not in table] + (["generic"] if variant.startswith("o2o")
                                                                  and "generic" not in table else [])
        if missing:
            raise DataError(path, f"no entry for {', '.join(missing)}")
        return table
    if variant.startswith("o2o"):
        train, test, filler = OFFICIAL[variant]
        return {**{b: [train[k], test[k]] for k, b in enumerate(OFFICIAL_BREEDS)}, "generic": filler}
    return REFERENCE_M2M[variant]


def reference_lists(base: Path, table: dict[str, Any], variant: str) -> Lists:
    o2o = variant.startswith("o2o")
    out: Lists = []
    for breed in CLASS_NAMES:
        for env in (0, 1):
            for split, column in (("train", 0), ("test", 1)):
                loc = table[breed][column] if o2o else table[breed][column][env]
                items = [(p, loc) for p in images_at(base, env, loc, breed)]
                if split == "train" and o2o:
                    n_generic = len(items) - int(len(items) * O2O_MU[env])
                    generic = [(p, table["generic"]) for p in images_at(base, env, table["generic"], breed)]
                    items = items[: len(items) - n_generic] + generic[:n_generic]
                out.append((split, breed, env, items))
    return out


def official_lists(base: Path, variant: str) -> Lists:
    train, test, filler = OFFICIAL[variant]
    out: Lists = []
    for k, breed in enumerate(OFFICIAL_BREEDS):
        for env in (0, 1):
            if filler is not None:  # o2o: env folder = env, fixed counts, filler location
                count = int(O2O_MU[env] * TOTAL)
                items = [(p, train[k]) for p in images_at(base, env, train[k], breed)[:count]]
                items += [(p, filler) for p in images_at(base, env, filler, breed)[: TOTAL - count]]
                out += [("train", breed, env, items),
                        ("test", breed, env, [(p, test[k]) for p in images_at(base, env, test[k], breed)])]
            else:  # m2m: every list from env folder 0
                j = OFFICIAL_M2M_PAIRS[k][env]
                out += [("train", breed, env, [(p, train[j]) for p in images_at(base, 0, train[j], breed)[:TOTAL]]),
                        ("test", breed, env, [(p, test[j]) for p in images_at(base, 0, test[j], breed)])]
    return out


def hold_out(items: Items) -> tuple[Items, Items]:
    """(train, val): spur-corr's split_train_valid, the first 20 % of a ``random.Random(0)`` shuffle is val."""
    shuffled = list(items)
    random.Random(0).shuffle(shuffled)  # the benchmark's fixed split, reproduced; not experiment randomness
    cut = int(len(shuffled) * VALID_RATIO)
    return shuffled[cut:], shuffled[:cut]


def build_records(base: Path, lists: Lists) -> list[Record]:
    records = []
    for split, breed, _env, items in lists:
        parts = dict(zip(("train", "val"), hold_out(items), strict=True)) if split == "train" else {"test": items}
        for name, chosen in parts.items():
            for path, loc in chosen:
                rel = path.relative_to(base).as_posix()
                records.append(make_record(base, path, CLASS_NAMES.index(breed), name, LOCATION_NAMES.index(loc),
                                           img_id="/" + rel))
    return records


def read_spawrious(root: Path, options: dict[str, str]) -> ImageDataset:
    variant, splits = options.get("variant", "o2o_easy"), options.get("splits", "reference")
    if variant not in OFFICIAL:
        raise DataError(root, f"unknown Spawrious variant {variant!r}; valid: {', '.join(sorted(OFFICIAL))}")
    if splits not in ("reference", "official"):
        raise DataError(root, f"unknown Spawrious splits {splits!r}; valid: reference, official")
    base = image_base(root)
    if base is None:
        raise DataError(top_folder(root) / "0", f"env folder with location folders not found (spawrious layout: {EXPECTS})")
    top = top_folder(root)
    lists = official_lists(base, variant) if splits == "official" else reference_lists(base, reference_table(top, variant), variant)
    records = unique_records(build_records(base, lists), base)
    seg = top.parent / f"{top.name}_segmentation_masks" / base.relative_to(top)
    masks = {r.img_filename: (seg / r.img_filename).with_suffix(".tiff") for r in records}
    return ImageDataset(base, records, layout="spawrious", source=top, mask_paths=masks, masks_csv=top / "masks.csv",
                        shared_labels_root=base,
                        class_names=dict(enumerate(CLASS_NAMES)), place_names=dict(enumerate(LOCATION_NAMES)),
                        notes=[f"Spawrious {variant}, {splits} splits; val is 20 % of each (breed, env) training list"])


SPAWRIOUS = register_layout(Layout("spawrious", EXPECTS, detect_spawrious, read_spawrious, ("variant", "splits"), priority=20))
