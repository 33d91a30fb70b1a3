"""Deep Feature Reweighting (Kirichenko et al. 2023): retrain the last layer of an ERM model on a
group-balanced subset of val."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import seeding
from ..data.splits import ExperimentData
from ..tensors import to_tensor
from ..train.loop import TrainConfig
from .base import METHODS, Method, MethodContext, MethodOutput, format_groups


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
    model.eval()
    out = [model.forward_features(to_tensor(images[i : i + batch_size]))  # type: ignore[operator]
           for i in range(0, len(images), batch_size)]
    return torch.cat(out).float()


def worst_group_acc(pred: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    return float(min((pred[groups == g] == labels[groups == g]).mean() for g in np.unique(groups)))


@dataclass
class DFROptions:
    n_subsets: int = 10  # logistic regressions averaged, each on a group-balanced subset
    cs: str = "0.01+0.1+1+10"  # '+'-separated inverse L2 strengths tried
    seed_offset: int = 0

    def __post_init__(self) -> None:
        self.c_values()

    def c_values(self) -> list[float]:
        try:
            values = [float(c) for c in str(self.cs).split("+") if c]
        except ValueError:
            raise ValueError(f"dfr:cs must be '+'-separated numbers, got {self.cs!r}") from None
        if not values or min(values) <= 0:
            raise ValueError("dfr:cs needs at least one positive value")
        return values


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
    Options = DFROptions

    @property
    def cs(self) -> list[float]:
        return self.params.c_values()

    def check(self, data: ExperimentData, seed: int) -> str | None:
        """Why DFR cannot run on ``data`` (a group of the dataset absent from val), or None."""
        groups_all = data.all_groups()
        present = {(int(a), int(b)) for a, b in zip(data.val.labels, data.val.place, strict=True)}
        empty = [g for g in groups_all if g not in present]
        if empty:
            return (f"val has no image of group(s) {format_groups(empty, data.dataset.classes)}: a group-balanced "
                    f"subset capped to the smallest group would be empty, so there is no minority group to reweight toward")
        return None

    def run(self, data: ExperimentData, cfg: TrainConfig, ctx: MethodContext) -> MethodOutput:
        skipped = self.check(data, cfg.seed)
        if skipped is not None:
            return MethodOutput(None, None, skipped=skipped)
        groups_all = data.all_groups()
        index = {g: i for i, g in enumerate(groups_all)}
        val_groups = np.array([index[(int(a), int(b))] for a, b in zip(data.val.labels, data.val.place, strict=True)])
        counts = np.bincount(val_groups, minlength=len(groups_all))
        erm = ctx.shared_erm(data, cfg)
        if not hasattr(erm, "forward_features") or not isinstance(getattr(erm, "head", None), nn.Linear):
            return MethodOutput(None, None, skipped=f"model {cfg.model!r} has no forward_features / linear head")
        rng = seeding.rng(cfg.seed, "dfr", int(self.params.seed_offset))
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
                                self.params.n_subsets, rng)
                pred = (feats[ho].double() @ w.T + b).argmax(1).numpy()
                tuning[str(c)] = worst_group_acc(pred, data.val.labels[ho], val_groups[ho])
            best_c = max(self.cs, key=lambda c: (tuning[str(c)], -abs(np.log10(c))))
        elif len(self.cs) > 1:
            notes.append(f"too few val images per group to tune C; using C={best_c}")
        w, b = dfr_head(feats, labels, val_groups, len(groups_all), data.num_classes, best_c,
                        self.params.n_subsets, rng)
        model = copy.deepcopy(erm)
        head = model.head
        assert isinstance(head, nn.Linear)
        with torch.no_grad():
            head.weight.copy_(w.to(head.weight.dtype))
            head.bias.copy_(b.to(head.bias.dtype))
        model.eval()
        info = {"dfr_c": best_c, "dfr_tuning_wga": tuning, "dfr_per_group": int(counts.min())}
        return MethodOutput(model, None, info, notes)
