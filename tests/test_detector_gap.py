"""Detector options for the mask gap on photos (issue 18, item 4): flip test-time augmentation, self-training on
unlabelled images, a larger detector input; and the rim (the cut-out's alpha on ground-truth background).

Tiny data: 32 px images of a disk, an 8 x 8 grid, a detector of width 8 trained for 2-3 epochs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_detect import FAST, SIZE, G, disk_data
from torch import nn

from autobackswap.data.splits import load_experiment_data
from autobackswap.detect import Detector, DetectorConfig
from autobackswap.detect.confidence import separation_confidence
from autobackswap.detect.detector import combine_views, config_key, masked_bce, pseudo_labels
from autobackswap.errors import AutoBackSwapError
from autobackswap.pipeline import (
    PipelineConfig,
    fit_detector,
    mean_mask_bg_share,
    mean_mask_metric,
    prediction_key,
)
from autobackswap.separate.masks import bg_share, erode, fg_kept

pytestmark = pytest.mark.usefixtures("torch_single_thread")


class Recorder(nn.Module):
    """A stand-in backbone: logit = mean over channels of the input, average-pooled to G x G, plus ``ramp`` x the
    column index (ramp 0: a mirror-equivariant model). Records the input sizes it sees."""

    def __init__(self, ramp: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))  # the device is read from the parameters
        self.ramp = ramp
        self.seen: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((x.shape[-2], x.shape[-1]))
        logits = nn.functional.adaptive_avg_pool2d(x.mean(1, keepdim=True), G)[:, 0] * self.weight
        return logits + self.ramp * torch.arange(G, dtype=logits.dtype)


def with_model(model: nn.Module, **params: object) -> Detector:
    det = Detector(grid=G, **params)  # type: ignore[arg-type]
    det.model_ = model
    return det


def asymmetric_images() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)


# -- flip test-time augmentation ----------------------------------------------------------------------
def test_tta_of_a_mirror_equivariant_model_equals_the_plain_prediction() -> None:
    images = asymmetric_images()
    plain = with_model(Recorder()).predict_proba(images)
    tta = with_model(Recorder(), tta=True).predict_proba(images)
    assert not np.allclose(plain, plain[:, :, ::-1])  # the images are not symmetric: a real test
    np.testing.assert_allclose(tta, plain, atol=1e-6)


def test_tta_averages_the_grid_and_the_flipped_images_grid_flipped_back() -> None:
    images = asymmetric_images()
    det = with_model(Recorder(ramp=0.5), tta=True)
    raw = with_model(Recorder(ramp=0.5)).predict_proba(images)
    mirrored = with_model(Recorder(ramp=0.5)).predict_proba(np.ascontiguousarray(images[:, :, ::-1]))
    expected = (raw + mirrored[:, :, ::-1]) / 2
    np.testing.assert_allclose(det.predict_proba(images), expected, atol=1e-6)
    p_fg, p_raw, p_flip = det.predict_views(images)
    np.testing.assert_allclose(p_fg, expected, atol=1e-6)
    np.testing.assert_allclose(p_raw, raw, atol=1e-6)
    np.testing.assert_allclose(p_flip, mirrored, atol=1e-6)
    assert not np.allclose(p_fg, raw)  # the ramp breaks the symmetry: TTA changes the grid


def test_predict_views_runs_each_view_once() -> None:
    model = Recorder(ramp=0.5)
    with_model(model, tta=True).predict_views(asymmetric_images(), batch_size=256)
    assert len(model.seen) == 2  # the image batch and the flipped batch, not a third pass for the TTA mean


def test_combine_views_hand_computed() -> None:
    p = np.array([[[0.2, 0.6]]], np.float32)
    q = np.array([[[0.4, 1.0]]], np.float32)  # flipped back: [1.0, 0.4]
    np.testing.assert_allclose(combine_views(p, q), [[[0.6, 0.5]]], atol=1e-6)


def test_confidence_with_tta_keeps_the_flip_agreement_of_the_raw_views() -> None:
    p = np.full((1, 2, 2), 0.9)
    q = np.full((1, 2, 2), 0.5)  # the flipped image: a different answer, agreement 1 - 0.4 = 0.6
    used = combine_views(p, q)  # 0.7 everywhere: symmetric, it would agree with itself
    parts = separation_confidence(p, q, 0.5, None, p_used=used)
    assert parts["flip_agreement"][0] == pytest.approx(0.6)
    h = -(0.7 * np.log2(0.7) + 0.3 * np.log2(0.3))
    assert parts["certainty"][0] == pytest.approx(1 - h, abs=1e-6)
    assert parts["fg_area"][0] == pytest.approx(1.0)  # 0.7 > 1 - 0.5


# -- input scale ---------------------------------------------------------------------------------------
def test_input_scale_upsamples_what_the_backbone_sees_when_predicting() -> None:
    model = Recorder()
    with_model(model, input_scale=2).predict_proba(asymmetric_images())
    assert model.seen == [(2 * SIZE, 2 * SIZE)]
    plain = Recorder()
    with_model(plain).predict_proba(asymmetric_images())
    assert plain.seen == [(SIZE, SIZE)]


def test_input_scale_upsamples_what_the_backbone_sees_when_training() -> None:
    images, grids = disk_data(12)
    seen: list[tuple[int, int]] = []
    det = Detector(**{**FAST, "epochs": 1, "input_scale": 3})
    original = det._new_model

    def hooked(device: torch.device) -> nn.Module:
        model = original(device)
        model.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape[-2:])))
        return model

    det._new_model = hooked  # type: ignore[method-assign]
    det.fit(images, grids)
    assert seen and set(seen) == {(3 * SIZE, 3 * SIZE)}
    assert det.predict_proba(images[:2]).shape == (2, G, G)


# -- self-training ----------------------------------------------------------------------------------------
def test_pseudo_labels_keep_only_confident_patches() -> None:
    p = np.array([[[0.95, 0.9, 0.5], [0.1, 0.05, 0.89]]], np.float32)
    np.testing.assert_array_equal(pseudo_labels(p, 0.9), [[[1, 1, -1], [0, 0, -1]]])


def test_masked_bce_ignores_uncertain_patches() -> None:
    logits = torch.tensor([[[2.0, -1.0, 5.0]]], requires_grad=True)
    target = torch.tensor([[[1.0, 0.0, -1.0]]])
    loss = masked_bce(logits, target, 0.0)
    expected = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0))) / 2  # BCE of the two kept patches, averaged
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert logits.grad is not None and float(logits.grad[0, 0, 2]) == 0.0  # no gradient from the ignored patch
    assert float(logits.grad[0, 0, 0]) != 0.0


def test_masked_bce_with_nothing_ignored_is_plain_smoothed_bce_and_with_everything_ignored_zero() -> None:
    logits = torch.tensor([[[0.3, -2.0], [1.0, 4.0]]])
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    plain = nn.functional.binary_cross_entropy_with_logits(logits, target * 0.9 + 0.05)
    assert float(masked_bce(logits, target, 0.1)) == pytest.approx(float(plain), rel=1e-6)
    assert float(masked_bce(logits, torch.full_like(target, -1.0), 0.1)) == 0.0


def test_self_training_fits_on_the_unlabelled_images_and_keeps_the_best_epoch() -> None:
    images, grids = disk_data(24)
    unlabelled, _ = disk_data(16, seed=1)
    det = Detector(**FAST, self_train=2, self_train_epochs=2, seed=0).fit(images, grids, unlabelled=unlabelled)
    assert len(det.history_) == 3 + 2 * 2  # the first fit, then two rounds of two epochs
    assert 1 <= det.best_epoch_ <= 7
    best = det.history_[det.best_epoch_ - 1]["holdout_balanced_accuracy"]
    assert det.holdout_balanced_accuracy_ == pytest.approx(max(h["holdout_balanced_accuracy"] for h in det.history_))
    assert best == det.holdout_balanced_accuracy_
    again = Detector(**FAST, self_train=2, self_train_epochs=2, seed=0).fit(images, grids, unlabelled=unlabelled)
    np.testing.assert_array_equal(det.predict_proba(images), again.predict_proba(images))  # seeded streams only


def test_self_training_without_unlabelled_images_raises() -> None:
    images, grids = disk_data(12)
    with pytest.raises(AutoBackSwapError, match="needs unlabelled images"):
        Detector(**FAST, self_train=1).fit(images, grids)
    with pytest.raises(AutoBackSwapError, match="unlabelled images are"):
        Detector(**FAST, self_train=1).fit(images, grids, unlabelled=np.zeros((3, 16, 16, 3), np.uint8))


def test_plain_fit_ignores_unlabelled_images() -> None:
    images, grids = disk_data(12)
    a = Detector(**FAST, seed=0).fit(images, grids)
    b = Detector(**FAST, seed=0).fit(images, grids, unlabelled=disk_data(8, seed=2)[0])
    np.testing.assert_array_equal(a.predict_proba(images), b.predict_proba(images))


# -- bad values, options and keys -------------------------------------------------------------------------
@pytest.mark.parametrize("params", [{"tta": "yes"}, {"input_scale": 0}, {"input_scale": 1.5}, {"self_train": -1},
                                    {"self_train_threshold": 0.5}, {"self_train_threshold": 1.2},
                                    {"self_train_epochs": 0}])
def test_bad_option_values_are_rejected(params: dict[str, object]) -> None:
    with pytest.raises((AutoBackSwapError, ValueError)):
        DetectorConfig(**params)  # type: ignore[arg-type]


def test_flat_options_reach_the_detector_and_stay_out_of_run_keys_at_their_defaults() -> None:
    cfg = PipelineConfig.from_options({"detector_tta": "true", "detector_self_train": "2",
                                       "detector_input_scale": "2", "detector_self_train_threshold": "0.8"})
    assert (cfg.detector.tta, cfg.detector.self_train, cfg.detector.input_scale) == (True, 2, 2)
    assert cfg.detector.self_train_threshold == 0.8
    settings = cfg.settings()
    assert settings["detector_tta"] is True and settings["detector_self_train"] == 2
    default = PipelineConfig().settings()
    assert not any(k.startswith(("detector_tta", "detector_self_train", "detector_input_scale")) for k in default)


def test_detector_cache_key_and_separation_key_unchanged_for_the_reference() -> None:
    ref = DetectorConfig()
    assert set(config_key(ref)) == {"grid", "backbone", "width", "weights", "epochs", "batch_size", "lr",
                                    "weight_decay", "label_smoothing", "max_shift", "flips", "paste", "holdout",
                                    "patience", "seed"}
    assert config_key(DetectorConfig(self_train_threshold=0.8)) == config_key(ref)  # no self-training: no effect
    assert config_key(DetectorConfig(self_train=1))["self_train_epochs"] == 30
    assert config_key(DetectorConfig(tta=True))["tta"] is True
    assert prediction_key(ref) == ""
    assert prediction_key(DetectorConfig(tta=True, input_scale=2)) == ":tta:x2"


# -- the rim ------------------------------------------------------------------------------------------------
def test_bg_share_hand_computed() -> None:
    gt = np.array([[1, 1, 0, 0]] * 2, bool)
    alpha = np.array([[1.0, 1.0, 0.5, 0.0], [1.0, 0.5, 0.0, 0.0]], np.float32)
    assert bg_share(alpha, gt) == pytest.approx(0.5 / 4.0)  # 0.5 of the 4.0 alpha mass is on background
    assert bg_share((alpha * 255).astype(np.uint8), gt.astype(np.uint8) * 255) == pytest.approx(127 / 255 / (
        (255 + 255 + 127 + 255 + 127) / 255), rel=1e-6)
    assert bg_share(np.zeros((2, 4), np.float32), gt) is None
    with pytest.raises(ValueError, match="differ in shape"):
        bg_share(np.ones((3, 3), np.float32), gt)


def test_mean_mask_bg_share_skips_empty_cutouts() -> None:
    seg = np.zeros((3, 2, 2), np.uint8)
    seg[:, 0] = 255  # top row foreground
    fg = np.zeros((3, 2, 2, 4), np.uint8)
    fg[0, ..., 3] = 255  # everything: half on background
    fg[1, 0, :, 3] = 255  # exactly the object: no rim
    # image 2: no cut-out, left out of the mean
    assert mean_mask_bg_share(fg, seg) == pytest.approx(0.25)


def test_fg_kept_hand_computed_and_its_mean_skips_images_without_an_object() -> None:
    gt = np.array([[1, 1, 0, 0]] * 2, bool)
    alpha = np.array([[1.0, 1.0, 0.5, 0.0], [1.0, 0.5, 0.0, 0.0]], np.float32)
    assert fg_kept(alpha, gt) == pytest.approx(3.5 / 4.0)  # 3.5 of the object's 4 pixels kept; the rim is not counted
    assert fg_kept(np.zeros((2, 4), np.float32), gt) == 0.0
    assert fg_kept(alpha, np.zeros((2, 4), bool)) is None
    with pytest.raises(ValueError, match="differ in shape"):
        fg_kept(np.ones((3, 3), np.float32), gt)
    seg = np.zeros((3, 2, 2), np.uint8)
    seg[:2, 0] = 255  # images 0 and 1: top row foreground; image 2: no object, left out of the mean
    fg = np.zeros((3, 2, 2, 4), np.uint8)
    fg[0, ..., 3] = 255  # everything: the whole object kept
    fg[2, ..., 3] = 255
    assert mean_mask_metric(fg_kept, fg, seg) == pytest.approx(0.5)  # (1 + 0) / 2


def test_erode_removes_the_edge_band() -> None:
    alpha = np.zeros((7, 7), np.float32)
    alpha[1:6, 1:6] = 1.0
    out = erode(alpha, 1)
    expected = np.zeros((7, 7), np.float32)
    expected[2:5, 2:5] = 1.0
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(erode(alpha, 0), alpha)
    with pytest.raises(ValueError, match=">= 0"):
        erode(alpha, -1)


def test_pipeline_self_trains_on_the_unlabelled_rest_of_the_train_split(tiny_synthetic: Path, tmp_path: Path) -> None:
    """``autobackswap:detector_self_train=1`` passes the train images without labels to the detector."""
    data = load_experiment_data(tiny_synthetic, 32, tmp_path / "run")
    fast = {"label_budget": "12", "grid": "8", "detector_width": "8", "detector_epochs": "2"}
    seen: list[int] = []
    original = Detector.fit

    def spy(self: Detector, images: np.ndarray, grids: np.ndarray, unlabelled: np.ndarray | None = None) -> Detector:
        seen.append(-1 if unlabelled is None else len(unlabelled))
        return original(self, images, grids, unlabelled=unlabelled)

    cache = tmp_path / "run" / "detectors"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Detector, "fit", spy)
        _, plain = fit_detector(data, PipelineConfig.from_options(fast), 0, cache)
        cfg = PipelineConfig.from_options({**fast, "detector_self_train": "1", "detector_self_train_epochs": "1"})
        det, selfish = fit_detector(data, cfg, 0, cache)
    assert seen == [-1, len(data.train) - 12]  # the reference gets none; self-training the 28 unlabelled ones
    assert len(det.history_) == 2 + 1
    assert selfish["detector"] != plain["detector"]
