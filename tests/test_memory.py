"""Bounded memory: on-disk arrays read per batch, and a streamed pipeline that gives the same images,
cut-outs, composites and batches as the in-memory one."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from autobackswap.compose.swap import BackgroundSwap
from autobackswap.data.layout import load_images, read_dataset
from autobackswap.data.splits import load_experiment_data
from autobackswap.data.stream import DiskArray, image_cache, is_disk_backed, write_npy
from autobackswap.io import fingerprint
from autobackswap.pipeline import PipelineConfig, build_banks
from autobackswap.train.sources import SwapSource

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture
def rows(tmp_path: Path) -> tuple[np.ndarray, DiskArray]:
    a = np.arange(10 * 2 * 3, dtype=np.uint8).reshape(10, 2, 3)  # row i holds 6i .. 6i+5
    return a, write_npy(tmp_path / "a.npy", a.shape, a.dtype, [a[:4], a[4:9], a[9:]])


def test_disk_array_indexes_like_numpy(rows: tuple[np.ndarray, DiskArray]) -> None:
    a, d = rows
    assert d.shape == (10, 2, 3) and len(d) == 10 and d.dtype == np.uint8 and d.ndim == 3 and d.nbytes == 60
    assert np.array_equal(np.load(d.path), a)  # a plain .npy file
    assert np.array_equal(d[3], [[18, 19, 20], [21, 22, 23]]) and np.array_equal(d[-1], a[9])
    assert np.array_equal(d[2:5], a[2:5]) and np.array_equal(d[::4], a[[0, 4, 8]]) and d[7:3].shape == (0, 2, 3)
    idx = np.array([[9, 0], [3, 3]])  # any shape, any order, repeats
    assert np.array_equal(d[idx], a[idx])
    assert np.array_equal(d[a[:, 0, 0] % 12 == 0], a[[0, 2, 4, 6, 8]])
    t = d[torch.tensor([5, 1])]  # a tensor index gives a tensor
    assert isinstance(t, torch.Tensor) and torch.equal(t, torch.from_numpy(a[[5, 1]]))
    assert np.array_equal(pickle.loads(pickle.dumps(d))[[1, 8]], a[[1, 8]])  # the path travels, not the data
    assert np.array_equal(np.asarray(d), a)
    assert [s for s, _ in d.chunks(4)] == [0, 4, 8]


def test_disk_array_errors(rows: tuple[np.ndarray, DiskArray], tmp_path: Path) -> None:
    _, d = rows
    with pytest.raises(IndexError, match="out of bounds"):
        d[10]
    with pytest.raises(IndexError, match="out of bounds"):
        d[[0, 11]]
    with pytest.raises(IndexError, match="first axis only"):
        d[0, 1]
    with pytest.raises(IndexError, match="must be integers"):
        d[np.array([0.5])]
    data = d.path.read_bytes()
    (tmp_path / "short.npy").write_bytes(data[:-7])
    with pytest.raises(ValueError, match="short.npy: file is truncated"):
        DiskArray(tmp_path / "short.npy")


def test_write_npy_is_atomic(tmp_path: Path) -> None:
    def chunks():  # noqa: ANN202
        yield np.zeros((2, 3), np.uint8)
        raise RuntimeError("decoder died")

    with pytest.raises(RuntimeError, match="decoder died"):
        write_npy(tmp_path / "x.npy", (4, 3), np.uint8, chunks())
    with pytest.raises(ValueError, match="wrote 2 rows, expected 4"):
        write_npy(tmp_path / "x.npy", (4, 3), np.uint8, [np.zeros((2, 3), np.uint8)])
    with pytest.raises(ValueError, match="do not match"):
        write_npy(tmp_path / "x.npy", (4, 3), np.uint8, [np.zeros((4, 2), np.uint8)])
    assert list(tmp_path.iterdir()) == []  # no file under the final name, no temp file left


def test_image_cache_matches_load_images_and_is_reused(tiny_synthetic: Path, tmp_path: Path) -> None:
    records = read_dataset(tiny_synthetic).split("val")
    cached = image_cache(records, 24, tmp_path, "val")
    assert np.array_equal(cached[:], load_images(records, 24))
    stamp = cached.path.stat().st_mtime_ns
    again = image_cache(records, 24, tmp_path, "val")
    assert again.path == cached.path and again.path.stat().st_mtime_ns == stamp
    other = image_cache(records[:-1], 24, tmp_path, "val")  # a different split is a different cache
    assert other.path != cached.path and len(other) == len(records) - 1
    assert fingerprint(cached) == fingerprint(cached[:])  # the same digest, read in chunks


def test_streamed_pipeline_matches_in_memory(tiny_synthetic: Path, tmp_path: Path) -> None:
    cfg = PipelineConfig.from_options({"grid": 8, "label_budget": 20})
    memory = load_experiment_data(tiny_synthetic, 32, tmp_path)
    stream = load_experiment_data(tiny_synthetic, 32, tmp_path, stream=True)  # the same run folder: caches are shared
    assert is_disk_backed(stream.train.images) and not is_disk_backed(memory.train.images)
    for split in ("train", "val", "test"):
        assert np.array_equal(getattr(stream, split).images[:], getattr(memory, split).images)
    for oracle in (True, False):
        a = build_banks(memory, cfg, seed=0, oracle=oracle)
        b = build_banks(stream, cfg, seed=0, oracle=oracle)
        assert a.info["separation"] == b.info["separation"]  # same cache folder: nothing separated twice
        assert a.info["mask_iou"] == b.info["mask_iou"] and a.info["separation_counts"] == b.info["separation_counts"]
        assert is_disk_backed(b.swap.fg) and is_disk_backed(b.swap.bg) and isinstance(a.swap.fg, torch.Tensor)
        assert torch.equal(a.swap.usable, b.swap.usable) and int(b.swap.usable.sum()) >= 30
        src_a = SwapSource(memory.train.images, memory.train.labels, a.swap)
        src_b = SwapSource(stream.train.images, stream.train.labels, b.swap)
        batches_a = list(src_a.batches(0, 16, torch.Generator().manual_seed(1)))
        batches_b = list(src_b.batches(0, 16, torch.Generator().manual_seed(1)))
        assert len(batches_a) == len(batches_b) == 3
        for (xa, ya), (xb, yb) in zip(batches_a, batches_b, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    swap = BackgroundSwap(b.swap.fg, b.swap.bg, stream.train.labels)  # the drop-in transform on disk banks
    x = torch.zeros(4, 3, 32, 32)
    out = swap(x, torch.tensor([0, 1, 2, 3]), torch.Generator().manual_seed(0))
    assert out.shape == (4, 3, 32, 32) and out.abs().sum() > 0
