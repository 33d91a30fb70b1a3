"""ERM training speed on the synthetic benchmark.

Prints two figures:

* training throughput at 64 px on the default model, in images/s (target >= 400), measured over the
  training steps of every epoch after the first (the first pays one-off allocation costs; the
  all-epoch figure is printed too);
* the wall time of the ``erm`` method on 2000 training images, 64 px, 10 epochs, validation after
  every epoch included (target <= 60 s).

Because shared machines are noisy, it also prints a ratio measured within one run: training steps of
the library's loop (channels-last) against a naive loop (default NCHW memory format) on the same
model and batches, interleaved so that both see the same machine load.

Usage::

    .venv/bin/python benchmarks/bench_erm_speed.py              # generates the data into a temp dir
    .venv/bin/python benchmarks/bench_erm_speed.py DATA         # reuses a dataset in the Waterbirds layout

Timings depend on the machine; the targets are for a 2-core CPU.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from autobackswap.data.splits import load_experiment_data
from autobackswap.data.synthetic import make_synthetic
from autobackswap.methods import MethodContext, make_method
from autobackswap.tensors import to_tensor
from autobackswap.train.loop import TrainConfig
from autobackswap.train.models import create_model

TARGET_THROUGHPUT = 400.0  # images/s
TARGET_WALL = 60.0  # seconds


def step_throughput(images: np.ndarray, labels: np.ndarray, cfg: TrainConfig, rounds: int = 3,
                    steps: int = 4) -> tuple[float, float]:
    """Images/s of optimizer steps, (library loop: channels-last, naive: NCHW), interleaved."""
    models, optims = {}, {}
    for fmt in ("channels_last", "naive"):
        torch.manual_seed(0)
        model = create_model(cfg.model, 2, width=cfg.width)
        if fmt == "channels_last":
            model = model.to(memory_format=torch.channels_last)
        models[fmt], optims[fmt] = model.train(), torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    y = torch.as_tensor(labels[: cfg.batch_size], dtype=torch.long)
    batch = images[: cfg.batch_size]
    seconds = {"channels_last": 0.0, "naive": 0.0}
    for r in range(rounds + 1):  # round 0 warms up
        for fmt, model in models.items():
            start = time.perf_counter()
            for _ in range(steps):
                if fmt == "channels_last":
                    x = to_tensor(batch)
                else:
                    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div(255.0).contiguous()
                loss = F.cross_entropy(model(x), y)
                optims[fmt].zero_grad(set_to_none=True)
                loss.backward()
                optims[fmt].step()
            if r > 0:
                seconds[fmt] += time.perf_counter() - start
    n = rounds * steps * len(batch)
    return n / seconds["channels_last"], n / seconds["naive"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=None,
                        help="dataset folder (default: generate the 2000/400/800 synthetic set into a temp dir)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--n-train", type=int, default=2000, help="training images when generating (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="bench_erm_") as tmp:
        data_dir = args.data
        if data_dir is None:
            data_dir = make_synthetic(Path(tmp) / "data", n_train=args.n_train, image_size=args.image_size,
                                      seed=args.seed)
        data = load_experiment_data(data_dir, args.image_size, Path(tmp) / "run")
        cfg = replace(TrainConfig(), epochs=args.epochs, seed=args.seed)
        n = len(data.train)

        start = time.perf_counter()
        output = make_method("erm").run(data, cfg, MethodContext(data.run_dir))
        wall = time.perf_counter() - start
        assert output.fit is not None
        epochs = output.fit.epoch_seconds
        fast, naive = step_throughput(data.train.images, data.train.labels, cfg)

    steady = epochs[1:] or epochs
    throughput = n * len(steady) / sum(steady)
    throughput_all = n * len(epochs) / sum(epochs)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"machine: torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {load} (other processes slow every figure)")
    print(f"data: {data_dir if args.data else 'synthetic (generated)'}; {n} training images at {args.image_size} px; "
          f"model {cfg.model} (width {cfg.width}), batch {cfg.batch_size}, {cfg.epochs} epochs")
    print()
    print(f"{'figure':<44} {'measured':>10} {'target':>10}  ok")
    print(f"{'-' * 44} {'-' * 10} {'-' * 10}  --")
    print(f"{'ERM throughput, epochs 2..N (images/s)':<44} {throughput:>10.0f} {'>= 400':>10}  "
          f"{'yes' if throughput >= TARGET_THROUGHPUT else 'NO'}")
    print(f"{'ERM throughput, all epochs (images/s)':<44} {throughput_all:>10.0f} {'':>10}")
    print(f"{f'ERM wall time, {n} images, {cfg.epochs} epochs (s)':<44} {wall:>10.1f} {'<= 60':>10}  "
          f"{'yes' if wall <= TARGET_WALL else 'NO'}")
    print(f"{'  of which training steps (s)':<44} {sum(epochs):>10.1f}")
    print(f"{'wall time / target':<44} {wall / TARGET_WALL:>10.2f}")
    print()
    print("same-run ratio (interleaved optimizer steps, batch of the training set):")
    print(f"{'  library loop, channels-last (images/s)':<44} {fast:>10.0f}")
    print(f"{'  naive loop, NCHW (images/s)':<44} {naive:>10.0f}")
    print(f"{'  speed-up over the naive loop':<44} {fast / naive:>10.2f}x  (needed: 400 / 237 = 1.69x over the first naive loop)")


if __name__ == "__main__":
    main()
