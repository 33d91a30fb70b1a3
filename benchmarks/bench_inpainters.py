"""Which inpainter should be the default? WGA against cost, on the synthetic benchmark.

    python benchmarks/bench_inpainters.py                 # every registered inpainter, seeds 0,1,2
    python benchmarks/bench_inpainters.py --seeds 0 --inpainters telea,gray,patchmatch

For each inpainter: the mean worst-group accuracy of ``autobackswap:inpainter=NAME`` (the same detector,
masks and training for all), the inpainting cost in ms per 64 px image on the real holes, and that cost
for the whole train split as a share of the method's training time. The rule that picks the default:
the highest mean WGA; inpainters within one standard error of it are ties, broken by the lower cost.
The standard error is the larger of the across-seed one and the binomial one of the worst group
(sqrt(p(1-p)/n), at least 1/n), so one seed does not make every 1-image difference decisive. When every
inpainter ties, the script says that this dataset cannot choose (``--data`` runs it on another dataset,
e.g. TuxBirds).
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
from _common import add_pipeline_args, pipeline_options, synthetic

from autobackswap.data.splits import load_experiment_data
from autobackswap.experiment import ExperimentConfig, run_experiment
from autobackswap.pipeline import PipelineConfig, fit_detector
from autobackswap.separate.inpaint import INPAINTERS, create_inpainter
from autobackswap.separate.masks import create_refiner
from autobackswap.separate.run import masks_from_grid
from autobackswap.train.loop import TrainConfig


def inpaint_ms(data, names: list[str], options: dict, n: int = 200) -> dict[str, float]:
    cfg = PipelineConfig.from_options(options)
    det, _ = fit_detector(data, cfg, seed=0, cache_dir=data.run_dir / "detectors")
    images = data.train.images[:n]
    n = len(images)  # fewer when the train split is smaller
    p_fg = det.predict_proba(images)
    refine = create_refiner(cfg.separation.refine)
    holes = [masks_from_grid(images[i], p_fg[i], cfg.separation_config(0), refine)[1] for i in range(n)]
    out = {}
    for name in names:
        fn = create_inpainter(name)
        t0 = time.perf_counter()
        for i in range(n):
            fn(images[i], holes[i], np.random.default_rng(i))
        out[name] = (time.perf_counter() - t0) / n * 1000
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--inpainters", default=",".join(INPAINTERS.names()))
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", default="runs/bench/inpainters")
    ap.add_argument("--data", default=None, help="a dataset in the Waterbirds layout (default: the synthetic set)")
    add_pipeline_args(ap)  # --inpainter is overridden by each row's own
    args = ap.parse_args()
    options = pipeline_options(args)
    logging.basicConfig(level=logging.WARNING)
    names = args.inpainters.split(",")
    data_dir = args.data or synthetic(n_train=args.n_train)
    seeds = [int(s) for s in args.seeds.split(",")]
    data = load_experiment_data(data_dir, 64, args.out)
    cost = inpaint_ms(data, names, options)
    cfg = ExperimentConfig(data=str(data_dir), methods=[f"autobackswap:inpainter={n}" for n in names], seeds=seeds,
                           train=TrainConfig(epochs=args.epochs), save_models=False,
                           method_options=options)
    results = run_experiment(cfg, args.out, data=data)
    rows = []
    for n in names:
        e = results["methods"][f"autobackswap:inpainter={n}"]
        wga, std = e["test"]["worst_group_accuracy"], e["test"]["std"]["worst_group_accuracy"]
        share = cost[n] * len(data.train) / 1000 / e["train_seconds"]
        n_worst = min(g["n"] for g in e["test"]["groups"])
        binomial = max((wga * (1 - wga) / n_worst) ** 0.5, 1 / n_worst)
        rows.append((n, wga, max(std / max(1, len(seeds)) ** 0.5, binomial), cost[n], share))
    best = max(r[1] for r in rows)
    best_se = next(r[2] for r in rows if r[1] == best)
    ties = [r for r in rows if r[1] >= best - max(best_se, 1e-9)]
    choice = min(ties, key=lambda r: r[3])[0]
    print(f"{data_dir}, seeds {args.seeds}, {args.n_train} train images, {args.epochs} epochs")
    print("| inpainter | WGA (mean) | std error | ms / image | share of training time |\n|---|---|---|---|---|")
    for n, wga, se, ms, share in sorted(rows, key=lambda r: -r[1]):
        print(f"| {n} | {wga:.3f} | {se:.3f} | {ms:.2f} | {share:.1%} |")
    if len(ties) == len(rows):
        print(f"\nevery inpainter is within one standard error of the best WGA: this dataset cannot choose "
              f"between them (the cheapest is {choice}); run it on real photos with --data")
    else:
        print(f"\nchosen by the rule (best WGA, ties within one std error broken by cost): {choice}")


if __name__ == "__main__":
    main()
