"""Patch-grid helpers on hand-computed arrays, plus roundtrip properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from autobackswap.data.grid import grid_to_mask, grid_to_string, mask_to_grid, patch_fractions, string_to_grid


def test_mask_to_grid_threshold_is_strictly_more_than_a_quarter() -> None:
    # 4x4 mask, 2x2 grid: each 2x2 patch holds 0, 1 (= 25 %, not more), 2 and 4 foreground pixels.
    mask = np.array(
        [[0, 0, 255, 0],
         [0, 0, 0, 0],
         [255, 255, 255, 255],
         [0, 0, 255, 255]],
        np.uint8,
    )
    assert np.array_equal(patch_fractions((mask > 127).astype(np.float32), 2), [[0.0, 0.25], [0.5, 1.0]])
    assert np.array_equal(mask_to_grid(mask, grid=2), [[False, False], [True, True]])
    assert np.array_equal(mask_to_grid(mask, grid=2, threshold=0.2), [[False, True], [True, True]])
    assert np.array_equal(mask_to_grid(mask, grid=2, threshold=0.5), [[False, False], [False, True]])


def test_mask_to_grid_uint8_cutoff_and_bool_input() -> None:
    mask = np.array([[127, 128], [0, 255]], np.uint8)  # > 127 is foreground
    assert np.array_equal(mask_to_grid(mask, grid=2, threshold=0.0), [[False, True], [False, True]])
    assert np.array_equal(mask_to_grid(mask > 127, grid=2, threshold=0.0), [[False, True], [False, True]])


def test_mask_to_grid_non_multiple_size_rounds_borders() -> None:
    # 5x5 image, 2x2 grid: borders round(linspace(0, 5, 3)) = [0, 2, 5] -> patches of 2 and 3 rows/cols.
    mask = np.zeros((5, 5), np.uint8)
    mask[2:, 2:] = 255  # exactly the bottom-right 3x3 patch
    assert np.allclose(patch_fractions((mask > 127).astype(np.float32), 2), [[0, 0], [0, 1]])
    assert np.array_equal(mask_to_grid(mask, grid=2), [[False, False], [False, True]])
    mask[:, :] = 0
    mask[1, 1] = 255  # 1 of the top-left patch's 4 pixels (25 %): not foreground
    mask[4, 0] = 255  # 1 of the bottom-left patch's 6 pixels
    mask[0, 4] = mask[1, 4] = 255  # 2 of the top-right patch's 6 pixels (33 %)
    assert np.allclose(patch_fractions((mask > 127).astype(np.float32), 2), [[0.25, 2 / 6], [1 / 6, 0]])
    assert np.array_equal(mask_to_grid(mask, grid=2), [[False, True], [False, False]])


def test_mask_to_grid_rectangular() -> None:
    mask = np.zeros((4, 8), np.uint8)
    mask[:, 6:] = 255
    assert np.array_equal(mask_to_grid(mask, grid=2), [[False, True], [False, True]])
    assert np.array_equal(mask_to_grid(mask, grid=4), [[False, False, False, True]] * 4)


def test_mask_to_grid_image_smaller_than_grid() -> None:
    with pytest.raises(ValueError, match="smaller than the 16x16 patch grid"):
        mask_to_grid(np.zeros((15, 64), np.uint8), grid=16)
    with pytest.raises(ValueError, match="8x4 px"):
        mask_to_grid(np.zeros((8, 4), np.uint8), grid=5)


def test_grid_to_mask_nearest_neighbour() -> None:
    grid = np.array([[True, False], [False, True]])
    expected = np.array(
        [[1, 1, 0, 0],
         [1, 1, 0, 0],
         [0, 0, 1, 1],
         [0, 0, 1, 1]],
        bool,
    )
    assert np.array_equal(grid_to_mask(grid, 4), expected)
    probs = np.array([[0.1, 0.9], [0.5, 0.3]], np.float32)
    out = grid_to_mask(probs, (2, 6))
    assert out.dtype == np.float32
    expected_probs = np.array([[0.1, 0.1, 0.1, 0.9, 0.9, 0.9], [0.5, 0.5, 0.5, 0.3, 0.3, 0.3]], np.float32)
    assert np.array_equal(out, expected_probs)


def test_grid_to_mask_non_multiple_uses_mask_to_grid_borders() -> None:
    # 5 px from 2 cells: borders [0, 2, 5], the same partition mask_to_grid uses.
    grid = np.array([[True, False], [False, False]])
    expected = np.zeros((5, 5), bool)
    expected[:2, :2] = True
    assert np.array_equal(grid_to_mask(grid, 5), expected)


def test_string_form_is_row_major_with_one_as_foreground() -> None:
    grid = np.array([[True, False, False], [False, True, True], [False, False, False]])
    assert grid_to_string(grid) == "100011000"
    assert np.array_equal(string_to_grid("100011000"), grid)
    assert string_to_grid(" 0110\n").tolist() == [[False, True], [True, False]]  # surrounding space ignored
    assert string_to_grid("1" * 256).shape == (16, 16)


@pytest.mark.parametrize("text", ["", "0" * 2, "0" * 15, "1" * 255, "0" * 257])
def test_string_to_grid_non_square(text: str) -> None:
    with pytest.raises(ValueError, match="not a square number"):
        string_to_grid(text)


@pytest.mark.parametrize("text", ["0120", "abcd", "00 0"])
def test_string_to_grid_bad_characters(text: str) -> None:
    with pytest.raises(ValueError, match="only the characters 0 and 1"):
        string_to_grid(text)


grids = st.integers(1, 20).flatmap(lambda g: arrays(np.bool_, (g, g)))


@given(grids)
def test_string_roundtrip(grid: np.ndarray) -> None:
    text = grid_to_string(grid)
    assert len(text) == grid.size and set(text) <= {"0", "1"}
    back = string_to_grid(text)
    assert back.dtype == bool
    assert np.array_equal(back, grid)
    assert grid_to_string(back) == text


@settings(max_examples=60)
@given(grids, st.integers(0, 40), st.integers(0, 40))
def test_grid_mask_grid_roundtrip(grid: np.ndarray, extra_h: int, extra_w: int) -> None:
    g = grid.shape[0]
    h, w = g + extra_h, g + extra_w  # any size at least as large as the grid
    mask = grid_to_mask(grid, (h, w))
    assert mask.shape == (h, w)
    assert np.array_equal(mask_to_grid(mask, g), grid)
    assert np.array_equal(mask_to_grid(mask.astype(np.uint8) * 255, g), grid)
