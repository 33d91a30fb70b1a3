"""Tables (mean ± std), the label-efficiency section, and the HTML / Markdown report, rendered in
headless Chromium."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from autobackswap.cli import main
from autobackswap.compose.sheets import separation_sheet, sheet_titles
from autobackswap.detect.detector import Detector
from autobackswap.evaluate import plots
from autobackswap.evaluate.report import (
    best_wga_rows,
    render_html,
    render_markdown_report,
    silhouette_notes,
    write_report,
)
from autobackswap.evaluate.results import finalize_entry, label_efficiency
from autobackswap.evaluate.table import (
    best_rows,
    diagnostics_rows,
    fmt,
    label_efficiency_rows,
    results_rows,
    seeds_caption,
)
from autobackswap.io import write_png

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

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _metrics(wga: float, std: float, n_seeds: int) -> dict[str, Any]:
    groups = [{"y": y, "place": p, "n": 4, "accuracy": wga + 0.1 * (y == p), "accuracy_std": std}
              for y in (0, 1) for p in (0, 1)]
    return {"worst_group_accuracy": wga, "average_accuracy": wga + 0.05, "groups": groups, "n_seeds": n_seeds,
            "std": {"worst_group_accuracy": std, "average_accuracy": std}}


def _diag(gap: float, n_seeds: int) -> dict[str, Any]:
    keys = ("original", "only_fg", "only_bg", "mixed_same", "mixed_rand", "bg_gap")
    values = dict(zip(keys, (0.6, 0.9, 0.5, 0.5 + gap, 0.5, gap), strict=True))
    return {**values, "std": dict.fromkeys(keys, 0.02), "n_seeds": n_seeds}


@pytest.fixture
def fake_run(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A results.json-shaped dict with a skipped method, a label sweep, diagnostics and a contact sheet."""
    run = tmp_path / "run"
    sheet = run / "separation" / "abc" / "contact_sheet.png"
    rng = np.random.default_rng(0)
    write_png(sheet, rng.integers(0, 256, (96, 288, 3), dtype=np.uint8))
    write_png(run / "diagnostics" / "samples.png", rng.integers(0, 256, (64, 160, 3), dtype=np.uint8))
    methods: dict[str, Any] = {
        "erm": {"needs": "no group labels", "test": _metrics(0.1, 0.05, 2), "val": _metrics(0.9, 0.01, 2),
                "train_seconds": 3.0, "notes": [], "diagnostics": _diag(0.4, 2), "runs": [{"seed": 0}, {"seed": 1}]},
        "dfr": {"needs": "val group labels", "skipped": "val has no image of group(s) (y=0, place=1)"},
        "groupdro": {"needs": "train group labels", "test": _metrics(0.12, 0.0, 2), "train_seconds": 3.1,
                     "notes": ["reduces to ERM: no minority group in train"], "runs": [{"seed": 0}, {"seed": 1}]},
    }
    for budget, wga in ((25, 0.7), (50, 0.85)):
        methods[f"autobackswap:label_budget={budget}"] = {
            "needs": "patch labels", "test": _metrics(wga, 0.03, 2), "train_seconds": 5.0, "mask_iou": 0.8,
            "notes": [], "diagnostics": _diag(0.05, 2),
            "runs": [{"seed": 0, "n_labels": budget, "contact_sheet": str(sheet)}, {"seed": 1, "n_labels": budget}]}
    methods["oracle"] = {"needs": "ground-truth segmentations", "test": _metrics(0.95, 0.01, 2), "train_seconds": 4.0,
                         "notes": [], "runs": [{"seed": 0}, {"seed": 1}]}
    results = {"dataset": "data", "config": {"seeds": [0, 1], "image_size": 32, "train": {"model": "small_resnet",
                                                                                          "width": 8, "epochs": 1}},
               "methods": methods, "train_groups": [{"y": 0, "place": 0, "n": 20}, {"y": 1, "place": 1, "n": 20}],
               "diagnostics": {"masks": "ground_truth", "n": 16, "inpainter": "telea", "seed": 0,
                               "excluded": {"no_fg": 0, "all_fg": 0}, "samples": "diagnostics/samples.png",
                               "definitions": {"mixed_same": "fg on the usual background of its class"}}}
    results["label_efficiency"] = label_efficiency(results)
    return run, results


# ----------------------------------------------------------------------------- tables
def test_fmt_and_std_only_for_several_seeds() -> None:
    assert fmt(0.5, 0.0) == "0.500 ± 0.000" and fmt(0.5) == "0.500" and fmt(None, 0.1) == "-"
    one = {"methods": {"erm": {"test": _metrics(0.25, 0.0, 1), "train_seconds": 1.0}}}
    assert results_rows(one)[1][0][1] == "0.250"
    three = {"methods": {"erm": {"test": _metrics(0.25, 0.0, 3), "train_seconds": 1.0}}}
    assert results_rows(three)[1][0][1] == "0.250 ± 0.000"
    assert seeds_caption({"config": {"seeds": [0, 1, 2]}}) == "mean ± std over 3 seeds (0, 1, 2)"
    assert seeds_caption({"config": {"seeds": [4]}}) == "seed 4"


def test_every_table_shows_mean_and_std(fake_run: tuple[Path, dict[str, Any]]) -> None:
    _, results = fake_run
    header, rows = results_rows(results)
    by_name = {r[0]: r for r in rows}
    assert by_name["erm"][1] == "0.100 ± 0.050" and by_name["erm"][2] == "0.150 ± 0.050"
    assert by_name["dfr"][1] == "skipped" and by_name["dfr"][-1].startswith("val has no image")
    assert by_name["groupdro"][-1] == "reduces to ERM: no minority group in train"
    header, rows = diagnostics_rows(results)
    assert header == ["method", "original", "only_fg", "only_bg", "mixed_same", "mixed_rand", "bg_gap"]
    assert [r[0] for r in rows] == ["erm", "autobackswap:label_budget=25", "autobackswap:label_budget=50"]
    assert rows[0][-1] == "0.400 ± 0.020"
    header, rows = label_efficiency_rows(results["label_efficiency"])
    assert [r[:3] for r in rows] == [["25", "25", "0.700 ± 0.030"], ["50", "50", "0.850 ± 0.030"]]


def test_best_wga_is_highlighted_only_when_there_is_a_best() -> None:
    assert best_rows([0.0, 0.0, 0.0]) == set()  # every method at 0.000: nothing to highlight
    assert best_rows([0.4]) == set() and best_rows([None, 0.7]) == set()  # one method: no comparison
    assert best_rows([0.1, 0.3, None, 0.3]) == {1, 3}  # a tie at the top: both
    assert best_rows([0.5001, 0.5004, 0.2]) == {0, 1}  # equal as shown (3 decimals)
    zero = {"methods": {"erm": {"test": _metrics(0.0, 0.0, 1)}, "groupdro": {"test": _metrics(0.0, 0.0, 1)},
                        "oracle": {"test": _metrics(0.9, 0.0, 1)}}, "config": {"seeds": [0]}}
    assert best_wga_rows(zero) == set()
    html = render_html(zero, {}, [])
    assert "num best" not in html and "No WGA is highlighted" in html
    zero["methods"]["groupdro"]["test"] = _metrics(0.25, 0.0, 1)
    assert best_wga_rows(zero) == {1}  # the oracle (0.9) is never the best
    assert html.count("num best") == 0 and render_html(zero, {}, []).count("num best") == 1
    assert "| groupdro |  | **0.250** |" in render_markdown_report(zero, {}, [])


def test_detector_time_apart_from_the_classifier() -> None:
    """train s is the classifier's time: the run's wall time less the detector fit it did and its separation."""
    runs = [{"seed": 0, "train_seconds": 30.0, "detector_seconds": 12.0, "detector_reused": False,
             "separation_seconds": 3.0, "test": _metrics(0.5, 0.0, 1), "val": _metrics(0.5, 0.0, 1)},
            {"seed": 1, "train_seconds": 20.0, "detector_seconds": 14.0, "detector_reused": True,
             "separation_seconds": 1.0, "test": _metrics(0.5, 0.0, 1), "val": _metrics(0.5, 0.0, 1)}]
    entry: dict[str, Any] = {}
    finalize_entry(entry, runs, {})
    assert entry["train_seconds"] == 25.0  # the wall time, as before
    assert entry["classifier_seconds"] == 17.0  # (30 - 12 - 3 + 20 - 0 - 1) / 2: a reused detector cost nothing here
    assert entry["detector_seconds"] == 13.0 and entry["separation_seconds"] == 2.0 and entry["detector_reused"] is False
    erm: dict[str, Any] = {}
    finalize_entry(erm, [{"seed": 0, "train_seconds": 8.0, "test": _metrics(0.5, 0.0, 1), "val": _metrics(0.5, 0.0, 1)}], {})
    header, rows = results_rows({"methods": {"autobackswap": entry, "erm": erm, "dfr": {"skipped": "no val groups"}}})
    assert header[-4:] == ["train s", "detector s", "separation s", "note"]
    assert [r[-4:-1] for r in rows] == [["17.0", "13.0", "2.0"], ["8.0", "-", "-"], ["-", "-", "-"]]
    entry["detector_reused"] = True
    assert results_rows({"methods": {"a": entry}})[1][0][-3] == "13.0 reused"


def test_data_table_has_the_test_split_and_training_curves(fake_run: tuple[Path, dict[str, Any]]) -> None:
    run, results = fake_run
    for r, seed in zip(results["methods"]["erm"]["runs"], (0, 1), strict=True):
        r["history"] = [{"epoch": e, "train_loss": 1.0 / e + seed, "val_accuracy": 0.5 + 0.1 * e} for e in (1, 2, 3)]
        r["best_epoch"] = 3
    html_path, md_path = write_report(run, results)
    html = html_path.read_text()
    rows = re.findall(r"<tr><td class=\"name\">(\w+)</td><td class=\"num\">(\d+)</td><td class=\"text\">([^<]*)</td>",
                      html.split('id="groups-table"')[1])
    assert [r[:2] for r in rows] == [("train", "40"), ("test", "16")]  # test: from the 4 groups of 4 scored images
    assert rows[1][2] == "(0, 0): 4, (0, 1): 4, (1, 0): 4, (1, 1): 4"
    assert 'id="training-curves"' in html and len(re.findall(r"<img ", html)) == 5
    assert "![training curves](report_files/training_curves.png)" in md_path.read_text()
    png = plots.training_curves(results)
    assert png is not None and png == (run / "report_files" / "training_curves.png").read_bytes()
    assert plots.training_curves({"methods": {"dfr": {"skipped": "x"}}}) is None


def test_a_fill_that_leaves_a_silhouette_is_named(fake_run: tuple[Path, dict[str, Any]]) -> None:
    _, results = fake_run
    assert silhouette_notes(results) == []  # telea continues the surroundings
    results["diagnostics"]["inpainter"] = "mean"
    results["methods"]["autobackswap:label_budget=25"]["runs"][0]["inpainter"] = "gray"
    notes = silhouette_notes(results)
    assert len(notes) == 2
    assert notes[0].startswith("The mean fill leaves the removed object's silhouette (a flat region of the image's mean colour) in only_bg")
    assert "telea, ns and patchmatch" in notes[0]
    assert notes[1].startswith("Training backgrounds of autobackswap:label_budget=25 were filled with gray")
    html = render_html(results, {}, [])
    assert html.count('class="note warn silhouette"') == 2
    assert "> **Note.** The mean fill" in render_markdown_report(results, {}, [])


def test_contact_sheet_has_column_titles(tmp_path: Path) -> None:
    assert sheet_titles(3, True) == ["image", "p(fg) grid", "alpha", "cut-out", "background", "composite 1",
                                     "composite 2", "composite 3"]
    assert sheet_titles(1, False, "original") == ["image", "alpha", "cut-out", "original", "composite"]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    fg = rng.integers(0, 256, (2, 8, 8, 4), dtype=np.uint8)
    path = separation_sheet(tmp_path / "sheet.png", images, fg, images, images[:, None].repeat(3, 1),
                            p_fg=np.full((2, 4, 4), 0.5), tile=16)
    sheet = np.asarray(Image.open(path))
    assert sheet.shape == (14 + 2 + 2 * 18 - 2, 8 * 18 - 2, 3)  # a title row, then 2 rows of 8 tiles of 16 px
    assert (sheet[:14] < 100).any()  # the titles are drawn
    assert np.array_equal(sheet[16:32:2, :16:2], images[0])  # the first tile sits under the title row


def test_label_efficiency_section(fake_run: tuple[Path, dict[str, Any]]) -> None:
    _, results = fake_run
    curve = results["label_efficiency"]
    assert curve["method"] == "autobackswap" and curve["budgets"] == [25, 50]
    assert [p["worst_group_accuracy"] for p in curve["points"]] == [0.7, 0.85]
    assert curve["points"][0]["bg_gap"] == pytest.approx(0.05) and curve["points"][0]["mask_iou"] == 0.8
    assert curve["reference_worst_group_accuracy"] == {"erm": 0.1, "oracle": 0.95}
    assert label_efficiency({"methods": {"erm": results["methods"]["erm"]}}) is None


# ----------------------------------------------------------------------------- report files
def test_report_is_self_contained(fake_run: tuple[Path, dict[str, Any]]) -> None:
    run, results = fake_run
    html_path, md_path = write_report(run, results)
    html = html_path.read_text()
    assert html.startswith("<!doctype html>") and "<style>" in html
    sources = re.findall(r'<img[^>]*src="([^"]+)"', html)
    assert len(sources) == 4  # per-group bars, label-efficiency curve, diagnostic samples, one contact sheet
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(href|src)="(https?:|file:|/)', html) and "<link" not in html and "<script" not in html
    assert 'id="results-table"' in html and 'id="diagnostics-table"' in html and 'id="label-efficiency-table"' in html
    assert "skipped: val has no image of group(s) (y=0, place=1)" in html
    assert "reduces to ERM" in html
    md = md_path.read_text()
    assert "| method | needs | WGA |" in md and "0.100 ± 0.050" in md
    assert "## Label efficiency" in md and "## Background diagnostics" in md
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (run / link).is_file(), link
    assert "separation/abc/contact_sheet.png" in md


def test_report_without_optional_sections(tmp_path: Path) -> None:
    results = {"dataset": "d", "config": {"seeds": [0]},
               "methods": {"dfr": {"needs": "val group labels", "skipped": "no minority group"}}}
    html_path, md_path = write_report(tmp_path, results)
    html = html_path.read_text()
    assert "skipped: no minority group" in html and "<img" not in html
    assert "Label efficiency" not in html and "Background diagnostics" not in html
    assert "| dfr |" in md_path.read_text()


# ----------------------------------------------------------------------------- end to end, in a browser
@pytest.fixture(scope="module")
def swept_run(tiny_synthetic: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``experiment`` with a skipped baseline and a label-budget sweep, through the CLI (one seed, to stay
    quick: multi-seed aggregation is covered by test_diagnostics' two-seed run and the tables above)."""
    run = tmp_path_factory.mktemp("report_e2e") / "run"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), one_torch_thread():
        code = main(["experiment", str(tiny_synthetic), "--methods", "erm,dfr", "--label-budgets", "16,32",
                     "--seeds", "0", "--image-size", "32", "--epochs", "1", "--width", "8", "--grid", "8",
                     "--out", str(run)])
    assert code == 0
    return run, out.getvalue()


def test_experiment_writes_sweep_and_report(swept_run: tuple[Path, str]) -> None:
    run, stdout = swept_run
    results = json.loads((run / "results.json").read_text())
    assert list(results["methods"]) == ["erm", "dfr", "autobackswap:label_budget=16", "autobackswap:label_budget=32"]
    assert "no minority group" in results["methods"]["dfr"]["skipped"]
    curve = results["label_efficiency"]
    assert curve["budgets"] == [16, 32] and [p["n_labels"] for p in curve["points"]] == [16, 32]
    for point in curve["points"]:
        entry = results["methods"][point["method"]]["test"]
        assert point["n_seeds"] == 1 and point["worst_group_accuracy"] == entry["worst_group_accuracy"]
    assert (run / "report.html").is_file() and (run / "report.md").is_file()
    assert "test split, seed 0" in stdout and "bg_gap" in stdout and str(run / "report.html") in stdout
    # the detector's fit time apart from the classifier's, also for a cached detector
    abs16 = results["methods"]["autobackswap:label_budget=16"]
    record = abs16["runs"][0]
    assert record["detector_reused"] is False and record["detector_seconds"] > 0 and record["inpainter"] == "mean"
    assert Detector.load(record["detector"]).fit_seconds_ == record["detector_seconds"]
    assert abs16["classifier_seconds"] < abs16["train_seconds"] - record["detector_seconds"] + 1e-9
    assert "detector s" in stdout and "train s" in stdout


def _browser_or_skip() -> Any:
    missing = not CHROMIUM.exists()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = True
    if missing:
        if os.environ.get("CI"):
            pytest.fail("CI is set but /usr/bin/chromium or playwright is missing "
                        "(apt-get install -y chromium chromium-driver; pip install playwright)")
        pytest.skip("/usr/bin/chromium or playwright is not installed")
    return sync_playwright


def test_report_renders_in_chromium(swept_run: tuple[Path, str], tmp_path: Path) -> None:
    sync_playwright = _browser_or_skip()

    run, _ = swept_run
    report = Path(shutil.copy(run / "report.html", tmp_path / "moved.html"))  # self-contained: works anywhere
    shot = tmp_path / "report.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(report.as_uri())
            page.wait_for_load_state("load")
            assert page.locator("#results-table tbody tr.method").count() == 4
            assert page.locator('#results-table tr[data-method="dfr"] td.skip').count() == 1
            assert page.locator("#diagnostics-table tbody tr").count() == 3
            assert page.locator("#label-efficiency-table tbody tr").count() == 2
            loaded = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
            assert len(loaded) >= 5 and all(loaded)  # groups, training curves, label efficiency, samples, sheets
            assert page.locator("#training-curves img").count() == 1
            assert page.locator("#groups-table tbody tr").count() == 3  # train, val and test
            assert page.locator("#diagnostics .silhouette").count() >= 1  # the default fill (mean) leaves a shape cue
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape[0] > 900
    assert pixels.std() > 20  # not blank
    assert (pixels < 200).mean() > 0.03  # text, tables and figures drawn
