"""End to end in a real browser: headless Debian Chromium driven by Playwright against a live uvicorn.

Runs in CI (`.ci/run` installs chromium). Skipped only on a machine without /usr/bin/chromium and
without the CI variable; with CI set, a missing browser is a failure.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autobackswap.data.grid import grid_to_string, mask_to_grid
from autobackswap.data.layout import load_segmentations, read_dataset
from autobackswap.label.assist import AssistConfig
from autobackswap.label.server import LabelServer, create_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
G = 16

if not os.environ.get("CI"):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium chromium-driver); required when CI is set",
                    allow_module_level=True)
    pytest.importorskip("playwright")

from playwright.sync_api import Page, sync_playwright  # noqa: E402

pytestmark = [pytest.mark.usefixtures("torch_single_thread"), pytest.mark.timeout(180)]


@pytest.fixture
def server(tiny_synthetic: Path, tmp_path: Path) -> Iterator[tuple[LabelServer, Any]]:
    app = create_app(tiny_synthetic, tmp_path / "labels.sqlite", grid=G, budget=12,
                     assist_config=AssistConfig(min_labels=6, image_size=32, detector_params={"width": 8, "epochs": 4}))
    srv = LabelServer(app, "127.0.0.1", 0).start()
    try:
        yield srv, app
    finally:
        srv.stop()
        app.state.labeller.assistant.stop()


@pytest.fixture
def page() -> Iterator[Page]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: CI must install chromium (see .ci/run)"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.on("console", lambda msg: errors.append(f"{msg.text} {msg.location}") if msg.type == "error" else None)
        try:
            yield pg
        finally:
            browser.close()
        assert not errors, errors


def cell_point(pg: Page, r: int, c: int) -> tuple[float, float]:
    box = pg.locator("#board").bounding_box()
    assert box is not None
    return box["x"] + (c + 0.5) * box["width"] / G, box["y"] + (r + 0.5) * box["height"] / G


def click_cell(pg: Page, r: int, c: int, button: str = "left") -> None:
    x, y = cell_point(pg, r, c)
    pg.mouse.click(x, y, button=button)  # type: ignore[arg-type]


def wait_saved(pg: Page) -> None:
    pg.wait_for_selector("body[data-save-state=saved]", timeout=30_000)


def board_mask(pg: Page) -> str:
    return pg.locator("#board").get_attribute("data-mask") or ""


def expected(*cells: tuple[int, int]) -> str:
    grid = np.zeros((G, G), bool)
    for r, c in cells:
        grid[r, c] = True
    return grid_to_string(grid)


def test_paint_reload_export_in_chromium(server: tuple[LabelServer, Any], page: Page, tiny_synthetic: Path,
                                         tmp_path: Path) -> None:
    srv, app = server
    store = app.state.labeller.store
    train = read_dataset(tiny_synthetic).split("train")

    page.goto(srv.url + "#/label/0")
    page.wait_for_selector("#board[data-index='0']")
    assert page.locator("#progress-text").inner_text() == "0 / 12"

    # click two patches (left = foreground), drag a row, then unpaint one with the right button
    click_cell(page, 5, 5)
    click_cell(page, 5, 6)
    x0, y0 = cell_point(page, 8, 2)
    x1, y1 = cell_point(page, 8, 6)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=4)
    page.mouse.up()
    click_cell(page, 5, 6, button="right")
    wait_saved(page)
    want0 = expected((5, 5), (8, 2), (8, 3), (8, 4), (8, 5), (8, 6))
    assert board_mask(page) == want0
    assert store.get(train[0].img_filename).mask == want0
    assert page.locator("#progress-text").inner_text() == "1 / 12"

    # keyboard: next image, fill, invert, undo (back to filled)
    page.keyboard.press("ArrowRight")
    page.wait_for_selector("#board[data-index='1']")
    page.keyboard.press("f")
    page.keyboard.press("i")
    page.keyboard.press("z")
    wait_saved(page)
    assert board_mask(page) == "1" * G * G
    assert store.get(train[1].img_filename).mask == "1" * G * G

    # a reload shows what was stored
    page.goto(srv.url + "#/label/0")
    page.reload()
    page.wait_for_selector("#board[data-index='0']")
    assert board_mask(page) == want0
    assert page.locator("#label-state").inner_text() == "labelled"
    assert page.locator("#progress-text").inner_text() == "2 / 12"

    # zoom in: the canvas grows, cells map the same way
    width = page.locator("#board").bounding_box()["width"]  # type: ignore[index]
    page.keyboard.press("-")
    assert page.locator("#board").bounding_box()["width"] < width  # type: ignore[index]
    page.keyboard.press("0")

    # the labelled list and the exported masks.csv
    page.click("#nav-list")
    page.wait_for_selector(".thumb >> nth=1")
    assert page.locator(".thumb").count() == 2
    with page.expect_download() as download:
        page.click("#btn-export")
    saved = tmp_path / "masks.csv"
    download.value.save_as(saved)
    with open(saved, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [["info", "mask"], [train[0].img_id, want0], [train[1].img_id, "1" * G * G]]


def test_suggestions_label_next_and_preview_in_chromium(server: tuple[LabelServer, Any], page: Page,
                                                         tiny_synthetic: Path, tmp_path: Path) -> None:
    srv, app = server
    dataset = read_dataset(tiny_synthetic)
    train = dataset.split("train")
    segs = load_segmentations(dataset, train, 32)
    gt = [grid_to_string(mask_to_grid(s, G, 0.25)) for s in segs]
    store = app.state.labeller.store
    for i in range(5):
        store.put(train[i].img_filename, gt[i])

    page.goto(srv.url + "#/label/5")
    page.wait_for_selector("#board[data-index='5']")
    click_cell(page, 0, 0)  # the 6th label: the detector trains in the background
    wait_saved(page)
    assert app.state.labeller.assistant.wait_idle(60)

    page.keyboard.press("n")  # label next: the detector's least sure image, pre-filled
    page.wait_for_function("document.querySelector('#label-state').textContent.startsWith('suggested')",
                           timeout=30_000)
    index = int(page.locator("#board").get_attribute("data-index") or -1)
    assistant = app.state.labeller.assistant
    unlabelled = [i for i in range(len(train)) if i > 5]
    assert assistant.state.entropy[index] == max(assistant.state.entropy[i] for i in unlabelled)
    suggestion = grid_to_string(assistant.state.p_fg[index] >= 0.5)
    assert board_mask(page) == suggestion
    assert store.get(train[index].img_filename) is None  # a suggestion is not a label until accepted
    page.keyboard.press("Enter")  # accept as is and move on
    page.wait_for_function(f"document.querySelector('#board').dataset.index !== '{index}'")
    wait_saved(page)
    assert store.get(train[index].img_filename).mask == suggestion
    shot = tmp_path / "label_page.png"
    page.screenshot(path=str(shot), full_page=True)
    shutil.copy(shot, Path("/tmp") / "autobackswap_label_page.png")

    page.click("#nav-preview")
    page.wait_for_selector("#preview-table img >> nth=35")
    page.wait_for_function("[...document.querySelectorAll('#preview-table img')].every(i => i.complete && i.naturalWidth === 32)",
                           timeout=30_000)
    assert page.locator("#preview-table tr").count() == 7  # header + 6 images
    page.screenshot(path=str(tmp_path / "preview_page.png"), full_page=True)
    shutil.copy(tmp_path / "preview_page.png", Path("/tmp") / "autobackswap_preview_page.png")
    assert io.BytesIO(shot.read_bytes()).getbuffer().nbytes > 1000
