"""What durability costs the separation cache (issue 17): an fsync per cached file, and the check of every
cached file on resume. Ratios are measured inside one run (the machine is shared, absolute times are noisy).

    python benchmarks/bench_durability.py                  # 2000 images at 64 px, oracle masks, mean fill

The separation writes its per-image PNGs without an fsync each (``write_png(..., durable=False)``) because
every resume decodes them and redoes a damaged one. Prints: the separation time with an fsync per file ÷ as
shipped, and the time of a resume with nothing left to do (every file decoded and checked) ÷ the separation.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from autobackswap.io import write_png
from autobackswap.separate import engines
from autobackswap.separate.engines import separate
from autobackswap.separate.run import SeparationConfig


def inputs(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    masks[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 255
    return images, masks


def timed(images: np.ndarray, masks: np.ndarray, out: Path) -> float:
    start = time.perf_counter()
    separate(images, out, SeparationConfig(inpainter="mean"), segmentations=masks)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--dir", default=None, help="where to write (default: a temp folder; the disk matters for fsync)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    images, masks = inputs(args.n, args.size)
    base = Path(tempfile.mkdtemp(dir=args.dir))
    try:
        shipped = timed(images, masks, base / "shipped")
        engines.write_png = lambda path, array, durable=True: write_png(path, array)  # type: ignore[assignment]
        try:
            with_fsync = timed(images, masks, base / "fsync")
        finally:
            engines.write_png = write_png
        resume = timed(images, masks, base / "shipped")  # everything done: only the check of every file
    finally:
        shutil.rmtree(base)
    print(f"separation of {args.n} images at {args.size} px (2 files each), one process, on {os.uname().sysname}")
    print("| measure | value |\n|---|---|")
    print(f"| as shipped (no fsync per cache file) | {shipped:.1f} s |\n| an fsync per file | {with_fsync:.1f} s |")
    print(f"| fsync per file ÷ as shipped | {with_fsync / shipped:.2f} |")
    print(f"| resume with nothing to do (checks every file) | {resume:.1f} s |")
    print(f"| resume ÷ separation | {resume / shipped:.2f} |")


if __name__ == "__main__":
    main()
