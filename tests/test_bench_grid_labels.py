"""benchmarks/bench_grid_labels.py: a tiny grid x labels sweep writes one row per cell with the grid and
budget it ran (read back from each cell's results), the two heat maps, and --iou-only agrees with the
classifier mode's mask IoU for the same cells (the same detector and separation)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from autobackswap.data.synthetic import make_synthetic

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture
def bench(load_benchmark: Callable[[str], ModuleType]) -> ModuleType:
    return load_benchmark("bench_grid_labels")


def test_tiny_sweep(bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    make_synthetic(data, 60, 30, 40, 1.0, 32, 0)
    common = ["--data", str(data), "--image-size", "32", "--seeds", "0", "--grids", "4,8", "--labels", "10,20"]
    monkeypatch.setattr(sys, "argv", ["x", *common, "--epochs", "1", "--options", "detector_epochs=2",
                                      "--out", str(tmp_path / "wga")])
    bench.main()
    rows = json.loads((tmp_path / "wga" / "grid_labels.json").read_text())
    assert [(r["grid"], r["labels"]) for r in rows] == [(4, 10), (4, 20), (8, 10), (8, 20)]
    for r in rows:
        results = json.loads((tmp_path / "wga" / f"g{r['grid']}_n{r['labels']}" / "results.json").read_text())
        (run,) = next(iter(results["methods"].values()))["runs"]
        assert run["n_labels"] == r["labels"] and r["wga"] == run["test"]["worst_group_accuracy"]
        assert 0.0 <= r["iou"] <= 1.0
    assert (tmp_path / "wga" / "grid_labels.png").stat().st_size > 10_000
    assert len((tmp_path / "wga" / "grid_labels.md").read_text().splitlines()) == 2 + 4
    monkeypatch.setattr(sys, "argv", ["x", *common, "--iou-only", "--options", "detector_epochs=2",
                                      "--out", str(tmp_path / "iou")])
    bench.main()
    ious = json.loads((tmp_path / "iou" / "grid_labels.json").read_text())
    assert [r["iou"] for r in ious] == pytest.approx([r["iou"] for r in rows])
