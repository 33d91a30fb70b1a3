"""The dataset card (``autobackswap inspect DATA``): what a dataset holds and what in it breaks the method.

Per split: the (class, attribute) group counts, the association between class and attribute (Cramér's V;
|phi| for two classes and two attributes), the share of images in their class's usual group (its most
frequent attribute in train), the minority groups, image sizes and modes (a sample of up to ``sample``
files per split, read from their headers), and ground-truth mask coverage. Over the splits: patch labels
available for training, files with the same bytes in two splits, and a contact sheet with one row per group.

``warnings`` lists what stops a method or weakens a figure: no minority group in val (DFR cannot run),
fewer labelled training images than the label budget, masks missing for some images, duplicates across
splits, tiny test groups, unreadable files.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from ..errors import DataError
from ..io import digest, write_json, write_png, write_text
from .groups import group_counts, majority_groups
from .images import image_grid, read_rgb
from .layout import ImageDataset, Record, read_masks_csv
from .layouts import read_layout

SPLIT_NAMES = ("train", "val", "test")
SMALL_TEST_GROUP = 20  # fewer test images than this in a group: its accuracy is too noisy to rank methods by


def cramers_v(y: Sequence[int], place: Sequence[int]) -> float | None:
    """Cramér's V between two label sequences (0 = independent, 1 = one determines the other); None when
    either has a single value."""
    ys, ps = sorted(set(y)), sorted(set(place))
    if len(ys) < 2 or len(ps) < 2:
        return None
    table = np.zeros((len(ys), len(ps)))
    for a, b in zip(y, place, strict=True):
        table[ys.index(a), ps.index(b)] += 1
    n = table.sum()
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(np.sqrt(chi2 / (n * (min(table.shape) - 1))))


def sample_indices(n: int, k: int) -> list[int]:
    """Up to ``k`` indices spread evenly over ``range(n)`` (first and last included)."""
    return sorted(set(np.linspace(0, n - 1, min(k, n)).round().astype(int).tolist())) if n else []


def image_header_stats(records: Sequence[Record], sample: int) -> dict[str, Any]:
    """Sizes and modes of up to ``sample`` images, read from their headers; unreadable files listed."""
    sizes: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    unreadable = []
    for i in sample_indices(len(records), sample):
        try:
            with Image.open(records[i].path) as img:
                sizes[f"{img.width}x{img.height}"] += 1
                modes[img.mode] += 1
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            unreadable.append(f"{records[i].path} ({exc.__class__.__name__})")
    return {"sampled": sum(sizes.values()) + len(unreadable), "sizes": sizes.most_common(5),
            "n_sizes": len(sizes), "modes": dict(modes.most_common()), "unreadable": unreadable}


def split_summary(dataset: ImageDataset, name: str, usual: set[tuple[int, int]], sample: int) -> dict[str, Any]:
    records = dataset.split(name)
    y, place = [r.y for r in records], [r.place for r in records]
    counts = group_counts(y, place)
    groups = [{"y": a, "class": dataset.class_names.get(a, str(a)), "place": b,
               "place_name": dataset.place_names.get(b, str(b)), "n": n, "minority": (a, b) not in usual}
              for (a, b), n in sorted(counts.items())]
    in_usual = sum(n for g, n in counts.items() if g in usual)
    masked = [dataset.segmentation_path(r).is_file() for r in records]
    first_missing = next((str(dataset.segmentation_path(r)) for r, m in zip(records, masked, strict=True) if not m), None)
    return {"n": len(records), "groups": groups, "class_attribute_cramers_v": cramers_v(y, place),
            "usual_group_share": in_usual / len(records) if records else None,
            "minority_groups": [[g["y"], g["place"]] for g in groups if g["minority"]],
            "has_minority_group": any(g["minority"] for g in groups),
            "images": image_header_stats(records, sample),
            "masks": {"with_mask": int(sum(masked)), "n": len(records),
                      "coverage": float(np.mean(masked)) if records else 0.0, "first_missing": first_missing}}


def stored_label_names(path: Path) -> set[str]:
    """Image names in a label store. SQLite writes beside a WAL database it opens, even read-only, so a copy
    (with its write-ahead log, if any) is read in a temporary folder and DATA stays untouched."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / path.name
        for suffix in ("", "-wal"):
            if Path(f"{path}{suffix}").is_file():
                shutil.copyfile(f"{path}{suffix}", f"{copy}{suffix}")
        conn = sqlite3.connect(copy)
        try:
            return {row[0] for row in conn.execute("SELECT img_filename FROM labels")}
        finally:
            conn.close()


def label_summary(dataset: ImageDataset, data_dir: Path, budget: int | None) -> tuple[dict[str, Any], list[str]]:
    """Patch labels for the train split: from masks.csv, a labels.sqlite, or derivable from masks."""
    train = {r.img_filename for r in dataset.split("train")}
    found: dict[str, int] = {}
    problems = []
    if dataset.masks_csv_path.is_file():
        try:
            found[str(dataset.masks_csv_path)] = len(set(read_masks_csv(dataset.masks_csv_path, dataset)) & train)
        except DataError as exc:
            problems.append(f"patch labels unreadable: {exc}")
    for store in dict.fromkeys([data_dir / "labels.sqlite", dataset.root / "labels.sqlite"]):
        if store.is_file():
            try:
                found[str(store)] = len(stored_label_names(store) & train)
            except sqlite3.Error as exc:
                problems.append(f"{store}: label store unreadable ({exc})")
    with_masks = sum(dataset.segmentation_path(r).is_file() for r in dataset.split("train"))
    info = {"files": found, "train_images_with_mask": int(with_masks), "label_budget": budget,
            "labelled_train_images": max([*found.values(), with_masks if with_masks == len(train) else 0])}
    return info, problems


def duplicate_files(dataset: ImageDataset, progress: bool = True) -> dict[str, Any]:
    """Files with the same bytes (SHA-1) in more than one split: counts per pair of splits, a few examples."""
    by_hash: dict[str, list[Record]] = {}
    for r in tqdm(dataset.records, desc="hashing files", leave=False, disable=not progress or len(dataset.records) < 500):
        try:
            key = digest(r.path.read_bytes(), length=40)
        except OSError:
            continue
        by_hash.setdefault(key, []).append(r)
    pairs: Counter[str] = Counter()
    examples: list[list[str]] = []
    for same in by_hash.values():
        splits = sorted({r.split for r in same})
        if len(splits) > 1:
            pairs["/".join(SPLIT_NAMES[s] for s in splits)] += 1
            if len(examples) < 5:
                examples.append([r.img_filename for r in same[:3]])
    return {"across_splits": int(sum(pairs.values())), "pairs": dict(pairs), "examples": examples}


def card_warnings(card: dict[str, Any]) -> list[str]:
    """What in the card stops a method or weakens a figure."""
    splits, out = card["splits"], []
    present = {(g["y"], g["place"]) for s in splits.values() for g in s["groups"]}
    val = {(g["y"], g["place"]) for g in splits["val"]["groups"]}
    if not splits["val"]["minority_groups"] and len(present) > len(card["classes"]):
        out.append("val has no minority group: DFR cannot run (it fits on group-balanced val subsets)")
    elif present - val:
        out.append(f"val lacks group(s) {sorted(present - val)}: DFR cannot run (it needs every group in val)")
    out += label_warnings(card["labels"], splits["train"]["n"])
    for name, s in splits.items():
        m = s["masks"]
        if 0 < m["with_mask"] < m["n"]:
            out.append(f"masks missing for {m['n'] - m['with_mask']} of {m['n']} {name} images (first: "
                       f"{m['first_missing']}): the oracle and ground-truth diagnostics need every one")
        if s["images"]["unreadable"]:
            out.append(f"{len(s['images']['unreadable'])} sampled {name} image(s) cannot be read: "
                       f"{s['images']['unreadable'][0]}")
    small = [f"({g['y']}, {g['place']}): {g['n']}" for g in splits["test"]["groups"] if g["n"] < SMALL_TEST_GROUP]
    if small:
        out.append(f"test groups with fewer than {SMALL_TEST_GROUP} images ({', '.join(small)}): their accuracy, "
                   "and so worst-group accuracy, is noisy")
    dup = card.get("duplicates")
    if dup and dup["across_splits"]:
        out.append(f"{dup['across_splits']} file(s) appear in more than one split ({dup['pairs']}), e.g. "
                   f"{dup['examples'][0]}: held-out figures may be optimistic")
    return out + card.get("label_problems", [])


def label_warnings(labels: dict[str, Any], n_train: int) -> list[str]:
    budget, have = labels["label_budget"], labels["labelled_train_images"]
    if have == 0:
        return ["no patch labels and no ground-truth mask for every training image: label some with "
                "`autobackswap label` (autobackswap needs them; the oracle cannot run)"]
    if budget is not None and have < budget:
        what = "training images" if have == n_train else "labelled training images"
        return [f"only {have} {what} for a label budget of {budget}: the detector trains on {have}"]
    return []


def dataset_card(dataset: ImageDataset, data_dir: str | Path | None = None, sample: int = 32,
                 label_budget: int | None = None, hash_files: bool = True) -> dict[str, Any]:
    """The card as a JSON-able dict (see the module docstring); ``warnings`` last."""
    train = dataset.split("train")
    usual = majority_groups(group_counts([r.y for r in train], [r.place for r in train]))
    card: dict[str, Any] = {
        "dataset": str(data_dir or dataset.root), "layout": dataset.layout, "notes": list(dataset.notes),
        "classes": {str(c): dataset.class_names.get(c, str(c)) for c in dataset.classes},
        "places": {str(p): dataset.place_names.get(p, str(p)) for p in sorted({r.place for r in dataset.records})},
        "splits": {name: split_summary(dataset, name, usual, sample) for name in SPLIT_NAMES},
    }
    card["labels"], card["label_problems"] = label_summary(dataset, Path(data_dir or dataset.root), label_budget)
    if hash_files:
        card["duplicates"] = duplicate_files(dataset)
    card["warnings"] = card_warnings(card)
    del card["label_problems"]
    return card


def contact_sheet(dataset: ImageDataset, per_group: int = 8, tile: int = 72) -> np.ndarray:
    """One row per (class, attribute) group: up to ``per_group`` of its images, spread over its records in
    split order (train first); the row title names the group and its count per split."""
    by_group: dict[tuple[int, int], list[Record]] = {}
    for r in sorted(dataset.records, key=lambda r: r.split):
        by_group.setdefault((r.y, r.place), []).append(r)
    rows, titles = [], []
    for (y, place), records in sorted(by_group.items()):
        picked = [records[i] for i in sample_indices(len(records), per_group)]
        rows.append([read_tile(r, tile) for r in picked])
        counts = Counter(SPLIT_NAMES[r.split] for r in records)
        titles.append(f"{dataset.class_names.get(y, y)} / {dataset.place_names.get(place, place)}\n"
                      + " ".join(f"{s} {counts.get(s, 0)}" for s in SPLIT_NAMES))
    return image_grid(rows, row_titles=titles, tile=tile)


def read_tile(record: Record, tile: int) -> np.ndarray:
    """The image, or a gray tile when it cannot be read (the card lists unreadable files)."""
    try:
        return read_rgb(record.path, record.row)
    except DataError:
        return np.full((tile, tile, 3), 128, np.uint8)


def render_card_markdown(card: dict[str, Any], sheet: str | None = None) -> str:
    """The card as Markdown (``sheet``: the contact sheet's path relative to the Markdown file)."""
    lines = [f"# Dataset card: `{card['dataset']}`", "", f"Layout `{card['layout']}`; classes "
             + ", ".join(f"{k} {v}" for k, v in card["classes"].items()) + "; attributes "
             + ", ".join(f"{k} {v}" for k, v in card["places"].items()) + ".", ""]
    lines += [f"- {n}" for n in card["notes"]] + ([""] if card["notes"] else [])
    lines += ["## Warnings", ""] + ([f"- {w}" for w in card["warnings"]] or ["- none"]) + [""]
    lines += ["## Splits", "", "| split | images | groups (class / attribute: n; * minority) | Cramér's V | "
              "usual-group share | masks | sizes (sampled) | modes |", "|---|---|---|---|---|---|---|---|"]
    for name, s in card["splits"].items():
        groups = ", ".join(f"{g['class']} / {g['place_name']}: {g['n']}{'*' if g['minority'] else ''}"
                           for g in s["groups"])
        v, share = s["class_attribute_cramers_v"], s["usual_group_share"]
        sizes = ", ".join(f"{k} ({n})" for k, n in s["images"]["sizes"]) + (
            f" +{s['images']['n_sizes'] - 5} more" if s["images"]["n_sizes"] > 5 else "")
        lines.append(f"| {name} | {s['n']} | {groups} | {'n/a' if v is None else f'{v:.3f}'} | "
                     f"{'n/a' if share is None else f'{share:.3f}'} | {s['masks']['with_mask']}/{s['n']} | {sizes} | "
                     + ", ".join(f"{k} ({n})" for k, n in s["images"]["modes"].items()) + " |")
    labels = card["labels"]
    lines += ["", "## Patch labels", "", f"{labels['labelled_train_images']} labelled training images available "
              f"(label budget {labels['label_budget']}); from files: "
              + (", ".join(f"{k} ({n})" for k, n in labels["files"].items()) or "none")
              + f"; training images with a ground-truth mask: {labels['train_images_with_mask']}.", ""]
    if "duplicates" in card:
        dup = card["duplicates"]
        lines += ["## Duplicates across splits", "", f"{dup['across_splits']} file(s) with the same bytes in more "
                  f"than one split {dup['pairs'] or ''}".rstrip() + ".", ""]
    if sheet:
        lines += ["## Contact sheet", "", f"![one row per group]({sheet})", ""]
    return "\n".join(lines)


def write_card(card: dict[str, Any], sheet: np.ndarray | None, out: str | Path) -> dict[str, Path]:
    """``card.json``, ``card.md`` and ``contact_sheet.png`` in ``out`` (each written atomically)."""
    out = Path(out)
    paths = {"json": out / "card.json", "markdown": out / "card.md"}
    if sheet is not None:
        paths["contact_sheet"] = out / "contact_sheet.png"
        write_png(paths["contact_sheet"], sheet)
    write_json(paths["json"], card)
    write_text(paths["markdown"], render_card_markdown(card, "contact_sheet.png" if sheet is not None else None))
    return paths


def inspect_dataset(data_dir: str | Path, layout: str = "auto", out: str | Path | None = None, sample: int = 32,
                    label_budget: int | None = None, hash_files: bool = True,
                    per_group: int = 8) -> tuple[dict[str, Any], dict[str, Path]]:
    """``autobackswap inspect``: the card of the dataset at ``data_dir`` (read in ``layout``), written to
    ``out`` (card.json, card.md, contact_sheet.png) when given. Returns the card and the written paths."""
    dataset = read_layout(data_dir, layout)
    card = dataset_card(dataset, data_dir, sample, label_budget, hash_files)
    if out is None:
        return card, {}
    return card, write_card(card, contact_sheet(dataset, per_group), out)
