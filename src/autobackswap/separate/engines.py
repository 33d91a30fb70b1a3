"""Separation engines, registered by name: ``local`` (a process pool) and ``ray`` (a Ray Data pipeline).

Both run the same :class:`SeparationJob` and write the same cache files, **byte for byte**, as the
single-process local engine:

* The train split is cut into fixed chunks ``[k*C, (k+1)*C)`` (``C = chunk_size``, 256). Detector
  inference runs over one whole chunk at a time, so every image sees the same batch, whichever
  engine, worker or resumed run computes it (a convolution's floats can depend on the batch it runs
  in).
* Each image's randomness is the ``separation`` stream of :mod:`autobackswap.seeding` with its index and PNG encoding is
  deterministic, so the files do not depend on the order in which images are processed.
* Resuming: an image is done when both of its files exist (:func:`~.run.is_done`, written
  atomically, foreground last). Chunks with nothing left are skipped; a chunk with some work left
  is inferred whole again and only its pending images are separated.
* Confidence (learned masks from a detector only): each chunk's inference also predicts the flipped
  images and writes the chunk's rows of the separation confidence
  (:mod:`autobackswap.detect.confidence`) to ``OUT/confidence/<start>.csv``; at the end, chunks that
  were finished in an earlier run are scored, and every row is merged into ``OUT/confidence.csv``
  (least confident first; ``summary.json`` lists the first ten). Precomputed grids and the oracle
  have no detector, so no confidence.

``local`` reads each chunk's images in the parent (from the in-memory array, the on-disk image
cache, or by decoding the files), runs the detector there and hands slices of the chunk to a pool
of ``spawn``-ed worker processes that refine masks, inpaint and write the PNGs; a bounded number of
tasks is in flight, so memory does not grow with the dataset. With one worker (the default for
small jobs) everything runs in this process.

``ray`` runs the same stage as a Ray Data pipeline: the manifest (one row per pending chunk: file
paths and indices) -> image decoding tasks -> detector inference in an actor pool (each actor loads
the detector checkpoint once) -> one row per pending image -> separation tasks that write the PNGs.
It connects to ``address`` (an existing cluster; the run folder and the dataset must be on storage
every node sees, and ``autobackswap`` installed on every node) or starts a local instance. Outputs are
identical to ``local`` on the same CPU type (floating point may differ across instruction sets).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import math
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .. import seeding
from ..data.images import decode_images, decode_masks
from ..data.stream import DiskArray, write_npy
from ..detect.confidence import COLUMNS as CONFIDENCE_COLUMNS
from ..detect.confidence import CONFIDENCE_FILE, read_confidence, separation_confidence, write_confidence
from ..detect.detector import Detector
from ..errors import AutoBackSwapError
from ..io import remove_stale_temps, write_json, write_png
from ..progress import progress
from ..registry import Registry
from .inpaint import create_inpainter
from .masks import create_refiner
from .run import (
    STATUSES,
    SeparationConfig,
    SeparationResult,
    discard_damaged,
    is_done,
    masks_from_grid,
    masks_from_segmentation,
    read_alpha,
    read_bank_rows,
    separate_one,
    status_of,
)

log = logging.getLogger(__name__)

TASK_SIZE = 32  # images per worker task
MIN_IMAGES_PER_WORKER = 256  # below this, an automatic worker count stays in this process
LEAST_CONFIDENT = 10  # images listed in summary.json


@dataclass
class SeparationJob:
    """Everything the engines need: what to separate, with which masks, and where to write.

    ``paths`` / ``rows`` are the manifest: one source image (and its ``metadata.csv`` line, for error
    messages) per train index. Masks come from a ``detector`` checkpoint or precomputed p(foreground)
    ``grids`` (N, G, G) (learned), or from ``segmentations`` files or decoded ``segmentation_masks``
    (the oracle). ``images`` optionally holds the already-decoded NHWC uint8
    images (an array or a :class:`~autobackswap.data.stream.DiskArray`); the local engine reads its
    chunks from it instead of decoding the files again; ``segmentation_masks`` likewise holds the
    decoded ground-truth masks, (N, H, W) uint8.
    """

    out_dir: Path
    cfg: SeparationConfig
    paths: list[str]
    rows: list[int | None]
    image_size: int
    detector: str | None = None
    grids: Any = None
    segmentations: list[str] | None = None
    images: Any = None
    segmentation_masks: Any = None
    extra_config: dict[str, Any] = field(default_factory=dict)
    chunk_size: int = 256
    device: str = "auto"  # where the detector runs (execution only: the files do not record it)

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        learned = self.detector is not None or self.grids is not None
        oracle = self.segmentations is not None or self.segmentation_masks is not None
        if learned == oracle or (self.detector is not None and self.grids is not None):
            raise ValueError("a separation job needs exactly one mask source: a detector or grids (learned masks), "
                             "or segmentations (oracle)")
        if len(self.rows) != len(self.paths):
            raise ValueError(f"{len(self.paths)} image paths but {len(self.rows)} rows")
        if self.segmentations is not None and len(self.segmentations) != len(self.paths):
            raise ValueError(f"{len(self.paths)} images but {len(self.segmentations)} segmentations")
        if self.images is not None and len(self.images) != len(self.paths):
            raise ValueError(f"{len(self.paths)} image paths but {len(self.images)} decoded images")
        if self.chunk_size < 1:
            raise ValueError("chunk_size must be positive")

    @property
    def n(self) -> int:
        return len(self.paths)

    @property
    def kind(self) -> str:
        return "grid" if self.detector is not None or self.grids is not None else "segmentation"

    def pending(self) -> list[tuple[int, int, list[int]]]:
        """``(start, stop, pending indices)`` for every chunk with work left; a done image whose files do
        not decode (damaged) is removed and counts as pending."""
        out = []
        for start in range(0, self.n, self.chunk_size):
            stop = min(self.n, start + self.chunk_size)
            todo = discard_damaged(self.out_dir, list(range(start, stop)))
            if todo:
                out.append((start, stop, todo))
        return out


# ----------------------------------------------------------------------------- shared steps
def prepare(job: SeparationJob) -> list[tuple[int, int, list[int]]]:
    """Write ``config.json`` (as :func:`~.run.separate` does), remove the temp files a killed run left,
    and return the pending chunks (damaged files are redone)."""
    stale = sum(remove_stale_temps(job.out_dir / sub) for sub in ("fg", "bg", "banks", "."))
    if stale:
        log.info("separation: removed %d temporary files a killed run left in %s", stale, job.out_dir)
    source = "detector" if job.kind == "grid" else "ground_truth"
    write_json(job.out_dir / "config.json", {**asdict(job.cfg), **job.extra_config, "n": job.n, "source": source})
    chunks = job.pending()
    left = sum(len(c[2]) for c in chunks)
    if left < job.n:
        log.info("separation: %d of %d images already done in %s", job.n - left, job.n, job.out_dir)
    return chunks


def finish(job: SeparationJob) -> SeparationResult:
    """Count statuses over every image's cut-out and write ``summary.json`` (with a detector: the
    least confident images first, from ``confidence.csv``)."""
    counts = {s: 0 for s in STATUSES}
    for i in range(job.n):
        counts[status_of(read_alpha(job.out_dir, i) / 255.0)] += 1
    summary: dict[str, Any] = {"n": job.n, "counts": counts}
    if job.detector is not None:
        cols = read_confidence(job.out_dir / CONFIDENCE_FILE)
        summary["confidence_mean"] = round(float(cols["confidence"].mean()), 6) if job.n else None
        summary["least_confident"] = [{"index": int(i), "confidence": float(c)}
                                      for i, c in zip(cols["index"][:LEAST_CONFIDENT], cols["confidence"][:LEAST_CONFIDENT], strict=True)]
    write_json(job.out_dir / "summary.json", summary)
    if counts["no_fg"] or counts["all_fg"]:
        log.warning("separation: %d images with no foreground and %d all foreground keep their original pixels",
                    counts["no_fg"], counts["all_fg"])
    return SeparationResult(job.out_dir, counts, job.n)


def read_result(job: SeparationJob) -> SeparationResult:
    """The result of a finished job, read without writing anything (torchrun ranks other than 0)."""
    missing = [i for i in range(job.n) if not is_done(job.out_dir, i)]
    summary = job.out_dir / "summary.json"
    if missing or not summary.is_file():
        raise AutoBackSwapError(f"{job.out_dir}: separation is not finished ({len(missing)} images left)")
    return SeparationResult(job.out_dir, json.loads(summary.read_text())["counts"], job.n)


def _load_detector(path: str, device: str = "auto") -> Any:
    return _load_detector_version(path, os.stat(path).st_mtime_ns, device)


@lru_cache(maxsize=4)
def _load_detector_version(path: str, mtime_ns: int, device: str) -> Any:
    return Detector.load(path, device=device)


def chunk_masks(job: SeparationJob, images: np.ndarray, start: int, stop: int) -> np.ndarray:
    """The chunk's masks: p(foreground) grids from the detector (one batch, on the job's device; the
    chunk's confidence file is written on the way), or GT masks."""
    if job.kind == "grid":
        assert job.detector is not None
        return predict_chunk(job.detector, images, job.chunk_size, job.out_dir, start, job.cfg.t_tight, job.device)
    assert job.segmentations is not None
    return decode_masks(job.segmentations[start:stop], job.rows[start:stop], job.image_size)


def predict_chunk(detector: str, images: np.ndarray, chunk_size: int, out_dir: str | Path, start: int,
                  t_tight: float, device: str = "auto") -> np.ndarray:
    """p(foreground) grids of one chunk (one batch), and its rows of the separation confidence
    (:mod:`~autobackswap.detect.confidence`: the flipped images are predicted in one batch too),
    written to ``OUT/confidence/<start>.csv``. The detector runs on ``device``."""
    det = _load_detector(detector, device)
    batch = max(chunk_size, len(images))
    # each view predicted once: with flip TTA, p_fg is their mean; the flip agreement compares the raw views
    p_fg, p_raw, p_flip = det.predict_views(images, batch_size=batch)
    parts = separation_confidence(p_raw, p_flip, t_tight, getattr(det, "fg_area_range_", None), p_used=p_fg)
    write_confidence(Path(out_dir) / "confidence" / f"{start:06d}.csv", np.arange(start, start + len(images)), parts)
    return p_fg


def read_chunk_images(job: SeparationJob, start: int, stop: int) -> np.ndarray:
    """Images ``start..stop-1``: from the decoded array when the job has one, else decoded from the files."""
    if job.images is not None:
        return np.asarray(job.images[start:stop])
    return decode_images(job.paths[start:stop], job.rows[start:stop], job.image_size)


def complete_confidence(job: SeparationJob) -> None:
    """With a detector: score the chunks no engine run scored (done in an earlier run), then merge
    every chunk's rows into ``OUT/confidence.csv``, least confident first."""
    if job.detector is None:
        return
    folder = job.out_dir / "confidence"
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, job.n, job.chunk_size):
        path = folder / f"{start:06d}.csv"
        if not path.is_file():
            stop = min(job.n, start + job.chunk_size)
            predict_chunk(job.detector, read_chunk_images(job, start, stop), job.chunk_size, job.out_dir, start,
                          job.cfg.t_tight, job.device)
        parts.append(read_confidence(path))
    merged = {c: np.concatenate([p[c] for p in parts]) if parts else np.zeros(0) for c in CONFIDENCE_COLUMNS}
    write_confidence(job.out_dir / CONFIDENCE_FILE, merged["index"], merged)


@lru_cache(maxsize=8)
def _tools(inpainter: str, refine: str) -> tuple[Callable[..., np.ndarray], Callable[..., np.ndarray]]:
    return create_inpainter(inpainter), create_refiner(refine)


def separate_items(out_dir: str | Path, cfg: SeparationConfig, kind: str, indices: Sequence[int],
                   images: np.ndarray, masks: np.ndarray) -> list[str]:
    """Separate and write the given images (the unit of work of every engine); their statuses."""
    out = Path(out_dir)
    inpaint, refine = _tools(cfg.inpainter, cfg.refine)
    statuses = []
    for k, i in enumerate(indices):
        i = int(i)
        image = np.ascontiguousarray(images[k])
        if kind == "grid":
            alpha, hole = masks_from_grid(image, masks[k], cfg, refine)
        else:
            alpha, hole = masks_from_segmentation(np.ascontiguousarray(masks[k]))
        fg, bg, status = separate_one(image, alpha, hole, cfg, inpaint, seeding.rng(cfg.seed, "separation", i))
        # no fsync per file: every resume decodes these files and redoes a damaged one (study: run.py durability)
        write_png(out / "bg" / f"{i:06d}.png", bg, durable=False)
        write_png(out / "fg" / f"{i:06d}.png", fg, durable=False)  # written last: its existence marks the image done
        statuses.append(status)
    return statuses


# ----------------------------------------------------------------------------- registry
class Engine:
    """Runs a :class:`SeparationJob`: ``run`` writes every pending image's files."""

    def __init__(self, workers: int = 0, address: str = "", **_: Any) -> None:
        self.workers = int(workers or 0)
        self.address = address or ""

    def run(self, job: SeparationJob) -> SeparationResult:
        chunks = prepare(job)
        if chunks:
            self.execute(job, chunks)
        complete_confidence(job)
        return finish(job)

    def execute(self, job: SeparationJob, chunks: list[tuple[int, int, list[int]]]) -> None:
        raise NotImplementedError


ENGINES: Registry[type[Engine]] = Registry("separation engine")


def create_engine(name: str, workers: int = 0, address: str = "") -> Engine:
    return ENGINES.get(name)(workers=workers, address=address)


def run_job(job: SeparationJob, engine: str = "local", workers: int = 0, address: str = "") -> SeparationResult:
    """Run ``job`` on the named engine (``local`` or ``ray``)."""
    return create_engine(engine, workers, address).run(job)


def separate(images: np.ndarray, out_dir: str | Path, cfg: SeparationConfig, p_fg: np.ndarray | None = None,
             segmentations: np.ndarray | None = None, extra_config: dict[str, Any] | None = None,
             workers: int = 1) -> SeparationResult:
    """Separate in-memory NHWC uint8 ``images`` with ``p_fg`` grids (N, G, G) or ground-truth
    ``segmentations`` (N, H, W) uint8 on the local engine (``workers`` processes). Resumes."""
    if (p_fg is None) == (segmentations is None):
        raise ValueError("pass exactly one of p_fg (learned masks) or segmentations (oracle)")
    n = len(images)
    job = SeparationJob(Path(out_dir), cfg, [f"<image {i}>" for i in range(n)], [None] * n, int(images.shape[1]),
                        grids=p_fg, segmentation_masks=segmentations, images=images, extra_config=extra_config or {})
    return run_job(job, "local", workers)


def _parts(todo: list[int], size: int) -> Iterator[list[int]]:
    for s in range(0, len(todo), size):
        yield todo[s : s + size]


PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCHDOG_SECONDS = 0.5  # how often a worker checks that its parent is alive (where prctl is missing)


def exit_with_parent(parent: int) -> None:
    """End this process as soon as process ``parent`` (the one that started it) dies, even by ``kill -9``.

    On Linux the kernel sends SIGKILL on the parent's death (``prctl(PR_SET_PDEATHSIG)``); everywhere a
    daemon thread polls ``os.getppid()``, which changes when the parent dies (the orphan is adopted), so
    no worker finishes its in-flight images or idles on after the run is gone."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the line above ran
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCHDOG_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _init_worker(parent: int | None = None) -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already
    torch.set_num_threads(1)
    if parent is not None:
        exit_with_parent(parent)


@ENGINES.register("local")
class LocalEngine(Engine):
    """A process pool on this machine (``workers``; 0 = every core, in this process for small jobs)."""

    def resolve_workers(self, n_todo: int) -> int:
        if self.workers > 0:
            return max(1, min(self.workers, math.ceil(n_todo / TASK_SIZE)))
        return max(1, min(os.cpu_count() or 1, n_todo // MIN_IMAGES_PER_WORKER))

    def read_chunk(self, job: SeparationJob, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        images = read_chunk_images(job, start, stop)
        if job.segmentation_masks is not None:
            return images, np.asarray(job.segmentation_masks[start:stop])
        if job.grids is not None:
            return images, np.asarray(job.grids[start:stop])
        return images, chunk_masks(job, images, start, stop)

    def execute(self, job: SeparationJob, chunks: list[tuple[int, int, list[int]]]) -> None:
        n_todo = sum(len(c[2]) for c in chunks)
        workers = self.resolve_workers(n_todo)
        log.info("separation: %d images on the local engine, %d worker process%s", n_todo, workers,
                 "" if workers == 1 else "es")
        bar = progress(total=n_todo, desc="separating")
        try:
            if workers == 1:
                for start, stop, todo in chunks:
                    images, masks = self.read_chunk(job, start, stop)
                    local = [i - start for i in todo]
                    separate_items(job.out_dir, job.cfg, job.kind, todo, images[local], masks[local])
                    bar.update(len(todo))
            else:
                self._pool(job, chunks, workers, bar)
        finally:
            bar.close()

    def _pool(self, job: SeparationJob, chunks: list[tuple[int, int, list[int]]], workers: int, bar: Any) -> None:
        pending: set[Future[list[str]]] = set()

        def drain(limit: int) -> None:
            nonlocal pending
            while len(pending) > limit:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    bar.update(len(future.result()))  # re-raises a worker's exception here

        pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                   initargs=(os.getpid(),))
        try:
            for start, stop, todo in chunks:
                images, masks = self.read_chunk(job, start, stop)  # overlaps with the workers' inpainting
                for part in _parts(todo, TASK_SIZE):
                    drain(4 * workers - 1)  # bounded: a few tasks per worker in flight
                    local = [i - start for i in part]
                    pending.add(pool.submit(separate_items, str(job.out_dir), job.cfg, job.kind, part,
                                            images[local], masks[local]))
            drain(0)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


# ----------------------------------------------------------------------------- ray
def _ray_read(batch: dict[str, Any], size: int) -> dict[str, Any]:
    """Stage 1 (tasks): decode one chunk's images (and ground-truth masks for the oracle)."""
    paths = [str(p) for p in batch["paths"][0]]
    rows = [int(r) for r in batch["rows"][0]]
    images = decode_images(paths, rows, size)
    out = {"start": batch["start"], "todo": batch["todo"], "images": images[None]}
    if "segs" in batch:
        out["masks"] = decode_masks([str(p) for p in batch["segs"][0]], rows, size)[None]
    return out


class _RayDetector:
    """Stage 2 (actor pool): p(foreground) grids for a whole chunk in one batch."""

    def __init__(self, checkpoint: str, chunk_size: int, out_dir: str, t_tight: float, device: str = "auto") -> None:
        _init_worker()
        self.checkpoint = checkpoint
        self.device = device
        _load_detector(checkpoint, device)
        self.chunk_size = chunk_size
        self.out_dir = out_dir
        self.t_tight = t_tight

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        images = batch["images"][0]
        p_fg = predict_chunk(self.checkpoint, images, self.chunk_size, self.out_dir, int(batch["start"][0]),
                             self.t_tight, self.device)
        return {**batch, "masks": p_fg[None]}


def _ray_explode(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Chunk row -> one row per pending image."""
    start = int(row["start"])
    return [{"index": int(i), "image": row["images"][int(i) - start], "mask": row["masks"][int(i) - start]}
            for i in row["todo"]]


def _ray_separate(batch: dict[str, Any], out_dir: str, cfg: SeparationConfig, kind: str) -> dict[str, Any]:
    """Stage 3 (tasks): separate and write a batch of images."""
    _init_worker()
    statuses = separate_items(out_dir, cfg, kind, batch["index"].tolist(), batch["image"], batch["mask"])
    return {"index": batch["index"], "status": np.array(statuses)}


@ENGINES.register("ray")
class RayEngine(Engine):
    """A Ray Data pipeline on the cluster at ``address``, or on a local instance (``workers`` CPUs)."""

    def execute(self, job: SeparationJob, chunks: list[tuple[int, int, list[int]]]) -> None:
        try:
            import ray
            import ray.data
        except ImportError:
            raise AutoBackSwapError("the ray engine needs Ray: pip install 'autobackswap[ray]' "
                                    "(or pip install 'ray[data]')") from None
        started = not ray.is_initialized()
        if started:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                ray.init(num_cpus=self.workers or None, **kwargs)
        try:
            self._run(ray, job, chunks)
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray: Any, job: SeparationJob, chunks: list[tuple[int, int, list[int]]]) -> None:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.enable_operator_progress_bars = False
        manifest = []
        for start, stop, todo in chunks:
            row: dict[str, Any] = {"start": start, "todo": todo, "paths": [str(p) for p in job.paths[start:stop]],
                                   "rows": [-1 if r is None else int(r) for r in job.rows[start:stop]]}
            if job.segmentations is not None:
                row["segs"] = [str(p) for p in job.segmentations[start:stop]]
            manifest.append(row)
        n_todo = sum(len(c[2]) for c in chunks)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        log.info("separation: %d images on Ray (%d CPUs, %d chunks)", n_todo, cpus, len(manifest))
        ds = ray.data.from_items(manifest, override_num_blocks=len(manifest))
        ds = ds.map_batches(_ray_read, batch_size=1, fn_kwargs={"size": job.image_size})
        if job.detector is not None:
            # An actor holds its checkpoint; it reserves no CPU because inference is a small share of
            # the work and the separation tasks should keep every core busy.
            actors = max(1, min(len(manifest), math.ceil(cpus / 8)))
            ds = ds.map_batches(_RayDetector, batch_size=1, fn_constructor_args=(str(job.detector), job.chunk_size,
                                                                          str(job.out_dir), job.cfg.t_tight, job.device),
                                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors), num_cpus=0)
        ds = ds.flat_map(_ray_explode)
        ds = ds.map_batches(_ray_separate, batch_size=TASK_SIZE,
                            fn_kwargs={"out_dir": str(job.out_dir), "cfg": job.cfg, "kind": job.kind})
        with progress(total=n_todo, desc="separating (ray)") as bar:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                bar.update(len(batch["index"]))


# ----------------------------------------------------------------------------- banks on disk
def pack_banks(out_dir: str | Path, n: int) -> tuple[DiskArray, DiskArray]:
    """The separation's cut-outs and backgrounds as two on-disk arrays (``OUT/banks/fg.npy``,
    ``bg.npy``), written once from the PNGs, chunk by chunk, atomically; read per batch later."""
    out = Path(out_dir)
    paths = {"fg": out / "banks" / "fg.npy", "bg": out / "banks" / "bg.npy"}
    arrays: dict[str, DiskArray] = {}
    for name, channels in (("fg", 4), ("bg", 3)):
        path = paths[name]
        if path.is_file():
            try:
                array = DiskArray(path)
                if len(array) == n:
                    arrays[name] = array
                    continue
            except ValueError:
                pass
        with Image.open(out / name / f"{0:06d}.png") as first:
            h, w = first.height, first.width
        chunks = (read_bank_rows(out, name, a, min(n, a + 256)) for a in range(0, n, 256))
        arrays[name] = write_npy(path, (n, h, w, channels), np.uint8, chunks)
    return arrays["fg"], arrays["bg"]
