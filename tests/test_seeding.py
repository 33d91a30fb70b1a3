"""Named random streams: one per use, independent, reproducible, and no global RNG touched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autobackswap import seeding


def test_the_same_name_and_seed_give_the_same_stream() -> None:
    assert np.array_equal(seeding.rng(3, "label_sample").integers(0, 1000, 20),
                          seeding.rng(3, "label_sample").integers(0, 1000, 20))
    a = torch.rand(5, generator=seeding.generator(3, "classifier_train"))
    assert torch.equal(a, torch.rand(5, generator=seeding.generator(3, "classifier_train")))


def test_every_named_stream_differs_from_every_other() -> None:
    draws = {name: tuple(seeding.rng(0, name).integers(0, 2**31, 4)) for name in seeding.STREAMS}
    assert len(set(draws.values())) == len(seeding.STREAMS)
    ints = {seeding.int_seed(0, name) for name in seeding.STREAMS}
    assert len(ints) == len(seeding.STREAMS) and all(0 <= i < 2**63 for i in ints)


def test_sub_keys_split_a_stream() -> None:
    """Per-image separation streams differ from each other and from the stream's root."""
    first = [tuple(seeding.rng(5, "separation", i).integers(0, 2**31, 3)) for i in range(50)]
    assert len(set(first)) == 50
    assert tuple(seeding.rng(5, "separation").integers(0, 2**31, 3)) not in first
    assert seeding.rng(5, "separation", 1).random() != seeding.rng(6, "separation", 1).random()


def test_unknown_stream_lists_the_valid_names() -> None:
    with pytest.raises(KeyError, match="unknown random stream 'detector'; valid names: label_sample, detector_split"):
        seeding.rng(0, "detector")


def test_nothing_touches_the_global_generators() -> None:
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    seeding.generator(0, "composition").manual_seed(1)
    seeding.rng(0, "dfr").random(10)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)
