"""Speed on the CPU: the pretrained Lite0's training levers, prediction in bf16, and the autobackswap / ERM epoch ratio.

Everything is measured within one run, the configurations taking turns round after round so machine noise hits
them alike (the figure is the median step or epoch):

1. **Training steps** of ``timm:tf_efficientnet_lite0`` (offline ImageNet weights) on random batches at 128 px:
   the plain float32 NCHW step (the 32 images/s the photo work started from), channels-last (the library's
   loop), bf16 autocast (``--amp``), freezing the stem and the first 1-3 stages (``--freeze``), one thread
   instead of two, and ``torch.compile`` (its compile time apart).
2. **Prediction** (evaluation and the detector's grids): float32 against bf16 autocast, and how far bf16 moves
   the classifier's probabilities and the detector's grids on real TuxBirds photos.
3. **Epochs of the library's loop** (``train_one_epoch``) with the photos-cpu recipe at its own size and at 128
   px, ERM and autobackswap alternated on TuxBirds (swap banks from the ground-truth masks: the banks' source does
   not change the time of a composed batch), with the share of each epoch spent making the batches (what a
   prefetching DataLoader could overlap at best).
4. **From scratch**: the same ratio with the library defaults (small_resnet, 64 px) on the synthetic set.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from autobackswap.data.splits import load_experiment_data
from autobackswap.detect.model import create_backbone
from autobackswap.pipeline import PipelineConfig, build_banks
from autobackswap.recipes import load_recipe
from autobackswap.settings import resolve
from autobackswap.train.loop import OPTIMIZERS, StepRunner, TrainConfig, train_one_epoch
from autobackswap.train.models import create_model
from autobackswap.train.sources import ArraySource, SwapSource

from . import METHOD_CODE, Context, Measured, Study, Table, register
from .photos import tuxbirds
from .synthetic import synthetic_data

LITE0, TAG = "timm:tf_efficientnet_lite0", "tf_efficientnet_lite0.in1k"
START = 32.0  # images/s: Lite0 training at 128 px on 2 cores before this work (the photo issue's starting point)


def bf16() -> contextlib.AbstractContextManager[Any]:
    return torch.autocast("cpu", dtype=torch.bfloat16)


class TrainStep:
    """One configuration of the training step: a model, its optimiser and a fixed batch."""

    def __init__(self, name: str, size: int, batch: int, freeze: int = 0, channels_last: bool = True,
                 amp: bool = False, threads: int | None = None, compile_: bool = False) -> None:
        self.name, self.amp, self.threads = name, amp, threads
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = create_model(LITE0, 2, pretrained=TAG, freeze=freeze).train().to(memory_format=fmt)
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(batch, 3, size, size, generator=g).contiguous(memory_format=fmt)
        self.y = torch.randint(0, 2, (batch,), generator=g)
        self.opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=1e-4)
        self.forward: Callable[[torch.Tensor], torch.Tensor] = self.model
        self.compile_seconds: float | None = None
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


def training_levers(size: int, batch: int, rounds: int, compile_: bool) -> Table:
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
    rows = [[c.name + (f" (compile {c.compile_seconds:.0f} s)" if c.compile_seconds else ""),
             f"{c.images_per_s():.1f}", f"{c.images_per_s() / base:.2f}"] for c in configs]
    return Table(["configuration", "images/s", "× the starting point"], rows,
                 f"Training steps of timm:tf_efficientnet_lite0 (pretrained), {size} px, batch {batch}, median of "
                 f"{rounds} steps, {torch.get_num_threads()} threads")


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


def prediction_levers(images: np.ndarray, backbone: str, grid: int, width: int, rounds: int) -> Table:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).contiguous(memory_format=torch.channels_last)
    nets = {"classifier timm:tf_efficientnet_lite0": create_model(LITE0, 2, pretrained=TAG),
            f"detector {backbone}": create_backbone(backbone, grid, TAG, width=width)}
    rows = []
    for name, net in nets.items():
        net = net.eval().to(memory_format=torch.channels_last)
        out32, ips32 = timed_predict(net, x, False, rounds)
        out16, ips16 = timed_predict(net, x, True, rounds)
        if out32.dim() == 2:  # classifier logits -> probabilities; argmax agreement
            p32, p16 = out32.softmax(1), out16.softmax(1)
            agree = float((p32.argmax(1) == p16.argmax(1)).float().mean())
        else:  # detector logits -> p(fg) per patch; agreement of the patch decisions at 0.5
            p32, p16 = torch.sigmoid(out32), torch.sigmoid(out16)
            agree = float(((p32 > 0.5) == (p16 > 0.5)).float().mean())
        rows.append([name, f"{ips32:.1f}", f"{ips16:.1f}", f"{ips16 / ips32:.2f}",
                     f"{float((p32 - p16).abs().max()):.4f}", f"{agree:.4f}"])
    return Table(["network", "float32 images/s", "bf16 images/s", "×", "max abs difference", "agreement"], rows,
                 f"Prediction on {len(x)} TuxBirds training photos at {x.shape[-1]} px, median of {rounds} passes "
                 "(agreement: of the classifier's argmax, of the detector's patch decisions at 0.5)")


def epoch_times(train: TrainConfig, sources: dict[str, Any], rounds: int) -> dict[str, tuple[float, float]]:
    """Median seconds per epoch of each source's epochs alternated on one model, and of making its batches alone."""
    model = create_model(train.model, 2, pretrained=train.pretrained, freeze=train.freeze, width=train.width)
    model = model.to(memory_format=torch.channels_last)
    opt = OPTIMIZERS.get(train.optimizer)(model.parameters(), train)
    g = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {k: [] for k in sources}
    making: dict[str, list[float]] = {k: [] for k in sources}
    runner = StepRunner()
    train_one_epoch(model, sources["erm"], opt, 0, train, g, 0, 10**6, runner=runner)  # warm-up
    for r in range(rounds):
        for name, src in sources.items():
            t0 = time.perf_counter()
            train_one_epoch(model, src, opt, r, train, g, 0, 10**6, runner=runner)
            times[name].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for _ in src.batches(r, train.batch_size, g):
                pass
            making[name].append(time.perf_counter() - t0)
    return {k: (statistics.median(times[k]), statistics.median(making[k])) for k in sources}


def epoch_rows(label: str, n: int, times: dict[str, tuple[float, float]]) -> list[list[str]]:
    erm = times["erm"][0]
    rows = []
    for name, (t, made) in times.items():
        rows.append([label, name, f"{t:.1f}", f"{n / t:.1f}", f"{made:.1f} s ({made / t:.0%})", f"{t / erm:.2f}"])
    return rows


def recipe_epochs(recipe: str, size: int | None, rounds: int) -> tuple[list[list[str]], dict[str, float]]:
    cfg = resolve("", load_recipe(recipe), runs=["autobackswap"])  # with the pipeline options
    size = size or cfg.image_size
    data_dir = tuxbirds(1.0, size)["seen"]
    with tempfile.TemporaryDirectory() as tmp:
        data = load_experiment_data(data_dir, size, tmp)
        banks = build_banks(data, PipelineConfig.from_options(cfg.method_options), seed=0, oracle=True)
        sources = {"erm": ArraySource(data.train.images, data.train.labels, hflip=cfg.train.hflip),
                   "autobackswap": SwapSource(data.train.images, data.train.labels, banks.swap, hflip=cfg.train.hflip)}
        times = epoch_times(cfg.train, sources, rounds)
    label = f"{recipe}, {size} px, batch {cfg.train.batch_size}, --freeze {cfg.train.freeze}"
    n = len(data.train)
    return epoch_rows(label, n, times), {"erm_images_per_s": n / times["erm"][0],
                                          "ratio": times["autobackswap"][0] / times["erm"][0]}


def scratch_epochs(rounds: int) -> list[list[str]]:
    train = TrainConfig()
    with tempfile.TemporaryDirectory() as tmp:
        data = load_experiment_data(synthetic_data("easy"), 64, tmp)
        banks = build_banks(data, PipelineConfig(), seed=0, oracle=True)
        sources = {"erm": ArraySource(data.train.images, data.train.labels),
                   "autobackswap": SwapSource(data.train.images, data.train.labels, banks.swap)}
        times = epoch_times(train, sources, rounds)
    return epoch_rows("library defaults (small_resnet), 64 px, batch 128, synthetic", len(data.train), times)


@register
class Speed(Study):
    name = "speed"
    title = "Speed on the CPU"
    about = ("pretrained Lite0 training levers (channels-last, bf16, --freeze, threads, torch.compile), bf16 "
             "prediction, and the autobackswap / ERM epoch ratio of the library's loop")
    depends = (*METHOD_CODE, "src/autobackswap/recipes/photos-cpu.toml", "src/autobackswap/recipes/cpu-small.toml")

    def measure(self, ctx: Context) -> Measured:
        rounds = 3 if ctx.quick else 8
        levers = training_levers(128, 64, rounds, compile_=not ctx.quick)
        recipe = resolve("", load_recipe("photos-cpu"), runs=["autobackswap"])
        pipe = PipelineConfig.from_options(recipe.method_options)
        with tempfile.TemporaryDirectory() as tmp:
            images = load_experiment_data(tuxbirds(1.0, 128)["seen"], 128, tmp).train.images[:256]
        prediction = prediction_levers(images, pipe.detector.backbone, pipe.detector.grid, pipe.detector.width, 3)
        epoch_rounds = 1 if ctx.quick else 2
        rows128, at128 = recipe_epochs("photos-cpu", 128, epoch_rounds)
        rows, values = rows128, {}
        if recipe.image_size != 128:
            more, at_size = recipe_epochs("photos-cpu", None, epoch_rounds)
            rows += more
            values["recipe_erm_images_per_s"] = f"{at_size['erm_images_per_s']:.0f}"
            values["recipe_ratio"] = f"{at_size['ratio']:.2f}"
        rows += scratch_epochs(epoch_rounds + 1)
        epochs = Table(["settings", "method", "s / epoch", "images/s", "making the batches", "÷ ERM"], rows,
                       "Epochs of the library's loop (train_one_epoch), ERM and autobackswap alternated, 2000 images")
        values.update(erm_images_per_s_128=f"{at128['erm_images_per_s']:.0f}", ratio_128=f"{at128['ratio']:.2f}",
                      speedup_128=f"{at128['erm_images_per_s'] / START:.1f}")
        return Measured({"levers": levers, "prediction": prediction, "epochs": epochs}, values)
