"""Shared helpers for the benchmark scripts (data generation into a cache folder)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from autobackswap.data.photo import make_photo_benchmark
from autobackswap.data.splits import ExperimentData
from autobackswap.data.synthetic import make_synthetic
from autobackswap.experiment import ExperimentConfig, run_experiment

SETTINGS = ("seen", "unseen")  # the TuxBirds test settings


def synthetic(root: str | Path = "runs/bench/synthetic", n_train: int = 2000, n_val: int = 400, n_test: int = 800,
              image_size: int = 64, seed: int = 0, correlation: float = 1.0) -> Path:
    """The synthetic benchmark, generated once and reused while its settings match."""
    root = Path(root) / f"n{n_train}_s{image_size}_c{correlation}_seed{seed}"
    cfg = root / "config.json"
    if not cfg.is_file() or json.loads(cfg.read_text()).get("n_test") != n_test:
        make_synthetic(root, n_train, n_val, n_test, correlation, image_size, seed)
    return root


# The pipeline defaults of the first release, with which some figures in docs/results.md were measured (their
# commands pass --v1-defaults): the telea fill and a narrower detector, 40 epochs with early stopping and
# no copy-paste. The defaults changed after bench_inpainters.py and bench_detector.py on TuxBirds.
V1_DEFAULTS = {"inpainter": "telea", "detector_width": 16, "detector_epochs": 40, "detector_paste": 0.0,
               "detector_patience": 15}


def add_pipeline_args(ap: argparse.ArgumentParser) -> None:
    """``--inpainter`` and ``--v1-defaults``: method options every pipeline method gets."""
    ap.add_argument("--inpainter", default=None, help="inpainter (default: the library default)")
    ap.add_argument("--v1-defaults", action="store_true",
                    help="the first release's defaults (telea fill, detector width 16, 40 epochs, early stopping, "
                         "no copy-paste), with which some figures in docs/results.md were measured")


def pipeline_options(args: argparse.Namespace) -> dict[str, object]:
    """Method options (``ExperimentConfig.method_options``, ``PipelineConfig.from_options``) from the
    arguments of :func:`add_pipeline_args`; empty means the library defaults."""
    options: dict[str, object] = dict(V1_DEFAULTS) if args.v1_defaults else {}
    if args.inpainter:
        options["inpainter"] = args.inpainter
    return options


def tuxbirds(root: Path, correlation: float, seed: int, image_size: int) -> dict[str, Path]:
    """TuxBirds, built once and reused while its settings match."""
    out = root / f"c{correlation}_s{image_size}_seed{seed}"
    cfg = out / "seen" / "config.json"
    if not (cfg.is_file() and (out / "unseen" / "config.json").is_file()):
        return make_photo_benchmark(out, correlation=correlation, image_size=image_size, seed=seed)
    return {s: out / s for s in SETTINGS}


def finished(out: Path, cfg: ExperimentConfig) -> dict[str, Any] | None:
    """The results in ``out`` when a finished experiment there had these methods, seeds and training settings."""
    path = out / "results.json"
    if not path.is_file():
        return None
    results = json.loads(path.read_text())
    old = results.get("config", {})
    same = same_training(results, cfg) and old.get("methods") == cfg.methods and old.get("seeds") == cfg.seeds
    return results if same else None


def same_training(results: dict[str, Any], cfg: ExperimentConfig) -> bool:
    """``results`` are a finished experiment trained with ``cfg``'s training settings."""
    return bool(results.get("complete")) and results.get("config", {}).get("train") == dataclasses.asdict(cfg.train)


def run_or_reuse(out: Path, cfg: ExperimentConfig, data: ExperimentData | None = None) -> dict[str, Any]:
    """A finished experiment's results in ``out`` (read, not retrained), else run it there."""
    return finished(out, cfg) or run_experiment(cfg, out, data=data)
