"""Detector ablation: refined-mask IoU over the whole train split for detector settings, beside the
ceiling of the refiner fed the ground-truth label grid (what a perfect detector would give).

    python benchmarks/bench_detector.py                       # TuxBirds seen, the table in docs/results.md
    python benchmarks/bench_detector.py --data DIR --seeds 0  # any dataset with segmentations/

Each variant is ``name=key:value,key:value`` over :class:`~autobackswap.detect.DetectorConfig`
fields; every variant is trained on the same seeded sample of ``--label-budget`` labelled images.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import tuxbirds

from autobackswap.data.grid import mask_to_grid
from autobackswap.data.splits import load_experiment_data
from autobackswap.detect import Detector, DetectorConfig, patch_labels
from autobackswap.pipeline import PipelineConfig
from autobackswap.separate.masks import refined_iou

DEFAULT_VARIANTS = (
    "before=epochs:40,width:16,patience:15,paste:0",  # the defaults until this ablation
    "epochs100=epochs:100,width:16,paste:0",
    "width32=epochs:100,width:32,paste:0",
    "paste0.5=epochs:100,width:32,paste:0.5",
    "default=",  # width 32, 100 epochs, copy-paste on every image: the library defaults now
)


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    name, _, body = text.partition("=")
    defaults = DetectorConfig()
    params: dict[str, Any] = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition(":")
        params[key] = type(getattr(defaults, key))(value)
    return name, params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="dataset (default: TuxBirds seen, built on first use)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--label-budget", type=int, default=200)
    ap.add_argument("--variant", action="append", default=None, help="name=key:value,... (repeatable)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data_dir = args.data or tuxbirds(Path("runs/bench/tuxbirds_data"), 1.0, 0, 64)["seen"]
    pipe = PipelineConfig.from_options({"label_budget": args.label_budget})
    thr = 1.0 - pipe.separation.t_tight
    with tempfile.TemporaryDirectory() as tmp:
        data = load_experiment_data(data_dir, 64, tmp)
        images, seg = data.train.images, data.train.segmentations
        if seg is None:
            raise SystemExit(f"{data_dir}: needs segmentations/ to score masks")
        gt = np.stack([mask_to_grid(m, pipe.detector.grid, pipe.label_threshold) for m in seg]).astype(np.float32)
        print(f"{data_dir}: {len(images)} train images, {args.label_budget} labels, refiner {pipe.separation.refine}")
        print(f"ceiling (ground-truth grid, refined): IoU {refined_iou(images, gt, seg, pipe.separation.refine, thr):.3f}")
        print("| variant | settings | mask IoU | hold-out balanced patch acc | fit s |")
        print("|---|---|---|---|---|")
        for text in args.variant or DEFAULT_VARIANTS:
            name, params = parse_variant(text)
            ious, accs, secs = [], [], []
            for seed in (int(s) for s in args.seeds.split(",")):
                idx, grids = patch_labels(data.dataset, data.train.records, 64, pipe.detector.grid, None, args.label_budget,
                                          pipe.label_threshold, seed)
                t0 = time.perf_counter()
                det = Detector(**{"grid": pipe.detector.grid, "width": pipe.detector.width, "epochs": pipe.detector.epochs,
                                  **params, "seed": seed}).fit(images[idx], grids)
                secs.append(time.perf_counter() - t0)
                ious.append(refined_iou(images, det.predict_proba(images), seg, pipe.separation.refine, thr))
                accs.append(det.holdout_balanced_accuracy_ or float("nan"))
            print(f"| {name} | {text.partition('=')[2] or 'library defaults'} | {np.mean(ious):.3f} ± {np.std(ious):.3f} "
                  f"| {np.mean(accs):.3f} | {np.mean(secs):.0f} |", flush=True)


if __name__ == "__main__":
    main()
