"""AutoBackSwap and its oracle: patch labels -> detector -> separation -> class-balanced swaps."""

from __future__ import annotations

from ..data.splits import ExperimentData
from ..train.loop import TrainConfig, fit
from ..train.sources import SwapSource
from .base import METHODS, MethodContext, MethodOutput, PipelineMethod


@METHODS.register("autobackswap")
class AutoBackSwap(PipelineMethod):
    """Learned masks: patch labels -> detector -> separation -> class-balanced background swaps."""

    name = "autobackswap"
    needs = "no group labels (patch labels on a few hundred training images)"

    def run(self, data: ExperimentData, cfg: TrainConfig, ctx: MethodContext) -> MethodOutput:
        banks = ctx.build_banks(data, self.pipeline, cfg.seed, self.oracle)
        source = SwapSource(data.train.images, data.train.labels, banks.swap, hflip=cfg.hflip)
        result = fit(source, data.val.images, data.val.labels, data.num_classes, cfg)
        counts = banks.info.get("separation_counts", {})
        notes = []
        if counts.get("no_fg") or counts.get("all_fg"):
            notes.append(f"{counts.get('no_fg', 0)} no-fg / {counts.get('all_fg', 0)} all-fg images kept as is")
        if banks.info.get("kept_original"):
            notes.append(f"{banks.info['kept_original']} images below min_confidence kept as originals")
        if banks.info.get("separation_warning"):
            notes.append(f"SEPARATION WARNING (trained with --allow-bad-separation): {banks.info['separation_warning']}")
        return MethodOutput(result.model, result, banks.info, notes)


@METHODS.register("oracle")
class Oracle(AutoBackSwap):
    """The same pipeline with ground-truth segmentations instead of learned masks (upper bound)."""

    name = "oracle"
    needs = "ground-truth segmentations of every training image"
    oracle = True
