"""benchmarks/_studies/gpu.py (study gpu): the full study refuses without a GPU in one line, its projection adds
up the measured rates, and its quick run on a CPU (the smoke test) runs the whole measuring path (training both
ways, evaluation, detector, separation, projection)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch

from autobackswap.errors import AutoBackSwapError

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture
def bench(load_benchmark: Callable[[str], ModuleType]) -> ModuleType:
    return load_benchmark("_studies.gpu")


def test_without_a_gpu_it_refuses_in_one_line(bench: ModuleType, load_benchmark: Callable[[str], ModuleType],
                                              monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    study = bench.Gpu()
    why = study.available()
    assert why is not None and why.startswith("no GPU: ") and "\n" not in why and "--quick" in why
    assert study.available(quick=True) is None  # the smoke test runs anywhere
    studies = load_benchmark("_studies")
    with pytest.raises(AutoBackSwapError, match="^no GPU: "):
        study.measure(studies.Context(seeds=[0], quick=False, out=tmp_path))
    run = load_benchmark("run")
    assert run.main(["gpu", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("benchmarks/run.py gpu: cannot run here: no GPU: ") and err.count("\n") == 1


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


def test_quick_run_on_a_cpu_is_the_smoke_test(bench: ModuleType, load_benchmark: Callable[[str], ModuleType],
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    studies = load_benchmark("_studies")
    measured = bench.Gpu().measure(studies.Context(seeds=[0], quick=True, out=tmp_path / "out"))
    table = measured.tables["main"]
    names = [r[0] for r in table.rows]
    for prefix in ("ERM", "autobackswap", "autobackswap ÷ ERM epoch time", "peak GPU memory", "evaluation",
                   "detector (fcn, random init)", "separation (patchmatch", "projected waterbirds-paper, one "
                   "autobackswap run", "projected whole recipe"):
        assert any(n.startswith(prefix) for n in names), prefix
    assert dict((r[0], r[1]) for r in table.rows)["peak GPU memory"] == "n/a (CPU)"
    assert table.caption.startswith("cpu (CPU (smoke test") and "small_resnet at 32 px" in table.caption
    v = measured.values
    assert v["n_train"] == "48" and v["precision"] == "fp32" and v["device"].startswith("CPU (smoke test")
    assert float(v["erm_img_s"]) > 0 and float(v["ratio"]) > 0 and float(v["autobackswap_run_min"]) > 0
