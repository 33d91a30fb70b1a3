"""The pages' figures are rendered from the stored study results (benchmarks/run.py render): the committed README
and docs/results.md are current, a hand-edited figure is caught by the check (naming the table), a figure whose
source files changed since it was measured is marked stale, and one never measured says so."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest


def _benchmark_modules() -> list[str]:
    return [m for m in sys.modules if m in ("_studies", "_render", "run") or m.startswith("_studies.")]


@pytest.fixture
def render(load_benchmark: Callable[[str], ModuleType]) -> Iterator[ModuleType]:
    """``_render`` with a fresh study registry (the study modules imported anew, forgotten after the test)."""
    saved = {m: sys.modules.pop(m) for m in _benchmark_modules()}
    load_benchmark("_studies").load_all()
    module = load_benchmark("_render")
    yield module
    for m in _benchmark_modules():
        sys.modules.pop(m, None)
    sys.modules.update(saved)


@pytest.fixture
def studies(render: ModuleType) -> ModuleType:
    import _studies

    return _studies


def record(studies: ModuleType, tmp_path: Path, name: str = "demo", digest: str | None = None) -> dict:
    study = studies.STUDIES.get(name)
    files = studies.source_files(study)
    sources = studies.file_digests(files)
    if digest is not None:
        sources[files[0]] = digest
    rec = {"study": name, "title": study.title, "command": f".venv/bin/python benchmarks/run.py {name}",
           "seeds": [0], "quick": False, "commit": "abc1234", "dirty": False, "date": "2026-12-08", "seconds": 1.0,
           "machine": {"cpu": "CPU", "cores": 2, "gpu": None}, "sources": sources,
           "tables": {"main": {"header": ["method", "WGA"], "rows": [["erm", "0.000"], ["oracle", "0.995"]],
                               "caption": "a caption", "notes": ["a note"]}},
           "values": {"seconds": "1 min 50 s"}, "images": []}
    (tmp_path / f"{name}.json").write_text(json.dumps(rec))
    return rec


def test_the_committed_pages_are_current(render: ModuleType) -> None:
    assert render.check_pages() == []


def test_a_page_renders_its_blocks_and_the_check_catches_a_hand_edit(render, studies, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(studies, "RESULTS", tmp_path)
    record(studies, tmp_path)
    page = tmp_path / "page.md"
    page.write_text("intro\n<!-- figure demo/main -->\nold\n<!-- /figure -->\nIt took "
                    "<!-- value demo/seconds -->?<!-- /value --> here.\n")
    assert render.check_pages((page,)) and "table demo/main" in render.check_pages((page,))[0]
    render.render_pages((page,))
    text = page.read_text()
    assert "| erm | 0.000 |" in text and "*a caption*" in text and "* a note" in text
    assert "seed 0 · measured 2026-12-08 · commit abc1234" in text and "`.venv/bin/python benchmarks/run.py demo`" in text
    assert "It took <!-- value demo/seconds -->1 min 50 s<!-- /value --> here." in text
    assert render.check_pages((page,)) == []
    page.write_text(text.replace("| oracle | 0.995 |", "| oracle | 0.999 |"))  # a figure edited by hand
    problems = render.check_pages((page,))
    assert len(problems) == 1 and "page.md: table demo/main differs" in problems[0]
    page.write_text(text.replace("1 min 50 s", "1 min 40 s"))
    assert "value demo/seconds" in render.check_pages((page,))[0]


def test_a_figure_whose_sources_changed_is_marked_stale(render, studies, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(studies, "RESULTS", tmp_path)
    record(studies, tmp_path, digest="0000000000000000")
    out = render.render_figure("demo/main")
    assert "**Stale**" in out and "changed since this was measured" in out
    assert render.render_value("demo/seconds").endswith("(stale)")


def test_unmeasured_studies_and_unknown_tables(render, studies, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(studies, "RESULTS", tmp_path)
    assert "Not measured yet: `python benchmarks/run.py demo`" in render.render_figure("demo/main")
    record(studies, tmp_path)
    page = tmp_path / "page.md"
    page.write_text("<!-- figure demo/nothing -->\n<!-- /figure -->\n")
    assert "has no table 'nothing'" in render.check_pages((page,))[0]
