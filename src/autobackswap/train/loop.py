"""The training loop, nanoGPT-style: ``train_one_epoch``, ``evaluate``, ``fit``, top to bottom.

Images enter as NHWC uint8 arrays and become NCHW float tensors (channels-last memory format, which
is about 1.5x faster for convolutions on CPU) inside the loop. A *batch source* yields the training
batches of one epoch; ERM's source shuffles and flips, AutoBackSwap's composes new images. All
randomness comes from an explicit ``torch.Generator``.

``TrainConfig.device`` says where to train (:func:`~autobackswap.runtime.resolve_device`; ``auto`` picks
a GPU when there is one). On a GPU the sources send uint8 batches from pinned memory and build the
float batch (and the composites) there; ``amp`` (default: on for CUDA) runs the forward pass under
autocast (bf16, or fp16 with a ``GradScaler``). On the CPU nothing changes: the same seed gives the
same model, run after run. The optimiser (``OPTIMIZERS``: ``adamw``, ``sgd``), the learning-rate
schedule (``LR_SCHEDULES``: ``cosine`` with warmup, ``constant``), label smoothing, class-weighted cross
entropy and gradient clipping are options, so the paper's recipe can be written down.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import runtime, seeding
from ..errors import NotFittedError
from ..io import atomic_open
from ..options import check_range
from ..progress import progress
from ..registry import Registry
from ..runtime import Precision, is_main
from ..tensors import to_tensor
from ..weights import check_weights_file, load_torch_file, weights_key
from .augment import Augment, build_augment
from .models import create_model
from .sources import BatchSource, ShardedSource

log = logging.getLogger(__name__)


MAX_EPOCHS = 100_000  # sane upper bounds: beyond them a value is a typo, not a setting
MAX_BATCH = 1_000_000
MAX_SEED = 2**63 - 1


@dataclass
class TrainConfig:
    """Classifier training hyperparameters (saved inside every checkpoint)."""

    model: str = "small_resnet"
    width: int = 24
    epochs: int = 10
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.5
    hflip: bool = True
    augment: str = ""  # "+"-separated names from train.augment.AUGMENTS, e.g. "crop+color"
    ema: float = 0.0  # > 0: keep (and select, and return) an exponential moving average of the weights
    seed: int = 0
    model_weights: str | None = None  # a weight file loaded (strictly) into the new model
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None  # tv: / timm: models: a weight tag (IMAGENET1K_V1, resnet50.tv_in1k) or a file
    # Where and how fast (execution only: they do not enter a run's key, see EXECUTION_TRAIN_FIELDS)
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps (runtime.resolve_device); auto picks a GPU when there is one
    amp: bool | None = None  # mixed precision; None: on for CUDA (bf16, else fp16 + GradScaler), off on the CPU
    # The paper's training settings (the waterbirds-paper recipe); the defaults are the built-in ones
    optimizer: str = "adamw"  # OPTIMIZERS: adamw, sgd (with momentum)
    momentum: float = 0.9  # sgd only
    lr_schedule: str = "cosine"  # LR_SCHEDULES: cosine (linear warmup over warmup_epochs, then cosine decay), constant
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    class_weighted: bool = False  # cross entropy weighted per class by max(count) / count (class_weights)
    grad_clip: float = 0.0  # > 0: clip the gradient norm to this before every step
    # Pretrained tv: / timm: models: the stem and this many first stages keep their weights and BatchNorm
    # statistics (hub.freeze_stages); on the CPU the cheapest of the speed levers (docs/results.md, Speed)
    freeze: int = 0

    def __post_init__(self) -> None:
        build_augment(self.augment)  # an unknown name fails here, before any training
        check_range("ema (the moving-average decay)", self.ema, 0.0, 1.0, open_hi=True)
        check_range("epochs", self.epochs, 1, MAX_EPOCHS, integer=True)
        check_range("batch_size", self.batch_size, 2, MAX_BATCH, integer=True)  # a batch of one breaks BatchNorm
        check_range("width (the classifier's base channel width)", self.width, 1, 4096, integer=True)
        check_range("lr (the learning rate)", self.lr, 0.0, 10.0, open_lo=True)
        check_range("weight_decay", self.weight_decay, 0.0, 10.0)
        check_range("warmup_epochs", self.warmup_epochs, 0.0, MAX_EPOCHS)
        check_range("seed", self.seed, 0, MAX_SEED, integer=True)
        self.device = runtime.check_device_spec(self.device)
        OPTIMIZERS.get(self.optimizer)  # KeyError listing the valid names
        LR_SCHEDULES.get(self.lr_schedule)
        check_range("label_smoothing", self.label_smoothing, 0.0, 1.0, open_hi=True)
        check_range("grad_clip", self.grad_clip, 0.0, None)
        check_range("momentum", self.momentum, 0.0, None)
        check_range("freeze (stages)", self.freeze, 0, 1000, integer=True)
        if self.freeze and not (self.pretrained or self.model_weights):
            raise ValueError(f"freeze={self.freeze} fixes the first stages' weights, but the model has no pretrained "
                             "weights (--pretrained TAG|FILE or --model-weights): they would stay random")

    def check_files(self) -> None:
        """Before any work: the weight files named (``pretrained``, ``model_weights``) exist and hold a state dict."""
        for value in (self.pretrained, self.model_weights):
            check_weights_file(value)


# TrainConfig fields added after the first release, and their defaults: they enter a run's key only when
# set away from the default, so runs saved before they existed are still reused.
LATER_TRAIN_FIELDS: dict[str, Any] = {"augment": "", "ema": 0.0, "pretrained": None, "amp": None, "optimizer": "adamw",
                                      "momentum": 0.9, "lr_schedule": "cosine", "label_smoothing": 0.0,
                                      "class_weighted": False, "grad_clip": 0.0, "freeze": 0}
# Where a run trains is not what it trains: a run finished on a GPU is reused on the CPU and back. (``amp``
# is a numeric choice, so an explicit --amp / --no-amp enters the key; its default, automatic, does not.)
EXECUTION_TRAIN_FIELDS = ("device",)
WEIGHT_FIELDS = ("model_weights", "pretrained")  # TAG|FILE fields: a file enters by its content digest


def train_settings(train: TrainConfig) -> dict[str, Any]:
    """The training config as a run depends on it: without the execution-only fields, and with the fields
    added later only when set away from their default. A weight file enters by its content
    (:func:`~autobackswap.weights.weights_key`), not its path."""
    settings = asdict(train)
    for name in EXECUTION_TRAIN_FIELDS:
        settings.pop(name, None)
    for name, default in LATER_TRAIN_FIELDS.items():
        if settings.get(name) == default:
            settings.pop(name)
    for name in WEIGHT_FIELDS:
        if settings.get(name):
            settings[name] = weights_key(settings[name])
    return settings


OPTIMIZERS: Registry[Callable[[Any, TrainConfig], torch.optim.Optimizer]] = Registry("optimizer")
LR_SCHEDULES: Registry[Callable[[int, int, int, float], float]] = Registry("learning-rate schedule")


@OPTIMIZERS.register("adamw")
def adamw(params: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (the default), with ``lr`` and ``weight_decay``."""
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("sgd")
def sgd(params: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with ``momentum`` and (coupled, L2) ``weight_decay``, as the reference trains ResNet-50."""
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def class_weights(labels: torch.Tensor | np.ndarray, num_classes: int) -> torch.Tensor:
    """Per-class loss weights ``max(count) / count``: the largest class weighs 1, a class half its size 2,
    an absent class 0. On two classes this is the reference's ``[1, n_neg / n_pos]`` when class 0 is the
    larger (Waterbirds' landbirds)."""
    counts = torch.bincount(torch.as_tensor(labels, dtype=torch.long).reshape(-1), minlength=num_classes).double()
    weights = counts.max() / counts.clamp_min(1.0)
    weights[counts == 0] = 0.0
    return weights.float()


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_loss(cfg: TrainConfig, labels: torch.Tensor | np.ndarray | None, num_classes: int) -> LossFn | None:
    """The training loss of ``cfg``: None (plain ``F.cross_entropy``) by default; with label smoothing or
    class weights, the per-sample cross entropy (weighted by the target's class) averaged over the
    batch, as the reference computes it (``reduction="none"``, then the mean)."""
    if not cfg.class_weighted and cfg.label_smoothing == 0.0:
        return None
    weight = None
    if cfg.class_weighted:
        if labels is None:
            raise ValueError("class_weighted: this method's batch source does not expose its training labels")
        weight = class_weights(labels, num_classes)
    smoothing = cfg.label_smoothing

    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w = None if weight is None else weight.to(logits.device)
        return F.cross_entropy(logits, y, weight=w, label_smoothing=smoothing, reduction="none").mean()

    return loss


@LR_SCHEDULES.register("cosine")
def cosine_lr(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@LR_SCHEDULES.register("constant")
def constant_lr(step: int, total: int, warmup: int, base: float) -> float:
    """``base`` at every step, no warmup (the reference's SGD for ResNet-50 has no scheduler)."""
    return base


@dataclass
class StepRunner:
    """How one optimisation step runs: the device, the precision (autocast dtype and loss scaling) and
    gradient clipping. ``StepRunner()`` is a plain float32 step on the CPU."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: Precision = field(default_factory=Precision)
    grad_clip: float = 0.0
    scaler: Any = None

    def __post_init__(self) -> None:
        if self.precision.scaler and self.scaler is None:
            self.scaler = torch.amp.GradScaler(self.device.type)

    def step(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            if self.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        if self.grad_clip > 0:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()


def train_one_epoch(
    model: nn.Module,
    source: BatchSource,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    cfg: TrainConfig,
    generator: torch.Generator,
    step: int,
    total_steps: int,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    augment: Augment | None = None,
    ema: torch.optim.swa_utils.AveragedModel | None = None,
    runner: StepRunner | None = None,
) -> tuple[float, int]:
    model.train()
    warmup = int(cfg.warmup_epochs * math.ceil(len(source) / cfg.batch_size))
    runner = runner or StepRunner(next(model.parameters()).device)
    schedule = LR_SCHEDULES.get(cfg.lr_schedule)
    losses: list[tuple[torch.Tensor, int]] = []  # summed at the end: no device sync per step
    bar = progress(source.batches(epoch, cfg.batch_size, generator), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   total=math.ceil(len(source) / cfg.batch_size), quiet=not is_main())
    for x, y in bar:
        x, y = runtime.to_device(x, runner.device), runtime.to_device(y, runner.device)
        if augment is not None:
            x = augment(x, generator)
        for group in optimizer.param_groups:
            group["lr"] = schedule(step, total_steps, warmup, cfg.lr)
        with runtime.autocast(runner.device, runner.precision):
            logits = model(x)
            loss = loss_fn(logits, y) if loss_fn else F.cross_entropy(logits, y)
        runner.step(model, optimizer, loss)
        if ema is not None:
            ema.update_parameters(model)
        step += 1
        losses.append((loss.detach(), len(y)))
    total_loss = sum(float(value) * n for value, n in losses)
    return total_loss / max(sum(n for _, n in losses), 1), step


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray, batch_size: int = 512) -> torch.Tensor:
    """Logits for NHWC uint8 images (eval mode)."""
    model.eval()
    device = next(model.parameters()).device
    out = [model(to_tensor(runtime.to_device(torch.as_tensor(images[i : i + batch_size]), device))).cpu()
           for i in range(0, len(images), batch_size)]  # uint8 to the device, floats made there
    return torch.cat(out) if out else torch.empty(0)


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    pred = predict_logits(model, images).argmax(1).numpy()
    return float((pred == labels).mean())


@dataclass
class FitResult:
    model: nn.Module
    history: list[dict[str, float]]
    best_epoch: int
    train_seconds: float
    epoch_seconds: list[float]
    distributed: dict[str, Any] = field(default_factory=dict)  # world size, samples per rank, replicas in sync
    device: str = "cpu"  # where it trained
    precision: str = "fp32"  # fp32, bf16 or fp16 (runtime.Precision.name)


def fit(
    source: BatchSource,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    num_classes: int,
    cfg: TrainConfig,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    model: nn.Module | None = None,
) -> FitResult:
    """Train with ``cfg.optimizer`` (AdamW + warmup/cosine decay by default); keep the epoch with the best
    average val accuracy.

    Model selection uses average validation accuracy only: no group labels are needed. With
    ``cfg.ema > 0`` an exponential moving average of the weights (BatchNorm statistics included) is
    what is scored, selected and returned. ``cfg.augment`` transforms every training batch. The loss is
    ``loss_fn`` when a method brings its own, else cross entropy with ``cfg``'s label smoothing and
    class weights (:func:`make_loss`). Training runs on ``cfg.device`` (:func:`training_device`); the
    returned model is on the CPU.

    Under torchrun (:mod:`autobackswap.runtime`), every rank trains a DDP replica on its shard of each
    global batch; ``generator`` then orders the epoch (the same on every rank) and a per-rank
    generator drives augmentation and composition.
    """
    info = runtime.current()
    device = training_device(cfg, info)
    runtime.tune(device)
    generator = seeding.generator(cfg.seed, "classifier_train")
    labels = getattr(source, "labels", None)
    if info.enabled:
        source = ShardedSource(source, info, order_generator=generator)
        generator = runtime.rank_generator(cfg.seed, info.rank)
    source = move_source(source, device)
    model = prepare_model(model, cfg, num_classes, str(device))
    train_model = runtime.wrap_model(model, info)  # the model itself when there is one process
    optimizer = OPTIMIZERS.get(cfg.optimizer)(model.parameters(), cfg)
    loss_fn = training_loss(cfg, loss_fn, labels, num_classes)
    runner = StepRunner(device, runtime.resolve_amp(cfg.amp, device), cfg.grad_clip)
    augment = build_augment(cfg.augment)
    ema = moving_average(model, cfg.ema)
    scored = model if ema is None else ema.module  # the weights validated, selected and returned
    total_steps = cfg.epochs * math.ceil(len(source) / cfg.batch_size)
    log.info("training %s: %d images, %d epochs of %d steps (batch %d)", cfg.model, len(source), cfg.epochs,
             math.ceil(len(source) / cfg.batch_size), cfg.batch_size)
    history: list[dict[str, float]] = []
    best_acc, best_state, best_epoch = -1.0, copy.deepcopy(model.state_dict()), -1
    step = 0
    start = time.perf_counter()
    epoch_seconds: list[float] = []
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        loss, step = train_one_epoch(train_model, source, optimizer, epoch, cfg, generator, step, total_steps, loss_fn,
                                     augment, ema, runner)
        epoch_seconds.append(time.perf_counter() - t0)
        loss = synchronise(loss, model, scored, info)
        val_acc = accuracy(scored, val_images, val_labels)
        history.append({"epoch": epoch + 1, "train_loss": loss, "val_accuracy": val_acc})
        log.info("epoch %d/%d loss %.4f val_acc %.4f", epoch + 1, cfg.epochs, loss, val_acc)
        if val_acc >= best_acc:
            best_acc, best_epoch = val_acc, epoch + 1
            best_state = copy.deepcopy(scored.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    result = FitResult(model, history, best_epoch, time.perf_counter() - start, epoch_seconds,
                       device=str(device), precision=runner.precision.name)
    if info.enabled:
        result.distributed = distributed_summary(model, source, info)
    if device.type != "cpu":
        model.to("cpu")
        move_source(source, torch.device("cpu"))
    return result


def synchronise(loss: float, model: nn.Module, scored: nn.Module, info: runtime.DistInfo) -> float:
    """Under torchrun: the loss averaged over ranks, and rank 0's BatchNorm statistics (of the model and of
    the scored average) on every rank, so evaluation and model selection are identical everywhere."""
    if not info.enabled:
        return loss
    loss = runtime.all_reduce_mean(loss)
    runtime.sync_buffers(model)
    if scored is not model:
        runtime.sync_buffers(scored)
    return loss


def training_loss(cfg: TrainConfig, loss_fn: LossFn | None, labels: Any, num_classes: int) -> LossFn | None:
    """A method's own loss, else :func:`make_loss` (None: plain cross entropy)."""
    if loss_fn is None:
        return make_loss(cfg, labels, num_classes)
    if cfg.class_weighted or cfg.label_smoothing:
        log.warning("this method trains with its own loss: class_weighted and label_smoothing do not apply")
    return loss_fn


def moving_average(model: nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of ``model``'s weights and buffers (None when ``decay`` is 0)."""
    if decay <= 0:
        return None
    return torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay), use_buffers=True)


def training_device(cfg: TrainConfig, info: runtime.DistInfo) -> torch.device:
    """Under torchrun each rank's own device (``info.device``); else ``cfg.device`` resolved."""
    return torch.device(info.device) if info.enabled else runtime.resolve_device(cfg.device)


def move_source(source: BatchSource, device: torch.device) -> BatchSource:
    """Make ``source`` build its batches on ``device`` (a source without ``to`` builds them on the CPU and
    the loop copies them)."""
    to = getattr(source, "to", None)
    return to(device) if callable(to) else source


def prepare_model(model: nn.Module | None, cfg: TrainConfig, num_classes: int, device: str) -> nn.Module:
    """``model``, or a new one from the registry initialised from ``cfg.seed`` (the global RNG state is
    restored after), channels-last on ``device``."""
    if model is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seeding.int_seed(cfg.seed, "classifier_init"))
            model = create_model(cfg.model, num_classes, cfg.model_weights, pretrained=cfg.pretrained, width=cfg.width,
                                 freeze=cfg.freeze, **cfg.model_kwargs)
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model.to(device)


def distributed_summary(model: nn.Module, source: BatchSource, info: runtime.DistInfo) -> dict[str, Any]:
    """World size, backend, samples each rank trained on, and whether the replicas ended identical."""
    assert isinstance(source, ShardedSource)
    checksums = runtime.all_gather_object(runtime.state_checksum(model))
    return {"world_size": info.world_size, "backend": info.backend,
            "samples_per_rank": runtime.all_gather_object(source.samples_seen),
            "replicas_in_sync": len(set(checksums)) == 1}


def save_classifier(path: str | Path, model: nn.Module, cfg: TrainConfig, num_classes: int,
                    classes: list[int], image_size: int, extra: dict[str, Any] | None = None) -> None:
    """A checkpoint that rebuilds itself: config + state dict (nanoGPT style), written atomically."""
    payload = {
        "kind": "classifier",
        "config": asdict(cfg),
        "num_classes": num_classes,
        "classes": classes,
        "image_size": image_size,
        "state_dict": model.state_dict(),
        "extra": extra or {},
    }
    with atomic_open(path, "wb") as fh:
        torch.save(payload, fh)


def load_classifier(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a classifier from its checkpoint alone."""
    payload = load_torch_file(path, "checkpoint file", weights_only=False)
    if not isinstance(payload, dict) or payload.get("kind") != "classifier":
        raise NotFittedError(f"{path}: not an autobackswap classifier checkpoint")
    cfg = TrainConfig(**payload["config"])
    model = create_model(cfg.model, payload["num_classes"], None, pretrained=cfg.pretrained, load=False, width=cfg.width,
                         freeze=cfg.freeze, **cfg.model_kwargs)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload
