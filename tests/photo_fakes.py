"""A tiny generated stand-in of TuxBirds' Debian asset packages: magenta ellipse "birds" with alpha and
blue (water) / green (land) noise "photos", for building TuxBirds in tests without apt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from autobackswap.data.photo_lists import BackgroundSpec, BirdSpec

MAGENTA = np.array([255, 0, 255])
BIRD_PKG, BG_PKG = "fake-stamps", "fake-wallpapers"
BIRDS = [BirdSpec(f"{kind}{i}", y, BIRD_PKG, f"usr/share/birds/{kind}{i}.png")
         for y, kind in ((1, "wbird"), (0, "lbird")) for i in range(4)]
BACKGROUNDS = [BackgroundSpec(f"{kind}{i}", place, BG_PKG, f"usr/share/bg/{kind}{i}.jpg", (0.0, 0.1, 1.0, 1.0))
               for place, kind in ((1, "water"), (0, "land")) for i in range(3)]


def write_bird(path: Path, rng: np.random.Generator, size: tuple[int, int] = (40, 30)) -> None:
    """An opaque magenta ellipse with a half-transparent rim, on a transparent canvas."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    r = ((xx - w / 2) / (w * rng.uniform(0.3, 0.45))) ** 2 + ((yy - h / 2) / (h * rng.uniform(0.3, 0.45))) ** 2
    alpha = np.where(r < 0.8, 255, np.where(r < 1.0, 128, 0)).astype(np.uint8)
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[..., :3] = MAGENTA
    rgba[..., 3] = alpha
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgba, "RGBA").save(path)


def write_photo(path: Path, rng: np.random.Generator, place: int, size: tuple[int, int] = (90, 60)) -> None:
    w, h = size
    base = np.array([20, 60, 200]) if place == 1 else np.array([40, 170, 30])
    img = np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, quality=90)


def write_standins(root: Path, birds: list[BirdSpec], backgrounds: list[BackgroundSpec]) -> Path:
    rng = np.random.default_rng(123)
    for b in birds:
        write_bird(root / b.package / b.path, rng)
    for bg in backgrounds:
        write_photo(root / bg.package / bg.path, rng, bg.place)
    return root
