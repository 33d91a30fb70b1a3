"""The secondary network (detector) and the sources of its patch labels.

Tiny data throughout: 32 px images, an 8 x 8 grid, a detector of width 8 trained for 3 epochs.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from autobackswap.data.grid import grid_to_string, mask_to_grid
from autobackswap.data.layout import load_segmentations, read_dataset
from autobackswap.detect import Detector, DetectorConfig, balanced_accuracy, patch_labels
from autobackswap.detect.detector import augment, paste_foregrounds
from autobackswap.errors import AutoBackSwapError, DataError, NotFittedError
from autobackswap.io import write_png

pytestmark = pytest.mark.usefixtures("torch_single_thread")

G = 8
SIZE = 32
FAST = {"grid": G, "width": 8, "epochs": 3}


def disk_data(n: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, 32, 32, 3) images of a bright disk on a textured background, and their 8 x 8 patch labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    images = np.empty((n, SIZE, SIZE, 3), np.uint8)
    grids = np.empty((n, G, G), bool)
    for i in range(n):
        cy, cx, r = rng.uniform(10, 22), rng.uniform(10, 22), rng.uniform(5, 9)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        image = rng.integers(0, 90, (SIZE, SIZE, 3))
        image[disk] = (230, 200, 40)
        images[i] = image
        grids[i] = mask_to_grid(disk, G)
    return images, grids


@pytest.fixture(scope="module")
def disks() -> tuple[np.ndarray, np.ndarray]:
    return disk_data()


@pytest.fixture(scope="module")
def fitted(disks: tuple[np.ndarray, np.ndarray]) -> Detector:
    threads = torch.get_num_threads()  # module fixtures run before ``torch_single_thread``
    torch.set_num_threads(1)
    try:
        images, grids = disks
        return Detector(**FAST, seed=0).fit(images, grids)
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- estimator contract
def test_fit_predict_shapes_and_ranges(fitted: Detector, disks: tuple[np.ndarray, np.ndarray]) -> None:
    images, grids = disks
    proba = fitted.predict_proba(images[:5])
    assert proba.shape == (5, G, G) and proba.dtype == np.float32
    assert ((proba >= 0) & (proba <= 1)).all()
    pred = fitted.predict(images[:5])
    assert pred.shape == (5, G, G) and pred.dtype == bool
    assert np.array_equal(pred, proba >= 0.5)
    fg, pred_all = grids.astype(bool), fitted.predict(images)
    recalls = [(pred_all[fg] == True).mean(), (pred_all[~fg] == False).mean()]  # noqa: E712
    assert fitted.score(images, grids) == pytest.approx(float(np.mean(recalls)))  # balanced patch accuracy
    assert 1 <= len(fitted.history_) <= 3 and fitted.n_labels_ == len(images)
    # 24 labelled images: a hold-out of round(0.2 * 24) = 5 images drives early stopping
    assert fitted.holdout_balanced_accuracy_ is not None
    assert "holdout_balanced_accuracy" in fitted.history_[0]


def test_predict_on_another_image_size_keeps_the_grid(fitted: Detector) -> None:
    images, _ = disk_data(2, seed=5)
    big = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)  # 64 px
    assert fitted.predict_proba(big).shape == (2, G, G)


def test_unfitted_detector_raises_not_fitted(tmp_path: Path) -> None:
    det = Detector(**FAST)
    images, _ = disk_data(2)
    with pytest.raises(NotFittedError, match="not fitted"):
        det.predict_proba(images)
    with pytest.raises(NotFittedError):
        det.predict(images)
    with pytest.raises(NotFittedError):
        det.save(tmp_path / "det.pt")
    assert issubclass(NotFittedError, AutoBackSwapError)


def test_save_load_roundtrip_gives_identical_probabilities(fitted: Detector, disks: tuple[np.ndarray, np.ndarray],
                                                           tmp_path: Path) -> None:
    images, _ = disks
    path = tmp_path / "sub" / "det.pt"
    fitted.save(path)
    loaded = Detector.load(path)
    assert loaded.config == fitted.config
    assert np.array_equal(loaded.predict_proba(images), fitted.predict_proba(images))
    assert loaded.history_ == fitted.history_ and loaded.best_epoch_ == fitted.best_epoch_
    assert loaded.holdout_balanced_accuracy_ == fitted.holdout_balanced_accuracy_
    assert [p.name for p in path.parent.iterdir()] == ["det.pt"]  # atomic write leaves no temp file


def test_load_rejects_a_file_that_is_not_a_detector(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"kind": "classifier"}, path)
    with pytest.raises(AutoBackSwapError, match="not an autobackswap detector"):
        Detector.load(path)


def test_same_seed_gives_identical_predictions_and_other_seed_differs(
        fitted: Detector, disks: tuple[np.ndarray, np.ndarray]) -> None:
    images, grids = disks
    again = Detector(**FAST, seed=0).fit(images, grids)
    other = Detector(**FAST, seed=1).fit(images, grids)
    assert np.array_equal(again.predict_proba(images), fitted.predict_proba(images))
    assert again.history_ == fitted.history_
    assert not np.array_equal(other.predict_proba(images), fitted.predict_proba(images))


def test_fit_leaves_the_global_torch_rng_alone(disks: tuple[np.ndarray, np.ndarray]) -> None:
    images, grids = disks
    torch.manual_seed(1234)
    before = torch.get_rng_state().clone()
    np_before = np.random.get_state()[1].copy()
    Detector(grid=G, width=8, epochs=1, seed=7).fit(images, grids)
    assert torch.equal(torch.get_rng_state(), before)
    assert np.array_equal(np.random.get_state()[1], np_before)


def test_fit_learns_something(disks: tuple[np.ndarray, np.ndarray]) -> None:
    """A sanity check that the loss and labels are wired the right way round (fg = 1)."""
    images, grids = disks
    det = Detector(grid=G, width=8, epochs=15, holdout=0.0, seed=0).fit(images, grids)
    assert det.score(images, grids) > 0.8
    assert det.history_[-1]["loss"] < det.history_[0]["loss"]


# ----------------------------------------------------------------------------- bad labels and inputs
@pytest.mark.parametrize(
    ("grids", "match"),
    [
        (np.zeros((0, G, G), bool), "label set is empty"),
        (np.ones((4, G, G), bool), "every labelled patch is foreground.*cannot learn what background"),
        (np.zeros((4, G, G), bool), "every labelled patch is background.*cannot learn what the foreground"),
    ],
    ids=["empty", "all-foreground", "all-background"],
)
def test_degenerate_label_sets_raise_a_clear_error(grids: np.ndarray, match: str) -> None:
    images = np.zeros((len(grids), SIZE, SIZE, 3), np.uint8)
    with pytest.raises(AutoBackSwapError, match=match):
        Detector(**FAST).fit(images, grids)


def test_empty_list_of_labels_raises_the_empty_error() -> None:
    with pytest.raises(AutoBackSwapError, match="empty"):
        Detector(**FAST).fit(np.zeros((0, SIZE, SIZE, 3), np.uint8), [])


def test_images_smaller_than_the_grid_raise() -> None:
    images = np.zeros((4, 6, 6, 3), np.uint8)
    grids = np.zeros((4, G, G), bool)
    grids[:, 0, 0] = True
    with pytest.raises(AutoBackSwapError, match="6x6 px are smaller than the 8x8 grid"):
        Detector(**FAST).fit(images, grids)


def test_grid_mismatch_raises(disks: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = disks
    grids = np.zeros((len(images), 4, 4), bool)
    grids[:, 1, 1] = True
    with pytest.raises(AutoBackSwapError, match="4x4 grids but the detector grid is 8"):
        Detector(**FAST).fit(images, grids)


def test_image_and_label_counts_must_match(disks: tuple[np.ndarray, np.ndarray]) -> None:
    images, grids = disks
    with pytest.raises(AutoBackSwapError, match="24 images but 23 label grids"):
        Detector(**FAST).fit(images, grids[:-1])


def test_balanced_accuracy_hand_computed() -> None:
    target = np.array([True, True, True, False])
    p = np.array([0.9, 0.2, 0.6, 0.1])  # fg recall 2/3, bg recall 1
    assert balanced_accuracy(p, target) == pytest.approx((2 / 3 + 1) / 2)
    assert balanced_accuracy(np.array([0.7, 0.7]), np.array([True, True])) == 1.0  # only one class present


# ----------------------------------------------------------------------------- augmentation
def test_augment_moves_image_and_grid_together() -> None:
    """Each patch of the image holds its own cell id; after augmentation the id found at a cell must
    carry the label that cell now has."""
    n, patch = 64, SIZE // G
    ids = torch.arange(G * G, dtype=torch.float32).view(G, G)
    x = ids.repeat_interleave(patch, 0).repeat_interleave(patch, 1)  # (32, 32)
    x = x.expand(n, 3, SIZE, SIZE).clone()
    x[:, 1] = torch.arange(n, dtype=torch.float32)[:, None, None]  # which sample this is
    rng = np.random.default_rng(0)
    t = torch.from_numpy(rng.random((n, G, G)) < 0.5).float()
    cfg = DetectorConfig(grid=G, max_shift=2, paste=0.0)
    xa, ta = augment(x.clone(), t.clone(), cfg, torch.Generator().manual_seed(3))
    changed = 0
    for i in range(n):
        assert torch.all(xa[i, 1] == i)  # samples are not mixed up
        cells = xa[i, 0].view(G, patch, G, patch).permute(0, 2, 1, 3).reshape(G, G, -1)
        assert torch.all(cells == cells[..., :1])  # patches stay whole (shifts by whole patches only)
        cell_id = cells[..., 0].long()
        assert sorted(cell_id.flatten().tolist()) == list(range(G * G))  # a permutation of the cells
        src = t[i].flatten()[cell_id.flatten()].view(G, G)
        assert torch.equal(ta[i], src)
        changed += int(not torch.equal(cell_id, ids.long()))
    assert changed > n // 2  # flips and shifts did happen


def test_augment_flips_only_when_shifts_are_disabled() -> None:
    x = torch.arange(SIZE * SIZE, dtype=torch.float32).view(1, 1, SIZE, SIZE).expand(16, 3, SIZE, SIZE).clone()
    t = torch.zeros(16, G, G)
    t[:, 0, 0] = 1
    xa, ta = augment(x.clone(), t.clone(), DetectorConfig(grid=G, max_shift=0, paste=0.0),
                     torch.Generator().manual_seed(0))
    corner = {(0, 0): x[0, 0], (0, G - 1): x[0, 0].flip(-1), (G - 1, 0): x[0, 0].flip(-2),
              (G - 1, G - 1): x[0, 0].flip(-1).flip(-2)}
    for i in range(16):
        (r, c), = torch.nonzero(ta[i]).tolist()
        assert torch.equal(xa[i, 0], corner[(r, c)])


def test_paste_copies_another_images_foreground_patches_and_unions_the_grids() -> None:
    """Every image is filled with its sample id, so each pasted pixel says where it came from."""
    n, patch = 48, SIZE // G
    x = torch.arange(n, dtype=torch.float32)[:, None, None, None].expand(n, 3, SIZE, SIZE).clone()
    t = torch.from_numpy(np.random.default_rng(1).random((n, G, G)) < 0.3).float()
    xa, ta = paste_foregrounds(x.clone(), t.clone(), 1.0, torch.Generator().manual_seed(0))
    pasted = 0
    for i in range(n):
        sources = set(xa[i, 0].unique().long().tolist()) - {i}
        assert len(sources) <= 1  # one source image per target
        if not sources:
            assert torch.equal(ta[i], t[i])
            continue
        j = sources.pop()
        cover = t[j].repeat_interleave(patch, 0).repeat_interleave(patch, 1).bool()
        assert torch.all(xa[i, :, cover] == j) and torch.all(xa[i, :, ~cover] == i)
        assert torch.equal(ta[i], torch.maximum(t[i], t[j]))
        pasted += 1
    assert pasted > n // 2
    x0, t0 = paste_foregrounds(x.clone(), t.clone(), 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(x0, x) and torch.equal(t0, t)


# ----------------------------------------------------------------------------- patch labels
def write_dataset(root: Path, masks: list[np.ndarray], splits: list[int]) -> Path:
    """A tiny Waterbirds-layout dataset whose segmentations are exactly ``masks`` (uint8 HW)."""
    rows = []
    for i, (mask, split) in enumerate(zip(masks, splits, strict=True)):
        name = f"images/{i:03d}.png"
        image = np.dstack([mask] * 3)
        write_png(root / name, image)
        write_png((root / "segmentations" / name).with_suffix(".png"), mask)
        rows.append([f"id{i}", name, i % 2, split, i % 2])
    with open(root / "metadata.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["img_id", "img_filename", "y", "split", "place"])
        w.writerows(rows)
    return root


def test_patch_labels_from_segmentations_threshold_hand_computed(tmp_path: Path) -> None:
    # 32 px, grid 8: 4x4 = 16 px patches. Patch (0,0) has 4 px (25 %, not more), patch (0,1) has 5 px.
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[0:2, 0:2] = 255
    mask[0, 4:9] = 255  # 4 px in patch (0, 1) and 1 px in patch (0, 2)
    mask[1, 4] = 255
    mask[16:32, 16:32] = 255  # a full quadrant
    other = np.zeros_like(mask)
    root = write_dataset(tmp_path / "ds", [mask, other, mask, other], [0, 0, 1, 2])
    ds = read_dataset(root)
    train = ds.split("train")
    idx, grids = patch_labels(ds, train, SIZE, grid=G, budget=10, threshold=0.25, seed=0)
    assert idx.tolist() == [0, 1]  # budget above the train size: every train image, val/test never
    expected = np.zeros((G, G), bool)
    expected[0, 1] = True
    expected[4:, 4:] = True
    assert np.array_equal(grids[0], expected)
    assert not grids[1].any()
    _, loose = patch_labels(ds, train, SIZE, grid=G, budget=10, threshold=0.2, seed=0)
    expected[0, 0] = True  # 25 % > 20 %
    assert np.array_equal(loose[0], expected)


def test_patch_labels_budget_is_a_seeded_sample_of_train(tiny_synthetic: Path) -> None:
    ds = read_dataset(tiny_synthetic)
    train = ds.split("train")
    idx, grids = patch_labels(ds, train, SIZE, grid=G, budget=10, seed=0)
    assert len(idx) == 10 and len(set(idx.tolist())) == 10 and list(idx) == sorted(idx)
    assert idx.min() >= 0 and idx.max() < len(train)
    assert grids.shape == (10, G, G) and grids.dtype == bool
    seg = load_segmentations(ds, [train[i] for i in idx], SIZE)
    assert np.array_equal(grids, np.stack([mask_to_grid(m, G, 0.25) for m in seg]))
    again, _ = patch_labels(ds, train, SIZE, grid=G, budget=10, seed=0)
    other, _ = patch_labels(ds, train, SIZE, grid=G, budget=10, seed=1)
    assert np.array_equal(idx, again) and not np.array_equal(idx, other)


@pytest.mark.parametrize("budget", [0, -5])
def test_non_positive_budget_raises(tiny_synthetic: Path, budget: int) -> None:
    ds = read_dataset(tiny_synthetic)
    with pytest.raises(AutoBackSwapError, match="budget must be positive"):
        patch_labels(ds, ds.split("train"), SIZE, grid=G, budget=budget)


def write_masks_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["info", "mask"])
        w.writerows(rows)
    return path


def test_patch_labels_from_masks_csv_drop_val_and_test(tiny_synthetic: Path, tmp_path: Path) -> None:
    ds = read_dataset(tiny_synthetic)
    train = ds.split("train")
    val, test = ds.split("val"), ds.split("test")
    g1 = np.zeros((G, G), bool)
    g1[2:5, 3:6] = True
    g2 = np.eye(G, dtype=bool)
    rows = [
        (train[7].img_id, grid_to_string(g1)),  # by img_id
        (train[2].img_filename, grid_to_string(g2)),  # by img_filename
        (val[0].img_id, grid_to_string(g2)),
        (test[0].img_filename, grid_to_string(g1)),
    ]
    path = write_masks_csv(tmp_path / "masks.csv", rows)
    idx, grids = patch_labels(ds, train, SIZE, grid=G, source=path, budget=200)
    assert idx.tolist() == [2, 7]  # in train order; val/test rows dropped
    assert np.array_equal(grids[0], g2) and np.array_equal(grids[1], g1)
    idx1, _ = patch_labels(ds, train, SIZE, grid=G, source=path, budget=1)
    assert len(idx1) == 1 and idx1[0] in (2, 7)


def test_masks_csv_with_only_val_labels_raises(tiny_synthetic: Path, tmp_path: Path) -> None:
    ds = read_dataset(tiny_synthetic)
    path = write_masks_csv(tmp_path / "masks.csv", [(ds.split("val")[0].img_id, "1" + "0" * 63)])
    with pytest.raises(AutoBackSwapError, match="none of the labelled images is in the train split"):
        patch_labels(ds, ds.split("train"), SIZE, grid=G, source=path)


@pytest.mark.parametrize(
    ("bad_row", "match"),
    [
        (("no_such_image", "0" * 64), "unknown id 'no_such_image'"),
        (("TRAIN3", "0" * 63), "63 characters"),
        (("TRAIN3", "01" * 8), "16 characters; earlier rows have 64"),
        (("TRAIN3", "2" * 64), "only the characters 0 and 1"),
    ],
    ids=["unknown-id", "not-square", "other-grid", "bad-char"],
)
def test_bad_masks_csv_rows_name_file_and_row(tiny_synthetic: Path, tmp_path: Path, bad_row: tuple[str, str],
                                               match: str) -> None:
    ds = read_dataset(tiny_synthetic)
    train = ds.split("train")
    info = train[3].img_id if bad_row[0] == "TRAIN3" else bad_row[0]
    path = write_masks_csv(tmp_path / "masks.csv", [(train[0].img_id, "1" * 32 + "0" * 32), (info, bad_row[1])])
    with pytest.raises(DataError, match=match) as exc:
        patch_labels(ds, train, SIZE, grid=G, source=path)
    assert exc.value.path == str(path) and exc.value.row == 3
    assert str(exc.value).startswith(f"{path}, row 3: ")


def test_missing_masks_csv_raises_data_error(tiny_synthetic: Path, tmp_path: Path) -> None:
    ds = read_dataset(tiny_synthetic)
    with pytest.raises(DataError, match="not found"):
        patch_labels(ds, ds.split("train"), SIZE, grid=G, source=tmp_path / "nope.csv")
