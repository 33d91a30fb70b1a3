"""Labelling effort with and without the app's detector suggestions, and the WGA reached at equal effort.

    .venv/bin/python benchmarks/bench_label_effort.py             # 200 images, K=20, equal effort = 30 manual images
    .venv/bin/python benchmarks/bench_label_effort.py --skip-wga  # the effort figures only

Run it from the repository root (the synthetic data is cached under runs/bench/). The effort part
(``--skip-wga``) took 30 min on one busy core (OMP_NUM_THREADS=1): 12 detector fits of 50-290 s each, the
app's detector being the main one; the WGA part adds 3 autobackswap trainings.

A simulated labeller paints each image of a label sequence until its grid equals the ground truth
(``mask_to_grid(segmentation, 16, 0.25)`` on the synthetic benchmark: 2000 train images, 64 px,
correlation 1.0). Effort is counted as **patch toggles**: the patches whose value differs between
the grid the app shows first and the ground truth. Also reported: a lower bound on **drag strokes**
(4-connected runs of patches to add or to remove; one drag can paint a connected run).

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

WGA at equal effort: the toggle budget is what ``manual`` spends on its first ``--equal-effort``
images. Each mode labels as many images of its sequence as that budget pays for; those labels (all
equal to the ground truth, so only their number differs) are written as masks.csv and the
``autobackswap`` method is trained with them (``method_options labels=..., label_budget=n``).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from _common import add_pipeline_args, pipeline_options, synthetic

from autobackswap.data.grid import grid_to_string, mask_to_grid
from autobackswap.data.layout import load_images, load_segmentations, read_dataset
from autobackswap.detect.detector import Detector
from autobackswap.io import write_json, write_text
from autobackswap.label.assist import AssistConfig, next_refresh, patch_entropy

MODES = ("manual", "assisted", "active")


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
            logging.info("%s: detector on %d labels in %.0fs", mode, n, fits[-1]["seconds"])
        if n % log_every == 0:
            logging.info("%s: %d images, mean toggles so far %.2f", mode, n, np.mean(per_toggles))
    return {"sequence": sequence, "toggles": per_toggles, "strokes": per_strokes, "fits": fits}


def images_within(budget: int, per_image: list[int]) -> int:
    """How many images of the sequence a toggle budget pays for."""
    return int(np.searchsorted(np.cumsum(per_image), budget, side="right"))


def bucket_means(values: list[int], edges: list[int]) -> list[float]:
    return [float(np.mean(values[a:b])) if values[a:b] else float("nan") for a, b in zip(edges[:-1], edges[1:], strict=False)]


def write_masks_csv(path: Path, records: list[Any], indices: list[int], gt: np.ndarray) -> None:
    lines = ["info,mask"] + [f"{records[i].img_id},{grid_to_string(gt[i])}" for i in indices]
    write_text(path, "\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-images", type=int, default=200, help="length of the label sequence (default 200)")
    ap.add_argument("--k", type=int, default=20, help="labels before the first detector (default 20, the app's)")
    ap.add_argument("--equal-effort", type=int, default=30,
                    help="toggle budget = what manual labelling spends on this many images (default 30)")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    ap.add_argument("--seed", type=int, default=0, help="label order and detector seed (default 0)")
    ap.add_argument("--seeds", default="0", help="classifier seeds for the WGA part (default 0)")
    ap.add_argument("--epochs", type=int, default=10, help="classifier epochs for the WGA part (default 10)")
    ap.add_argument("--skip-wga", action="store_true", help="effort figures only")
    ap.add_argument("--out", default="runs/bench/label_effort")
    add_pipeline_args(ap)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for name in ("autobackswap", "autobackswap.detect.detector"):
        logging.getLogger(name).setLevel(logging.WARNING)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if "manual" not in modes:
        modes.insert(0, "manual")  # the reference for equal effort
    out = Path(args.out)

    data = synthetic()
    dataset = read_dataset(data)
    train = dataset.split("train")
    images = load_images(train, 64)
    gt = np.stack([mask_to_grid(m, 16, 0.25) for m in load_segmentations(dataset, train, 64)])
    cfg = AssistConfig(min_labels=args.k, seed=args.seed)
    order = np.random.default_rng(args.seed).permutation(len(train))

    runs: dict[str, dict[str, Any]] = {}
    for mode in modes:
        start = time.perf_counter()
        runs[mode] = simulate(mode, images, gt, order, args.n_images, cfg, args.seed)
        runs[mode]["seconds"] = round(time.perf_counter() - start, 1)

    n, k = args.n_images, args.k
    edges = sorted({0, k, min(50, n), min(100, n), n})
    budget = int(np.sum(runs["manual"]["toggles"][: args.equal_effort]))
    print(f"\nsynthetic benchmark (2000 train images, 64 px, correlation 1.0), G=16, threshold 0.25; "
          f"{n} images per mode, K={k}, label-order seed {args.seed}")
    print(f"ground truth: {gt[order[:n]].sum(axis=(1, 2)).mean():.1f} foreground patches per image on average\n")
    head = " | ".join(f"images {a + 1}-{b}" for a, b in zip(edges[:-1], edges[1:], strict=False))
    print(f"| mode | toggles / image, all {n} | after K | {head} | strokes / image (lower bound) | detector fits |")
    print("|---|---|---|" + "---|" * (len(edges) - 1) + "---|---|")
    for mode in modes:
        r = runs[mode]
        buckets = " | ".join(f"{v:.2f}" for v in bucket_means(r["toggles"], edges))
        fits = ", ".join(str(f["n_labels"]) for f in r["fits"]) or "none"
        print(f"| {mode} | {np.mean(r['toggles']):.2f} | {np.mean(r['toggles'][k:]):.2f} | {buckets} | "
              f"{np.mean(r['strokes']):.2f} | {fits} |")
    totals = ", ".join(f"{mode} {int(np.sum(runs[mode]['toggles']))}" for mode in modes)
    print(f"toggles to label all {n} images: {totals}")
    manual_after_k = np.mean(runs["manual"]["toggles"][k:])
    for mode in modes[1:]:
        ratio = manual_after_k / max(np.mean(runs[mode]["toggles"][k:]), 1e-9)
        print(f"{mode}: {ratio:.1f}x fewer toggles per image than manual after the first K={k} images")

    counts = {mode: images_within(budget, runs[mode]["toggles"]) for mode in modes}
    print(f"\nequal effort: {budget} toggles = manual labelling of {min(args.equal_effort, n)} images")
    for mode in modes:
        if counts[mode] >= n:
            print(f"  {mode}: >= {n} images labelled (the whole sequence costs {int(np.sum(runs[mode]['toggles']))} "
                  "toggles; raise --n-images to see how far the budget goes)")
        else:
            print(f"  {mode}: {counts[mode]} images labelled")

    summary: dict[str, Any] = {
        "config": vars(args), "budget_toggles": budget, "images_at_equal_effort": counts,
        "modes": {m: {"mean_toggles": float(np.mean(r["toggles"])), "mean_toggles_after_k": float(np.mean(r["toggles"][k:])),
                      "mean_strokes": float(np.mean(r["strokes"])), "fits": r["fits"], "seconds": r["seconds"],
                      "toggles": r["toggles"], "sequence": r["sequence"]} for m, r in runs.items()},
    }
    if not args.skip_wga:
        summary["wga"] = wga_at_equal_effort(data, train, gt, runs, counts, args, out)
    write_json(out / "results.json", summary)
    print(f"\nresults: {out / 'results.json'}")


def wga_at_equal_effort(data: Path, train: list[Any], gt: np.ndarray, runs: dict[str, dict[str, Any]],
                        counts: dict[str, int], args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Train the autobackswap method with each mode's equal-effort labels; WGA per mode."""
    from autobackswap.experiment import ExperimentConfig, run_experiment
    from autobackswap.train.loop import TrainConfig

    specs: dict[str, str] = {}
    for mode, count in counts.items():
        path = (out / f"masks_{mode}_{count}.csv").resolve()
        write_masks_csv(path, train, runs[mode]["sequence"][:count], gt)
        specs[mode] = f"autobackswap:labels={path}:label_budget={count}"
    seeds = [int(s) for s in args.seeds.split(",")]
    cfg = ExperimentConfig(data=str(data), methods=list(specs.values()), seeds=seeds, train=TrainConfig(epochs=args.epochs),
                           save_models=False, diagnostics=False, report=False,
                           method_options=pipeline_options(args))
    results = run_experiment(cfg, out / "wga")
    table: dict[str, Any] = {}
    print(f"\nWGA at equal effort (autobackswap, {args.epochs} epochs, seeds {args.seeds}; labels = ground-truth grids)")
    print("| mode | labelled images | test WGA | average accuracy | mask IoU |\n|---|---|---|---|---|")
    for mode, spec in specs.items():
        m = results["methods"][spec]
        wga, std = m["test"]["worst_group_accuracy"], m["test"].get("std", {}).get("worst_group_accuracy", 0.0)
        table[mode] = {"n_labels": counts[mode], "worst_group_accuracy": wga, "std": std,
                       "average_accuracy": m["test"]["average_accuracy"], "mask_iou": m.get("mask_iou")}
        iou = m.get("mask_iou")
        print(f"| {mode} | {counts[mode]} | {wga:.3f} ± {std:.3f} | {m['test']['average_accuracy']:.3f} | "
              f"{iou if iou is None else f'{iou:.3f}'} |")
    return table


if __name__ == "__main__":
    main()
