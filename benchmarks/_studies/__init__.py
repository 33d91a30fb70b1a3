"""Studies: every measured figure of README.md and docs/results.md, declared once, run or reused, stored as JSON.

A :class:`Study` says what it measures (experiments through the library's resumable ``experiment``, or a
measurement of its own) and turns the outcome into named :class:`Table` objects and inline values.
``benchmarks/run.py STUDY`` runs it and writes ``docs/results/STUDY.json`` (:func:`write_record`): the tables,
the command, the commit, the machine, the date, the seeds, and a digest of every source file the figures depend
on (``Study.depends``). ``benchmarks/run.py render`` writes the pages' figure blocks from those files
(:mod:`_render`); a figure whose files changed since it was measured is marked stale there.

Run folders live under ``runs/studies/<study>/`` (``--out``): a rerun of the same study reuses every finished
(method, seed) run and trains only the rest.
"""

from __future__ import annotations

import dataclasses
import datetime
import glob
import hashlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from autobackswap.experiment import ExperimentConfig, run_experiment
from autobackswap.io import write_json
from autobackswap.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
RUNS = Path("runs/studies")

# Source files most training figures depend on: the method, the training loop, the data readers and the metrics
# (a change in the CLI, the report's HTML or the labelling app leaves them standing).
METHOD_CODE = (
    "src/autobackswap/compose/*.py", "src/autobackswap/separate/*.py", "src/autobackswap/detect/*.py",
    "src/autobackswap/train/*.py", "src/autobackswap/methods/*.py", "src/autobackswap/pipeline.py",
    "src/autobackswap/experiment.py", "src/autobackswap/seeding.py", "src/autobackswap/tensors.py",
    "src/autobackswap/hub.py", "src/autobackswap/offline.py", "src/autobackswap/weights.py",
    "src/autobackswap/data/splits.py", "src/autobackswap/data/images.py", "src/autobackswap/data/layout.py",
    "src/autobackswap/data/grid.py", "src/autobackswap/evaluate/metrics.py", "src/autobackswap/evaluate/results.py",
    "src/autobackswap/evaluate/diagnostics.py", "src/autobackswap/evaluate/runner.py",
)


@dataclass
class Table:
    """A rendered table: column names, rows of cells (strings), an optional caption and notes under it."""

    header: list[str]
    rows: list[list[str]]
    caption: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class Measured:
    """What a study produced: tables and inline values (``name -> text``) by name, and images it wrote."""

    tables: dict[str, Table] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)


@dataclass
class Context:
    """How a study runs: its seeds, whether reduced (``quick``), where its run folders go."""

    seeds: list[int]
    quick: bool = False
    out: Path = RUNS

    def experiment(self, name: str, cfg: ExperimentConfig) -> dict[str, Any]:
        """Run (or resume) the experiment ``cfg`` in ``out/name`` and return its results."""
        return run_experiment(cfg, self.out / name)


class Study:
    """Base class: set ``name``, ``title``, ``seeds`` and ``depends``; implement :meth:`measure`."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    seeds: ClassVar[list[int]] = [0]
    quick_seeds: ClassVar[list[int]] = [0]
    depends: ClassVar[tuple[str, ...]] = METHOD_CODE  # globs, relative to the repository root
    needs: ClassVar[str] = ""  # what the machine must have ("a CUDA GPU"); "" for any machine
    about: ClassVar[str] = ""  # one line: what it measures (benchmarks/run.py list)

    def available(self, quick: bool = False) -> str | None:
        """Why this machine cannot run the study, or its reduced run with ``quick`` (None: it can)."""
        return None

    def measure(self, ctx: Context) -> Measured:
        raise NotImplementedError

    def module_file(self) -> Path:
        return Path(sys.modules[type(self).__module__].__file__ or "")


STUDIES: Registry[Study] = Registry("study")


def register(cls: type[Study]) -> type[Study]:
    STUDIES.register(cls.name)(cls())
    return cls


def source_files(study: Study) -> list[str]:
    """The files a study's figures depend on, relative to the repository root: its own module, the framework,
    and ``depends``."""
    files = {study.module_file().resolve(), Path(__file__).resolve()}
    for pattern in study.depends:
        found = glob.glob(str(ROOT / pattern), recursive=True)
        if not found:
            raise FileNotFoundError(f"study {study.name}: depends on {pattern!r}, which matches no file")
        files |= {Path(p).resolve() for p in found}
    return sorted(str(p.relative_to(ROOT)) for p in files)


def file_digests(files: Iterable[str]) -> dict[str, str]:
    return {f: hashlib.sha256((ROOT / f).read_bytes()).hexdigest()[:16] for f in files}


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "gpu": gpu,
            "python": platform.python_version(), "torch": torch.__version__,
            "load_average": round(os.getloadavg()[0], 2)}


def record_path(name: str) -> Path:
    return RESULTS / f"{name}.json"


def write_record(study: Study, ctx: Context, measured: Measured, command: str, seconds: float) -> Path:
    """Write ``docs/results/<study>.json``."""
    files = source_files(study)
    record = {
        "study": study.name, "title": study.title, "command": command, "seeds": ctx.seeds, "quick": ctx.quick,
        "commit": git("rev-parse", "--short", "HEAD"), "dirty": bool(git("status", "--porcelain", "--", "src",
                                                                         "benchmarks")),
        "date": datetime.date.today().isoformat(), "seconds": round(seconds, 1), "machine": machine(),
        "sources": file_digests(files),
        "tables": {k: dataclasses.asdict(t) for k, t in measured.tables.items()},
        "values": measured.values, "images": measured.images,
    }
    path = record_path(study.name)
    write_json(path, record)
    return path


def read_record(name: str) -> dict[str, Any] | None:
    path = record_path(name)
    return json.loads(path.read_text()) if path.is_file() else None


def stale_files(record: dict[str, Any]) -> list[str]:
    """The source files that changed (or vanished) since the record was measured."""
    study = STUDIES.get(record["study"]) if record["study"] in STUDIES else None
    files = source_files(study) if study is not None else list(record["sources"])
    now = {f: d for f, d in file_digests([f for f in files if (ROOT / f).is_file()]).items()}
    changed = [f for f, d in record["sources"].items() if now.get(f) != d]
    added = [f for f in now if f not in record["sources"]]
    return sorted(changed + added)


# --------------------------------------------------------------------------- helpers the studies share
def fmt(value: float | None, std: float | None = None, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if std is None else f"{value:.{digits}f} ± {std:.{digits}f}"


def metric(entry: dict[str, Any], split: str, key: str = "worst_group_accuracy") -> str:
    """``mean ± std`` (over seeds) of a method entry's metric, ``skipped`` when it has none."""
    m = entry.get(split)
    if m is None:
        return "skipped"
    std = m.get("std", {}).get(key) if m.get("n_seeds", 1) > 1 else None
    return fmt(m.get(key), std)


def seeds_text(seeds: list[int]) -> str:
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"mean ± std over seeds {', '.join(map(str, seeds))}"


def load_all() -> None:
    """Import every study module (each registers its studies)."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        importlib.import_module(f"{__name__}.{info.name}")
