"""The end-to-end demos: ERM vs AutoBackSwap vs oracle -> table, report and contact sheet.

* :func:`run_demo` (``autobackswap demo``, ``make demo``): the synthetic benchmark, small networks trained from
  scratch at 64 px with the ``demo`` recipe (the library defaults with a shorter detector fit), two minutes on a
  CPU.
* :func:`run_photo_demo` (``autobackswap demo --photos``): TuxBirds (real photo cut-outs on real photos, built
  offline from Debian packages) with the ``photos-cpu`` recipe: the pretrained EfficientNet-Lite0 classifier and
  detector, both TuxBirds test settings, one seed.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from .data.photo import make_photo_benchmark
from .data.synthetic import check_counts, make_synthetic
from .experiment import ExperimentConfig, run_experiment
from .io import check_writable_dir

log = logging.getLogger(__name__)

DEMO_METHODS = ["erm", "autobackswap", "oracle"]
DEMO_RECIPE = "demo"  # the recipe of `demo` (recipes/demo.toml): the defaults, with a shorter detector fit
PHOTO_RECIPE = "photos-cpu"  # the recipe of `demo --photos` (recipes/photos-cpu.toml)


def run_demo(out: str | Path, settings: ExperimentConfig, n_train: int = 2000, n_val: int = 400, n_test: int = 800,
             data_seed: int = 0) -> dict[str, Any]:
    """Generate the synthetic set (reused when already there with the same settings) and run the
    three methods with ``settings`` (resolved settings: ``autobackswap.settings.resolve``, from the ``demo``
    recipe in ``autobackswap demo``; the demo sets its own data and methods). Writes ``OUT/data``,
    ``OUT/results.json`` and ``OUT/contact_sheet.png``. Every setting and the output folder are checked before
    anything is written."""
    out = Path(out)
    data_dir = out / "data"
    cfg = replace(settings, data=str(data_dir), methods=list(DEMO_METHODS), label_budgets=[])
    check_counts(n_train, n_val, n_test, data_seed)
    check_writable_dir(out, "output folder")
    wanted = {"n_train": n_train, "n_val": n_val, "n_test": n_test, "image_size": cfg.image_size, "seed": data_seed}
    cfg_path = data_dir / "config.json"
    have = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    if any(have.get(k) != v for k, v in wanted.items()):
        if data_dir.exists():
            shutil.rmtree(data_dir)
        make_synthetic(data_dir, n_train, n_val, n_test, 1.0, cfg.image_size, data_seed)
    results = run_experiment(cfg, out)
    sheet = results["methods"]["autobackswap"]["runs"][0].get("contact_sheet")
    if sheet:
        shutil.copyfile(sheet, out / "contact_sheet.png")
    return results


def run_photo_demo(out: str | Path, settings: ExperimentConfig, n_train: int = 2000, n_val: int = 400,
                   n_test: int = 800, data_seed: int = 0, assets: str | Path | None = None,
                   **photo: Any) -> dict[str, Any]:
    """Build TuxBirds at the settings' working size into ``OUT/data`` (``seen`` and ``unseen``; reused when
    already there with the same counts, size and seed; the Debian assets are fetched into the user cache when
    missing) and run the three methods with ``settings`` (``photos-cpu``: ``autobackswap.settings.resolve``),
    every model scored on both test settings. ``photo`` goes to
    :func:`~autobackswap.data.photo.make_photo_benchmark` (stand-in asset lists in the tests)."""
    out = Path(out)
    data_dir = out / "data"
    check_writable_dir(out, "output folder")
    wanted = {"generator": "tuxbirds", "n_train": n_train, "n_val": n_val, "n_test": n_test,
              "image_size": settings.image_size, "seed": data_seed}
    cfg_path = data_dir / "seen" / "config.json"
    have = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    if any(have.get(k) != v for k, v in wanted.items()) or not (data_dir / "unseen" / "config.json").is_file():
        if data_dir.exists():
            shutil.rmtree(data_dir)
        make_photo_benchmark(data_dir, assets, n_train, n_val, n_test, 1.0, settings.image_size, data_seed, **photo)
    cfg = replace(settings, data=str(data_dir / "seen"), methods=list(DEMO_METHODS), label_budgets=[],
                  also_test={"unseen": str(data_dir / "unseen")})
    results = run_experiment(cfg, out)
    sheet = results["methods"]["autobackswap"]["runs"][0].get("contact_sheet")
    if sheet:
        shutil.copyfile(sheet, out / "contact_sheet.png")
    return results
