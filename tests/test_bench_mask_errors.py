"""benchmarks/_studies/mask_errors.py (study mask-errors): each injected mask error does what its name says, by
hand-made masks; the mask figures are hand-computed; a bad errors item raises one clear error; a tiny quick run
of the study writes its table and figure and, run again, reads its finished conditions instead of retraining them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from autobackswap.data.synthetic import make_synthetic

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture
def bench(load_benchmark: Callable[[str], ModuleType]) -> ModuleType:
    return load_benchmark("_studies.mask_errors")


def squares(n: int = 6, size: int = 32) -> np.ndarray:
    """n masks at 32 px, each an 8x8 foreground square at its own place: 4x4 patches of the 16x16 grid
    (2x2 px each)."""
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        masks[i, 4 + 2 * i : 12 + 2 * i, 8:16] = 255
    return masks


def test_erode_and_dilate_change_the_area_by_the_ring(bench: ModuleType) -> None:
    m = squares(1)
    rng = np.random.default_rng(0)
    assert (bench.erode(m, 1, rng) > 0).sum() == 6 * 6  # an 8x8 square loses a 1 px ring
    grown = bench.dilate(m, 1, rng) > 0
    assert grown.sum() > 64 and grown[m > 0].all()
    assert np.array_equal(bench.erode(m, 0, rng), m)


def test_drop_fg_and_add_bg_flip_whole_patches(bench: ModuleType) -> None:
    m = squares(1)  # 32 px, grid 16: patches of 2x2 px; the 8x8 square covers 4x4 = 16 patches
    rng = np.random.default_rng(0)
    half = bench.drop_fg(m, 0.5, rng)
    assert (half > 0).sum() == 8 * 4  # 8 of the 16 patches dropped, 4 px each
    assert not ((half > 0) & (m == 0)).any()
    assert (bench.drop_fg(m, 1.0, rng) == 0).all()
    added = bench.add_bg(m, 1.0, rng)
    assert (added == 255).all()
    some = bench.add_bg(m, 0.1, rng)
    assert (some > 0).sum() == 64 + 4 * round(0.1 * (256 - 16))
    assert np.array_equal(bench.add_bg(m, 0.0, rng), m)


def test_whole_image_failures_touch_exactly_their_share(bench: ModuleType) -> None:
    m = squares(10)
    rng = np.random.default_rng(1)
    changed = lambda out: int(sum(not np.array_equal(a, b) for a, b in zip(out, m, strict=True)))  # noqa: E731
    empty, full, other = bench.empty(m, 0.3, rng), bench.full(m, 0.3, rng), bench.other(m, 0.3, rng)
    assert changed(empty) == changed(full) == changed(other) == 3
    assert all((e == 0).all() for e, o in zip(empty, m, strict=True) if not np.array_equal(e, o))
    assert all((f == 255).all() for f, o in zip(full, m, strict=True) if not np.array_equal(f, o))
    moved = [o for o, a in zip(other, m, strict=True) if not np.array_equal(o, a)]
    assert all(any(np.array_equal(x, a) for a in m) for x in moved)  # another image's mask, not a new one


def test_mask_quality_by_hand(bench: ModuleType) -> None:
    truth = np.zeros((2, 4, 4), np.uint8)
    truth[0, :2] = 255  # 8 px
    pred = truth.copy()
    pred[0, 2] = 255  # 4 extra background px: IoU 8/12, and the second image is empty in both (IoU 1)
    iou, rim = bench.mask_quality(pred, truth)
    assert iou == pytest.approx((8 / 12 + 1.0) / 2)
    assert rim == pytest.approx(4 / 12)


@pytest.mark.parametrize("item, message", [("blur:1", "unknown kind 'blur'"), ("erode:x", "must be numbers"),
                                           ("empty:1.5", "fractions in [0, 1]"), ("full", "give strengths")])
def test_a_bad_errors_item_is_one_line(bench: ModuleType, item: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        bench.parse_errors([item])
    assert "\n" not in str(info.value) and repr(item) in str(info.value)


def test_tiny_quick_run_writes_the_table_and_figure_and_reuses_finished_conditions(
        bench: ModuleType, load_benchmark: Callable[[str], ModuleType], tmp_path: Path) -> None:
    studies = load_benchmark("_studies")
    data = tmp_path / "data"
    make_synthetic(data, 80, 40, 40, 1.0, 32, 0)
    study = bench.MaskErrors()
    study.data, study.image_size, study.options = data, 32, "detector_epochs=2"
    study.quick_errors = ("empty:0.5", "label_noise:0.1")
    study.figure = str(tmp_path / "img" / "mask_errors.png")
    out = tmp_path / "out"
    ctx = studies.Context(seeds=[0], quick=True, out=out)
    measured = study.measure(ctx)
    table = measured.tables["main"]
    assert table.header == bench.HEADER
    assert [r[:2] for r in table.rows] == [["none: ground truth (the oracle)", ""],
                                          ["none: the learned detector (autobackswap)", ""],
                                          ["empty", "0.5"], ["label_noise", "0.1"]]
    assert table.rows[0][2:4] == ["1.000", "0.000"]
    assert table.rows[2][2:4] == ["0.500", "0.000"]  # half the masks empty, the rest exact
    assert all(r[-1] == "1" for r in table.rows)  # one seed each
    assert measured.images == [study.figure] and Path(study.figure).stat().st_size > 10_000
    flipped = (out / "label_noise_0.1" / "masks.csv").read_text().splitlines()
    assert flipped[0] == "info,mask" and len(flipped) == 1 + 80  # a label budget of 200 takes all 80 images
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/results.json")}
    assert len(stamps) == 3  # clean, empty_0.5, label_noise_0.1
    again = study.measure(ctx)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/results.json")} == stamps
    assert again.tables["main"].rows == table.rows
