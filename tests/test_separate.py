"""Separation: masks and refiners on hand-computed cases, and the cached, resumable separation job."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import autobackswap.separate.engines as engines_mod
import autobackswap.separate.run as run_mod
from autobackswap.data.grid import patch_fractions
from autobackswap.separate import (
    REFINERS,
    SeparationConfig,
    create_refiner,
    decontaminate,
    load_banks,
    pixel_iou,
    separate,
)
from autobackswap.separate.masks import HOLES, bg_share, hole_mask, soft_threshold, upsample_bilinear

# ----------------------------------------------------------------------------- masks, hand-computed


def test_hole_mask_is_loose_foreground_nearest_upsampled() -> None:
    p_fg = np.array([[0.05, 0.2], [0.6, 0.95]], np.float32)  # p_bg = .95, .8, .4, .05
    hole = hole_mask(p_fg, t_loose=0.9, size=(4, 4), dilate=0)
    expected = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]], bool)
    assert hole.dtype == bool and np.array_equal(hole, expected)
    tighter = hole_mask(p_fg, t_loose=0.5, size=(4, 4), dilate=0)  # p_bg < .5: the bottom row only
    assert np.array_equal(tighter, np.array([[0, 0, 0, 0]] * 2 + [[1, 1, 1, 1]] * 2, bool))


def test_hole_mask_dilates_by_whole_pixels() -> None:
    p_fg = np.zeros((4, 4), np.float32)
    p_fg[1, 1] = 1.0
    hole = hole_mask(p_fg, t_loose=0.9, size=(8, 8), dilate=1)  # the cell is pixels 2..3; dilated 1..4
    expected = np.zeros((8, 8), bool)
    expected[1:5, 1:5] = True
    assert np.array_equal(hole, expected)
    assert not hole_mask(np.zeros((4, 4)), 0.9, (8, 8), dilate=3).any()


def test_soft_threshold_hand_computed() -> None:
    prob = np.array([0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7])
    out = soft_threshold(prob, 0.5, 0.2)  # ramp from 0.4 (0) to 0.6 (1)
    assert out.dtype == np.float32
    assert np.allclose(out, [0, 0, 0.25, 0.5, 0.75, 1, 1], atol=1e-6)
    hard = soft_threshold(prob, 0.5, 0.0)  # strictly above
    assert np.array_equal(hard, [0, 0, 0, 0, 1, 1, 1])


def test_bilinear_upsampling_aligns_cell_centres() -> None:
    grid = np.array([[0.0, 1.0], [0.0, 1.0]])
    up = upsample_bilinear(grid, (4, 4))
    # output x = 0..3 sits at source x = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1)
    assert np.allclose(up, [[0.0, 0.25, 0.75, 1.0]] * 4)
    assert up.dtype == np.float32


def test_nearest_refiner_is_the_blocky_grid() -> None:
    image = np.zeros((4, 6, 3), np.uint8)
    grid = np.array([[0.2, 0.7], [0.9, 0.4]])
    alpha = create_refiner("nearest")(image, grid, 0.5)
    expected = np.array([[0, 0, 0, 1, 1, 1]] * 2 + [[1, 1, 1, 0, 0, 0]] * 2, np.float32)
    assert np.array_equal(alpha, expected)


def test_decontaminate_recovers_the_foreground_colour() -> None:
    rng = np.random.default_rng(0)
    h, w = 8, 8
    fg = rng.integers(0, 256, (h, w, 3)).astype(np.float64)
    bg = rng.integers(0, 256, (h, w, 3)).astype(np.float64)
    alpha = rng.uniform(0.3, 1.0, (h, w))
    alpha[0, 0], alpha[0, 1], alpha[0, 2] = 1.0, 0.02, 0.0
    image = np.round(alpha[..., None] * fg + (1 - alpha[..., None]) * bg).astype(np.uint8)
    out = decontaminate(image, alpha.astype(np.float32), bg.astype(np.uint8))
    assert out.dtype == np.uint8 and out.shape == image.shape
    rim = (alpha > 0.05) & (alpha < 0.999)
    # I is rounded to integers, so F is recovered up to 0.5 / alpha (<= 1.7 at alpha >= 0.3), plus rounding
    err = np.abs(out.astype(float) - np.clip(fg, 0, 255))[rim].max(-1)
    assert (err <= 0.5 / alpha[rim] + 0.5 + 1e-6).all()
    # opaque pixels and (nearly) transparent ones keep the image's colour
    for y, x in [(0, 0), (0, 1), (0, 2)]:
        assert np.array_equal(out[y, x], image[y, x])
    # and it really removes the old background: plain I is much further from F on the rim
    assert np.abs(image.astype(float) - fg)[rim].mean() > 5 * np.abs(out.astype(float) - fg)[rim].mean()


def test_pixel_iou_hand_computed() -> None:
    a = np.array([[1, 1, 0, 0]], bool)
    b = np.array([[0, 1, 1, 0]], bool)
    assert pixel_iou(a, b) == pytest.approx(1 / 3)
    assert pixel_iou(a, a) == 1.0
    assert pixel_iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0  # both empty: perfect
    assert pixel_iou(np.zeros((1, 2), bool), np.ones((1, 2), bool)) == 0.0
    # uint8 masks threshold at > 127, float masks at > 0.5
    assert pixel_iou(np.array([[127, 128]], np.uint8), np.array([[0, 255]], np.uint8)) == 1.0
    assert pixel_iou(np.array([[0.5, 0.6]], np.float32), np.array([[False, True]])) == 1.0


# ----------------------------------------------------------------------------- refiners


def disk_case(size: int = 64, grid: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, ground-truth disk mask, p_fg grid = each patch's foreground fraction)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    disk = (yy - 0.47 * size) ** 2 + (xx - 0.53 * size) ** 2 < (0.3 * size) ** 2
    image = np.empty((size, size, 3), np.int64)
    image[:] = (40, 120, 60)
    image[disk] = (220, 60, 50)
    image = np.clip(image + rng.integers(-10, 11, image.shape), 0, 255).astype(np.uint8)
    return image, disk, patch_fractions(disk.astype(np.float32), grid)


def test_unknown_refiner_lists_the_valid_names() -> None:
    with pytest.raises(KeyError) as exc:
        create_refiner("crf")
    assert "unknown mask refiner 'crf'" in exc.value.args[0]
    for name in ("nearest", "bilinear", "guided", "grabcut"):
        assert name in exc.value.args[0]


@pytest.mark.parametrize("name", REFINERS.names())
def test_refiner_smoke(name: str) -> None:
    image, disk, p_fg = disk_case(32, 8)
    refine = create_refiner(name)
    alpha = refine(image, p_fg, 0.5)
    assert alpha.shape == (32, 32) and alpha.dtype == np.float32
    assert ((alpha >= 0) & (alpha <= 1)).all()
    assert pixel_iou(alpha, disk) > 0.7
    zero = refine(image, np.zeros((8, 8), np.float32), 0.5)
    assert zero.shape == (32, 32) and (zero <= 0.5).all()
    one = refine(image, np.ones((8, 8), np.float32), 0.5)
    assert (one > 0.5).all()
    non_square = refine(image[:, :24], p_fg, 0.5)
    assert non_square.shape == (32, 24)


def test_guided_refinement_beats_nearest_on_a_coarse_grid() -> None:
    image, disk, p_fg = disk_case(64, 8)
    nearest = pixel_iou(create_refiner("nearest")(image, p_fg, 0.5), disk)
    guided = pixel_iou(create_refiner("guided")(image, p_fg, 0.5), disk)
    assert nearest < 0.9
    assert guided > nearest + 0.05 and guided > 0.95


def test_guided_wide_drops_the_rim_of_wrongly_called_boundary_patches() -> None:
    """A detector that calls half the background patches around the object foreground (p 0.8), on a noisy
    image: the narrow guided filter keeps much of those patches in the cut-out; the two-patch window with a
    small regulariser follows the object's colour edge and leaves them out."""
    for seed in range(3):
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:64, 0:64]
        disk = (yy - 30) ** 2 + (xx - 34) ** 2 < 16**2
        image = np.empty((64, 64, 3), np.int64)
        image[:] = (60, 110, 160)
        image[disk] = (200, 90, 40)
        image = np.clip(image + rng.integers(-40, 41, image.shape), 0, 255).astype(np.uint8)
        fg = patch_fractions(disk.astype(np.float32), 16) > 0.25
        ring = (cv2.dilate(fg.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0) & ~fg
        p_fg = np.where(ring & (rng.random(fg.shape) < 0.5), 0.8, np.where(fg, 0.95, 0.02)).astype(np.float32)
        narrow, wide = (create_refiner(name)(image, p_fg, 0.5) for name in ("guided", "guided_wide"))
        assert bg_share(narrow, disk) > 0.1 and bg_share(wide, disk) < 0.05
        assert pixel_iou(wide, disk) > max(0.97, pixel_iou(narrow, disk) + 0.05)


def test_refined_hole_follows_the_object_not_the_patch_grid() -> None:
    image, disk, p_fg = disk_case(64, 8)
    refine = create_refiner("guided")
    grid = HOLES.get("grid")(image, p_fg, 0.7, refine, 0)
    refined = HOLES.get("refined")(image, p_fg, 0.7, refine, 0)
    assert grid.dtype == bool and refined.dtype == bool
    assert refined[disk].mean() > 0.99  # covers the object ...
    assert pixel_iou(refined, disk) > max(0.95, pixel_iou(grid, disk) + 0.05)  # ... closer than the blocks do
    grown = HOLES.get("refined")(image, p_fg, 0.7, refine, 2)
    assert np.array_equal(grown & refined, refined) and grown.sum() > refined.sum()  # dilation only adds
    with pytest.raises(KeyError, match="grid"):
        HOLES.get("blocky")


def test_hole_options_reach_the_separation_and_are_checked() -> None:
    from autobackswap.pipeline import PipelineConfig

    cfg = PipelineConfig.from_options({"hole": "refined", "hole_dilate": "2"}).separation_config(seed=3)
    assert (cfg.hole, cfg.hole_dilate, cfg.seed) == ("refined", 2, 3)
    assert PipelineConfig().separation_config(0).digest() != cfg.digest()  # a new cache, not a reused one
    with pytest.raises(KeyError, match="refined"):
        PipelineConfig.from_options({"hole": "blocky"})
    with pytest.raises(ValueError, match="hole_dilate"):
        PipelineConfig.from_options({"hole_dilate": -1})


# ----------------------------------------------------------------------------- the separation job

N_IMG = 6
NO_FG, ALL_FG = 4, 5


@pytest.fixture(scope="module")
def sep_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Six 32 px disk images with their p_fg grids and segmentations; image 4 has p_fg = 0
    everywhere (no foreground found) and image 5 has p_fg = 1 everywhere (all foreground)."""
    images, masks, grids = [], [], []
    for i in range(N_IMG):
        image, disk, p_fg = disk_case(32, 8, seed=i)
        images.append(image)
        masks.append(disk.astype(np.uint8) * 255)
        grids.append(p_fg)
    p = np.stack(grids).astype(np.float32)
    p[NO_FG] = 0.0
    p[ALL_FG] = 1.0
    return np.stack(images), p, np.stack(masks)


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(".tmp")}


def test_separation_writes_a_pair_per_image_and_a_summary(sep_inputs, tmp_path: Path) -> None:
    images, p_fg, masks = sep_inputs
    result = separate(images, tmp_path / "sep", SeparationConfig(), p_fg=p_fg)
    out = tmp_path / "sep"
    assert sorted(p.name for p in (out / "fg").iterdir()) == [f"{i:06d}.png" for i in range(N_IMG)]
    assert sorted(p.name for p in (out / "bg").iterdir()) == [f"{i:06d}.png" for i in range(N_IMG)]
    summary = json.loads((out / "summary.json").read_text())
    assert summary == {"n": N_IMG, "counts": {"ok": 4, "no_fg": 1, "all_fg": 1}}
    assert result.counts == summary["counts"] and result.n == N_IMG
    config = json.loads((out / "config.json").read_text())
    assert config["source"] == "detector" and config["n"] == N_IMG and config["inpainter"] == "mean"
    fg, bg = load_banks(out, N_IMG)
    assert fg.shape == (N_IMG, 32, 32, 4) and bg.shape == (N_IMG, 32, 32, 3)
    for i in range(4):
        assert pixel_iou(fg[i, ..., 3], masks[i]) > 0.9
        # the inpainted background keeps pixels far from the object and loses the red object
        far = ~hole_mask(p_fg[i], 0.9, (32, 32), dilate=3)
        assert np.array_equal(bg[i][far], images[i][far])
        inside = masks[i] > 0
        assert np.abs(bg[i][inside].astype(int) - (220, 60, 50)).sum(-1).mean() > 100
        # opaque cut-out pixels carry the image's own colour
        opaque = fg[i, ..., 3] == 255
        assert np.array_equal(fg[i, ..., :3][opaque], images[i][opaque])


def test_no_fg_and_all_fg_images_keep_their_pixels(sep_inputs, tmp_path: Path) -> None:
    images, p_fg, _ = sep_inputs
    separate(images, tmp_path / "sep", SeparationConfig(), p_fg=p_fg)
    fg, bg = load_banks(tmp_path / "sep", N_IMG)
    for i, a in [(NO_FG, 0), (ALL_FG, 255)]:
        assert np.all(fg[i, ..., 3] == a)
        assert np.array_equal(fg[i, ..., :3], images[i])
        assert np.array_equal(bg[i], images[i])


def test_hole_covering_everything_counts_as_all_fg(sep_inputs, tmp_path: Path) -> None:
    images, p_fg, _ = sep_inputs
    p = p_fg[:1].copy()
    p[0] = np.maximum(p[0], 0.2)  # p_bg = 0.8 < t_loose everywhere: the hole is the whole image
    result = separate(images[:1], tmp_path / "sep", SeparationConfig(), p_fg=p)
    assert result.counts == {"ok": 0, "no_fg": 0, "all_fg": 1}
    fg, bg = load_banks(tmp_path / "sep", 1)
    assert np.all(fg[0, ..., 3] == 255) and np.array_equal(bg[0], images[0])


def test_loose_but_no_tight_foreground_counts_as_no_fg(sep_inputs, tmp_path: Path) -> None:
    """p_bg = 0.7 everywhere: inside the loose hole (< 0.9) but nowhere tight foreground (< 0.5)."""
    images, _, _ = sep_inputs
    p = np.full((1, 8, 8), 0.3, np.float32)
    result = separate(images[:1], tmp_path / "sep", SeparationConfig(refine="nearest"), p_fg=p)
    assert result.counts == {"ok": 0, "no_fg": 1, "all_fg": 0}
    fg, bg = load_banks(tmp_path / "sep", 1)
    assert np.all(fg[0, ..., 3] == 0) and np.array_equal(bg[0], images[0])


def test_oracle_separation_uses_the_segmentations(sep_inputs, tmp_path: Path) -> None:
    images, _, masks = sep_inputs
    segs = masks.copy()
    segs[NO_FG] = 0
    segs[ALL_FG] = 255
    result = separate(images, tmp_path / "oracle", SeparationConfig(), segmentations=segs)
    assert result.counts == {"ok": 4, "no_fg": 1, "all_fg": 1}
    fg, bg = load_banks(tmp_path / "oracle", N_IMG)
    assert np.array_equal(fg[..., 3], segs)  # the cut-out alpha is the ground truth, exactly
    assert json.loads((tmp_path / "oracle" / "config.json").read_text())["source"] == "ground_truth"
    for i in range(4):
        # pixels more than 2 px (the hole dilation) from the object keep their colour
        far = ~hole_mask(masks[i].astype(np.float32) / 255.0, 0.5, (32, 32), dilate=3)
        assert np.array_equal(bg[i][far], images[i][far])


def test_separate_needs_exactly_one_mask_source(sep_inputs, tmp_path: Path) -> None:
    images, p_fg, masks = sep_inputs
    with pytest.raises(ValueError, match="exactly one"):
        separate(images, tmp_path / "a", SeparationConfig())
    with pytest.raises(ValueError, match="exactly one"):
        separate(images, tmp_path / "b", SeparationConfig(), p_fg=p_fg, segmentations=masks)


@pytest.mark.parametrize("inpainter", ["telea", "noise"])
def test_killed_run_resumes_to_the_same_bytes(sep_inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              inpainter: str) -> None:
    """Kill a run while it writes image 3 (its background exists, its cut-out not), leave a stray
    temp file of image 4 behind, rerun: only the missing images are redone and every output equals an
    uninterrupted run's."""
    images, p_fg, _ = sep_inputs
    cfg = SeparationConfig(inpainter=inpainter, seed=3)
    reference = tmp_path / "reference"
    separate(images, reference, cfg, p_fg=p_fg)

    resumed = tmp_path / "resumed"
    real_write_png = engines_mod.write_png
    written: list[str] = []

    def dying_write_png(path: str | Path, array: np.ndarray, durable: bool = True) -> None:
        if len(written) == 7:  # bg0 fg0 bg1 fg1 bg2 fg2 bg3 | fg3
            raise KeyboardInterrupt("killed")
        written.append(Path(path).name)
        real_write_png(path, array, durable)

    monkeypatch.setattr(engines_mod, "write_png", dying_write_png)
    with pytest.raises(KeyboardInterrupt):
        separate(images, resumed, cfg, p_fg=p_fg)
    assert not (resumed / "summary.json").exists()
    assert (resumed / "bg" / "000003.png").is_file() and not (resumed / "fg" / "000003.png").exists()
    assert not run_mod.is_done(resumed, 3)
    stray = resumed / "fg" / ".000004.png.k1ll3d.tmp"
    stray.write_bytes(b"\x89PNG half a file")
    assert not run_mod.is_done(resumed, 4)

    written.clear()
    monkeypatch.setattr(engines_mod, "write_png", lambda path, array, durable=True: (
        written.append(Path(path).name), real_write_png(path, array, durable)))
    result = separate(images, resumed, cfg, p_fg=p_fg)
    assert sorted(written) == sorted(f"{i:06d}.png" for i in (3, 4, 5) for _ in ("fg", "bg"))
    assert result.counts == {"ok": 4, "no_fg": 1, "all_fg": 1}
    ref_files, res_files = tree_bytes(reference), tree_bytes(resumed)
    assert ref_files.keys() == res_files.keys()
    for name in ref_files:
        assert ref_files[name] == res_files[name], name


def test_each_image_draws_from_its_own_stream(sep_inputs, tmp_path: Path) -> None:
    """Image 3's noise fill depends on (seed, 3) only, not on how many draws images 0-2 made before it."""
    images, p_fg, _ = sep_inputs
    cfg = SeparationConfig(inpainter="noise", seed=5)
    separate(images, tmp_path / "all", cfg, p_fg=p_fg)
    quiet = p_fg.copy()
    quiet[:3] = 0.0  # images 0-2 now have no foreground: nothing is inpainted, nothing drawn
    result = separate(images, tmp_path / "quiet", cfg, p_fg=quiet)
    assert result.counts["no_fg"] == 4
    for kind in ("fg", "bg"):
        name = f"{kind}/000003.png"
        assert (tmp_path / "quiet" / name).read_bytes() == (tmp_path / "all" / name).read_bytes()
    other = tmp_path / "other_seed"
    separate(images[:1], other, SeparationConfig(inpainter="noise", seed=6), p_fg=p_fg[:1])
    assert (other / "bg/000000.png").read_bytes() != (tmp_path / "all/bg/000000.png").read_bytes()
