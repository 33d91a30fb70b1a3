"""Shared fixtures: tiny datasets in the Waterbirds layout.

* ``tiny_synthetic`` (session-scoped): ``make_synthetic(n_train=40, n_val=16, n_test=16,
  image_size=32, seed=0)``, written once per session. Treat it as read-only; copy it
  (``shutil.copytree``) before changing anything.
* ``make_fake_waterbirds(root, ...)``: a tiny fake in the exact ``waterbird_complete95_forest2water2``
  layout (class folders at the dataset root, JPEG images, ``metadata.csv`` with
  ``img_id,img_filename,y,split,place,place_filename``, ``segmentations/`` and ``masks.csv``).
* ``make_readonly(path)``: make a file or folder read-only for the test (root included).
"""

from __future__ import annotations

import csv
import importlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image

from autobackswap.data.grid import grid_to_string, mask_to_grid
from autobackswap.data.synthetic import make_synthetic, render_sample

TINY_SYNTHETIC = {"n_train": 40, "n_val": 16, "n_test": 16, "image_size": 32, "seed": 0}


@pytest.fixture
def torch_single_thread() -> Iterator[None]:
    """Run torch on one thread for the test (restored afterwards).

    Tiny models gain nothing from a second thread, and when other processes share the CPU, OpenMP's
    barrier waits make two threads more than 10x slower on such small tensors. Opt in with
    ``pytestmark = pytest.mark.usefixtures("torch_single_thread")``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only tiny synthetic dataset (see ``TINY_SYNTHETIC`` for its arguments)."""
    return make_synthetic(tmp_path_factory.mktemp("tiny_synthetic") / "data", **TINY_SYNTHETIC)


# (folder, species stem) per class; y = 1 is waterbird, as in Waterbirds.
WATERBIRDS_CLASSES = {
    0: [("013.Bobolink", "Bobolink"), ("026.Bronzed_Cowbird", "Bronzed_Cowbird")],
    1: [("001.Black_footed_Albatross", "Black_Footed_Albatross"), ("059.California_Gull", "California_Gull")],
}
# place = 0 land, 1 water; place_filename as in the Places categories Waterbirds draws from.
WATERBIRDS_PLACES = {0: ["/b/bamboo_forest", "/f/forest/broadleaf"], 1: ["/o/ocean", "/l/lake/natural"]}


def make_fake_waterbirds(
    root: str | Path, n_per_split_group: int = 2, size: int = 48, with_segmentations: bool = True
) -> Path:
    """Write a tiny fake ``waterbird_complete95_forest2water2`` dataset to ``root`` and return it.

    Every (split, y, place) cell gets ``n_per_split_group`` images. Images are JPEGs of varying
    width (``size`` x ``size + 8k``) under class folders at the root; the first image is a
    grayscale JPEG (CUB has a few). Foreground shape follows ``y`` and background family follows
    ``place`` (the synthetic renderer), so the data is learnable. With ``with_segmentations``,
    ``segmentations/<class folder>/<stem>.png`` and a ``masks.csv`` keyed by ``img_id`` with
    16 x 16 = 256-character masks are written too.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1234)
    rows: list[list[object]] = []
    mask_rows: list[list[str]] = []
    img_id = 0
    for split in (0, 1, 2):
        for y in (0, 1):
            for place in (0, 1):
                for _ in range(n_per_split_group):
                    img_id += 1
                    folder, stem = WATERBIRDS_CLASSES[y][img_id % 2]
                    name = f"{folder}/{stem}_{img_id:04d}_{790000 + 37 * img_id}.jpg"
                    width = size + 8 * (img_id % 3)
                    square, mask = render_sample(rng, y, place, size)
                    image = np.asarray(Image.fromarray(square).resize((width, size), Image.BILINEAR))
                    seg = np.asarray(Image.fromarray(mask).resize((width, size), Image.NEAREST))
                    path = root / name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    pil = Image.fromarray(image)
                    if img_id == 1:
                        pil = pil.convert("L")
                    pil.save(path, format="JPEG", quality=90)
                    place_dir = WATERBIRDS_PLACES[place][img_id % 2]
                    rows.append([img_id, name, y, split, place, f"{place_dir}/{img_id:08d}.jpg"])
                    if with_segmentations:
                        seg_path = (root / "segmentations" / name).with_suffix(".png")
                        seg_path.parent.mkdir(parents=True, exist_ok=True)
                        Image.fromarray(seg).save(seg_path)
                        mask_rows.append([str(img_id), grid_to_string(mask_to_grid(seg, 16))])
    with open(root / "metadata.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["img_id", "img_filename", "y", "split", "place", "place_filename"])
        writer.writerows(rows)
    if with_segmentations:
        with open(root / "masks.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["info", "mask"])
            writer.writerows(mask_rows)
    return root


@pytest.fixture(scope="session")
def fake_waterbirds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only ``make_fake_waterbirds`` dataset with the default arguments."""
    return make_fake_waterbirds(tmp_path_factory.mktemp("fake_waterbirds") / "waterbird_complete95_forest2water2")


@pytest.fixture
def make_readonly() -> Iterator[Callable[[Path], Path]]:
    """``make_readonly(path)`` makes a file or folder read-only for this process, root included (mode
    bits, plus the immutable attribute via ``chattr +i`` when running as root, whom modes do not stop);
    everything is made writable again after the test. Skips where root cannot set the attribute."""
    changed: list[tuple[Path, int, bool]] = []

    def make(path: Path) -> Path:
        mode = path.stat().st_mode
        path.chmod(mode & ~0o222)
        immutable = False
        if os.geteuid() == 0:
            done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
            if done.returncode != 0:
                path.chmod(mode)
                pytest.skip("running as root without chattr +i: cannot make a path read-only")
            immutable = True
        changed.append((path, mode, immutable))
        return path

    try:
        yield make
    finally:
        for path, mode, immutable in reversed(changed):
            if immutable:
                subprocess.run(["chattr", "-i", str(path)], capture_output=True, check=False)
            path.chmod(mode)


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def forget_benchmarks() -> None:
    """Drop every module imported from ``benchmarks/`` (scripts, ``run``, the ``_studies`` package and its study
    modules) from ``sys.modules``, so the next import registers the studies afresh."""
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and Path(file).resolve().is_relative_to(BENCHMARKS):
            sys.modules.pop(name, None)


@pytest.fixture
def load_benchmark(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], ModuleType]]:
    """Import a module of ``benchmarks/`` by name (its folder on sys.path, as when it runs), e.g. ``run`` or
    ``_studies.mask_errors``; it and every other module of ``benchmarks/`` are forgotten after the test."""

    def load(name: str) -> ModuleType:
        monkeypatch.syspath_prepend(str(BENCHMARKS))
        return importlib.import_module(name)

    yield load
    forget_benchmarks()
