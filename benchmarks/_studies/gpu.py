"""GPU throughput of the paper's setting, and the projected wall time of the waterbirds-paper recipe.

Builds TuxBirds at 224 px (the synthetic set at 224 px when the photo assets cannot be had), then on the GPU:

* trains ERM and AutoBackSwap (swaps composed on the device, oracle masks) with ``tv:resnet50`` (random
  init: no weights are downloaded), SGD, batch 32, epochs alternating so noise hits both alike, and
  reports images per second, the AutoBackSwap / ERM epoch-time ratio (target <= 1.2) and the peak GPU
  memory (target: ERM >= 1,500 img/s with AMP on one H200-class GPU);
* times evaluation, the detector (the paper's EfficientNet-B0 when registered, random init, on 200
  labelled images) and the separation (the recipe's inpainter, every core);
* projects one waterbirds-paper AutoBackSwap run (4,795 training images x 50 epochs + validation +
  detector 200 epochs + separation; target < 15 minutes) and the whole recipe (3 seeds x ERM, AutoBackSwap
  at 50 and 200 labels and the oracle).

Without a GPU the full study refuses with one line ("no GPU: ..."). The quick run works anywhere: on a GPU a
shorter measurement (one timed epoch each, fewer detector epochs and separated images), on a CPU a smoke test of
the same code path in seconds (tiny synthetic data, a small model; its figures mean nothing).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autobackswap import runtime
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

from . import Context, Measured, Study, Table, register
from .photos import PHOTO_CODE, tuxbirds
from .synthetic import synthetic_data

log = logging.getLogger(__name__)

# The waterbirds-paper run: Waterbirds' splits (metadata.csv of waterbird_complete95_forest2water2).
PAPER = {"train": 4795, "val": 1199, "test": 5794, "epochs": 50, "detector_epochs": 200, "seeds": 3}
TINY_SPLITS = {"n_val": 16, "n_test": 16}  # the smoke test's val and test splits (48 training images)
TINY_WIDTH = TINY_DETECTOR_WIDTH = 8  # its classifier's and detector's widths
GPU_CODE = (*PHOTO_CODE, "src/autobackswap/data/synthetic.py", "src/autobackswap/runtime.py",
            "src/autobackswap/recipes/waterbirds-paper.toml")


@dataclass
class Figures:
    """Measured seconds per image (training: one epoch's share), per detector epoch, and the peak memory."""

    erm_per_image: float
    abs_per_image: float
    eval_per_image: float
    detector_epoch: float
    separation_per_image: float
    peak_memory_gib: float | None


@dataclass
class Settings:
    """What one measurement runs: the full study on a GPU, a shorter one (quick), or the CPU smoke test (tiny)."""

    n_train: int = 2000
    image_size: int = 224
    model: str = "tv:resnet50"  # classifier (random init)
    batch_size: int = 32  # the recipe's batch
    rounds: int = 3  # timed epochs of each method, after one warm-up
    detector_epochs: int = 3  # timed detector epochs
    sep_images: int = 256  # images separated to time it
    amp: bool | None = None  # None: on for CUDA
    tiny: bool = False

    @classmethod
    def for_run(cls, quick: bool, device: torch.device) -> Settings:
        if device.type != "cuda":  # the smoke test: tiny data and model
            return cls(n_train=48, image_size=32, model="small_resnet", rounds=1, batch_size=16, detector_epochs=1,
                       sep_images=8, tiny=True)
        return cls(rounds=1, detector_epochs=1, sep_images=64) if quick else cls()


def no_gpu_reason() -> str | None:
    """One line saying why there is no CUDA GPU to measure on (None: there is one)."""
    if torch.cuda.is_available():
        return None
    return (f"no GPU: torch {torch.__version__} (CUDA build {torch.version.cuda or 'none'}) finds no CUDA device "
            "here; run this on a machine with one, or use --quick for a smoke test on the CPU")


def dataset(s: Settings, root: Path) -> tuple[Path, str]:
    """TuxBirds ``seen`` at the size (cached), else the synthetic set; the tiny smoke test: synthetic, in ``root``."""
    if not s.tiny:
        try:
            return tuxbirds(1.0, s.image_size)["seen"], "TuxBirds"
        except (AutoBackSwapError, OSError) as exc:
            log.warning("TuxBirds unavailable (%s); using the synthetic set", str(exc).splitlines()[0][:160])
        return synthetic_data("hard", n_train=s.n_train, image_size=s.image_size), "synthetic"
    path = synthetic_data("hard", n_train=s.n_train, **TINY_SPLITS, image_size=s.image_size, root=root / "synthetic")
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
        options["detector_width"] = TINY_DETECTOR_WIDTH
    cfg = PipelineConfig.from_options(options)
    det, _ = fit_detector(data, cfg, seed=0)
    return (det.fit_seconds_ or 0.0) / max(1, len(det.history_)), backbone


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


def train_config(s: Settings, device: torch.device) -> TrainConfig:
    recipe = load_recipe("waterbirds-paper")["train"]
    return TrainConfig(model=s.model, width=TINY_WIDTH if s.tiny else 24, batch_size=s.batch_size,
                       optimizer=recipe["optimizer"], lr=recipe["lr"], momentum=recipe["momentum"],
                       weight_decay=recipe["weight_decay"], lr_schedule=recipe["lr_schedule"],
                       label_smoothing=recipe["label_smoothing"], grad_clip=recipe["grad_clip"],
                       amp=s.amp, device=str(device), epochs=s.rounds + 1)


def measure_figures(s: Settings, device: torch.device) -> dict[str, Any]:
    """Every figure of one measurement on ``device``, with the projection."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(device)
    cfg = train_config(s, device)
    with tempfile.TemporaryDirectory() as tmp:
        path, kind = dataset(s, Path(tmp))
        data = load_experiment_data(path, s.image_size, tmp)
        n = len(data.train)
        erm_epoch, abs_epoch = time_training(data, cfg, device, s.rounds)
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        eval_per_image = time_eval(cfg, data, device)
        detector_epoch, backbone = time_detector(data, device, s.detector_epochs, s.tiny)
        inpainter = load_recipe("waterbirds-paper")["pipeline"]["inpainter"]
        sep = time_separation(data, min(s.sep_images, n), inpainter)
    f = Figures(erm_epoch / n, abs_epoch / n, eval_per_image, detector_epoch, sep, peak)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (smoke test: figures mean nothing)"
    return {"device": str(device), "device_name": name, "precision": runtime.resolve_amp(cfg.amp, device).name,
            "model": cfg.model, "batch_size": cfg.batch_size, "image_size": s.image_size, "data": kind, "n_train": n,
            "erm_epoch_s": erm_epoch, "autobackswap_epoch_s": abs_epoch, "erm_img_s": n / erm_epoch,
            "autobackswap_img_s": n / abs_epoch, "ratio": abs_epoch / erm_epoch, "peak_memory_gib": peak,
            "eval_img_s": 1 / eval_per_image, "detector_backbone": backbone, "detector_s_per_epoch": detector_epoch,
            "separation_s_per_image": sep, "inpainter": inpainter, "figures": dataclasses.asdict(f), **projection(f)}


def figures_table(r: dict[str, Any]) -> Table:
    peak = f"{r['peak_memory_gib']:.2f} GiB" if r["peak_memory_gib"] is not None else "n/a (CPU)"
    rows = [
        ["ERM", f"{r['erm_img_s']:.0f} img/s (epoch {r['erm_epoch_s']:.2f} s)", ">= 1500 img/s on an H200 with AMP"],
        ["autobackswap", f"{r['autobackswap_img_s']:.0f} img/s (epoch {r['autobackswap_epoch_s']:.2f} s)", ""],
        ["autobackswap ÷ ERM epoch time", f"{r['ratio']:.2f}", "<= 1.2"],
        ["peak GPU memory", peak, ""],
        ["evaluation", f"{r['eval_img_s']:.0f} img/s", ""],
        [f"detector ({r['detector_backbone']}, random init)", f"{r['detector_s_per_epoch']:.2f} s/epoch -> "
         f"{r['detector_s']:.0f} s for {PAPER['detector_epochs']} epochs", ""],
        [f"separation ({r['inpainter']}, every core)", f"{1000 * r['separation_s_per_image']:.1f} ms/image -> "
         f"{r['separation_s']:.0f} s for {PAPER['train']} images", ""],
        [f"projected waterbirds-paper, one autobackswap run ({PAPER['train']} images x {PAPER['epochs']} epochs + "
         "validation + detector + separation)", f"{r['autobackswap_run_s'] / 60:.1f} min", "< 15 min"],
        [f"projected whole recipe ({PAPER['seeds']} seeds x erm, autobackswap at 50 and 200 labels, oracle)",
         f"{r['recipe_s'] / 60:.1f} min", ""],
    ]
    return Table(["measure", "measured", "target"], rows,
                 f"{r['device']} ({r['device_name']}), precision {r['precision']}, model {r['model']} at "
                 f"{r['image_size']} px, batch {r['batch_size']}, {r['data']}: {r['n_train']} training images")


@register
class Gpu(Study):
    name = "gpu"
    title = "The paper's setting on a GPU"
    about = ("ERM and autobackswap with tv:resnet50 at 224 px on one GPU: images/s, epoch-time ratio, peak memory, "
             "evaluation, detector and separation rates, and the projected waterbirds-paper run and recipe")
    needs = "a CUDA GPU"
    depends = GPU_CODE

    def available(self, quick: bool = False) -> str | None:
        return None if quick else no_gpu_reason()

    def measure(self, ctx: Context) -> Measured:
        why = no_gpu_reason()
        if why is not None and not ctx.quick:
            raise AutoBackSwapError(why)
        device = torch.device("cpu") if why is not None else runtime.resolve_device("cuda")
        r = measure_figures(Settings.for_run(ctx.quick, device), device)
        values = {k: f"{r[k]:.0f}" for k in ("erm_img_s", "autobackswap_img_s")}
        values.update(ratio=f"{r['ratio']:.2f}", autobackswap_run_min=f"{r['autobackswap_run_s'] / 60:.1f}",
                      recipe_min=f"{r['recipe_s'] / 60:.1f}", device=r["device_name"], precision=r["precision"],
                      n_train=str(r["n_train"]))
        return Measured({"main": figures_table(r)}, values)
