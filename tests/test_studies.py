"""benchmarks/_studies: every registered study says what it measures, and the source files its figures depend on
exist; ``benchmarks/run.py list`` names them all and ``run.py STUDY --dry-run`` works for each."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def registered_names() -> list[str]:
    """The registry's names at collection time (the modules are forgotten again, as the fixture does)."""
    sys.path.insert(0, str(BENCHMARKS))
    before = set(sys.modules)
    try:
        studies = importlib.import_module("_studies")
        studies.load_all()
        return list(studies.STUDIES.names())
    finally:
        sys.path.remove(str(BENCHMARKS))
        for name in set(sys.modules) - before:
            if name == "_studies" or name.startswith("_studies."):
                del sys.modules[name]


NAMES = registered_names()


@pytest.fixture
def studies(load_benchmark: Callable[[str], ModuleType]) -> ModuleType:
    module = load_benchmark("_studies")
    module.load_all()
    return module


def test_the_registry_holds_the_ported_studies() -> None:
    assert {"mask-errors", "grid-labels", "label-effort", "scaling", "memory", "gpu", "durability"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_study_says_what_it_measures_and_its_sources_exist(studies: ModuleType, name: str) -> None:
    study = studies.STUDIES.get(name)
    assert study.name == name and study.title.strip() and study.about.strip() and "\n" not in study.about
    assert study.seeds and study.quick_seeds and study.depends
    files = studies.source_files(study)  # raises when a glob of depends matches no file
    assert str(study.module_file().resolve().relative_to(studies.ROOT)) in files
    assert all((studies.ROOT / f).is_file() for f in files)
    assert any(f.startswith("src/autobackswap/") for f in files)


def test_a_depends_glob_that_matches_nothing_is_an_error(studies: ModuleType) -> None:
    class Broken(studies.Study):
        name = "broken"
        depends = ("src/autobackswap/no_such_module/*.py",)

    with pytest.raises(FileNotFoundError, match="study broken: depends on 'src/autobackswap/no_such_module/"):
        studies.source_files(Broken())


def test_run_list_names_every_study(load_benchmark: Callable[[str], ModuleType],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    run = load_benchmark("run")
    assert run.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_run_dry_run_of_every_study(load_benchmark: Callable[[str], ModuleType], studies: ModuleType, name: str,
                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = load_benchmark("run")
    study = studies.STUDIES.get(name)
    assert run.main([name, "--dry-run", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{name}: {study.about}; seeds ") and str(tmp_path / name) in out
    why = study.available()  # a study this machine cannot run in full (gpu without a GPU) says so, and refuses to run
    assert (f"cannot run here: {why}" in out) if why else "cannot run here" not in out
    if why:
        assert run.main([name, "--out", str(tmp_path)]) == 2
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


def test_detector_mask_scores_by_hand(load_benchmark: Callable[[str], ModuleType]) -> None:
    """A grid that matches the ground truth exactly: IoU 1, no rim, the whole object kept; an empty grid keeps
    nothing (its IoU is 0, its rim undefined and left out)."""
    detectors = load_benchmark("_studies.detectors")
    seg = np.zeros((1, 16, 16), np.uint8)
    seg[0, 4:12, 4:8] = 255  # 2x1 patches of a 4x4 grid (4 px each)
    grid = np.zeros((1, 4, 4), np.float32)
    grid[0, 1:3, 1] = 1.0
    images = np.zeros((1, 16, 16, 3), np.uint8)
    assert detectors.mask_scores(images, grid, seg, "nearest", 0.5) == (1.0, 0.0, 1.0)
    iou, rim, kept = detectors.mask_scores(images, np.zeros_like(grid), seg, "nearest", 0.5)
    assert iou == 0.0 and np.isnan(rim) and kept == 0.0
