"""Mask-error sensitivity: how worst-group accuracy falls as the separation gets worse.

Starts from the ground-truth masks of the train split, injects one kind of error at a few strengths, and trains
as the oracle does (the same swaps, inpainter and classifier; only the masks differ). The kinds (``errors``,
``kind:strength,strength`` items):

* ``erode`` / ``dilate`` by k px: the cut-out loses object, or carries background with it (the rim);
* ``drop_fg`` / ``add_bg``: a fraction of the foreground patches (16x16 grid) dropped, or of the
  background patches added, whole patches, as a patch detector errs;
* ``empty`` / ``full`` / ``other``: a fraction of the images get an empty mask, a full mask, or the mask
  of another image (whole-image failures);
* ``label_noise``: not the oracle: the learned detector, trained on patch labels of which this fraction
  was flipped (the label sample and budget of the pipeline's defaults).

Each condition's masks are drawn once (``corruption_seed``) and the classifier trains with every seed. The clean
condition trains the oracle and the learned detector (``autobackswap``), whose point goes on the same axes. The
table has one row per condition (mean ± std over seeds of WGA and average accuracy, the mask IoU against the
ground truth, and the share of cut-out pixels that are background in the ground truth); the figure
(``docs/img/mask_errors_synthetic.png``) plots accuracy against mask IoU and against the rim. A condition whose
folder holds a finished ``results.json`` with the same settings is read, not retrained.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from matplotlib.figure import Figure

from autobackswap.data.grid import grid_to_string, mask_to_grid
from autobackswap.data.splits import ExperimentData, load_experiment_data
from autobackswap.detect.labels import patch_labels
from autobackswap.experiment import ExperimentConfig, run_experiment
from autobackswap.io import csv_bytes, write_bytes
from autobackswap.pipeline import PipelineConfig
from autobackswap.train.loop import TrainConfig

from . import ROOT, Context, Measured, Study, Table, register, seeds_text
from .synthetic import EPOCHS, SYNTHETIC_CODE, synthetic_data

GRID = 16
Corruption = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


def _disk(k: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))


def erode(masks: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
    return np.stack([cv2.erode(m, _disk(int(k))) for m in masks])


def dilate(masks: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
    return np.stack([cv2.dilate(m, _disk(int(k))) for m in masks])


def _patch_pixels(mask: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """A pixel mask of the chosen (G, G) bool cells at ``mask``'s size."""
    h, w = mask.shape
    rows, cols = np.arange(h) * GRID // h, np.arange(w) * GRID // w
    return cells[rows][:, cols]


def _flip_patches(masks: np.ndarray, frac: float, rng: np.random.Generator, of_fg: bool) -> np.ndarray:
    """Set a fraction ``frac`` of each image's foreground patches (``of_fg``) to background, or of its
    background patches (patches without a foreground pixel) to foreground."""
    out = masks.copy()
    for i, m in enumerate(masks):
        any_fg = mask_to_grid(m, GRID, 0.0)  # a patch with any foreground pixel
        pool = np.flatnonzero(any_fg.ravel() if of_fg else ~any_fg.ravel())
        chosen = np.zeros(GRID * GRID, bool)
        chosen[rng.choice(pool, int(round(frac * len(pool))), replace=False)] = True
        out[i][_patch_pixels(m, chosen.reshape(GRID, GRID))] = 0 if of_fg else 255
    return out


def drop_fg(masks: np.ndarray, frac: float, rng: np.random.Generator) -> np.ndarray:
    return _flip_patches(masks, frac, rng, of_fg=True)


def add_bg(masks: np.ndarray, frac: float, rng: np.random.Generator) -> np.ndarray:
    return _flip_patches(masks, frac, rng, of_fg=False)


def _some_images(n: int, frac: float, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, int(round(frac * n)), replace=False))


def empty(masks: np.ndarray, frac: float, rng: np.random.Generator) -> np.ndarray:
    out = masks.copy()
    out[_some_images(len(masks), frac, rng)] = 0
    return out


def full(masks: np.ndarray, frac: float, rng: np.random.Generator) -> np.ndarray:
    out = masks.copy()
    out[_some_images(len(masks), frac, rng)] = 255
    return out


def other(masks: np.ndarray, frac: float, rng: np.random.Generator) -> np.ndarray:
    """The chosen images get the mask of another chosen image (a cyclic shift of a random order)."""
    out = masks.copy()
    chosen = rng.permutation(_some_images(len(masks), frac, rng))
    out[chosen] = masks[np.roll(chosen, 1)]
    return out


CORRUPTIONS: dict[str, Corruption] = {"erode": erode, "dilate": dilate, "drop_fg": drop_fg, "add_bg": add_bg,
                                      "empty": empty, "full": full, "other": other}
KINDS = (*CORRUPTIONS, "label_noise")
DEFAULT_ERRORS = ("erode:1,2,4", "dilate:1,2,4", "drop_fg:0.1,0.25,0.5", "add_bg:0.05,0.15", "empty:0.1,0.3",
                  "full:0.1,0.3", "other:0.1,0.3", "label_noise:0.05,0.1,0.2")
QUICK_ERRORS = ("erode:2", "dilate:1", "drop_fg:0.25", "add_bg:0.05", "empty:0.3", "full:0.3", "other:0.3",
                "label_noise:0.1")  # one strength per kind


def parse_errors(items: list[str] | tuple[str, ...]) -> list[tuple[str, float]]:
    """``kind:s1,s2`` items -> [(kind, strength), ...]; an unknown kind or a bad strength raises a ValueError."""
    out = []
    for item in items:
        kind, _, values = item.partition(":")
        if kind not in KINDS:
            raise ValueError(f"mask error {item!r}: unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}")
        try:
            strengths = [float(v) for v in values.split(",") if v]
        except ValueError:
            raise ValueError(f"mask error {item!r}: strengths must be numbers, e.g. {kind}:0.1,0.2") from None
        if not strengths or any(s < 0 or (kind not in ("erode", "dilate") and s > 1) for s in strengths):
            raise ValueError(f"mask error {item!r}: give strengths (px for erode/dilate, else fractions in [0, 1])")
        out += [(kind, s) for s in strengths]
    return out


def mask_quality(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(mean pixel IoU over images, share of predicted-foreground pixels that are ground-truth background)
    for (N, H, W) masks (> 127 = foreground); an image where both are empty counts IoU 1."""
    p, t = pred > 127, truth > 127
    inter = (p & t).reshape(len(p), -1).sum(1)
    union = (p | t).reshape(len(p), -1).sum(1)
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    rim = float((p & ~t).sum() / max(1, p.sum()))
    return float(iou.mean()), rim


def corrupted_data(data: ExperimentData, masks: np.ndarray) -> ExperimentData:
    """``data`` whose train split's ground-truth masks are ``masks`` (everything else shared)."""
    train = dataclasses.replace(data.train)
    train.segmentations = masks  # a cached_property: the instance attribute is what the oracle reads
    return dataclasses.replace(data, train=train)


def noisy_labels(data: ExperimentData, frac: float, seed: int, out: Path) -> Path:
    """A masks.csv with the pipeline's default label sample, a fraction ``frac`` of its patches flipped."""
    pipe = PipelineConfig()
    idx, grids = patch_labels(data.dataset, data.train.records, data.image_size, pipe.detector.grid, None,
                              pipe.label_budget, pipe.label_threshold, 0)
    rng = np.random.default_rng(seed)
    flip = rng.random(grids.shape) < frac
    rows = [{"info": data.train.records[i].img_filename, "mask": grid_to_string(g ^ f)}
            for i, g, f in zip(idx, grids, flip, strict=True)]
    path = out / "masks.csv"
    write_bytes(path, csv_bytes(rows))
    return path


def point(results: dict[str, Any], spec: str, iou: float | None, rim: float | None) -> dict[str, Any]:
    """One row of the figure: WGA / average accuracy (mean, std over seeds) and the mask figures."""
    m = results["methods"][spec]
    test, std = m["test"], m["test"]["std"]
    return {"wga": test["worst_group_accuracy"], "wga_std": std["worst_group_accuracy"],
            "avg": test["average_accuracy"], "avg_std": std["average_accuracy"],
            "iou": m.get("mask_iou") if iou is None else iou, "rim": m.get("mask_bg_share") if rim is None else rim,
            "seeds": len(m["runs"])}


def method_spec(name: str, options: str) -> str:
    return f"{name}:{options}" if options else name


def reuse_or_run(folder: Path, cfg: ExperimentConfig, data: ExperimentData) -> dict[str, Any]:
    """The results in ``folder`` when a finished experiment there had exactly ``cfg`` (read, not retrained),
    else run ``cfg`` there on ``data``."""
    path = folder / "results.json"
    if path.is_file():
        results = json.loads(path.read_text())
        wanted = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
        if results.get("complete") and results.get("config") == wanted:
            return results
    return run_experiment(cfg, folder, data=data)


@dataclasses.dataclass
class Settings:
    """One sweep: the data, the injected errors, the classifier training and the methods' options."""

    data: Path
    errors: tuple[str, ...]
    seeds: list[int]
    epochs: int
    image_size: int = 64
    augment: str = ""  # classifier batch augmentations, e.g. color
    options: str = ""  # method options of the oracle and autobackswap (a spec suffix), e.g. bg_shuffle=true
    corruption_seed: int = 0

    def experiment(self, methods: list[str], options: dict[str, Any]) -> ExperimentConfig:
        return ExperimentConfig(data=str(self.data), methods=methods, seeds=self.seeds, image_size=self.image_size,
                                train=TrainConfig(epochs=self.epochs, augment=self.augment), save_models=False,
                                method_options={"allow_bad_separation": True, **options}, diagnostics=False,
                                report=False)


def measure_conditions(s: Settings, out: Path) -> list[dict[str, Any]]:
    """Every condition's row: the clean oracle and learned detector, then each (kind, strength), each condition
    in its own folder under ``out``."""
    parse_errors(s.errors)  # a bad item fails before any training
    data = load_experiment_data(s.data, s.image_size, out)
    truth = data.train.segmentations
    oracle, learned = method_spec("oracle", s.options), method_spec("autobackswap", s.options)
    clean = reuse_or_run(out / "clean", s.experiment([oracle, learned], {}), data)
    rows = [{"kind": "none", "strength": 0.0, **point(clean, oracle, 1.0, 0.0)},
            {"kind": "learned", "strength": 0.0, **point(clean, learned, None, None)}]
    for kind, strength in parse_errors(s.errors):
        folder = out / f"{kind}_{strength:g}"
        if kind == "label_noise":
            folder.mkdir(parents=True, exist_ok=True)
            labels = noisy_labels(data, strength, s.corruption_seed, folder)
            results = reuse_or_run(folder, s.experiment([learned], {"labels": str(labels)}), data)
            rows.append({"kind": kind, "strength": strength, **point(results, learned, None, None)})
        else:
            masks = CORRUPTIONS[kind](truth, strength, np.random.default_rng(s.corruption_seed))
            iou, rim = mask_quality(masks, truth)
            results = reuse_or_run(folder, s.experiment([oracle], {}), corrupted_data(data, masks))
            rows.append({"kind": kind, "strength": strength, **point(results, oracle, iou, rim)})
    return rows


def condition_name(kind: str) -> str:
    return {"none": "none: ground truth (the oracle)", "learned": "none: the learned detector (autobackswap)"}.get(
        kind, kind)


def table_cells(r: dict[str, Any]) -> list[str]:
    rim = "-" if r["rim"] is None else f"{r['rim']:.3f}"
    iou = "-" if r["iou"] is None else f"{r['iou']:.3f}"
    strength = "" if r["kind"] in ("none", "learned") else f"{r['strength']:g}"
    return [condition_name(r["kind"]), strength, iou, rim, f"{r['wga']:.3f} ± {r['wga_std']:.3f}",
            f"{r['avg']:.3f} ± {r['avg_std']:.3f}", str(r["seeds"])]


HEADER = ["error", "strength", "mask IoU", "bg share of cut-out", "WGA", "average accuracy", "seeds"]


def plot(rows: list[dict[str, Any]], title: str, path: Path) -> None:
    """Worst-group and average accuracy against mask IoU, and worst-group accuracy against the rim (the share
    of cut-out pixels on ground-truth background): a series per error kind, the clean oracle and the learned
    detector as marked points."""
    fig = Figure(figsize=(15, 4.4))
    axes = fig.subplots(1, 3)
    panels = (("iou", "wga", "mask IoU against the ground truth", "worst-group accuracy"),
              ("iou", "avg", "mask IoU against the ground truth", "average accuracy"),
              ("rim", "wga", "share of the cut-out on ground-truth background", "worst-group accuracy"))
    for ax, (x, y, x_name, y_name) in zip(axes, panels, strict=True):
        for kind in KINDS:
            pts = sorted((r for r in rows if r["kind"] == kind and r[x] is not None), key=lambda r: r[x])
            if pts:
                ax.errorbar([p[x] for p in pts], [p[y] for p in pts], [p[f"{y}_std"] for p in pts],
                            marker="o", ms=5, capsize=2, label=kind, color=f"C{KINDS.index(kind)}")
        for kind, marker, colour in (("none", "s", "black"), ("learned", "*", "red")):
            for r in (r for r in rows if r["kind"] == kind and r[x] is not None):
                ax.errorbar([r[x]], [r[y]], [r[f"{y}_std"]], marker=marker, ms=11, color=colour, capsize=2,
                            label="ground truth" if kind == "none" else "learned detector", zorder=5)
        ax.set_xlabel(x_name)
        ax.set_ylabel(y_name)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


@register
class MaskErrors(Study):
    name = "mask-errors"
    title = "When the separator fails: injected mask errors"
    about = ("the oracle trained on ground-truth masks with one injected error (erode, dilate, patches dropped or "
             "added, empty / full / another image's masks, flipped patch labels) at a few strengths, on the hard "
             f"synthetic set, {EPOCHS} epochs: WGA against mask IoU and the rim")
    seeds = [0, 1]
    quick_seeds = [0]
    depends = SYNTHETIC_CODE
    # What the sweep runs on; a test (or a variant) sets these on an instance. data None: the hard synthetic set.
    data: Path | None = None
    image_size = 64
    options = ""  # method options of the oracle and autobackswap, e.g. "bg_shuffle=true"
    errors: tuple[str, ...] = DEFAULT_ERRORS
    quick_errors: tuple[str, ...] = QUICK_ERRORS
    figure = "docs/img/mask_errors_synthetic.png"  # relative to the repository root, or absolute

    def measure(self, ctx: Context) -> Measured:
        data = self.data or synthetic_data("hard", n_train=600 if ctx.quick else 2000, image_size=self.image_size)
        s = Settings(data=Path(data), errors=self.quick_errors if ctx.quick else self.errors, seeds=ctx.seeds,
                     epochs=5 if ctx.quick else EPOCHS, image_size=self.image_size, options=self.options)
        rows = measure_conditions(s, ctx.out.resolve())
        where = "the hard synthetic set" if self.data is None else Path(data).name
        setting = (f"{where}, {s.image_size} px, oracle with injected mask errors, {s.epochs} epochs, "
                   f"{seeds_text(ctx.seeds)}{', ' + s.options if s.options else ''}")
        figure = ROOT / self.figure
        plot(rows, setting, figure)
        table = Table(HEADER, [table_cells(r) for r in rows], setting[0].upper() + setting[1:] + "; test split",
                      ["bg share of cut-out: the share of the cut-out pixels on ground-truth background (the rim); "
                       "label_noise trains the learned detector on patch labels of which that fraction was flipped"])
        image = str(figure.relative_to(ROOT)) if figure.is_relative_to(ROOT) else str(figure)
        return Measured({"main": table}, images=[image])
