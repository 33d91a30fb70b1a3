"""Labelling effort with and without the app's detector suggestions, and the WGA reached at equal effort.

A simulated labeller paints each image of a label sequence until its grid equals the ground truth
(``mask_to_grid(segmentation, 16, 0.25)`` on the hard synthetic set: 2000 train images, 64 px, correlation 1.0).
Effort is counted as **patch toggles**: the patches whose value differs between the grid the app shows first
and the ground truth. Also reported: a lower bound on **drag strokes** (4-connected runs of patches to add or
to remove; one drag can paint a connected run). The effort part took 30 min on one busy core
(OMP_NUM_THREADS=1) on the easy set: 12 detector fits of 50-290 s each, the app's detector being the main one;
the WGA part adds 3 autobackswap trainings.

Modes, exactly as `autobackswap label` behaves:

* ``manual``: every image starts from an empty grid (random order).
* ``assisted``: the same random order; once K images are labelled the detector (the app's settings,
  ``AssistConfig().detector_params``: the main detector's defaults, width 32, 100 epochs, copy-paste, no
  early stopping) is fitted and refitted on the app's schedule (K, then x1.5, at least +5 labels), and each
  new image starts from its prediction ``p_fg >= 0.5``.
* ``active``: as ``assisted``, but after K images "label next" picks the unlabelled image the
  detector is least sure of (largest mean patch entropy).

The simulation assumes each refit is finished before the next image is shown; in the app it runs in
the background and the previous detector keeps suggesting meanwhile.

WGA at equal effort: the toggle budget is what ``manual`` spends on its first ``equal_effort`` (30) images.
Each mode labels as many images of its sequence as that budget pays for; those labels (all equal to the ground
truth, so only their number differs) are written as masks.csv and the ``autobackswap`` method is trained with
them (``method_options labels=..., label_budget=n``). The quick run labels fewer images and skips the WGA part.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from autobackswap.data.grid import grid_to_string, mask_to_grid
from autobackswap.data.layout import load_images, load_segmentations, read_dataset
from autobackswap.detect.detector import Detector
from autobackswap.experiment import ExperimentConfig
from autobackswap.io import write_text
from autobackswap.label.assist import AssistConfig, next_refresh, patch_entropy
from autobackswap.train.loop import TrainConfig

from . import Context, Measured, Study, Table, fmt, register, seeds_text
from .synthetic import EPOCHS, SYNTHETIC_CODE, synthetic_data

MODES = ("manual", "assisted", "active")
log = logging.getLogger(__name__)


def toggles(shown: np.ndarray, target: np.ndarray) -> int:
    """Patches the labeller must flip to turn ``shown`` into ``target``."""
    return int(np.count_nonzero(shown != target))


def strokes(shown: np.ndarray, target: np.ndarray) -> int:
    """Lower bound on drag strokes: 4-connected runs of patches to add plus runs to remove."""
    total = 0
    for diff in (target & ~shown, shown & ~target):
        if diff.any():
            n, _ = cv2.connectedComponents(diff.astype(np.uint8), connectivity=4)
            total += n - 1
    return total


def simulate(mode: str, images: np.ndarray, gt: np.ndarray, order: np.ndarray, n_images: int, cfg: AssistConfig,
             seed: int, log_every: int = 20) -> dict[str, Any]:
    """Label ``n_images`` images in ``mode``; per-image toggles and strokes, the sequence and the fits."""
    grid = gt.shape[1]
    sequence: list[int] = []
    labelled = np.zeros(len(gt), bool)
    per_toggles: list[int] = []
    per_strokes: list[int] = []
    fits: list[dict[str, Any]] = []
    p_fg: np.ndarray | None = None
    n_last = 0
    random_rank = np.empty(len(order), np.int64)
    random_rank[order] = np.arange(len(order))
    for step in range(n_images):
        if mode == "active" and p_fg is not None:
            scores = np.where(labelled, -np.inf, patch_entropy(p_fg))
            best = np.flatnonzero(scores == scores.max())
            index = int(best[np.argmin(random_rank[best])])
        else:
            index = int(next(i for i in order if not labelled[i]))
        shown = np.zeros((grid, grid), bool) if mode == "manual" or p_fg is None else p_fg[index] >= cfg.threshold
        per_toggles.append(toggles(shown, gt[index]))
        per_strokes.append(strokes(shown, gt[index]))
        sequence.append(index)
        labelled[index] = True
        n = step + 1
        if mode != "manual" and n < n_images and n >= next_refresh(n_last, cfg):
            start = time.perf_counter()
            idx = np.array(sequence)
            det = Detector(grid=grid, seed=seed, **cfg.detector_params).fit(images[idx], gt[idx])
            p_fg = det.predict_proba(images)
            n_last = n
            fits.append({"n_labels": n, "seconds": round(time.perf_counter() - start, 1),
                         "holdout_balanced_accuracy": det.holdout_balanced_accuracy_})
            log.info("%s: detector on %d labels in %.0fs", mode, n, fits[-1]["seconds"])
        if n % log_every == 0:
            log.info("%s: %d images, mean toggles so far %.2f", mode, n, np.mean(per_toggles))
    return {"sequence": sequence, "toggles": per_toggles, "strokes": per_strokes, "fits": fits}


def images_within(budget: int, per_image: list[int]) -> int:
    """How many images of the sequence a toggle budget pays for."""
    return int(np.searchsorted(np.cumsum(per_image), budget, side="right"))


def bucket_means(values: list[int], edges: list[int]) -> list[float]:
    return [float(np.mean(values[a:b])) if values[a:b] else float("nan") for a, b in zip(edges[:-1], edges[1:], strict=False)]


def write_masks_csv(path: Path, records: list[Any], indices: list[int], gt: np.ndarray) -> None:
    lines = ["info,mask"] + [f"{records[i].img_id},{grid_to_string(gt[i])}" for i in indices]
    write_text(path, "\n".join(lines) + "\n")


def effort_tables(runs: dict[str, dict[str, Any]], gt: np.ndarray, order: np.ndarray, n: int, k: int,
                  equal_effort: int, where: str) -> tuple[dict[str, Table], dict[str, str], dict[str, int]]:
    """The effort table per mode, the equal-effort table, inline values, and the images each mode labels for the
    toggle budget of ``equal_effort`` manual images."""
    modes = list(runs)
    edges = sorted({0, k, min(50, n), min(100, n), n})
    budget = int(np.sum(runs["manual"]["toggles"][:equal_effort]))
    rows = []
    for mode in modes:
        r = runs[mode]
        fits = ", ".join(str(f["n_labels"]) for f in r["fits"]) or "none"
        rows.append([mode, f"{np.mean(r['toggles']):.2f}", f"{np.mean(r['toggles'][k:]):.2f}",
                     *(f"{v:.2f}" for v in bucket_means(r["toggles"], edges)), f"{np.mean(r['strokes']):.2f}", fits])
    totals = ", ".join(f"{mode} {int(np.sum(runs[mode]['toggles']))}" for mode in modes)
    manual_after_k = np.mean(runs["manual"]["toggles"][k:])
    notes = [f"ground truth: {gt[order[:n]].sum(axis=(1, 2)).mean():.1f} foreground patches per image on average",
             f"toggles to label all {n} images: {totals}"]
    values: dict[str, str] = {"budget_toggles": str(budget)}
    for mode in modes[1:]:
        ratio = manual_after_k / max(np.mean(runs[mode]["toggles"][k:]), 1e-9)
        notes.append(f"{mode}: {ratio:.1f}x fewer toggles per image than manual after the first K={k} images")
        values[f"{mode}_fewer_toggles"] = f"{ratio:.1f}"
    head = [f"images {a + 1}-{b}" for a, b in zip(edges[:-1], edges[1:], strict=False)]
    effort = Table(["mode", f"toggles / image, all {n}", "after K", *head, "strokes / image (lower bound)",
                    "detector fits at"], rows,
                   f"{where}, G=16, threshold 0.25; {n} images per mode, K={k}, label-order seed 0", notes)
    counts = {mode: images_within(budget, runs[mode]["toggles"]) for mode in modes}
    equal_rows = []
    for mode in modes:
        cost = int(np.sum(runs[mode]["toggles"]))
        equal_rows.append([mode, f">= {n} (the whole sequence costs {cost} toggles)" if counts[mode] >= n
                           else str(counts[mode])])
    equal = Table(["mode", "images labelled"], equal_rows,
                  f"Equal effort: {budget} toggles = manual labelling of {min(equal_effort, n)} images")
    return {"effort": effort, "equal_effort": equal}, values, counts


@register
class LabelEffort(Study):
    name = "label-effort"
    title = "Labelling effort with the app's suggestions"
    about = ("a simulated labeller on the hard synthetic set: patch toggles per image without suggestions, with the "
             "app's detector suggestions and least-sure-first, and autobackswap's WGA with the labels each mode "
             "gets for the effort of 30 manual images")
    seeds = [0]  # classifier seeds of the WGA part
    depends = (*SYNTHETIC_CODE, "src/autobackswap/label/assist.py")
    # What it runs on; a test sets these on an instance. data None: the hard synthetic set.
    data: Path | None = None
    image_size = 64
    n_images = 200  # length of the label sequence
    quick_images = 50
    k = 20  # labels before the first detector (the app's)
    equal_effort = 30  # toggle budget = what manual labelling spends on this many images
    order_seed = 0  # label order and detector seed
    detector_params: dict[str, Any] = {}  # over the app's detector settings (AssistConfig.detector_params)

    def measure(self, ctx: Context) -> Measured:
        data = Path(self.data or synthetic_data("hard", image_size=self.image_size))
        dataset = read_dataset(data)
        train = dataset.split("train")
        images = load_images(train, self.image_size)
        gt = np.stack([mask_to_grid(m, 16, 0.25) for m in load_segmentations(dataset, train, self.image_size)])
        cfg = AssistConfig(min_labels=self.k, seed=self.order_seed, image_size=self.image_size)
        cfg.detector_params = {**cfg.detector_params, **self.detector_params}
        order = np.random.default_rng(self.order_seed).permutation(len(train))
        n = self.quick_images if ctx.quick else self.n_images
        runs: dict[str, dict[str, Any]] = {}
        for mode in MODES:
            start = time.perf_counter()
            runs[mode] = simulate(mode, images, gt, order, n, cfg, self.order_seed)
            runs[mode]["seconds"] = round(time.perf_counter() - start, 1)
        where = ("The hard synthetic set (2000 train images, 64 px, correlation 1.0)" if self.data is None
                 else f"{data.name} ({len(train)} train images, {self.image_size} px)")
        tables, values, counts = effort_tables(runs, gt, order, n, self.k, self.equal_effort, where)
        if not ctx.quick:
            tables["wga"] = self.wga_at_equal_effort(ctx, data, train, gt, runs, counts)
        return Measured(tables, values)

    def wga_at_equal_effort(self, ctx: Context, data: Path, train: list[Any], gt: np.ndarray,
                            runs: dict[str, dict[str, Any]], counts: dict[str, int]) -> Table:
        """Train the autobackswap method with each mode's equal-effort labels; WGA per mode."""
        specs: dict[str, str] = {}
        for mode, count in counts.items():
            path = (ctx.out / f"masks_{mode}_{count}.csv").resolve()
            write_masks_csv(path, train, runs[mode]["sequence"][:count], gt)
            specs[mode] = f"autobackswap:labels={path}:label_budget={count}"
        epochs = EPOCHS
        cfg = ExperimentConfig(data=str(data), methods=list(specs.values()), seeds=ctx.seeds,
                               image_size=self.image_size, train=TrainConfig(epochs=epochs), save_models=False,
                               diagnostics=False, report=False)
        results = ctx.experiment("wga", cfg)
        rows = []
        for mode, spec in specs.items():
            m = results["methods"][spec]
            std = m["test"].get("std", {})
            rows.append([mode, str(counts[mode]), fmt(m["test"]["worst_group_accuracy"], std.get("worst_group_accuracy", 0.0)),
                         fmt(m["test"]["average_accuracy"]), fmt(m.get("mask_iou"))])
        return Table(["mode", "labelled images", "WGA", "average accuracy", "mask IoU"], rows,
                     f"WGA at equal effort: autobackswap, {epochs} epochs, {seeds_text(ctx.seeds)}; labels = the "
                     "ground-truth grids of the images each mode labels; test split")
