"""Inpainters, registered by name: fill the hole a foreground leaves in its image.

Each takes an HWC uint8 RGB image, an HW bool hole mask and an ``np.random.Generator`` and returns a
new HWC uint8 image whose hole is filled. ``telea``/``ns`` are OpenCV's fast-marching and
Navier-Stokes methods, ``patchmatch`` is exemplar-based (pypatchmatch); ``gray``, ``mean``,
``noise``, ``scramble_pixels`` and ``scramble_patches`` are the reference implementation's
ablation fills. A learned inpainter registers a class taking ``weights=PATH``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from ..registry import Registry

Inpaint = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]
INPAINTERS: Registry[Callable[..., Inpaint]] = Registry("inpainter")

# Fills that do not continue the surroundings into the hole, so the removed object's outline stays in the
# background as a region of its own (what they leave). telea, ns and patchmatch continue the surroundings.
SILHOUETTE_FILLS = {
    "gray": "a flat gray region",
    "mean": "a flat region of the image's mean colour",
    "noise": "a region of random noise",
    "scramble_pixels": "a region of scrambled pixels",
}


def _hole_u8(hole: np.ndarray) -> np.ndarray:
    return hole.astype(np.uint8) * 255


def opencv_inpaint(image: np.ndarray, hole: np.ndarray, method: int, radius: float = 3.0) -> np.ndarray:
    return cv2.inpaint(image, _hole_u8(hole), radius, method)


@INPAINTERS.register("telea")
def telea(radius: float = 3.0, **_: Any) -> Inpaint:
    return lambda image, hole, rng: opencv_inpaint(image, hole, cv2.INPAINT_TELEA, radius)


@INPAINTERS.register("ns")
def navier_stokes(radius: float = 3.0, **_: Any) -> Inpaint:
    return lambda image, hole, rng: opencv_inpaint(image, hole, cv2.INPAINT_NS, radius)


def patchmatch_inpaint(image: np.ndarray, hole: np.ndarray, rng: np.random.Generator, patch_size: int = 5) -> np.ndarray:
    from patchmatch import patch_match

    patch_match.set_random_seed(int(rng.integers(0, 2**31 - 1)))  # the C library's RNG is global
    return np.asarray(patch_match.inpaint(image, _hole_u8(hole), patch_size=patch_size), dtype=np.uint8)


@INPAINTERS.register("patchmatch")
def patchmatch(patch_size: int = 5, **_: Any) -> Inpaint:
    return lambda image, hole, rng: patchmatch_inpaint(image, hole, rng, patch_size)


def fill_constant(image: np.ndarray, hole: np.ndarray, colour: np.ndarray) -> np.ndarray:
    out = image.copy()
    out[hole] = colour.astype(np.uint8)
    return out


@INPAINTERS.register("gray")
def gray(**_: Any) -> Inpaint:
    return lambda image, hole, rng: fill_constant(image, hole, np.array([128, 128, 128]))


def mean_colour(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    known = image[~hole]
    return np.round(known.mean(0)) if len(known) else np.array([128.0, 128.0, 128.0])


@INPAINTERS.register("mean")
def mean(**_: Any) -> Inpaint:
    return lambda image, hole, rng: fill_constant(image, hole, mean_colour(image, hole))


def fill_noise(image: np.ndarray, hole: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = image.copy()
    out[hole] = rng.integers(0, 256, (int(hole.sum()), 3), dtype=np.uint8)
    return out


@INPAINTERS.register("noise")
def noise(**_: Any) -> Inpaint:
    return fill_noise


def scramble_pixels_fill(image: np.ndarray, hole: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fill the hole with the image's own known pixels, drawn at random."""
    known = image[~hole]
    if len(known) == 0:
        return fill_constant(image, hole, np.array([128, 128, 128]))
    out = image.copy()
    out[hole] = known[rng.integers(0, len(known), int(hole.sum()))]
    return out


@INPAINTERS.register("scramble_pixels")
def scramble_pixels(**_: Any) -> Inpaint:
    return scramble_pixels_fill


def scramble_patches_fill(image: np.ndarray, hole: np.ndarray, rng: np.random.Generator, patch: int = 8) -> np.ndarray:
    """Fill each hole cell of a ``patch``-px grid with a random fully-known cell of the image."""
    h, w = hole.shape
    out = image.copy()
    cells = [(y, x) for y in range(0, h - patch + 1, patch) for x in range(0, w - patch + 1, patch)]
    donors = [(y, x) for y, x in cells if not hole[y : y + patch, x : x + patch].any()]
    if not donors:
        return scramble_pixels_fill(image, hole, rng)
    for y in range(0, h, patch):
        for x in range(0, w, patch):
            cell = hole[y : y + patch, x : x + patch]
            if cell.any():
                dy, dx = donors[int(rng.integers(len(donors)))]
                src = image[dy : dy + cell.shape[0], dx : dx + cell.shape[1]]
                out[y : y + patch, x : x + patch][cell] = src[cell]
    return out


@INPAINTERS.register("scramble_patches")
def scramble_patches(patch: int = 8, **_: Any) -> Inpaint:
    return lambda image, hole, rng: scramble_patches_fill(image, hole, rng, patch)


def create_inpainter(name: str, **kwargs: Any) -> Inpaint:
    return INPAINTERS.get(name)(**kwargs)
