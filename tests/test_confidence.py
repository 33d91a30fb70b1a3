"""Separation confidence (autobackswap.detect.confidence): each part and the product, hand-computed on
constructed grids; the confidence file; the detector's labelled foreground range; the contact sheet's
rows; the labelling app's "least confident first" order; min_confidence keeping images as originals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from autobackswap.compose import BackgroundSwap, JitterConfig, SwapConfig
from autobackswap.compose.sheets import confidence_titles, sheet_rows
from autobackswap.data.labelstore import LabelStore
from autobackswap.data.layout import read_dataset
from autobackswap.detect.confidence import (
    area_fit,
    area_range,
    confidence_by_index,
    flip_agreement,
    patch_entropy,
    read_confidence,
    separation_confidence,
    tight_area,
    write_confidence,
)
from autobackswap.detect.detector import Detector
from autobackswap.errors import DataError
from autobackswap.label.assist import Assistant, AssistConfig
from autobackswap.pipeline import PipelineConfig

pytestmark = pytest.mark.usefixtures("torch_single_thread")


# ----------------------------------------------------------------------------- the parts, by hand
def test_certainty_is_one_minus_mean_patch_entropy() -> None:
    p = np.array([np.full((2, 2), 0.5), [[1.0, 0.0], [0.0, 1.0]], [[0.5, 0.0], [1.0, 0.0]]])
    np.testing.assert_allclose(patch_entropy(p), [1.0, 0.0, 0.25], atol=1e-4)


def test_flip_agreement_compares_the_flipped_prediction_flipped_back() -> None:
    p = np.array([[[1.0, 0.0], [1.0, 0.0]]] * 3)
    q = np.stack([p[0][:, ::-1],  # the flipped image's grid is the mirror image: full agreement
                  p[0],  # the same grid for the flipped image: every patch differs by 1
                  np.full((2, 2), 0.5)])  # a coin flip everywhere: off by 0.5
    np.testing.assert_allclose(flip_agreement(p, q), [1.0, 0.0, 0.5])
    with pytest.raises(ValueError, match="two \\(N, G, G\\) grids of one shape"):
        flip_agreement(p, q[:, :1])


def test_tight_area_counts_patches_with_p_bg_below_t_tight() -> None:
    p = np.array([[[0.9, 0.6], [0.4, 0.2]]])
    assert tight_area(p, 0.5).tolist() == [0.5]  # p_fg > 0.5: 0.9, 0.6
    assert tight_area(p, 0.33).tolist() == [0.25]  # p_fg > 0.67: 0.9


def test_area_fit_against_the_labelled_range() -> None:
    grids = np.array([[[1, 0], [0, 0]], [[1, 1], [1, 0]]], bool)  # 1/4 and 3/4 foreground
    assert area_range(grids) == (0.25, 0.75)
    # inside: 1; 0.05 outside: half way down the 0.1 margin; 0.1 or more outside: 0
    np.testing.assert_allclose(area_fit(np.array([0.5, 0.8, 0.2, 0.85, 1.0, 0.0]), (0.25, 0.75)),
                               [1.0, 0.5, 0.5, 0.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(area_fit(np.array([0.0, 1.0]), None), [1.0, 1.0])  # no range: not checked
    with pytest.raises(ValueError, match="N >= 1"):
        area_range(np.zeros((0, 2, 2), bool))


def test_confidence_is_the_product_of_its_parts() -> None:
    sure = np.array([[[1.0, 0.0], [1.0, 0.0]]])
    parts = separation_confidence(sure, sure[:, :, ::-1], 0.5, (0.5, 0.5))
    np.testing.assert_allclose(parts["confidence"], [1.0], atol=1e-4)  # sure, self-consistent, area in range
    p = np.array([[[0.9, 0.1], [0.9, 0.1]]])
    parts = separation_confidence(p, p, 0.5, (0.1, 0.45))
    h = -(0.9 * np.log2(0.9) + 0.1 * np.log2(0.1))  # 0.468996 bits per patch
    np.testing.assert_allclose(parts["certainty"], [1 - h])
    np.testing.assert_allclose(parts["flip_agreement"], [0.2])  # |0.9 - 0.1| on every patch
    np.testing.assert_allclose(parts["fg_area"], [0.5])
    np.testing.assert_allclose(parts["area_fit"], [0.5])  # 0.05 above the labelled 0.45
    np.testing.assert_allclose(parts["confidence"], [(1 - h) * 0.2 * 0.5])  # 0.0531
    coin = np.full((1, 2, 2), 0.5)
    assert separation_confidence(coin, coin, 0.5, None)["confidence"][0] == pytest.approx(0.0, abs=1e-6)


# ----------------------------------------------------------------------------- the file
def test_confidence_file_lists_the_least_confident_first(tmp_path: Path) -> None:
    conf = np.array([0.7, 0.2, 0.9, 0.2])
    parts = {"confidence": conf, "certainty": conf, "flip_agreement": np.ones(4), "fg_area": np.full(4, 0.3),
             "area_fit": np.ones(4)}
    write_confidence(tmp_path / "c.csv", np.arange(4), parts)
    lines = (tmp_path / "c.csv").read_text().splitlines()
    assert lines[0] == "index,confidence,certainty,flip_agreement,fg_area,area_fit"
    assert [int(line.split(",")[0]) for line in lines[1:]] == [1, 3, 0, 2]  # ties by index
    assert read_confidence(tmp_path / "c.csv")["index"].tolist() == [1, 3, 0, 2]
    assert confidence_by_index(tmp_path / "c.csv", 4).tolist() == [0.7, 0.2, 0.9, 0.2]
    with pytest.raises(DataError, match=r"c.csv: expected one row for each of 5 images"):
        confidence_by_index(tmp_path / "c.csv", 5)


def test_bad_confidence_files_name_the_file_and_row(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing.csv: confidence file not found"):
        read_confidence(tmp_path / "missing.csv")
    (tmp_path / "cols.csv").write_text("index,score\n0,0.5\n")
    with pytest.raises(DataError, match=r"cols.csv, row 1: expected the columns index,confidence"):
        read_confidence(tmp_path / "cols.csv")
    (tmp_path / "nan.csv").write_text("index,confidence,certainty,flip_agreement,fg_area,area_fit\n"
                                      "0,0.5,1,1,0.2,1\n1,high,1,1,0.2,1\n")
    with pytest.raises(DataError, match=r"nan.csv, row 3: not a number"):
        read_confidence(tmp_path / "nan.csv")


# ----------------------------------------------------------------------------- detector
def test_detector_records_the_labelled_foreground_range(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 16, 16, 3)).astype(np.uint8)
    grids = np.zeros((6, 4, 4), bool)
    grids[:, :2, :2] = True  # 4 of 16 patches
    grids[0, :3, :3] = True  # 9 of 16
    det = Detector(grid=4, width=4, epochs=1, seed=0).fit(images, grids)
    assert det.fg_area_range_ == (0.25, 0.5625)
    det.save(tmp_path / "d.pt")
    assert Detector.load(tmp_path / "d.pt").fg_area_range_ == (0.25, 0.5625)
    payload = torch.load(tmp_path / "d.pt", weights_only=False)
    del payload["fg_area_range"]  # a checkpoint saved before the range was recorded
    torch.save(payload, tmp_path / "old.pt")
    assert Detector.load(tmp_path / "old.pt").fg_area_range_ is None


# ----------------------------------------------------------------------------- sheet, app, option
def test_sheet_rows_are_the_least_confident_first() -> None:
    conf = np.array([0.5, 0.1, 0.9, 0.1, 0.3])
    assert sheet_rows(5, 3, conf).tolist() == [1, 3, 4]
    assert sheet_rows(5, 8, conf).tolist() == [1, 3, 4, 0, 2]
    assert sheet_rows(9, 3).tolist() == [0, 4, 8]  # without a confidence: spread over the split
    assert confidence_titles(np.array([3]), conf) == ["#3\nconf\n0.10"]
    with pytest.raises(ValueError, match="one score per image"):
        sheet_rows(4, 2, conf)


def test_label_app_orders_the_least_confident_separations_first(tiny_synthetic: Path, tmp_path: Path) -> None:
    records = read_dataset(tiny_synthetic).split("train")
    n = len(records)
    conf = np.linspace(1.0, 0.0, n)  # the last image is the least confident
    conf[5] = conf[-1]  # a tie with the last one, broken by the seeded order
    sep = tmp_path / "separation"
    write_confidence(sep / "confidence.csv", np.arange(n), {c: conf for c in
                     ("confidence", "certainty", "flip_agreement", "fg_area", "area_fit")})
    store = LabelStore(tmp_path / "labels.sqlite", grid=4)
    store.put(records[n - 2].img_filename, np.eye(4, dtype=bool))  # a labelled image is not offered again
    assistant = Assistant(records, store, 4, AssistConfig(separation=sep), images=np.zeros((n, 8, 8, 3), np.uint8))
    order, reason = assistant.order()
    assert reason == "least_confident"
    assert sorted(order[:2]) == [5, n - 1] and order[2:5] == [n - 3, n - 4, n - 5]
    assert n - 2 not in order and len(order) == n - 1
    assert assistant.order(exclude=[5])[0][0] == n - 1
    with pytest.raises(DataError, match="expected one row for each of"):
        Assistant(records[:-1], store, 4, AssistConfig(separation=sep))


def test_kept_originals_are_never_swapped_nor_donors() -> None:
    size, n = 16, 8
    rng = np.random.default_rng(0)
    fg = np.zeros((n, size, size, 4), np.uint8)
    fg[..., :3] = rng.integers(0, 256, (n, 1, 1, 3))
    fg[:, 4:12, 4:12, 3] = 255
    bg = rng.integers(0, 256, (n, size, size, 3)).astype(np.uint8)
    keep = np.zeros(n, bool)
    keep[[1, 6]] = True
    swap = BackgroundSwap(fg, bg, np.array([0, 1] * 4), SwapConfig(p=1.0, jitter=JitterConfig()), keep_original=keep)
    assert swap.usable.tolist() == [i not in (1, 6) for i in range(n)]
    idx = torch.arange(n).repeat(200)
    params = swap.sample(idx, torch.Generator().manual_seed(0))
    assert not params.swap[torch.isin(idx, torch.tensor([1, 6]))].any()
    assert params.swap[~torch.isin(idx, torch.tensor([1, 6]))].all()
    assert not torch.isin(params.bg_index, torch.tensor([1, 6])).any()
    with pytest.raises(ValueError, match=r"one bool per image, shape \(8,\)"):
        BackgroundSwap(fg, bg, np.array([0, 1] * 4), keep_original=keep[:3])


def test_min_confidence_option() -> None:
    cfg = PipelineConfig.from_options({"min_confidence": "0.3"})
    assert cfg.min_confidence == 0.3 and cfg.settings()["min_confidence"] == 0.3
    assert "min_confidence" not in PipelineConfig().settings()  # off: run keys saved before it stay valid
    with pytest.raises(ValueError, match=r"min_confidence is a confidence in \[0, 1\], got 1.5"):
        PipelineConfig(min_confidence=1.5)


def test_cli_label_separation_errors(tiny_synthetic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from autobackswap.cli import main

    db = str(tmp_path / "l.sqlite")
    rc = main(["label", str(tiny_synthetic), "--db", db, "--separation", str(tmp_path), "--no-assist"])
    assert rc == 2
    assert capsys.readouterr().err.strip() == ("autobackswap label: error: --separation orders 'label next' through "
                                               "the model assistance: drop --no-assist")
    rc = main(["label", str(tiny_synthetic), "--db", db, "--separation", str(tmp_path / "nowhere")])
    assert rc == 2
    assert capsys.readouterr().err.strip() == (f"autobackswap label: error: {tmp_path / 'nowhere' / 'confidence.csv'}: "
                                               "confidence file not found (a separation with learned masks writes it)")
