"""benchmarks/tuxbirds_seeds.py: seeds pooled across run folders, paired differences, the masks-and-diagnostics table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def run_entry(seed: int, wga: float, unseen: float, **extra: Any) -> dict[str, Any]:
    return {"seed": seed, "test": {"worst_group_accuracy": wga, "average_accuracy": wga + 0.1},
            "test:unseen": {"worst_group_accuracy": unseen, "average_accuracy": unseen + 0.2}, **extra}


def write_run(folder: Path, methods: dict[str, dict[str, Any]], augment: str = "color") -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"train": {"epochs": 60, "seed": 0, "augment": augment}}))
    (folder / "results.json").write_text(json.dumps({"methods": methods}))
    return folder


def test_seeds_pool_across_folders_with_paired_differences_and_extras(
        load_benchmark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    seeds = load_benchmark("tuxbirds_seeds")
    a = write_run(tmp_path / "a", {
        "abs": {"runs": [run_entry(0, 0.8, 0.3, mask_iou=0.8, diagnostics={"bg_gap": 0.02}),
                         run_entry(1, 0.7, 0.2, mask_iou=0.7, diagnostics={"bg_gap": 0.04})]},
        "oracle": {"runs": [run_entry(0, 0.9, 0.4), run_entry(1, 0.9, 0.5)]}})
    # one seed per folder: the method entry's mask figures stand for its one run
    b = write_run(tmp_path / "b", {"abs": {"mask_iou": 0.9, "mask_bg_share": 0.1, "mask_fg_kept": 0.8, "runs": [run_entry(2, 0.9, 0.1)]}})
    table = seeds.pooled([a, b])
    assert sorted(table) == ["abs [augment=color]", "oracle [augment=color]"]
    assert table["abs [augment=color]"][2] == pytest.approx(
        {"seen": 0.9, "unseen": 0.1, "mask IoU": 0.9, "rim": 0.1, "object kept": 0.8, "avg. acc., seen": 1.0, "avg. acc., unseen": 0.3})
    monkeypatch.setattr("sys.argv", ["tuxbirds_seeds.py", str(a), str(b), "--baseline", "abs [augment=color]"])
    seeds.main()
    out = capsys.readouterr().out
    assert "| oracle [augment=color] | 0,1 | 0.900 ± 0.000 | 0.90 0.90 | +0.150 ± 0.050 (2 seeds) |" in out
    assert "| abs [augment=color] | 0,1,2 | 0.800 ± 0.082 | 0.80 0.70 0.90 |  |" in out
    # mask IoU over 3 seeds, the rim from seed 2 only, bg_gap from seeds 0 and 1; the oracle reports none
    assert "| abs [augment=color] | 0.800 (3) | 0.100 (1) | 0.800 (1) | 0.030 (2) | 0.900 (3) | 0.400 (3) |" in out
    assert "| oracle [augment=color] | - | - | - | - | 1.000 (2) | 0.650 (2) |" in out


def test_a_seed_in_two_folders_or_mixed_epochs_is_an_error(load_benchmark: Any, tmp_path: Path) -> None:
    seeds = load_benchmark("tuxbirds_seeds")
    a = write_run(tmp_path / "a", {"abs": {"runs": [run_entry(0, 0.8, 0.3)]}})
    b = write_run(tmp_path / "b", {"abs": {"runs": [run_entry(0, 0.7, 0.3)]}})
    with pytest.raises(SystemExit, match="more than one run folder"):
        seeds.pooled([a, b])
    c = write_run(tmp_path / "c", {"abs": {"runs": [run_entry(1, 0.7, 0.3)]}})
    (c / "config.json").write_text(json.dumps({"train": {"epochs": 30, "seed": 0, "augment": "color"}}))
    with pytest.raises(SystemExit, match="different epochs"):
        seeds.pooled([a, c])
