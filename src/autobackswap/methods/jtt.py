"""Just Train Twice (Liu et al. 2021): upweight the errors of a short ERM run."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from torch import nn

from ..data.groups import group_counts, minority_groups
from ..data.splits import ExperimentData
from ..train.loop import TrainConfig, fit, predict_logits
from ..train.sources import ArraySource
from .base import METHODS, Method, MethodContext, MethodOutput, format_groups, train_erm


def error_set(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Indices of the training images the (stage-1) model misclassifies (eval mode, no augmentation)."""
    pred = predict_logits(model, images).argmax(1).numpy()
    return np.flatnonzero(pred != np.asarray(labels))


@dataclass
class JTTOptions:
    t: int | None = None  # stage-1 epochs (default a fifth of the epochs, at least 1)
    up: float = 50.0  # upsampling of the stage-1 error set

    def __post_init__(self) -> None:
        if self.up < 1:
            raise ValueError("jtt:up must be >= 1")
        if self.t is not None and self.t < 1:
            raise ValueError("jtt:t must be >= 1")


@METHODS.register("jtt")
class JTT(Method):
    """Just Train Twice: stage 1 trains ERM for ``t`` epochs (default a fifth of the epochs, at
    least 1); stage 2 trains a fresh model with the stage-1 error set upsampled ``up`` times.

    When stage 1 classifies every training image correctly the error set is empty and stage 2 would
    be plain ERM: the method is skipped with that reason rather than returning ERM under JTT's name.
    """

    name = "jtt"
    needs = "no train group labels (the paper tunes t and up on worst-group val accuracy, i.e. val group labels)"
    Options = JTTOptions

    def stage1(self, data: ExperimentData, cfg: TrainConfig) -> nn.Module:
        return train_erm(data, cfg).model

    def run(self, data: ExperimentData, cfg: TrainConfig, ctx: MethodContext) -> MethodOutput:
        t = self.params.t or max(1, cfg.epochs // 5)
        first = self.stage1(data, replace(cfg, epochs=t))
        errors = error_set(first, data.train.images, data.train.labels)
        n = len(data.train)
        if len(errors) == 0:
            return MethodOutput(None, None, skipped=(
                f"stage 1 ({t} epoch{'s' if t != 1 else ''} of ERM) classifies all {n} training images "
                f"correctly: the error set is empty, so stage 2 would be plain ERM"
                + (" (try a smaller t)" if t > 1 else " (ERM fits every training image within one epoch)")))
        minority = set(minority_groups(data.train.labels, data.train.place))
        err_groups = group_counts(data.train.labels[errors], data.train.place[errors])
        in_minority = sum(v for g, v in err_groups.items() if g in minority)
        notes = [f"seed {cfg.seed}: error set of {len(errors)} / {n} training images ({len(errors) / n:.1%}), "
                 f"{in_minority} from minority groups"]
        if not minority:
            notes.append("no minority group in train: the error set can only hold hard majority-group images")
        weights = np.ones(n)
        weights[errors] = self.params.up
        source = ArraySource(data.train.images, data.train.labels, hflip=cfg.hflip, sample_weights=weights)
        result = fit(source, data.val.images, data.val.labels, data.num_classes, cfg)
        classes = data.dataset.classes
        info = {"jtt_t": t, "jtt_up": self.params.up, "error_set_size": int(len(errors)),
                "error_set_groups": {format_groups([g], classes): v for g, v in sorted(err_groups.items())}}
        return MethodOutput(result.model, result, info, notes)
