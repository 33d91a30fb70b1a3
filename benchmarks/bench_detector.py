"""Detector ablation: refined-mask IoU and the rim (the share of cut-out alpha on ground-truth background) over
the whole train split for detector settings, beside the ceiling of the refiner fed the ground-truth label grid
(what a perfect detector would give).

    python benchmarks/bench_detector.py                       # TuxBirds seen, the table in docs/results.md
    python benchmarks/bench_detector.py --data DIR --seeds 0  # any dataset with segmentations/
    python benchmarks/bench_detector.py --variant default= --variant tta=tta:true --sep t0.33=t_tight:0.33,erode:1

Each variant is ``name=key:value,key:value`` over :class:`~autobackswap.detect.DetectorConfig` fields; every
variant is trained on the same seeded sample of ``--label-budget`` labelled images (``self_train`` rounds also
on the rest of the train split, unlabelled). A variant that differs from an earlier one only by ``tta`` (and does
not self-train) reuses its fit: flip TTA changes the prediction, not the training. Each ``--sep`` is
``name=t_tight:T,erode:PX,refine:NAME`` (the tight threshold on p_bg, an erosion of the refined cut-out, and the
mask refiner, default the pipeline's); every variant is scored under each.
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
from autobackswap.separate.masks import bg_share, create_refiner, erode, fg_kept, pixel_iou

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
        kind = type(getattr(defaults, key))
        kind = str if kind is type(None) else kind  # weights: a tag or a file
        params[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return name, params


def parse_sep(text: str, refine: str) -> tuple[str, float, int, str]:
    """``name=t_tight:T,erode:PX,refine:NAME`` -> (name, t_tight, erode px, refiner); unset keys: t_tight 0.5 (the
    default), no erosion, the ``refine`` given (the pipeline's)."""
    name, _, body = text.partition("=")
    values = ({"t_tight": "0.5", "erode": "0", "refine": refine}
              | dict(item.partition(":")[::2] for item in filter(None, body.split(","))))
    if set(values) != {"t_tight", "erode", "refine"}:
        raise SystemExit(f"--sep {text!r}: only t_tight, erode and refine")
    create_refiner(values["refine"])  # an unknown refiner fails here, before any detector is fitted
    return name, float(values["t_tight"]), int(values["erode"]), values["refine"]


def mask_scores(images: np.ndarray, p_fg: np.ndarray, seg: np.ndarray, refine: str, t_tight: float,
                px: int) -> tuple[float, float, float]:
    """(mean IoU, mean rim share, mean share of the object kept) of the refined cut-outs (fg where
    p_bg < t_tight), eroded by ``px``; the last two over the images where they are defined."""
    refiner = create_refiner(refine)
    ious, rims, kept = [], [], []
    for i in range(len(seg)):
        alpha = erode(refiner(images[i], p_fg[i], 1.0 - t_tight), px)
        ious.append(pixel_iou(alpha, seg[i]))
        rims += [v for v in [bg_share(alpha, seg[i])] if v is not None]
        kept += [v for v in [fg_kept(alpha, seg[i])] if v is not None]
    return float(np.mean(ious)), float(np.mean(rims)) if rims else float("nan"), float(np.mean(kept)) if kept else float("nan")


def fit_once(cache: dict[str, Detector], params: dict[str, Any], seed: int, images: np.ndarray, idx: np.ndarray,
             grids: np.ndarray, base: dict[str, Any]) -> tuple[Detector, float]:
    """The fitted detector of ``params`` (reused when only ``tta`` differs and nothing self-trains) and its fit seconds."""
    key = repr(sorted({k: v for k, v in params.items() if k != "tta" or params.get("self_train")}.items())) + f"/{seed}"
    if key in cache:
        det = cache[key]
        det.config.tta = bool(params.get("tta", False))
        return det, float(det.fit_seconds_ or 0.0)
    rest = np.setdiff1d(np.arange(len(images)), idx)
    t0 = time.perf_counter()
    det = Detector(**{**base, **params, "seed": seed}).fit(images[idx], grids, unlabelled=images[rest])
    cache[key] = det
    return det, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="dataset (default: TuxBirds seen, built on first use)")
    ap.add_argument("--image-size", type=int, default=64, help="working size in px (default 64)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--label-budget", type=int, default=200)
    ap.add_argument("--variant", action="append", default=None, help="name=key:value,... (repeatable)")
    ap.add_argument("--sep", action="append", default=None, help="name=t_tight:T,erode:PX,refine:NAME (repeatable; default: the defaults)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data_dir = args.data or tuxbirds(Path("runs/bench/tuxbirds_data"), 1.0, 0, args.image_size)["seen"]
    pipe = PipelineConfig.from_options({"label_budget": args.label_budget})
    refine = pipe.separation.refine
    seps = [parse_sep(t, refine) for t in args.sep or [f"default=t_tight:{pipe.separation.t_tight}"]]
    base = {"grid": pipe.detector.grid, "width": pipe.detector.width, "epochs": pipe.detector.epochs}
    with tempfile.TemporaryDirectory() as tmp:
        data = load_experiment_data(data_dir, args.image_size, tmp)
        images, seg = data.train.images, data.train.segmentations
        if seg is None:
            raise SystemExit(f"{data_dir}: needs segmentations/ to score masks")
        gt = np.stack([mask_to_grid(m, pipe.detector.grid, pipe.label_threshold) for m in seg]).astype(np.float32)
        print(f"{data_dir}: {len(images)} train images, {args.label_budget} labels, refiner {refine}")
        for sname, t_tight, px, sep_refine in seps:
            iou, rim, kept = mask_scores(images, gt, seg, sep_refine, t_tight, px)
            print(f"ceiling (ground-truth grid, refined), sep {sname}: IoU {iou:.3f}, rim {rim:.3f}, object kept {kept:.3f}")
        print("| variant | settings | sep | mask IoU | rim (bg share of cut-out alpha) | object kept (gt fg share covered) "
              "| hold-out balanced patch acc | fit s |")
        print("|---|---|---|---|---|---|---|---|")
        cache: dict[str, Detector] = {}
        for text in args.variant or DEFAULT_VARIANTS:
            name, params = parse_variant(text)
            scores: dict[str, list[tuple[float, float, float]]] = {s[0]: [] for s in seps}
            accs, secs = [], []
            for seed in (int(s) for s in args.seeds.split(",")):
                idx, grids = patch_labels(data.dataset, data.train.records, args.image_size, pipe.detector.grid, None,
                                          args.label_budget, pipe.label_threshold, seed)
                det, sec = fit_once(cache, params, seed, images, idx, grids, base)
                secs.append(sec)
                accs.append(det.holdout_balanced_accuracy_ or float("nan"))
                p_fg = det.predict_proba(images)
                for sname, t_tight, px, sep_refine in seps:
                    scores[sname].append(mask_scores(images, p_fg, seg, sep_refine, t_tight, px))
                    print(f"  {name} seed {seed} sep {sname}: IoU {scores[sname][-1][0]:.4f} rim {scores[sname][-1][1]:.4f} "
                          f"kept {scores[sname][-1][2]:.4f} fit {sec:.0f}s", flush=True)
            for sname, *_ in seps:
                iou, rim, kept = np.array(scores[sname]).T
                print(f"| {name} | {text.partition('=')[2] or 'library defaults'} | {sname} | {iou.mean():.3f} ± {iou.std():.3f} "
                      f"| {rim.mean():.3f} ± {rim.std():.3f} | {kept.mean():.3f} ± {kept.std():.3f} | {np.mean(accs):.3f} "
                      f"| {np.mean(secs):.0f} |", flush=True)


if __name__ == "__main__":
    main()
