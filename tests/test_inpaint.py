"""Inpainters: every registry entry fills the hole, leaves the rest alone and is reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from autobackswap.separate import INPAINTERS, create_inpainter
from autobackswap.separate.inpaint import mean_colour, scramble_patches_fill

RED = np.array([255, 0, 0], np.uint8)
EXPECTED = {"telea", "ns", "patchmatch", "gray", "mean", "noise", "scramble_pixels", "scramble_patches"}


def holed_image(h: int = 32, w: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured image with a pure-red square object, and the hole that covers it."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 200, (h, w, 3)).astype(np.uint8)
    image[..., 0] //= 2  # the background is never pure red
    hole = np.zeros((h, w), bool)
    hole[h // 4 : h // 4 + h // 3, w // 3 : w // 3 + w // 3] = True
    image[hole] = RED
    return image, hole


def test_registry_holds_every_documented_inpainter() -> None:
    assert EXPECTED <= set(INPAINTERS.names())


def test_unknown_inpainter_lists_the_valid_names() -> None:
    with pytest.raises(KeyError) as exc:
        create_inpainter("aot-gan")
    message = exc.value.args[0]
    assert "unknown inpainter 'aot-gan'" in message
    for name in EXPECTED:
        assert name in message


@pytest.mark.parametrize("name", INPAINTERS.names())
@pytest.mark.parametrize("shape", [(32, 32), (30, 27)], ids=["square", "odd"])
def test_inpainter_fills_the_hole_only(name: str, shape: tuple[int, int]) -> None:
    image, hole = holed_image(*shape)
    original = image.copy()
    inpaint = create_inpainter(name)
    out = inpaint(image, hole, np.random.default_rng(1))
    assert np.array_equal(image, original)  # the input is not modified
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out[~hole], image[~hole])  # pixels outside the hole unchanged
    assert not np.all(out[hole] == RED, axis=-1).any()  # no pixel of the object survives
    again = inpaint(image, hole, np.random.default_rng(1))
    assert np.array_equal(out, again)  # reproducible from the generator alone


@pytest.mark.parametrize("name", INPAINTERS.names())
def test_inpainter_with_an_empty_hole_returns_the_image(name: str) -> None:
    image, _ = holed_image()
    out = create_inpainter(name)(image, np.zeros(image.shape[:2], bool), np.random.default_rng(0))
    assert np.array_equal(out, image)


def test_constant_fills_hand_computed() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    image[:, :2] = (10, 20, 30)
    image[:, 2:] = (20, 40, 61)
    hole = np.zeros((4, 4), bool)
    hole[1:3, 1:3] = True
    # known pixels: 6 of (10, 20, 30) and 6 of (20, 40, 61) -> mean (15, 30, 45.5) -> rounded (15, 30, 46)
    assert np.array_equal(mean_colour(image, hole), [15, 30, 46])
    gray = create_inpainter("gray")(image, hole, np.random.default_rng(0))
    assert np.all(gray[hole] == 128)
    mean = create_inpainter("mean")(image, hole, np.random.default_rng(0))
    assert np.all(mean[hole] == [15, 30, 46])


def test_scramble_fills_draw_only_known_content() -> None:
    image, hole = holed_image()
    known = {tuple(p) for p in image[~hole]}
    for name in ("scramble_pixels", "scramble_patches"):
        out = create_inpainter(name)(image, hole, np.random.default_rng(0))
        assert {tuple(p) for p in out[hole]} <= known


def test_scramble_patches_copies_whole_cells() -> None:
    # 16 x 16 image of four 8 x 8 cells with distinct colours; the hole is one full cell
    image = np.zeros((16, 16, 3), np.uint8)
    colours = [(10, 0, 0), (0, 10, 0), (0, 0, 10), (10, 10, 10)]
    for k, (y, x) in enumerate([(0, 0), (0, 8), (8, 0), (8, 8)]):
        image[y : y + 8, x : x + 8] = colours[k]
    hole = np.zeros((16, 16), bool)
    hole[8:, 8:] = True
    out = scramble_patches_fill(image, hole, np.random.default_rng(0), patch=8)
    filled = out[8:, 8:].reshape(-1, 3)
    assert (filled == filled[0]).all() and tuple(filled[0]) in colours[:3]


def test_noise_fill_depends_on_the_generator() -> None:
    image, hole = holed_image()
    inpaint = create_inpainter("noise")
    a = inpaint(image, hole, np.random.default_rng(0))
    b = inpaint(image, hole, np.random.default_rng(1))
    assert not np.array_equal(a, b)


def test_whole_image_hole_does_not_crash() -> None:
    image, _ = holed_image()
    hole = np.ones(image.shape[:2], bool)
    for name in ("gray", "mean", "noise", "scramble_pixels", "scramble_patches"):
        out = create_inpainter(name)(image, hole, np.random.default_rng(0))
        assert out.shape == image.shape and out.dtype == np.uint8
