"""The reference's ablation: patch grid x labelled images, worst-group accuracy (and mask IoU) as heat maps.

    python benchmarks/bench_grid_labels.py --epochs 60 --augment color --options bg_shuffle=true   # TuxBirds seen
    python benchmarks/bench_grid_labels.py --iou-only            # detector + separation only: mask IoU per cell

One ``autobackswap:grid=G:label_budget=N`` run per cell and seed (the paper: a 4x4 grid fell to 51.4 WGA
on Waterbirds; 50 labels kept 89.3 of 92.6). ``--iou-only`` fits the detector and separates the train
split per cell without training a classifier (minutes, not hours). Writes ``OUT/grid_labels.png``
(WGA and mask IoU heat maps, mean over seeds), ``OUT/grid_labels.md`` and ``OUT/grid_labels.json``;
each cell's experiment folder is read, not retrained, when it holds a finished run.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from _common import run_or_reuse, synthetic, tuxbirds
from matplotlib.figure import Figure

from autobackswap.data.splits import load_experiment_data
from autobackswap.experiment import ExperimentConfig
from autobackswap.io import write_text
from autobackswap.methods.base import parse_method_spec
from autobackswap.pipeline import PipelineConfig, run_separation
from autobackswap.train.loop import TrainConfig


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def cell_spec(grid: int, budget: int, options: str) -> str:
    return f"autobackswap:grid={grid}:label_budget={budget}" + (f":{options}" if options else "")


def classifier_cell(args: argparse.Namespace, data_dir: Path, out: Path, grid: int, budget: int) -> dict[str, Any]:
    spec = cell_spec(grid, budget, args.options)
    cfg = ExperimentConfig(data=str(data_dir), methods=[spec], seeds=ints(args.seeds), image_size=args.image_size,
                           train=TrainConfig(epochs=args.epochs, augment=args.augment), save_models=False,
                           method_options={"allow_bad_separation": True}, diagnostics=False, report=False)
    m = run_or_reuse(out / f"g{grid}_n{budget}", cfg)["methods"][spec]
    return {"wga": m["test"]["worst_group_accuracy"], "wga_std": m["test"]["std"]["worst_group_accuracy"],
            "avg": m["test"]["average_accuracy"], "iou": m.get("mask_iou", float("nan"))}


def iou_cell(args: argparse.Namespace, data_dir: Path, out: Path, grid: int, budget: int) -> dict[str, Any]:
    data = load_experiment_data(data_dir, args.image_size, out / "separations")
    options = {**parse_method_spec(cell_spec(grid, budget, args.options))[1], "allow_bad_separation": True}
    ious = [run_separation(data, PipelineConfig.from_options(options), seed).info["mask_iou"] for seed in ints(args.seeds)]
    return {"wga": float("nan"), "wga_std": float("nan"), "avg": float("nan"), "iou": float(np.mean(ious))}


def heat_map(ax: Any, values: np.ndarray, grids: list[int], budgets: list[int], title: str) -> None:
    ax.imshow(values, vmin=0, vmax=1, cmap="viridis", origin="lower", aspect="auto")
    ax.set_xticks(range(len(budgets)), [str(b) for b in budgets])
    ax.set_yticks(range(len(grids)), [f"{g}x{g}" for g in grids])
    ax.set_xlabel("labelled images")
    ax.set_ylabel("patch grid")
    ax.set_title(title, fontsize=9)
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="white" if v < 0.6 else "black")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="tuxbirds", help="tuxbirds (seen), synthetic or a dataset folder")
    ap.add_argument("--grids", default="4,8,16,32")
    ap.add_argument("--labels", default="25,50,100,200,400", help="labelled-image budgets")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--augment", default="", help="classifier batch augmentations, e.g. color")
    ap.add_argument("--options", default="", help="autobackswap options for every cell, e.g. bg_shuffle=true (several: a:b)")
    ap.add_argument("--iou-only", action="store_true", help="detector and separation only: mask IoU, no classifier")
    ap.add_argument("--out", default="runs/bench/grid_labels")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    grids, budgets = ints(args.grids), ints(args.labels)
    sources = {"synthetic": lambda: synthetic(),
               "tuxbirds": lambda: tuxbirds(Path("runs/bench/tuxbirds_data"), 1.0, 0, args.image_size)["seen"]}
    data_dir = sources[args.data]() if args.data in sources else Path(args.data)
    out = Path(args.out).resolve()
    cell = iou_cell if args.iou_only else classifier_cell
    rows = []
    print("| grid | labels | WGA | average acc. | mask IoU |\n|---|---|---|---|---|", flush=True)
    for grid in grids:
        for budget in budgets:
            rows.append({"grid": grid, "labels": budget, **cell(args, data_dir, out, grid, budget)})
            r = rows[-1]
            print(f"| {grid} | {budget} | {r['wga']:.3f} ± {r['wga_std']:.3f} | {r['avg']:.3f} | {r['iou']:.3f} |",
                  flush=True)
    wga = np.array([[r["wga"] for r in rows if r["grid"] == g] for g in grids])
    iou = np.array([[r["iou"] for r in rows if r["grid"] == g] for g in grids])
    setting = f"{data_dir.name}, seeds {args.seeds}" + ("" if args.iou_only else f", {args.epochs} epochs")
    maps = [] if args.iou_only else [(wga, f"worst-group accuracy ({setting})")]
    maps.append((iou, f"refined-mask IoU ({setting})"))
    fig = Figure(figsize=(5 * len(maps), 3.8))
    for ax, (values, title) in zip(fig.subplots(1, len(maps), squeeze=False)[0], maps, strict=True):
        heat_map(ax, values, grids, budgets, title)
    fig.tight_layout()
    fig.savefig(out / "grid_labels.png", dpi=110)
    (out / "grid_labels.json").write_text(json.dumps(rows, indent=1))
    write_text(out / "grid_labels.md", "| grid | labels | WGA | WGA std | average acc. | mask IoU |\n|---|---|---|---|---|---|\n"
               + "".join(f"| {r['grid']} | {r['labels']} | {r['wga']:.3f} | {r['wga_std']:.3f} | {r['avg']:.3f} | "
                         f"{r['iou']:.3f} |\n" for r in rows))
    print(f"figure: {out / 'grid_labels.png'}")


if __name__ == "__main__":
    main()
