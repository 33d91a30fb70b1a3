"""The secondary network as an sklearn-style estimator: ``Detector(...).fit(images, grids)``.

* Input: NHWC uint8 RGB images at the working size and (N, G, G) bool patch labels (True = fg).
* Loss: BCE with label smoothing (default 0.1), as in the reference implementation.
* Augmentation: horizontal/vertical flips and shifts by whole patches (circular, so the labels
  stay exact), up to ``max_shift`` patches; then, with probability ``paste``, the labelled
  foreground patches of another image in the batch are pasted at their place (copy-paste, with the
  union of both grids as the target), which shows the detector objects on backgrounds they never
  appear on.
* Model selection: a seeded hold-out of the labelled images; the epoch with the best balanced patch
  accuracy wins. ``patience`` (0 = off, the default) stops after that many epochs without a gain;
  under the one-cycle schedule an early stop tends to fire near the learning-rate peak.
* ``predict_proba`` returns p(foreground) per patch; ``p_bg = 1 - p_fg``. With ``tta`` (off by default) it is
  the mean of the image's grid and of its horizontal flip's grid flipped back (:meth:`Detector.predict_views`
  gives both raw grids once, for the separation confidence too).
* ``input_scale`` (1 = off): the detector upsamples its input bilinearly by this factor before the backbone.
  Datasets are stored at the working size (64 px in the benchmarks), so this is an upsampling: the backbone
  sees more pixels per patch, not more detail; it costs about ``input_scale**2`` the compute.
* ``self_train`` (0 = off) rounds of self-training on the unlabelled images given to ``fit(..., unlabelled=)``:
  each round labels them with the best model so far (patches with p >= ``self_train_threshold`` are
  foreground, p <= 1 - threshold background, the rest ignored: a masked BCE), then fine-tunes for
  ``self_train_epochs`` epochs on batches of labelled and pseudo-labelled images (no copy-paste on the pseudo
  half); the labelled hold-out still selects the epoch kept.
* ``device`` (``auto``: a GPU when there is one) is where it trains and predicts, in float32; batches are
  augmented on the CPU and copied there. It is an execution setting: no cache key holds it, and
  :meth:`Detector.load` takes the device to predict on (default ``auto``), whatever the checkpoint's.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import runtime, seeding
from ..errors import AutoBackSwapError, DataError, NotFittedError
from ..io import atomic_open
from ..options import check_range
from ..progress import progress
from ..weights import load_torch_file
from .confidence import area_range
from .model import BACKBONES, create_backbone

log = logging.getLogger(__name__)


@dataclass
class DetectorConfig:
    grid: int = 16
    backbone: str = "fcn"  # or tv:efficientnet_b0 (the paper's), timm:<name>, timm-map:<name> (detect.model)
    width: int = 32
    weights: str | None = None  # a pretrained tag (IMAGENET1K_V1, efficientnet_b0.ra_in1k) or a weight file (strict)
    epochs: int = 100  # width 32, 100 epochs, copy-paste: TuxBirds mask IoU 0.68 -> 0.80 (docs/results.md)
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    max_shift: int = 4
    flips: bool = True
    paste: float = 1.0
    holdout: float = 0.2
    patience: int = 0  # early stopping after this many epochs without a hold-out gain; 0 = off
    seed: int = 0
    device: str = "auto"  # where it trains and predicts (runtime.resolve_device); execution only
    # later options (left out of cache and run keys at these defaults, so older runs keep their keys)
    tta: bool = False  # predict_proba: mean of the image's and its horizontal flip's grid
    input_scale: int = 1  # bilinear upsampling of the input before the backbone (1 = off)
    self_train: int = 0  # self-training rounds on the unlabelled images (0 = off)
    self_train_threshold: float = 0.9  # a pseudo-label is kept where p >= this (fg) or p <= 1 - this (bg)
    self_train_epochs: int = 30  # fine-tuning epochs per self-training round
    freeze: int = 0  # pretrained tv: / timm: backbones: the stem and this many first stages stay fixed

    def __post_init__(self) -> None:
        BACKBONES.get(self.backbone)  # KeyError listing the valid names, before any data is loaded
        self.device = runtime.check_device_spec(self.device)
        check_range("detector paste (a probability)", self.paste, 0.0, 1.0)
        check_range("grid (patches per side)", self.grid, 1, 512, integer=True)
        check_range("detector width", self.width, 1, 4096, integer=True)
        check_range("detector epochs", self.epochs, 1, 100_000, integer=True)
        check_range("detector batch_size", self.batch_size, 2, 1_000_000, integer=True)
        check_range("detector lr", self.lr, 0.0, 10.0, open_lo=True)
        check_range("detector weight_decay", self.weight_decay, 0.0, 10.0)
        check_range("detector label_smoothing", self.label_smoothing, 0.0, 1.0, open_hi=True)
        check_range("detector max_shift (patches)", self.max_shift, 0, 512, integer=True)
        check_range("detector holdout (a fraction)", self.holdout, 0.0, 1.0, open_hi=True)
        check_range("detector patience (epochs)", self.patience, 0, 100_000, integer=True)
        check_range("seed", self.seed, 0, 2**63 - 1, integer=True)
        if not isinstance(self.tta, bool):
            raise AutoBackSwapError(f"detector tta must be true or false, got {self.tta!r}")
        check_range("detector input_scale (an upsampling factor)", self.input_scale, 1, 16, integer=True)
        check_range("detector self_train (rounds)", self.self_train, 0, 100, integer=True)
        check_range("detector self_train_threshold (a probability)", self.self_train_threshold, 0.5, 1.0, open_lo=True)
        check_range("detector self_train_epochs", self.self_train_epochs, 1, 100_000, integer=True)
        check_range("detector freeze (stages)", self.freeze, 0, 1000, integer=True)


# DetectorConfig fields added after the first release -> their default (the "off" value): a cache key leaves
# them out at that value, so detectors cached before they existed are reused.
LATER_FIELDS: dict[str, Any] = {"tta": False, "input_scale": 1, "self_train": 0, "self_train_threshold": 0.9,
                                "self_train_epochs": 30, "freeze": 0}


def config_key(cfg: DetectorConfig) -> dict[str, Any]:
    """The config as a cache key: every field but ``device`` (where it runs is not what it is) and the later
    fields at their defaults (the self-training details count exactly when self-training is on)."""
    key = {k: v for k, v in asdict(cfg).items() if k != "device"}
    for name, default in LATER_FIELDS.items():
        details = name.startswith("self_train_")
        if (cfg.self_train == 0) if details else key[name] == default:
            key.pop(name)
    return key


def balanced_accuracy(p_fg: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> float:
    """Mean of foreground recall and background recall over all patches."""
    pred = p_fg >= threshold
    target = target.astype(bool)
    recalls = [float((pred[target == c] == c).mean()) for c in (True, False) if (target == c).any()]
    return float(np.mean(recalls))


def check_labels(grids: np.ndarray) -> None:
    """A detector needs both classes of patch to learn from."""
    if len(grids) == 0:
        raise AutoBackSwapError("the label set is empty: label some training images first")
    frac = float(grids.mean())
    if frac == 1.0:
        raise AutoBackSwapError(
            "every labelled patch is foreground: a detector cannot learn what background looks like; "
            "label the background patches too"
        )
    if frac == 0.0:
        raise AutoBackSwapError(
            "every labelled patch is background: a detector cannot learn what the foreground looks like; "
            "paint the object's patches as foreground"
        )


def check_fit_inputs(images: np.ndarray, grids: np.ndarray, grid: int) -> None:
    """Labels with both kinds of patch, on the detector's grid, one per image at least ``grid`` px."""
    check_labels(grids)
    if images.shape[1] < grid or images.shape[2] < grid:
        raise AutoBackSwapError(f"images of {images.shape[1]}x{images.shape[2]} px are smaller than the {grid}x{grid} grid")
    if grids.shape[1:] != (grid, grid):
        raise AutoBackSwapError(f"labels are {grids.shape[1]}x{grids.shape[2]} grids but the detector grid is {grid}")
    if len(images) != len(grids):
        raise AutoBackSwapError(f"{len(images)} images but {len(grids)} label grids")


def augment(x: torch.Tensor, t: torch.Tensor, cfg: DetectorConfig, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Flips, whole-patch circular shifts and copy-paste, applied identically to images (NCHW) and
    grids (NGG)."""
    n, _, h, w = x.shape
    if cfg.flips:
        hf = torch.rand(n, generator=generator) < 0.5
        x[hf], t[hf] = x[hf].flip(-1), t[hf].flip(-1)
        vf = torch.rand(n, generator=generator) < 0.5
        x[vf], t[vf] = x[vf].flip(-2), t[vf].flip(-2)
    if cfg.max_shift > 0 and h % cfg.grid == 0 and w % cfg.grid == 0:
        shifts = torch.randint(-cfg.max_shift, cfg.max_shift + 1, (n, 2), generator=generator)
        ph, pw = h // cfg.grid, w // cfg.grid
        for i in range(n):
            dy, dx = int(shifts[i, 0]), int(shifts[i, 1])
            if dy or dx:
                x[i] = torch.roll(x[i], (dy * ph, dx * pw), dims=(1, 2))
                t[i] = torch.roll(t[i], (dy, dx), dims=(0, 1))
    if cfg.paste > 0:
        x, t = paste_foregrounds(x, t, cfg.paste, generator)
    return x, t


def paste_foregrounds(x: torch.Tensor, t: torch.Tensor, p: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """With probability ``p`` per image, paste the foreground patches of a random image of the batch
    (its grid, nearest-upsampled) at the same place; the target becomes the union of both grids."""
    n, _, h, w = x.shape
    src = torch.randint(0, n, (n,), generator=generator)
    chosen = torch.rand(n, generator=generator) < p
    cover = F.interpolate(t[src][:, None], size=(h, w), mode="nearest") > 0.5
    x = torch.where(chosen[:, None, None, None] & cover, x[src], x)
    t = torch.where(chosen[:, None, None], torch.maximum(t, t[src]), t)
    return x, t


def _to_tensor(images: np.ndarray, device: torch.device | None = None) -> torch.Tensor:
    """NHWC uint8 -> NCHW float in [0, 1], made on ``device`` (the uint8 rows are copied there)."""
    raw = torch.from_numpy(np.ascontiguousarray(images))
    if device is not None:
        raw = runtime.to_device(raw, device)
    return raw.permute(0, 3, 1, 2).float().div_(255.0)


class _Trainer:
    """One fit's state: the data, the hold-out, the best model so far and the history; ``run`` trains for some
    epochs (the labelled batches, and with ``pseudo`` a same-size batch of pseudo-labelled images beside each)."""

    def __init__(self, det: Detector, images: np.ndarray, grids: np.ndarray, device: torch.device) -> None:
        cfg = det.config
        self.det, self.cfg, self.images, self.grids, self.device = det, cfg, images, grids, device
        self.generator = seeding.generator(cfg.seed, "detector_train")
        order = seeding.rng(cfg.seed, "detector_split").permutation(len(images))
        self.n_hold = int(round(cfg.holdout * len(images))) if len(images) >= 10 else 0
        self.hold, self.train = order[: self.n_hold], order[self.n_hold :]
        self.model = det._new_model(device)
        self.x_all = _to_tensor(images)
        self.t_all = torch.from_numpy(grids.astype(np.float32))
        self.best: tuple[float, dict[str, Any], int] = (-1.0, copy.deepcopy(self.model.state_dict()), 0)
        self.history: list[dict[str, float]] = []

    def run(self, epochs: int, lr: float, pseudo: tuple[torch.Tensor, torch.Tensor] | None = None,
            desc: str = "detector") -> None:
        cfg, model = self.cfg, self.model
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
        steps_per_epoch = max(1, math.ceil(len(self.train) / cfg.batch_size))
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * steps_per_epoch, pct_start=0.15)
        no_paste = replace(cfg, paste=0.0)
        bad_epochs = 0
        for _ in progress(range(epochs), desc=desc):
            model.train()
            perm = torch.from_numpy(self.train)[torch.randperm(len(self.train), generator=self.generator)]
            total_loss = 0.0
            for s in range(0, len(perm), cfg.batch_size):
                idx = perm[s : s + cfg.batch_size]
                if len(idx) < 2:
                    continue
                x, t = augment(self.x_all[idx].clone(), self.t_all[idx].clone(), cfg, self.generator)
                if pseudo is not None:  # ignored patches are -1: flips and shifts keep them, copy-paste would not
                    pick = torch.randint(0, len(pseudo[0]), (len(idx),), generator=self.generator)
                    xp, tp = augment(pseudo[0][pick].clone(), pseudo[1][pick].clone(), no_paste, self.generator)
                    x, t = torch.cat([x, xp]), torch.cat([t, tp])
                x, t = runtime.to_device(x, self.device), runtime.to_device(t, self.device)
                loss = masked_bce(forward(model, x, cfg.input_scale), t, cfg.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total_loss += float(loss.detach()) * len(idx)
            if not self.end_epoch(total_loss / max(1, len(self.train))):
                bad_epochs += 1
            else:
                bad_epochs = 0
            if self.n_hold and cfg.patience and bad_epochs >= cfg.patience:
                log.info("detector: early stop at epoch %d (best %d)", len(self.history), self.best[2])
                break

    def end_epoch(self, loss: float) -> bool:
        """Record the epoch; True when the hold-out score improved (the model is kept as the best)."""
        record = {"epoch": len(self.history) + 1, "loss": loss}
        improved = False
        if self.n_hold:
            score = balanced_accuracy(self.det._proba(self.model, self.images[self.hold]), self.grids[self.hold])
            record["holdout_balanced_accuracy"] = score
            if score > self.best[0]:
                self.best, improved = (score, copy.deepcopy(self.model.state_dict()), len(self.history) + 1), True
        self.history.append(record)
        return improved

    def restore_best(self) -> None:
        if self.n_hold:
            self.model.load_state_dict(self.best[1])
        self.model.eval()

    def self_train(self, unlabelled: np.ndarray) -> None:
        """``cfg.self_train`` rounds: pseudo-label ``unlabelled`` with the best model so far, fine-tune on both."""
        cfg = self.cfg
        x_unl = _to_tensor(unlabelled)
        for r in range(cfg.self_train):
            self.restore_best()
            t = pseudo_labels(self.det._proba(self.model, unlabelled), cfg.self_train_threshold)
            log.info("detector self-training round %d: %.0f%% of %d images' patches pseudo-labelled", r + 1,
                     100 * float((t >= 0).mean()), len(unlabelled))
            self.run(cfg.self_train_epochs, cfg.lr * SELF_TRAIN_LR, (x_unl, torch.from_numpy(t)), f"self-train {r + 1}")


SELF_TRAIN_LR = 0.3  # a self-training round fine-tunes with this share of the first fit's peak learning rate


def pseudo_labels(p_fg: np.ndarray, threshold: float) -> np.ndarray:
    """(N, G, G) float32 targets from p(foreground): 1 where p >= ``threshold``, 0 where p <= 1 - threshold,
    -1 (ignored by :func:`masked_bce`) in between."""
    p = np.asarray(p_fg, np.float32)
    return np.where(p >= threshold, 1.0, np.where(p <= 1.0 - threshold, 0.0, -1.0)).astype(np.float32)


def masked_bce(logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
    """BCE with label smoothing over the patches whose target is 0 or 1; targets < 0 are ignored (the mean
    over the kept patches: plain BCE when none is ignored; 0 when all are)."""
    keep = (target >= 0).float()
    smooth = target.clamp(min=0) * (1 - smoothing) + 0.5 * smoothing
    loss = F.binary_cross_entropy_with_logits(logits, smooth, reduction="none")
    return (loss * keep).sum() / keep.sum().clamp(min=1.0)


def combine_views(p_fg: np.ndarray, p_fg_flipped: np.ndarray) -> np.ndarray:
    """Flip test-time augmentation: the mean of (N, G, G) grids ``p_fg`` and ``p_fg_flipped`` (predicted for the
    horizontally flipped images) flipped back."""
    return ((np.asarray(p_fg, np.float32) + np.asarray(p_fg_flipped, np.float32)[:, :, ::-1]) / 2).astype(np.float32)


def forward(model: torch.nn.Module, x: torch.Tensor, input_scale: int) -> torch.Tensor:
    """The backbone's logits for NCHW ``x``, upsampled bilinearly by ``input_scale`` first (1: as is)."""
    if input_scale != 1:
        x = F.interpolate(x, scale_factor=input_scale, mode="bilinear", align_corners=False)
    return model(x)


class Detector:
    """Predicts a G x G foreground probability grid per image."""

    def __init__(self, **params: Any) -> None:
        self.config = DetectorConfig(**params)

    # -- estimator contract -------------------------------------------------------------------
    def fit(self, images: np.ndarray, grids: np.ndarray, unlabelled: np.ndarray | None = None) -> Detector:
        """Train on the labelled ``images`` / ``grids``; with ``self_train`` rounds, also on ``unlabelled``
        images (NHWC uint8, no labels; required then, ignored otherwise)."""
        cfg = self.config
        grids = np.asarray(grids, dtype=bool)
        check_fit_inputs(images, grids, cfg.grid)
        if cfg.self_train and (unlabelled is None or len(unlabelled) == 0):
            raise AutoBackSwapError(f"self_train={cfg.self_train} needs unlabelled images: fit(images, grids, unlabelled=...)")
        if cfg.self_train and unlabelled is not None and unlabelled.shape[1:] != images.shape[1:]:
            raise AutoBackSwapError(f"unlabelled images are {unlabelled.shape[1:]} but the labelled ones {images.shape[1:]}")
        start = time.perf_counter()
        trainer = _Trainer(self, images, grids, runtime.resolve_device(cfg.device))
        trainer.run(cfg.epochs, cfg.lr)
        if cfg.self_train and unlabelled is not None:
            trainer.self_train(unlabelled)
        trainer.restore_best()
        self.model_ = trainer.model
        self.history_ = trainer.history
        self.best_epoch_ = trainer.best[2] if trainer.n_hold else len(trainer.history)
        self.holdout_balanced_accuracy_ = trainer.best[0] if trainer.n_hold else None
        self.n_labels_ = len(images)
        self.fg_area_range_: tuple[float, float] | None = area_range(grids)  # for the separation confidence
        self.fit_seconds_: float | None = time.perf_counter() - start
        log.info("detector: %d labels, hold-out balanced patch accuracy %s, %.1fs", len(images),
                 f"{trainer.best[0]:.3f}" if trainer.n_hold else "n/a", self.fit_seconds_)
        return self

    def _new_model(self, device: torch.device) -> torch.nn.Module:
        """The backbone, initialised from the ``detector_init`` stream (the global RNG is restored), on ``device``."""
        cfg = self.config
        runtime.tune(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seeding.int_seed(cfg.seed, "detector_init"))
            model = create_backbone(cfg.backbone, cfg.grid, cfg.weights, width=cfg.width, freeze=cfg.freeze)
        return model.to(device)

    @torch.no_grad()
    def _raw(self, model: torch.nn.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """p(foreground) of ``model`` (upsampled input when ``input_scale`` > 1), no test-time augmentation."""
        model.eval()
        device = next(model.parameters()).device
        scale = self.config.input_scale
        out = [torch.sigmoid(forward(model, _to_tensor(images[i : i + batch_size], device), scale)).cpu().numpy()
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out).astype(np.float32) if out else np.empty((0,), np.float32)

    def _proba(self, model: torch.nn.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """What :meth:`predict_proba` gives, for ``model`` (also the one being trained)."""
        if not self.config.tta:
            return self._raw(model, images, batch_size)
        return combine_views(*self._views(model, images, batch_size))

    def _views(self, model: torch.nn.Module, images: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        flipped = np.ascontiguousarray(np.asarray(images)[:, :, ::-1])
        return self._raw(model, images, batch_size), self._raw(model, flipped, batch_size)

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("this Detector is not fitted yet: call fit(images, grids) or Detector.load(path)")

    def predict_proba(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """p(foreground) per patch: (N, G, G) float32, for NHWC uint8 images (with ``tta``: the mean of the
        image's grid and its horizontal flip's grid flipped back)."""
        self._check_fitted()
        return self._proba(self.model_, images, batch_size)

    def predict_views(self, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(p_fg, p_raw, p_flipped)``: what :meth:`predict_proba` gives, the model's own grid of the images and
        its grid of the horizontally flipped images (not flipped back), each predicted once. The separation
        confidence's flip agreement compares the two raw grids (with ``tta``, ``p_fg`` is flip-symmetric by
        construction and would always agree with itself)."""
        self._check_fitted()
        raw, flipped = self._views(self.model_, images, batch_size)
        return (combine_views(raw, flipped) if self.config.tta else raw), raw, flipped

    def predict(self, images: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        return self.predict_proba(images) >= threshold

    def score(self, images: np.ndarray, grids: np.ndarray) -> float:
        """Balanced patch accuracy against ``grids``."""
        return balanced_accuracy(self.predict_proba(images), np.asarray(grids, bool))

    # -- persistence (checkpoints carry their config) -----------------------------------------
    def save(self, path: str | Path) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("cannot save an unfitted Detector")
        payload = {"kind": "detector", "config": asdict(self.config), "state_dict": self.model_.state_dict(),
                   "history": self.history_, "best_epoch": self.best_epoch_,
                   "holdout_balanced_accuracy": self.holdout_balanced_accuracy_, "n_labels": self.n_labels_,
                   "fit_seconds": self.fit_seconds_, "fg_area_range": self.fg_area_range_}
        with atomic_open(path, "wb") as fh:
            torch.save(payload, fh)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> Detector:
        """The detector saved at ``path``, predicting on ``device`` (not the device it was trained on)."""
        payload = load_torch_file(path, "detector checkpoint file", weights_only=False)
        if not isinstance(payload, dict) or payload.get("kind") != "detector":
            raise DataError(path, "not an autobackswap detector checkpoint (make one with `autobackswap fit-detector`)")
        try:
            # the weights are in the checkpoint: nothing to fetch or read; where it runs is the caller's choice
            det = cls(**{**payload["config"], "weights": None, "device": device})
            # the tag still sets the normalisation of a torchvision / timm backbone (load=False: nothing is fetched)
            model = create_backbone(det.config.backbone, det.config.grid, payload["config"].get("weights"), load=False,
                                    width=det.config.width, freeze=det.config.freeze)
            model.load_state_dict(payload["state_dict"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise DataError(path, f"damaged detector checkpoint ({first_line})") from None
        model = model.to(runtime.resolve_device(device))
        model.eval()
        det.model_ = model
        det.history_ = payload["history"]
        det.best_epoch_ = payload["best_epoch"]
        det.holdout_balanced_accuracy_ = payload["holdout_balanced_accuracy"]
        det.n_labels_ = payload["n_labels"]
        det.fit_seconds_ = payload.get("fit_seconds")  # what the fit took (None in older checkpoints)
        area = payload.get("fg_area_range")  # None in checkpoints saved before it was recorded
        det.fg_area_range_ = None if area is None else (float(area[0]), float(area[1]))
        return det
