"""benchmarks/_studies/grid_labels.py (study grid-labels): a tiny quick sweep writes one row per grid with a cell
per label budget and the heat map, and a cell's mask IoU is the one an autobackswap experiment with the same grid
and budget reports (the same detector and separation)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from autobackswap.data.synthetic import make_synthetic
from autobackswap.experiment import ExperimentConfig, run_experiment
from autobackswap.train.loop import TrainConfig

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture
def bench(load_benchmark: Callable[[str], ModuleType]) -> ModuleType:
    return load_benchmark("_studies.grid_labels")


def test_tiny_sweep(bench: ModuleType, load_benchmark: Callable[[str], ModuleType], tmp_path: Path) -> None:
    studies = load_benchmark("_studies")
    data = tmp_path / "data"
    make_synthetic(data, 60, 30, 40, 1.0, 32, 0)
    study = bench.GridLabels()
    study.data, study.image_size, study.options = data, 32, "detector_epochs=2"
    study.quick_grids, study.quick_labels = [4, 8], [10, 20]
    study.figure = str(tmp_path / "img" / "grid_labels.png")
    measured = study.measure(studies.Context(seeds=[0], quick=True, out=tmp_path / "iou"))
    table = measured.tables["main"]
    assert table.header == ["grid \\ labelled images", "10", "20"]
    assert [r[0] for r in table.rows] == ["4×4", "8×8"]
    ious = [[float(c) for c in r[1:]] for r in table.rows]
    assert all(0.0 <= v <= 1.0 for row in ious for v in row)
    assert measured.images == [study.figure] and Path(study.figure).stat().st_size > 10_000

    spec = bench.cell_spec(8, 20, "detector_epochs=2")
    assert spec == "autobackswap:grid=8:label_budget=20:detector_epochs=2"
    cfg = ExperimentConfig(data=str(data), methods=[spec], seeds=[0], image_size=32, train=TrainConfig(epochs=1),
                           save_models=False, method_options={"allow_bad_separation": True}, diagnostics=False,
                           report=False)
    entry = run_experiment(cfg, tmp_path / "wga")["methods"][spec]
    (run,) = entry["runs"]
    assert run["n_labels"] == 20
    assert ious[1][1] == pytest.approx(entry["mask_iou"], abs=5e-4)  # the table rounds to 3 decimals
