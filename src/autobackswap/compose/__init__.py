"""Composition: class-balanced background swaps (functional core, batch transform, Dataset)."""

from .functional import JitterConfig, SwapParams, apply_params, sample_params
from .swap import BackgroundSwap, BackSwapDataset, SwapConfig

__all__ = ["BackSwapDataset", "BackgroundSwap", "JitterConfig", "SwapConfig", "SwapParams",
           "apply_params", "sample_params"]
