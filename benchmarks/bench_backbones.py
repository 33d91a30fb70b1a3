"""What the paper's networks cost on this CPU, beside the built-in ones, measured in one run.

Prints, as Markdown tables:

* **ERM training throughput** (images/s of the library's training loop, ``train_one_epoch``: batch source,
  channels-last, AdamW, cross-entropy) for the built-in ``small_resnet`` at 64 px and ``tv:resnet50`` (random
  init) at 224 px, the paper's classifier. The two are measured in interleaved rounds after a warm-up, so both
  see the same machine load, and their ratio is printed;
* **the detector's fit time** on 200 labelled images (``Detector.fit``, hold-out scoring included) with the
  built-in ``fcn`` and with ``tv:efficientnet_b0`` (random init, the paper's detector) at 64 px, and
  EfficientNet-B0 at 224 px (the paper's size), per epoch (one-epoch fits, interleaved) and as ratios to the FCN;
* the CPU time these figures project for one ERM run of the paper's setting (4,795 images x 50 epochs).

Usage::

    .venv/bin/python benchmarks/bench_backbones.py      # a few minutes on an idle 2-core CPU; tables on stdout
    .venv/bin/python benchmarks/bench_backbones.py --rounds 1 --detector-epochs 1   # quicker, noisier

The data is the synthetic benchmark (random pixels would do for speed; these have masks for the detector).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from autobackswap import seeding
from autobackswap.data.grid import mask_to_grid
from autobackswap.data.splits import load_experiment_data
from autobackswap.data.synthetic import make_synthetic
from autobackswap.detect import Detector
from autobackswap.train.loop import TrainConfig, prepare_model, train_one_epoch
from autobackswap.train.sources import ArraySource

PAPER_IMAGES, PAPER_EPOCHS = 4795, 50  # Waterbirds' training split, the reference's epochs (config_wb.yaml)


class Trainer:
    """One model and its optimizer; :meth:`epoch` times one pass of the library's loop over ``images``."""

    def __init__(self, name: str, images: np.ndarray, labels: np.ndarray, batch_size: int, **model: object) -> None:
        self.cfg = TrainConfig(model=name, batch_size=batch_size, epochs=1, warmup_epochs=0.0, **model)  # type: ignore[arg-type]
        self.model = prepare_model(None, self.cfg, 2, "cpu")
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.cfg.lr)
        self.source = ArraySource(images, labels, hflip=True)
        self.generator = seeding.generator(0, "classifier_train")
        self.seconds, self.images = 0.0, 0

    def epoch(self, count: bool = True) -> None:
        start = time.perf_counter()
        train_one_epoch(self.model, self.source, self.optimizer, 0, self.cfg, self.generator, 0,
                        math.ceil(len(self.source) / self.cfg.batch_size))
        if count:
            self.seconds += time.perf_counter() - start
            self.images += len(self.source)

    @property
    def throughput(self) -> float:
        return self.images / self.seconds


def detector_epoch(images: np.ndarray, grids: np.ndarray, backbone: str) -> float:
    """Seconds of a one-epoch ``Detector.fit`` (training and hold-out scoring; building the network excluded)."""
    return float(Detector(backbone=backbone, grid=grids.shape[1], epochs=1, seed=0).fit(images, grids).fit_seconds_)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2, help="timed rounds of ERM epochs per model after a warm-up (default 2)")
    ap.add_argument("--small-images", type=int, default=512, help="images per small_resnet epoch (default 512)")
    ap.add_argument("--resnet50-images", type=int, default=64, help="images per tv:resnet50 epoch (default 64)")
    ap.add_argument("--detector-epochs", type=int, default=2,
                    help="one-epoch detector fits timed per backbone, interleaved (default 2)")
    ap.add_argument("--labels", type=int, default=200, help="labelled images for the detector (default 200)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    start = time.perf_counter()

    tmp = Path(tempfile.mkdtemp(prefix="bench_backbones_"))
    try:
        run(args, tmp, start)
    finally:
        shutil.rmtree(tmp)


def run(args: argparse.Namespace, tmp: Path, start: float) -> None:
    sizes = {64: max(args.small_images, args.labels), 224: max(args.resnet50_images, args.labels)}
    data = {size: load_experiment_data(make_synthetic(tmp / f"s{size}", n_train=n, n_val=8, n_test=8, image_size=size,
                                                      seed=0), size, tmp / f"run{size}")
            for size, n in sizes.items()}
    small_data, big_data = data[64].train, data[224].train
    trainers = {
        "small_resnet": Trainer("small_resnet", small_data.images[: args.small_images],
                                small_data.labels[: args.small_images], 128),
        "tv:resnet50": Trainer("tv:resnet50", big_data.images[: args.resnet50_images],
                               big_data.labels[: args.resnet50_images], 32),
    }
    for trainer in trainers.values():  # warm-up: one-off allocations
        trainer.epoch(count=False)
    for _ in range(args.rounds):
        for trainer in trainers.values():
            trainer.epoch()

    variants = {"fcn, 64 px": (data[64].train, "fcn"),
                "tv:efficientnet_b0, 64 px": (data[64].train, "tv:efficientnet_b0"),
                "tv:efficientnet_b0, 224 px": (data[224].train, "tv:efficientnet_b0")}
    labelled = {size: (d.train.images[: args.labels],
                       np.stack([mask_to_grid(m, 16, 0.25) for m in d.train.segmentations[: args.labels]]))
                for size, d in data.items()}
    epochs: dict[str, list[float]] = {label: [] for label in variants}
    for _ in range(args.detector_epochs):  # interleaved: every backbone sees the same machine load
        for label, (split, backbone) in variants.items():
            epochs[label].append(detector_epoch(*labelled[split.image_size], backbone))
    fits = {label: float(np.mean(seconds)) for label, seconds in epochs.items()}

    small, big = trainers["small_resnet"].throughput, trainers["tv:resnet50"].throughput
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"machine: torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {load} (other processes slow every figure; the ratios are measured in one run)")
    print()
    print("ERM training throughput (library loop, channels-last, AdamW; random init)\n")
    print("| model | size | batch | images/s | ratio to small_resnet |")
    print("|---|---|---|---|---|")
    print(f"| small_resnet (width 24) | 64 px | 128 | {small:.0f} | 1 |")
    print(f"| tv:resnet50 | 224 px | 32 | {big:.1f} | 1/{small / big:.0f} |")
    print()
    print(f"Detector fit on {args.labels} labelled images, G = 16 (hold-out scoring included; mean of "
          f"{args.detector_epochs} interleaved one-epoch fits)\n")
    print("| backbone | s / epoch | ratio to fcn | 100 epochs (min) |")
    print("|---|---|---|---|")
    for label, seconds in fits.items():
        print(f"| {label} | {seconds:.1f} | {seconds / fits['fcn, 64 px']:.1f} | {100 * seconds / 60:.1f} |")
    print()
    hours = PAPER_IMAGES * PAPER_EPOCHS / big / 3600
    print(f"projected CPU time of one ERM run of the paper's setting (tv:resnet50, 224 px, {PAPER_IMAGES} images x "
          f"{PAPER_EPOCHS} epochs, training steps only): {hours:.1f} h")
    print(f"benchmark wall time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
