"""Shared helpers for the benchmark scripts (data generation into a cache folder)."""

from __future__ import annotations

import json
from pathlib import Path

from autobackswap.data.synthetic import make_synthetic


def synthetic(root: str | Path = "runs/bench/synthetic", n_train: int = 2000, n_val: int = 400, n_test: int = 800,
              image_size: int = 64, seed: int = 0, correlation: float = 1.0) -> Path:
    """The synthetic benchmark, generated once and reused while its settings match."""
    root = Path(root) / f"n{n_train}_s{image_size}_c{correlation}_seed{seed}"
    cfg = root / "config.json"
    if not cfg.is_file() or json.loads(cfg.read_text()).get("n_test") != n_test:
        make_synthetic(root, n_train, n_val, n_test, correlation, image_size, seed)
    return root
