"""Named, independent random streams derived from one experiment seed.

Every random choice of a run draws from a stream named for its use (:data:`STREAMS`), derived from the
seed with :class:`numpy.random.SeedSequence` (the name's position is the spawn key): no two uses share
a stream, no use depends on how much another one drew, and nothing touches the global RNGs.
"""

from __future__ import annotations

import numpy as np
import torch

STREAMS = (
    "label_sample",  # which training images get patch labels (from segmentations or a larger label set)
    "detector_split",  # the detector's hold-out split of its labelled images
    "detector_init",  # the detector's weights
    "detector_train",  # the detector's batch order and augmentation
    "separation",  # inpainting noise, per image (with the image index)
    "composition",  # contact-sheet composites; BackSwapDataset items (with epoch and index)
    "classifier_init",  # the classifier's weights
    "classifier_train",  # the classifier's batch order, flips, swaps and augmentation
    "rank",  # the per-rank composition stream under torchrun (with the rank)
    "dfr",  # DFR's val halves and balanced subsets
    "diagnostic_inpainting",  # the diagnostic sets' inpainting, per test image (with the index)
    "diagnostic_donors",  # the diagnostic sets' background donors
    "label_app",  # the labelling app's tie-breaking order (0) and preview donors (1)
)


def seed_sequence(seed: int, stream: str, *extra: int) -> np.random.SeedSequence:
    """The :class:`~numpy.random.SeedSequence` of ``stream`` (and optional sub-keys, e.g. a rank)."""
    if stream not in STREAMS:
        raise KeyError(f"unknown random stream {stream!r}; valid names: {', '.join(STREAMS)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return np.random.SeedSequence(seed, spawn_key=(STREAMS.index(stream), *extra))


def rng(seed: int, stream: str, *extra: int) -> np.random.Generator:
    """A NumPy generator for ``stream``."""
    return np.random.default_rng(seed_sequence(seed, stream, *extra))


def int_seed(seed: int, stream: str, *extra: int) -> int:
    """A 63-bit integer seed for ``stream`` (for APIs that take an int)."""
    state = seed_sequence(seed, stream, *extra).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31 | int(state[1]) >> 1) & (2**63 - 1)


def generator(seed: int, stream: str, *extra: int) -> torch.Generator:
    """A torch generator for ``stream``."""
    return torch.Generator().manual_seed(int_seed(seed, stream, *extra))
