"""Shared helpers for the benchmark scripts (data generation into a cache folder)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from autobackswap.data.photo import make_photo_benchmark
from autobackswap.data.synthetic import make_synthetic

SETTINGS = ("seen", "unseen")  # the TuxBirds test settings


def synthetic(root: str | Path = "runs/bench/synthetic", n_train: int = 2000, n_val: int = 400, n_test: int = 800,
              image_size: int = 64, seed: int = 0, correlation: float = 1.0) -> Path:
    """The synthetic benchmark, generated once and reused while its settings match."""
    root = Path(root) / f"n{n_train}_s{image_size}_c{correlation}_seed{seed}"
    cfg = root / "config.json"
    if not cfg.is_file() or json.loads(cfg.read_text()).get("n_test") != n_test:
        make_synthetic(root, n_train, n_val, n_test, correlation, image_size, seed)
    return root


def add_inpainter_arg(ap: argparse.ArgumentParser) -> None:
    """``--inpainter``: the README figures measured before the default became ``mean`` pass ``telea``."""
    ap.add_argument("--inpainter", default=None,
                    help="inpainter (default: the library default; the README figures used telea)")


def inpainter_options(args: argparse.Namespace) -> dict[str, str]:
    """Method options for ``ExperimentConfig.method_options`` from ``--inpainter`` (empty: the default)."""
    return {"inpainter": args.inpainter} if args.inpainter else {}


def tuxbirds(root: Path, correlation: float, seed: int, image_size: int) -> dict[str, Path]:
    """TuxBirds, built once and reused while its settings match."""
    out = root / f"c{correlation}_s{image_size}_seed{seed}"
    cfg = out / "seen" / "config.json"
    if not (cfg.is_file() and (out / "unseen" / "config.json").is_file()):
        return make_photo_benchmark(out, correlation=correlation, image_size=image_size, seed=seed)
    return {s: out / s for s in SETTINGS}
