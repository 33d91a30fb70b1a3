"""Background-robustness diagnostics in the style of the ImageNet-9 backgrounds challenge (Xiao et al. 2020).

From the test split and a foreground mask per image (ground-truth segmentations, or masks predicted
by a run's detector) :func:`build_diagnostic_sets` builds, deterministically from a seed:

* ``original``: the test images as they are (for reference);
* ``only_fg``: the foreground on constant gray (128);
* ``only_bg``: the background with the foreground region inpainted away;
* ``mixed_same``: the foreground on the inpainted background of another test image **of the same
  class**. By default (``same="majority"``) the donor is also drawn from the class's *usual*
  background, i.e. its majority place in training: a group-balanced test split (Waterbirds, the
  synthetic benchmark) puts half of every class on the other background, and ImageNet-9's
  "same class" backgrounds are class-typical ones. ``same="class"`` takes any image of the class;
* ``mixed_rand``: the foreground on the inpainted background of a uniformly random other test image.

:func:`diagnose` reports their accuracies and ``bg_gap = mixed_same - mixed_rand``: how much the
model's accuracy depends on the background going with the class. Foregrounds stay where they were;
only images whose mask has both foreground and background are used (the others are counted).
The masks, inpainting and composition reuse :mod:`autobackswap.separate` and
:mod:`autobackswap.compose.functional`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import seeding
from ..progress import progress
from ..separate.inpaint import create_inpainter
from ..separate.masks import create_refiner
from ..separate.run import SeparationConfig, masks_from_grid, masks_from_segmentation, separate_one
from ..tensors import paste_rgba

log = logging.getLogger(__name__)

SETS = ("original", "only_fg", "only_bg", "mixed_same", "mixed_rand")
KEYS = (*SETS, "bg_gap")
SAME_MODES = ("majority", "class")
GRAY = 128

DEFINITIONS = {
    "original": "the test images as they are",
    "only_fg": "foreground on constant gray",
    "only_bg": "background with the foreground region inpainted away",
    "mixed_same": "foreground on the inpainted background of another test image of the same class",
    "mixed_same/majority": ("foreground on the inpainted background of another test image of the same class "
                            "whose place is that class's majority place in training (its usual background)"),
    "mixed_rand": "foreground on the inpainted background of a random other test image",
    "bg_gap": "mixed_same - mixed_rand",
}


@dataclass
class DiagnosticSets:
    """The diagnostic images (NHWC uint8) of the usable test images, with their labels (class indices)."""

    images: dict[str, np.ndarray]
    labels: np.ndarray
    index: np.ndarray  # positions in the test split
    donors: dict[str, np.ndarray]  # positions (in ``index``) of the background donor per image
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


def draw_donors(labels: np.ndarray, place: np.ndarray, usual_place: dict[int, int] | None,
                rng: np.random.Generator, same: str = "majority") -> tuple[np.ndarray, np.ndarray, int]:
    """(mixed_same donors, mixed_rand donors, number of images whose same-class donor fell back to
    any image of the class). A donor is never the image itself (when another candidate exists)."""
    if same not in SAME_MODES:
        raise ValueError(f"unknown mixed_same mode {same!r}; valid: {', '.join(SAME_MODES)}")
    n = len(labels)
    same_d = np.empty(n, np.int64)
    rand_d = np.empty(n, np.int64)
    fallbacks = 0
    everyone = np.arange(n)
    for i in range(n):
        pool = np.flatnonzero(labels == labels[i])
        if same == "majority" and usual_place is not None and int(labels[i]) in usual_place:
            usual = pool[place[pool] == usual_place[int(labels[i])]]
            if len(usual[usual != i]):
                pool = usual
            else:
                fallbacks += 1
        same_d[i] = _pick(pool, i, rng)
        rand_d[i] = _pick(everyone, i, rng)
    return same_d, rand_d, fallbacks


def _pick(pool: np.ndarray, exclude: int, rng: np.random.Generator) -> int:
    others = pool[pool != exclude]
    return int(rng.choice(others if len(others) else pool))


def build_diagnostic_sets(
    images: np.ndarray,
    labels: np.ndarray,
    place: np.ndarray,
    *,
    segmentations: np.ndarray | None = None,
    p_fg: np.ndarray | None = None,
    separation: SeparationConfig | None = None,
    usual_place: dict[int, int] | None = None,
    same: str = "majority",
    seed: int = 0,
    inpaint: Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray] | None = None,
) -> DiagnosticSets:
    """Build the five sets from NHWC uint8 test ``images`` and either ground-truth ``segmentations``
    (N, H, W) uint8 or detector grids ``p_fg`` (N, G, G) (thresholds and refinement from
    ``separation``). ``usual_place`` maps a class index to its majority place in training."""
    if (segmentations is None) == (p_fg is None):
        raise ValueError("pass exactly one of segmentations (ground truth) or p_fg (predicted masks)")
    if len(images) == 0:
        raise ValueError("the test split is empty")
    cfg = separation or SeparationConfig(seed=seed)
    inpaint = inpaint or create_inpainter(cfg.inpainter)
    refine = create_refiner(cfg.refine) if p_fg is not None else None
    fgs, bgs, keep = [], [], []
    statuses = {"ok": 0, "no_fg": 0, "all_fg": 0}
    for i in progress(range(len(images)), desc="diagnostic sets", quiet=len(images) < 500):
        if segmentations is not None:
            alpha, hole = masks_from_segmentation(segmentations[i])
        else:
            assert p_fg is not None and refine is not None
            alpha, hole = masks_from_grid(images[i], p_fg[i], cfg, refine)
        fg, bg, status = separate_one(images[i], alpha, hole, cfg, inpaint, seeding.rng(seed, "diagnostic_inpainting", i))
        statuses[status] += 1
        if status == "ok":
            fgs.append(fg)
            bgs.append(bg)
            keep.append(i)
    if len(keep) < 2:
        raise ValueError(f"only {len(keep)} test image(s) have both foreground and background in their mask; "
                         "the diagnostics need at least 2")
    index = np.asarray(keep, np.int64)
    lab, pl = np.asarray(labels)[index], np.asarray(place)[index]
    same_d, rand_d, fallbacks = draw_donors(lab, pl, usual_place, seeding.rng(seed, "diagnostic_donors"), same)
    gray = np.full_like(bgs[0], GRAY)
    out = {
        "original": np.asarray(images)[index],
        "only_fg": np.stack([paste_rgba(f, gray) for f in fgs]),
        "only_bg": np.stack(bgs),
        "mixed_same": np.stack([paste_rgba(fgs[i], bgs[j]) for i, j in enumerate(same_d)]),
        "mixed_rand": np.stack([paste_rgba(fgs[i], bgs[j]) for i, j in enumerate(rand_d)]),
    }
    info = {"n": len(index), "n_test": len(images), "excluded": {k: v for k, v in statuses.items() if k != "ok"},
            "seed": seed, "mixed_same": same, "mixed_same_fallbacks": fallbacks, "inpainter": cfg.inpainter}
    if fallbacks:
        log.warning("diagnostics: %d images had no same-class donor on the usual background; any image of the "
                    "class was used", fallbacks)
    return DiagnosticSets(out, lab, index, {"mixed_same": same_d, "mixed_rand": rand_d}, info)


def diagnose(predict: Callable[[np.ndarray], np.ndarray], sets: DiagnosticSets) -> dict[str, float]:
    """Accuracy of ``predict`` (NHWC uint8 -> class indices) on every set, and ``bg_gap``."""
    out = {name: float(np.mean(np.asarray(predict(sets.images[name])) == sets.labels)) for name in SETS}
    out["bg_gap"] = out["mixed_same"] - out["mixed_rand"]
    return out


def aggregate_diagnostics(runs: list[dict[str, float]]) -> dict[str, Any]:
    """Mean and std (ddof=0) over seeds of every diagnostic accuracy and ``bg_gap``."""
    if not runs:
        raise ValueError("nothing to aggregate")
    out: dict[str, Any] = {k: float(np.mean([r[k] for r in runs])) for k in KEYS}
    out["std"] = {k: float(np.std([r[k] for r in runs])) for k in KEYS}
    out["n_seeds"] = len(runs)
    return out


def sample_indices(labels: np.ndarray, n: int = 6) -> list[int]:
    """Up to ``n`` positions for a picture: classes interleaved, evenly spread over each class."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    per = max(1, n // max(1, len(classes)))
    picks: list[int] = []
    for j in range(per):
        for c in classes:
            members = np.flatnonzero(labels == c)
            if j < len(members):
                picks.append(int(members[j * len(members) // per]))
    return picks[:n]
