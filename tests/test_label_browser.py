"""End to end in a real browser: headless Debian Chromium driven by Playwright against a live uvicorn.

Runs in CI (`.ci/run` installs chromium). Skipped only on a machine without /usr/bin/chromium and
without the CI variable; with CI set, a missing browser is a failure.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from autobackswap.data.grid import grid_to_string, mask_to_grid
from autobackswap.data.layout import load_segmentations, read_dataset
from autobackswap.label.assist import AssistConfig
from autobackswap.label.server import LabelServer, colour_scale, create_app

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


# ----------------------------------------------------------------------------- issue 16: the app's controls
def canvas_pixel(pg: Page, y: int, x: int, width: int = 32) -> list[int]:
    """RGB of the board's canvas at the centre of pixel (y, x) of the ``width`` px wide image it shows."""
    return pg.evaluate("""([y, x, w]) => {
        const b = document.querySelector('#board');
        const z = b.width / w;
        return Array.from(b.getContext('2d').getImageData(Math.floor((x + 0.5) * z), Math.floor((y + 0.5) * z), 1, 1).data).slice(0, 3);
    }""", [y, x, width])


def test_no_assist_mode_counter_next_and_overlay_controls(tiny_synthetic: Path, tmp_path: Path, page: Page) -> None:
    """--no-assist, a budget above the train split's size, saves that reach the server slowly."""
    app = create_app(tiny_synthetic, tmp_path / "labels.sqlite", grid=G, budget=200, assist=False)
    state = app.state.labeller
    put_label = state.put_label

    def slow_put(index: int, mask: str) -> Any:
        time.sleep(1.5)  # a save still queued when "label next" is pressed
        return put_label(index, mask)

    state.put_label = slow_put
    srv = LabelServer(app, "127.0.0.1", 0).start()
    try:
        page.goto(srv.url + "#/label/0")
        page.wait_for_selector("#board[data-index='0']")
        assert page.locator("#progress-text").inner_text() == "0 / 40"  # min(budget 200, 40 training images)
        keys = page.locator("#key-next").inner_text()
        assert "least sure" not in keys and "next unlabelled" in keys
        assert "least sure" not in (page.locator("#btn-label-next").get_attribute("title") or "")

        # label image 0, then "label next" twice before its save reached the server: 0 is never offered again
        click_cell(page, 5, 5)
        page.keyboard.press("n")
        page.wait_for_selector("#board[data-index='1']", timeout=10_000)
        page.keyboard.press("n")
        page.wait_for_selector("#board[data-index='2']", timeout=10_000)
        assert page.locator("#progress-text").inner_text() == "1 / 40"

        # the overlay: default 40 % tint on a foreground patch; 0 % shows the image; 100 % the label colour
        click_cell(page, 5, 5)
        wait_saved(page)
        image = np.asarray(Image.open(read_dataset(tiny_synthetic).split("train")[2].path).convert("RGB")).astype(int)
        tinted = canvas_pixel(page, 10, 10)
        assert np.abs(np.array(tinted) - (0.6 * image[10, 10] + 0.4 * np.array([255, 200, 0]))).max() <= 2
        page.locator("#opacity").fill("0")
        assert canvas_pixel(page, 10, 10) == image[10, 10].tolist()
        assert page.locator("#opacity-text").inner_text() == "0%"
        page.locator("#opacity").fill("100")
        assert canvas_pixel(page, 10, 10) == [255, 200, 0]
        assert np.abs(np.array(canvas_pixel(page, 0, 0)) - 0.45 * image[0, 0]).max() <= 2  # background dimmed
        page.keyboard.press("v")  # the clean image, whatever the opacity
        assert page.locator("#board").get_attribute("data-view") == "clean"
        assert canvas_pixel(page, 10, 10) == image[10, 10].tolist()
        assert canvas_pixel(page, 0, 0) == image[0, 0].tolist()
        page.keyboard.press("v")
        assert page.locator("#board").get_attribute("data-view") == "overlay"
        assert canvas_pixel(page, 10, 10) == [255, 200, 0]
    finally:
        page.goto("about:blank")  # no poll may reach the stopped server
        srv.stop()


def test_preview_after_20_labels_is_not_uniform(tiny_synthetic: Path, tmp_path: Path, page: Page) -> None:
    """The assistant's detector with its default settings (the main detector's) after 20 labels: the preview's
    p(fg) maps separate the object from the background, on the colour scale of the legend. (The small,
    early-stopped detector the app used before predicted one grey value everywhere.)"""
    dataset = read_dataset(tiny_synthetic)
    train = dataset.split("train")
    gt = [grid_to_string(mask_to_grid(s, G, 0.25)) for s in load_segmentations(dataset, train, 32)]
    app = create_app(tiny_synthetic, tmp_path / "labels.sqlite", grid=G, assist_config=AssistConfig(image_size=32))
    state = app.state.labeller
    for i in range(20):
        state.store.put(train[i].img_filename, gt[i])
    srv = LabelServer(app, "127.0.0.1", 0).start()  # a store with 20 labels gets its detector at start-up
    try:
        assert state.assistant.wait_idle(150) and state.assistant.state is not None
        detector = state.assistant.state.detector
        assert len(detector.history_) == 100  # no early stop
        page.goto(srv.url + "#/preview")
        page.wait_for_selector("#preview-table img >> nth=35")
        page.wait_for_function("[...document.querySelectorAll('#preview-table img')].every(i => i.complete && i.naturalWidth === 32)",
                               timeout=30_000)
        assert page.locator("#pfg-legend").is_visible()
        shot = tmp_path / "preview_20_labels.png"
        page.screenshot(path=str(shot), full_page=True)
        shutil.copy(shot, Path("/tmp") / "autobackswap_preview_20_labels.png")
        boxes = [page.locator(f"#preview-table img[alt^='pfg of'] >> nth={k}").bounding_box() for k in range(6)]
        legend = page.locator("#pfg-scale").bounding_box()
    finally:
        page.goto("about:blank")
        srv.stop()
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    scale = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in colour_scale()])

    def probabilities(box: Any) -> np.ndarray:
        """The screenshot's pixels inside ``box`` read back as p(fg) through the nearest legend colour."""
        x, y, w, h = (int(round(box[k])) for k in ("x", "y", "width", "height"))
        crop = pixels[y + 2 : y + h - 2, x + 2 : x + w - 2].reshape(-1, 3)
        nearest = np.abs(crop[:, None, :] - scale[None]).sum(-1).argmin(1)
        return nearest / (len(scale) - 1)

    for box in boxes:
        p = probabilities(box)
        assert (p <= 0.2).mean() > 0.2 and (p >= 0.8).mean() > 0.02, np.bincount((p * 10).round().astype(int))
        assert p.std() > 0.2  # not one grey (or one colour) everywhere
    ramp = probabilities(legend)  # the legend runs from 0 to 1
    assert ramp.min() == 0.0 and ramp.max() == 1.0
