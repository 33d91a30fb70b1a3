"""Disk-backed arrays: datasets and swap banks that are read per batch, never held whole in RAM.

A :class:`DiskArray` is a read-only ``.npy`` file (C order) read row by row with ``os.preadv``: no
memory map, so reading a batch costs the batch's bytes and nothing stays resident afterwards (the
kernel's page cache may keep the file, but that is not the process's memory). It indexes like a
NumPy array along its first axis: an int, a slice or an integer array gives an ``np.ndarray``; an
integer ``torch.Tensor`` gives a ``torch.Tensor``, so the composition code gathers batches from a
bank on disk exactly as from a tensor in memory.

:func:`write_npy` writes such a file from an iterable of chunks, atomically (temp file + rename):
an interrupted write leaves no file under the final name. :func:`image_cache` decodes a split's
images once into one (``RUN/cache/images_<split>_<size>_<digest>.npy``); the digest covers the
file names, sizes and modification times, so a changed dataset gets a new cache.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_open, digest
from ..progress import progress
from .images import decode_images
from .layout import ImageDataset, Record, load_segmentations

log = logging.getLogger(__name__)

CHUNK = 256  # rows decoded / written / scanned at a time


class DiskArray:
    """A read-only ``.npy`` file of shape (N, ...) read per row (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self._fd: int | None = None
        self._pid = -1
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(fh)
            self.offset = fh.tell()
        if fortran or dtype.hasobject or len(shape) < 1:
            raise ValueError(f"{self.path}: DiskArray needs a C-order, non-object array with at least one axis")
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        expected = self.offset + self.shape[0] * self.row_bytes
        if self.path.stat().st_size < expected:
            raise ValueError(f"{self.path}: file is truncated ({self.path.stat().st_size} < {expected} bytes)")

    # -- array-like surface ------------------------------------------------------------------
    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.row_bytes

    def __repr__(self) -> str:
        return f"DiskArray({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

    def __getitem__(self, key: Any) -> Any:
        if type(key).__module__.startswith("torch"):
            import torch

            rows = self._take(np.asarray(key.detach().cpu().numpy(), dtype=np.int64).reshape(-1))
            return torch.from_numpy(rows).reshape(*key.shape, *self.row_shape)
        if isinstance(key, (int, np.integer)):
            i = int(key)
            if not -len(self) <= i < len(self):
                raise IndexError(f"index {i} is out of bounds for axis 0 with size {len(self)}")
            return self._read_run(i % len(self), 1)[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                return self._read_run(start, max(0, stop - start))
            return self._take(np.arange(start, stop, step))
        if isinstance(key, tuple):
            raise IndexError("DiskArray indexes along its first axis only (read the rows, then index them)")
        idx = np.asarray(key)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise IndexError(f"boolean index of shape {idx.shape} does not match {len(self)} rows")
            idx = np.flatnonzero(idx)
        if not np.issubdtype(idx.dtype, np.integer):
            raise IndexError(f"DiskArray indices must be integers, got {idx.dtype}")
        return self._take(idx.astype(np.int64).reshape(-1)).reshape(*idx.shape, *self.row_shape)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """The whole array in memory (only for small arrays: this defeats the point of streaming)."""
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def chunks(self, size: int = CHUNK) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, rows)`` for consecutive chunks of at most ``size`` rows."""
        for start in range(0, len(self), size):
            yield start, self[start : start + size]

    # -- reading -------------------------------------------------------------------------------
    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # reopen after fork / unpickling
            self._fd = os.open(self.path, os.O_RDONLY)
            self._pid = os.getpid()
        return self._fd

    def _read_into(self, out: np.ndarray, start: int) -> None:
        view = out.reshape(-1).view(np.uint8).data
        offset = self.offset + start * self.row_bytes
        done = 0
        while done < len(view):
            n = os.preadv(self._file(), [view[done:]], offset + done)
            if n <= 0:
                raise OSError(f"{self.path}: unexpected end of file")
            done += n

    def _read_run(self, start: int, count: int) -> np.ndarray:
        out = np.empty((count, *self.row_shape), self.dtype)
        if count:
            self._read_into(out, start)
        return out

    def _take(self, idx: np.ndarray) -> np.ndarray:
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"index out of bounds for axis 0 with size {n}")
        idx = np.where(idx < 0, idx + n, idx)
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        rows = np.empty((len(idx), *self.row_shape), self.dtype)
        breaks = np.flatnonzero(np.diff(sorted_idx) != 1) + 1  # runs of consecutive rows: one read each
        for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(idx)], strict=True):
            if b > a:
                self._read_into(rows[a:b], int(sorted_idx[a]))
        out = np.empty_like(rows)
        out[order] = rows
        return out

    # -- pickling (process pools, Ray): the path travels, the file is reopened -----------------
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None, "_pid": -1}

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None and self._pid == os.getpid():
            try:
                os.close(fd)
            except OSError:
                pass


def is_disk_backed(array: Any) -> bool:
    return isinstance(array, DiskArray)


def write_npy(path: str | Path, shape: tuple[int, ...], dtype: Any, chunks: Iterable[np.ndarray]) -> DiskArray:
    """Write an ``.npy`` of ``shape`` from consecutive row chunks, atomically; return it opened."""
    dtype = np.dtype(dtype)
    written = 0
    with atomic_open(path, "wb") as fh:
        np.lib.format.write_array_header_2_0(fh, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                  "fortran_order": False, "shape": tuple(shape)})
        for chunk in chunks:
            chunk = np.ascontiguousarray(chunk, dtype=dtype)
            if chunk.shape[1:] != tuple(shape[1:]):
                raise ValueError(f"{path}: chunk rows of shape {chunk.shape[1:]} do not match {shape[1:]}")
            fh.write(chunk.reshape(-1).view(np.uint8).data)
            written += len(chunk)
        if written != shape[0]:
            raise ValueError(f"{path}: wrote {written} rows, expected {shape[0]}")
    return DiskArray(path)


def map_rows(n: int, read: Callable[[int, int], np.ndarray], chunk: int = CHUNK, desc: str | None = None) -> Iterator[np.ndarray]:
    """Chunks ``read(start, stop)`` for ``start`` in ``range(0, n, chunk)``, with a progress bar."""
    bar = progress(total=n, desc=desc, quiet=desc is None or n < 2000)
    for start in range(0, n, chunk):
        rows = read(start, min(n, start + chunk))
        bar.update(len(rows))
        yield rows
    bar.close()


def records_digest(records: Sequence[Record], size: int) -> str:
    """Identifies a split's decoded images: names, file sizes and mtimes, working size."""
    lines = [f"{size}"]
    for r in records:
        try:
            st = r.path.stat()
            lines.append(f"{r.img_filename}\0{st.st_size}\0{st.st_mtime_ns}\n")
        except FileNotFoundError:
            lines.append(f"{r.img_filename}\0missing\n")
    return digest(*lines, length=12)


def _cached(path: Path, shape: tuple[int, ...], read: Callable[[int, int], np.ndarray], desc: str) -> DiskArray:
    if path.is_file():
        try:
            array = DiskArray(path)
            if array.shape == shape and array.dtype == np.uint8:
                return array
        except ValueError:
            pass
        log.warning("cache %s is unusable; rebuilding it", path)
    return write_npy(path, shape, np.uint8, map_rows(shape[0], read, desc=desc))


def image_cache(records: Sequence[Record], size: int, cache_dir: str | Path, name: str) -> DiskArray:
    """The split's images decoded once into ``cache_dir`` (reused while the files are unchanged)."""
    path = Path(cache_dir) / f"images_{name}_{size}_{records_digest(records, size)}.npy"
    paths = [r.path for r in records]
    rows = [r.row for r in records]
    return _cached(path, (len(records), size, size, 3), lambda a, b: decode_images(paths[a:b], rows[a:b], size),
                   f"caching {name} images")


def mask_cache(dataset: ImageDataset, records: Sequence[Record], size: int, cache_dir: str | Path, name: str) -> DiskArray:
    """The split's ground-truth masks at the working size, (N, size, size) uint8, decoded once."""
    seg_records = [replace(r, path=dataset.segmentation_path(r)) for r in records]
    path = Path(cache_dir) / f"masks_{name}_{size}_{records_digest(seg_records, size)}.npy"
    return _cached(path, (len(records), size, size),
                   lambda a, b: load_segmentations(dataset, records[a:b], size), f"caching {name} masks")
