"""Bounded memory: peak RSS of separation + a few AutoBackSwap training steps, streamed from
disk (``--stream``), at two dataset sizes. Target: under 2 GB, and the same at both sizes (ratio ~1).

    python benchmarks/bench_memory.py                        # 5,000 and 20,000 train images at 64 px
    python benchmarks/bench_memory.py --sizes 1000,4000      # quicker

One synthetic set of max(sizes) training images is generated once (a few minutes for 20,000); the
smaller sets reuse its images through their own metadata.csv. Each measurement runs in a fresh child
process: ``load_experiment_data(..., stream=True)`` (images decoded once into an on-disk cache) -> ``build_banks``
(detector fit on 200 labels, separation of every training image on the local engine with
``--workers`` processes, swap banks packed on disk) -> ``--steps`` training steps of the classifier on
composites read per batch -> one validation pass. It reports the child's peak RSS (VmHWM) after each
stage, the largest separation worker's RSS, and the peak of all processes' RSS summed (sampled every
0.2 s; shared libraries are counted once per process, so this overstates). For contrast, the in-memory path
(``load_experiment_data`` + ``load_banks``) is measured on the same run folder (its separation is
already cached, so its figure *excludes* the separation work).
"""

from __future__ import annotations

import argparse
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

from _common import synthetic


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
    banks = build_banks(data, PipelineConfig.from_options({"detector_epochs": detector_epochs, "workers": workers}), seed=0)
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


def measure(data_dir: Path, run_dir: Path, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", str(data_dir), str(run_dir), mode, "--steps", str(args.steps),
           "--workers", str(args.workers), "--detector-epochs", str(args.detector_epochs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode:
        sys.exit(f"child failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="5000,20000", help="training-set sizes (default 5000,20000)")
    ap.add_argument("--steps", type=int, default=20, help="training steps of 128 composites (default 20)")
    ap.add_argument("--workers", type=int, default=2, help="separation worker processes (default 2)")
    ap.add_argument("--detector-epochs", type=int, default=10, help="detector epochs (default 10; memory is the point)")
    ap.add_argument("--root", default="runs/bench/memory")
    ap.add_argument("--no-memory-path", action="store_true", help="skip the in-memory comparison")
    ap.add_argument("--child", nargs=3, metavar=("DATA", "RUN", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        import logging

        logging.basicConfig(level=logging.WARNING)
        print(json.dumps(child(*args.child, args.steps, args.workers, args.detector_epochs)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    root = Path(args.root)
    t0 = time.perf_counter()
    full = synthetic(root / "data", n_train=max(sizes), n_val=200, n_test=200, image_size=64)
    print(f"synthetic set of {max(sizes)} train images: {full} ({time.perf_counter() - t0:.0f}s)")
    results = []
    for n in sizes:
        data_dir = full if n == max(sizes) else subset(full, n, root)
        run_dir = root / f"run_n{n}"
        shutil.rmtree(run_dir, ignore_errors=True)  # separate from scratch: that is what is measured
        for mode in ("stream", "memory") if not args.no_memory_path else ("stream",):
            r = measure(data_dir, run_dir, mode, args)
            results.append(r)
            print(f"{mode:6s} n={n:6d}: peak RSS {r['peak_rss_mb']:.0f} MB (after load {r['marks_mb']['load']:.0f}, "
                  f"after separation {r['marks_mb']['detector+separation']:.0f}); largest worker "
                  f"{r['worker_peak_rss_mb']:.0f} MB; seconds {json.dumps({k: round(v, 1) for k, v in r['seconds'].items()})}",
                  flush=True)
    print("\n| path | train images | peak RSS, main process | largest separation worker | "
          "all processes at once (peak) | detector + separation s |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['mode']} | {r['n_train']} | {r['peak_rss_mb']:.0f} MB | {r['worker_peak_rss_mb']:.0f} MB | "
              f"{r['tree_peak_rss_mb']:.0f} MB | {r['seconds']['detector+separation']:.0f} |")
    stream = [r for r in results if r["mode"] == "stream"]
    if len(stream) >= 2:
        lo, hi = stream[0], stream[-1]
        print(f"\nstreamed peak RSS ratio, {hi['n_train']} vs {lo['n_train']} images: "
              f"{hi['peak_rss_mb'] / lo['peak_rss_mb']:.2f} (target ~1); largest: "
              f"{max(r['peak_rss_mb'] for r in stream):.0f} MB main process, "
              f"{max(r['tree_peak_rss_mb'] for r in stream):.0f} MB all processes together (target < 2 GB)")
    memory = [r for r in results if r["mode"] == "memory"]
    if len(memory) >= 2:
        print(f"in-memory peak RSS ratio (separation cached): {memory[-1]['peak_rss_mb'] / memory[0]['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
