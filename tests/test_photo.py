"""TuxBirds photo benchmark: built from a tiny generated stand-in of the Debian asset packages."""

from __future__ import annotations

import csv
import os
import shutil
import stat
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from photo_fakes import BACKGROUNDS, BIRDS, MAGENTA, write_standins
from PIL import Image

from autobackswap.cli import main
from autobackswap.data import assets as assets_mod
from autobackswap.data.layout import load_images, load_segmentations, read_dataset
from autobackswap.data.photo import (
    PasteParams,
    PhotoJitter,
    bird_geometry,
    load_cutout,
    make_photo_benchmark,
    paste,
    render,
    split_pool,
)
from autobackswap.data.photo_lists import (
    CURATED_BACKGROUNDS,
    CURATED_BIRDS,
    LAND_BIRDS,
    WATER_BIRDS,
)
from autobackswap.errors import AutoBackSwapError, DataError

SMALL: dict[str, Any] = {"n_train": 24, "n_val": 8, "n_test": 16, "image_size": 32}


@pytest.fixture(scope="module")
def fake_assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_standins(tmp_path_factory.mktemp("assets"), BIRDS, BACKGROUNDS)


@pytest.fixture(scope="module")
def built(fake_assets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tuxbirds")
    make_photo_benchmark(out, fake_assets, seed=0, fetch=False, birds=BIRDS, backgrounds=BACKGROUNDS, **SMALL)
    return out


def rows(root: Path) -> list[dict[str, str]]:
    with open(root / "metadata.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- layout
@pytest.mark.parametrize("setting", ["seen", "unseen"])
def test_each_setting_is_a_valid_waterbirds_layout(built: Path, setting: str) -> None:
    ds = read_dataset(built / setting)
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [24, 8, 16]
    assert ds.classes == [0, 1]
    assert ds.has_segmentations
    with Image.open(ds.split("test")[0].path) as img:
        assert img.size == (32, 32) and img.mode == "RGB"
    # correlation 1.0: train and val have no minority group; the test is balanced, n/4 per group
    assert all(r.place == r.y for r in ds.split("train") + ds.split("val"))
    assert Counter((r.y, r.place) for r in ds.split("test")) == {(0, 0): 4, (0, 1): 4, (1, 0): 4, (1, 1): 4}
    header = list(rows(built / setting)[0])
    assert header[:5] == ["img_id", "img_filename", "y", "split", "place"]
    assert {"bird", "background"} <= set(header)


def test_contact_sheet_and_config_are_written(built: Path) -> None:
    with Image.open(built / "contact_sheet.png") as sheet:
        assert sheet.mode == "RGB" and sheet.width > 8 * 32
    assert (built / "config.json").is_file()
    assert not [p for p in built.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_seen_and_unseen_share_train_and_val_bytes(built: Path) -> None:
    seen, unseen = tree_bytes(built / "seen"), tree_bytes(built / "unseen")
    shared = [k for k in seen if k.split("/")[1:2] in (["train"], ["val"])]
    assert len(shared) == 2 * 32  # images and segmentations
    assert all(seen[k] == unseen[k] for k in shared)
    assert rows(built / "seen")[:32] == rows(built / "unseen")[:32]


def test_same_seed_same_bytes_other_seed_differs(fake_assets: Path, built: Path, tmp_path: Path) -> None:
    make_photo_benchmark(tmp_path / "again", fake_assets, seed=0, fetch=False, birds=BIRDS,
                         backgrounds=BACKGROUNDS, **SMALL)
    assert tree_bytes(tmp_path / "again") == tree_bytes(built)
    make_photo_benchmark(tmp_path / "other", fake_assets, seed=1, fetch=False, birds=BIRDS,
                         backgrounds=BACKGROUNDS, **SMALL)
    assert (tmp_path / "other/seen/metadata.csv").read_bytes() != (built / "seen/metadata.csv").read_bytes()


def test_one_setting_alone_gives_the_same_train_images(fake_assets: Path, built: Path, tmp_path: Path) -> None:
    written = make_photo_benchmark(tmp_path, fake_assets, seed=0, fetch=False, test_setting="unseen",
                                   birds=BIRDS, backgrounds=BACKGROUNDS, **SMALL)
    assert list(written) == ["unseen"] and not (tmp_path / "seen").exists()
    assert tree_bytes(tmp_path / "unseen") == tree_bytes(built / "unseen")


def test_unseen_test_is_disjoint_and_seen_test_reuses_training_birds(built: Path) -> None:
    for setting in ("seen", "unseen"):
        meta = rows(built / setting)
        train_birds = {r["bird"] for r in meta if r["split"] != "2"}
        train_bgs = {r["background"] for r in meta if r["split"] != "2"}
        test_birds = {r["bird"] for r in meta if r["split"] == "2"}
        test_bgs = {r["background"] for r in meta if r["split"] == "2"}
        assert test_bgs and not test_bgs & train_bgs  # unseen background photos in both settings
        if setting == "unseen":
            assert test_birds and not test_birds & train_birds
        else:
            assert test_birds <= train_birds
    names = {b.name: b for b in BIRDS} | {b.name: b for b in BACKGROUNDS}
    for r in rows(built / "unseen"):  # labels follow the specs
        assert names[r["bird"]].y == int(r["y"])  # type: ignore[union-attr]
        assert names[r["background"]].place == int(r["place"])  # type: ignore[union-attr]


def test_segmentation_is_the_moved_alpha(built: Path) -> None:
    ds = read_dataset(built / "unseen")
    for r in ds.records[::5]:
        image = np.asarray(Image.open(r.path).convert("RGB")).astype(int)
        seg = np.asarray(Image.open(ds.segmentation_path(r)))
        assert seg.shape == image.shape[:2]
        inside, outside = seg == 255, seg == 0
        assert inside.sum() > 20  # the bird is there
        assert np.abs(image[inside] - MAGENTA).max() <= 2  # opaque bird pixels are the cut-out's colour
        # background pixels are the photo's: far from magenta (the green / blue stand-ins)
        assert np.abs(image[outside] - MAGENTA).sum(axis=1).min() > 150


def test_correlation_sets_the_minority_share(fake_assets: Path, tmp_path: Path) -> None:
    make_photo_benchmark(tmp_path, fake_assets, correlation=0.9, n_train=100, n_val=20, n_test=8, image_size=16,
                         test_setting="seen", fetch=False, birds=BIRDS, backgrounds=BACKGROUNDS)
    ds = read_dataset(tmp_path / "seen")
    assert Counter((r.y, r.place) for r in ds.split("train")) == {(0, 0): 45, (0, 1): 5, (1, 1): 45, (1, 0): 5}
    assert Counter((r.y, r.place) for r in ds.split("val")) == {(0, 0): 9, (0, 1): 1, (1, 1): 9, (1, 0): 1}


def test_images_larger_than_the_working_size_are_resized_on_load(built: Path) -> None:
    ds = read_dataset(built / "seen")
    records = ds.split("test")
    images, masks = load_images(records, 16), load_segmentations(ds, records, 16)
    assert images.shape == (16, 16, 16, 3) and masks.shape == (16, 16, 16)
    full = load_segmentations(ds, records, 32)
    assert abs((masks > 127).mean() - (full > 127).mean()) < 0.05


def test_rebuild_replaces_and_refuses_foreign_folders(fake_assets: Path, tmp_path: Path) -> None:
    kw: dict[str, Any] = {"fetch": False, "birds": BIRDS, "backgrounds": BACKGROUNDS, "test_setting": "seen", **SMALL}
    make_photo_benchmark(tmp_path, fake_assets, seed=0, **kw)
    make_photo_benchmark(tmp_path, fake_assets, seed=1, **kw)
    assert len(read_dataset(tmp_path / "seen").records) == 48
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "contact_sheet.png", "seen"]
    foreign = tmp_path / "mine"
    (foreign / "seen").mkdir(parents=True)
    (foreign / "seen/notes.txt").write_text("keep me")
    with pytest.raises(AutoBackSwapError, match="not a TuxBirds dataset"):
        make_photo_benchmark(foreign, fake_assets, **kw)
    assert (foreign / "seen/notes.txt").read_text() == "keep me"


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, message", [
    ({"correlation": 1.5}, "correlation"),
    ({"test_setting": "both-ish"}, "test setting"),
    ({"n_test": 2}, "n_test"),
    ({"image_size": 8}, "image_size"),
])
def test_bad_arguments(fake_assets: Path, tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, Any] = {**SMALL, "fetch": False, "birds": BIRDS, "backgrounds": BACKGROUNDS, **kwargs}
    with pytest.raises(ValueError, match=message):
        make_photo_benchmark(tmp_path, fake_assets, **args)


def test_lists_need_both_classes_and_places(fake_assets: Path, tmp_path: Path) -> None:
    with pytest.raises(AutoBackSwapError, match="both classes"):
        make_photo_benchmark(tmp_path, fake_assets, fetch=False, birds=BIRDS[:4], backgrounds=BACKGROUNDS, **SMALL)
    with pytest.raises(AutoBackSwapError, match="both places"):
        make_photo_benchmark(tmp_path, fake_assets, fetch=False, birds=BIRDS, backgrounds=BACKGROUNDS[:3], **SMALL)


def test_missing_assets_without_fetch_name_packages_and_files(tmp_path: Path) -> None:
    with pytest.raises(AutoBackSwapError) as err:
        make_photo_benchmark(tmp_path / "out", tmp_path / "empty", fetch=False, **SMALL)
    text = str(err.value)
    for needed in ("tuxpaint-stamps-default", "mate-backgrounds", "--assets", "--no-fetch", "duck.png"):
        assert needed in text
    assert not (tmp_path / "out").exists()


def test_missing_apt_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assets_mod.shutil, "which", lambda tool: None)
    monkeypatch.setattr(assets_mod.subprocess, "run", lambda *a, **k: pytest.fail("must not run anything"))
    with pytest.raises(AutoBackSwapError) as err:
        make_photo_benchmark(tmp_path / "out", tmp_path / "empty", **SMALL)
    text = str(err.value)
    assert "apt-get" in text and "dpkg -x" in text and "--assets" in text
    assert "tuxpaint-stamps-default" in text and "lomiri-wallpapers-16.04" in text


def test_cutout_without_alpha_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "flat.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    with pytest.raises(DataError, match="no alpha"):
        load_cutout(path, 32)


# ----------------------------------------------------------------------------- fetching (fake apt-get)
def fake_apt(bin_dir: Path, deb: Path | None, fail: str | None = None) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "apt-get"
    body = f"echo '{fail}' >&2; exit 100" if fail else f"cp '{deb}' \"$PWD/\""
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_fetch_unpacks_atomically_and_skips_done_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = tmp_path / "pkgtree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text("Package: fake-stamps\nVersion: 1:2.0-1\nArchitecture: all\n"
                                          "Maintainer: t <t@t>\nDescription: test\n")
    (tree / "usr/share").mkdir(parents=True)
    (tree / "usr/share/hello.txt").write_text("hi")
    deb = tmp_path / "fake-stamps_1%3a2.0-1_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(tree), str(deb)], check=True, capture_output=True)
    fake_apt(tmp_path / "bin", deb)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    cache = tmp_path / "cache"
    found = assets_mod.prepare_assets([("fake-stamps", "usr/share/hello.txt")], cache)
    assert found[("fake-stamps", "usr/share/hello.txt")].read_text() == "hi"
    assert assets_mod.package_version(cache, "fake-stamps") == "1:2.0-1"
    assert sorted(p.name for p in cache.iterdir()) == ["fake-stamps"]  # no temp folder, no .deb left
    fake_apt(tmp_path / "bin", None, fail="must not be called again")
    assert assets_mod.fetch_package("fake-stamps", cache) == cache / "fake-stamps"


def test_failed_download_suggests_apt_update_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_apt(tmp_path / "bin", None, fail="E: Unable to locate package fake-stamps")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(assets_mod.shutil, "which", lambda tool: f"/bin/{tool}")
    cache = tmp_path / "cache"
    with pytest.raises(AutoBackSwapError, match="apt-get update") as err:
        assets_mod.prepare_assets([("fake-stamps", "usr/share/hello.txt")], cache)
    assert "Unable to locate package" in str(err.value)
    assert list(cache.iterdir()) == []


# ----------------------------------------------------------------------------- functional pieces
def test_paste_hand_computed() -> None:
    background = np.full((8, 8, 3), 255, np.uint8)
    stamp = np.zeros((4, 4, 4), np.float32)
    stamp[:2] = (1.0, 0.0, 0.0, 1.0)  # top half: opaque red
    stamp[2:] = (0.5, 0.0, 0.0, 0.5)  # bottom half: red at alpha 0.5, premultiplied
    image, alpha = paste(background, stamp, angle=0.0, cx=4.0, cy=4.0)
    expected = np.full((8, 8, 3), 255, np.uint8)
    expected[2:4, 2:6] = (255, 0, 0)
    expected[4:6, 2:6] = (255, 128, 128)  # 0.5 red + 0.5 white
    expected_alpha = np.zeros((8, 8), np.uint8)
    expected_alpha[2:4, 2:6] = 255
    expected_alpha[4:6, 2:6] = 128
    np.testing.assert_array_equal(image, expected)
    np.testing.assert_array_equal(alpha, expected_alpha)
    image, alpha = paste(background, stamp, angle=180.0, cx=4.0, cy=4.0)  # upside down
    np.testing.assert_array_equal(alpha, expected_alpha[::-1])


def test_whole_bird_stays_in_the_frame() -> None:
    stamp = np.ones((30, 60, 4), np.float32)
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = PasteParams(0, 0, 0.5, 0.5, 1.0, False, float(rng.uniform(0.5, 1.2)), float(rng.uniform(-40, 40)),
                        False, float(rng.random()), float(rng.random()))
        w, h, _, _ = bird_geometry(stamp.shape, p, 32)
        _, alpha = render(p, [stamp], [np.zeros((40, 40, 3), np.uint8)], 32)
        assert alpha.sum() / 255 == pytest.approx(w * h, rel=0.06)  # nothing cut off at the border


def test_split_pool() -> None:
    rng = np.random.default_rng(0)
    train, test = split_pool(rng, [3, 5, 7, 9, 11, 13], 1 / 3)
    assert len(test) == 2 and sorted(train + test) == [3, 5, 7, 9, 11, 13]
    assert split_pool(rng, [4], 1 / 3) == ([4], [4])  # a single item is shared
    assert len(split_pool(rng, [1, 2], 0.9)[0]) == 1  # at least one stays for training


def test_jitter_defaults() -> None:
    j = PhotoJitter()
    assert j.flip and j.rotation == 15.0 and j.scale[0] < j.scale[1]


# ----------------------------------------------------------------------------- curated lists
def test_curated_lists() -> None:
    assert len(WATER_BIRDS) == 12 and len(LAND_BIRDS) == 21
    assert not set(WATER_BIRDS) & set(LAND_BIRDS)
    assert {"duck", "drake", "gander", "pelican", "pink_flamingo", "seagull"} <= set(WATER_BIRDS)
    places = Counter(b.place for b in CURATED_BACKGROUNDS)
    assert places[1] >= 6 and places[0] >= 6
    for b in CURATED_BACKGROUNDS:
        x0, y0, x1, y1 = b.box
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    names = [b.name for b in CURATED_BIRDS] + [b.name for b in CURATED_BACKGROUNDS]
    assert len(names) == len(set(names))


def test_cli_builds_from_the_curated_lists_in_an_unpacked_layout(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    root = write_standins(tmp_path / "assets", list(CURATED_BIRDS), list(CURATED_BACKGROUNDS))
    code = main(["make-photo-benchmark", str(tmp_path / "out"), "--assets", str(root), "--no-fetch",
                 "--n-train", "8", "--n-val", "4", "--n-test", "8", "--image-size", "16"])
    assert code == 0
    printed = capsys.readouterr().out
    assert str(tmp_path / "out" / "seen") in printed and str(tmp_path / "out" / "unseen") in printed
    meta = rows(tmp_path / "out" / "unseen")
    assert {r["bird"] for r in meta} <= set(WATER_BIRDS) | set(LAND_BIRDS)
    assert all(int(r["y"]) == (r["bird"] in WATER_BIRDS) for r in meta)
    read_dataset(tmp_path / "out" / "seen")


def test_cli_reports_missing_assets_on_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["make-photo-benchmark", str(tmp_path / "out"), "--assets", str(tmp_path / "nothing"),
                 "--no-fetch", "--n-train", "8", "--n-val", "4", "--n-test", "8", "--image-size", "16"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "make-photo-benchmark: error:" in err and "--assets" in err
