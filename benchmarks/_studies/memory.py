"""Bounded memory: peak RSS of separation + a few AutoBackSwap training steps, streamed from disk (``--stream``),
at two dataset sizes (5,000 and 20,000 train images at 64 px). Target: under 2 GB, and the same at both sizes
(ratio ~1).

One hard synthetic set of the largest size is generated once (a few minutes for 20,000); the smaller sets reuse
its images through their own metadata.csv. Each measurement runs in a fresh child process:
``load_experiment_data(..., stream=True)`` (images decoded once into an on-disk cache) -> ``build_banks``
(detector fit on 200 labels, separation of every training image on the local engine with ``workers``
processes, swap banks packed on disk) -> ``steps`` training steps of the classifier on composites read per
batch -> one validation pass. It reports the child's peak RSS (VmHWM) after each stage, the largest separation
worker's RSS, and the peak of all processes' RSS summed (sampled every 0.2 s; shared libraries are counted once
per process, so this overstates). For contrast, the in-memory path (``load_experiment_data`` + ``load_banks``)
is measured on the same run folder (its separation is already cached, so its figure *excludes* the separation
work).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from . import METHOD_CODE, Context, Measured, Study, Table, register
from .synthetic import synthetic_data

BENCHMARKS = Path(__file__).resolve().parents[1]
MEMORY_CODE = (*METHOD_CODE, "src/autobackswap/data/stream.py", "src/autobackswap/data/synthetic.py")


def vm_hwm_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int | str) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class TreeSampler(threading.Thread):
    """Samples the RSS of this process's descendants (the separation workers) every 0.2 s.

    (``getrusage(RUSAGE_CHILDREN)`` is no use here: a spawned child's ``ru_maxrss`` starts from the
    parent's RSS at fork time, before its ``exec``.)"""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.worker_peak_mb = 0.0
        self.tree_peak_mb = 0.0  # this process + all descendants, summed at one instant
        self.stop = threading.Event()

    def descendants(self) -> list[str]:
        parent: dict[str, str] = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as fh:
                        parent[d] = fh.read().rsplit(")", 1)[1].split()[1]
                except OSError:
                    continue
        out, frontier = [], [str(os.getpid())]
        while frontier:
            p = frontier.pop()
            kids = [c for c, pp in parent.items() if pp == p]
            out += kids
            frontier += kids
        return out

    def run(self) -> None:
        while not self.stop.wait(0.2):
            workers = [rss_mb(pid) for pid in self.descendants()]
            self.worker_peak_mb = max([self.worker_peak_mb, *workers])
            self.tree_peak_mb = max(self.tree_peak_mb, rss_mb("self") + sum(workers))


class FirstBatches:
    """The first ``steps`` batches of an epoch of ``source``."""

    def __init__(self, source: Any, steps: int, batch_size: int) -> None:
        self.source, self.steps = source, steps
        self.n = min(len(source), steps * batch_size)

    def __len__(self) -> int:
        return self.n

    def batches(self, epoch: int, batch_size: int, generator: Any) -> Any:
        return itertools.islice(self.source.batches(epoch, batch_size, generator), self.steps)


def child(data_dir: str, run_dir: str, mode: str, steps: int, workers: int, detector_epochs: int) -> dict[str, Any]:
    """One measurement, in the child process: load, detector + separation, ``steps`` training steps."""
    import torch

    from autobackswap.data.splits import load_experiment_data
    from autobackswap.pipeline import PipelineConfig, build_banks
    from autobackswap.train.loop import TrainConfig, fit
    from autobackswap.train.sources import SwapSource

    torch.set_num_threads(1)
    sampler = TreeSampler()
    sampler.start()
    marks: dict[str, float] = {"start": vm_hwm_mb()}
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    data = load_experiment_data(data_dir, 64, run_dir, stream=mode == "stream")
    times["load"], marks["load"] = time.perf_counter() - t0, vm_hwm_mb()
    t0 = time.perf_counter()
    # memory is the point, not the masks: a short detector fit on the hard set may fail the health check
    options = {"detector_epochs": detector_epochs, "workers": workers, "allow_bad_separation": True}
    banks = build_banks(data, PipelineConfig.from_options(options), seed=0)
    times["detector+separation"], marks["detector+separation"] = time.perf_counter() - t0, vm_hwm_mb()
    t0 = time.perf_counter()
    cfg = TrainConfig(epochs=1, batch_size=128)
    source = SwapSource(data.train.images, data.train.labels, banks.swap)
    fit(FirstBatches(source, steps, cfg.batch_size), data.val.images, data.val.labels, data.num_classes, cfg)
    times["train"], marks["train"] = time.perf_counter() - t0, vm_hwm_mb()
    sampler.stop.set()
    sampler.join()
    return {"mode": mode, "n_train": len(data.train), "peak_rss_mb": marks["train"], "marks_mb": marks,
            "worker_peak_rss_mb": sampler.worker_peak_mb, "tree_peak_rss_mb": sampler.tree_peak_mb,
            "seconds": times, "counts": banks.info["separation_counts"]}


CHILD = """\
import json, logging, sys
sys.path.insert(0, {benchmarks!r})
logging.basicConfig(level=logging.WARNING)
from _studies.memory import child
print(json.dumps(child(*sys.argv[1:4], *map(int, sys.argv[4:]))))
"""


def subset(full: Path, n_train: int, root: Path) -> Path:
    """A dataset that uses the first ``n_train`` training rows of ``full`` (and all of val and test)."""
    out = root / f"subset_n{n_train}"
    if (out / "metadata.csv").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for name in ("images", "segmentations"):
        if not (out / name).exists():
            os.symlink((full / name).resolve(), out / name)
    with open(full / "metadata.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        rows, kept = list(reader), 0
        fields = reader.fieldnames or []
    with open(out / "metadata.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fields)
        writer.writeheader()
        for row in rows:
            if row["split"] == "0":
                if kept >= n_train:
                    continue
                kept += 1
            writer.writerow(row)
    return out


def measure_child(data_dir: Path, run_dir: Path, mode: str, steps: int, workers: int,
                  detector_epochs: int) -> dict[str, Any]:
    """:func:`child` in a fresh process (one thread), its figures read from the last line it prints."""
    cmd = [sys.executable, "-c", CHILD.format(benchmarks=str(BENCHMARKS)), str(data_dir), str(run_dir), mode,
           str(steps), str(workers), str(detector_epochs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode:
        raise RuntimeError(f"memory child ({mode}, {data_dir}) failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@register
class Memory(Study):
    name = "memory"
    title = "Bounded memory with --stream"
    about = ("peak RSS of separation + 20 training steps, streamed from disk, at 5,000 and 20,000 synthetic train "
             "images (each in a fresh child process), and the in-memory path for contrast")
    depends = MEMORY_CODE
    sizes = [5000, 20000]
    quick_sizes = [500, 2000]
    steps = 20  # training steps of 128 composites
    workers = 2  # separation worker processes
    detector_epochs = 10  # memory is the point
    memory_path = True  # also measure the in-memory path

    def measure(self, ctx: Context) -> Measured:
        sizes = self.quick_sizes if ctx.quick else self.sizes
        root = ctx.out.resolve()
        full = synthetic_data("hard", n_train=max(sizes), n_val=200, n_test=200)
        results = []
        for n in sizes:
            data_dir = full if n == max(sizes) else subset(full, n, root)
            run_dir = root / f"run_n{n}"
            shutil.rmtree(run_dir, ignore_errors=True)  # separate from scratch: that is what is measured
            for mode in ("stream", "memory") if self.memory_path else ("stream",):
                results.append(measure_child(data_dir, run_dir, mode, self.steps, self.workers, self.detector_epochs))
        rows = [[r["mode"], str(r["n_train"]), f"{r['peak_rss_mb']:.0f} MB", f"{r['marks_mb']['load']:.0f} MB",
                 f"{r['marks_mb']['detector+separation']:.0f} MB", f"{r['worker_peak_rss_mb']:.0f} MB",
                 f"{r['tree_peak_rss_mb']:.0f} MB", f"{r['seconds']['detector+separation']:.0f}"] for r in results]
        notes: list[str] = []
        values: dict[str, str] = {}
        stream = [r for r in results if r["mode"] == "stream"]
        if len(stream) >= 2:
            lo, hi = stream[0], stream[-1]
            ratio = hi["peak_rss_mb"] / lo["peak_rss_mb"]
            top, tree = max(r["peak_rss_mb"] for r in stream), max(r["tree_peak_rss_mb"] for r in stream)
            notes.append(f"streamed peak RSS ratio, {hi['n_train']} vs {lo['n_train']} images: {ratio:.2f} (target ~1); "
                         f"largest: {top:.0f} MB main process, {tree:.0f} MB all processes together (target < 2 GB)")
            values.update(stream_ratio=f"{ratio:.2f}", stream_peak_mb=f"{top:.0f}", stream_tree_peak_mb=f"{tree:.0f}")
        memory = [r for r in results if r["mode"] == "memory"]
        if len(memory) >= 2:
            ratio = memory[-1]["peak_rss_mb"] / memory[0]["peak_rss_mb"]
            notes.append(f"in-memory peak RSS ratio (separation cached): {ratio:.2f}")
            values["memory_ratio"] = f"{ratio:.2f}"
        notes.append("the in-memory path runs on the streamed run's folder: its separation is cached, so its figure "
                     "excludes the separation work; all processes: RSS summed at one instant, sampled every 0.2 s")
        table = Table(["path", "train images", "peak RSS, main process", "after load", "after separation",
                       "largest separation worker", "all processes at once (peak)", "detector + separation s"], rows,
                      f"Peak RSS of load + detector + separation ({self.workers} workers) + {self.steps} training "
                      f"steps of 128 composites, hard synthetic set at 64 px, one thread per process", notes)
        return Measured({"main": table}, values)
