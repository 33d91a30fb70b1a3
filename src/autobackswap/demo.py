"""The end-to-end demo: synthetic benchmark -> ERM vs AutoBackSwap vs oracle -> table + contact sheet."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from .data.synthetic import check_counts, make_synthetic
from .experiment import ExperimentConfig, run_experiment
from .io import check_writable_dir
from .train.loop import TrainConfig

log = logging.getLogger(__name__)

DEMO_METHODS = ["erm", "autobackswap", "oracle"]


def run_demo(out: str | Path, n_train: int = 2000, n_val: int = 400, n_test: int = 800, image_size: int = 64,
             epochs: int = 10, seeds: list[int] | None = None, data_seed: int = 0,
             settings: ExperimentConfig | None = None) -> dict[str, Any]:
    """Generate the synthetic set (reused when already there with the same settings) and run the
    three methods. Writes ``OUT/data``, ``OUT/results.json`` and ``OUT/contact_sheet.png``. Every setting
    and the output folder are checked before anything is written.

    ``settings`` (resolved settings, e.g. from a recipe: ``autobackswap.settings.resolve``) replaces
    ``image_size``, ``epochs`` and ``seeds``; the demo sets its own data and methods."""
    if settings is not None:
        image_size = settings.image_size
    out = Path(out)
    data_dir = out / "data"
    if settings is None:
        cfg = ExperimentConfig(data=str(data_dir), methods=DEMO_METHODS, seeds=[0] if seeds is None else seeds,
                               image_size=image_size, train=TrainConfig(epochs=epochs))
    else:
        cfg = replace(settings, data=str(data_dir), methods=list(DEMO_METHODS), label_budgets=[])
    check_counts(n_train, n_val, n_test, data_seed)
    check_writable_dir(out, "output folder")
    wanted = {"n_train": n_train, "n_val": n_val, "n_test": n_test, "image_size": image_size, "seed": data_seed}
    cfg_path = data_dir / "config.json"
    have = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    if any(have.get(k) != v for k, v in wanted.items()):
        if data_dir.exists():
            shutil.rmtree(data_dir)
        make_synthetic(data_dir, n_train, n_val, n_test, 1.0, image_size, data_seed)
    results = run_experiment(cfg, out)
    sheet = results["methods"]["autobackswap"]["runs"][0].get("contact_sheet")
    if sheet:
        shutil.copyfile(sheet, out / "contact_sheet.png")
    return results
