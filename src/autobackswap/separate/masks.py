"""Masks from a G x G foreground-probability grid: tight cut-out alpha and loose inpainting hole.

* tight foreground: ``p_bg < t_tight`` (default 0.5); loose foreground (the hole): ``p_bg < t_loose``
  (default 0.9). ``p_bg = 1 - p_fg``.
* Refiners (registry) turn the blocky grid into a pixel-level soft alpha:
  ``nearest`` (blocky patches, the reference), ``bilinear`` (smooth probabilities), ``guided``
  (bilinear probabilities snapped to image edges with a guided filter, He et al. 2010), ``guided_wide``
  (the same over a two-patch window with a smaller regulariser: less of the old background at the cut-out's
  edge), ``grabcut`` (OpenCV GrabCut seeded by the grid).
* Holes (registry) are the region the inpainter fills: ``grid`` (the loose patches, nearest-upsampled:
  the reference) or ``refined`` (the refiner's mask at the loose threshold, which follows the image's
  edges instead of the patch grid).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from ..data.grid import grid_to_mask
from ..registry import Registry

# (image HWC uint8, p_fg grid GxG float, fg threshold on p_fg) -> soft alpha HW float32 in [0, 1]
Refine = Callable[[np.ndarray, np.ndarray, float], np.ndarray]
REFINERS: Registry[Callable[..., Refine]] = Registry("mask refiner")


def upsample_bilinear(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling with cell centres aligned (OpenCV's half-pixel convention)."""
    h, w = size
    return cv2.resize(grid.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)


def soft_threshold(prob: np.ndarray, threshold: float, softness: float) -> np.ndarray:
    """A linear ramp of width ``softness`` around ``threshold``: anti-aliased edges."""
    if softness <= 0:
        return (prob > threshold).astype(np.float32)
    return np.clip((prob - threshold) / softness + 0.5, 0.0, 1.0).astype(np.float32)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Colour-guided filter (He, Sun & Tang 2010). ``guide`` HWC float [0, 1], ``src`` HW float."""
    ksize = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, ksize, borderType=cv2.BORDER_REFLECT)

    h, w, c = guide.shape
    mean_i = box(guide)
    mean_p = box(src)
    corr_ip = box(guide * src[..., None])
    cov_ip = corr_ip - mean_i * mean_p[..., None]
    var = np.empty((h, w, c, c), np.float32)
    for a in range(c):
        for b in range(a, c):
            v = box(guide[..., a] * guide[..., b]) - mean_i[..., a] * mean_i[..., b]
            var[..., a, b] = var[..., b, a] = v
    var += eps * np.eye(c, dtype=np.float32)
    coef = np.linalg.solve(var, cov_ip[..., None])[..., 0]
    bias = mean_p - (coef * mean_i).sum(-1)
    return (box(coef) * guide).sum(-1) + box(bias)


@REFINERS.register("nearest")
def nearest(**_: Any) -> Refine:
    return lambda image, grid, thr: grid_to_mask(grid > thr, image.shape[:2]).astype(np.float32)


@REFINERS.register("bilinear")
def bilinear(softness: float = 0.2, **_: Any) -> Refine:
    return lambda image, grid, thr: soft_threshold(upsample_bilinear(grid, image.shape[:2]), thr, softness)


def guided_refine(image: np.ndarray, grid: np.ndarray, thr: float, radius_frac: float, eps: float, softness: float) -> np.ndarray:
    h, w = image.shape[:2]
    prob = upsample_bilinear(grid, (h, w))
    radius = max(1, int(round(radius_frac * h / grid.shape[0])))
    refined = guided_filter(image.astype(np.float32) / 255.0, prob, radius, eps)
    return soft_threshold(refined, thr, softness)


@REFINERS.register("guided")
def guided(radius_frac: float = 1.0, eps: float = 1e-3, softness: float = 0.2, **_: Any) -> Refine:
    """``radius_frac`` is the filter radius in patches."""
    return lambda image, grid, thr: guided_refine(image, grid, thr, radius_frac, eps, softness)


@REFINERS.register("guided_wide")
def guided_wide(radius_frac: float = 2.0, eps: float = 1e-4, softness: float = 0.2, **_: Any) -> Refine:
    """The guided filter over two patches with a tenth of the regulariser: each pixel's alpha is fitted to the
    colours of a window that reaches past a wrongly called boundary patch, and follows the image's edges more
    closely. On TuxBirds its cut-outs have a better IoU (0.826 against 0.803) and less rim (0.099 against
    0.146), yet the classifier trained on them loses worst-group accuracy (docs/results.md): an option."""
    return guided(radius_frac, eps, softness)


def grabcut_refine(image: np.ndarray, grid: np.ndarray, thr: float, iterations: int, sure: float) -> np.ndarray:
    h, w = image.shape[:2]
    prob = upsample_bilinear(grid, (h, w))
    mask = np.where(prob > thr, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    mask[prob >= sure] = cv2.GC_FGD
    mask[prob <= 1 - sure] = cv2.GC_BGD
    if not (mask == cv2.GC_PR_FGD).any() and not (mask == cv2.GC_FGD).any():
        return np.zeros((h, w), np.float32)
    if (mask == cv2.GC_BGD).all() or not ((mask == cv2.GC_BGD) | (mask == cv2.GC_PR_BGD)).any():
        return (mask != cv2.GC_BGD).astype(np.float32)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    cv2.grabCut(np.ascontiguousarray(image[..., ::-1]), mask, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)  # type: ignore[call-overload]
    return ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.float32)


@REFINERS.register("grabcut")
def grabcut(iterations: int = 3, sure: float = 0.95, **_: Any) -> Refine:
    return lambda image, grid, thr: grabcut_refine(image, grid, thr, iterations, sure)


def create_refiner(name: str, **kwargs: Any) -> Refine:
    return REFINERS.get(name)(**kwargs)


def grow(mask: np.ndarray, px: int) -> np.ndarray:
    """A HW bool mask grown by ``px`` pixels (a square structuring element)."""
    if px <= 0 or not mask.any():
        return mask.astype(bool)
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)).astype(bool)


def erode(alpha: np.ndarray, px: int) -> np.ndarray:
    """A soft HW alpha eroded by ``px`` pixels (grey-level minimum over a square; 0 leaves it as is): the cut-out
    loses a ``px`` wide band at its edge, where a rim of the old background sits."""
    if px < 0:
        raise ValueError(f"erosion must be >= 0 px, got {px}")
    if px == 0:
        return alpha
    return cv2.erode(alpha, np.ones((2 * px + 1, 2 * px + 1), np.uint8), borderType=cv2.BORDER_REPLICATE)


def hole_mask(p_fg: np.ndarray, t_loose: float, size: tuple[int, int], dilate: int = 1) -> np.ndarray:
    """The inpainting hole: loose foreground ``p_bg < t_loose``, nearest-upsampled, dilated ``dilate`` px."""
    return grow(grid_to_mask(p_fg > 1.0 - t_loose, size), dilate)


# (image HWC uint8, p_fg grid GxG, t_loose, the refiner, dilation px) -> HW bool hole
Hole = Callable[[np.ndarray, np.ndarray, float, Refine, int], np.ndarray]
HOLES: Registry[Hole] = Registry("hole")


@HOLES.register("grid")
def grid_hole(image: np.ndarray, p_fg: np.ndarray, t_loose: float, refine: Refine, px: int) -> np.ndarray:
    """The reference's hole: the loose patches (``p_bg < t_loose``), blocky, dilated."""
    return hole_mask(p_fg, t_loose, image.shape[:2], px)


@HOLES.register("refined")
def refined_hole(image: np.ndarray, p_fg: np.ndarray, t_loose: float, refine: Refine, px: int) -> np.ndarray:
    """The refiner's mask at the loose threshold (alpha > 0.5), dilated: it follows the object's edges, so
    less of the background around it (and none of the patch blocks) is filled."""
    return grow(refine(image, p_fg, 1.0 - t_loose) > 0.5, px)


def decontaminate(image: np.ndarray, alpha: np.ndarray, background: np.ndarray, min_alpha: float = 0.05) -> np.ndarray:
    """Un-premultiply the soft rim: F = (I - (1 - a) B) / a, with B the inpainted background.

    Removes the old background's colour from the edge of the cut-out (the "edge halo" that would
    otherwise carry the spurious cue onto the new background).
    """
    a = alpha[..., None].astype(np.float32)
    img = image.astype(np.float32)
    fg = (img - (1.0 - a) * background.astype(np.float32)) / np.maximum(a, min_alpha)
    fg = np.where(a >= 0.999, img, np.where(a > min_alpha, fg, img))
    return np.clip(np.round(fg), 0, 255).astype(np.uint8)


def refined_iou(images: Any, p_fg: np.ndarray, segmentations: Any, refine: str, threshold: float) -> float:
    """Mean pixel IoU of the ``refine`` masks of ``p_fg`` grids (fg where p_fg > ``threshold``) against
    ground-truth segmentations."""
    refiner = create_refiner(refine)
    return float(np.mean([pixel_iou(refiner(images[i], p_fg[i], threshold), segmentations[i])
                          for i in range(len(segmentations))]))


def _soft_and_truth(alpha: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(alpha as float64 in [0, 1], target as bool) for :func:`bg_share` / :func:`fg_kept`."""
    a = alpha.astype(np.float64) / 255.0 if alpha.dtype == np.uint8 else alpha.astype(np.float64)
    t = target > (127 if target.dtype == np.uint8 else 0.5) if target.dtype != bool else target
    if a.shape != t.shape:
        raise ValueError(f"alpha {a.shape} and mask {t.shape} differ in shape")
    return a, t


def bg_share(alpha: np.ndarray, target: np.ndarray) -> float | None:
    """The rim: the share of the cut-out's alpha mass that lies on ground-truth background,
    ``sum(alpha * (1 - gt)) / sum(alpha)``. ``alpha`` is soft (float in [0, 1], or uint8 0-255); ``target`` a
    HW mask (bool, or float/uint8 thresholded at half range). None when the cut-out is empty."""
    a, t = _soft_and_truth(alpha, target)
    mass = a.sum()
    return float(a[~t].sum() / mass) if mass > 0 else None


def fg_kept(alpha: np.ndarray, target: np.ndarray) -> float | None:
    """The object kept: the share of the ground-truth foreground the cut-out's alpha covers,
    ``sum(alpha * gt) / sum(gt)`` (the other side of :func:`bg_share`: a tighter cut-out carries less rim and
    keeps less of the object). Same inputs as :func:`bg_share`; None when the ground truth has no foreground."""
    a, t = _soft_and_truth(alpha, target)
    area = t.sum()
    return float(a[t].sum() / area) if area > 0 else None


def pixel_iou(pred: np.ndarray, target: np.ndarray) -> float:
    """IoU of two HW masks (bool, or float/uint8 thresholded at half range)."""
    p = pred > (127 if pred.dtype == np.uint8 else 0.5) if pred.dtype != bool else pred
    t = target > (127 if target.dtype == np.uint8 else 0.5) if target.dtype != bool else target
    union = np.logical_or(p, t).sum()
    return float(np.logical_and(p, t).sum() / union) if union else 1.0
