"""The AutoBackSwap pipeline end to end through the CLI, on the tiny synthetic set (40 train images,
32 px, grid 8, 20 labels), and one clear error line for bad input."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from autobackswap.cli import main
from autobackswap.data.grid import mask_to_grid
from autobackswap.data.layout import read_dataset
from autobackswap.data.splits import load_experiment_data
from autobackswap.data.synthetic import make_synthetic
from autobackswap.detect import Detector
from autobackswap.detect.detector import balanced_accuracy
from autobackswap.pipeline import PipelineConfig, fit_detector
from autobackswap.separate.masks import pixel_iou, refined_iou

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SMALL = ["--image-size", "32", "--grid", "8", "--label-budget", "20"]
N_TRAIN = 40


def run_quiet(*argv: str | Path) -> tuple[int, str, str]:
    """Run the CLI in-process on one torch thread (module fixtures run before ``torch_single_thread``);
    return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])
    finally:
        torch.set_num_threads(threads)
    return code, out.getvalue(), err.getvalue()


def json_before(text: str, marker: str) -> dict[str, Any]:
    """The JSON object a command prints before its final ``marker: PATH`` line."""
    return json.loads(text[: text.rindex(f"\n{marker}: ")])


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ": error: " in line]


@pytest.fixture(scope="module")
def detector_run(tiny_synthetic: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``fit-detector`` then ``separate --detector`` (twice: the second run finds everything cached)."""
    run = tmp_path_factory.mktemp("pipeline") / "run"
    fit = run_quiet("fit-detector", tiny_synthetic, "--out", run, *SMALL, "--detector-epochs", "3")
    # three epochs make a poor detector: the health check would stop the run, so it is allowed here
    sep = run_quiet("separate", tiny_synthetic, "--out", run, "--detector", run / "detector.pt", *SMALL,
                    "--allow-bad-separation")
    before = banks_mtimes(run)
    time.sleep(0.05)  # a rewrite would get a later modification time
    again = run_quiet("separate", tiny_synthetic, "--out", run, "--detector", run / "detector.pt", *SMALL,
                      "--allow-bad-separation")
    return {"run": run, "fit": fit, "sep": sep, "again": again, "mtimes": (before, banks_mtimes(run))}


def banks_mtimes(run: Path) -> dict[str, int]:
    """Modification time (ns) of every cut-out and background PNG of the run's separations."""
    return {str(p.relative_to(run)): p.stat().st_mtime_ns for p in sorted((run / "separation").glob("*/[fb]g/*.png"))}


def test_fit_detector_reports_and_saves(detector_run: dict[str, Any], tiny_synthetic: Path) -> None:
    code, out, err = detector_run["fit"]
    assert code == 0, err
    run = detector_run["run"]
    assert (run / "detector.pt").is_file()
    assert out.rstrip().endswith(f"detector: {run / 'detector.pt'}")
    report = json_before(out, "detector")
    assert report["n_labels"] == 20
    det = Detector.load(run / "detector.pt")
    assert report["patch_balanced_accuracy"] == det.holdout_balanced_accuracy_  # hold-out: round(0.2 * 20) = 4 images
    data = load_experiment_data(tiny_synthetic, 32, run)
    seg = data.train.segmentations
    p_fg = det.predict_proba(data.train.images)
    gt = np.stack([mask_to_grid(m, 8, 0.25) for m in seg])
    assert report["train_patch_balanced_accuracy"] == pytest.approx(balanced_accuracy(p_fg, gt), abs=1e-12)
    for name in ("nearest", "guided"):  # the refined masks at the tight threshold, recomputed here
        assert report[f"mask_iou_{name}"] == pytest.approx(refined_iou(data.train.images, p_fg, seg, name, 0.5), abs=1e-12)


def test_separate_with_a_saved_detector(detector_run: dict[str, Any], tiny_synthetic: Path) -> None:
    code, out, err = detector_run["sep"]
    assert code == 0, err
    info = json_before(out, "separation")
    sep_dir = Path(info["separation"])
    assert sep_dir.parent == detector_run["run"] / "separation"
    assert sum(info["separation_counts"].values()) == N_TRAIN
    seg = load_experiment_data(tiny_synthetic, 32, detector_run["run"]).train.segmentations
    alphas = [np.asarray(Image.open(sep_dir / "fg" / f"{i:06d}.png"))[..., 3] for i in range(N_TRAIN)]
    assert info["mask_iou"] == pytest.approx(np.mean([pixel_iou(a, s) for a, s in zip(alphas, seg, strict=True)]))
    assert len(list((sep_dir / "fg").glob("*.png"))) == N_TRAIN
    assert len(list((sep_dir / "bg").glob("*.png"))) == N_TRAIN
    summary = json.loads((sep_dir / "summary.json").read_text())
    assert summary["counts"] == info["separation_counts"]
    # contact sheet: a 14 px title row + 2 px gap, then 8 rows of image | grid | alpha | cut-out | background |
    # 3 composites, 96 px tiles, 2 px gaps
    sheet_path = Path(info["contact_sheet"])
    assert sheet_path == sep_dir / "contact_sheet.png" and sheet_path.is_file()
    with Image.open(sheet_path) as img:
        assert img.mode == "RGB"
        sheet = np.asarray(img)
    left = sheet.shape[1] - (8 * 98 - 2)  # row titles (image index and confidence) on the left
    assert sheet.shape[0] == 16 + 8 * 98 - 2 and left > 0
    assert (sheet[:14] < 128).any() and (sheet[14:16] == 255).all()  # titles drawn above the first row
    assert sheet.std() > 10  # not a blank picture
    # row r's first tile is the r-th least confident training image, upscaled 3x (nearest)
    ds = read_dataset(tiny_synthetic)
    least = [int(line.split(",")[0]) for line in (sep_dir / "confidence.csv").read_text().splitlines()[1:9]]
    for r, i in enumerate(least):
        with Image.open(ds.split("train")[i].path) as img:
            tile = np.asarray(img.convert("RGB"))
        assert np.array_equal(sheet[16 + r * 98 : 16 + r * 98 + 96 : 3, left : left + 96 : 3], tile)


def test_separate_writes_the_confidence_least_confident_first(detector_run: dict[str, Any]) -> None:
    info = json_before(detector_run["sep"][1], "separation")
    sep_dir = Path(info["separation"])
    rows = [line.split(",") for line in (sep_dir / "confidence.csv").read_text().splitlines()]
    assert rows[0] == ["index", "confidence", "certainty", "flip_agreement", "fg_area", "area_fit"]
    index, conf = [int(r[0]) for r in rows[1:]], [float(r[1]) for r in rows[1:]]
    assert sorted(index) == list(range(N_TRAIN)) and conf == sorted(conf)
    for r in rows[1:]:  # the score is the product of its parts
        assert float(r[1]) == pytest.approx(float(r[2]) * float(r[3]) * float(r[5]), abs=2e-6)
    summary = json.loads((sep_dir / "summary.json").read_text())
    assert [e["index"] for e in summary["least_confident"]] == index[:10]
    assert [e["index"] for e in info["least_confident"]] == index[:5]


def test_min_confidence_keeps_the_least_confident_images_as_originals(tiny_synthetic: Path, tmp_path: Path) -> None:
    """A detector good enough to cut most images out; the images below the threshold are not swapped."""
    from autobackswap.detect.confidence import confidence_by_index
    from autobackswap.pipeline import run_separation

    data = load_experiment_data(tiny_synthetic, 32, tmp_path / "run")
    options = {"grid": 8, "label_budget": 20, "detector_epochs": 40, "detector_width": 16, "allow_bad_separation": True}
    off = run_separation(data, PipelineConfig.from_options(options), 0)
    assert "kept_original" not in off.info and int(off.swap.usable.sum()) >= 20  # most images are swappable
    conf = confidence_by_index(Path(off.info["separation"]) / "confidence.csv", N_TRAIN)
    threshold = float(np.median(conf[off.swap.usable.numpy()]))  # half of the swappable images fall below it
    banks = run_separation(data, PipelineConfig.from_options({**options, "min_confidence": threshold}), 0)
    assert banks.info["separation"] == off.info["separation"]  # the same cached separation
    assert banks.info["kept_original"] == int((conf < threshold).sum())
    below = torch.from_numpy(conf < threshold)
    assert torch.equal(banks.swap.usable, off.swap.usable & ~below)
    assert int((off.swap.usable & below).sum()) > 0  # some images that would be swapped are kept
    assert banks.info["n_unswapped"] == N_TRAIN - int(banks.swap.usable.sum())


def test_separate_rerun_reuses_the_cache(detector_run: dict[str, Any]) -> None:
    """The second run writes no cut-out or background again: every file keeps its modification time."""
    code, out, err = detector_run["again"]
    assert code == 0, err
    first, second = json_before(detector_run["sep"][1], "separation"), json_before(out, "separation")
    assert second["separation_seconds"] >= 0  # reading the cache; the time is the one figure that differs
    assert {**first, "separation_seconds": 0} == {**second, "separation_seconds": 0}
    before, after = detector_run["mtimes"]
    assert len(before) == 2 * N_TRAIN and after == before


def test_detector_that_finds_no_foreground_is_counted_not_a_crash(detector_run: dict[str, Any],
                                                                   tiny_synthetic: Path) -> None:
    """t_tight = 0: p_bg < 0 never holds, so no image has a foreground. With --allow-bad-separation every
    image keeps its pixels, is counted as no_fg, and the contact sheet is still written (it used to crash
    drawing composites); without it the health check stops the run (tests/test_fail_early.py)."""
    run = detector_run["run"]
    code, out, err = run_quiet("separate", tiny_synthetic, "--out", run, "--detector", run / "detector.pt", *SMALL,
                               "--t-tight", "0", "--refine", "nearest", "--allow-bad-separation")
    assert code == 0, err
    info = json_before(out, "separation")
    assert info["separation_counts"] == {"ok": 0, "no_fg": N_TRAIN, "all_fg": 0}
    assert info["separation_warning"].startswith(f"{N_TRAIN} of {N_TRAIN} training images (100%) would train unswapped")
    assert Path(info["contact_sheet"]).is_file()


def test_separate_oracle_cli(tiny_synthetic: Path, tmp_path: Path) -> None:
    code, out, err = run_quiet("separate", tiny_synthetic, "--out", tmp_path / "run", "--oracle", *SMALL,
                               "--inpainter", "gray")
    assert code == 0, err
    info = json_before(out, "separation")
    assert info["mask_iou"] == 1.0
    assert Path(info["separation"]).name.startswith("oracle_")
    with Image.open(info["contact_sheet"]) as img:
        assert img.size == (7 * 98 - 2, 16 + 8 * 98 - 2)  # no predicted-grid column for the oracle


@pytest.fixture(scope="module")
def experiment_run(tiny_synthetic: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run = tmp_path_factory.mktemp("experiment") / "run"
    code, out, err = run_quiet("experiment", tiny_synthetic, "--methods", "erm,autobackswap,oracle", "--epochs", "1",
                               *SMALL, "--out", run)
    return {"run": run, "code": code, "out": out, "err": err}


def test_experiment_with_autobackswap_and_oracle(experiment_run: dict[str, Any]) -> None:
    assert experiment_run["code"] == 0, experiment_run["err"]
    run = experiment_run["run"]
    results = json.loads((run / "results.json").read_text())
    methods = results["methods"]
    assert set(methods) == {"erm", "autobackswap", "oracle"}
    for name in ("erm", "autobackswap", "oracle"):
        test = methods[name]["test"]
        assert test["worst_group_accuracy"] == min(g["accuracy"] for g in test["groups"])
        assert name in experiment_run["out"]
    abs_, oracle = methods["autobackswap"], methods["oracle"]
    assert "mask_iou" not in methods["erm"]
    assert 0.5 < abs_["mask_iou"] <= 1.0
    assert oracle["mask_iou"] > 0.999
    for entry in (abs_, oracle):
        counts = entry["runs"][0]["separation_counts"]
        assert set(counts) == {"ok", "no_fg", "all_fg"} and sum(counts.values()) == N_TRAIN
        assert Path(entry["runs"][0]["contact_sheet"]).is_file()
    assert abs_["runs"][0]["n_labels"] == 20
    detector = Detector.load(abs_["runs"][0]["detector"])
    assert abs_["patch_balanced_accuracy"] == detector.holdout_balanced_accuracy_
    assert results["config"]["method_options"] == {"label_budget": 20, "grid": 8}
    assert len(list((run / "detectors").glob("detector_*.pt"))) == 1


# ----------------------------------------------------------------------------- caches keyed by their inputs
def test_oracle_cache_is_keyed_by_the_data(tiny_synthetic: Path, tmp_path: Path) -> None:
    """Two datasets separated into one run folder must not share cut-outs (it used to reuse the first)."""
    other = make_synthetic(tmp_path / "other", n_train=N_TRAIN, n_val=16, n_test=16, image_size=32, seed=1)
    infos = []
    for data in (tiny_synthetic, other):
        code, out, err = run_quiet("separate", data, "--out", tmp_path / "run", "--oracle", "--image-size", "32",
                                   "--inpainter", "gray")
        assert code == 0, err
        infos.append(json_before(out, "separation"))
    assert infos[0]["separation"] != infos[1]["separation"]
    assert infos[0]["mask_iou"] == infos[1]["mask_iou"] == 1.0


def write_labels(path: Path, rows: list[tuple[str, np.ndarray]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["info", "mask"])
        w.writerows([i, "".join("1" if v else "0" for v in g.ravel())] for i, g in rows)
    return path


def test_detector_cache_is_keyed_by_the_label_contents(tiny_synthetic: Path, tmp_path: Path) -> None:
    """Correcting a label in masks.csv (same images, same file name) must train a new detector."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = load_experiment_data(tiny_synthetic, 32, tmp_path / "run")
        ids = [r.img_id for r in data.train.records[:12]]
        grids = [np.zeros((8, 8), bool) for _ in ids]
        for g in grids:
            g[2:6, 2:6] = True
        labels = write_labels(tmp_path / "masks.csv", list(zip(ids, grids, strict=True)))
        cfg = PipelineConfig.from_options({"labels": str(labels), "grid": 8, "detector_width": 8, "detector_epochs": 1})
        cache = tmp_path / "run" / "detectors"
        _, first = fit_detector(data, cfg, 0, cache)
        _, again = fit_detector(data, cfg, 0, cache)
        assert again["detector"] == first["detector"]  # unchanged labels: the cache is used
        grids[0][0, 0] = True  # one patch corrected
        write_labels(labels, list(zip(ids, grids, strict=True)))
        _, fixed = fit_detector(data, cfg, 0, cache)
        assert fixed["detector"] != first["detector"]
        assert len(list(cache.glob("detector_*.pt"))) == 2
    finally:
        torch.set_num_threads(threads)


def test_detector_options_reach_the_detector_and_its_cache_key(tiny_synthetic: Path, tmp_path: Path) -> None:
    """``autobackswap:detector_paste=0:detector_patience=2`` trains another detector than the defaults."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = load_experiment_data(tiny_synthetic, 32, tmp_path / "run")
        cache = tmp_path / "run" / "detectors"
        fast = {"label_budget": "12", "grid": "8", "detector_width": "8", "detector_epochs": "3"}
        det, first = fit_detector(data, PipelineConfig.from_options(fast), 0, cache)
        assert (det.config.paste, det.config.patience) == (1.0, 0)
        cfg = PipelineConfig.from_options({**fast, "detector_paste": "0", "detector_patience": "2"})
        det, other = fit_detector(data, cfg, 0, cache)
        assert (det.config.paste, det.config.patience) == (0.0, 2)
        assert other["detector"] != first["detector"]
        assert Detector.load(other["detector"]).config.paste == 0.0
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- bad input
def test_unknown_names_and_bad_values_fail_before_any_work(tiny_synthetic: Path, tmp_path: Path) -> None:
    code, _, err = run_quiet("separate", tiny_synthetic, "--out", tmp_path / "run", "--image-size", "32",
                             "--inpainter", "aot-gan")
    assert code == 2 and "unknown inpainter 'aot-gan'" in err
    assert not (tmp_path / "run" / "detectors").exists()  # no detector was trained first
    with pytest.raises(KeyError, match="unknown detector backbone 'resnet'"):
        PipelineConfig.from_options({"detector_backbone": "resnet"})
    with pytest.raises(ValueError, match="option autobackswap:grid='eight': expected int"):
        PipelineConfig.from_options({"grid": "eight"})
    assert PipelineConfig.from_options({"budget": "50", "fill": "gray", "p": "0.5", "decontaminate": "no"}) == \
        PipelineConfig.from_options({"label_budget": 50, "inpainter": "gray", "p": 0.5, "decontaminate": False})


def test_unknown_inpainter_is_one_clear_line(tiny_synthetic: Path, tmp_path: Path) -> None:
    code, _, err = run_quiet("separate", tiny_synthetic, "--out", tmp_path / "run", "--oracle", *SMALL,
                             "--inpainter", "aot-gan")
    assert code == 2
    (line,) = error_lines(err)
    assert line.startswith("autobackswap separate: error: unknown inpainter 'aot-gan'; valid names: ")
    assert "telea" in line and "patchmatch" in line
    assert "Traceback" not in err


def test_unknown_method_option_is_one_clear_line(tiny_synthetic: Path, tmp_path: Path) -> None:
    code, _, err = run_quiet("experiment", tiny_synthetic, "--methods", "autobackswap:colour=red", "--epochs", "1",
                             "--image-size", "32", "--out", tmp_path / "run")
    assert code == 2
    (line,) = error_lines(err)
    assert line.startswith("autobackswap experiment: error: unknown option 'colour' for autobackswap; valid options: ")
    assert "label_budget" in line and "inpainter" in line


def test_all_background_masks_csv_gives_the_detector_error(tiny_synthetic: Path, tmp_path: Path) -> None:
    ds = read_dataset(tiny_synthetic)
    labels = tmp_path / "masks.csv"
    with open(labels, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["info", "mask"])
        w.writerows([r.img_id, "0" * 64] for r in ds.split("train")[:12])
    code, _, err = run_quiet("fit-detector", tiny_synthetic, "--out", tmp_path / "run", "--labels", labels,
                             "--image-size", "32", "--detector-epochs", "1")
    assert code == 2
    (line,) = error_lines(err)
    assert "every labelled patch is background" in line and "cannot learn what the foreground looks like" in line
    assert not (tmp_path / "run" / "detector.pt").exists()


def test_bad_masks_csv_row_names_file_and_row(tiny_synthetic: Path, tmp_path: Path) -> None:
    labels = tmp_path / "masks.csv"
    labels.write_text("info,mask\nnot_an_image," + "0" * 64 + "\n")
    code, _, err = run_quiet("fit-detector", tiny_synthetic, "--out", tmp_path / "run", "--labels", labels,
                             "--image-size", "32")
    assert code == 2
    (line,) = error_lines(err)
    assert f"{labels}, row 2: unknown id 'not_an_image'" in line


def test_error_exit_in_a_real_process(tiny_synthetic: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "autobackswap", "separate", str(tiny_synthetic), "--out", str(tmp_path / "run"),
         "--oracle", "--image-size", "32", "--refine", "crf"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    (line,) = error_lines(proc.stderr)
    assert line.startswith("autobackswap separate: error: unknown mask refiner 'crf'; valid names: ")
