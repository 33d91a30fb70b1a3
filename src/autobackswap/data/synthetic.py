"""Synthetic spurious-background benchmark in the Waterbirds layout.

* ``y`` (the class) lives only in the foreground's **shape**: 0 = ellipse, 1 = triangle. Colour,
  shading, size, rotation and position are drawn independently of ``y`` and ``place``.
* ``place`` (the spurious attribute) picks a background **family**: 0 = "land" (green/olive hues;
  grass, field, foliage and tile textures), 1 = "water" (blue hues; waves, ripples, haze, glitter).
* Train and val follow ``place == y`` with probability ``correlation`` (default 1.0: no minority
  group at all). The test split is group-balanced, n/4 per (y, place) group.
* ``segmentations/`` holds the ground-truth foreground masks (anti-aliased, > 127 = foreground).

**Difficulty** (``difficulty``, :data:`LEVELS`): ``easy`` (the default, above) is separable by colour and its
shapes are single templates, so every method that separates at all gets it right. ``hard`` turns on the knobs of
:class:`Difficulty` that keep the task learnable: several shapes per class (round: ellipse, rounded square, lens;
pointed: triangle, star, chevron), foregrounds with a texture of their own, backgrounds whose hue ranges overlap
(colour alone does not tell the families apart; texture does), small distractor shapes of either class in the
background, and thin appendages that a patch mask loses or carries background around. (Foregrounds of any hue,
``fg_any_hue``, made the shapes unlearnable for the small classifier in 10 epochs: the oracle's WGA fell to
0.47.) An ``easy`` set is byte for byte what the generator wrote before
the knob existed.

Everything is drawn from one ``np.random.Generator`` seeded by ``seed``: the same seed gives the
same bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..io import check_writable_dir, csv_bytes, write_bytes, write_json, write_png
from ..options import check_range
from ..progress import progress
from ..registry import Registry
from .images import check_image_size

log = logging.getLogger(__name__)

Texture = Callable[[np.random.Generator, int], np.ndarray]  # -> HW float32 in [0, 1]

LAND_HUES = (18.0, 72.0)  # OpenCV hue units (0-180): yellow-green to green
WATER_HUES = (95.0, 122.0)  # cyan-blue to blue
FG_HUES = ((140.0, 180.0), (0.0, 12.0))  # magenta, red, orange: disjoint from both families
# hard backgrounds: each family's hues reach far into the other's (the families overlap from 70 to 95), so colour
# alone does not tell them apart; their textures do
OVERLAP_HUES = {0: (18.0, 95.0), 1: (70.0, 122.0)}


@dataclass(frozen=True)
class Difficulty:
    """The knobs of a synthetic set; every one off is ``easy`` (the first benchmark)."""

    shapes: int = 1  # shapes per class (1-3): round ellipse / rounded square / lens, pointed triangle / star / chevron
    fg_texture: float = 0.0  # contrast of a stripe / dot / checker texture inside the foreground (0 = plain shading)
    fg_any_hue: bool = False  # foreground hues drawn from the whole circle, backgrounds' included
    bg_overlap: bool = False  # the background families draw their hues from OVERLAP_HUES (texture tells them apart)
    distractors: int = 0  # up to this many small shapes of a random class in the background (not foreground)
    appendages: int = 0  # up to this many thin (1-2 px) strokes attached to the foreground, part of its mask

    def __post_init__(self) -> None:
        check_range("difficulty shapes (per class)", self.shapes, 1, 3, integer=True)
        check_range("difficulty fg_texture", self.fg_texture, 0.0, 1.0)
        check_range("difficulty distractors", self.distractors, 0, 8, integer=True)
        check_range("difficulty appendages", self.appendages, 0, 8, integer=True)

    @property
    def easy(self) -> bool:
        return self == Difficulty()


LEVELS: Registry[Difficulty] = Registry("synthetic difficulty")
LEVELS.register("easy")(Difficulty())
LEVELS.register("hard")(Difficulty(shapes=3, fg_texture=0.35, bg_overlap=True, distractors=3, appendages=3))


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    coarse = rng.random((cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return yy, xx


def _grass(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = _coords(size)
    freq = rng.uniform(10, 18)
    tilt = rng.uniform(-0.3, 0.3)
    blades = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (xx + tilt * yy) + 3 * _smooth_noise(rng, size, 6))
    return 0.6 * blades + 0.4 * _smooth_noise(rng, size, 16)


def _field(rng: np.random.Generator, size: int) -> np.ndarray:
    return 0.7 * _smooth_noise(rng, size, 4) + 0.3 * _smooth_noise(rng, size, 12)


def _foliage(rng: np.random.Generator, size: int) -> np.ndarray:
    img = np.full((size, size), 0.35, np.float32)
    for _ in range(int(rng.integers(25, 45))):
        c = (int(rng.integers(0, size)), int(rng.integers(0, size)))
        r = int(rng.integers(max(2, size // 24), max(3, size // 8)))
        cv2.circle(img, c, r, float(rng.uniform(0.1, 1.0)), -1, cv2.LINE_AA)
    return img


def _tiles(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = _coords(size)
    n = rng.uniform(4, 8)
    board = ((np.floor(xx * n) + np.floor(yy * n)) % 2).astype(np.float32)
    return 0.25 + 0.5 * board + 0.25 * _smooth_noise(rng, size, 8)


def _waves(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = _coords(size)
    freq = rng.uniform(5, 10)
    wobble = rng.uniform(0.02, 0.06) * np.sin(2 * np.pi * rng.uniform(1, 3) * xx + rng.uniform(0, 6))
    return 0.5 + 0.5 * np.sin(2 * np.pi * freq * (yy + wobble))


def _ripples(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = _coords(size)
    cy, cx = rng.uniform(0, 1, 2)
    dist = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    return 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(6, 12) * dist)


def _haze(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, _ = _coords(size)
    horizon = rng.uniform(0.2, 0.5)
    return np.clip(0.3 + 0.6 * (yy > horizon) * (yy - horizon) + 0.2 * _smooth_noise(rng, size, 5), 0, 1)


def _glitter(rng: np.random.Generator, size: int) -> np.ndarray:
    base = 0.4 + 0.3 * _smooth_noise(rng, size, 5)
    sparkle: np.ndarray = (rng.random((size, size)) > 0.93).astype(np.float32)
    sparkle = cv2.GaussianBlur(sparkle, (3, 3), 0.6)
    return np.clip(base + 0.8 * sparkle, 0, 1)


FAMILIES: dict[int, tuple[tuple[float, float], list[Texture]]] = {
    0: (LAND_HUES, [_grass, _field, _foliage, _tiles]),
    1: (WATER_HUES, [_waves, _ripples, _haze, _glitter]),
}


def render_background(rng: np.random.Generator, place: int, size: int, level: Difficulty = Difficulty()) -> np.ndarray:
    """A background of family ``place``: HWC uint8 RGB."""
    hues, textures = FAMILIES[place]
    hues = OVERLAP_HUES[place] if level.bg_overlap else hues
    texture = textures[int(rng.integers(len(textures)))](rng, size)
    hue = rng.uniform(*hues) + 4.0 * (_smooth_noise(rng, size, 3) - 0.5)
    sat = np.full((size, size), rng.uniform(0.45, 0.85), np.float32)
    val = rng.uniform(0.35, 0.55) + rng.uniform(0.25, 0.45) * texture
    hsv = np.stack([hue % 180.0, sat * 255.0, np.clip(val, 0, 1) * 255.0], axis=-1).astype(np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


def _round_shape(rng: np.random.Generator, kind: int, radius: float) -> np.ndarray:
    """Class 0 outlines: 0 ellipse, 1 rounded square (a superellipse), 2 lens (two arcs)."""
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    aspect = rng.uniform(0.6, 1.0)
    if kind == 0:
        return np.stack([radius * np.cos(t), aspect * radius * np.sin(t)], axis=1)
    if kind == 1:
        c, s = np.cos(t), np.sin(t)
        return np.stack([radius * np.sign(c) * np.abs(c) ** 0.5, aspect * radius * np.sign(s) * np.abs(s) ** 0.5], 1)
    return np.stack([radius * np.cos(t), 0.55 * aspect * radius * np.sin(t) * (1.0 + 0.6 * np.abs(np.cos(t)))], axis=1)


def _pointed_shape(rng: np.random.Generator, kind: int, radius: float) -> np.ndarray:
    """Class 1 outlines: 0 triangle, 1 four- or five-pointed star, 2 chevron (an arrow head)."""
    if kind == 0:
        t = np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.25, 0.25, 3)
        r = 1.3 * radius * rng.uniform(0.9, 1.1, 3)
        return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    if kind == 1:
        points = int(rng.integers(4, 6))
        t = np.linspace(0, 2 * np.pi, 2 * points, endpoint=False)
        r = np.where(np.arange(2 * points) % 2 == 0, 1.3 * radius, 0.5 * radius)
        return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    w = rng.uniform(0.35, 0.5)
    xs = np.array([-1.0, 1.0, -1.0, -1.0 + w, 1.0 - 2 * w, -1.0 + w]) * 1.2 * radius
    ys = np.array([-1.0, 0.0, 1.0, 1.0, 0.0, -1.0]) * radius
    return np.stack([xs, ys], axis=1)


def shape_polygon(rng: np.random.Generator, y: int, size: int, shapes: int = 1,
                  scale: tuple[float, float] = (0.17, 0.27)) -> np.ndarray:
    """Vertices (K, 2) float of a class-``y`` shape: 0 = ellipse, 1 = triangle; with ``shapes`` > 1, one of that
    many outlines of the class (:func:`_round_shape`, :func:`_pointed_shape`)."""
    radius = rng.uniform(*scale) * size
    angle = rng.uniform(0, 2 * np.pi)
    kind = int(rng.integers(shapes)) if shapes > 1 else 0
    if y == 0:
        pts = _round_shape(rng, kind, radius)
    elif y == 1:
        pts = _pointed_shape(rng, kind, radius)
    else:
        raise ValueError(f"synthetic classes are 0 and 1, got {y}")
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pts = pts @ rot.T
    lo, hi = pts.min(0), pts.max(0)
    margin = 2.0
    centre = rng.uniform(margin - lo, size - margin - hi)
    return pts + centre


SHIFT = 4  # sub-pixel precision for anti-aliased edges


def _fill(pts: np.ndarray, size: int) -> np.ndarray:
    alpha = np.zeros((size, size), np.uint8)
    cv2.fillPoly(alpha, [np.round(pts * (1 << SHIFT)).astype(np.int32)], 255, cv2.LINE_AA, SHIFT)
    return alpha


def _appendages(rng: np.random.Generator, alpha: np.ndarray, pts: np.ndarray, count: int) -> None:
    """Draw up to ``count`` thin strokes (1-2 px) from the outline outwards into ``alpha`` (in place)."""
    size = alpha.shape[0]
    centre = pts.mean(0)
    for _ in range(int(rng.integers(0, count + 1))):
        start = pts[int(rng.integers(len(pts)))]
        direction = (start - centre) / max(float(np.linalg.norm(start - centre)), 1e-6)
        bend = rng.uniform(-0.6, 0.6)
        direction = direction @ np.array([[np.cos(bend), -np.sin(bend)], [np.sin(bend), np.cos(bend)]]).T
        end = np.clip(start + direction * rng.uniform(0.1, 0.22) * size, 1, size - 2)
        p0, p1 = (np.round(v * (1 << SHIFT)).astype(np.int32) for v in (start, end))
        cv2.line(alpha, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), 255, int(rng.integers(1, 3)), cv2.LINE_AA,
                 SHIFT)


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A foreground texture in [0, 1]: stripes, dots or a checker."""
    yy, xx = _coords(size)
    kind = int(rng.integers(3))
    freq = rng.uniform(5, 10)
    if kind == 0:
        angle = rng.uniform(0, np.pi)
        return (0.5 + 0.5 * np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy))).astype(np.float32)
    if kind == 1:
        return ((np.sin(2 * np.pi * freq * xx) * np.sin(2 * np.pi * freq * yy)) > 0.4).astype(np.float32)
    return ((np.floor(xx * freq) + np.floor(yy * freq)) % 2).astype(np.float32)


def render_foreground(rng: np.random.Generator, y: int, size: int,
                      level: Difficulty = Difficulty()) -> tuple[np.ndarray, np.ndarray]:
    """A shaded shape: (HWC float32 RGB in [0, 1], HW float32 alpha in [0, 1])."""
    pts = shape_polygon(rng, y, size, level.shapes)
    alpha = _fill(pts, size)
    if level.appendages:
        _appendages(rng, alpha, pts, level.appendages)
    lo, hi = (0.0, 180.0) if level.fg_any_hue else FG_HUES[int(rng.integers(len(FG_HUES)))]
    yy, xx = _coords(size)
    direction = rng.uniform(0, 2 * np.pi)
    shade = np.cos(direction) * xx + np.sin(direction) * yy
    shade = (shade - shade.min()) / max(float(np.ptp(shade)), 1e-6)
    val = rng.uniform(0.55, 0.8) + rng.uniform(0.1, 0.2) * shade
    if level.fg_texture > 0:
        val = val + level.fg_texture * (_texture(rng, size) - 0.5)
    hsv = np.stack(
        [np.full((size, size), rng.uniform(lo, hi)), np.full((size, size), rng.uniform(0.55, 1.0)) * 255, np.clip(val, 0, 1) * 255],
        axis=-1,
    )
    rgb = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32) / 255.0
    return rgb, alpha.astype(np.float32) / 255.0


def _distractors(rng: np.random.Generator, background: np.ndarray, level: Difficulty) -> None:
    """Paint up to ``level.distractors`` small flat shapes of random classes onto ``background`` (in place): they
    belong to the background, so the ground-truth mask leaves them out."""
    size = background.shape[0]
    for _ in range(int(rng.integers(0, level.distractors + 1))):
        pts = shape_polygon(rng, int(rng.integers(2)), size, level.shapes, scale=(0.06, 0.1))
        a = _fill(pts, size).astype(np.float32)[..., None] / 255.0
        colour = rng.uniform(0.1, 0.9, 3).astype(np.float32)
        background[:] = background * (1 - a) + colour * a


def render_sample(rng: np.random.Generator, y: int, place: int, size: int,
                  level: Difficulty = Difficulty()) -> tuple[np.ndarray, np.ndarray]:
    """One image (HWC uint8 RGB) and its ground-truth mask (HW uint8)."""
    background = render_background(rng, place, size, level).astype(np.float32) / 255.0
    if level.distractors:
        _distractors(rng, background, level)
    fg, alpha = render_foreground(rng, y, size, level)
    image = fg * alpha[..., None] + background * (1 - alpha[..., None])
    return np.round(image * 255).astype(np.uint8), np.round(alpha * 255).astype(np.uint8)


def group_plan(rng: np.random.Generator, n: int, correlation: float, balanced: bool) -> list[tuple[int, int]]:
    """(y, place) for ``n`` images. Balanced: n/4 per group. Otherwise half per class and
    ``round((1 - correlation) * n_class)`` of each class on the other family."""
    plan: list[tuple[int, int]] = []
    for y in (0, 1):
        n_class = n // 2 + (n % 2 if y == 0 else 0)
        n_minor = n_class // 2 if balanced else int(round((1.0 - correlation) * n_class))
        plan += [(y, y)] * (n_class - n_minor) + [(y, 1 - y)] * n_minor
    order = rng.permutation(len(plan))
    return [plan[i] for i in order]


MAX_IMAGES = 10_000_000  # per split; beyond it a count is a typo


def check_counts(n_train: int, n_val: int, n_test: int, seed: int) -> None:
    """Image counts a benchmark can be built with (both classes in train and val, every group in test)."""
    check_range("n_train (at least one image per class)", n_train, 2, MAX_IMAGES, integer=True)
    check_range("n_val (at least one image per class)", n_val, 2, MAX_IMAGES, integer=True)
    check_range("n_test (at least one image per group)", n_test, 4, MAX_IMAGES, integer=True)
    check_range("seed", seed, 0, 2**63 - 1, integer=True)


def make_synthetic(
    out: str | Path,
    n_train: int = 2000,
    n_val: int = 400,
    n_test: int = 800,
    correlation: float = 1.0,
    image_size: int = 64,
    seed: int = 0,
    val_correlation: float | None = None,
    difficulty: str | Difficulty = "easy",
) -> Path:
    """Write the benchmark to ``out`` (metadata.csv, images/, segmentations/, config.json); ``difficulty`` is a
    name from :data:`LEVELS` or a :class:`Difficulty`."""
    level = LEVELS.get(difficulty) if isinstance(difficulty, str) else difficulty
    check_counts(n_train, n_val, n_test, seed)
    check_range("correlation", correlation, 0.0, 1.0)
    if val_correlation is not None:
        check_range("val_correlation", val_correlation, 0.0, 1.0)
    check_image_size(image_size)
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16, got {image_size}")
    out = check_writable_dir(out, "output folder")
    rng = np.random.default_rng(seed)
    val_corr = correlation if val_correlation is None else val_correlation
    splits = [
        (0, group_plan(rng, n_train, correlation, balanced=False)),
        (1, group_plan(rng, n_val, val_corr, balanced=False)),
        (2, group_plan(rng, n_test, 1.0, balanced=True)),
    ]
    rows: list[tuple[int, str, int, int, int]] = []
    total = sum(len(plan) for _, plan in splits)
    with progress(total=total, desc="synthetic images") as bar:
        for split, plan in splits:
            for y, place in plan:
                idx = len(rows)
                name = f"{y}_{'land' if place == 0 else 'water'}/{idx:06d}.png"
                image, mask = render_sample(rng, y, place, image_size, level)
                write_png(out / "images" / name, image)
                write_png(out / "segmentations" / name, mask)
                rows.append((idx, name, y, split, place))
                bar.update()
    columns = ("img_id", "img_filename", "y", "split", "place")
    write_bytes(out / "metadata.csv", csv_bytes([dict(zip(columns, r, strict=True)) for r in rows]))
    config = {"generator": "synthetic", "n_train": n_train, "n_val": n_val, "n_test": n_test,
              "correlation": correlation, "val_correlation": val_corr, "image_size": image_size, "seed": seed}
    if not level.easy:  # an easy set's config is what it was before the knob
        level_name = next((n for n in LEVELS.names() if LEVELS.get(n) == level), None)
        config["difficulty"] = {"level": level_name, **asdict(level)}
    write_json(out / "config.json", config)
    log.debug("wrote %d images to %s", len(rows), out)
    return out
