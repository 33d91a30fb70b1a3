"""Random paste: the ablation of inpainting and class balance."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from ..compose.sheets import composites_for, separation_sheet
from ..compose.swap import BackgroundSwap
from ..data.splits import ExperimentData
from ..train.loop import TrainConfig, fit
from ..train.sources import SwapSource
from .base import METHODS, MethodContext, MethodOutput, PipelineMethod


def uniform_swap(foregrounds: np.ndarray, backgrounds: np.ndarray, labels: np.ndarray, config: Any) -> Any:
    """A :class:`~autobackswap.compose.swap.BackgroundSwap` whose donor is drawn uniformly among all
    images (not class-balanced)."""
    swap = BackgroundSwap(foregrounds, backgrounds, labels, config, num_classes=1 + int(np.max(labels)))
    swap.donors = [torch.arange(len(labels))]
    return swap


@METHODS.register("random_paste")
class RandomPaste(PipelineMethod):
    """The ablation of inpainting and class balance: each training image's cut-out (the same learned
    masks as ``autobackswap``) is pasted, with the same jitter, onto another training image *as is*,
    its own object still in it, drawn uniformly at random. Takes every ``autobackswap`` option."""

    name = "random_paste"
    needs = "no group labels (patch labels on a few hundred training images)"

    def run(self, data: ExperimentData, cfg: TrainConfig, ctx: MethodContext) -> MethodOutput:
        banks = ctx.build_banks(data, self.pipeline, cfg.seed, False)
        fg = np.asarray(banks.swap.fg)  # a tensor, or a DiskArray when the banks stream from disk
        # bg_only is off here: these "backgrounds" are original images with their own object in them
        swap = uniform_swap(fg, data.train.images, data.train.labels, replace(self.pipeline.swap, bg_only=0.0))
        info = {k: v for k, v in banks.info.items() if k != "contact_sheet"}
        rows = np.linspace(0, len(data.train) - 1, min(8, len(data.train))).round().astype(int)
        sheet = separation_sheet(ctx.cache_dir / "random_paste" / f"contact_sheet_seed{cfg.seed}.png",
                                 data.train.images[rows], fg[rows], data.train.images[rows],
                                 composites_for(swap, data.train.images, rows, 3, cfg.seed),
                                 background_title="original")
        info["contact_sheet"] = str(sheet)
        source = SwapSource(data.train.images, data.train.labels, swap, hflip=cfg.hflip)
        result = fit(source, data.val.images, data.val.labels, data.num_classes, cfg)
        return MethodOutput(result.model, result, info)
