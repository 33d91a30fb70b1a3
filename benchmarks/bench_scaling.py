"""Separation scaling: images/s with 1 vs 2 local workers, Ray vs local overhead on the same
job, per-image stage costs at 64 and 224 px, and an extrapolation on paper to ImageNet (1.28 M images
at 224 px) on N machines.

    python benchmarks/bench_scaling.py                 # 2000 train images at 64 px (the synthetic benchmark)
    python benchmarks/bench_scaling.py --n-train 500   # quicker

Every run separates the same job from scratch (learned masks: one detector, fitted once and cached)
into a fresh folder; all runs must write identical files, which is checked. Timings are wall-clock
seconds of ``run_job`` and are reported as ratios measured in this one run, as machines are noisy
(the load average is printed: other processes on a shared machine depress the 2-worker speed-up).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import add_pipeline_args, pipeline_options, synthetic

from autobackswap.data.images import read_rgb, resize_rgb
from autobackswap.data.splits import load_experiment_data
from autobackswap.detect.detector import Detector
from autobackswap.io import encode_png
from autobackswap.pipeline import PipelineConfig, fit_detector
from autobackswap.separate.engines import SeparationJob, run_job
from autobackswap.separate.inpaint import create_inpainter
from autobackswap.separate.masks import create_refiner, decontaminate, hole_mask

IMAGENET = 1_280_000


def digest(folder: Path) -> str:
    h = hashlib.sha1()
    for sub in ("fg", "bg"):
        for p in sorted((folder / sub).iterdir()):
            h.update(p.read_bytes())
    return h.hexdigest()


def timed_job(job: SeparationJob, engine: str, workers: int) -> float:
    shutil.rmtree(job.out_dir, ignore_errors=True)
    t0 = time.perf_counter()
    run_job(job, engine, workers)
    return time.perf_counter() - t0


def stage_costs(size: int, n: int, tmp: Path, pipeline: PipelineConfig) -> dict[str, float]:
    """Milliseconds per image of each separation stage, serial, one thread, at ``size`` px."""
    import torch

    torch.set_num_threads(1)
    data_dir = synthetic(tmp / "costs", n_train=n, n_val=4, n_test=8, image_size=size)
    data = load_experiment_data(data_dir, size, tmp / f"run{size}")
    records = data.train.records
    k = min(16, n)  # an untrained-quality detector: only its inference cost matters here
    det = Detector(grid=16, width=16, epochs=1, seed=0).fit(data.train.images[:k], np.stack([np.eye(16, dtype=bool)] * k))
    cfg = pipeline.separation_config(0)
    refine, inpaint = create_refiner(cfg.refine), create_inpainter(cfg.inpainter)
    seg = data.train.segmentations
    ms: dict[str, float] = {}

    def clock(name: str, fn: Any) -> Any:
        t0 = time.perf_counter()
        out = fn()
        ms[name] = (time.perf_counter() - t0) / n * 1000
        return out

    clock("decode + resize", lambda: [resize_rgb(read_rgb(r.path), size) for r in records])
    images = data.train.images
    clock("detector inference (batch 256)", lambda: det.predict_proba(images, batch_size=256))
    # Masks from the ground truth's patch grid, so the hole has a realistic size whatever the detector.
    g = seg.reshape(n, 16, size // 16, 16, size // 16).mean((2, 4)) / 255.0
    alphas = clock("mask refinement (guided)", lambda: [refine(images[i], g[i], 0.5) for i in range(n)])
    holes = [hole_mask(g[i], cfg.t_loose, (size, size), 1) | (alphas[i] > 0) for i in range(n)]
    rng = np.random.default_rng(0)
    bgs = clock(f"inpainting ({cfg.inpainter})", lambda: [inpaint(images[i], holes[i], rng) for i in range(n)])
    fgs = clock("edge decontamination", lambda: [decontaminate(images[i], alphas[i], bgs[i]) for i in range(n)])
    pngs = clock("PNG encoding (fg + bg)", lambda: [(encode_png(np.dstack([fgs[i], np.round(alphas[i] * 255)
                                                                          .astype(np.uint8)])), encode_png(bgs[i]))
                                                   for i in range(n)])
    ms["total"] = sum(ms.values())
    ms["_hole_fraction"] = float(np.mean([h.mean() for h in holes]))
    ms["_bytes_per_image"] = float(np.mean([len(a) + len(b) for a, b in pngs]))
    return ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--cost-images", type=int, default=48, help="images for the per-stage costs (default 48)")
    ap.add_argument("--cores-per-machine", type=int, default=16, help="assumed for the extrapolation (default 16)")
    ap.add_argument("--no-ray", action="store_true")
    add_pipeline_args(ap)
    args = ap.parse_args()
    pipeline = PipelineConfig.from_options(pipeline_options(args))
    logging.basicConfig(level=logging.WARNING)
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = load_experiment_data(synthetic(n_train=args.n_train), 64, tmp / "run")
        det, info = fit_detector(data, pipeline, seed=0, cache_dir=Path("runs/bench/scaling/detectors"))
        recs = data.train.records
        n = len(recs)

        def job(name: str) -> SeparationJob:
            return SeparationJob(tmp / name, pipeline.separation_config(0), [str(r.path) for r in recs],
                                 [r.row for r in recs], 64, detector=info["detector"], images=data.train.images)

        t1 = timed_job(job("w1"), "local", 1)
        t2 = timed_job(job("w2"), "local", 2)
        same = digest(tmp / "w1") == digest(tmp / "w2")
        print(f"\nseparation of {n} images at 64 px (detector inference + guided refinement + telea + PNGs):")
        print("| engine | workers | seconds | images/s |\n|---|---|---|---|")
        print(f"| local | 1 | {t1:.1f} | {n / t1:.0f} |")
        print(f"| local | 2 | {t2:.1f} | {n / t2:.0f} |")
        speedup = t1 / t2
        ray_ratio = None
        if not args.no_ray:
            import ray

            t0 = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
            ray_start = time.perf_counter() - t0
            tr = timed_job(job("ray"), "ray", 2)
            ray.shutdown()
            same = same and digest(tmp / "ray") == digest(tmp / "w1")
            ray_ratio = tr / t2
            print(f"| ray (local instance, 2 CPUs) | 2 | {tr:.1f} (+ {ray_start:.1f} to start Ray) | {n / tr:.0f} |")
        print(f"\n1 -> 2 workers speed-up: {speedup:.2f}x (parallel efficiency {speedup / 2:.2f}); "
              f"identical files from every run: {same}")
        if ray_ratio is not None:
            print(f"Ray / local time on the same job, both 2 CPUs, Ray start excluded: {ray_ratio:.2f}")
        print(f"load average after: {os.getloadavg()[0]:.1f}")

        print("\nper-image cost of each stage, one core, serial (ms):")
        costs = {s: stage_costs(s, args.cost_images, tmp, pipeline) for s in (64, 224)}
        print("| stage | 64 px | 224 px |\n|---|---|---|")
        for stage in costs[64]:
            if not stage.startswith("_"):
                print(f"| {stage} | {costs[64][stage]:.2f} | {costs[224][stage]:.2f} |")
        c = costs[224]
        print(f"(224 px: hole = {c['_hole_fraction']:.0%} of the image, {c['_bytes_per_image'] / 1024:.0f} KiB of PNG "
              f"per image)")

        eff = min(1.0, speedup / 2)
        overhead = max(1.0, ray_ratio or 1.0)
        cpu_hours = IMAGENET * c["total"] / 1000 / 3600
        print(f"\nextrapolation to ImageNet ({IMAGENET:,} images at 224 px), Ray engine:")
        print(f"  CPU time = {IMAGENET:,} x {c['total']:.1f} ms = {cpu_hours:.0f} core-hours")
        print(f"  wall = core-hours / (machines x {args.cores_per_machine} cores x efficiency {eff:.2f}) "
              f"x Ray overhead {overhead:.2f}")
        print("| machines | cores | wall time | images/s | output write rate |\n|---|---|---|---|---|")
        total_tb = IMAGENET * c["_bytes_per_image"] / 1e12
        for machines in (1, 4, 16, 64):
            cores = machines * args.cores_per_machine
            seconds = cpu_hours * 3600 / (cores * eff) * overhead
            wall = f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"
            print(f"| {machines} | {cores} | {wall} | {IMAGENET / seconds:.0f} | {total_tb * 1e6 / seconds:.1f} MB/s |")
        print(f"""
assumptions: the measured one-core per-image cost at 224 px ({c['total']:.1f} ms, telea, guided refinement, the
synthetic set's hole size) holds on every core; the parallel efficiency measured here from 1 to 2 workers
({eff:.2f}) holds per core at any scale (separation is embarrassingly parallel: no communication between
images); Ray's overhead is the ratio measured here on one machine ({overhead:.2f}); decoding the original
JPEGs costs like decoding the synthetic PNGs (real photos at full size cost more to decode: add it);
detector inference runs on CPU cores (a GPU actor would remove that share); the shared file system
absorbs the output ({total_tb:.2f} TB of PNGs) at the rate in the table; start-up (Ray, detector
loading, {IMAGENET // 256:,} manifest chunks) is negligible against hours.""")


if __name__ == "__main__":
    main()
