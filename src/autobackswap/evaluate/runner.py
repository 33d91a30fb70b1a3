"""The diagnostics runner: builds the background diagnostic sets of a test split once and scores
every model of an experiment on the same images (see :mod:`.diagnostics`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..data.images import image_grid
from ..data.splits import ExperimentData, load_experiment_data
from ..detect.detector import Detector
from ..errors import AutoBackSwapError
from ..io import encode_png, write_bytes, write_json
from ..methods.base import PIPELINE_KEYS
from ..pipeline import PipelineConfig
from ..separate.masks import create_refiner, pixel_iou
from ..separate.run import masks_from_grid
from ..train.loop import load_classifier
from .diagnostics import (
    DEFINITIONS,
    SAME_MODES,
    SETS,
    aggregate_diagnostics,
    build_diagnostic_sets,
    diagnose,
    sample_indices,
)
from .report import locate_file, write_report
from .results import label_efficiency, model_path, predict_classes

log = logging.getLogger(__name__)


def pipeline_options(options: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's options among a run's method options (the diagnostics separate with them)."""
    return {k: v for k, v in options.items() if k in PIPELINE_KEYS}


class DiagnosticsRunner:
    """Builds the diagnostic sets once (lazily) and evaluates every model on the same images.

    ``masks``: ``"auto"`` uses the test split's ground-truth segmentations when every test image has
    one, else masks predicted by a detector (``detector`` or one offered by an ``autobackswap`` run);
    ``"ground_truth"`` / ``"predicted"`` force one source.
    """

    def __init__(self, data: ExperimentData, options: dict[str, Any] | None = None, seed: int = 0,
                 same: str = "majority", masks: str = "auto", detector: str | Path | None = None) -> None:
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
        test = self.data.test
        sep = self.pipeline.separation_config(self.seed)
        common: dict[str, Any] = {"usual_place": self.data.usual_place(), "same": self.same, "seed": self.seed,
                                  "separation": sep}
        if self.use_ground_truth:
            sets = build_diagnostic_sets(test.images, test.labels, test.place, segmentations=test.segmentations, **common)
            sets.info.update(masks="ground_truth", detector=None)
        else:
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
        test = self.data.test
        sep = self.pipeline.separation_config(self.seed)
        refine = create_refiner(sep.refine)
        p_fg = det.predict_proba(test.images)
        seg = test.segmentations
        return float(np.mean([pixel_iou(masks_from_grid(test.images[i], p_fg[i], sep, refine)[0], seg[i])
                              for i in range(len(test))]))

    def _write_samples(self, sets: Any) -> Path:
        path = self.data.run_dir / "diagnostics" / "samples.png"
        classes = self.data.dataset.classes
        picks = sample_indices(sets.labels)
        rows = [[sets.images[name][i] for name in SETS] for i in picks]
        titles = [f"y={classes[int(sets.labels[i])]}" for i in picks]
        write_bytes(path, encode_png(image_grid(rows, list(SETS), titles, tile=64)))
        return path

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return diagnose(lambda images: predict_classes(model, images), self.sets)

    def info(self) -> dict[str, Any]:
        if self._sets is None:
            return {"skipped": self.why_not()}
        definitions = {k: v for k, v in DEFINITIONS.items() if "/" not in k}
        if self.same == "majority":
            definitions["mixed_same"] = DEFINITIONS["mixed_same/majority"]
        samples = str(self.samples.relative_to(self.data.run_dir)) if self.samples else None  # relative to RUN
        return {**self._sets.info, "samples": samples, "definitions": definitions}


def finish_diagnostics(results: dict[str, Any]) -> None:
    """Aggregate each method's per-seed diagnostics into ``methods.<m>.diagnostics``."""
    for entry in results["methods"].values():
        per_seed = [r["diagnostics"] for r in entry.get("runs", []) if r.get("diagnostics")]
        if per_seed:
            entry["diagnostics"] = aggregate_diagnostics(per_seed)
        else:
            entry.pop("diagnostics", None)


def diagnose_run(run_dir: str | Path, data_dir: str | Path | None = None, masks: str = "auto",
                 detector: str | Path | None = None, inpainter: str | None = None, same: str | None = None,
                 seed: int = 0, report: bool = True, layout: str | None = None) -> dict[str, Any]:
    """Diagnostics for every model saved by an ``experiment`` run (``RUN/models/``); updates
    ``RUN/results.json`` (``methods.<m>.diagnostics``, ``runs[].diagnostics``, ``diagnostics``),
    writes ``RUN/diagnostics.json`` and, with ``report``, the report. The dataset is read in ``layout``
    (default: the run's)."""
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
    data = load_experiment_data(data_dir or results["dataset"], image_size, run_dir,
                                layout=layout or config.get("layout") or "auto")
    options = dict(config.get("method_options") or {})
    if inpainter:
        options["inpainter"] = inpainter
    same = same or config.get("diagnostics_same", "majority")
    diag = DiagnosticsRunner(data, options, seed, same, masks, detector)
    if detector is None and not diag.use_ground_truth:
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
        write_report(run_dir, results)
    return results
