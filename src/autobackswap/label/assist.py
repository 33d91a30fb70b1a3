"""Model-assisted labelling: a detector trained in the background on the labels so far.

* Once ``min_labels`` (K, default 20) training images are labelled, a background thread fits a
  :class:`~autobackswap.detect.detector.Detector` on them and predicts every training image.
  Requests never wait for it.
* Refreshes follow a geometric schedule (K, then whenever the label count has grown by
  ``refresh_growth``, default x1.5, and at least ``refresh_min`` labels), so the time spent training
  stays proportional to the labelling done. Requests that arrive while a fit runs are coalesced into
  a single refit on the newest labels.
* Pre-fill: an unlabelled image's suggestion is the detector's grid ``p_fg >= 0.5``.
* "Label next": unlabelled images in order of decreasing mean patch entropy (the detector's least
  sure first); before the first detector exists, a seeded random order (a fair sample of the split).
  With a separation folder (``AssistConfig.separation``, ``label --separation DIR``): the least
  confident separations first (its ``confidence.csv``, :mod:`autobackswap.detect.confidence`), so the
  next labels go to the images the separator gets wrong.

The pure functions (:func:`patch_entropy`, :func:`next_refresh`, :func:`uncertainty_order`) carry the
logic; :class:`Assistant` holds the thread and the latest result.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import seeding
from ..data.images import check_image_size
from ..data.labelstore import LabelStore
from ..data.layout import Record, load_images
from ..detect.confidence import CONFIDENCE_FILE, confidence_by_index, patch_entropy
from ..detect.detector import Detector
from ..errors import AutoBackSwapError
from ..options import check_range

log = logging.getLogger(__name__)


@dataclass
class AssistConfig:
    min_labels: int = 20  # K: train the first detector once this many train images are labelled
    refresh_growth: float = 1.5  # refit when the label count reaches growth x the count of the last fit
    refresh_min: int = 5  # ... and at least this many new labels
    image_size: int = 64  # working size the detector sees (as in `experiment --image-size`)
    # Detector settings over the DetectorConfig defaults; none by default, so the assistant trains the main
    # detector (width 32, 100 epochs, copy-paste, no early stopping) that `experiment` trains. The former small
    # detector (width 16, 40 epochs, early stopping after 15 epochs without a gain, no copy-paste) stopped at
    # epoch 20 (best epoch 5) on 20 labels, whose hold-out is 4 images, and predicted a uniform grey grid.
    # The label-effort study (benchmarks/run.py label-effort) measures these settings.
    detector_params: dict[str, Any] = field(default_factory=dict)
    threshold: float = 0.5  # suggestion: p_fg >= threshold
    separation: str | Path | None = None  # a separation folder: "label next" = its least confident images first
    seed: int = 0
    device: str = "auto"  # where the detector trains and predicts (runtime.resolve_device)

    def __post_init__(self) -> None:
        check_range("assist_after (labels before the first detector)", self.min_labels, 2, 10_000_000, integer=True)
        check_range("refresh_growth", self.refresh_growth, 1.0, 100.0)
        check_range("refresh_min", self.refresh_min, 1, 10_000_000, integer=True)
        check_image_size(self.image_size)
        check_range("threshold", self.threshold, 0.0, 1.0)
        check_range("seed", self.seed, 0, 2**63 - 1, integer=True)


def separation_confidence_of(folder: str | Path, n: int) -> np.ndarray:
    """(n,) separation confidence per train index from a separation folder (or its ``confidence.csv``)."""
    path = Path(folder)
    return confidence_by_index(path if path.is_file() else path / CONFIDENCE_FILE, n)


def next_refresh(n_last: int, cfg: AssistConfig) -> int:
    """Label count at which the next (re)fit is due, given the count the last fit used (0: none yet)."""
    if n_last <= 0:
        return cfg.min_labels
    return max(cfg.min_labels, n_last + cfg.refresh_min, math.ceil(n_last * cfg.refresh_growth))


def uncertainty_order(scores: np.ndarray, candidates: Iterable[int], tie_break: np.ndarray) -> list[int]:
    """``candidates`` sorted by decreasing ``scores``; ties by ``tie_break`` rank (ascending)."""
    cand = np.fromiter(candidates, dtype=np.int64)
    if cand.size == 0:
        return []
    keys = np.lexsort((tie_break[cand], -scores[cand]))
    return cand[keys].tolist()


@dataclass
class AssistState:
    """One fitted detector and what it says about every training image (immutable once published)."""

    version: int
    detector: Detector
    p_fg: np.ndarray  # (N, G, G) float32 over the train split
    entropy: np.ndarray  # (N,)
    n_labels: int
    fit_seconds: float
    holdout_balanced_accuracy: float | None
    finished_at: float


class Assistant:
    """Owns the background detector thread for one train split and one label store."""

    def __init__(self, records: Sequence[Record], store: LabelStore, grid: int, config: AssistConfig | None = None,
                 images: np.ndarray | None = None,
                 load: Callable[[Sequence[Record], int], np.ndarray] | None = None) -> None:
        self.records = list(records)
        self.store = store
        self.grid = grid
        self.config = config or AssistConfig()
        self._images = images
        self._load = load or (lambda recs, size: load_images(recs, size, desc="loading train images"))
        self._position = {r.img_filename: i for i, r in enumerate(self.records)}
        self._tie = seeding.rng(self.config.seed, "label_app", 0).permutation(len(self.records)).argsort()
        self.confidence = (None if self.config.separation is None
                           else separation_confidence_of(self.config.separation, len(self.records)))
        self._cond = threading.Condition()
        self._images_lock = threading.Lock()
        self._pending = False
        self._running = False
        self._requested_n = 0
        self._stop = False
        self._thread: threading.Thread | None = None
        self.state: AssistState | None = None
        self.last_error: str | None = None

    # -- images at the working size ---------------------------------------------------------------
    def images(self) -> np.ndarray:
        """(N, S, S, 3) uint8 train images at the working size, loaded once on first use."""
        with self._images_lock:
            if self._images is None:
                self._images = self._load(self.records, self.config.image_size)
            return self._images

    # -- scheduling -------------------------------------------------------------------------------
    def labelled_indices(self) -> list[int]:
        return sorted(self._position[n] for n in self.store.names() if n in self._position)

    def notify(self, n_labelled: int | None = None) -> bool:
        """Call after a label write: schedules a (re)fit when one is due. True when one was scheduled."""
        n = len(self.labelled_indices()) if n_labelled is None else n_labelled
        with self._cond:
            last = max(self.state.n_labels if self.state else 0, self._requested_n)
            if n < next_refresh(last, self.config):
                return False
            self._requested_n = n
        self.request()
        return True

    def request(self) -> None:
        """Ask for a fit on the newest labels; many requests during one fit make a single refit."""
        with self._cond:
            self._pending = True
            if self._thread is None or not self._thread.is_alive():
                self._stop = False
                self._thread = threading.Thread(target=self._worker, name="label-assist", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no fit is pending or running (tests, benchmarks). False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending or self._running:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def stop(self, timeout: float = 1.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _worker(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                self._pending = False
                self._running = True
            try:
                self.fit_now()
                self.last_error = None
            except AutoBackSwapError as exc:
                self._failed(str(exc))
                log.warning("label assist: %s", exc)
            except Exception as exc:  # keep the server alive; show the failure in the status line
                self._failed(f"{type(exc).__name__}: {exc}")
                log.exception("label assist: detector training failed")
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()

    def _failed(self, message: str) -> None:
        """Show the error, and let the next label write retry (the labels may have been fixed)."""
        with self._cond:
            self.last_error = message
            self._requested_n = self.state.n_labels if self.state else 0

    # -- the work ---------------------------------------------------------------------------------
    def fit_now(self) -> AssistState:
        """Fit a detector on the current labels (synchronously) and publish its predictions."""
        labels = self.store.grids()
        keys = sorted((k for k in labels if k in self._position and labels[k].shape[0] == self.grid),
                      key=self._position.__getitem__)
        if len(keys) < 2:
            raise AutoBackSwapError(f"need at least 2 labelled training images to train a detector, have {len(keys)}")
        idx = np.array([self._position[k] for k in keys], dtype=np.int64)
        grids = np.stack([labels[k] for k in keys])
        images = self.images()
        params = {"seed": self.config.seed, **self.config.detector_params, "grid": self.grid,
                  "device": self.config.device}
        start = time.perf_counter()
        rest = np.setdiff1d(np.arange(len(images)), idx) if params.get("self_train") else None  # self-training
        detector = Detector(**params).fit(images[idx], grids, unlabelled=None if rest is None else images[rest])
        p_fg = detector.predict_proba(images)
        seconds = time.perf_counter() - start
        version = (self.state.version if self.state else 0) + 1
        state = AssistState(version, detector, p_fg, patch_entropy(p_fg), len(keys), seconds,
                            detector.holdout_balanced_accuracy_, time.time())
        self.state = state  # a single reference swap: readers see the old or the new state, never a mix
        log.info("label assist: detector v%d on %d labels in %.1fs", version, len(keys), seconds)
        return state

    # -- what the app asks ------------------------------------------------------------------------
    def suggestion(self, index: int) -> tuple[np.ndarray, int] | None:
        """(bool grid, detector version) for train image ``index``, or None before the first fit."""
        state = self.state
        if state is None:
            return None
        return state.p_fg[index] >= self.config.threshold, state.version

    def order(self, exclude: Iterable[int] = ()) -> tuple[list[int], str]:
        """Unlabelled train images, the next to label first, and how they are ordered."""
        labelled = set(self.labelled_indices()) | set(exclude)
        candidates = [i for i in range(len(self.records)) if i not in labelled]
        if self.confidence is not None:
            return uncertainty_order(-self.confidence, candidates, self._tie), "least_confident"
        state = self.state
        if state is None:
            return sorted(candidates, key=self._tie.__getitem__), "random"
        return uncertainty_order(state.entropy, candidates, self._tie), "uncertain"

    def status(self) -> dict[str, Any]:
        state = self.state
        busy = self._running or self._pending
        out: dict[str, Any] = {
            "min_labels": self.config.min_labels,
            "n_labelled": len(self.labelled_indices()),
            "training": busy,
            "next_refresh_at": None if busy else next_refresh(state.n_labels if state else 0, self.config),
            "error": self.last_error,
            "version": state.version if state else 0,
        }
        if state is not None:
            out.update({"n_labels": state.n_labels, "fit_seconds": round(state.fit_seconds, 2),
                        "holdout_balanced_accuracy": state.holdout_balanced_accuracy})
        return out
