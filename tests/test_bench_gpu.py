"""benchmarks/bench_gpu.py: refuses without a GPU in one line, and its ``--device cpu --tiny`` smoke mode
runs the whole measuring path (training both ways, evaluation, detector, separation, projection)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture
def bench(load_benchmark: Callable[[str], ModuleType]) -> ModuleType:
    return load_benchmark("bench_gpu")


def test_without_a_gpu_it_refuses_in_one_line(bench: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("no GPU: ") and err.count("\n") == 1 and "--device cpu --tiny" in err
    assert bench.main(["--device", "cpu"]) == 2  # the CPU only as a smoke test
    assert capsys.readouterr().err.startswith("no GPU: ")


def test_projection_adds_up_the_measured_rates(bench: ModuleType) -> None:
    """1 ms per training image, 0.1 ms per evaluated image, 1 s per detector epoch, 10 ms per separated image."""
    f = bench.Figures(erm_per_image=1e-3, abs_per_image=1e-3, eval_per_image=1e-4, detector_epoch=1.0,
                      separation_per_image=1e-2, peak_memory_gib=None)
    p = bench.projection(f)
    training = 4795 * 50 * 1e-3
    evaluation = (1199 * 50 + 5794) * 1e-4
    assert p["detector_s"] == pytest.approx(200.0) and p["separation_s"] == pytest.approx(47.95)
    assert p["autobackswap_run_s"] == pytest.approx(200.0 + 47.95 + training + evaluation)
    assert p["recipe_s"] == pytest.approx(3 * ((training + evaluation) + 2 * p["autobackswap_run_s"]
                                               + (47.95 + training + evaluation)))


def test_tiny_cpu_smoke_run(bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "figures.json"
    assert bench.main(["--device", "cpu", "--tiny", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for line in ("ERM: ", "autobackswap: ", "ratio", "peak GPU memory: n/a (CPU)", "detector (fcn, random init)",
                 "separation (patchmatch", "projected waterbirds-paper, one autobackswap run",
                 "projected whole recipe"):
        assert line in text
    figures = json.loads(out.read_text())
    assert figures["device"] == "cpu" and figures["n_train"] == 48 and figures["precision"] == "fp32"
    assert figures["erm_img_s"] > 0 and figures["ratio"] > 0 and figures["autobackswap_run_s"] > figures["separation_s"]
