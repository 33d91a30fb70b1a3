"""Separation quality and speed: refined-mask pixel IoU against the ground truth for every
refiner, and the wall time of separating the whole train split.

    python benchmarks/bench_separation.py     # 2000 train images at 64 px, 200 labels
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time

from _common import add_pipeline_args, pipeline_options, synthetic

from autobackswap.data.splits import load_experiment_data
from autobackswap.pipeline import PipelineConfig, fit_detector
from autobackswap.separate.engines import separate
from autobackswap.separate.masks import REFINERS, refined_iou


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--label-budget", type=int, default=200)
    add_pipeline_args(ap)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        data = load_experiment_data(synthetic(n_train=args.n_train), 64, tmp)
        cfg = PipelineConfig.from_options({**pipeline_options(args), "label_budget": args.label_budget})
        t0 = time.perf_counter()
        det, info = fit_detector(data, cfg, seed=0)
        fit_s = time.perf_counter() - t0
        images, seg = data.train.images, data.train.segmentations
        print(f"detector: {info['n_labels']} labels, hold-out balanced patch accuracy "
              f"{info['patch_balanced_accuracy']:.3f}, fit {fit_s:.1f}s")
        t0 = time.perf_counter()
        p_fg = det.predict_proba(images)
        predict_s = time.perf_counter() - t0
        print("| refiner | pixel IoU vs GT | ms / image |\n|---|---|---|")
        for name in REFINERS:
            t0 = time.perf_counter()
            iou = refined_iou(images, p_fg, seg, name, 1 - cfg.separation.t_tight)
            ms = (time.perf_counter() - t0) / len(images) * 1000
            print(f"| {name} | {iou:.3f} | {ms:.2f} |")
        t0 = time.perf_counter()
        separate(images, f"{tmp}/sep", cfg.separation_config(0), p_fg=p_fg)
        sep_s = time.perf_counter() - t0
        print(f"\nseparation of {len(images)} images at 64 px ({cfg.separation.inpainter}, {cfg.separation.refine}): "
              f"{predict_s + sep_s:.1f}s including detector inference ({predict_s:.1f}s)  [target ≤ 60 s]")


if __name__ == "__main__":
    main()
