"""Training methods, registered by name: ERM, AutoBackSwap and its oracle, and the baselines.

=================  ==========================================================================
``erm``            Plain training. Needs no group labels.
``autobackswap``   Learned masks -> separation -> class-balanced background swaps.
``oracle``         The same pipeline with ground-truth segmentations (an upper bound).
``groupdro``       Online GroupDRO (Sagawa et al. 2020). Needs train group labels ``(y, place)``.
``dfr``            Deep Feature Reweighting (Kirichenko et al. 2023). Needs val group labels.
``jtt``            Just Train Twice (Liu et al. 2021): upweight the errors of a short ERM run.
``erm_aug``        ERM with MixUp / CutMix / colour jitter. Needs no group labels.
``random_paste``   The AutoBackSwap cut-outs pasted on *original* training images, drawn uniformly.
=================  ==========================================================================

Options are given as ``name:key=value`` (``groupdro:eta=0.05``, ``erm_aug:aug=cutmix+color``).
"""

from . import autobackswap, dfr, erm, erm_aug, groupdro, jtt, random_paste  # noqa: F401  (registration)
from .base import METHODS, Method, MethodContext, MethodOutput, make_method, parse_method_spec

__all__ = ["METHODS", "Method", "MethodContext", "MethodOutput", "make_method", "parse_method_spec"]
