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
* ``predict_proba`` returns p(foreground) per patch; ``p_bg = 1 - p_fg``.
* ``device`` (``auto``: a GPU when there is one) is where it trains and predicts, in float32; batches are
  augmented on the CPU and copied there. It is an execution setting: no cache key holds it, and
  :meth:`Detector.load` takes the device to predict on (default ``auto``), whatever the checkpoint's.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass
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


class Detector:
    """Predicts a G x G foreground probability grid per image."""

    def __init__(self, **params: Any) -> None:
        self.config = DetectorConfig(**params)

    # -- estimator contract -------------------------------------------------------------------
    def fit(self, images: np.ndarray, grids: np.ndarray) -> Detector:
        cfg = self.config
        grids = np.asarray(grids, dtype=bool)
        check_fit_inputs(images, grids, cfg.grid)
        generator = seeding.generator(cfg.seed, "detector_train")
        rng = seeding.rng(cfg.seed, "detector_split")
        order = rng.permutation(len(images))
        n_hold = int(round(cfg.holdout * len(images))) if len(images) >= 10 else 0
        hold, train = order[:n_hold], order[n_hold:]
        device = runtime.resolve_device(cfg.device)
        model = self._new_model(device)
        x_all = _to_tensor(images)
        t_all = torch.from_numpy(grids.astype(np.float32))
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps_per_epoch = max(1, math.ceil(len(train) / cfg.batch_size))
        total = cfg.epochs * steps_per_epoch
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.lr, total_steps=total, pct_start=0.15)
        best = (-1.0, copy.deepcopy(model.state_dict()), 0)
        history: list[dict[str, float]] = []
        bad_epochs = 0
        start = time.perf_counter()
        for epoch in progress(range(cfg.epochs), desc="detector"):
            model.train()
            perm = torch.from_numpy(train)[torch.randperm(len(train), generator=generator)]
            total_loss = 0.0
            for s in range(0, len(perm), cfg.batch_size):
                idx = perm[s : s + cfg.batch_size]
                if len(idx) < 2:
                    continue
                x, t = augment(x_all[idx].clone(), t_all[idx].clone(), cfg, generator)
                x, t = runtime.to_device(x, device), runtime.to_device(t, device)
                target = t * (1 - cfg.label_smoothing) + 0.5 * cfg.label_smoothing
                loss = F.binary_cross_entropy_with_logits(model(x), target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total_loss += float(loss.detach()) * len(idx)
            record = {"epoch": epoch + 1, "loss": total_loss / max(1, len(train))}
            if n_hold:
                score = balanced_accuracy(self._proba(model, images[hold]), grids[hold])
                record["holdout_balanced_accuracy"] = score
                if score > best[0]:
                    best, bad_epochs = (score, copy.deepcopy(model.state_dict()), epoch + 1), 0
                else:
                    bad_epochs += 1
            history.append(record)
            if n_hold and cfg.patience and bad_epochs >= cfg.patience:
                log.info("detector: early stop at epoch %d (best %d)", epoch + 1, best[2])
                break
        if n_hold:
            model.load_state_dict(best[1])
        model.eval()
        self.model_ = model
        self.history_ = history
        self.best_epoch_ = best[2] if n_hold else len(history)
        self.holdout_balanced_accuracy_ = best[0] if n_hold else None
        self.n_labels_ = len(images)
        self.fg_area_range_: tuple[float, float] | None = area_range(grids)  # for the separation confidence
        self.fit_seconds_: float | None = time.perf_counter() - start
        log.info("detector: %d labels, hold-out balanced patch accuracy %s, %.1fs", len(images),
                 f"{best[0]:.3f}" if n_hold else "n/a", self.fit_seconds_)
        return self

    def _new_model(self, device: torch.device) -> torch.nn.Module:
        """The backbone, initialised from the ``detector_init`` stream (the global RNG is restored), on ``device``."""
        cfg = self.config
        runtime.tune(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seeding.int_seed(cfg.seed, "detector_init"))
            model = create_backbone(cfg.backbone, cfg.grid, cfg.weights, width=cfg.width)
        return model.to(device)

    @staticmethod
    @torch.no_grad()
    def _proba(model: torch.nn.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        model.eval()
        device = next(model.parameters()).device
        out = [torch.sigmoid(model(_to_tensor(images[i : i + batch_size], device))).cpu().numpy()
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else np.empty((0,))

    def predict_proba(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """p(foreground) per patch: (N, G, G) float32, for NHWC uint8 images."""
        if not hasattr(self, "model_"):
            raise NotFittedError("this Detector is not fitted yet: call fit(images, grids) or Detector.load(path)")
        return self._proba(self.model_, images, batch_size).astype(np.float32)

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
                                    width=det.config.width)
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
