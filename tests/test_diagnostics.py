"""Background diagnostics: hand-built images with known answers, determinism, the ``diagnose`` CLI
and its errors."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from autobackswap.cli import main
from autobackswap.evaluate.diagnostics import (
    SETS,
    aggregate_diagnostics,
    build_diagnostic_sets,
    diagnose,
    draw_donors,
    sample_indices,
)
from autobackswap.separate.inpaint import create_inpainter
from autobackswap.tensors import paste_rgba

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Module-scoped fixtures run before the function-scoped ``torch_single_thread``: on a shared CPU,
    two OpenMP threads make these tiny models many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)

# six 16x16 images: background colour = place (0 red-ish, 1 blue-ish), a 4x4 foreground square at
# 6:10 whose colour = class (0 white, 1 black). Train majority: class 0 on place 0, class 1 on place 1.
BG = {0: (200, 0, 0), 1: (0, 0, 200)}
FG = {0: (255, 255, 255), 1: (0, 0, 0)}
LABELS = np.array([0, 0, 1, 1, 0, 1])
PLACE = np.array([0, 1, 1, 0, 0, 1])
USUAL = {0: 0, 1: 1}


def make_images() -> tuple[np.ndarray, np.ndarray]:
    images = np.zeros((len(LABELS), 16, 16, 3), np.uint8)
    masks = np.zeros((len(LABELS), 16, 16), np.uint8)
    for i, (y, p) in enumerate(zip(LABELS, PLACE, strict=True)):
        images[i] = BG[int(p)]
        images[i, 6:10, 6:10] = FG[int(y)]
        masks[i, 6:10, 6:10] = 255
    return images, masks


def build(seed: int = 0, same: str = "majority") -> Any:
    images, masks = make_images()
    # the "mean" fill inpaints the hole with the mean colour of the known background: the place colour
    return build_diagnostic_sets(images, LABELS, PLACE, segmentations=masks, usual_place=USUAL, same=same, seed=seed,
                                 inpaint=create_inpainter("mean"))


def by_fg(images: np.ndarray) -> np.ndarray:
    """The class read from the centre pixel (the foreground)."""
    return (images[:, 8, 8].astype(int).sum(1) < 300).astype(int)


def by_bg(images: np.ndarray) -> np.ndarray:
    """The class the training background predicts, read from a corner pixel."""
    return (images[:, 0, 0, 2] > images[:, 0, 0, 0]).astype(int)


def test_sets_are_built_from_masks_as_expected() -> None:
    sets = build()
    images, _ = make_images()
    assert sets.index.tolist() == list(range(6)) and len(sets) == 6
    assert np.array_equal(sets.images["original"], images)
    only_fg = sets.images["only_fg"]
    assert (only_fg[:, 6:10, 6:10] == images[:, 6:10, 6:10]).all()  # the foreground is kept
    outside = np.ones((16, 16), bool)
    outside[6:10, 6:10] = False
    assert (only_fg[:, outside] == 128).all()  # on constant gray
    for i, p in enumerate(PLACE):  # only_bg: the foreground is gone, the place colour fills the hole
        assert (sets.images["only_bg"][i].reshape(-1, 3) == BG[int(p)]).all()
    for name in ("mixed_same", "mixed_rand"):
        donors = sets.donors[name]
        assert (donors != np.arange(6)).all()  # never the image's own background
        for i, j in enumerate(donors):
            mixed = sets.images[name][i]
            assert (mixed[6:10, 6:10] == FG[int(LABELS[i])]).all()
            assert (mixed[0, 0] == BG[int(PLACE[j])]).all()
    same = sets.donors["mixed_same"]
    assert (LABELS[same] == LABELS).all()  # same class ...
    usual = np.array([USUAL[int(y)] for y in LABELS])
    assert (PLACE[same] == usual).all()  # ... on the class's usual background


def test_diagnose_tells_a_background_model_from_a_foreground_model() -> None:
    sets = build()
    fg_model = diagnose(by_fg, sets)
    # only_bg: no foreground left, the centre pixel reads as class 1 for every image (3 of 6)
    assert fg_model == {"original": 1.0, "only_fg": 1.0, "only_bg": 0.5, "mixed_same": 1.0, "mixed_rand": 1.0,
                        "bg_gap": 0.0}
    bg_model = diagnose(by_bg, sets)
    assert bg_model["original"] == pytest.approx(4 / 6)  # the two images on the other background fail
    assert bg_model["only_bg"] == pytest.approx(4 / 6)
    assert bg_model["mixed_same"] == 1.0  # the usual background always gives the class away
    expected_rand = float(np.mean(PLACE[sets.donors["mixed_rand"]] == LABELS))
    assert bg_model["mixed_rand"] == pytest.approx(expected_rand)
    assert bg_model["bg_gap"] == pytest.approx(1.0 - expected_rand)


def test_same_class_mode_ignores_the_usual_background() -> None:
    sets = build(same="class")
    same = sets.donors["mixed_same"]
    assert (LABELS[same] == LABELS).all() and (same != np.arange(6)).all()
    assert sets.info["mixed_same"] == "class"


def test_seeded_and_deterministic() -> None:
    a, b = build(seed=3), build(seed=3)
    for name in SETS:
        assert np.array_equal(a.images[name], b.images[name])
    draws = {tuple(build(seed=s).donors["mixed_rand"].tolist()) for s in range(6)}
    assert len(draws) > 1  # the seed matters


def test_draw_donors_falls_back_to_the_class_when_the_usual_background_is_missing() -> None:
    labels, place = np.array([0, 0, 1, 1]), np.array([1, 1, 1, 1])
    same, rand, fallbacks = draw_donors(labels, place, {0: 0, 1: 1}, np.random.default_rng(0))
    assert fallbacks == 2  # class 0 has no image on place 0
    assert same.tolist()[:2] == [1, 0] and same.tolist()[2:] == [3, 2]
    assert (rand != np.arange(4)).all()
    with pytest.raises(ValueError, match="unknown mixed_same mode"):
        draw_donors(labels, place, None, np.random.default_rng(0), same="nope")


def test_images_without_a_usable_mask_are_left_out() -> None:
    images, masks = make_images()
    masks[1] = 0  # no foreground
    masks[2] = 255  # all foreground
    sets = build_diagnostic_sets(images, LABELS, PLACE, segmentations=masks, usual_place=USUAL)
    assert sets.index.tolist() == [0, 3, 4, 5]
    assert sets.info["excluded"] == {"no_fg": 1, "all_fg": 1} and sets.info["n"] == 4


def test_bad_input_raises() -> None:
    images, masks = make_images()
    with pytest.raises(ValueError, match="exactly one"):
        build_diagnostic_sets(images, LABELS, PLACE)
    with pytest.raises(ValueError, match="exactly one"):
        build_diagnostic_sets(images, LABELS, PLACE, segmentations=masks, p_fg=np.zeros((6, 2, 2)))
    with pytest.raises(ValueError, match="at least 2"):
        build_diagnostic_sets(images, LABELS, PLACE, segmentations=np.zeros_like(masks))
    with pytest.raises(ValueError, match="empty"):
        build_diagnostic_sets(images[:0], LABELS[:0], PLACE[:0], segmentations=masks[:0])


def test_predicted_masks_from_a_grid() -> None:
    images, _ = make_images()
    p_fg = np.zeros((6, 4, 4), np.float32)
    p_fg[:, 1:3, 1:3] = 1.0  # the centre 2x2 cells of a 4x4 grid = pixels 4..11
    from autobackswap.separate.run import SeparationConfig

    sets = build_diagnostic_sets(images, LABELS, PLACE, p_fg=p_fg, usual_place=USUAL,
                                 separation=SeparationConfig(refine="nearest", inpainter="mean"))
    assert len(sets) == 6
    assert diagnose(by_fg, sets)["mixed_rand"] == 1.0


def test_paste_and_aggregate_hand_computed() -> None:
    fg = np.zeros((1, 2, 4), np.uint8)
    fg[0, 0] = (255, 0, 0, 255)
    fg[0, 1] = (255, 0, 0, 0)
    bg = np.full((1, 2, 3), 10, np.uint8)
    assert paste_rgba(fg, bg).tolist() == [[[255, 0, 0], [10, 10, 10]]]
    runs = [{k: v for k, v in zip(("original", *SETS[1:], "bg_gap"), [1.0, 0.5, 0.5, 0.75, 0.25, 0.5], strict=True)},
            {k: v for k, v in zip(("original", *SETS[1:], "bg_gap"), [0.0, 0.5, 0.5, 0.25, 0.25, 0.0], strict=True)}]
    agg = aggregate_diagnostics(runs)
    assert agg["original"] == 0.5 and agg["std"]["original"] == 0.5
    assert agg["bg_gap"] == 0.25 and agg["std"]["bg_gap"] == 0.25 and agg["n_seeds"] == 2
    with pytest.raises(ValueError):
        aggregate_diagnostics([])


def test_sample_indices_interleave_classes() -> None:
    picks = sample_indices(np.array([0, 0, 0, 1, 1, 1, 1]), n=4)
    assert picks == [0, 3, 1, 5]


# ----------------------------------------------------------------------------- the diagnose command
@pytest.fixture(scope="module")
def erm_run(tiny_synthetic: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("diag") / "run"
    with contextlib.redirect_stdout(io.StringIO()), one_torch_thread():
        code = main(["experiment", str(tiny_synthetic), "--methods", "erm", "--seeds", "0,1", "--image-size", "32",
                     "--epochs", "1", "--width", "8", "--out", str(run)])
    assert code == 0
    return run


def test_experiment_records_diagnostics(erm_run: Path) -> None:
    results = json.loads((erm_run / "results.json").read_text())
    info = results["diagnostics"]
    assert info["masks"] == "ground_truth" and info["n"] == 16 and info["mixed_same"] == "majority"
    assert set(info["definitions"]) == {*SETS, "bg_gap"}
    assert info["samples"] == "diagnostics/samples.png" and (erm_run / info["samples"]).is_file()
    erm = results["methods"]["erm"]
    assert erm["diagnostics"]["n_seeds"] == 2 and set(erm["diagnostics"]["std"]) == {*SETS, "bg_gap"}
    per_seed = [r["diagnostics"] for r in erm["runs"]]
    assert erm["diagnostics"]["bg_gap"] == pytest.approx(np.mean([d["bg_gap"] for d in per_seed]))
    for d in per_seed:
        assert d["bg_gap"] == pytest.approx(d["mixed_same"] - d["mixed_rand"])
        assert all(k * 16 == round(k * 16) for k in d.values() if k >= 0)


def test_diagnose_command_reproduces_the_experiment(erm_run: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    run = Path(shutil.copytree(erm_run, tmp_path / "run"))
    before = json.loads((run / "results.json").read_text())
    (run / "report.html").unlink()
    code = main(["diagnose", str(run)])
    out = capsys.readouterr().out
    assert code == 0
    assert "bg_gap" in out and "erm" in out and "16 test images, masks: ground_truth" in out
    after = json.loads((run / "results.json").read_text())
    assert after["methods"]["erm"]["diagnostics"] == before["methods"]["erm"]["diagnostics"]
    saved = json.loads((run / "diagnostics.json").read_text())
    assert saved["methods"]["erm"] == before["methods"]["erm"]["diagnostics"]
    assert (run / "report.html").is_file()
    code = main(["diagnose", str(run), "--mixed-same", "class", "--no-report"])
    assert code == 0
    assert json.loads((run / "results.json").read_text())["diagnostics"]["mixed_same"] == "class"


def test_diagnose_with_predicted_masks(erm_run: Path, tiny_synthetic: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from autobackswap.data.grid import mask_to_grid
    from autobackswap.data.splits import load_experiment_data
    from autobackswap.detect.detector import Detector

    data = load_experiment_data(tiny_synthetic, 32, tmp_path)
    grids = np.stack([mask_to_grid(m, 8) for m in data.train.segmentations])
    det = Detector(grid=8, width=8, epochs=30, seed=0).fit(data.train.images, grids)
    det.save(tmp_path / "detector.pt")
    run = Path(shutil.copytree(erm_run, tmp_path / "run"))
    code = main(["diagnose", str(run), "--masks", "predicted", "--detector", str(tmp_path / "detector.pt"),
                 "--no-report"])
    assert code == 0, capsys.readouterr().err
    info = json.loads((run / "results.json").read_text())["diagnostics"]
    assert info["masks"] == "predicted" and info["detector"] == str(tmp_path / "detector.pt")
    assert info["mask_iou"] > 0.5  # 30 epochs on every training image's ground-truth grid


def test_diagnose_errors_are_one_line(erm_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["diagnose", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "results.json: not found" in err[0]
    run = Path(shutil.copytree(erm_run, tmp_path / "run"))
    shutil.rmtree(run / "models")
    code = main(["diagnose", str(run), "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no classifier checkpoints" in err[0]
    code = main(["diagnose", str(run), "--masks", "predicted"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "needs a detector" in err[0]
