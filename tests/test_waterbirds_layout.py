"""A tiny fake in the exact ``waterbird_complete95_forest2water2`` layout works unchanged."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_fake_waterbirds
from PIL import Image

from autobackswap.cli import main
from autobackswap.data.grid import mask_to_grid
from autobackswap.data.layout import load_images, load_segmentations, read_dataset, read_masks_csv

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def test_fake_has_the_waterbirds_layout(fake_waterbirds: Path) -> None:
    with open(fake_waterbirds / "metadata.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["img_id", "img_filename", "y", "split", "place", "place_filename"]
    assert len(rows) == 1 + 3 * 4 * 2
    first = rows[1]
    assert first[0] == "1"
    folder, name = first[1].split("/")
    assert folder == "026.Bronzed_Cowbird"  # class folders at the dataset root
    assert name.startswith("Bronzed_Cowbird_0001_") and name.endswith(".jpg")
    assert (fake_waterbirds / first[1]).is_file() and not (fake_waterbirds / "images").exists()
    with Image.open(fake_waterbirds / first[1]) as img:
        assert img.format == "JPEG"
    with open(fake_waterbirds / "masks.csv", newline="") as fh:
        masks = list(csv.reader(fh))
    assert masks[0] == ["info", "mask"] and masks[1][0] == "1" and len(masks[1][1]) == 256


def test_read_dataset(fake_waterbirds: Path) -> None:
    ds = read_dataset(fake_waterbirds)
    assert len(ds.records) == 24
    assert ds.classes == [0, 1]
    for split in ("train", "val", "test"):
        groups = sorted((r.y, r.place) for r in ds.split(split))
        assert groups == [(0, 0), (0, 0), (0, 1), (0, 1), (1, 0), (1, 0), (1, 1), (1, 1)]
    r = ds.records[0]
    assert r.img_id == "1" and r.row == 2
    assert r.path == fake_waterbirds / r.img_filename  # resolved against DATA, not DATA/images
    assert ds.has_segmentations
    seg = ds.segmentation_path(r)
    assert seg == fake_waterbirds / "segmentations" / Path(r.img_filename).with_suffix(".png")
    assert seg.is_file()


def test_images_and_masks_load(fake_waterbirds: Path) -> None:
    ds = read_dataset(fake_waterbirds)
    images = load_images(ds.records, 32)
    assert images.shape == (24, 32, 32, 3) and images.dtype == np.uint8
    gray = images[0].astype(int)  # the first image is a grayscale JPEG, as a few CUB images are
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 0], gray[..., 2])
    assert not np.array_equal(images[1][..., 0], images[1][..., 2])
    with Image.open(ds.records[1].path) as img:
        assert img.size == (64, 48)  # non-square originals are resized to the working square
    segs = load_segmentations(ds, ds.records, 32)
    assert segs.shape == (24, 32, 32)


def test_masks_csv_by_img_id(fake_waterbirds: Path) -> None:
    ds = read_dataset(fake_waterbirds)
    labels = read_masks_csv(ds.masks_csv_path, ds)
    assert set(labels) == {r.img_filename for r in ds.records}
    for r in ds.records[:6]:
        grid = labels[r.img_filename]
        assert grid.shape == (16, 16) and grid.dtype == bool
        seg = np.asarray(Image.open(ds.segmentation_path(r)))
        assert np.array_equal(grid, mask_to_grid(seg, 16))
        assert 0 < grid.sum() < 256


def test_without_segmentations(tmp_path: Path) -> None:
    root = make_fake_waterbirds(tmp_path / "wb", n_per_split_group=1, size=24, with_segmentations=False)
    ds = read_dataset(root)
    assert len(ds.records) == 12
    assert not ds.has_segmentations and not ds.masks_csv_path.exists()


def test_erm_experiment_end_to_end(fake_waterbirds: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = main(["experiment", str(fake_waterbirds), "--methods", "erm", "--seeds", "0", "--image-size", "32",
                     "--epochs", "1", "--out", str(run)])
    assert code == 0
    assert "erm" in out.getvalue()
    results = json.loads((run / "results.json").read_text())
    test = results["methods"]["erm"]["test"]
    assert [(g["y"], g["place"], g["n"]) for g in test["groups"]] == [(0, 0, 2), (0, 1, 2), (1, 0, 2), (1, 1, 2)]
    assert test["worst_group_accuracy"] == min(g["accuracy"] for g in test["groups"])
    assert (run / "models" / "erm_seed0.pt").is_file()
    assert results["dataset"] == str(fake_waterbirds)
