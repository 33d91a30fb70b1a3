"""GPU throughput of the paper's setting, and the projected wall time of the waterbirds-paper recipe.

Builds TuxBirds at 224 px (or the synthetic set at 224 px: ``--data synthetic``, or automatically when the
photo assets cannot be fetched), then on ``--device`` (default cuda):

* trains ERM and AutoBackSwap (swaps composed on the device, oracle masks) with ``tv:resnet50`` (random
  init: no weights are downloaded), SGD, batch 32, epochs alternating so noise hits both alike, and
  prints images per second, the AutoBackSwap / ERM epoch-time ratio (target <= 1.2) and the peak GPU
  memory (target: ERM >= 1,500 img/s with AMP on one H200-class GPU);
* times evaluation, the detector (the paper's EfficientNet-B0 when registered, random init, on 200
  labelled images) and the separation (the recipe's inpainter, every core);
* projects one waterbirds-paper AutoBackSwap run (4,795 training images x 50 epochs + validation +
  detector 200 epochs + separation; target < 15 minutes) and the whole recipe (3 seeds x ERM, AutoBackSwap
  at 50 and 200 labels and the oracle).

Without a GPU it refuses with one line ("no GPU: ..."). ``--device cpu --tiny`` is a smoke test of the
same code path in seconds (small images, a small model; its figures mean nothing)::

    python benchmarks/bench_gpu.py                        # on a machine with a GPU
    python benchmarks/bench_gpu.py --data synthetic       # no photo assets there
    python benchmarks/bench_gpu.py --device cpu --tiny    # smoke test
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import synthetic

from autobackswap import runtime
from autobackswap.data.photo import make_photo_benchmark
from autobackswap.data.splits import ExperimentData, load_experiment_data
from autobackswap.detect.model import BACKBONES
from autobackswap.errors import AutoBackSwapError
from autobackswap.pipeline import PipelineConfig, build_banks, fit_detector, run_separation
from autobackswap.recipes import load_recipe
from autobackswap.train.loop import (
    OPTIMIZERS,
    StepRunner,
    TrainConfig,
    predict_logits,
    prepare_model,
    train_one_epoch,
)
from autobackswap.train.sources import ArraySource, SwapSource

# The waterbirds-paper run: Waterbirds' splits (metadata.csv of waterbird_complete95_forest2water2).
PAPER = {"train": 4795, "val": 1199, "test": 5794, "epochs": 50, "detector_epochs": 200, "seeds": 3}
TINY = {"n_train": 48, "n_val": 16, "n_test": 16, "image_size": 32, "model": "small_resnet", "width": 8,
        "rounds": 1, "batch_size": 16, "detector_epochs": 1, "sep_images": 8, "detector_width": 8}


@dataclass
class Figures:
    """Measured seconds per image (training: one epoch's share), per detector epoch, and the peak memory."""

    erm_per_image: float
    abs_per_image: float
    eval_per_image: float
    detector_epoch: float
    separation_per_image: float
    peak_memory_gib: float | None


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N (default cuda); cpu only with --tiny")
    ap.add_argument("--data", choices=["auto", "tuxbirds", "synthetic"], default="auto",
                    help="TuxBirds photos, the synthetic set, or auto: TuxBirds when its assets can be had")
    ap.add_argument("--assets", type=Path, default=None, help="TuxBirds' unpacked Debian packages (default: the cache)")
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--model", default="tv:resnet50", help="classifier (random init; default tv:resnet50)")
    ap.add_argument("--batch-size", type=int, default=32, help="the recipe's batch (default 32)")
    ap.add_argument("--rounds", type=int, default=3, help="timed epochs of each method, after one warm-up (default 3)")
    ap.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="default: on for CUDA")
    ap.add_argument("--detector-epochs", type=int, default=3, help="timed detector epochs (default 3)")
    ap.add_argument("--sep-images", type=int, default=256, help="images separated to time it (default 256)")
    ap.add_argument("--tiny", action="store_true", help="smoke test: tiny synthetic data and model")
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    if args.tiny:
        args.n_train, args.image_size, args.model = TINY["n_train"], TINY["image_size"], TINY["model"]
        args.rounds, args.batch_size, args.data = TINY["rounds"], TINY["batch_size"], "synthetic"
        args.detector_epochs, args.sep_images = TINY["detector_epochs"], TINY["sep_images"]
    return args


def gpu_device(args: argparse.Namespace) -> torch.device:
    """The device to measure on; without a CUDA GPU (and not ``--device cpu --tiny``), one clear line."""
    if args.device.strip().lower() == "cpu" and args.tiny:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise AutoBackSwapError(f"no GPU: torch {torch.__version__} (CUDA build {torch.version.cuda or 'none'}) finds "
                                "no CUDA device here; run this on a machine with one, or use --device cpu --tiny "
                                "for a smoke test")
    device = runtime.resolve_device(args.device)
    if device.type != "cuda":
        raise AutoBackSwapError(f"no GPU: --device {args.device} is not a CUDA device (cpu only with --tiny)")
    return device


def dataset(args: argparse.Namespace, root: Path) -> tuple[Path, str]:
    n_val, n_test = (TINY["n_val"], TINY["n_test"]) if args.tiny else (400, 800)
    if args.data in ("auto", "tuxbirds"):
        try:
            out = make_photo_benchmark(root / "tuxbirds", args.assets, args.n_train, n_val, n_test, 1.0,
                                       args.image_size, 0, "seen")
            return out["seen"], "TuxBirds"
        except (AutoBackSwapError, OSError) as exc:
            if args.data == "tuxbirds":
                raise
            print(f"TuxBirds unavailable ({str(exc).splitlines()[0][:160]}); using the synthetic set")
    path = synthetic(root / "synthetic", n_train=args.n_train, n_val=n_val, n_test=n_test, image_size=args.image_size)
    return path, "synthetic"


def time_training(data: ExperimentData, cfg: TrainConfig, device: torch.device, rounds: int) -> tuple[float, float]:
    """Median epoch seconds of ERM and of AutoBackSwap (oracle banks), alternating, after one warm-up each."""
    banks = build_banks(data, PipelineConfig(), seed=0, oracle=True)
    sources = {"erm": ArraySource(data.train.images, data.train.labels).to(device),
               "autobackswap": SwapSource(data.train.images, data.train.labels, banks.swap).to(device)}
    model = prepare_model(None, cfg, data.num_classes, str(device))
    optimizer = OPTIMIZERS.get(cfg.optimizer)(model.parameters(), cfg)
    runner = StepRunner(device, runtime.resolve_amp(cfg.amp, device), cfg.grad_clip)
    generator = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {k: [] for k in sources}
    for r in range(rounds + 1):
        for name, source in sources.items():
            t0 = time.perf_counter()
            train_one_epoch(model, source, optimizer, r, cfg, generator, 0, 10**6, runner=runner)  # ends in a sync
            if r > 0:
                times[name].append(time.perf_counter() - t0)
    return float(np.median(times["erm"])), float(np.median(times["autobackswap"]))


def time_eval(model_cfg: TrainConfig, data: ExperimentData, device: torch.device) -> float:
    model = prepare_model(None, model_cfg, data.num_classes, str(device))
    images = np.concatenate([data.val.images, data.test.images])
    predict_logits(model, images[:64])  # warm-up
    t0 = time.perf_counter()
    predict_logits(model, images)
    return (time.perf_counter() - t0) / len(images)


def time_detector(data: ExperimentData, device: torch.device, epochs: int, tiny: bool) -> tuple[float, str]:
    """Seconds per detector epoch on 200 labelled images (the paper's backbone when registered)."""
    backbone = "tv:efficientnet_b0" if "tv:efficientnet_b0" in BACKBONES and not tiny else "fcn"
    options: dict[str, Any] = {"detector_backbone": backbone, "detector_epochs": epochs, "detector_paste": 0.0,
                               "label_budget": 8 if tiny else 200, "detector_device": str(device)}
    if tiny:
        options["detector_width"] = TINY["detector_width"]
    cfg = PipelineConfig.from_options(options)
    det, _ = fit_detector(data, cfg, seed=0)
    return det.fit_seconds_ / max(1, len(det.history_)), backbone


def time_separation(data: ExperimentData, n: int, inpainter: str) -> float:
    """Seconds per image to separate ``n`` training images (every core). The ground-truth masks give every
    image a real hole to inpaint (a barely trained detector might find no foreground, and an image without
    one is not inpainted); the detector's own inference is timed with evaluation."""
    sub = replace(data, train=replace(data.train, records=data.train.records[:n], images=data.train.images[:n],
                                      labels=data.train.labels[:n], place=data.train.place[:n]))
    cfg = PipelineConfig.from_options({"inpainter": inpainter, "hole_dilate": 0, "decontaminate": False})
    t0 = time.perf_counter()
    run_separation(sub, cfg, seed=0, oracle=True)
    return (time.perf_counter() - t0) / n


def projection(f: Figures) -> dict[str, float]:
    """Seconds for one waterbirds-paper AutoBackSwap run and for the whole recipe, from the measured rates:
    training images x epochs at the measured rate, validation every epoch and the test split once, the
    detector's 200 epochs and the separation of every training image."""
    evaluation = f.eval_per_image * (PAPER["val"] * PAPER["epochs"] + PAPER["test"])
    detector = f.detector_epoch * PAPER["detector_epochs"]
    separation = f.separation_per_image * PAPER["train"]
    abs_run = detector + separation + f.abs_per_image * PAPER["train"] * PAPER["epochs"] + evaluation
    erm_run = f.erm_per_image * PAPER["train"] * PAPER["epochs"] + evaluation
    oracle_run = separation + f.abs_per_image * PAPER["train"] * PAPER["epochs"] + evaluation
    recipe = PAPER["seeds"] * (erm_run + 2 * abs_run + oracle_run)
    return {"autobackswap_run_s": abs_run, "erm_run_s": erm_run, "recipe_s": recipe, "detector_s": detector,
            "separation_s": separation, "evaluation_s": evaluation}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        device = gpu_device(args)
    except AutoBackSwapError as exc:
        print(exc, file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(device)
    recipe = load_recipe("waterbirds-paper")["train"]
    cfg = TrainConfig(model=args.model, width=TINY["width"] if args.tiny else 24, batch_size=args.batch_size,
                      optimizer=recipe["optimizer"], lr=recipe["lr"], momentum=recipe["momentum"],
                      weight_decay=recipe["weight_decay"], lr_schedule=recipe["lr_schedule"],
                      label_smoothing=recipe["label_smoothing"], grad_clip=recipe["grad_clip"],
                      amp=args.amp, device=str(device), epochs=args.rounds + 1)
    with tempfile.TemporaryDirectory() as tmp:
        path, kind = dataset(args, Path(tmp))
        data = load_experiment_data(path, args.image_size, tmp)
        n = len(data.train)
        erm_epoch, abs_epoch = time_training(data, cfg, device, args.rounds)
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        eval_per_image = time_eval(cfg, data, device)
        detector_epoch, backbone = time_detector(data, device, args.detector_epochs, args.tiny)
        inpainter = load_recipe("waterbirds-paper")["pipeline"]["inpainter"]
        sep = time_separation(data, min(args.sep_images, n), inpainter)
    figures = Figures(erm_epoch / n, abs_epoch / n, eval_per_image, detector_epoch, sep, peak)
    report(args, device, cfg, kind, n, erm_epoch, abs_epoch, figures, backbone, inpainter)
    return 0


def report(args: argparse.Namespace, device: torch.device, cfg: TrainConfig, kind: str, n: int, erm_epoch: float,
           abs_epoch: float, f: Figures, backbone: str, inpainter: str) -> None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (smoke test: figures mean nothing)"
    precision = runtime.resolve_amp(cfg.amp, device).name
    p = projection(f)
    lines = [
        f"device {device} ({name}), precision {precision}, model {cfg.model} at {args.image_size} px, "
        f"batch {cfg.batch_size}, {kind}: {n} training images",
        f"ERM: {n / erm_epoch:.0f} img/s (epoch {erm_epoch:.2f} s)  [target >= 1500 img/s on an H200 with AMP]",
        f"autobackswap: {n / abs_epoch:.0f} img/s (epoch {abs_epoch:.2f} s); ratio {abs_epoch / erm_epoch:.2f}  "
        "[target <= 1.2]",
        f"peak GPU memory: {f.peak_memory_gib:.2f} GiB" if f.peak_memory_gib is not None else "peak GPU memory: n/a (CPU)",
        f"evaluation: {1 / f.eval_per_image:.0f} img/s",
        f"detector ({backbone}, random init): {f.detector_epoch:.2f} s/epoch -> {p['detector_s']:.0f} s for "
        f"{PAPER['detector_epochs']} epochs",
        f"separation ({inpainter}, every core): {1000 * f.separation_per_image:.1f} ms/image -> "
        f"{p['separation_s']:.0f} s for {PAPER['train']} images",
        f"projected waterbirds-paper, one autobackswap run ({PAPER['train']} images x {PAPER['epochs']} epochs + "
        f"validation + detector + separation): {p['autobackswap_run_s'] / 60:.1f} min  [target < 15 min]",
        f"projected whole recipe ({PAPER['seeds']} seeds x erm, autobackswap at 50 and 200 labels, oracle): "
        f"{p['recipe_s'] / 60:.1f} min",
    ]
    print("\n".join(lines))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload: dict[str, Any] = {"device": str(device), "device_name": name, "precision": precision,
                                   "model": cfg.model, "image_size": args.image_size, "data": kind, "n_train": n,
                                   "erm_img_s": n / erm_epoch, "autobackswap_img_s": n / abs_epoch,
                                   "ratio": abs_epoch / erm_epoch, "peak_memory_gib": f.peak_memory_gib,
                                   "eval_img_s": 1 / f.eval_per_image, "detector_backbone": backbone,
                                   "detector_s_per_epoch": f.detector_epoch,
                                   "separation_s_per_image": f.separation_per_image, **p}
        args.out.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    sys.exit(main())
