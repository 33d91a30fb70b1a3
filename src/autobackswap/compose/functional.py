"""Background swapping as pure functions: *sample* the parameters, then *apply* them.

Tensors are NCHW float in [0, 1]. A foreground is RGBA (alpha in channel 3). Every random choice is
drawn from an explicit ``torch.Generator`` by :func:`sample_params`; :func:`apply_params` is
deterministic, so a composite can be reproduced (and logged) from its parameters alone.

Parameters are drawn on the CPU (the same numbers on every device); :meth:`SwapParams.to` moves the
numeric ones to the device the images are on, and :func:`apply_params` runs there (affine grid and
grid sample, in one batch). The masks and indices (which image is swapped, which background) stay on
the CPU: they index the banks and decide control flow without waiting for the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..tensors import composite, premultiply


@dataclass(frozen=True)
class JitterConfig:
    """Foreground jitter: scale range, rotation (degrees, +-), shift (fraction of the side, +-)."""

    scale: tuple[float, float] = (0.8, 1.2)
    rotation: float = 30.0
    shift: float = 0.15

    def __post_init__(self) -> None:
        if not 0.0 < self.scale[0] <= self.scale[1] <= 100.0:
            raise ValueError(f"jitter scale must satisfy 0 < min <= max <= 100, got {self.scale}")
        if not (0 <= self.rotation <= 360 and 0 <= self.shift <= 10):
            raise ValueError(f"jitter rotation (degrees, in [0, 360]) and shift (fraction of the side, in [0, 10]) "
                             f"are +- ranges, got {self.rotation}, {self.shift}")


@dataclass
class Distractor:
    """A second cut-out pasted on the background *behind* the object: which one (index into the
    foreground bank, -1 for none) and its own jitter."""

    index: torch.Tensor  # (N,) long, -1 = no distractor
    scale: torch.Tensor  # (N,)
    angle: torch.Tensor  # (N,) degrees
    shift: torch.Tensor  # (N, 2)

    @property
    def present(self) -> torch.Tensor:
        return self.index >= 0

    def to(self, device: torch.device) -> Distractor:
        """The jitter on ``device``; the index stays on the CPU."""
        return Distractor(self.index, self.scale.to(device), self.angle.to(device), self.shift.to(device))


@dataclass
class SwapParams:
    swap: torch.Tensor  # (N,) bool: replace this image by a composite
    bg_index: torch.Tensor  # (N,) long: which background (index into the bank)
    scale: torch.Tensor  # (N,)
    angle: torch.Tensor  # (N,) degrees
    shift: torch.Tensor  # (N, 2) (dx, dy) as fractions of the side
    bg_channels: torch.Tensor | None = None  # (N, 3) long: the background's colour channels, permuted
    distractor: Distractor | None = None  # a second cut-out behind the object (SwapConfig.distractor)

    def to(self, device: torch.device) -> SwapParams:
        """The numeric parameters (jitter, channel order) on ``device``; ``swap`` and ``bg_index`` stay on
        the CPU (they index the banks and decide control flow). The same object on the CPU."""
        if torch.device(device).type == "cpu":
            return self
        return SwapParams(self.swap, self.bg_index, self.scale.to(device), self.angle.to(device),
                          self.shift.to(device), None if self.bg_channels is None else self.bg_channels.to(device),
                          None if self.distractor is None else self.distractor.to(device))

    def __getitem__(self, i: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "swap": bool(self.swap[i]), "bg_index": int(self.bg_index[i]), "scale": float(self.scale[i]),
            "angle": float(self.angle[i]), "shift": self.shift[i].tolist()}
        if self.bg_channels is not None:
            out["bg_channels"] = self.bg_channels[i].tolist()
        if self.distractor is not None and bool(self.distractor.present[i]):
            d = self.distractor
            out["distractor"] = {"index": int(d.index[i]), "scale": float(d.scale[i]), "angle": float(d.angle[i]),
                                 "shift": d.shift[i].tolist()}
        return out


def donors_by_class(labels: torch.Tensor, usable: torch.Tensor, num_classes: int) -> list[torch.Tensor]:
    """Indices of usable backgrounds per class (the pool for class-balanced drawing)."""
    return [torch.nonzero((labels == c) & usable).flatten() for c in range(num_classes)]


def draw_balanced(n: int, pools: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
    """``n`` indices drawn class-balanced: a non-empty pool uniformly, then a member of it uniformly."""
    out = torch.zeros(n, dtype=torch.long)
    cls = torch.randint(0, len(pools), (n,), generator=generator)
    u = torch.rand(n, generator=generator)
    for k, pool in enumerate(pools):
        sel = cls == k
        out[sel] = pool[(u[sel] * len(pool)).long().clamp_max(len(pool) - 1)]
    return out


def draw_jitter(n: int, jitter: JitterConfig, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(scale, angle, shift) for ``n`` foregrounds."""
    lo, hi = jitter.scale
    scale = lo + (hi - lo) * torch.rand(n, generator=generator)
    angle = (2 * torch.rand(n, generator=generator) - 1) * jitter.rotation
    shift = (2 * torch.rand(n, 2, generator=generator) - 1) * jitter.shift
    return scale, angle, shift


def sample_params(
    n: int,
    donors: list[torch.Tensor],
    jitter: JitterConfig,
    p: float,
    generator: torch.Generator,
    swappable: torch.Tensor | None = None,
    shuffle_bg_channels: bool = False,
    distractor: float = 0.0,
) -> SwapParams:
    """Draw parameters for ``n`` composites. Backgrounds are **class-balanced**: a class is drawn
    uniformly among the classes that have donors, then a donor image of that class uniformly.

    ``shuffle_bg_channels`` also draws a random permutation of each background's RGB channels (drawn
    last, so the other parameters are the same with it on or off): background colours the training
    photos never had (orange leaves from green ones) then appear behind every class.

    ``distractor`` is the probability that a second cut-out, of a class drawn uniformly (independent of
    the object's class and of the background's), is pasted on the background behind the object with
    jitter of its own (drawn after everything else, so the other draws do not change with it).

    With no donor at all (no image has a usable cut-out and background) nothing is swapped: every
    image keeps its original pixels, as a single unusable image does."""
    pools = [d for d in donors if len(d)]
    if pools:
        bg_index = draw_balanced(n, pools, generator)
    else:
        bg_index = torch.zeros(n, dtype=torch.long)
    swap = torch.rand(n, generator=generator) < p
    if swappable is not None:
        swap &= swappable
    if not pools:
        swap[:] = False
    scale, angle, shift = draw_jitter(n, jitter, generator)
    channels = torch.rand(n, 3, generator=generator).argsort(1) if shuffle_bg_channels else None
    extra = None
    if distractor > 0 and pools:
        index = draw_balanced(n, pools, generator)
        index[torch.rand(n, generator=generator) >= distractor] = -1
        extra = Distractor(index, *draw_jitter(n, jitter, generator))
    return SwapParams(swap, bg_index, scale, angle, shift, channels, extra)


def permute_channels(images: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
    """``images`` (N, 3, H, W) with each image's channels reordered by its row of ``channels`` (N, 3)."""
    return images.gather(1, channels[:, :, None, None].expand_as(images))


def alpha_centroids(fg: torch.Tensor) -> torch.Tensor:
    """(N, 2) alpha-weighted centroids (x, y) in normalised [-1, 1] coordinates."""
    n, _, h, w = fg.shape
    a = fg[:, 3]
    mass = a.sum((1, 2)).clamp_min(1e-6)
    xs = (torch.arange(w, dtype=fg.dtype, device=fg.device) + 0.5) / w * 2 - 1
    ys = (torch.arange(h, dtype=fg.dtype, device=fg.device) + 0.5) / h * 2 - 1
    cx = (a.sum(1) * xs).sum(1) / mass
    cy = (a.sum(2) * ys).sum(1) / mass
    return torch.stack([cx, cy], 1)


def warp_foreground(fg: torch.Tensor, scale: torch.Tensor, angle: torch.Tensor, shift: torch.Tensor,
                    centre: torch.Tensor) -> torch.Tensor:
    """Scale and rotate each RGBA foreground about ``centre``, then shift it. Returns premultiplied RGBA."""
    theta_r = angle * math.pi / 180.0
    cos, sin = torch.cos(theta_r), torch.sin(theta_r)
    # output -> input: i = c + A (o - c - t), A = R(-theta) / s
    a11, a12 = cos / scale, sin / scale
    a21, a22 = -sin / scale, cos / scale
    t = shift * 2.0  # fraction of the side -> normalised units
    ox, oy = centre[:, 0] + t[:, 0], centre[:, 1] + t[:, 1]
    bx = centre[:, 0] - (a11 * ox + a12 * oy)
    by = centre[:, 1] - (a21 * ox + a22 * oy)
    theta = torch.stack([torch.stack([a11, a12, bx], 1), torch.stack([a21, a22, by], 1)], 1).to(fg.dtype)
    premult = premultiply(fg)
    grid = F.affine_grid(theta, list(fg.shape), align_corners=False)
    return F.grid_sample(premult, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def paste_distractors(backgrounds: torch.Tensor, distractors: torch.Tensor, d: Distractor) -> torch.Tensor:
    """``backgrounds`` with each present distractor cut-out (N, 4, H, W) composited on it."""
    if not bool(d.present.any()):
        return backgrounds
    has = torch.nonzero(d.present).flatten().to(backgrounds.device)  # rows found on the CPU: no device sync
    out = backgrounds.clone()
    warped = warp_foreground(distractors[has], d.scale[has], d.angle[has], d.shift[has], alpha_centroids(distractors[has]))
    out[has] = composite(warped, backgrounds[has]).to(out.dtype)
    return out


def apply_params(images: torch.Tensor, fg: torch.Tensor, backgrounds: torch.Tensor, params: SwapParams,
                 centre: torch.Tensor | None = None, distractors: torch.Tensor | None = None) -> torch.Tensor:
    """Composites for the swapped entries, the original ``images`` elsewhere.

    ``fg``: (N, 4, H, W) the batch's own foregrounds; ``backgrounds``: (N, 3, H, W) already gathered
    with ``params.bg_index``; ``distractors``: (N, 4, H, W) the foregrounds at ``params.distractor.index``
    (any row where there is none), needed when ``params.distractor`` is set.
    """
    sel = params.swap  # on the CPU: deciding what to do needs no device sync
    if params.bg_channels is not None:
        backgrounds = permute_channels(backgrounds, params.bg_channels)
    if params.distractor is not None:
        if distractors is None:
            raise ValueError("params carry distractors: pass their foregrounds as distractors=")
        backgrounds = paste_distractors(backgrounds, distractors, params.distractor)
    if bool(sel.all()):  # the common case (p = 1): no copy of the originals needed
        c = alpha_centroids(fg) if centre is None else centre
        return composite(warp_foreground(fg, params.scale, params.angle, params.shift, c), backgrounds)
    out = images.clone()
    if sel.any():
        sel = torch.nonzero(sel).flatten().to(images.device)  # the swapped rows, found on the CPU
        c = alpha_centroids(fg[sel]) if centre is None else centre[sel]
        warped = warp_foreground(fg[sel], params.scale[sel], params.angle[sel], params.shift[sel], c)
        out[sel] = composite(warped, backgrounds[sel]).to(out.dtype)
    return out
