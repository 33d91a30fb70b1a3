"""Pretrained EfficientNet-Lite0 on the CPU: what each speed lever gives, and the autobackswap / ERM epoch ratio.

    python benchmarks/bench_cpu_speed.py                        # 128 px, batch 64 (the photos-cpu recipe's size)
    python benchmarks/bench_cpu_speed.py --image-size 160 --compile

Three parts, each measured within one run (the configurations take turns, round after round, so machine noise
hits them alike; the figure is the median step):

1. **Training steps** of ``timm:tf_efficientnet_lite0`` (offline ImageNet weights) on random batches: the plain
   float32 NCHW step (the 32 images/s the issue started from), then channels-last (what the library's loop
   does), bf16 autocast (``--amp``), freezing the stem and the first 1-3 stages (``--freeze``), one thread
   instead of two, and with ``--compile`` ``torch.compile`` (its compile time printed apart).
2. **Prediction** (evaluation and the detector's grids): float32 against bf16 autocast, and how far bf16 moves
   the classifier's probabilities and the detector's grids (max |difference|, argmax agreement) on real photos.
3. **The epoch ratio** at the recipe's settings (``--recipe``, default photos-cpu): ERM and autobackswap epochs of
   the library's own loop (``train_one_epoch``) on TuxBirds, alternated; the swap banks come from the
   ground-truth masks (the banks' source does not change the time of a composed batch).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _common import tuxbirds

from autobackswap.data.splits import load_experiment_data
from autobackswap.detect.model import create_backbone
from autobackswap.pipeline import PipelineConfig, build_banks
from autobackswap.recipes import load_recipe
from autobackswap.settings import resolve
from autobackswap.train.loop import OPTIMIZERS, StepRunner, train_one_epoch
from autobackswap.train.models import create_model
from autobackswap.train.sources import ArraySource, SwapSource

LITE0, TAG = "timm:tf_efficientnet_lite0", "tf_efficientnet_lite0.in1k"


def bf16() -> contextlib.AbstractContextManager:
    return torch.autocast("cpu", dtype=torch.bfloat16)


class TrainStep:
    """One configuration of the training step: a model, its optimiser and a fixed batch."""

    def __init__(self, name: str, size: int, batch: int, freeze: int = 0, channels_last: bool = True,
                 amp: bool = False, threads: int | None = None, compile_: bool = False) -> None:
        self.name, self.amp, self.threads = name, amp, threads
        self.model = create_model(LITE0, 2, pretrained=TAG, freeze=freeze).train()
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=fmt)
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(batch, 3, size, size, generator=g).contiguous(memory_format=fmt)
        self.y = torch.randint(0, 2, (batch,), generator=g)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=1e-4)
        self.forward: Callable[[torch.Tensor], torch.Tensor] = self.model
        self.compile_seconds = None
        if compile_:
            t0 = time.perf_counter()
            self.forward = torch.compile(self.model)  # type: ignore[assignment]
            self.step()
            self.compile_seconds = time.perf_counter() - t0
        self.times: list[float] = []

    def step(self) -> float:
        before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        t0 = time.perf_counter()
        with bf16() if self.amp else contextlib.nullcontext():
            loss = F.cross_entropy(self.forward(self.x), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        dt = time.perf_counter() - t0
        torch.set_num_threads(before)
        return dt

    def images_per_s(self) -> float:
        return len(self.y) / statistics.median(self.times)


def training_levers(size: int, batch: int, rounds: int, compile_: bool) -> None:
    configs = [TrainStep("float32, NCHW, everything trained (the starting point)", size, batch, channels_last=False),
               TrainStep("channels-last (the library's loop)", size, batch),
               TrainStep("channels-last + bf16 autocast (--amp)", size, batch, amp=True),
               TrainStep("channels-last + --freeze 1", size, batch, freeze=1),
               TrainStep("channels-last + --freeze 2", size, batch, freeze=2),
               TrainStep("channels-last + --freeze 3", size, batch, freeze=3),
               TrainStep("channels-last + --freeze 2 + bf16", size, batch, freeze=2, amp=True),
               TrainStep("channels-last + --freeze 2, one thread", size, batch, freeze=2, threads=1)]
    if compile_:
        configs.append(TrainStep("channels-last + --freeze 2 + torch.compile", size, batch, freeze=2, compile_=True))
    for c in configs:
        c.step()  # warm-up (oneDNN picks its kernels)
    for _ in range(rounds):
        for c in configs:
            c.times.append(c.step())
    base = configs[0].images_per_s()
    print(f"\n1. training steps, timm:tf_efficientnet_lite0, {size} px, batch {batch}, median of {rounds} steps, "
          f"{torch.get_num_threads()} threads")
    print("| configuration | images/s | × the starting point |\n|---|---|---|")
    for c in configs:
        extra = f" (compile {c.compile_seconds:.0f} s)" if c.compile_seconds else ""
        print(f"| {c.name}{extra} | {c.images_per_s():.1f} | {c.images_per_s() / base:.2f} |")


def timed_predict(model: torch.nn.Module, x: torch.Tensor, amp: bool, rounds: int) -> tuple[torch.Tensor, float]:
    times, out = [], None
    with torch.no_grad():
        for _ in range(rounds + 1):
            t0 = time.perf_counter()
            with bf16() if amp else contextlib.nullcontext():
                out = model(x).float()
            times.append(time.perf_counter() - t0)
    assert out is not None
    return out, len(x) / statistics.median(times[1:])


def prediction_levers(images: np.ndarray, detector_backbone: str, grid: int, rounds: int) -> None:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).contiguous(memory_format=torch.channels_last)
    print(f"\n2. prediction on {len(x)} TuxBirds training photos at {x.shape[-1]} px (median of {rounds} passes)")
    print("| network | float32 images/s | bf16 images/s | × | max abs difference | argmax / patch agreement |")
    print("|---|---|---|---|---|---|")
    nets = {"classifier timm:tf_efficientnet_lite0": create_model(LITE0, 2, pretrained=TAG),
            f"detector {detector_backbone}": create_backbone(detector_backbone, grid, TAG)}
    for name, net in nets.items():
        net = net.eval().to(memory_format=torch.channels_last)
        out32, ips32 = timed_predict(net, x, False, rounds)
        out16, ips16 = timed_predict(net, x, True, rounds)
        if out32.dim() == 2:  # classifier logits -> probabilities, argmax agreement
            p32, p16 = out32.softmax(1), out16.softmax(1)
            agree = float((p32.argmax(1) == p16.argmax(1)).float().mean())
        else:  # detector logits -> p(fg) per patch, agreement of the patch decisions at 0.5
            p32, p16 = torch.sigmoid(out32), torch.sigmoid(out16)
            agree = float(((p32 > 0.5) == (p16 > 0.5)).float().mean())
        print(f"| {name} | {ips32:.1f} | {ips16:.1f} | {ips16 / ips32:.2f} | {float((p32 - p16).abs().max()):.4f} "
              f"| {agree:.4f} |")


def epoch_ratio(recipe: str, data_dir: Path, rounds: int) -> None:
    cfg = resolve(str(data_dir), load_recipe(recipe))
    train = cfg.train
    with tempfile.TemporaryDirectory() as tmp:
        data = load_experiment_data(data_dir, cfg.image_size, tmp)
        banks = build_banks(data, PipelineConfig.from_options(cfg.method_options), seed=0, oracle=True)
        sources = {"erm": ArraySource(data.train.images, data.train.labels, hflip=train.hflip),
                   "autobackswap": SwapSource(data.train.images, data.train.labels, banks.swap, hflip=train.hflip)}
        model = create_model(train.model, 2, pretrained=train.pretrained, freeze=train.freeze)
        model = model.to(memory_format=torch.channels_last)
        opt = OPTIMIZERS.get(train.optimizer)(model.parameters(), train)
        g = torch.Generator().manual_seed(0)
        times: dict[str, list[float]] = {k: [] for k in sources}
        making: dict[str, list[float]] = {k: [] for k in sources}  # the batches alone, no training step
        runner = StepRunner()
        for r in range(rounds):
            for name, src in sources.items():
                t0 = time.perf_counter()
                train_one_epoch(model, src, opt, r, train, g, 0, 10**6, runner=runner)
                times[name].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                for _ in src.batches(r, train.batch_size, g):
                    pass
                making[name].append(time.perf_counter() - t0)
    erm, swap = statistics.median(times["erm"]), statistics.median(times["autobackswap"])
    n = len(data.train)
    print(f"\n3. epochs of the library's loop, recipe {recipe} ({train.model}, {cfg.image_size} px, batch "
          f"{train.batch_size}, freeze {train.freeze}), {n} TuxBirds images, median of {rounds} rounds")
    print("| method | s / epoch | images/s | of which making the batches (what a DataLoader could overlap) |")
    print("|---|---|---|---|")
    for name, t in (("erm", erm), ("autobackswap", swap)):
        made = statistics.median(making[name])
        print(f"| {name} | {t:.1f} | {n / t:.1f} | {made:.1f} s ({made / t:.0%}) |")
    print(f"autobackswap / ERM epoch time: {swap / erm:.2f}  [target ≤ 1.2]; ERM images/s {n / erm:.1f} against the "
          f"starting 32 [target ≥ 64]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=6, help="timed steps per training configuration")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (its compile takes minutes)")
    ap.add_argument("--recipe", default="photos-cpu", help="the settings of part 3 (default photos-cpu)")
    ap.add_argument("--epoch-rounds", type=int, default=2, help="ERM / autobackswap epoch pairs in part 3")
    ap.add_argument("--parts", default="1,2,3")
    ap.add_argument("--data-root", type=Path, default=Path("runs/bench/tuxbirds_data"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"load average before: {os.getloadavg()[0]:.2f}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    parts = {int(p) for p in args.parts.split(",")}
    if 1 in parts:
        training_levers(args.image_size, args.batch_size, args.rounds, args.compile)
    data_dir = tuxbirds(args.data_root, 1.0, 0, args.image_size)["seen"] if parts & {2, 3} else None
    if 2 in parts and data_dir is not None:
        cfg = resolve(str(data_dir), load_recipe(args.recipe))
        pipe = PipelineConfig.from_options(cfg.method_options)
        with tempfile.TemporaryDirectory() as tmp:
            images = load_experiment_data(data_dir, args.image_size, tmp).train.images[:256]
        prediction_levers(images, pipe.detector.backbone, pipe.detector.grid, 3)
    if 3 in parts and data_dir is not None:
        epoch_ratio(args.recipe, data_dir, args.epoch_rounds)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
