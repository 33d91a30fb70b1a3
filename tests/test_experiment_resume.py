"""``experiment`` is resumable: a (method, seed) run finished earlier is reused, not retrained."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from autobackswap.experiment import ExperimentConfig, run_experiment
from autobackswap.methods import METHODS
from autobackswap.train.loop import TrainConfig

pytestmark = pytest.mark.usefixtures("torch_single_thread")

TINY = TrainConfig(epochs=1, batch_size=32, width=8)


def cfg(data: Path, **kwargs: Any) -> ExperimentConfig:
    base: dict[str, Any] = {"methods": ["erm", "dfr"], "seeds": [0, 1], "image_size": 32, "train": TINY,
                            "diagnostics": False, "report": False}
    return ExperimentConfig(data=str(data), **{**base, **kwargs})


def count_runs(monkeypatch: pytest.MonkeyPatch, names: list[str]) -> list[tuple[str, int]]:
    """Record ``(method, seed)`` for every method run that actually trains (wraps each class's run)."""
    calls: list[tuple[str, int]] = []
    for name in names:
        cls = METHODS.get(name)
        real = cls.run

        def counting(self: Any, data: Any, train: TrainConfig, ctx: Any, _real: Any = real, _name: str = name) -> Any:
            calls.append((_name, train.seed))
            return _real(self, data, train, ctx)

        monkeypatch.setattr(cls, "run", counting)
    return calls


def strip_times(results: dict[str, Any]) -> dict[str, Any]:
    return {m: [{k: v for k, v in r.items() if k not in ("epoch_seconds",)} for r in e.get("runs", [])]
            for m, e in results["methods"].items()}


def test_a_rerun_reuses_finished_runs_and_retrains_what_changed(tiny_synthetic: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    first = run_experiment(cfg(tiny_synthetic), run)
    assert (run / "models" / "erm_seed0.json").is_file() and (run / "models" / "erm_seed1.pt").is_file()

    calls = count_runs(monkeypatch, ["erm", "dfr"])
    again = run_experiment(cfg(tiny_synthetic), run)
    # erm is reused for both seeds; dfr (skipped on this data, so nothing saved) runs again and is skipped again
    assert calls == [("dfr", 0), ("dfr", 1)]
    assert strip_times(again) == strip_times(first)
    assert again["methods"]["dfr"]["skipped"] == first["methods"]["dfr"]["skipped"]

    # a different training config is a different run: retrained, not reused
    calls.clear()
    run_experiment(cfg(tiny_synthetic, methods=["erm"], seeds=[0], train=TrainConfig(epochs=2, batch_size=32, width=8)),
                   run)
    assert calls == [("erm", 0)]


def test_a_record_without_its_model_or_with_another_key_is_not_reused(tiny_synthetic: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    run_experiment(cfg(tiny_synthetic, methods=["erm"], seeds=[0]), run)
    record = run / "models" / "erm_seed0.json"
    payload = json.loads(record.read_text())
    record.write_text(json.dumps({**payload, "key": "something-else"}))
    calls = count_runs(monkeypatch, ["erm"])
    run_experiment(cfg(tiny_synthetic, methods=["erm"], seeds=[0]), run)
    assert calls == [("erm", 0)]
    (run / "models" / "erm_seed0.pt").unlink()  # a record whose model is gone (killed between the two writes)
    calls.clear()
    run_experiment(cfg(tiny_synthetic, methods=["erm"], seeds=[0]), run)
    assert calls == [("erm", 0)]


def test_the_run_key_follows_resolved_pipeline_settings_not_their_spelling(tiny_synthetic: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A default spelled out gives the same key; a changed default (simulated) gives another, so a run
    saved before a library default changed is retrained, not reused."""
    from autobackswap.experiment import run_key
    from autobackswap.pipeline import PipelineConfig

    default = PipelineConfig().detector.epochs
    plain = run_key("autobackswap", 0, cfg(tiny_synthetic), "digest")
    spelled = run_key("autobackswap", 0, cfg(tiny_synthetic, method_options={"detector_epochs": str(default)}), "digest")
    other = run_key("autobackswap", 0, cfg(tiny_synthetic, method_options={"detector_epochs": str(default + 1)}), "digest")
    assert plain == spelled and other != plain
    real = PipelineConfig.settings
    monkeypatch.setattr(PipelineConfig, "settings", lambda c: {**real(c), "detector_epochs": default + 1})
    assert run_key("autobackswap", 0, cfg(tiny_synthetic), "digest") == other


def test_training_options_added_later_keep_earlier_run_keys(tiny_synthetic: Path) -> None:
    """``augment``, ``ema`` and the paper's training options enter the key only when set, so runs saved
    before they existed are reused; set, each gives another key. The device never enters it."""
    from dataclasses import asdict, replace

    from autobackswap.experiment import run_key
    from autobackswap.train.loop import EXECUTION_TRAIN_FIELDS, LATER_TRAIN_FIELDS, train_settings

    first_release = {k: v for k, v in asdict(TrainConfig()).items()
                     if k not in LATER_TRAIN_FIELDS and k not in EXECUTION_TRAIN_FIELDS}
    assert train_settings(TrainConfig()) == first_release
    assert {k: getattr(TrainConfig(), k) for k in LATER_TRAIN_FIELDS} == LATER_TRAIN_FIELDS  # the defaults
    plain = run_key("erm", 0, cfg(tiny_synthetic), "digest")
    keys = {plain}
    changes = ({"augment": "crop"}, {"ema": 0.99}, {"amp": False}, {"optimizer": "sgd"}, {"momentum": 0.5},
               {"lr_schedule": "constant"}, {"label_smoothing": 0.1}, {"class_weighted": True}, {"grad_clip": 1.0})
    for change in changes:
        keys.add(run_key("erm", 0, cfg(tiny_synthetic, train=replace(TINY, **change)), "digest"))
    assert len(keys) == 1 + len(changes)
    for device in ("cpu", "cuda", "cuda:1", "mps"):
        assert run_key("erm", 0, cfg(tiny_synthetic, train=replace(TINY, device=device)), "digest") == plain
