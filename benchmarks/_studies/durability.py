"""What durability costs the separation cache (issue 17): an fsync per cached file, and the check of every cached
file on resume. Ratios are measured inside one run (the machine is shared, absolute times are noisy).

The separation writes its per-image PNGs without an fsync each (``write_png(..., durable=False)``) because every
resume decodes them and redoes a damaged one. It separates 2000 random images at 64 px (a centred square as the
ground-truth mask, the ``mean`` fill, one process) as shipped, again with an fsync per file, then resumes the
finished run (nothing to do but check every file): the fsync ÷ shipped time and the resume ÷ separation time.
"""

from __future__ import annotations

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

from . import Context, Measured, Study, Table, register


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


def measure_durability(n: int, size: int, where: str | None = None) -> dict[str, float]:
    """Seconds of the separation as shipped, with an fsync per file, and of a resume with nothing left to do."""
    images, masks = inputs(n, size)
    base = Path(tempfile.mkdtemp(dir=where))
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
    return {"shipped": shipped, "fsync": with_fsync, "resume": resume}


@register
class Durability(Study):
    name = "durability"
    title = "What durability costs the separation cache"
    about = ("separation of 2000 images (ground-truth masks, mean fill) with and without an fsync per cached file, "
             "and a resume that checks every file: both as ratios to the separation as shipped")
    depends = ("src/autobackswap/separate/*.py", "src/autobackswap/io.py")
    n = 2000
    quick_n = 300
    size = 64

    def measure(self, ctx: Context) -> Measured:
        n = self.quick_n if ctx.quick else self.n
        t = measure_durability(n, self.size)
        rows = [["as shipped (no fsync per cache file)", f"{t['shipped']:.1f} s"],
                ["an fsync per file", f"{t['fsync']:.1f} s"],
                ["fsync per file ÷ as shipped", f"{t['fsync'] / t['shipped']:.2f}"],
                ["resume with nothing to do (checks every file)", f"{t['resume']:.1f} s"],
                ["resume ÷ separation", f"{t['resume'] / t['shipped']:.2f}"]]
        table = Table(["measure", "value"], rows,
                      f"Separation of {n} images at {self.size} px (2 files each), one process, on {os.uname().sysname}, "
                      f"in a temporary folder (load average {os.getloadavg()[0]:.1f})")
        return Measured({"main": table}, {"fsync_ratio": f"{t['fsync'] / t['shipped']:.2f}",
                                          "resume_ratio": f"{t['resume'] / t['shipped']:.2f}"})
