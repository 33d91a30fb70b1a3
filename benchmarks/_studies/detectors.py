"""The detector on photos: refined-mask IoU, the rim and the object kept over the whole TuxBirds train split.

Each detector is trained on the same seeded sample of 200 labelled images (the pipeline's) and scores the
refined masks of all 2000 training images against the ground truth: the built-in ``fcn`` from scratch, the
paper's design on the offline pretrained EfficientNet-Lite0 (pooled features -> MLP -> G x G), the same backbone's
deepest map (``timm-map``) and its last three maps fused at the grid (``timm-fpn``, the photos-cpu recipe's). The
ceiling is the refiner fed the ground-truth label grid: what a perfect patch detector would give.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from autobackswap.data.grid import mask_to_grid
from autobackswap.data.splits import load_experiment_data
from autobackswap.detect import Detector, patch_labels
from autobackswap.pipeline import PipelineConfig
from autobackswap.recipes import load_recipe
from autobackswap.separate.masks import bg_share, create_refiner, fg_kept, pixel_iou
from autobackswap.settings import resolve

from . import Context, Measured, Study, Table, fmt, register, seeds_text
from .photos import PHOTO_CODE, tuxbirds

TAG = "tf_efficientnet_lite0.in1k"


def mask_scores(images: np.ndarray, p_fg: np.ndarray, seg: np.ndarray, refine: str, t_tight: float) -> tuple[float, ...]:
    """(mean IoU, mean rim, mean object kept) of the refined cut-outs (foreground where p_bg < t_tight)."""
    refiner = create_refiner(refine)
    ious, rims, kept = [], [], []
    for i in range(len(seg)):
        alpha = refiner(images[i], p_fg[i], 1.0 - t_tight)
        ious.append(pixel_iou(alpha, seg[i]))
        rims += [v for v in [bg_share(alpha, seg[i])] if v is not None]
        kept += [v for v in [fg_kept(alpha, seg[i])] if v is not None]
    return float(np.mean(ious)), float(np.mean(rims)), float(np.mean(kept))


def variants(recipe_detector: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name -> DetectorConfig fields over the library defaults."""
    lite0 = {"weights": TAG, "lr": 1e-3}
    return {
        "fcn (built in, from scratch; the library default)": {},
        "paper: pooled Lite0 features -> MLP (lr 3e-3, 100 epochs)": {"backbone": "timm:tf_efficientnet_lite0",
                                                                      "weights": TAG},
        "paper's design at lr 1e-3": {"backbone": "timm:tf_efficientnet_lite0", **lite0},
        "timm-map: the deepest Lite0 map -> 1x1 conv": {"backbone": "timm-map:tf_efficientnet_lite0", "weights": TAG},
        "timm-fpn: three Lite0 maps fused at the grid (photos-cpu)": recipe_detector,
    }


@register
class Detectors(Study):
    name = "detectors"
    title = "The detector on photos"
    about = ("TuxBirds seen at the photos-cpu size: mask IoU, rim and object kept of the fcn, the paper's pooled-MLP "
             "design, timm-map and timm-fpn detectors (200 labels), beside the ground-truth-grid ceiling")
    seeds = [0, 1, 2]
    depends = (*PHOTO_CODE, "src/autobackswap/recipes/photos-cpu.toml")

    def measure(self, ctx: Context) -> Measured:
        cfg = resolve("", load_recipe("photos-cpu"), runs=["autobackswap"])  # the pipeline options of a method that has them
        size = cfg.image_size
        pipe = PipelineConfig.from_options(cfg.method_options)
        recipe_detector = {k: v for k, v in asdict(pipe.detector).items()
                           if k in ("backbone", "weights", "width", "lr", "epochs", "freeze", "tta", "batch_size")}
        refine, t_tight = pipe.separation.refine, pipe.separation.t_tight
        data_dir = tuxbirds(1.0, size)["seen"]
        with tempfile.TemporaryDirectory() as tmp:
            data = load_experiment_data(data_dir, size, tmp)
            images, seg = data.train.images, data.train.segmentations
            if ctx.quick:
                images, seg = images[:200], seg[:200]
            gt = np.stack([mask_to_grid(m, pipe.detector.grid, pipe.label_threshold) for m in seg]).astype(np.float32)
            ceiling = mask_scores(images, gt, seg, refine, t_tight)
            rows = [["ceiling: the ground-truth grid, refined", *(fmt(v) for v in ceiling), "", ""]]
            for name, params in variants(recipe_detector).items():
                scores, accs, secs = [], [], []
                for seed in ctx.seeds:
                    idx, grids = patch_labels(data.dataset, data.train.records, size, pipe.detector.grid, None,
                                              pipe.label_budget, pipe.label_threshold, seed)
                    det_cfg = replace(type(pipe.detector)(), **params, seed=seed, device="cpu")
                    if ctx.quick:
                        det_cfg = replace(det_cfg, epochs=3)
                    t0 = time.perf_counter()
                    det = Detector(**asdict(det_cfg)).fit(data.train.images[idx], grids)
                    secs.append(time.perf_counter() - t0)
                    accs.append(det.holdout_balanced_accuracy_ or float("nan"))
                    scores.append(mask_scores(images, det.predict_proba(images), seg, refine, t_tight))
                iou, rim, kept = np.array(scores).T
                spread = (lambda v: fmt(v.mean(), v.std())) if len(ctx.seeds) > 1 else (lambda v: fmt(v.mean()))
                rows.append([name, spread(iou), spread(rim), spread(kept), fmt(float(np.mean(accs))),
                             f"{np.mean(secs):.0f}"])
        table = Table(["detector", "mask IoU", "rim", "object kept", "hold-out balanced patch accuracy", "fit s"], rows,
                      f"TuxBirds `seen` at {size} px, 200 labelled images, the {refine} refiner at t_tight {t_tight}, "
                      f"{seeds_text(ctx.seeds)}; scored on all {len(images)} training images")
        return Measured({"main": table})
