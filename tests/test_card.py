"""The dataset card (``autobackswap inspect``): hand-counted groups, association, minority groups, sizes,
masks, labels, duplicates, the warnings, the files it writes and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from layout_fakes import make_imagefolder
from PIL import Image

from autobackswap.cli import main
from autobackswap.data.card import contact_sheet, cramers_v, dataset_card, inspect_dataset, sample_indices
from autobackswap.data.labelstore import LabelStore
from autobackswap.data.layouts import read_layout

GROUPS = {  # train: cat/in 3, cat/out 1, dog/out 3, dog/in 1; val has no minority group
    "train": {("cat", "in"): 3, ("cat", "out"): 1, ("dog", "out"): 3, ("dog", "in"): 1},
    "val": {("cat", "in"): 2, ("dog", "out"): 2},
    "test": {("cat", "in"): 2, ("cat", "out"): 2, ("dog", "out"): 2, ("dog", "in"): 2},
}


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    """The imagefolder fake, plus: one train image grayscale and 20x16, one train file copied into test
    under a new name, one test mask removed."""
    root = make_imagefolder(tmp_path / "data", GROUPS)
    Image.open(root / "train/dog/dog_out_0.png").convert("L").resize((20, 16)).save(root / "train/dog/dog_out_0.png")
    shutil.copy(root / "train/cat/cat_in_0.png", root / "test/cat/cat_in_copy.png")
    with open(root / "attributes.csv", "a") as fh:
        fh.write("test/cat/cat_in_copy.png,in\n")
    shutil.copy(root / "segmentations/train/cat/cat_in_0.png", root / "segmentations/test/cat/cat_in_copy.png")
    (root / "segmentations/test/dog/dog_in_1.png").unlink()
    return root


def test_cramers_v_by_hand() -> None:
    """[[3, 1], [1, 3]]: chi2 = 4 * (1 ** 2 / 2) = 2, V = sqrt(2 / 8) = 0.5."""
    y, place = [0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 0]
    assert cramers_v(y, place) == pytest.approx(0.5)
    assert cramers_v([0, 0, 1, 1], [0, 0, 1, 1]) == pytest.approx(1.0)
    assert cramers_v([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0)
    assert cramers_v([0, 1, 2], [0, 0, 0]) is None


def test_sample_indices_spread_evenly() -> None:
    assert sample_indices(10, 3) == [0, 4, 9] and sample_indices(2, 5) == [0, 1] and sample_indices(0, 4) == []


def test_card_counts_and_warnings(dataset_dir: Path) -> None:
    card = dataset_card(read_layout(dataset_dir), dataset_dir, sample=32, label_budget=200)
    train, val, test = (card["splits"][s] for s in ("train", "val", "test"))
    assert [(g["class"], g["place_name"], g["n"], g["minority"]) for g in train["groups"]] == [
        ("cat", "in", 3, False), ("cat", "out", 1, True), ("dog", "in", 1, True), ("dog", "out", 3, False)]
    assert train["class_attribute_cramers_v"] == pytest.approx(0.5) and train["usual_group_share"] == 0.75
    assert val["minority_groups"] == [] and val["class_attribute_cramers_v"] == pytest.approx(1.0)
    assert (train["has_minority_group"], val["has_minority_group"]) == (True, False)
    assert test["n"] == 9 and test["minority_groups"] == [[0, 1], [1, 0]]
    assert train["images"]["sizes"] == [("16x16", 7), ("20x16", 1)] and train["images"]["modes"] == {"RGB": 7, "L": 1}
    assert test["masks"] == {"with_mask": 8, "n": 9, "coverage": pytest.approx(8 / 9),
                             "first_missing": str(dataset_dir / "segmentations/test/dog/dog_in_1.png")}
    assert card["duplicates"] == {"across_splits": 1, "pairs": {"train/test": 1},
                                  "examples": [["train/cat/cat_in_0.png", "test/cat/cat_in_copy.png"]]}
    assert card["labels"]["labelled_train_images"] == 8
    warnings = card["warnings"]
    assert warnings[0] == "val has no minority group: DFR cannot run (it fits on group-balanced val subsets)"
    assert "only 8 training images for a label budget of 200: the detector trains on 8" in warnings
    assert any(w.startswith("masks missing for 1 of 9 test images") and "dog_in_1.png" in w for w in warnings)
    assert any(w.startswith("1 file(s) appear in more than one split") for w in warnings)
    assert any(w.startswith("test groups with fewer than 20 images") for w in warnings)
    small_budget = dataset_card(read_layout(dataset_dir), dataset_dir, label_budget=4, hash_files=False)
    assert not any("label budget" in w for w in small_budget["warnings"]) and "duplicates" not in small_budget


def test_card_without_masks_counts_stored_labels_and_writes_nothing_into_data(dataset_dir: Path) -> None:
    shutil.rmtree(dataset_dir / "segmentations")
    store = LabelStore(dataset_dir / "labels.sqlite", grid=4)
    for name in ("train/cat/cat_in_0.png", "train/dog/dog_out_1.png", "val/cat/cat_in_0.png"):
        store.put(name, "1" * 16)
    before = sorted(p.name for p in dataset_dir.iterdir())
    card = dataset_card(read_layout(dataset_dir), dataset_dir, label_budget=3, hash_files=False)
    assert sorted(p.name for p in dataset_dir.iterdir()) == before
    assert card["labels"]["files"] == {str(dataset_dir / "labels.sqlite"): 2}  # the val label does not count
    assert "only 2 labelled training images for a label budget of 3: the detector trains on 2" in card["warnings"]
    assert "duplicates" not in card
    shutil.move(dataset_dir / "labels.sqlite", dataset_dir.parent / "labels.sqlite")
    card = dataset_card(read_layout(dataset_dir), dataset_dir, label_budget=3, hash_files=False)
    assert card["warnings"][1].startswith("no patch labels and no ground-truth mask for every training image")


def test_contact_sheet_has_a_row_per_group(dataset_dir: Path) -> None:
    sheet = contact_sheet(read_layout(dataset_dir), per_group=3, tile=20)
    assert sheet.shape[0] == 4 * 20 + 3 * 2  # four groups, 2 px gaps
    assert sheet.dtype == np.uint8 and sheet.shape[2] == 3


def test_inspect_writes_the_card_files(dataset_dir: Path, tmp_path: Path) -> None:
    card, paths = inspect_dataset(dataset_dir, "imagefolder", tmp_path / "card", label_budget=200)
    assert set(paths) == {"json", "markdown", "contact_sheet"}
    assert json.loads(paths["json"].read_text()) == json.loads(json.dumps(card))
    markdown = paths["markdown"].read_text()
    assert "val has no minority group" in markdown and "![one row per group](contact_sheet.png)" in markdown
    assert "| train | 8 | cat / in: 3, cat / out: 1*, dog / in: 1*, dog / out: 3 | 0.500 | 0.750 | 8/8 |" in markdown
    assert Image.open(paths["contact_sheet"]).size[1] == 4 * 72 + 3 * 2


def test_inspect_cli(dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(dataset_dir), "--out", str(tmp_path / "card"), "--sample", "4"]) == 0
    out = capsys.readouterr().out
    assert "# Dataset card" in out and "## Warnings" in out and f"json: {tmp_path / 'card' / 'card.json'}" in out
    (tmp_path / "empty").mkdir()
    assert main(["inspect", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("autobackswap inspect: error:") and "no dataset layout recognised" in err
    assert len(err.splitlines()) == 1
    assert main(["inspect", str(dataset_dir), "--layout", "spawrious"]) == 2
    err = capsys.readouterr().err.strip()
    assert "env folder with location folders not found" in err and len(err.splitlines()) == 1
