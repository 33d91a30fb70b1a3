"""Which fill should be the default: worst-group accuracy against cost for every registered inpainter.

For each inpainter, ``autobackswap:inpainter=NAME`` with the same detector, masks and training; the inpainting
cost in ms per image on the real holes, and that cost for the whole train split as a share of the method's
training time. The rule that picks a default: the highest mean WGA; inpainters within one standard error of it
are ties, broken by the lower cost. The standard error is the larger of the across-seed one and the binomial one
of the worst group (sqrt(p(1-p)/n), at least 1/n), so one seed does not make every one-image difference decisive.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from autobackswap.data.splits import ExperimentData, load_experiment_data
from autobackswap.experiment import ExperimentConfig
from autobackswap.pipeline import PipelineConfig, fit_detector
from autobackswap.separate.inpaint import INPAINTERS, create_inpainter
from autobackswap.separate.masks import create_refiner
from autobackswap.separate.run import masks_from_grid
from autobackswap.train.loop import TrainConfig

from . import Context, Measured, Study, Table, register, seeds_text
from .synthetic import EPOCHS, SYNTHETIC_CODE, synthetic_data


def inpaint_ms(data: ExperimentData, names: list[str], n: int = 200) -> dict[str, float]:
    """Milliseconds per image of each inpainter on the holes the default separation makes."""
    cfg = PipelineConfig()
    det, _ = fit_detector(data, cfg, seed=0, cache_dir=data.run_dir / "detectors")
    images = data.train.images[:n]
    n = len(images)
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


def standard_error(entry: dict[str, Any], seeds: int) -> float:
    wga, std = entry["test"]["worst_group_accuracy"], entry["test"]["std"]["worst_group_accuracy"]
    n_worst = min(g["n"] for g in entry["test"]["groups"])
    binomial = max((wga * (1 - wga) / n_worst) ** 0.5, 1 / n_worst)
    return max(std / max(1, seeds) ** 0.5, binomial)


@register
class Inpainters(Study):
    name = "inpainters"
    title = "Inpainters"
    about = "autobackswap with every registered inpainter on the hard synthetic set: WGA, cost, the rule's choice"
    seeds = [0, 1, 2]
    depends = (*SYNTHETIC_CODE, "src/autobackswap/separate/inpaint.py")

    def measure(self, ctx: Context) -> Measured:
        names = INPAINTERS.names()
        data_dir = synthetic_data("hard", n_train=600 if ctx.quick else 2000)
        data = load_experiment_data(data_dir, 64, ctx.out / "data")
        cost = inpaint_ms(data, names)
        epochs = 5 if ctx.quick else EPOCHS
        cfg = ExperimentConfig(data=str(data_dir), methods=[f"autobackswap:inpainter={n}" for n in names],
                               seeds=ctx.seeds, train=TrainConfig(epochs=epochs), save_models=False, diagnostics=False)
        results = ctx.experiment("runs", cfg)
        rows = []
        for n in names:
            e = results["methods"][f"autobackswap:inpainter={n}"]
            share = cost[n] * len(data.train) / 1000 / e["train_seconds"]
            rows.append((n, e["test"]["worst_group_accuracy"], standard_error(e, len(ctx.seeds)), cost[n], share))
        best = max(r[1] for r in rows)
        best_se = next(r[2] for r in rows if r[1] == best)
        ties = [r for r in rows if r[1] >= best - max(best_se, 1e-9)]
        choice = min(ties, key=lambda r: r[3])[0]
        verdict = (f"every inpainter is within one standard error of the best: this set cannot choose (the cheapest "
                   f"is {choice})" if len(ties) == len(rows) else
                   f"the rule (best WGA, ties within one standard error broken by cost) chooses {choice}")
        table = Table(["inpainter", "WGA", "standard error", "ms / image", "share of training time"],
                      [[n, f"{w:.3f}", f"{se:.3f}", f"{ms:.2f}", f"{sh:.1%}"] for n, w, se, ms, sh in
                       sorted(rows, key=lambda r: -r[1])],
                      f"autobackswap:inpainter=NAME on the hard synthetic set, 64 px, {epochs} epochs, "
                      f"{seeds_text(ctx.seeds)}", [verdict])
        return Measured({"main": table}, {"choice": choice})
