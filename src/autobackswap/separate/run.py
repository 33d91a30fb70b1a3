"""The separation job: for every training image, a foreground cut-out and an inpainted background.

Outputs, one file pair per image, written atomically so a killed run resumes where it stopped::

    OUT/config.json        the resolved configuration
    OUT/fg/000123.png      RGBA cut-out at the working size (edge-decontaminated colour, soft alpha)
    OUT/bg/000123.png      RGB inpainted background
    OUT/summary.json       counts (ok / no_fg / all_fg), mask IoU when ground truth exists; with a
                           detector, the mean confidence and the ten least confident images
    OUT/confidence.csv     with a detector: the separation confidence per image, least confident
                           first (autobackswap.detect.confidence; OUT/confidence/ holds it per chunk)

An image is *done* when both of its files exist. The engines (:mod:`.engines`) run these steps over a
whole split. Each image draws its randomness from
the ``separation`` stream of :mod:`autobackswap.seeding` with its index, so the output does not depend on order or resumption.
An image with no foreground (``no_fg``) or only foreground (``all_fg``) keeps its original pixels:
its cut-out alpha is all 0 / all 255 and its background is the original image; both are counted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..io import digest
from ..options import check_range
from .inpaint import INPAINTERS
from .masks import HOLES, REFINERS, decontaminate, grow

log = logging.getLogger(__name__)

STATUSES = ("ok", "no_fg", "all_fg")


@dataclass
class SeparationConfig:
    t_tight: float = 0.5  # tight foreground: p_bg < t_tight
    t_loose: float = 0.9  # inpainting hole: p_bg < t_loose
    inpainter: str = "mean"  # chosen on TuxBirds by the inpainters study (benchmarks/run.py inpainters)
    refine: str = "guided"
    hole_dilate: int = 1  # px added around the hole
    hole: str = "grid"  # how the hole is drawn from the grid (masks.HOLES): grid (the reference) or refined
    decontaminate: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        """Check registry names now, before any data is loaded or a detector is trained."""
        for registry, name in ((INPAINTERS, self.inpainter), (REFINERS, self.refine), (HOLES, self.hole)):
            registry.get(name)  # KeyError listing the valid names
        check_range("t_tight (the tight threshold on p_bg)", self.t_tight, 0.0, 1.0)
        check_range("t_loose (the loose threshold on p_bg)", self.t_loose, 0.0, 1.0)
        check_range("hole_dilate (pixels)", self.hole_dilate, 0, 2048, integer=True)
        check_range("seed", self.seed, 0, 2**63 - 1, integer=True)

    def digest(self, extra: str = "") -> str:
        return digest(json.dumps(asdict(self), sort_keys=True), extra)


def status_of(alpha: np.ndarray) -> str:
    fg = alpha > 0.5
    if not fg.any():
        return "no_fg"
    if fg.all():
        return "all_fg"
    return "ok"


def masks_from_grid(image: np.ndarray, p_fg: np.ndarray, cfg: SeparationConfig,
                    refine: Callable[[np.ndarray, np.ndarray, float], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(soft alpha HW float32, hole HW bool) from a G x G p(foreground) grid."""
    alpha = refine(image, p_fg, 1.0 - cfg.t_tight)
    hole = HOLES.get(cfg.hole)(image, p_fg, cfg.t_loose, refine, cfg.hole_dilate) | (alpha > 0)
    return alpha, hole


def masks_from_segmentation(mask: np.ndarray, dilate: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(soft alpha, hole) from a ground-truth HW uint8 mask (the oracle)."""
    return mask.astype(np.float32) / 255.0, grow(mask > 0, dilate)


def separate_one(image: np.ndarray, alpha: np.ndarray, hole: np.ndarray, cfg: SeparationConfig,
                 inpaint: Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray],
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """(RGBA cut-out, RGB background, status) for one HWC uint8 image."""
    status = status_of(alpha)
    if status == "ok" and hole.all():
        status = "all_fg"  # no background pixel is left to inpaint from
    if status != "ok":  # no tight foreground stays no_fg, however loose the hole
        a = np.full(alpha.shape, 255 if status == "all_fg" else 0, np.uint8)
        return np.dstack([image, a]), image.copy(), status
    background = inpaint(image, hole, rng)
    colour = decontaminate(image, alpha, background) if cfg.decontaminate else image
    a8 = np.round(alpha * 255).astype(np.uint8)
    return np.dstack([colour, a8]), background, "ok"


@dataclass
class SeparationResult:
    out_dir: Path
    counts: dict[str, int]
    n: int


def is_done(out: Path, i: int) -> bool:
    return (out / "fg" / f"{i:06d}.png").is_file() and (out / "bg" / f"{i:06d}.png").is_file()


def damaged_file(out: Path, i: int) -> Path | None:
    """The first of image ``i``'s two files that does not decode completely in its mode (a file truncated
    by a crash or a full disk), or None when both are intact."""
    for name, mode in BANK_MODES.items():
        path = out / name / f"{i:06d}.png"
        try:
            with Image.open(path) as img:
                img.load()
                if img.mode != mode:
                    return path
        except (OSError, SyntaxError, ValueError):
            return path
    return None


def discard_damaged(out: Path, indices: list[int]) -> list[int]:
    """Check the done images among ``indices``; remove both files of each damaged one (so it is redone,
    with the same bytes) and return the indices still to do."""
    todo = []
    for i in indices:
        if is_done(out, i):
            bad = damaged_file(out, i)
            if bad is None:
                continue
            log.warning("separation: %s is damaged (it does not decode); redoing image %d", bad, i)
            for name in ("fg", "bg"):  # the cut-out first: the image stops counting as done at once
                (out / name / f"{i:06d}.png").unlink(missing_ok=True)
        todo.append(i)
    return todo


def read_alpha(out: Path, i: int) -> np.ndarray:
    with Image.open(out / "fg" / f"{i:06d}.png") as img:
        return np.asarray(img)[..., 3]


BANK_MODES = {"fg": "RGBA", "bg": "RGB"}  # cut-outs and inpainted backgrounds


def read_bank_rows(out_dir: str | Path, name: str, start: int, stop: int) -> np.ndarray:
    """The one bank reader: images ``start..stop-1`` of the ``fg`` (RGBA) or ``bg`` (RGB) folder of a
    separation, stacked NHWC uint8."""
    rows = []
    for i in range(start, stop):
        with Image.open(Path(out_dir) / name / f"{i:06d}.png") as img:
            rows.append(np.asarray(img.convert(BANK_MODES[name])))
    return np.stack(rows)


def load_banks(out_dir: str | Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(foregrounds (N, H, W, 4) uint8 RGBA, backgrounds (N, H, W, 3) uint8) from a separation folder."""
    return read_bank_rows(out_dir, "fg", 0, n), read_bank_rows(out_dir, "bg", 0, n)
