"""Results: a model's group metrics on a split, and the per-method entries of ``results.json``
aggregated over seeds (means, spreads, skips, the label-efficiency curve)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..data.groups import group_counts
from ..data.layouts import read_layout
from ..data.splits import ExperimentData, SplitData, load_split
from ..methods.base import SWEPT_METHOD, parse_method_spec
from ..train.loop import load_classifier, predict_logits
from .metrics import aggregate, group_metrics


def model_path(run_dir: str | Path, spec: str, seed: int) -> Path:
    return Path(run_dir) / "models" / f"{spec.replace(':', '_')}_seed{seed}.pt"


def predict_classes(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """Class *indices* predicted for NHWC uint8 images."""
    return predict_logits(model, images).argmax(1).numpy()


def evaluate_model(model: Any, split: SplitData, train_counts: dict[tuple[int, int], int],
                   classes: list[int]) -> dict[str, Any]:
    pred = np.asarray(classes)[predict_classes(model, split.images)]
    return group_metrics(pred, split.y, split.place, train_counts)


def _skip_reason(reasons: dict[int, str]) -> str:
    unique = list(dict.fromkeys(reasons.values()))
    return unique[0] if len(unique) == 1 else "; ".join(f"seed {s}: {r}" for s, r in reasons.items())


def classifier_seconds(run: dict[str, Any]) -> float:
    """A run's ``train_seconds`` without what it spent fitting a detector (a reused one took no time here)
    and separating the training set: the classifier's training."""
    detector = 0.0 if run.get("detector_reused") else float(run.get("detector_seconds") or 0.0)
    return max(0.0, float(run["train_seconds"]) - detector - float(run.get("separation_seconds") or 0.0))


def finalize_entry(entry: dict[str, Any], runs: list[dict[str, Any]], skipped: dict[int, str]) -> None:
    if skipped:
        if runs:
            entry["skipped_seeds"] = {str(s): r for s, r in skipped.items()}
            entry.setdefault("notes", []).append(f"skipped for seed(s) {', '.join(map(str, skipped))}: "
                                                 f"{_skip_reason(skipped)}")
        else:
            entry["skipped"] = _skip_reason(skipped)
    if runs:
        entry["test"] = aggregate([r["test"] for r in runs])
        entry["val"] = aggregate([r["val"] for r in runs])
        for key in [k for k in runs[0] if k.startswith("test:")]:
            entry[key] = aggregate([r[key] for r in runs])
        entry["train_seconds"] = float(np.mean([r["train_seconds"] for r in runs]))  # everything the method did
        entry["classifier_seconds"] = float(np.mean([classifier_seconds(r) for r in runs]))
        for key in ("mask_iou", "mask_bg_share", "mask_fg_kept", "patch_balanced_accuracy", "detector_seconds", "separation_seconds"):
            values = [r[key] for r in runs if r.get(key) is not None]
            if values:
                entry[key] = float(np.mean(values))
        gap = official_bg_gap(entry)
        if gap is not None:
            entry["bg_gap_official"] = gap
        if "detector_seconds" in entry:  # every seed loaded a detector an earlier run fitted
            entry["detector_reused"] = all(r.get("detector_reused", False) for r in runs if r.get("detector_seconds") is not None)
        entry["runs"] = runs


def official_bg_gap(entry: dict[str, Any]) -> float | None:
    """BG-gap from the backgrounds challenge's own images: average accuracy on the ``--also-test`` sets named
    ``mixed_same`` and ``mixed_rand`` (None unless both were scored)."""
    same, rand = entry.get("test:mixed_same"), entry.get("test:mixed_rand")
    if not same or not rand:
        return None
    return float(same["average_accuracy"] - rand["average_accuracy"])


def split_groups(split: SplitData) -> list[dict[str, int]]:
    """``[{"y", "place", "n"}]`` for every group present in a split (shown in the report)."""
    return [{"y": int(y), "place": int(p), "n": int(n)} for (y, p), n in sorted(group_counts(split.y, split.place).items())]


def label_efficiency(results: dict[str, Any]) -> dict[str, Any] | None:
    """The label-efficiency curve from the ``autobackswap:label_budget=N`` entries (None if fewer than one)."""
    points = []
    for spec, entry in results["methods"].items():
        name, options = parse_method_spec(spec)
        budget = options.get("label_budget", options.get("budget"))
        if name != SWEPT_METHOD or budget is None or set(options) - {"label_budget", "budget"}:
            continue
        point: dict[str, Any] = {"label_budget": int(budget), "method": spec}
        if "test" not in entry:
            point["skipped"] = entry.get("skipped", "no result")
        else:
            test = entry["test"]
            for key in ("worst_group_accuracy", "average_accuracy"):
                point[key] = test[key]
                point[f"{key}_std"] = test["std"].get(key, 0.0)
            n_labels = [r.get("n_labels") for r in entry["runs"] if r.get("n_labels") is not None]
            point["n_labels"] = int(np.mean(n_labels)) if n_labels else None
            for key in ("mask_iou", "patch_balanced_accuracy"):
                if entry.get(key) is not None:
                    point[key] = entry[key]
            if entry.get("diagnostics"):
                point["bg_gap"] = entry["diagnostics"]["bg_gap"]
            point["n_seeds"] = test.get("n_seeds", len(entry["runs"]))
        points.append(point)
    if not points:
        return None
    points.sort(key=lambda p: p["label_budget"])
    reference = {m: results["methods"][m]["test"]["worst_group_accuracy"]
                 for m in ("erm", "oracle") if "test" in results["methods"].get(m, {})}
    return {"method": SWEPT_METHOD, "budgets": [p["label_budget"] for p in points], "points": points,
            "reference_worst_group_accuracy": reference}


def evaluate_checkpoint(data_dir: str | Path, checkpoint: str | Path, split: str = "test",
                        layout: str = "auto") -> dict[str, Any]:
    """``autobackswap evaluate``: a saved classifier's group metrics on one split of a dataset (read in
    ``layout``; majority groups from that dataset's training split)."""
    model, payload = load_classifier(checkpoint)
    dataset = read_layout(data_dir, layout)
    data = load_split(dataset, split, payload["image_size"], payload["classes"])
    train = dataset.split("train")
    return evaluate_model(model, data, group_counts([r.y for r in train], [r.place for r in train]), payload["classes"])


def finished_run(run_dir: Path, spec: str, seed: int, key: str) -> tuple[dict[str, Any], nn.Module] | None:
    """The record and model of a run an earlier, interrupted ``experiment`` finished with the same key.

    The record is written (atomically) only after its model, so a record means the run is complete."""
    model_file = model_path(run_dir, spec, seed)
    record_file = model_file.with_suffix(".json")
    if not (record_file.is_file() and model_file.is_file()):
        return None
    try:
        record = json.loads(record_file.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("key") != key:
        return None
    model, _ = load_classifier(model_file)
    return record, model


def score_run(record: dict[str, Any], model: nn.Module, data: ExperimentData,
              also: dict[str, SplitData]) -> dict[str, Any]:
    """One seed's entry: test and val group metrics (and every --also-test set) beside its record."""
    def scored(split: SplitData) -> dict[str, Any]:
        return evaluate_model(model, split, data.train_group_counts, data.dataset.classes)

    return {"seed": record["seed"], "train_seconds": record.pop("train_seconds"),
            "test": scored(data.test), "val": scored(data.val),
            **{f"test:{name}": scored(split) for name, split in also.items()},
            **{k: v for k, v in record.items() if k != "seed"}}
