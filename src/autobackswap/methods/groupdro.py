"""Online GroupDRO (Sagawa et al. 2020): the worst-group objective over train groups ``(y, place)``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data.groups import group_ids, minority_groups
from ..data.splits import ExperimentData
from ..train.loop import TrainConfig, fit
from ..train.sources import ArraySource
from .base import METHODS, Method, MethodContext, MethodOutput, format_groups


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
        sums = torch.zeros(n, dtype=losses.dtype, device=losses.device).scatter_add(0, g, losses)
        counts = torch.bincount(g, minlength=n).to(losses.dtype)
        present = counts > 0
        group_loss = sums / counts.clamp_min(1)
        with torch.no_grad():
            q = self.q.to(losses.device).clone()  # on the training device (a copy either way)
            q[present] = q[present] * torch.exp(self.eta * group_loss[present].detach().double())
            self.q = q / q.sum()
        weights = self.q.to(losses.dtype) * present
        return (weights * group_loss).sum() / weights.sum().clamp_min(1e-12)


@dataclass
class GroupDROOptions:
    eta: float = 0.1  # step size of the group weights
    on_no_minority: str = "run"  # run (and say so in the notes) or skip when train has no minority group

    def __post_init__(self) -> None:
        if self.on_no_minority not in ("run", "skip"):
            raise ValueError("groupdro:on_no_minority must be 'run' or 'skip'")


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
    Options = GroupDROOptions

    def run(self, data: ExperimentData, cfg: TrainConfig, ctx: MethodContext) -> MethodOutput:
        ids, groups = group_ids(data.train.labels, data.train.place)
        minority = minority_groups(data.train.labels, data.train.place)
        missing = [g for g in data.all_groups() if g not in groups]
        notes = []
        if not minority:
            reason = (f"reduces to ERM: no minority group in train (groups present: "
                      f"{format_groups(groups, data.dataset.classes)}, one per class), so the worst-group "
                      f"objective can only reweight classes")
            if self.params.on_no_minority == "skip":
                return MethodOutput(None, None, skipped=reason)
            notes.append(reason)
        elif missing:
            notes.append(f"groups absent from train: {format_groups(missing, data.dataset.classes)}")
        loss = GroupDROLoss(len(groups), self.params.eta)
        targets = np.stack([data.train.labels, ids], 1)
        source = ArraySource(data.train.images, targets, hflip=cfg.hflip)
        result = fit(source, data.val.images, data.val.labels, data.num_classes, cfg, loss_fn=loss)
        info = {"groupdro_q": {format_groups([g], data.dataset.classes): float(q) for g, q in zip(groups, loss.q, strict=True)},
                "n_train_groups": len(groups)}
        return MethodOutput(result.model, result, info, notes)
