"""Run methods side by side on the same splits and write ``RUN/results.json``, ``RUN/report.html``
and ``RUN/report.md``.

Schema (DESIGN.md section 2; it grows but never breaks)::

    {"dataset": ..., "config": {...},
     "methods": {"erm": {"needs": "no group labels",
                         "test": {"average_accuracy", "worst_group_accuracy", "groups": [...],
                                  "std": {...}, "n_seeds": 3},
                         "val": {...}, "train_seconds": 12.3,
                         "diagnostics": {"only_fg", "only_bg", "mixed_same", "mixed_rand", "bg_gap",
                                         "original", "std": {...}, "n_seeds": 3},
                         "notes": [...], "skipped_seeds": {"1": "why"},
                         "runs": [{"seed": 0, "test": {...}, "diagnostics": {...},
                                   "model": "models/erm_seed0.pt" (relative to RUN), ...}]},
                 "dfr": {"needs": ..., "skipped": "why it cannot work on this data"}},
     (with --also-test NAME=DIR every method also has "test:NAME", the same metrics on DIR's test split)
     "diagnostics": {"masks": "ground_truth", "n": 800, "definitions": {...}, ...},
     "label_efficiency": {"method": "autobackswap", "points": [{"label_budget": 25, ...}, ...]}}

**Resumable.** Each finished (method, seed) run saves its model and then ``RUN/models/<method>_seed<k>.json``
(its record and a key over the method, its options, the training config, the working size and the training and
validation data). Rerunning the same command reuses every run whose key matches and trains only the rest; the
test figures are always recomputed from the saved models.

``test``, ``val`` and ``diagnostics`` hold the mean over seeds (``std`` the spread, ``n_seeds`` how
many); ``runs`` the per-seed figures. A method that cannot work on the data records why in
``skipped`` (every seed) or ``skipped_seeds`` (some seeds) instead of a number.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from .data.layout import ImageDataset, Record, load_images, load_segmentations, read_dataset
from .errors import AutoBackSwapError
from .evaluate.metrics import aggregate, group_counts, group_metrics, majority_groups
from .io import write_json
from .train.loop import TrainConfig, load_classifier, predict_logits, save_classifier
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

    @property
    def has_segmentations(self) -> bool:
        return bool(self.records) and all(self.dataset.segmentation_path(r).is_file() for r in self.records)

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
    memo: dict[str, Any] = field(default_factory=dict)  # work shared between methods (e.g. the ERM model per seed)

    @property
    def num_classes(self) -> int:
        return len(self.dataset.classes)

    @cached_property
    def train_group_counts(self) -> dict[tuple[int, int], int]:
        return group_counts(self.train.y, self.train.place)

    def usual_place(self) -> dict[int, int]:
        """Class index -> its majority place in training (the background that goes with it)."""
        index = {c: i for i, c in enumerate(self.dataset.classes)}
        return {index[y]: p for y, p in majority_groups(self.train_group_counts)}


def load_split(dataset: ImageDataset, name: str, image_size: int, classes: list[int] | None = None) -> SplitData:
    """One split's images at the working size; labels are indices into ``classes`` (default the dataset's)."""
    index = {c: i for i, c in enumerate(classes if classes is not None else dataset.classes)}
    records = dataset.split(name)
    images = load_images(records, image_size, desc=f"loading {name}")
    labels = np.array([index[r.y] for r in records], dtype=np.int64)
    place = np.array([r.place for r in records], dtype=np.int64)
    return SplitData(records, images, labels, place, dataset, image_size)


def load_experiment_data(data_dir: str | Path, image_size: int, run_dir: str | Path) -> ExperimentData:
    dataset = read_dataset(data_dir)
    train, val, test = (load_split(dataset, s, image_size) for s in ("train", "val", "test"))
    return ExperimentData(dataset, image_size, train, val, test, Path(run_dir))


def load_also_test(also_test: dict[str, str], data: ExperimentData) -> dict[str, SplitData]:
    """The test splits of other datasets (e.g. TuxBirds' ``unseen`` beside ``seen``), scored by every model.

    Their classes must be the training classes; a model trained once is then scored on each."""
    splits = {}
    for name, path in also_test.items():
        dataset = read_dataset(path)
        if sorted(dataset.classes) != sorted(data.dataset.classes):
            raise AutoBackSwapError(f"{dataset.metadata_path}: --also-test {name}: classes {dataset.classes} are not "
                                    f"the training classes {data.dataset.classes}")
        splits[name] = load_split(dataset, "test", data.image_size, data.dataset.classes)
    return splits


@dataclass
class ExperimentConfig:
    data: str
    methods: list[str] = field(default_factory=lambda: ["erm"])
    seeds: list[int] = field(default_factory=lambda: [0])
    image_size: int = 64
    train: TrainConfig = field(default_factory=TrainConfig)
    method_options: dict[str, Any] = field(default_factory=dict)  # defaults for every method
    save_models: bool = True
    label_budgets: list[int] = field(default_factory=list)  # sweep autobackswap over these label budgets
    diagnostics: bool = True  # only_fg / only_bg / mixed_same / mixed_rand on the test split
    diagnostics_same: str = "majority"  # mixed_same donors: "majority" (usual background) or "class"
    report: bool = True  # write RUN/report.html and RUN/report.md
    also_test: dict[str, str] = field(default_factory=dict)  # name -> another dataset whose test split is also scored


SWEPT_METHOD = "autobackswap"


def expand_methods(methods: list[str], label_budgets: list[int]) -> list[str]:
    """Each plain ``autobackswap`` spec (no label budget of its own) becomes one
    ``autobackswap:label_budget=N`` spec per budget; one is added when none is listed."""
    if not label_budgets:
        return list(methods)
    if any(b <= 0 for b in label_budgets):
        raise ValueError(f"label budgets must be positive, got {label_budgets}")
    out: list[str] = []
    swept = False
    for spec in methods:
        name, options = parse_method_spec(spec)
        if name == SWEPT_METHOD and not ({"label_budget", "budget"} & set(options)):
            out += [f"{spec}:label_budget={b}" for b in label_budgets]
            swept = True
        else:
            out.append(spec)
    if not swept:
        out += [f"{SWEPT_METHOD}:label_budget={b}" for b in label_budgets]
    return list(dict.fromkeys(out))


def model_path(run_dir: str | Path, spec: str, seed: int) -> Path:
    return Path(run_dir) / "models" / f"{spec.replace(':', '_')}_seed{seed}.pt"


def predict_classes(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """Class *indices* predicted for NHWC uint8 images."""
    return predict_logits(model, images).argmax(1).numpy()


def evaluate_model(model: Any, split: SplitData, train_counts: dict[tuple[int, int], int],
                   classes: list[int]) -> dict[str, Any]:
    pred = np.asarray(classes)[predict_classes(model, split.images)]
    return group_metrics(pred, split.y, split.place, train_counts)


def make_method(spec: str, cfg: ExperimentConfig) -> Any:
    """The method object for ``spec`` (its options validated)."""
    name, options = parse_method_spec(spec)
    return METHODS.get(name)(**{**cfg.method_options, **options})


LATER_TRAIN_FIELDS: dict[str, Any] = {"augment": "", "ema": 0.0}  # TrainConfig fields and their defaults


def train_settings(train: TrainConfig) -> dict[str, Any]:
    """The training config as a run depends on it. Fields added after the first release enter only when
    set away from their default, so runs saved before they existed are still reused."""
    settings = asdict(train)
    for name, default in LATER_TRAIN_FIELDS.items():
        if settings.get(name) == default:
            settings.pop(name)
    return settings


def run_key(spec: str, seed: int, cfg: ExperimentConfig, data_digest: str) -> str:
    """What a finished (method, seed) run depends on: the method and its resolved settings (defaults
    included), the training config and seed, the working size and the training and validation data. A
    saved run with this key is reused."""
    payload = {"spec": spec.strip(), "settings": make_method(spec, cfg).settings(),
               "train": train_settings(replace(cfg.train, seed=seed)), "image_size": cfg.image_size, "data": data_digest}
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def data_digest(data: ExperimentData) -> str:
    from .pipeline import fingerprint

    return fingerprint(data.train.images, data.train.labels, data.train.place, data.val.images, data.val.labels)


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


def run_method(spec: str, data: ExperimentData, cfg: ExperimentConfig, seed: int) -> tuple[MethodOutput, float]:
    method = make_method(spec, cfg)
    train_cfg = replace(cfg.train, seed=seed)
    start = time.perf_counter()
    output = method.run(data, train_cfg)
    seconds = time.perf_counter() - start
    if spec.strip() == "erm" and output.model is not None:  # DFR retrains this ERM model's last layer
        from .train.baselines import erm_key

        data.memo[erm_key(train_cfg)] = output.model
    return output, seconds


# ----------------------------------------------------------------------------- diagnostics
def pipeline_options(options: dict[str, Any]) -> dict[str, Any]:
    from .pipeline import PipelineConfig

    known = {f.name for f in fields(PipelineConfig)} | {"fill", "budget"}
    return {k: v for k, v in options.items() if k in known}


class DiagnosticsRunner:
    """Builds the diagnostic sets once (lazily) and evaluates every model on the same images.

    ``masks``: ``"auto"`` uses the test split's ground-truth segmentations when every test image has
    one, else masks predicted by a detector (``detector`` or one offered by an ``autobackswap`` run);
    ``"ground_truth"`` / ``"predicted"`` force one source.
    """

    def __init__(self, data: ExperimentData, options: dict[str, Any] | None = None, seed: int = 0,
                 same: str = "majority", masks: str = "auto", detector: str | Path | None = None) -> None:
        from .evaluate.diagnostics import SAME_MODES
        from .pipeline import PipelineConfig

        if masks not in ("auto", "ground_truth", "predicted"):
            raise ValueError(f"unknown mask source {masks!r}; valid: auto, ground_truth, predicted")
        if same not in SAME_MODES:
            raise ValueError(f"unknown mixed_same mode {same!r}; valid: {', '.join(SAME_MODES)}")
        self.data = data
        self.pipeline = PipelineConfig.from_options(pipeline_options(options or {}))
        self.seed, self.same, self.masks = seed, same, masks
        self.detector = str(detector) if detector else None
        self.offered: list[tuple[int, str]] = []  # (n_labels, detector path) from autobackswap runs
        self._sets: Any = None
        self.samples: Path | None = None
        if masks == "ground_truth" and not data.test.has_segmentations:
            raise AutoBackSwapError(f"{data.dataset.root}: --masks ground_truth needs segmentations/ for every test image")

    @property
    def use_ground_truth(self) -> bool:
        return self.masks != "predicted" and self.data.test.has_segmentations

    def ready(self, final: bool = False) -> bool:
        """Whether masks are available now (``final``: no more detectors will be offered)."""
        return self.use_ground_truth or self.detector is not None or (final and bool(self.offered))

    def offer_detector(self, path: str | None, n_labels: int | None) -> None:
        if path and Path(path).is_file():
            self.offered.append((int(n_labels or 0), str(path)))

    def why_not(self) -> str:
        if self.masks == "predicted":
            return "--masks predicted needs a detector: run autobackswap in the experiment or pass --detector"
        return ("no masks for the test split: no segmentations/ for the test images, and no detector (no autobackswap "
                "run in this experiment; pass `autobackswap diagnose RUN --detector PATH`)")

    @property
    def sets(self) -> Any:
        if self._sets is None:
            self._sets = self._build()
        return self._sets

    def _build(self) -> Any:
        from .evaluate.diagnostics import build_diagnostic_sets

        test = self.data.test
        sep = self.pipeline.separation_config(self.seed)
        common: dict[str, Any] = {"usual_place": self.data.usual_place(), "same": self.same, "seed": self.seed,
                                  "separation": sep}
        if self.use_ground_truth:
            sets = build_diagnostic_sets(test.images, test.labels, test.place, segmentations=test.segmentations, **common)
            sets.info.update(masks="ground_truth", detector=None)
        else:
            from .detect.detector import Detector

            if self.detector is None:
                if not self.offered:
                    raise AutoBackSwapError(self.why_not())
                self.detector = max(self.offered, key=lambda t: t[0])[1]  # the most labels
            det = Detector.load(self.detector)
            sets = build_diagnostic_sets(test.images, test.labels, test.place,
                                         p_fg=det.predict_proba(test.images), **common)
            sets.info.update(masks="predicted", detector=self.detector)
            if self.data.test.has_segmentations:
                sets.info["mask_iou"] = self._predicted_iou(det)
        self.samples = self._write_samples(sets)
        return sets

    def _predicted_iou(self, det: Any) -> float:
        from .separate.masks import create_refiner, pixel_iou
        from .separate.run import masks_from_grid

        test = self.data.test
        sep = self.pipeline.separation_config(self.seed)
        refine = create_refiner(sep.refine)
        p_fg = det.predict_proba(test.images)
        seg = test.segmentations
        return float(np.mean([pixel_iou(masks_from_grid(test.images[i], p_fg[i], sep, refine)[0], seg[i])
                              for i in range(len(test))]))

    def _write_samples(self, sets: Any) -> Path:
        from .evaluate.diagnostics import SETS, sample_indices
        from .evaluate.plots import image_grid
        from .io import write_bytes

        path = self.data.run_dir / "diagnostics" / "samples.png"
        classes = self.data.dataset.classes
        picks = sample_indices(sets.labels)
        rows = [[sets.images[name][i] for name in SETS] for i in picks]
        titles = [f"y={classes[int(sets.labels[i])]}" for i in picks]
        write_bytes(path, image_grid(rows, list(SETS), titles))
        return path

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        from .evaluate.diagnostics import diagnose

        return diagnose(lambda images: predict_classes(model, images), self.sets)

    def info(self) -> dict[str, Any]:
        from .evaluate.diagnostics import DEFINITIONS

        if self._sets is None:
            return {"skipped": self.why_not()}
        definitions = {k: v for k, v in DEFINITIONS.items() if "/" not in k}
        if self.same == "majority":
            definitions["mixed_same"] = DEFINITIONS["mixed_same/majority"]
        samples = str(self.samples.relative_to(self.data.run_dir)) if self.samples else None  # relative to RUN
        return {**self._sets.info, "samples": samples, "definitions": definitions}


def finish_diagnostics(results: dict[str, Any]) -> None:
    """Aggregate each method's per-seed diagnostics into ``methods.<m>.diagnostics``."""
    from .evaluate.diagnostics import aggregate_diagnostics

    for entry in results["methods"].values():
        per_seed = [r["diagnostics"] for r in entry.get("runs", []) if r.get("diagnostics")]
        if per_seed:
            entry["diagnostics"] = aggregate_diagnostics(per_seed)
        else:
            entry.pop("diagnostics", None)


# ----------------------------------------------------------------------------- label efficiency
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


# ----------------------------------------------------------------------------- the experiment
def _skip_reason(reasons: dict[int, str]) -> str:
    unique = list(dict.fromkeys(reasons.values()))
    return unique[0] if len(unique) == 1 else "; ".join(f"seed {s}: {r}" for s, r in reasons.items())


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
        entry["train_seconds"] = float(np.mean([r["train_seconds"] for r in runs]))
        for key in ("mask_iou", "patch_balanced_accuracy"):
            values = [r[key] for r in runs if r.get(key) is not None]
            if values:
                entry[key] = float(np.mean(values))
        entry["runs"] = runs


def split_groups(split: SplitData) -> list[dict[str, int]]:
    """``[{"y", "place", "n"}]`` for every group present in a split (shown in the report)."""
    return [{"y": int(y), "place": int(p), "n": int(n)} for (y, p), n in sorted(group_counts(split.y, split.place).items())]


def run_experiment(cfg: ExperimentConfig, run_dir: str | Path, data: ExperimentData | None = None) -> dict[str, Any]:
    """Run every method for every seed; write ``results.json`` (after each method, so partial
    results survive a crash), the diagnostics and the report, and return the results."""
    run_dir = Path(run_dir).absolute()  # recorded paths (contact sheets, detectors) do not depend on the cwd
    specs = expand_methods(cfg.methods, cfg.label_budgets)
    for spec in specs:
        make_method(spec, cfg)  # fail fast on an unknown method or option, before loading anything
    data = data or load_experiment_data(cfg.data, cfg.image_size, run_dir)
    also = load_also_test(cfg.also_test, data)
    digest = data_digest(data)
    run_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"dataset": str(cfg.data), "config": asdict(cfg), "run_dir": str(data.run_dir),
                               "methods": {},
                               "train_groups": split_groups(data.train), "val_groups": split_groups(data.val)}
    write_json(run_dir / "config.json", asdict(cfg))
    diag = DiagnosticsRunner(data, cfg.method_options, same=cfg.diagnostics_same) if cfg.diagnostics else None
    pending: list[tuple[dict[str, Any], nn.Module]] = []  # runs waiting for diagnostic masks
    for spec in specs:
        runs: list[dict[str, Any]] = []
        skipped: dict[int, str] = {}
        entry: dict[str, Any] = {"needs": METHODS.get(parse_method_spec(spec)[0]).needs}
        for seed in cfg.seeds:
            key = run_key(spec, seed, cfg, digest)
            done = finished_run(run_dir, spec, seed, key) if cfg.save_models else None
            if done is not None:
                record, model = done
                log.info("method %s, seed %d: finished by an earlier run, reusing %s", spec, seed, record["model"])
                notes = record.pop("notes", [])
                record.pop("key", None)
                if spec.strip() == "erm":  # DFR retrains this ERM model's last layer
                    from .train.baselines import erm_key

                    data.memo[erm_key(replace(cfg.train, seed=seed))] = model
            else:
                log.info("method %s, seed %d", spec, seed)
                output, seconds = run_method(spec, data, cfg, seed)
                if output.skipped is not None:
                    log.warning("%s (seed %d) skipped: %s", spec, seed, output.skipped)
                    skipped[seed] = output.skipped
                    continue
                assert output.model is not None
                model, notes = output.model, output.notes
                record = {"seed": seed, "train_seconds": seconds, **output.info}
                if output.fit is not None:
                    record["best_epoch"] = output.fit.best_epoch
                    record["history"] = output.fit.history
                    record["epoch_seconds"] = output.fit.epoch_seconds
                if cfg.save_models:
                    path = model_path(run_dir, spec, seed)
                    save_classifier(path, model, replace(cfg.train, seed=seed), data.num_classes,
                                    data.dataset.classes, cfg.image_size, {"method": spec})
                    record["model"] = str(path.relative_to(run_dir))  # relative: the run folder can move
                    write_json(path.with_suffix(".json"), {**record, "notes": notes, "key": key})  # after the model
            run: dict[str, Any] = {
                "seed": seed,
                "train_seconds": record.pop("train_seconds"),
                "test": evaluate_model(model, data.test, data.train_group_counts, data.dataset.classes),
                "val": evaluate_model(model, data.val, data.train_group_counts, data.dataset.classes),
                **{f"test:{name}": evaluate_model(model, split, data.train_group_counts, data.dataset.classes)
                   for name, split in also.items()},
                **{k: v for k, v in record.items() if k != "seed"},
            }
            runs.append(run)
            entry["notes"] = sorted(set(entry.get("notes", [])) | set(notes))
            if diag is not None:
                diag.offer_detector(run.get("detector"), run.get("n_labels"))
                if diag.ready():
                    run["diagnostics"] = diag.evaluate(model)
                else:
                    pending.append((run, model))
        finalize_entry(entry, runs, skipped)
        results["methods"][spec] = entry
        write_json(run_dir / "results.json", results)
    if diag is not None:
        if pending and diag.ready(final=True):
            for run, model in pending:
                run["diagnostics"] = diag.evaluate(model)
        pending.clear()
        finish_diagnostics(results)
        results["diagnostics"] = diag.info()
    curve = label_efficiency(results) if cfg.label_budgets else None
    if curve is not None:
        results["label_efficiency"] = curve
    write_json(run_dir / "results.json", results)
    if cfg.report:
        from .evaluate.report import write_report

        write_report(run_dir, results)
    return results


# ----------------------------------------------------------------------------- diagnose RUN
def diagnose_run(run_dir: str | Path, data_dir: str | Path | None = None, masks: str = "auto",
                 detector: str | Path | None = None, inpainter: str | None = None, same: str | None = None,
                 seed: int = 0, report: bool = True) -> dict[str, Any]:
    """Diagnostics for every model saved by an ``experiment`` run (``RUN/models/``); updates
    ``RUN/results.json`` (``methods.<m>.diagnostics``, ``runs[].diagnostics``, ``diagnostics``),
    writes ``RUN/diagnostics.json`` and, with ``report``, the report."""
    run_dir = Path(run_dir)
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise AutoBackSwapError(f"{results_path}: not found; run `autobackswap experiment ... --out {run_dir}` first")
    try:
        results = json.loads(results_path.read_text())
    except json.JSONDecodeError as exc:
        raise AutoBackSwapError(f"{results_path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    config = results.get("config", {})
    image_size = int(config.get("image_size", 64))
    data = load_experiment_data(data_dir or results["dataset"], image_size, run_dir)
    options = dict(config.get("method_options") or {})
    if inpainter:
        options["inpainter"] = inpainter
    same = same or config.get("diagnostics_same", "majority")
    diag = DiagnosticsRunner(data, options, seed, same, masks, detector)
    if detector is None and not diag.use_ground_truth:
        from .evaluate.report import locate_file

        for entry in results["methods"].values():
            for run in entry.get("runs", []):
                found_detector = locate_file(run.get("detector"), run_dir, results.get("run_dir"))
                diag.offer_detector(str(found_detector) if found_detector else None, run.get("n_labels"))
    if not diag.ready(final=True):
        raise AutoBackSwapError(diag.why_not())
    found = 0
    for spec, entry in results["methods"].items():
        for run in entry.get("runs", []):
            path = run_dir / run["model"] if run.get("model") else model_path(run_dir, spec, run["seed"])
            if not path.is_file():
                log.warning("diagnose: no checkpoint for %s seed %s (%s)", spec, run["seed"], path)
                run.pop("diagnostics", None)
                continue
            model, payload = load_classifier(path)
            if payload["image_size"] != image_size:
                raise AutoBackSwapError(f"{path}: trained at {payload['image_size']} px but the run used {image_size} px")
            run["diagnostics"] = diag.evaluate(model)
            found += 1
    if not found:
        raise AutoBackSwapError(f"{run_dir / 'models'}: no classifier checkpoints (was the experiment run with "
                                "save_models=False?)")
    finish_diagnostics(results)
    results["diagnostics"] = diag.info()
    if results.get("label_efficiency"):
        results["label_efficiency"] = label_efficiency(results)
    write_json(results_path, results)
    write_json(run_dir / "diagnostics.json", {"diagnostics": results["diagnostics"],
                                              "methods": {m: e["diagnostics"] for m, e in results["methods"].items()
                                                          if e.get("diagnostics")}})
    if report:
        from .evaluate.report import write_report

        write_report(run_dir, results)
    return results
