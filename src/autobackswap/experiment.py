"""Run methods side by side on the same splits and write ``RUN/results.json``.

Schema (DESIGN.md section 2; it grows but never breaks)::

    {"dataset": ..., "config": {...},
     "methods": {"erm": {"test": {"average_accuracy", "worst_group_accuracy", "groups": [...], "std": {...}},
                         "val": {...}, "train_seconds": 12.3, "runs": [{"seed": 0, "test": {...}, ...}]}}}

``test`` and ``val`` hold the mean over seeds (``std`` the spread); ``runs`` the per-seed figures.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .data.layout import ImageDataset, Record, load_images, load_segmentations, read_dataset
from .evaluate.metrics import aggregate, group_counts, group_metrics
from .io import write_json
from .train.loop import TrainConfig, predict_logits, save_classifier
from .train.methods import METHODS, MethodOutput, parse_method_spec

log = logging.getLogger(__name__)


@dataclass
class SplitData:
    records: list[Record]
    images: np.ndarray  # NHWC uint8
    labels: np.ndarray  # class indices
    place: np.ndarray
    dataset: ImageDataset
    image_size: int

    @cached_property
    def y(self) -> np.ndarray:
        return np.array([r.y for r in self.records])

    @cached_property
    def segmentations(self) -> np.ndarray:
        """Ground-truth masks at the working size, (N, H, W) uint8 (DataError when missing)."""
        return load_segmentations(self.dataset, self.records, self.image_size)

    def __len__(self) -> int:
        return len(self.records)


@dataclass
class ExperimentData:
    dataset: ImageDataset
    image_size: int
    train: SplitData
    val: SplitData
    test: SplitData
    run_dir: Path

    @property
    def num_classes(self) -> int:
        return len(self.dataset.classes)

    @cached_property
    def train_group_counts(self) -> dict[tuple[int, int], int]:
        return group_counts(self.train.y, self.train.place)


def load_experiment_data(data_dir: str | Path, image_size: int, run_dir: str | Path) -> ExperimentData:
    dataset = read_dataset(data_dir)
    index = {c: i for i, c in enumerate(dataset.classes)}

    def split(name: str) -> SplitData:
        records = dataset.split(name)
        images = load_images(records, image_size, desc=f"loading {name}")
        labels = np.array([index[r.y] for r in records], dtype=np.int64)
        place = np.array([r.place for r in records], dtype=np.int64)
        return SplitData(records, images, labels, place, dataset, image_size)

    return ExperimentData(dataset, image_size, split("train"), split("val"), split("test"), Path(run_dir))


@dataclass
class ExperimentConfig:
    data: str
    methods: list[str] = field(default_factory=lambda: ["erm"])
    seeds: list[int] = field(default_factory=lambda: [0])
    image_size: int = 64
    train: TrainConfig = field(default_factory=TrainConfig)
    method_options: dict[str, Any] = field(default_factory=dict)  # defaults for every method
    save_models: bool = True


def evaluate_model(model: Any, split: SplitData, train_counts: dict[tuple[int, int], int],
                   classes: list[int]) -> dict[str, Any]:
    pred_idx = predict_logits(model, split.images).argmax(1).numpy()
    pred = np.asarray(classes)[pred_idx]
    return group_metrics(pred, split.y, split.place, train_counts)


def run_method(spec: str, data: ExperimentData, cfg: ExperimentConfig, seed: int) -> tuple[MethodOutput, float]:
    name, options = parse_method_spec(spec)
    method = METHODS.get(name)(**{**cfg.method_options, **options})
    start = time.perf_counter()
    output = method.run(data, replace(cfg.train, seed=seed))
    return output, time.perf_counter() - start


def run_experiment(cfg: ExperimentConfig, run_dir: str | Path, data: ExperimentData | None = None) -> dict[str, Any]:
    """Run every method for every seed; write ``results.json`` (after each method, so partial
    results survive a crash) and return it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for spec in cfg.methods:
        parse_method_spec(spec)  # fail fast on an unknown method, before loading anything
    data = data or load_experiment_data(cfg.data, cfg.image_size, run_dir)
    results: dict[str, Any] = {"dataset": str(cfg.data), "config": asdict(cfg), "methods": {}}
    write_json(run_dir / "config.json", asdict(cfg))
    for spec in cfg.methods:
        runs: list[dict[str, Any]] = []
        entry: dict[str, Any] = {"needs": METHODS.get(parse_method_spec(spec)[0]).needs}
        for seed in cfg.seeds:
            log.info("method %s, seed %d", spec, seed)
            output, seconds = run_method(spec, data, cfg, seed)
            if output.skipped is not None:
                entry["skipped"] = output.skipped
                break
            assert output.model is not None
            run: dict[str, Any] = {
                "seed": seed,
                "train_seconds": seconds,
                "test": evaluate_model(output.model, data.test, data.train_group_counts, data.dataset.classes),
                "val": evaluate_model(output.model, data.val, data.train_group_counts, data.dataset.classes),
                **output.info,
            }
            if output.fit is not None:
                run["best_epoch"] = output.fit.best_epoch
                run["history"] = output.fit.history
                run["epoch_seconds"] = output.fit.epoch_seconds
            runs.append(run)
            entry.setdefault("notes", [])
            entry["notes"] = sorted(set(entry["notes"]) | set(output.notes))
            if cfg.save_models:
                save_classifier(run_dir / "models" / f"{spec.replace(':', '_')}_seed{seed}.pt", output.model,
                                replace(cfg.train, seed=seed), data.num_classes, data.dataset.classes,
                                cfg.image_size, {"method": spec})
        if runs:
            entry["test"] = aggregate([r["test"] for r in runs])
            entry["val"] = aggregate([r["val"] for r in runs])
            entry["train_seconds"] = float(np.mean([r["train_seconds"] for r in runs]))
            for key in ("mask_iou", "patch_balanced_accuracy"):
                values = [r[key] for r in runs if r.get(key) is not None]
                if values:
                    entry[key] = float(np.mean(values))
            entry["runs"] = runs
        results["methods"][spec] = entry
        write_json(run_dir / "results.json", results)
    return results
