"""Is the synthetic benchmark hard for the right reason?

For each seed, generates the default synthetic set (correlation 1.0: no minority group; 2000 / 400
/ 800 images at 64 px) with that seed and trains the default classifier twice with the same seed:

* **ERM** on the images as they are. Its test worst-group accuracy must be **<= 0.25**: with the
  background perfectly predictive in training, ERM learns the background.
* **foreground-only**: every train / val / test image has its background replaced by constant gray
  128 using the ground-truth segmentation. Its test accuracy and worst-group accuracy on
  foreground-only test images must be **>= 0.95**: the class is learnable from the shape alone.

  ``--mask pure`` (default) keeps only pixels that are entirely foreground (segmentation >= 250).
  ``--mask soft`` composites with the soft ground-truth alpha instead; its anti-aliased rim keeps up
  to half of the old background colour, and since that colour predicts the class in training, the
  model can learn the rim (DESIGN.md section 7, "edge halo"). ``--mask binary`` cuts at > 127.

Usage::

    .venv/bin/python benchmarks/bench_synthetic_difficulty.py                 # seeds 0,1,2
    .venv/bin/python benchmarks/bench_synthetic_difficulty.py --seeds 0 --epochs 10
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from autobackswap.data.splits import ExperimentData, SplitData, load_experiment_data
from autobackswap.data.synthetic import make_synthetic
from autobackswap.evaluate.results import evaluate_model
from autobackswap.evaluate.table import render_text
from autobackswap.train.loop import TrainConfig, fit
from autobackswap.train.sources import ArraySource

TARGET_ERM_WGA = 0.25  # at most
TARGET_FG_ONLY = 0.95  # at least
GRAY = 128


MASKS = ("pure", "binary", "soft")


def only_fg(split: SplitData, mask: str = "pure", gray: int = GRAY) -> SplitData:
    """The split with every background replaced by constant ``gray`` using the ground-truth masks."""
    seg = split.segmentations
    if mask == "pure":
        alpha = (seg >= 250).astype(np.float32)
    elif mask == "binary":
        alpha = (seg > 127).astype(np.float32)
    elif mask == "soft":
        alpha = seg.astype(np.float32) / 255.0
    else:
        raise ValueError(f"unknown mask {mask!r}; valid: {', '.join(MASKS)}")
    alpha = alpha[..., None]
    images = np.round(split.images * alpha + gray * (1.0 - alpha)).astype(np.uint8)
    return replace(split, images=images)


def train_and_test(data: ExperimentData, train: SplitData, val: SplitData, test: SplitData,
                   cfg: TrainConfig) -> dict:
    """Fit on ``train`` (model selection on ``val`` average accuracy), group metrics on ``test``."""
    result = fit(ArraySource(train.images, train.labels, hflip=cfg.hflip), val.images, val.labels,
                 data.num_classes, cfg)
    metrics = evaluate_model(result.model, test, data.train_group_counts, data.dataset.classes)
    metrics["train_seconds"] = result.train_seconds
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds for data and training (default 0,1,2)")
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-val", type=int, default=400)
    parser.add_argument("--n-test", type=int, default=800)
    parser.add_argument("--mask", choices=MASKS, default="pure",
                        help="foreground-only cut: pure (seg >= 250, default), binary (> 127) or soft (alpha)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]

    header = ["seed", "ERM test WGA", "ERM test avg", "fg-only test acc", "fg-only test WGA", "train s (ERM / fg)"]
    rows: list[list[str]] = []
    erm_wga, fg_acc, fg_wga = [], [], []
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="bench_difficulty_") as tmp:
            root = make_synthetic(Path(tmp) / "data", n_train=args.n_train, n_val=args.n_val, n_test=args.n_test,
                                  correlation=1.0, image_size=args.image_size, seed=seed)
            data = load_experiment_data(root, args.image_size, Path(tmp) / "run")
            cfg = replace(TrainConfig(), epochs=args.epochs, seed=seed)
            erm = train_and_test(data, data.train, data.val, data.test, cfg)
            fg = train_and_test(data, *(only_fg(s, args.mask) for s in (data.train, data.val, data.test)), cfg)
        erm_wga.append(erm["worst_group_accuracy"])
        fg_acc.append(fg["average_accuracy"])
        fg_wga.append(fg["worst_group_accuracy"])
        rows.append([str(seed), f"{erm_wga[-1]:.3f}", f"{erm['average_accuracy']:.3f}", f"{fg_acc[-1]:.3f}",
                     f"{fg_wga[-1]:.3f}", f"{erm['train_seconds']:.0f} / {fg['train_seconds']:.0f}"])
        print(f"seed {seed}: ERM WGA {erm_wga[-1]:.3f}, fg-only acc {fg_acc[-1]:.3f} (WGA {fg_wga[-1]:.3f})",
              flush=True)
    rows.append(["mean", f"{np.mean(erm_wga):.3f}", "", f"{np.mean(fg_acc):.3f}", f"{np.mean(fg_wga):.3f}", ""])
    rows.append(["target", f"<= {TARGET_ERM_WGA}", "", f">= {TARGET_FG_ONLY}", f">= {TARGET_FG_ONLY}", ""])
    ok = max(erm_wga) <= TARGET_ERM_WGA and min(fg_acc) >= TARGET_FG_ONLY and min(fg_wga) >= TARGET_FG_ONLY
    print()
    print(f"synthetic benchmark: correlation 1.0, {args.n_train}/{args.n_val}/{args.n_test} images at "
          f"{args.image_size} px; default classifier, {args.epochs} epochs; seeds {seeds}; "
          f"foreground-only mask: {args.mask}")
    print(f"load average {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(render_text(header, rows))
    print(f"\nall seeds meet the targets: {'yes' if ok else 'NO'}")


if __name__ == "__main__":
    main()
