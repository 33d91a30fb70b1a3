"""Baseline methods for ``experiment``, registered in the method registry next to ERM and AutoBackSwap.

Each baseline states the group information it needs (``needs``) and refuses, with a reason in
``MethodOutput.skipped``, to produce a number when the data leaves it nothing to work with, or runs
and says so in ``notes`` when it degenerates to ERM. Never a silently wrong number.

=================  ==========================================================================
``groupdro``       Online GroupDRO (Sagawa et al. 2020). Needs train group labels ``(y, place)``.
``dfr``            Deep Feature Reweighting (Kirichenko et al. 2023): retrain the last layer of an
                   ERM model on a group-balanced subset of val. Needs val group labels.
``jtt``            Just Train Twice (Liu et al. 2021): upweight the errors of a short ERM run.
                   Needs no group labels (the paper tunes on worst-group val accuracy).
``erm_aug``        ERM with MixUp / CutMix / colour jitter. Needs no group labels.
``random_paste``   The AutoBackSwap cut-outs pasted on *original* (not inpainted) training images,
                   drawn uniformly at random. Needs the same patch labels as ``autobackswap``.
=================  ==========================================================================

Options are given as ``name:key=value`` (``groupdro:eta=0.05``, ``erm_aug:aug=cutmix+color``).
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .augment import color_jitter
from .loop import ArraySource, TrainConfig, fit, predict_logits
from .methods import METHODS, Method, MethodOutput, PipelineMethod

if TYPE_CHECKING:
    from ..experiment import ExperimentData

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- options
def _pipeline_keys() -> set[str]:
    from ..pipeline import PipelineConfig

    return {f.name for f in fields(PipelineConfig)} | {"fill", "budget"}


def parse_options(method: str, options: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Typed values for ``defaults``' keys from string or typed ``options``.

    Pipeline options (``label_budget``, ``inpainter``, ...) are passed to every method by the CLI and
    are ignored here; any other unknown key raises with the list of valid ones.
    """
    out = dict(defaults)
    ignored = _pipeline_keys()
    for key, value in options.items():
        if key in defaults:
            out[key] = _coerce(value, defaults[key], f"{method}:{key}")
        elif key not in ignored:
            raise ValueError(f"unknown option {key!r} for method {method!r}; valid options: "
                             f"{', '.join(sorted(defaults)) or 'none'}")
    return out


def _coerce(value: Any, default: Any, where: str) -> Any:
    if not isinstance(value, str) or isinstance(default, str):
        return value
    try:
        if isinstance(default, bool):
            if value.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError
            return value.lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        raise ValueError(f"option {where}={value!r}: expected {type(default).__name__}") from None
    if default is None:
        return None if value.lower() in ("", "none") else int(value)
    return value


# ----------------------------------------------------------------------------- groups
def group_ids(labels: np.ndarray, place: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Group index per sample and the sorted list of ``(label index, place)`` groups present."""
    pairs = sorted(set(zip(np.asarray(labels).tolist(), np.asarray(place).tolist(), strict=True)))
    index = {g: i for i, g in enumerate(pairs)}
    ids = np.array([index[(a, b)] for a, b in zip(labels.tolist(), place.tolist(), strict=True)], dtype=np.int64)
    return ids, pairs


def minority_groups(labels: np.ndarray, place: np.ndarray) -> list[tuple[int, int]]:
    """Groups present in ``(labels, place)`` whose place is not their class's most frequent one."""
    from ..evaluate.metrics import group_counts, majority_groups

    counts = group_counts(labels, place)
    major = majority_groups(counts)
    return sorted(g for g in counts if g not in major)


def all_groups(data: ExperimentData) -> list[tuple[int, int]]:
    """Every ``(label index, place)`` group that occurs in some split (train, val or test)."""
    return sorted({(int(c), int(p)) for s in (data.train, data.val, data.test)
                   for c, p in zip(s.labels.tolist(), s.place.tolist(), strict=True)})


def _fmt_groups(groups: list[tuple[int, int]], classes: list[int]) -> str:
    return ", ".join(f"(y={classes[c]}, place={p})" for c, p in groups)


# ----------------------------------------------------------------------------- shared ERM
def erm_key(cfg: TrainConfig) -> str:
    return "erm:" + json.dumps(asdict(cfg), sort_keys=True)


def shared_erm(data: ExperimentData, cfg: TrainConfig) -> nn.Module:
    """The ERM model for ``cfg`` (trained once per experiment and seed; ``experiment`` also stores
    the one its ``erm`` method trained). Callers must not modify it."""
    key = erm_key(cfg)
    memo = getattr(data, "memo", None)
    if memo is not None and key in memo:
        return memo[key]
    source = ArraySource(data.train.images, data.train.labels, hflip=cfg.hflip)
    model = fit(source, data.val.images, data.val.labels, data.num_classes, cfg).model
    if memo is not None:
        memo[key] = model
    return model


# ----------------------------------------------------------------------------- GroupDRO
class GroupDROLoss:
    """Online GroupDRO: ``q_g <- q_g exp(eta * loss_g)`` per batch, loss ``sum_g q_g loss_g``.

    Called with targets ``(B, 2)`` = ``[label, group]``. ``q`` lives over all groups; a group absent
    from a batch keeps its weight.
    """

    def __init__(self, n_groups: int, eta: float) -> None:
        self.eta = eta
        self.q = torch.full((n_groups,), 1.0 / n_groups, dtype=torch.float64)

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        y, g = target[:, 0], target[:, 1]
        losses = F.cross_entropy(logits, y, reduction="none")
        n = len(self.q)
        sums = torch.zeros(n, dtype=losses.dtype).scatter_add(0, g, losses)
        counts = torch.bincount(g, minlength=n).to(losses.dtype)
        present = counts > 0
        group_loss = sums / counts.clamp_min(1)
        with torch.no_grad():
            q = self.q.clone()
            q[present] = q[present] * torch.exp(self.eta * group_loss[present].detach().double())
            self.q = q / q.sum()
        weights = self.q.to(losses.dtype) * present
        return (weights * group_loss).sum() / weights.sum().clamp_min(1e-12)


@METHODS.register("groupdro")
class GroupDRO(Method):
    """Online GroupDRO over the train groups ``(y, place)``; ``eta`` is the step size of the group
    weights (the paper uses 0.01 over far more steps than a CPU run takes; default 0.1).

    With no minority group in train (correlation 1.0), each class has exactly one group, so the
    worst-group objective can only reweight classes: it reduces to (class-balanced) ERM. It still
    runs, and the reason is recorded in ``notes`` (``on_no_minority=skip`` refuses instead).
    """

    name = "groupdro"
    needs = "train group labels (y, place)"
    defaults: dict[str, Any] = {"eta": 0.1, "on_no_minority": "run"}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.params = parse_options(self.name, options, self.defaults)
        if self.params["on_no_minority"] not in ("run", "skip"):
            raise ValueError("groupdro:on_no_minority must be 'run' or 'skip'")

    def run(self, data: ExperimentData, cfg: TrainConfig) -> MethodOutput:
        ids, groups = group_ids(data.train.labels, data.train.place)
        minority = minority_groups(data.train.labels, data.train.place)
        missing = [g for g in all_groups(data) if g not in groups]
        notes = []
        if not minority:
            reason = (f"reduces to ERM: no minority group in train (groups present: "
                      f"{_fmt_groups(groups, data.dataset.classes)}, one per class), so the worst-group "
                      f"objective can only reweight classes")
            if self.params["on_no_minority"] == "skip":
                return MethodOutput(None, None, skipped=reason)
            notes.append(reason)
        elif missing:
            notes.append(f"groups absent from train: {_fmt_groups(missing, data.dataset.classes)}")
        loss = GroupDROLoss(len(groups), self.params["eta"])
        targets = np.stack([data.train.labels, ids], 1)
        source = ArraySource(data.train.images, targets, hflip=cfg.hflip)
        result = fit(source, data.val.images, data.val.labels, data.num_classes, cfg, loss_fn=loss)
        info = {"groupdro_q": {_fmt_groups([g], data.dataset.classes): float(q) for g, q in zip(groups, loss.q, strict=True)},
                "n_train_groups": len(groups)}
        return MethodOutput(result.model, result, info, notes)


# ----------------------------------------------------------------------------- DFR
def balanced_subset(groups: np.ndarray, n_groups: int, rng: np.random.Generator) -> np.ndarray:
    """Indices with exactly ``min_g n_g`` samples of every group (drawn without replacement)."""
    counts = np.bincount(groups, minlength=n_groups)
    k = int(counts.min())
    if k == 0:
        raise ValueError("a group is empty: the balanced subset would be empty")
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(groups == g), k, replace=False) for g in range(n_groups)]))


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, c: float, iters: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression, L2 penalty ``||W||^2 / (2 C)`` on the summed loss (sklearn's
    convention), full-batch L-BFGS. Returns ``(W (K, D), b (K,))``."""
    w = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")
    xd = x.double()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(xd @ w.T + b, y, reduction="sum") + (w * w).sum() / (2.0 * c)
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def dfr_head(feats: torch.Tensor, labels: torch.Tensor, groups: np.ndarray, n_groups: int, num_classes: int,
             c: float, n_subsets: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Average of logistic regressions fit on ``n_subsets`` group-balanced subsets (standardised
    features; the returned weights act on the *raw* features)."""
    mean, std = feats.mean(0), feats.std(0).clamp_min(1e-6)
    z = (feats - mean) / std
    ws, bs = [], []
    for _ in range(n_subsets):
        idx = torch.from_numpy(balanced_subset(groups, n_groups, rng))
        w, b = fit_logistic(z[idx], labels[idx], num_classes, c)
        ws.append(w)
        bs.append(b)
    w, b = torch.stack(ws).mean(0), torch.stack(bs).mean(0)
    w_raw = w / std.double()
    return w_raw, b - (w_raw * mean.double()).sum(1)


@torch.no_grad()
def features(model: nn.Module, images: np.ndarray, batch_size: int = 512) -> torch.Tensor:
    from .loop import to_tensor

    model.eval()
    out = [model.forward_features(to_tensor(images[i : i + batch_size]))  # type: ignore[operator]
           for i in range(0, len(images), batch_size)]
    return torch.cat(out).float()


def worst_group_acc(pred: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    return float(min((pred[groups == g] == labels[groups == g]).mean() for g in np.unique(groups)))


@METHODS.register("dfr")
class DFR(Method):
    """Deep Feature Reweighting: the ERM model's features, last layer retrained on val.

    * The val split is split in half, stratified by group. For each ``C`` in ``cs`` a logistic
      regression is fit on group-balanced subsets of the first half; the ``C`` with the best
      worst-group accuracy on the second half wins.
    * The final head is the average of ``n_subsets`` logistic regressions, each fit on a subset of
      the *whole* val split with exactly ``min_g n_g`` images of every group (truly capped to the
      smallest group, as in the paper; L2 instead of the paper's L1 penalty).

    Groups are every ``(y, place)`` of the dataset. When val lacks one of them (no minority group,
    e.g. correlation 1.0) the balanced subset would be empty: the method is skipped with that reason.
    Val metrics of DFR are measured on its own training data.
    """

    name = "dfr"
    needs = "val group labels (y, place) with every group present, and an ERM model"
    defaults: dict[str, Any] = {"n_subsets": 10, "cs": "0.01+0.1+1+10", "seed_offset": 0}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.params = parse_options(self.name, options, self.defaults)
        try:
            self.cs = [float(c) for c in str(self.params["cs"]).split("+") if c]
        except ValueError:
            raise ValueError(f"dfr:cs must be '+'-separated numbers, got {self.params['cs']!r}") from None
        if not self.cs or min(self.cs) <= 0:
            raise ValueError("dfr:cs needs at least one positive value")

    def run(self, data: ExperimentData, cfg: TrainConfig) -> MethodOutput:
        groups_all = all_groups(data)
        index = {g: i for i, g in enumerate(groups_all)}
        val_groups = np.array([index[(int(a), int(b))] for a, b in zip(data.val.labels, data.val.place, strict=True)])
        counts = np.bincount(val_groups, minlength=len(groups_all))
        empty = [g for g, n in zip(groups_all, counts, strict=True) if n == 0]
        classes = data.dataset.classes
        if empty:
            return MethodOutput(None, None, skipped=(
                f"val has no image of group(s) {_fmt_groups(empty, classes)}: a group-balanced subset capped to the "
                f"smallest group would be empty, so there is no minority group to reweight toward"))
        erm = shared_erm(data, cfg)
        if not hasattr(erm, "forward_features") or not isinstance(getattr(erm, "head", None), nn.Linear):
            return MethodOutput(None, None, skipped=f"model {cfg.model!r} has no forward_features / linear head")
        rng = np.random.default_rng([cfg.seed, 7919 + int(self.params["seed_offset"])])
        feats = features(erm, data.val.images)
        labels = torch.as_tensor(data.val.labels, dtype=torch.long)
        notes = [f"balanced val subset: {int(counts.min())} per group x {len(groups_all)} groups; "
                 "val metrics are on DFR's own training data"]
        best_c, tuning = self.cs[0], {}
        if counts.min() >= 2 and len(self.cs) > 1:
            half = np.zeros(len(val_groups), bool)
            for g in range(len(groups_all)):
                members = rng.permutation(np.flatnonzero(val_groups == g))
                half[members[: len(members) // 2]] = True
            tr, ho = np.flatnonzero(half), np.flatnonzero(~half)
            for c in self.cs:
                w, b = dfr_head(feats[tr], labels[tr], val_groups[tr], len(groups_all), data.num_classes, c,
                                self.params["n_subsets"], rng)
                pred = (feats[ho].double() @ w.T + b).argmax(1).numpy()
                tuning[str(c)] = worst_group_acc(pred, data.val.labels[ho], val_groups[ho])
            best_c = max(self.cs, key=lambda c: (tuning[str(c)], -abs(np.log10(c))))
        elif len(self.cs) > 1:
            notes.append(f"too few val images per group to tune C; using C={best_c}")
        w, b = dfr_head(feats, labels, val_groups, len(groups_all), data.num_classes, best_c,
                        self.params["n_subsets"], rng)
        model = copy.deepcopy(erm)
        head = model.head
        assert isinstance(head, nn.Linear)
        with torch.no_grad():
            head.weight.copy_(w.to(head.weight.dtype))
            head.bias.copy_(b.to(head.bias.dtype))
        model.eval()
        info = {"dfr_c": best_c, "dfr_tuning_wga": tuning, "dfr_per_group": int(counts.min())}
        return MethodOutput(model, None, info, notes)


# ----------------------------------------------------------------------------- JTT
def error_set(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Indices of the training images the (stage-1) model misclassifies (eval mode, no augmentation)."""
    pred = predict_logits(model, images).argmax(1).numpy()
    return np.flatnonzero(pred != np.asarray(labels))


@METHODS.register("jtt")
class JTT(Method):
    """Just Train Twice: stage 1 trains ERM for ``t`` epochs (default a fifth of the epochs, at
    least 1); stage 2 trains a fresh model with the stage-1 error set upsampled ``up`` times.

    When stage 1 classifies every training image correctly the error set is empty and stage 2 would
    be plain ERM: the method is skipped with that reason rather than returning ERM under JTT's name.
    """

    name = "jtt"
    needs = "no train group labels (the paper tunes t and up on worst-group val accuracy, i.e. val group labels)"
    defaults: dict[str, Any] = {"t": None, "up": 50.0}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.params = parse_options(self.name, options, self.defaults)
        if self.params["up"] < 1:
            raise ValueError("jtt:up must be >= 1")

    def stage1(self, data: ExperimentData, cfg: TrainConfig) -> nn.Module:
        source = ArraySource(data.train.images, data.train.labels, hflip=cfg.hflip)
        return fit(source, data.val.images, data.val.labels, data.num_classes, cfg).model

    def run(self, data: ExperimentData, cfg: TrainConfig) -> MethodOutput:
        from dataclasses import replace

        t = self.params["t"] or max(1, cfg.epochs // 5)
        first = self.stage1(data, replace(cfg, epochs=t))
        errors = error_set(first, data.train.images, data.train.labels)
        n = len(data.train)
        if len(errors) == 0:
            return MethodOutput(None, None, skipped=(
                f"stage 1 ({t} epoch{'s' if t != 1 else ''} of ERM) classifies all {n} training images "
                f"correctly: the error set is empty, so stage 2 would be plain ERM"
                + (" (try a smaller t)" if t > 1 else " (ERM fits every training image within one epoch)")))
        minority = set(minority_groups(data.train.labels, data.train.place))
        err_groups = group_counts_of(data.train.labels[errors], data.train.place[errors])
        in_minority = sum(v for g, v in err_groups.items() if g in minority)
        notes = [f"seed {cfg.seed}: error set of {len(errors)} / {n} training images ({len(errors) / n:.1%}), "
                 f"{in_minority} from minority groups"]
        if not minority:
            notes.append("no minority group in train: the error set can only hold hard majority-group images")
        weights = np.ones(n)
        weights[errors] = self.params["up"]
        source = ArraySource(data.train.images, data.train.labels, hflip=cfg.hflip, sample_weights=weights)
        result = fit(source, data.val.images, data.val.labels, data.num_classes, cfg)
        classes = data.dataset.classes
        info = {"jtt_t": t, "jtt_up": self.params["up"], "error_set_size": int(len(errors)),
                "error_set_groups": {_fmt_groups([g], classes): v for g, v in sorted(err_groups.items())}}
        return MethodOutput(result.model, result, info, notes)


def group_counts_of(labels: np.ndarray, place: np.ndarray) -> dict[tuple[int, int], int]:
    from ..evaluate.metrics import group_counts

    return group_counts(labels, place)


# ----------------------------------------------------------------------------- ERM + augmentation
AUGMENTATIONS = ("mixup", "cutmix", "color")


def mixup(x: torch.Tensor, target: torch.Tensor, lam: float, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return lam * x + (1 - lam) * x[perm], lam * target + (1 - lam) * target[perm]


def cutmix_box(h: int, w: int, lam: float, generator: torch.Generator) -> tuple[int, int, int, int]:
    """A box of area about ``(1 - lam) h w`` at a random centre, clipped: ``(y0, y1, x0, x1)``."""
    r = float(np.sqrt(1 - lam))
    ch, cw = int(h * r), int(w * r)
    cy = int(torch.randint(0, h, (1,), generator=generator))
    cx = int(torch.randint(0, w, (1,), generator=generator))
    return max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)


def cutmix(x: torch.Tensor, target: torch.Tensor, box: tuple[int, int, int, int], perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    y0, y1, x0, x1 = box
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
    lam = 1 - (y1 - y0) * (x1 - x0) / (x.shape[2] * x.shape[3])  # the area actually kept
    return out, lam * target + (1 - lam) * target[perm]


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * F.log_softmax(logits, 1)).sum(1).mean()


class AugmentedSource(ArraySource):
    """ArraySource batches with colour jitter, then MixUp or CutMix (one per batch, chosen at
    random among those enabled); yields soft targets ``(B, K)``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int, augs: tuple[str, ...],
                 hflip: bool = True, mixup_alpha: float = 0.4, cutmix_alpha: float = 1.0,
                 jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)) -> None:
        super().__init__(images, labels, hflip)
        self.num_classes = num_classes
        self.augs = augs
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.jitter = jitter

    def batches(self, epoch: int, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        mixers = [a for a in self.augs if a in ("mixup", "cutmix")]
        for x, y in super().batches(epoch, batch_size, generator):
            target = F.one_hot(y, self.num_classes).float()
            if "color" in self.augs:
                x = color_jitter(x, *self.jitter, generator=generator)
            if mixers:
                kind = mixers[int(torch.randint(0, len(mixers), (1,), generator=generator))]
                rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
                perm = torch.randperm(len(y), generator=generator)
                if kind == "mixup":
                    x, target = mixup(x, target, float(rng.beta(self.mixup_alpha, self.mixup_alpha)), perm)
                else:
                    lam = float(rng.beta(self.cutmix_alpha, self.cutmix_alpha))
                    x, target = cutmix(x, target, cutmix_box(x.shape[2], x.shape[3], lam, generator), perm)
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, target


@METHODS.register("erm_aug")
class ERMAug(Method):
    """ERM with generic augmentation: ``aug`` is a ``+``-separated subset of ``mixup``, ``cutmix``,
    ``color`` (default all three: colour jitter on every batch, then MixUp or CutMix)."""

    name = "erm_aug"
    needs = "no group labels"
    defaults: dict[str, Any] = {"aug": "mixup+cutmix+color", "mixup_alpha": 0.4, "cutmix_alpha": 1.0,
                                "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.params = parse_options(self.name, options, self.defaults)
        augs = tuple(a.strip() for a in str(self.params["aug"]).split("+") if a.strip())
        bad = [a for a in augs if a not in AUGMENTATIONS]
        if bad or not augs:
            raise ValueError(f"erm_aug:aug={self.params['aug']!r}: choose '+'-separated from {', '.join(AUGMENTATIONS)}")
        self.augs = augs

    def run(self, data: ExperimentData, cfg: TrainConfig) -> MethodOutput:
        p = self.params
        source = AugmentedSource(data.train.images, data.train.labels, data.num_classes, self.augs, cfg.hflip,
                                 p["mixup_alpha"], p["cutmix_alpha"],
                                 (p["brightness"], p["contrast"], p["saturation"], p["hue"]))
        result = fit(source, data.val.images, data.val.labels, data.num_classes, cfg, loss_fn=soft_cross_entropy)
        return MethodOutput(result.model, result, {"augmentations": list(self.augs)})


# ----------------------------------------------------------------------------- random paste
def uniform_swap(foregrounds: np.ndarray, backgrounds: np.ndarray, labels: np.ndarray, config: Any) -> Any:
    """A :class:`~autobackswap.compose.swap.BackgroundSwap` whose donor is drawn uniformly among all
    images (not class-balanced)."""
    from ..compose.swap import BackgroundSwap

    swap = BackgroundSwap(foregrounds, backgrounds, labels, config, num_classes=1 + int(np.max(labels)))
    swap.donors = [torch.arange(len(labels))]
    return swap


@METHODS.register("random_paste")
class RandomPaste(PipelineMethod):
    """The ablation of inpainting and class balance: each training image's cut-out (the same learned
    masks as ``autobackswap``) is pasted, with the same jitter, onto another training image *as is*,
    its own object still in it, drawn uniformly at random. Takes every ``autobackswap`` option."""

    name = "random_paste"
    needs = "no group labels (patch labels on a few hundred training images)"

    def run(self, data: ExperimentData, cfg: TrainConfig) -> MethodOutput:
        from ..compose.swap import SwapSource
        from ..evaluate.sheets import composites_for, separation_sheet
        from ..pipeline import build_banks

        banks = build_banks(data, self.pipeline, cfg.seed)
        fg = np.asarray(banks.swap.fg)  # a tensor, or a DiskArray when the banks stream from disk
        # bg_only is off here: these "backgrounds" are original images with their own object in them
        swap = uniform_swap(fg, data.train.images, data.train.labels, replace(self.pipeline.swap_config(), bg_only=0.0))
        info = {k: v for k, v in banks.info.items() if k != "contact_sheet"}
        rows = np.linspace(0, len(data.train) - 1, min(8, len(data.train))).round().astype(int)
        sheet = separation_sheet(data.run_dir / "random_paste" / f"contact_sheet_seed{cfg.seed}.png",
                                 data.train.images[rows], fg[rows], data.train.images[rows],
                                 composites_for(swap, data.train.images, rows, 3, cfg.seed))
        info["contact_sheet"] = str(sheet)
        source = SwapSource(data.train.images, data.train.labels, swap, hflip=cfg.hflip)
        result = fit(source, data.val.images, data.val.labels, data.num_classes, cfg)
        return MethodOutput(result.model, result, info)
