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

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from . import runtime
from .data.images import check_image_size
from .data.splits import ExperimentData, load_also_test, load_experiment_data
from .errors import AutoBackSwapError
from .evaluate.report import write_report
from .evaluate.results import (
    evaluate_model,
    finalize_entry,
    finished_run,
    label_efficiency,
    model_path,
    score_run,
    split_groups,
)
from .evaluate.runner import DiagnosticsRunner, finish_diagnostics
from .io import fingerprint, json_digest, remove_stale_temps, write_json
from .methods import METHODS, MethodContext, make_method, parse_method_spec
from .methods.base import check_methods, check_options, expand_methods
from .options import check_range
from .train.loop import TrainConfig, save_classifier, train_settings

log = logging.getLogger(__name__)


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
    drop_minority: bool = False  # drop train and val images outside each class's majority place (the paper's setting)
    eval_crop: float = 1.0  # < 1: val/test resized to image_size / eval_crop, centre image_size kept (0.875: 256 -> 224)
    recipe: dict[str, Any] = field(default_factory=dict)  # the recipe these settings came from (settings.resolve)
    stream: bool = False  # keep images, masks and swap banks on disk (RUN/cache/), read per batch
    layout: str = "auto"  # dataset layout (data/layouts/): auto-detected, or a name such as spawrious:variant=m2m_hard

    def __post_init__(self) -> None:
        """Refuse a run that would train nothing or cannot work, before any data is loaded."""
        if not self.methods or not all(isinstance(m, str) and m.strip() for m in self.methods):
            raise ValueError(f"no method to run: --methods is empty (give e.g. erm,autobackswap), got {self.methods!r}")
        if not self.seeds:
            raise ValueError(f"no seed to run: --seeds is empty (give e.g. 0,1,2), got {self.seeds!r}")
        for seed in self.seeds:
            check_range("seeds", seed, 0, 2**63 - 1, integer=True)
        for budget in self.label_budgets:
            check_range("label_budgets", budget, 1, 100_000_000, integer=True)
        check_image_size(self.image_size)


def experiment_data(cfg: ExperimentConfig, run_dir: str | Path, stream: bool = False) -> ExperimentData:
    """The splits ``cfg`` works on (its layout, image size, ``drop_minority`` and ``eval_crop``)."""
    return load_experiment_data(cfg.data, cfg.image_size, run_dir, stream=stream, drop_minority=cfg.drop_minority,
                                eval_crop=cfg.eval_crop, layout=cfg.layout)


def run_key(spec: str, seed: int, cfg: ExperimentConfig, data_digest: str) -> str:
    """What a finished (method, seed) run depends on: the method and its resolved settings (defaults
    included), the training config and seed, the working size and the training and validation data. A
    saved run with this key is reused."""
    payload = {"spec": spec.strip(), "settings": make_method(spec, cfg.method_options).settings(),
               "train": train_settings(replace(cfg.train, seed=seed)), "image_size": cfg.image_size, "data": data_digest}
    return json_digest(payload, length=16)


def data_digest(data: ExperimentData) -> str:
    return fingerprint(data.train.images, data.train.labels, data.train.place, data.val.images, data.val.labels)


def run_experiment(cfg: ExperimentConfig, run_dir: str | Path, data: ExperimentData | None = None,
                   ctx: MethodContext | None = None) -> dict[str, Any]:
    """Run every method for every seed; write ``results.json`` (after each method, so partial
    results survive a crash), the diagnostics and the report, and return the results."""
    run_dir = Path(run_dir).absolute()  # recorded paths (contact sheets, detectors) do not depend on the cwd
    start = time.perf_counter()
    stats = {"trained": 0, "reused": 0, "skipped": 0}
    specs = expand_methods(cfg.methods, cfg.label_budgets)
    check_options(specs, cfg.method_options, cfg.seeds)  # methods, options and the files they name, before loading
    cfg.train.check_files()
    data = data or experiment_data(cfg, run_dir, stream=cfg.stream)
    ctx = ctx or MethodContext(data.run_dir)
    also = load_also_test(cfg.also_test, data, cfg.layout)
    skips = check_methods(specs, cfg.method_options, cfg.seeds, data)  # every method's inputs, before any training
    log.info("plan: %d method(s) x %d seed(s) on %d train / %d val / %d test images at %d px, %d epochs each%s",
             len(specs), len(cfg.seeds), len(data.train), len(data.val), len(data.test), cfg.image_size,
             cfg.train.epochs, "".join(f"; {s} seed {k} will be skipped: {r}" for (s, k), r in skips.items()))
    digest = data_digest(data)
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(run_dir / "models")  # left by a killed run
    results: dict[str, Any] = {"dataset": str(cfg.data), "config": asdict(cfg), "run_dir": str(data.run_dir),
                               "complete": False, "pending": list(specs), "methods": {},
                               "train_groups": split_groups(data.train), "val_groups": split_groups(data.val),
                               "dataset_layout": data.dataset.layout, "dataset_notes": list(data.dataset.notes)}
    write_json(run_dir / "config.json", asdict(cfg))
    diag = DiagnosticsRunner(data, cfg.method_options, same=cfg.diagnostics_same) if cfg.diagnostics else None
    pending: list[tuple[dict[str, Any], nn.Module]] = []  # runs waiting for diagnostic masks
    for spec in specs:
        entry: dict[str, Any] = {"needs": METHODS.get(parse_method_spec(spec)[0]).needs}
        runs, skipped = [], {}
        for seed in cfg.seeds:
            outcome = train_or_reuse(spec, seed, cfg, data, ctx, run_dir, digest, stats)
            if isinstance(outcome, str):
                skipped[seed] = outcome
                continue
            record, model, notes = outcome
            run = score_run(record, model, data, also)
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
        results["pending"] = [s for s in specs if s not in results["methods"]]
        write_json(run_dir / "results.json", results)  # "complete": false until the end: a killed run shows it
    if diag is not None:
        if pending and diag.ready(final=True):
            for run, model in pending:
                run["diagnostics"] = diag.evaluate(model)
        finish_diagnostics(results)
        results["diagnostics"] = diag.info()
    curve = label_efficiency(results) if cfg.label_budgets else None
    if curve is not None:
        results["label_efficiency"] = curve
    results["complete"], results["pending"] = True, []
    write_json(run_dir / "results.json", results)
    if cfg.report:
        write_report(run_dir, results)
    log.info("done in %.0f s: %d run(s) trained, %d reused from an earlier run, %d skipped; results in %s",
             time.perf_counter() - start, stats["trained"], stats["reused"], stats["skipped"], run_dir / "results.json")
    return results


def train_or_reuse(spec: str, seed: int, cfg: ExperimentConfig, data: ExperimentData, ctx: MethodContext,
                   run_dir: Path, digest: str, stats: dict[str, int]) -> tuple[dict[str, Any], nn.Module, list[str]] | str:
    """``(record, model, notes)`` of one (method, seed) run, reused from an earlier run with the same key
    or trained now (and saved); the reason when the method skipped this seed."""
    train_cfg = replace(cfg.train, seed=seed)
    key = run_key(spec, seed, cfg, digest)
    done = finished_run(run_dir, spec, seed, key) if cfg.save_models else None
    if done is not None:
        record, model = done
        log.info("method %s, seed %d: finished by an earlier run, reusing %s", spec, seed, record["model"])
        if spec.strip() == "erm":  # DFR retrains this ERM model's last layer
            ctx.offer_erm(train_cfg, model)
        record.pop("key", None)
        stats["reused"] += 1
        return record, model, record.pop("notes", [])
    log.info("method %s, seed %d: training", spec, seed)
    start = time.perf_counter()
    output = make_method(spec, cfg.method_options).run(data, train_cfg, ctx)
    seconds = time.perf_counter() - start
    if output.skipped is not None:
        log.warning("%s (seed %d) skipped: %s", spec, seed, output.skipped)
        stats["skipped"] += 1
        return output.skipped
    stats["trained"] += 1
    assert output.model is not None
    record = {"seed": seed, "train_seconds": seconds, **output.info}
    if output.fit is not None:
        record.update(best_epoch=output.fit.best_epoch, history=output.fit.history,
                      epoch_seconds=output.fit.epoch_seconds, device=output.fit.device,
                      precision=output.fit.precision)
    if cfg.save_models:
        path = model_path(run_dir, spec, seed)
        save_classifier(path, output.model, train_cfg, data.num_classes, data.dataset.classes, cfg.image_size,
                        {"method": spec})
        record["model"] = str(path.relative_to(run_dir))  # relative: the run folder can move
        write_json(path.with_suffix(".json"), {**record, "notes": output.notes, "key": key})  # after the model
    return record, output.model, output.notes


def train_single(cfg: ExperimentConfig, out: str | Path, stream: bool = False) -> dict[str, Any] | None:
    """``autobackswap train``: one method, one seed; writes ``OUT/model.pt`` and ``OUT/train.json`` and
    returns that record (None on torchrun ranks other than 0, which write nothing)."""
    out = Path(out)
    spec, train_cfg = cfg.methods[0], replace(cfg.train, seed=cfg.seeds[0])
    check_options([spec], cfg.method_options, cfg.seeds)
    method = make_method(spec, cfg.method_options)
    train_cfg.check_files()
    with runtime.main_process_first():  # rank 0 writes the image caches (--stream) first
        data = experiment_data(cfg, out, stream=stream)
    skipped = method.check(data, train_cfg.seed)
    if skipped:
        raise AutoBackSwapError(f"method {spec} cannot run on this data: {skipped}")
    start = time.perf_counter()
    output = method.run(data, train_cfg, MethodContext(data.run_dir))
    seconds = time.perf_counter() - start
    if output.skipped:
        raise AutoBackSwapError(f"method {spec} cannot run on this data: {output.skipped}")
    assert output.model is not None
    if not runtime.is_main():
        return None
    fit_info = {} if output.fit is None else {"best_epoch": output.fit.best_epoch, "history": output.fit.history,
                                               "distributed": output.fit.distributed, "device": output.fit.device,
                                               "precision": output.fit.precision}
    save_classifier(out / "model.pt", output.model, train_cfg, data.num_classes, data.dataset.classes,
                    cfg.image_size, {"method": spec, **output.info})
    val = evaluate_model(output.model, data.val, data.train_group_counts, data.dataset.classes)
    record = {"config": asdict(cfg), "train_seconds": seconds, "val": val, **output.info, **fit_info}
    write_json(out / "train.json", record)
    return record
