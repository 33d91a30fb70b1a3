"""Faults of the separation cache and its workers: a killed parent, damaged files, stray temp files, a
moved run folder; and a results.json an interrupted experiment leaves."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autobackswap import experiment as experiment_module
from autobackswap.data.splits import load_experiment_data
from autobackswap.evaluate.report import write_report
from autobackswap.experiment import ExperimentConfig, run_experiment
from autobackswap.pipeline import PipelineConfig, run_separation
from autobackswap.separate.engines import separate
from autobackswap.separate.run import SeparationConfig, is_done
from autobackswap.train.loop import TrainConfig

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SRC = Path(__file__).resolve().parents[1] / "src"


def oracle_inputs(n: int, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images with a bright square on a dark ramp and its ground-truth mask (every image has
    both foreground and background, so every image is inpainted)."""
    images = np.zeros((n, size, size, 3), np.uint8)
    images[:] = np.linspace(0, 120, size, dtype=np.uint8)[None, None, :, None]
    images[:, 4:12, 4:12] = 230
    images[:, 0, 0, 0] = np.arange(n) % 256  # every image differs
    masks = np.zeros((n, size, size), np.uint8)
    masks[:, 4:12, 4:12] = 255
    return images, masks


# ----------------------------------------------------------------------------- orphaned workers
KILL_SCRIPT = """
import sys, time
import numpy as np
from autobackswap.separate.inpaint import INPAINTERS

@INPAINTERS.register("slow_for_kill_test")  # runs in the spawned workers too (they import __mp_main__)
def slow(**_):
    def inpaint(image, hole, rng):
        time.sleep(0.05)
        return image.copy()
    return inpaint

if __name__ == "__main__":
    from autobackswap.separate.engines import separate
    from autobackswap.separate.run import SeparationConfig
    n, size = 2000, 16
    images = np.zeros((n, size, size, 3), np.uint8)
    images[:, 4:12, 4:12] = 230
    masks = np.zeros((n, size, size), np.uint8)
    masks[:, 4:12, 4:12] = 255
    separate(images, sys.argv[1], SeparationConfig(inpainter="slow_for_kill_test"), segmentations=masks, workers=2)
"""


def descendants(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """Running (a zombie, waiting for a reaper, counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_workers_end_when_the_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "separate_slowly.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT))
    out = tmp_path / "sep"
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    parent = subprocess.Popen([sys.executable, str(script), str(out)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and parent.poll() is None:  # until the workers write cut-outs
            if (out / "fg").is_dir() and sum(1 for _ in (out / "fg").glob("*.png")) >= 4:
                break
            time.sleep(0.1)
        assert parent.poll() is None, parent.stderr.read().decode() if parent.stderr else ""
        children = descendants(parent.pid)
        assert len(children) >= 2  # the two pool workers (and the resource tracker)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(p) for p in children):
            time.sleep(0.1)
        survivors = [p for p in children if alive(p)]
        written = sum(1 for _ in (out / "fg").glob("*.png"))
        time.sleep(1.0)
        assert survivors == []
        assert sum(1 for _ in (out / "fg").glob("*.png")) == written  # nobody writes after the run is gone
        assert written < 2000
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in children:  # only the processes this test started, by pid
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


# ----------------------------------------------------------------------------- damaged and stray files
def test_a_truncated_cache_file_is_redone_on_resume(tmp_path: Path) -> None:
    images, masks = oracle_inputs(6)
    out = tmp_path / "sep"
    separate(images, out, SeparationConfig(), segmentations=masks)
    intact = {p.name: p.read_bytes() for p in sorted((out / "fg").glob("*.png"))}
    damaged = out / "fg" / "000002.png"
    damaged.write_bytes(intact["000002.png"][: len(intact["000002.png"]) // 2])  # as a crash would leave it
    before = {p.name: p.stat().st_mtime_ns for p in (out / "fg").glob("*.png")}
    separate(images, out, SeparationConfig(), segmentations=masks)  # no "image file is truncated"
    assert {p.name: p.read_bytes() for p in sorted((out / "fg").glob("*.png"))} == intact  # the same bytes again
    after = {p.name: p.stat().st_mtime_ns for p in (out / "fg").glob("*.png")}
    assert [name for name in before if after[name] != before[name]] == ["000002.png"]  # the others are reused


def test_a_garbage_cache_file_is_redone(tmp_path: Path) -> None:
    images, masks = oracle_inputs(3)
    out = tmp_path / "sep"
    separate(images, out, SeparationConfig(), segmentations=masks)
    good = (out / "bg" / "000001.png").read_bytes()
    (out / "bg" / "000001.png").write_bytes(b"not a png")
    separate(images, out, SeparationConfig(), segmentations=masks)
    assert (out / "bg" / "000001.png").read_bytes() == good


def test_stray_temp_files_are_removed_on_resume(tmp_path: Path) -> None:
    images, masks = oracle_inputs(4)
    out = tmp_path / "sep"
    separate(images, out, SeparationConfig(), segmentations=masks)
    strays = [out / "fg" / ".000002.png.xvqc9a9a.tmp", out / "bg" / ".000003.png.abc123.tmp", out / ".summary.json.q1.tmp"]
    for stray in strays:
        stray.write_bytes(b"")  # zero-byte leftovers of a killed run
    keep = out / "fg" / "notes.tmp"  # not a temp file of ours (not hidden)
    keep.write_bytes(b"x")
    separate(images, out, SeparationConfig(), segmentations=masks)
    assert [s.exists() for s in strays] == [False, False, False]
    assert keep.exists()
    assert all(is_done(out, i) for i in range(4))


def test_a_moved_run_folder_reuses_the_separation(tiny_synthetic: Path, tmp_path: Path) -> None:
    # a two-epoch detector fails the health check; the cache key, not the masks, is under test here
    cfg = PipelineConfig.from_options({"label_budget": 8, "detector_epochs": 2, "detector_width": 8, "grid": 8,
                                       "allow_bad_separation": True})
    first = tmp_path / "run"
    banks = run_separation(load_experiment_data(tiny_synthetic, 32, first), cfg, seed=0)
    folder = Path(banks.info["separation"])
    assert folder.parent == first / "separation" and folder.name.startswith("abs_")
    moved = tmp_path / "elsewhere" / "run_moved"
    moved.parent.mkdir()
    shutil.move(first, moved)
    stamps = {p.name: p.stat().st_mtime_ns for p in (moved / "separation" / folder.name / "fg").glob("*.png")}
    banks2 = run_separation(load_experiment_data(tiny_synthetic, 32, moved), cfg, seed=0)
    assert Path(banks2.info["separation"]) == moved / "separation" / folder.name  # the same key: no path in it
    assert sorted((moved / "separation").iterdir()) == [moved / "separation" / folder.name]  # nothing recomputed
    assert {p.name: p.stat().st_mtime_ns for p in (moved / "separation" / folder.name / "fg").glob("*.png")} == stamps


# ----------------------------------------------------------------------------- results.json of a killed run
def test_results_json_is_marked_incomplete_until_the_last_method(tiny_synthetic: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = ExperimentConfig(data=str(tiny_synthetic), methods=["erm", "groupdro"], image_size=32,
                           train=TrainConfig(epochs=1, batch_size=16), diagnostics=False)
    real = experiment_module.train_or_reuse

    def killed_on_groupdro(spec: str, *args: Any) -> Any:
        if spec == "groupdro":
            raise KeyboardInterrupt  # the run stops here, as a kill would
        return real(spec, *args)

    monkeypatch.setattr(experiment_module, "train_or_reuse", killed_on_groupdro)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, run)
    partial = json.loads((run / "results.json").read_text())
    assert partial["complete"] is False and partial["pending"] == ["groupdro"]
    assert list(partial["methods"]) == ["erm"]
    html, md = write_report(run, partial)  # e.g. `autobackswap diagnose` on the partial run
    assert "Incomplete run" in html.read_text() and "not finished: groupdro" in md.read_text()

    monkeypatch.setattr(experiment_module, "train_or_reuse", real)
    final = run_experiment(cfg, run)  # resumed: erm is reused, groupdro trained
    on_disk = json.loads((run / "results.json").read_text())
    assert final["complete"] is True and on_disk["complete"] is True and on_disk["pending"] == []
    assert "Incomplete run" not in (run / "report.html").read_text()
