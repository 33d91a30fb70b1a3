"""The synthetic spurious-background benchmark: determinism, group plan, layout, shape = class."""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import TINY_SYNTHETIC
from PIL import Image

from autobackswap.data.layout import read_dataset
from autobackswap.data.synthetic import LEVELS, group_plan, make_synthetic


def all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def metadata(root: Path) -> list[dict[str, str]]:
    with open(root / "metadata.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def groups_by_split(root: Path) -> dict[int, Counter[tuple[int, int]]]:
    out: dict[int, Counter[tuple[int, int]]] = {0: Counter(), 1: Counter(), 2: Counter()}
    for row in metadata(root):
        out[int(row["split"])][(int(row["y"]), int(row["place"]))] += 1
    return out


def test_same_seed_same_bytes(tiny_synthetic: Path, tmp_path: Path) -> None:
    again = make_synthetic(tmp_path / "again", **TINY_SYNTHETIC)
    first, second = all_files(tiny_synthetic), all_files(again)
    assert len(first) == 2 * 72 + 2  # images, segmentations, metadata.csv, config.json
    assert first.keys() == second.keys()
    for name in first:
        assert first[name] == second[name], name


def test_different_seed_differs(tiny_synthetic: Path, tmp_path: Path) -> None:
    other = make_synthetic(tmp_path / "other", **{**TINY_SYNTHETIC, "seed": 1})
    first, second = all_files(tiny_synthetic), all_files(other)
    assert first["metadata.csv"] != second["metadata.csv"]
    pixels_a = np.stack([np.asarray(Image.open(tiny_synthetic / "images" / r["img_filename"])) for r in metadata(tiny_synthetic)])
    pixels_b = np.stack([np.asarray(Image.open(other / "images" / r["img_filename"])) for r in metadata(other)])
    differs = [not np.array_equal(a, b) for a, b in zip(pixels_a, pixels_b, strict=True)]
    assert all(differs)


def test_layout_and_config(tiny_synthetic: Path) -> None:
    ds = read_dataset(tiny_synthetic)
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [40, 16, 16]
    assert ds.has_segmentations
    config = json.loads((tiny_synthetic / "config.json").read_text())
    assert config == {"generator": "synthetic", "n_train": 40, "n_val": 16, "n_test": 16, "correlation": 1.0,
                      "val_correlation": 1.0, "image_size": 32, "seed": 0}
    for r in ds.records[:10]:
        image = np.asarray(Image.open(r.path))
        mask = np.asarray(Image.open(ds.segmentation_path(r)))
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8
        assert mask.shape == (32, 32) and mask.dtype == np.uint8
        fg = (mask > 127).mean()
        assert 0.03 < fg < 0.6  # a visible object that leaves background around it
        assert r.img_filename.startswith(f"{r.y}_{'land' if r.place == 0 else 'water'}/")


def test_test_split_balanced_and_no_minority_at_correlation_one(tiny_synthetic: Path) -> None:
    counts = groups_by_split(tiny_synthetic)
    assert counts[2] == {(0, 0): 4, (0, 1): 4, (1, 0): 4, (1, 1): 4}  # n_test / 4 per group
    assert counts[0] == {(0, 0): 20, (1, 1): 20}  # no minority group in train
    assert counts[1] == {(0, 0): 8, (1, 1): 8}  # nor in val


def test_partial_correlation(tmp_path: Path) -> None:
    root = make_synthetic(tmp_path / "d", n_train=40, n_val=20, n_test=8, correlation=0.8, image_size=16, seed=3)
    counts = groups_by_split(root)
    assert counts[0] == {(0, 0): 16, (0, 1): 4, (1, 1): 16, (1, 0): 4}  # round(0.2 * 20) minority per class
    assert counts[1] == {(0, 0): 8, (0, 1): 2, (1, 1): 8, (1, 0): 2}
    assert counts[2] == {(0, 0): 2, (0, 1): 2, (1, 0): 2, (1, 1): 2}
    root = make_synthetic(tmp_path / "e", n_train=8, n_val=8, n_test=4, correlation=1.0, val_correlation=0.5,
                          image_size=16)
    assert groups_by_split(root)[1] == {(0, 0): 2, (0, 1): 2, (1, 1): 2, (1, 0): 2}


def test_group_plan_hand_computed() -> None:
    rng = np.random.default_rng(0)
    assert Counter(group_plan(rng, 10, 1.0, balanced=True)) == {(0, 0): 3, (0, 1): 2, (1, 1): 3, (1, 0): 2}
    # odd n: class 0 gets the extra sample; 4 * 0.5 = 2 and round(3 * 0.5) = round(1.5) = 2 minority
    assert Counter(group_plan(rng, 7, 0.5, balanced=False)) == {(0, 0): 2, (0, 1): 2, (1, 1): 1, (1, 0): 2}
    assert Counter(group_plan(rng, 6, 0.0, balanced=False)) == {(0, 1): 3, (1, 0): 3}


def test_class_lives_in_the_shape(tiny_synthetic: Path) -> None:
    """y = 0 is an ellipse, y = 1 a triangle: how well the smallest enclosing triangle fits tells them apart."""
    ds = read_dataset(tiny_synthetic)
    for r in ds.records:
        mask = np.asarray(Image.open(ds.segmentation_path(r)))
        big = cv2.resize(mask, (128, 128), interpolation=cv2.INTER_LINEAR)  # smoother contours
        contours, _ = cv2.findContours((big > 127).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        contour = max(contours, key=cv2.contourArea)
        area, _ = cv2.minEnclosingTriangle(contour.astype(np.float32))
        fill = cv2.contourArea(contour) / area
        if r.y == 1:
            assert fill > 0.8, (r.img_filename, fill)
        else:
            assert fill < 0.75, (r.img_filename, fill)  # a disc fills 0.60 of its enclosing triangle


def test_background_colour_follows_place(tiny_synthetic: Path) -> None:
    """Land backgrounds are green, water backgrounds blue: the spurious cue is there to be learned."""
    ds = read_dataset(tiny_synthetic)
    for r in ds.records:
        image = np.asarray(Image.open(r.path).convert("RGB")).astype(float)
        bg = np.asarray(Image.open(ds.segmentation_path(r))) < 16
        red, green, blue = (image[..., c][bg].mean() for c in range(3))
        if r.place == 0:
            assert green > blue, r.img_filename
        else:
            assert blue > green and blue > red, r.img_filename


@pytest.mark.parametrize("kwargs,match", [({"correlation": 1.5}, "correlation"), ({"correlation": -0.1}, "correlation"),
                                          ({"image_size": 8}, "image_size")])
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_synthetic(tmp_path / "x", n_train=4, n_val=4, n_test=4, **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_hard_level_is_deterministic_and_recorded(tmp_path: Path) -> None:
    kw = {**TINY_SYNTHETIC, "difficulty": "hard"}
    first, second = make_synthetic(tmp_path / "a", **kw), make_synthetic(tmp_path / "b", **kw)
    assert all_files(first) == all_files(second)
    easy = all_files(make_synthetic(tmp_path / "easy", **TINY_SYNTHETIC))
    assert all_files(first)["metadata.csv"] == easy["metadata.csv"]  # the same group plan, other pictures
    assert any(all_files(first)[k] != v for k, v in easy.items() if k.startswith("images/"))
    config = json.loads((first / "config.json").read_text())
    assert config["difficulty"] == {"level": "hard", **asdict(LEVELS.get("hard"))}
    assert "difficulty" not in json.loads((tmp_path / "easy" / "config.json").read_text())


def test_hard_backgrounds_are_not_told_apart_by_colour(tmp_path: Path) -> None:
    """On the hard level the background hues of land and water overlap: a hue threshold does not separate the
    places (on the easy level one does, perfectly)."""

    def best_threshold_accuracy(root: Path) -> float:
        ds = read_dataset(root)
        hues, places = [], []
        for r in ds.records:
            hsv = cv2.cvtColor(np.asarray(Image.open(r.path).convert("RGB")), cv2.COLOR_RGB2HSV)
            bg = np.asarray(Image.open(ds.segmentation_path(r))) < 16
            hues.append(float(np.median(hsv[..., 0][bg])))
            places.append(r.place)
        h, p = np.array(hues), np.array(places)
        return max(max(np.mean((h > t) == p), np.mean((h <= t) == p)) for t in np.unique(h))

    kw = {**TINY_SYNTHETIC, "seed": 3}
    assert best_threshold_accuracy(make_synthetic(tmp_path / "easy", **kw)) == 1.0
    assert best_threshold_accuracy(make_synthetic(tmp_path / "hard", **kw, difficulty="hard")) < 0.9


def test_hard_level_draws_several_shapes_and_distractors(tmp_path: Path) -> None:
    """Several shapes a class (the foreground masks of one class are not one template) and distractor shapes in
    the background (pixels of foreground colour outside the mask)."""
    root = make_synthetic(tmp_path / "hard", **{**TINY_SYNTHETIC, "difficulty": "hard"})
    ds = read_dataset(root)
    fills: dict[int, list[float]] = {0: [], 1: []}
    for r in ds.records:
        mask = np.asarray(Image.open(ds.segmentation_path(r)))
        big = cv2.resize(mask, (128, 128), interpolation=cv2.INTER_LINEAR)
        contours, _ = cv2.findContours((big > 127).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        contour = max(contours, key=cv2.contourArea)
        fills[r.y].append(cv2.contourArea(contour) / cv2.contourArea(cv2.convexHull(contour)))
    assert min(np.std(fills[0]), np.std(fills[1])) > 0.02  # solidity varies within a class: several shapes


def test_unknown_level_names_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="unknown synthetic difficulty 'medium'; valid names: easy, hard"):
        make_synthetic(tmp_path / "x", **{**TINY_SYNTHETIC, "difficulty": "medium"})
    assert not (tmp_path / "x").exists()
