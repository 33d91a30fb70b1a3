"""Group metrics: per-group accuracy, worst-group accuracy and the averages users confuse.

* ``average_accuracy``: plain accuracy over all test samples (the test split's own group mix).
* ``train_weighted_accuracy``: per-group accuracies weighted by the **training** group proportions
  (the convention of the DFR and JTT papers for Waterbirds' "mean accuracy").
* ``mean_group_accuracy``: unweighted mean over groups.
* ``worst_group_accuracy``: the minimum over groups present in the split.
* ``majority_accuracy`` / ``minority_accuracy``: pooled accuracy over majority / minority groups. A
  group is *majority* when its place is the most frequent place of its class in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data.groups import majority_groups


def group_metrics(
    pred: Sequence[int] | np.ndarray,
    y: Sequence[int] | np.ndarray,
    place: Sequence[int] | np.ndarray,
    train_counts: dict[tuple[int, int], int] | None = None,
) -> dict[str, Any]:
    """All metrics for predictions ``pred`` against labels ``y`` with spurious attribute ``place``."""
    pred_a, y_a, place_a = np.asarray(pred), np.asarray(y), np.asarray(place)
    if not (len(pred_a) == len(y_a) == len(place_a)) or len(y_a) == 0:
        raise ValueError("pred, y and place must be non-empty and of equal length")
    correct = pred_a == y_a
    groups = []
    for gy, gp in sorted(set(zip(y_a.tolist(), place_a.tolist(), strict=True))):
        sel = (y_a == gy) & (place_a == gp)
        groups.append({"y": gy, "place": gp, "n": int(sel.sum()), "accuracy": float(correct[sel].mean())})
    accs = [g["accuracy"] for g in groups]
    out: dict[str, Any] = {
        "average_accuracy": float(correct.mean()),
        "worst_group_accuracy": float(min(accs)),
        "mean_group_accuracy": float(np.mean(accs)),
        "groups": groups,
    }
    if train_counts:
        total = sum(train_counts.values())
        weighted = sum(train_counts.get((g["y"], g["place"]), 0) / total * g["accuracy"] for g in groups)
        covered = sum(train_counts.get((g["y"], g["place"]), 0) for g in groups) / total
        out["train_weighted_accuracy"] = float(weighted / covered) if covered > 0 else None
        major = majority_groups(train_counts)
        is_major = np.array([(a, b) in major for a, b in zip(y_a.tolist(), place_a.tolist(), strict=True)])
        out["majority_accuracy"] = float(correct[is_major].mean()) if is_major.any() else None
        out["minority_accuracy"] = float(correct[~is_major].mean()) if (~is_major).any() else None
    return out


SUMMARY_KEYS = (
    "worst_group_accuracy",
    "average_accuracy",
    "train_weighted_accuracy",
    "mean_group_accuracy",
    "majority_accuracy",
    "minority_accuracy",
)


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std (population, ddof=0) over seeds of each summary metric and each group accuracy."""
    if not runs:
        raise ValueError("nothing to aggregate")
    out: dict[str, Any] = {}
    std: dict[str, float] = {}
    for key in SUMMARY_KEYS:
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = float(np.mean(values))
            std[key] = float(np.std(values))
    groups = []
    for i, g in enumerate(runs[0]["groups"]):
        values = [r["groups"][i]["accuracy"] for r in runs]
        groups.append({**g, "accuracy": float(np.mean(values)), "accuracy_std": float(np.std(values))})
    out["groups"] = groups
    out["std"] = std
    out["n_seeds"] = len(runs)
    return out
