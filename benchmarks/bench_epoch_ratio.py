"""AutoBackSwap epoch time ÷ ERM epoch time, measured in one run.

Both sources feed the same model; epochs alternate ERM / swap so machine noise hits both alike.

    python benchmarks/bench_epoch_ratio.py
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time

import numpy as np
import torch
from _common import synthetic

from autobackswap.data.splits import load_experiment_data
from autobackswap.pipeline import PipelineConfig, build_banks
from autobackswap.train.loop import TrainConfig, train_one_epoch
from autobackswap.train.models import create_model
from autobackswap.train.sources import ArraySource, SwapSource


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        data = load_experiment_data(synthetic(n_train=args.n_train), 64, tmp)
        banks = build_banks(data, PipelineConfig(), seed=0, oracle=True)
        cfg = TrainConfig(epochs=2 * args.rounds)
        sources = {"erm": ArraySource(data.train.images, data.train.labels),
                   "autobackswap": SwapSource(data.train.images, data.train.labels, banks.swap)}
        model = create_model("small_resnet", 2).to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(0)
        times: dict[str, list[float]] = {k: [] for k in sources}
        for r in range(args.rounds):
            for name, src in sources.items():
                t0 = time.perf_counter()
                train_one_epoch(model, src, opt, r, cfg, g, 0, 10**6)
                times[name].append(time.perf_counter() - t0)
        erm, swap = np.median(times["erm"]), np.median(times["autobackswap"])
        print(f"ERM epoch {erm:.2f}s ({len(data.train) / erm:.0f} img/s); autobackswap epoch {swap:.2f}s; "
              f"ratio {swap / erm:.2f}  [target ≤ 1.2]")


if __name__ == "__main__":
    main()
