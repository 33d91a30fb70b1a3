"""The reference's ablation at the mask level: patch grid x labelled images, the refined-mask IoU as a heat map.

One ``autobackswap:grid=G:label_budget=N`` cell per grid and budget (the paper: a 4x4 grid fell to 51.4 WGA on
Waterbirds; 50 labels kept 89.3 of 92.6). Each cell fits the detector and separates the train split of TuxBirds
``seen`` (64 px) without training a classifier (minutes, not hours), and scores the refined masks against the
ground truth (mean over seeds). The heat map goes to ``docs/img/grid_labels_iou_tuxbirds.png``; detectors and
separations are cached under the study's run folder, so a rerun reads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from autobackswap.data.splits import ExperimentData, load_experiment_data
from autobackswap.methods.base import parse_method_spec
from autobackswap.pipeline import PipelineConfig, run_separation

from . import ROOT, Context, Measured, Study, Table, register, seeds_text
from .photos import PHOTO_CODE, tuxbirds

DEFAULT_GRID = 16


def cell_spec(grid: int, budget: int, options: str) -> str:
    return f"autobackswap:grid={grid}:label_budget={budget}" + (f":{options}" if options else "")


def iou_cell(data: ExperimentData, grid: int, budget: int, options: str, seeds: list[int]) -> float:
    """Mean over ``seeds`` of the refined-mask IoU of the cell's detector and separation (no classifier)."""
    opts = {**parse_method_spec(cell_spec(grid, budget, options))[1], "allow_bad_separation": True}
    ious = [run_separation(data, PipelineConfig.from_options(opts), seed).info["mask_iou"] for seed in seeds]
    return float(np.mean(ious))


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


def plot(values: np.ndarray, grids: list[int], budgets: list[int], title: str, path: Path) -> None:
    fig = Figure(figsize=(5, 3.8))
    heat_map(fig.subplots(1, 1), values, grids, budgets, title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


@register
class GridLabels(Study):
    name = "grid-labels"
    title = "Grid × labelled images (mask IoU)"
    about = ("the refined-mask IoU of the detector and separation (no classifier) for every patch grid 4, 8, 16, 32 "
             "x labelled images 25-400 on TuxBirds seen at 64 px")
    seeds = [0]
    depends = PHOTO_CODE
    # What the sweep runs on; a test sets these on an instance. data None: TuxBirds seen at image_size.
    data: Path | None = None
    image_size = 64
    options = ""  # autobackswap options for every cell, e.g. "detector_epochs=50" (several: a:b)
    grids = [4, 8, 16, 32]
    labels = [25, 50, 100, 200, 400]
    quick_grids = [4, 16]
    quick_labels = [50, 200]
    figure = "docs/img/grid_labels_iou_tuxbirds.png"  # relative to the repository root, or absolute

    def measure(self, ctx: Context) -> Measured:
        data_dir = self.data or tuxbirds(1.0, self.image_size)["seen"]
        grids, budgets = (self.quick_grids, self.quick_labels) if ctx.quick else (self.grids, self.labels)
        data = load_experiment_data(data_dir, self.image_size, ctx.out.resolve() / "separations")
        iou = np.array([[iou_cell(data, g, n, self.options, ctx.seeds)
                         for n in budgets] for g in grids])
        where = "TuxBirds seen" if self.data is None else Path(data_dir).name
        setting = f"{where}, {self.image_size} px, {seeds_text(ctx.seeds)}"
        figure = ROOT / self.figure
        plot(iou, grids, budgets, f"refined-mask IoU ({setting})", figure)
        rows = [[f"{g}×{g}" + (" (the default)" if g == DEFAULT_GRID else ""), *(f"{v:.3f}" for v in iou[i])]
                for i, g in enumerate(grids)]
        table = Table(["grid \\ labelled images", *map(str, budgets)], rows,
                      f"Refined-mask IoU against the ground truth per patch grid and label budget, {setting}, the "
                      f"default detector{', ' + self.options if self.options else ''} (no classifier)")
        image = str(figure.relative_to(ROOT)) if figure.is_relative_to(ROOT) else str(figure)
        return Measured({"main": table}, images=[image])
