"""TuxBirds: a Waterbirds-like benchmark built offline from real photo cut-outs on real photos.

* ``y`` (the class): water bird (1) or land bird (0), from the photo cut-outs with alpha in Debian's
  ``tuxpaint-stamps-default`` (lists curated by file name in :mod:`.photo_lists`).
* ``place`` (the spurious attribute): water (1) or land (0) background, a random crop of a curated
  photo from Debian wallpaper packages.
* Each image is a bird pasted onto a background crop, with jitter: crop position and size,
  background flip, bird scale, horizontal flip, a small rotation and a random position that keeps
  the whole bird in the frame. The ground-truth mask is the cut-out's alpha channel moved by the same
  transform: ``segmentations/<img_filename>.png``, > 127 = foreground.
* Train and val follow ``place == y`` with probability ``correlation`` (default 1.0: no minority
  group; 0.95 is the Waterbirds setting). The test split is group-balanced, n/4 per group.

**Two test settings** share the same train and val images:

* ``seen``: the test pastes the *training* bird instances, with new jitter, on background photos
  that no train or val image uses. This measures background reliance alone.
* ``unseen``: the test uses bird instances *and* background photos that no train or val image uses
  (wherever a class or place has two or more of them; a single one is shared, with a warning).

``OUT/seen/`` and ``OUT/unseen/`` are each a complete dataset in the Waterbirds layout (the train
and val files are byte-identical copies), so ``autobackswap experiment OUT/seen`` and
``... OUT/unseen`` both work. ``OUT/contact_sheet.png`` shows samples per group and split.

**Image sizes.** Everything is produced at the working size ``image_size`` (square, default 64 px):
background crops, whatever the photo's resolution, are resized to it (area filter when shrinking),
and cut-outs are resized to their drawn scale before pasting, so images and masks come out at exactly
``image_size``. The rest of the pipeline likewise resizes any larger (or smaller) image and mask to
its own working size when it loads a dataset (:func:`autobackswap.data.layout.load_images`); masks,
inpainted backgrounds and composites are all made at that working size.

Everything random is drawn from generators seeded by ``seed`` (one stream per split and setting, so
the train and val images do not depend on ``n_test`` or the test setting): the same seed and assets
give the same bytes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import AutoBackSwapError, DataError
from ..io import csv_bytes, encode_png, write_bytes, write_json, write_png
from ..progress import progress
from ..tensors import composite, to_images
from .assets import default_assets_dir, package_version, prepare_assets
from .images import image_grid, pil_to_rgb, resize_rgb
from .photo_lists import CURATED_BACKGROUNDS, CURATED_BIRDS, BackgroundSpec, BirdSpec
from .synthetic import group_plan

log = logging.getLogger(__name__)

SETTINGS: tuple[str, ...] = ("seen", "unseen")
GENERATOR = "tuxbirds"
STAMP_MAX = 2.0  # cut-outs are kept at most STAMP_MAX * image_size px on their long side
BACKGROUND_MAX = 4.0  # background regions are kept at most BACKGROUND_MAX * image_size px on their short side


@dataclass(frozen=True)
class PhotoJitter:
    """Ranges of the random jitter of each sample."""

    scale: tuple[float, float] = (0.5, 0.85)  # long side of the bird / image size
    rotation: float = 15.0  # degrees, uniform in [-rotation, rotation]
    crop: tuple[float, float] = (0.45, 1.0)  # crop side / short side of the background region
    flip: bool = True  # horizontal flips of bird and background


@dataclass(frozen=True)
class PasteParams:
    """Everything that decides one sample (sample, then apply). Positions are fractions."""

    bird: int  # index into the bird list
    background: int  # index into the background list
    crop_x: float
    crop_y: float
    crop_side: float
    bg_flip: bool
    scale: float
    angle: float
    flip: bool
    pos_x: float
    pos_y: float


# ----------------------------------------------------------------------------- loading
def load_cutout(path: str | Path, image_size: int) -> np.ndarray:
    """A cut-out as premultiplied float32 RGBA in [0, 1], cropped to its alpha's bounding box and
    shrunk (area filter) to at most ``STAMP_MAX * image_size`` px on its long side."""
    try:
        with Image.open(path) as img:
            img.load()
            has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
            rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise DataError(path, "cut-out image not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"cannot decode cut-out ({exc})") from None
    if not has_alpha:
        raise DataError(path, "cut-out has no alpha channel; the mask comes from the alpha")
    alpha = rgba[..., 3]
    ys, xs = np.nonzero(alpha > 0)
    if ys.size == 0:
        raise DataError(path, "cut-out is fully transparent")
    rgba = rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].copy()
    rgba[..., :3] *= rgba[..., 3:4]  # premultiply: resizing then mixes no hidden colour into the edge
    h, w = rgba.shape[:2]
    limit = STAMP_MAX * image_size
    if max(h, w) > limit:
        f = limit / max(h, w)
        return np.asarray(cv2.resize(rgba, (max(1, round(w * f)), max(1, round(h * f))),
                                     interpolation=cv2.INTER_AREA), dtype=np.float32)
    return rgba


def load_background(path: str | Path, box: tuple[float, float, float, float], image_size: int) -> np.ndarray:
    """The ``box`` region of a photo (HWC uint8 RGB), shrunk to at most ``BACKGROUND_MAX * image_size``
    px on its short side. JPEGs are decoded at a reduced scale when that loses nothing."""
    x0, y0, x1, y1 = box
    if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
        raise DataError(path, f"crop box {box} must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1")
    limit = BACKGROUND_MAX * image_size
    try:
        with Image.open(path) as img:
            if img.format == "JPEG":
                w, h = img.size
                short = min((x1 - x0) * w, (y1 - y0) * h)
                if short > limit:
                    f = limit / short
                    img.draft("RGB", (max(1, int(w * f) + 1), max(1, int(h * f) + 1)))
            img.load()
            rgb = pil_to_rgb(img)
    except FileNotFoundError:
        raise DataError(path, "background photo not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"cannot decode background photo ({exc})") from None
    h, w = rgb.shape[:2]
    region = rgb[round(y0 * h) : max(round(y1 * h), round(y0 * h) + 1), round(x0 * w) : max(round(x1 * w), round(x0 * w) + 1)]
    rh, rw = region.shape[:2]
    if min(rh, rw) > limit:
        f = limit / min(rh, rw)
        region = cv2.resize(region, (max(1, round(rw * f)), max(1, round(rh * f))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(region)


# ----------------------------------------------------------------------------- sample, then apply
def sample_params(rng: np.random.Generator, bird: int, background: int, jitter: PhotoJitter) -> PasteParams:
    """Draw the jitter of one sample. Always the same number of draws, whatever the options."""
    crop_side = float(rng.uniform(*jitter.crop))
    crop_x, crop_y = (float(v) for v in rng.random(2))
    bg_flip = bool(rng.random() < 0.5) and jitter.flip
    scale = float(rng.uniform(*jitter.scale))
    angle = float(rng.uniform(-jitter.rotation, jitter.rotation))
    flip = bool(rng.random() < 0.5) and jitter.flip
    pos_x, pos_y = (float(v) for v in rng.random(2))
    return PasteParams(bird, background, crop_x, crop_y, crop_side, bg_flip, scale, angle, flip, pos_x, pos_y)


def crop_background(region: np.ndarray, params: PasteParams, image_size: int) -> np.ndarray:
    """The square crop of ``region`` chosen by ``params``, resized to ``image_size`` (HWC uint8)."""
    h, w = region.shape[:2]
    side = max(1, min(round(params.crop_side * min(h, w)), h, w))
    x = round(params.crop_x * (w - side))
    y = round(params.crop_y * (h - side))
    patch = region[y : y + side, x : x + side]
    if params.bg_flip:
        patch = patch[:, ::-1]
    return resize_rgb(np.ascontiguousarray(patch), image_size)


def bird_geometry(stamp_shape: tuple[int, ...], params: PasteParams, image_size: int) -> tuple[int, int, float, float]:
    """Drawn size ``(width, height)`` of the cut-out and its centre ``(cx, cy)`` in pixels (pixel ``i``
    covers ``[i, i + 1)``). The scale is reduced where the rotated bird would not fit in 96 % of the
    frame; the position keeps the whole rotated bounding box inside the frame."""
    h0, w0 = stamp_shape[:2]
    f = params.scale * image_size / max(h0, w0)
    w, h = w0 * f, h0 * f
    c, s = abs(np.cos(np.deg2rad(params.angle))), abs(np.sin(np.deg2rad(params.angle)))
    bw, bh = c * w + s * h, s * w + c * h
    fit = 0.96 * image_size / max(bw, bh)
    if fit < 1.0:
        w, h, bw, bh = w * fit, h * fit, bw * fit, bh * fit
    cx = bw / 2 + params.pos_x * (image_size - bw)
    cy = bh / 2 + params.pos_y * (image_size - bh)
    return max(1, round(w)), max(1, round(h)), float(cx), float(cy)


def paste(background: np.ndarray, stamp: np.ndarray, angle: float, cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
    """Composite a premultiplied RGBA ``stamp`` (already at its drawn size), rotated by ``angle``
    degrees about its centre and centred at ``(cx, cy)``, over ``background`` (HWC uint8).

    Returns the image (HWC uint8 RGB) and the moved alpha (HW uint8, the ground-truth mask)."""
    h, w = stamp.shape[:2]
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, 1.0)
    matrix[:, 2] += (cx - w / 2.0, cy - h / 2.0)
    out_h, out_w = background.shape[:2]
    fg = cv2.warpAffine(stamp, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=(0.0, 0.0, 0.0, 0.0))
    fg[..., 3] = np.clip(fg[..., 3], 0.0, 1.0)
    premult = torch.from_numpy(np.ascontiguousarray(fg)).permute(2, 0, 1)[None]
    rgb = composite(premult, torch.from_numpy(background).permute(2, 0, 1)[None].float() / 255.0)
    image = to_images(rgb)[0]
    return image, np.round(fg[..., 3] * 255.0).astype(np.uint8)


def render(params: PasteParams, stamps: Sequence[np.ndarray], regions: Sequence[np.ndarray],
           image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``params``: one image (HWC uint8 RGB) and its ground-truth mask (HW uint8)."""
    background = crop_background(regions[params.background], params, image_size)
    stamp = stamps[params.bird]
    if params.flip:
        stamp = stamp[:, ::-1]
    w, h, cx, cy = bird_geometry(stamp.shape, params, image_size)
    shrink = w < stamp.shape[1] or h < stamp.shape[0]
    stamp = cv2.resize(np.ascontiguousarray(stamp), (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return paste(background, stamp, params.angle, cx, cy)


# ----------------------------------------------------------------------------- splits
def split_pool(rng: np.random.Generator, items: Sequence[int], test_fraction: float) -> tuple[list[int], list[int]]:
    """Split ``items`` into (train+val pool, held-out test pool). A single item is shared by both."""
    n = len(items)
    if n < 2:
        return list(items), list(items)
    k = min(n - 1, max(1, round(n * test_fraction)))
    order = rng.permutation(n)
    return sorted(items[i] for i in order[k:]), sorted(items[i] for i in order[:k])


@dataclass
class _Sample:
    row: dict[str, object]
    image: bytes
    mask: bytes


@dataclass
class _SplitPlan:
    key: str  # train, val, test_seen, test_unseen
    split: int
    first_id: int
    groups: list[tuple[int, int]]  # (y, place) per image
    rng: np.random.Generator
    birds: dict[int, list[int]]  # class -> bird indices to draw from
    backgrounds: dict[int, list[int]]  # place -> background indices to draw from


@dataclass
class _Pools:
    birds_train: dict[int, list[int]] = field(default_factory=dict)
    birds_test: dict[int, list[int]] = field(default_factory=dict)
    backgrounds_train: dict[int, list[int]] = field(default_factory=dict)
    backgrounds_test: dict[int, list[int]] = field(default_factory=dict)


def _make_pools(rng: np.random.Generator, birds: Sequence[BirdSpec], backgrounds: Sequence[BackgroundSpec],
                test_fraction: float) -> _Pools:
    pools = _Pools()
    for y in sorted({b.y for b in birds}):
        ids = [i for i, b in enumerate(birds) if b.y == y]
        pools.birds_train[y], pools.birds_test[y] = split_pool(rng, ids, test_fraction)
        if len(ids) < 2:
            log.warning("class y=%d has a single bird instance; the unseen test shares it with training", y)
    for place in sorted({b.place for b in backgrounds}):
        ids = [i for i, b in enumerate(backgrounds) if b.place == place]
        pools.backgrounds_train[place], pools.backgrounds_test[place] = split_pool(rng, ids, test_fraction)
        if len(ids) < 2:
            log.warning("place=%d has a single background photo; the test shares it with training", place)
    return pools


def _check_specs(birds: Sequence[BirdSpec], backgrounds: Sequence[BackgroundSpec]) -> None:
    if sorted({b.y for b in birds}) != [0, 1]:
        raise AutoBackSwapError(f"need birds of both classes y=0 and y=1; got classes {sorted({b.y for b in birds})}")
    if sorted({b.place for b in backgrounds}) != [0, 1]:
        raise AutoBackSwapError(
            f"need backgrounds of both places 0 and 1; got places {sorted({b.place for b in backgrounds})}")
    for kind, names in (("bird", [b.name for b in birds]), ("background", [b.name for b in backgrounds])):
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise AutoBackSwapError(f"{kind} names must be unique; repeated: {', '.join(dupes)}")


# ----------------------------------------------------------------------------- contact sheet
GROUP_NAMES = {(1, 1): "water bird on water", (1, 0): "water bird on land",
               (0, 0): "land bird on land", (0, 1): "land bird on water"}


def contact_sheet(sections: Sequence[tuple[str, dict[tuple[int, int], list[np.ndarray]]]], columns: int = 8) -> np.ndarray:
    """A grid of samples (HWC uint8): one row per (section, group), labelled on the left."""
    rows = [(name, g, groups[g][:columns]) for name, groups in sections for g in GROUP_NAMES if groups.get(g)]
    if not rows:
        raise ValueError("contact sheet needs at least one sample")
    size = rows[0][2][0].shape[0]
    titles = [f"{name}\n{GROUP_NAMES[(y, place)]} (y={y}, place={place})" for name, (y, place), _ in rows]
    return image_grid([images for _, _, images in rows], row_titles=titles, tile=size * max(1, 128 // size), gap=4,
                      row_title_width=190)


# ----------------------------------------------------------------------------- builder
def _install(tmp: Path, target: Path) -> None:
    """Move a finished dataset folder into place, replacing an older TuxBirds build there."""
    if target.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        os.replace(target, trash / target.name)
        os.replace(tmp, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, target)


def _check_target(target: Path) -> None:
    if not target.exists():
        return
    config = target / "config.json"
    try:
        ours = json.loads(config.read_text(encoding="utf-8")).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise AutoBackSwapError(f"{target} exists and is not a TuxBirds dataset; choose another output folder")


def _write_plain(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@dataclass(frozen=True)
class _Options:
    """The checked arguments of one build."""

    n_train: int
    n_val: int
    n_test: int
    correlation: float
    val_correlation: float
    image_size: int
    seed: int
    settings: list[str]
    jitter: PhotoJitter
    test_fraction: float
    preview_columns: int


@dataclass
class _Assets:
    """The bird and background lists with their loaded pixels (same order)."""

    birds: list[BirdSpec]
    backgrounds: list[BackgroundSpec]
    stamps: list[np.ndarray]  # premultiplied RGBA cut-outs, one per bird
    regions: list[np.ndarray]  # background photo regions, one per background
    packages: list[str]  # the Debian packages they come from


def make_photo_benchmark(
    out: str | Path,
    assets: str | Path | None = None,
    n_train: int = 2000,
    n_val: int = 400,
    n_test: int = 800,
    correlation: float = 1.0,
    image_size: int = 64,
    seed: int = 0,
    test_setting: str = "both",
    fetch: bool = True,
    val_correlation: float | None = None,
    birds: Sequence[BirdSpec] | None = None,
    backgrounds: Sequence[BackgroundSpec] | None = None,
    jitter: PhotoJitter | None = None,
    test_fraction: float = 1.0 / 3.0,
    preview_columns: int = 8,
) -> dict[str, Path]:
    """Build TuxBirds into ``out`` and return ``{setting: dataset folder}``.

    ``assets`` is the folder of unpacked Debian packages (default: the user cache dir); missing
    packages are fetched there with ``apt-get download`` unless ``fetch`` is False. ``birds`` and
    ``backgrounds`` replace the curated lists (their paths resolve against ``assets`` the same way).
    ``test_setting`` is ``seen``, ``unseen`` or ``both``; ``test_fraction`` of the bird instances and
    of the background photos of each class and place are held out for the test.
    """
    opts = _check_options(n_train, n_val, n_test, correlation, val_correlation, image_size, seed, test_setting,
                          jitter, test_fraction, preview_columns)
    birds = list(CURATED_BIRDS if birds is None else birds)
    backgrounds = list(CURATED_BACKGROUNDS if backgrounds is None else backgrounds)
    _check_specs(birds, backgrounds)
    out = Path(out)
    for setting in opts.settings:
        _check_target(out / setting)

    loaded = _load_assets(birds, backgrounds, assets, fetch, opts.image_size)
    pools = _make_pools(np.random.default_rng([seed, 0]), birds, backgrounds, opts.test_fraction)
    plans = _plan_splits(opts, pools)
    samples, previews = _render_splits(plans, loaded, opts)
    config = _base_config(opts, loaded, pools, assets)

    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for setting in opts.settings:
        rows = samples["train"] + samples["val"] + samples[f"test_{setting}"]
        written[setting] = _write_setting(out, setting, rows, config)
    _write_overview(out, opts, previews, config)
    log.info("wrote TuxBirds (%s) to %s", ", ".join(opts.settings), out)
    return written


def _check_options(n_train: int, n_val: int, n_test: int, correlation: float, val_correlation: float | None,
                   image_size: int, seed: int, test_setting: str, jitter: PhotoJitter | None, test_fraction: float,
                   preview_columns: int) -> _Options:
    """Check the arguments of :func:`make_photo_benchmark` and fill in their defaults."""
    if not 0.0 <= correlation <= 1.0:
        raise ValueError(f"correlation must lie in [0, 1], got {correlation}")
    val_corr = correlation if val_correlation is None else val_correlation
    if not 0.0 <= val_corr <= 1.0:
        raise ValueError(f"val correlation must lie in [0, 1], got {val_corr}")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16, got {image_size}")
    for name, n in (("n_train", n_train), ("n_val", n_val)):
        if n < 2:
            raise ValueError(f"{name} must be at least 2 (one image per class), got {n}")
    if n_test < 4:
        raise ValueError(f"n_test must be at least 4 (one image per group), got {n_test}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    if test_setting not in (*SETTINGS, "both"):
        raise ValueError(f"test setting must be one of seen, unseen, both; got {test_setting!r}")
    settings = list(SETTINGS) if test_setting == "both" else [test_setting]
    return _Options(n_train, n_val, n_test, correlation, val_corr, image_size, seed, settings,
                    jitter or PhotoJitter(), test_fraction, preview_columns)


def _load_assets(birds: list[BirdSpec], backgrounds: list[BackgroundSpec], assets: str | Path | None,
                 fetch: bool, image_size: int) -> _Assets:
    """Find (fetching what is missing, when allowed) and load every cut-out and background photo."""
    required = [(b.package, b.path) for b in birds] + [(b.package, b.path) for b in backgrounds]
    files = prepare_assets(required, assets, fetch)
    log.info("loading %d cut-outs and %d background photos", len(birds), len(backgrounds))
    stamps = [load_cutout(files[(b.package, b.path)], image_size) for b in birds]
    regions = [load_background(files[(b.package, b.path)], b.box, image_size)
               for b in progress(backgrounds, desc="background photos")]
    return _Assets(birds, backgrounds, stamps, regions, sorted({pkg for pkg, _ in required}))


def _plan_splits(opts: _Options, pools: _Pools) -> list[_SplitPlan]:
    """The groups of every split to render, each with its own random stream: train, val, then the test
    of each chosen setting (``seen`` draws the training birds, ``unseen`` the held-out ones)."""
    seed, n_train, n_val = opts.seed, opts.n_train, opts.n_val
    plans: list[_SplitPlan] = []
    rng = np.random.default_rng([seed, 1])
    plans.append(_SplitPlan("train", 0, 0, group_plan(rng, n_train, opts.correlation, balanced=False), rng,
                            pools.birds_train, pools.backgrounds_train))
    rng = np.random.default_rng([seed, 2])
    plans.append(_SplitPlan("val", 1, n_train, group_plan(rng, n_val, opts.val_correlation, balanced=False), rng,
                            pools.birds_train, pools.backgrounds_train))
    for k, setting in enumerate(SETTINGS):
        if setting in opts.settings:
            rng = np.random.default_rng([seed, 3 + k])
            plans.append(_SplitPlan(f"test_{setting}", 2, n_train + n_val,
                                    group_plan(rng, opts.n_test, 1.0, balanced=True), rng,
                                    pools.birds_train if setting == "seen" else pools.birds_test,
                                    pools.backgrounds_test))
    return plans


def _render_splits(plans: list[_SplitPlan], loaded: _Assets, opts: _Options
                   ) -> tuple[dict[str, list[_Sample]], dict[str, dict[tuple[int, int], list[np.ndarray]]]]:
    """Render every planned image: ``{split key: samples}`` and ``{split key: {group: preview images}}``
    (the first ``preview_columns`` images of each group)."""
    samples: dict[str, list[_Sample]] = {}
    previews: dict[str, dict[tuple[int, int], list[np.ndarray]]] = {}
    with progress(total=sum(len(p.groups) for p in plans), desc="TuxBirds images") as bar:
        for plan in plans:
            samples[plan.key], previews[plan.key] = [], {}
            for j, (y, place) in enumerate(plan.groups):
                sample, image = _render_sample(plan, j, y, place, loaded, opts)
                group = previews[plan.key].setdefault((y, place), [])
                if len(group) < opts.preview_columns:
                    group.append(image)
                samples[plan.key].append(sample)
                bar.update()
    return samples, previews


def _render_sample(plan: _SplitPlan, j: int, y: int, place: int, loaded: _Assets,
                   opts: _Options) -> tuple[_Sample, np.ndarray]:
    """Draw and render the ``j``-th image of ``plan`` (group ``y``, ``place``): its sample and its image."""
    bird = int(plan.rng.choice(plan.birds[y]))
    background = int(plan.rng.choice(plan.backgrounds[place]))
    params = sample_params(plan.rng, bird, background, opts.jitter)
    image, mask = render(params, loaded.stamps, loaded.regions, opts.image_size)
    idx = plan.first_id + j
    folder = "test" if plan.split == 2 else plan.key
    row: dict[str, object] = {
        "img_id": idx, "img_filename": f"{folder}/{idx:06d}_{loaded.birds[bird].name}.png",
        "y": y, "split": plan.split, "place": place,
        "bird": loaded.birds[bird].name, "background": loaded.backgrounds[background].name,
        **{name: (int(v) if isinstance(v, bool) else round(v, 4))
           for name, v in asdict(params).items() if name not in ("bird", "background")},
    }
    return _Sample(row, encode_png(image), encode_png(mask)), image


def _base_config(opts: _Options, loaded: _Assets, pools: _Pools, assets: str | Path | None) -> dict[str, object]:
    """The ``config.json`` fields shared by every setting: arguments, package versions and the split of
    the bird instances and background photos."""
    birds, backgrounds = loaded.birds, loaded.backgrounds
    root = Path(assets) if assets is not None else default_assets_dir()
    return {
        "generator": GENERATOR, "n_train": opts.n_train, "n_val": opts.n_val, "n_test": opts.n_test,
        "correlation": opts.correlation, "val_correlation": opts.val_correlation, "image_size": opts.image_size,
        "seed": opts.seed, "test_fraction": opts.test_fraction, "jitter": asdict(opts.jitter),
        "package_versions": {pkg: package_version(root, pkg) for pkg in loaded.packages},
        "birds": {"train": sorted(birds[i].name for p in pools.birds_train.values() for i in p),
                  "unseen_test": sorted(birds[i].name for p in pools.birds_test.values() for i in p)},
        "backgrounds": {"train": sorted(backgrounds[i].name for p in pools.backgrounds_train.values() for i in p),
                        "test": sorted(backgrounds[i].name for p in pools.backgrounds_test.values() for i in p)},
        "bird_specs": [asdict(b) for b in birds], "background_specs": [asdict(b) for b in backgrounds],
    }


def _write_setting(out: Path, setting: str, samples: list[_Sample], config: dict[str, object]) -> Path:
    """Write the dataset of one test setting into a temporary folder in ``out``, then move it into place
    as ``out/setting`` (nothing is left behind on failure)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{setting}.", suffix=".tmp", dir=out))
    try:
        _write_dataset(tmp, setting, samples, config)
        _install(tmp, out / setting)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / setting


def _write_dataset(folder: Path, setting: str, samples: list[_Sample], config: dict[str, object]) -> None:
    """Images, segmentations, ``config.json`` and ``metadata.csv`` in the Waterbirds layout."""
    for s in progress(samples, desc=f"writing {setting}"):
        name = str(s.row["img_filename"])
        _write_plain(folder / "images" / name, s.image)  # the whole folder is renamed into place
        _write_plain(folder / "segmentations" / name, s.mask)
    write_json(folder / "config.json", {**config, "test_setting": setting})
    write_bytes(folder / "metadata.csv", csv_bytes([s.row for s in samples]))


def _write_overview(out: Path, opts: _Options, previews: dict[str, dict[tuple[int, int], list[np.ndarray]]],
                    config: dict[str, object]) -> None:
    """``out/contact_sheet.png`` (train and each test setting) and the top-level ``out/config.json``."""
    settings = opts.settings
    sections = [("train", previews["train"])] + [(f"test ({s})", previews[f"test_{s}"]) for s in settings]
    write_png(out / "contact_sheet.png", contact_sheet(sections, opts.preview_columns))
    write_json(out / "config.json", {**config, "test_settings": settings, "datasets": {s: s for s in settings}})
