"""The training loop, nanoGPT-style: ``train_one_epoch``, ``evaluate``, ``fit``, top to bottom.

Images enter as NHWC uint8 arrays and become NCHW float tensors (channels-last memory format, which
is about 1.5x faster for convolutions on CPU) inside the loop. A *batch source* yields the training
batches of one epoch; ERM's source shuffles and flips, AutoBackSwap's composes new images. All
randomness comes from an explicit ``torch.Generator``.
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
from ..runtime import is_main
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

    def check_files(self) -> None:
        """Before any work: the weight files named (``pretrained``, ``model_weights``) exist and hold a state dict."""
        for value in (self.pretrained, self.model_weights):
            check_weights_file(value)


LATER_TRAIN_FIELDS: dict[str, Any] = {"augment": "", "ema": 0.0, "pretrained": None}  # TrainConfig fields, defaults
WEIGHT_FIELDS = ("model_weights", "pretrained")  # TAG|FILE fields: a file enters by its content digest


def train_settings(train: TrainConfig) -> dict[str, Any]:
    """The training config as a run depends on it. Fields added after the first release enter only when
    set away from their default, so runs saved before they existed are still reused. A weight file enters by
    its content (:func:`~autobackswap.weights.weights_key`), not its path."""
    settings = asdict(train)
    for name, default in LATER_TRAIN_FIELDS.items():
        if settings.get(name) == default:
            settings.pop(name)
    for name in WEIGHT_FIELDS:
        if settings.get(name):
            settings[name] = weights_key(settings[name])
    return settings


def cosine_lr(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


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
) -> tuple[float, int]:
    model.train()
    warmup = int(cfg.warmup_epochs * math.ceil(len(source) / cfg.batch_size))
    total_loss, count = 0.0, 0
    device = next(model.parameters()).device
    bar = progress(source.batches(epoch, cfg.batch_size, generator), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   total=math.ceil(len(source) / cfg.batch_size), quiet=not is_main())
    for x, y in bar:
        if augment is not None:
            x = augment(x, generator)
        if device.type != "cpu":
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, total_steps, warmup, cfg.lr)
        logits = model(x)
        loss = loss_fn(logits, y) if loss_fn else F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update_parameters(model)
        step += 1
        total_loss += float(loss.detach()) * len(y)
        count += len(y)
    return total_loss / max(count, 1), step


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray, batch_size: int = 512) -> torch.Tensor:
    """Logits for NHWC uint8 images (eval mode)."""
    model.eval()
    device = next(model.parameters()).device
    out = [model(to_tensor(images[i : i + batch_size]).to(device)).cpu() for i in range(0, len(images), batch_size)]
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


def fit(
    source: BatchSource,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    num_classes: int,
    cfg: TrainConfig,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    model: nn.Module | None = None,
) -> FitResult:
    """Train with AdamW + warmup/cosine decay; keep the epoch with the best average val accuracy.

    Model selection uses average validation accuracy only: no group labels are needed. With
    ``cfg.ema > 0`` an exponential moving average of the weights (BatchNorm statistics included) is
    what is scored, selected and returned. ``cfg.augment`` transforms every training batch.

    Under torchrun (:mod:`autobackswap.runtime`), every rank trains a DDP replica on its shard of each
    global batch; ``generator`` then orders the epoch (the same on every rank) and a per-rank
    generator drives augmentation and composition.
    """
    info = runtime.current()
    generator = seeding.generator(cfg.seed, "classifier_train")
    if info.enabled:
        source = ShardedSource(source, info, order_generator=generator)
        generator = runtime.rank_generator(cfg.seed, info.rank)
    model = prepare_model(model, cfg, num_classes, info.device)
    train_model = runtime.wrap_model(model, info)  # the model itself when there is one process
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    augment = build_augment(cfg.augment)
    ema = None
    if cfg.ema > 0:
        ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
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
                                     augment, ema)
        epoch_seconds.append(time.perf_counter() - t0)
        if info.enabled:
            loss = runtime.all_reduce_mean(loss)
            runtime.sync_buffers(model)  # rank 0's BatchNorm statistics: identical selection everywhere
            if ema is not None:
                runtime.sync_buffers(scored)
        val_acc = accuracy(scored, val_images, val_labels)
        history.append({"epoch": epoch + 1, "train_loss": loss, "val_accuracy": val_acc})
        log.info("epoch %d/%d loss %.4f val_acc %.4f", epoch + 1, cfg.epochs, loss, val_acc)
        if val_acc >= best_acc:
            best_acc, best_epoch = val_acc, epoch + 1
            best_state = copy.deepcopy(scored.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    result = FitResult(model, history, best_epoch, time.perf_counter() - start, epoch_seconds)
    if info.enabled:
        result.distributed = distributed_summary(model, source, info)
    if info.device != "cpu":
        model.to("cpu")
    return result


def prepare_model(model: nn.Module | None, cfg: TrainConfig, num_classes: int, device: str) -> nn.Module:
    """``model``, or a new one from the registry initialised from ``cfg.seed`` (the global RNG state is
    restored after), channels-last on ``device``."""
    if model is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seeding.int_seed(cfg.seed, "classifier_init"))
            model = create_model(cfg.model, num_classes, cfg.model_weights, pretrained=cfg.pretrained, width=cfg.width,
                                 **cfg.model_kwargs)
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
                         **cfg.model_kwargs)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload
