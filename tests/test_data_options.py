"""The reference's Waterbirds data setting: no minority group in train and val (``drop_minority``), and
val / test centre-cropped (``eval_crop``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autobackswap.data.groups import group_counts, majority_groups
from autobackswap.data.layout import load_images, load_segmentations
from autobackswap.data.splits import centre_crop, crop_load_size, load_experiment_data
from autobackswap.data.synthetic import make_synthetic
from autobackswap.errors import AutoBackSwapError


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train and val correlation 0.75: every group present, minority groups included."""
    return make_synthetic(tmp_path_factory.mktemp("mixed") / "data", 48, 24, 16, 0.75, 32, 1)


def test_drop_minority_keeps_the_majority_groups_of_train_and_val(mixed: Path, tmp_path: Path) -> None:
    full = load_experiment_data(mixed, 16, tmp_path)
    counts = group_counts(full.train.y, full.train.place)
    majority = majority_groups(counts)
    assert len(counts) == 4 and len(majority) == 2  # minority groups exist before
    kept = load_experiment_data(mixed, 16, tmp_path, drop_minority=True)
    assert group_counts(kept.train.y, kept.train.place) == {g: n for g, n in counts.items() if g in majority}
    val_counts = group_counts(full.val.y, full.val.place)
    assert group_counts(kept.val.y, kept.val.place) == {g: n for g, n in val_counts.items() if g in majority}
    assert len(kept.test) == len(full.test)  # the test split keeps every group
    rows = [r.img_filename for r in full.train.records]
    first = rows.index(kept.train.records[0].img_filename)
    assert np.array_equal(kept.train.images[0], full.train.images[first])


def test_eval_crop_centre_crops_val_and_test_only(mixed: Path, tmp_path: Path) -> None:
    data = load_experiment_data(mixed, 16, tmp_path, eval_crop=0.5)
    test = data.test.records
    big = load_images(test, 32)
    assert np.array_equal(data.test.images, big[:, 8:24, 8:24])  # resized to 16 / 0.5 = 32, centre 16 kept
    assert np.array_equal(data.test.segmentations, load_segmentations(data.dataset, test, 32)[:, 8:24, 8:24])
    assert np.array_equal(data.train.images, load_images(data.train.records, 16))  # train is not cropped
    assert data.val.images.shape[1:3] == (16, 16)


def test_crop_sizes_and_errors(mixed: Path, tmp_path: Path) -> None:
    assert crop_load_size(224, 0.875) == 256  # the reference: Resize(256), CenterCrop(224)
    assert crop_load_size(64, 1.0) == 64
    x = np.arange(2 * 5 * 5).reshape(2, 5, 5)
    assert centre_crop(x, 5) is x and centre_crop(x, 3).tolist() == x[:, 1:4, 1:4].tolist()
    with pytest.raises(ValueError, match=r"eval_crop=0.0: the kept fraction of the side must be in \(0, 1\]"):
        crop_load_size(64, 0.0)
    with pytest.raises(AutoBackSwapError, match="eval_crop needs the images in memory"):
        load_experiment_data(mixed, 16, tmp_path, stream=True, eval_crop=0.5)
