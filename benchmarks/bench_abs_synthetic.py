"""Targets on the synthetic benchmark (train correlation 1.0), mean over seeds.

    python benchmarks/bench_abs_synthetic.py            # 3 seeds, 2000 train images, 64 px, 10 epochs

Prints WGA (mean ± std) of ERM, AutoBackSwap with 200 and 50 labels and the oracle, the mask IoU,
and the AutoBackSwap ÷ ERM epoch-time ratio measured inside the same run.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
from _common import add_pipeline_args, pipeline_options, synthetic

from autobackswap.experiment import ExperimentConfig, run_experiment
from autobackswap.train.loop import TrainConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", default="runs/bench/abs_synthetic")
    add_pipeline_args(ap)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data = synthetic(n_train=args.n_train)
    methods = ["erm", "autobackswap", "autobackswap:label_budget=50", "oracle"]
    cfg = ExperimentConfig(data=str(data), methods=methods, seeds=[int(s) for s in args.seeds.split(",")],
                           train=TrainConfig(epochs=args.epochs), save_models=False,
                           method_options=pipeline_options(args))
    results = run_experiment(cfg, args.out)
    m = results["methods"]
    wga = {k: (v["test"]["worst_group_accuracy"], v["test"]["std"]["worst_group_accuracy"]) for k, v in m.items()}
    print(f"synthetic, correlation 1.0, seeds {args.seeds}, {args.n_train} train images, {args.epochs} epochs")
    print("| measure | value | target |\n|---|---|---|")
    print(f"| ERM WGA | {wga['erm'][0]:.3f} ± {wga['erm'][1]:.3f} | ≤ 0.25 |")
    print(f"| autobackswap WGA, 200 labels | {wga['autobackswap'][0]:.3f} ± {wga['autobackswap'][1]:.3f} | ≥ 0.93 |")
    print(f"| oracle WGA | {wga['oracle'][0]:.3f} ± {wga['oracle'][1]:.3f} | |")
    print(f"| autobackswap − oracle | {wga['autobackswap'][0] - wga['oracle'][0]:+.3f} | ≥ −0.03 |")
    print(f"| autobackswap WGA, 50 labels | {wga['autobackswap:label_budget=50'][0]:.3f} ± "
          f"{wga['autobackswap:label_budget=50'][1]:.3f} | ≥ 0.90 |")
    print(f"| mask IoU (200 / 50 labels) | {m['autobackswap'].get('mask_iou', float('nan')):.3f} / "
          f"{m['autobackswap:label_budget=50'].get('mask_iou', float('nan')):.3f} | ≥ 0.85 |")
    erm_epoch = np.mean([np.median(r["epoch_seconds"]) for r in m["erm"]["runs"]])
    abs_epoch = np.mean([np.median(r["epoch_seconds"]) for r in m["autobackswap"]["runs"]])
    print(f"| median epoch time autobackswap ÷ ERM | {abs_epoch / erm_epoch:.2f} | ≤ 1.2 |")


if __name__ == "__main__":
    main()
