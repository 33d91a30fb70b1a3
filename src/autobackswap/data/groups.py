"""Groups: a group is a (class, place) pair; a *majority* group is a class's most frequent place in training."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np


def group_counts(y: Sequence[int] | np.ndarray, place: Sequence[int] | np.ndarray) -> dict[tuple[int, int], int]:
    """``{(y, place): count}`` over the groups present."""
    return dict(Counter(zip(np.asarray(y).tolist(), np.asarray(place).tolist(), strict=True)))


def majority_groups(train_counts: dict[tuple[int, int], int]) -> set[tuple[int, int]]:
    """Each class's most frequent place in ``train_counts``, as ``{(y, place)}``."""
    best: dict[int, tuple[int, int]] = {}
    for (y, p), n in train_counts.items():
        if y not in best or n > best[y][1]:
            best[y] = (p, n)
    return {(y, p) for y, (p, _) in best.items()}


def group_ids(labels: np.ndarray, place: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Group index per sample and the sorted list of ``(label index, place)`` groups present."""
    pairs = sorted(set(zip(np.asarray(labels).tolist(), np.asarray(place).tolist(), strict=True)))
    index = {g: i for i, g in enumerate(pairs)}
    ids = np.array([index[(a, b)] for a, b in zip(labels.tolist(), place.tolist(), strict=True)], dtype=np.int64)
    return ids, pairs


def minority_groups(labels: np.ndarray, place: np.ndarray) -> list[tuple[int, int]]:
    """Groups present in ``(labels, place)`` whose place is not their class's most frequent one."""
    counts = group_counts(labels, place)
    major = majority_groups(counts)
    return sorted(g for g in counts if g not in major)
