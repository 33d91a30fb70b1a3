"""The loaded splits an experiment works on: images at the working size, labels and places.

:func:`load_experiment_data` reads a dataset's three splits, in memory or (``stream=True``) as
:class:`~autobackswap.data.stream.DiskArray` image caches under ``RUN/cache/`` so memory does not
grow with the dataset. Labels are class *indices* into the training classes.

Two options give the reference's Waterbirds setting: ``drop_minority`` keeps only the majority groups
(each class's most frequent place in train) in the train and val splits, so no training or
validation image breaks the correlation; ``eval_crop`` < 1 resizes val and test images to
``image_size / eval_crop`` and keeps the centre ``image_size`` square (the reference's 256 -> 224).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import AutoBackSwapError
from ..io import check_writable_dir
from .groups import group_counts, majority_groups
from .images import check_image_size
from .layout import ImageDataset, Record, load_images, load_segmentations
from .layouts import read_layout
from .stream import image_cache

SPLITS = ("train", "val", "test")


@dataclass
class SplitData:
    records: list[Record]
    images: np.ndarray  # NHWC uint8 (or a DiskArray of it)
    labels: np.ndarray  # class indices
    place: np.ndarray
    dataset: ImageDataset
    image_size: int
    crop: float = 1.0  # images resized to image_size / crop, then centre-cropped (eval_crop)

    @cached_property
    def y(self) -> np.ndarray:
        return np.array([r.y for r in self.records])

    @cached_property
    def segmentations(self) -> np.ndarray:
        """Ground-truth masks at the working size (cropped as the images are), (N, H, W) uint8 (DataError
        when missing)."""
        masks = load_segmentations(self.dataset, self.records, crop_load_size(self.image_size, self.crop))
        return centre_crop(masks, self.image_size)

    @property
    def has_segmentations(self) -> bool:
        return bool(self.records) and all(self.dataset.segmentation_path(r).is_file() for r in self.records)

    def __len__(self) -> int:
        return len(self.records)


@dataclass
class ExperimentData:
    dataset: ImageDataset
    image_size: int
    train: SplitData
    val: SplitData
    test: SplitData
    run_dir: Path

    @property
    def num_classes(self) -> int:
        return len(self.dataset.classes)

    @cached_property
    def train_group_counts(self) -> dict[tuple[int, int], int]:
        return group_counts(self.train.y, self.train.place)

    def usual_place(self) -> dict[int, int]:
        """Class index -> its majority place in training (the background that goes with it)."""
        index = {c: i for i, c in enumerate(self.dataset.classes)}
        return {index[y]: p for y, p in majority_groups(self.train_group_counts)}

    def all_groups(self) -> list[tuple[int, int]]:
        """Every ``(label index, place)`` group that occurs in some split (train, val or test)."""
        return sorted({(int(c), int(p)) for s in (self.train, self.val, self.test)
                       for c, p in zip(s.labels.tolist(), s.place.tolist(), strict=True)})


def crop_load_size(image_size: int, crop: float) -> int:
    """The size images are resized to before the centre ``image_size`` square is kept."""
    if not 0.0 < crop <= 1.0:
        raise ValueError(f"eval_crop={crop}: the kept fraction of the side must be in (0, 1]")
    return max(image_size, int(round(image_size / crop)))


def centre_crop(images: np.ndarray, size: int) -> np.ndarray:
    """The centre ``size`` x ``size`` square of (N, H, W, ...) arrays (a copy; the input when it is that size)."""
    h, w = images.shape[1], images.shape[2]
    if (h, w) == (size, size):
        return images
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(images[:, top : top + size, left : left + size])


def load_split(dataset: ImageDataset, name: str, image_size: int, classes: list[int] | None = None,
               cache_dir: Path | None = None, keep: set[tuple[int, int]] | None = None,
               crop: float = 1.0) -> SplitData:
    """One split's images at the working size; labels are indices into ``classes`` (default the
    dataset's). With ``cache_dir`` the images stay on disk (a DiskArray cached there). ``keep``: only the
    images of these ``(y, place)`` groups; ``crop`` < 1: resized larger, then centre-cropped."""
    index = {c: i for i, c in enumerate(classes if classes is not None else dataset.classes)}
    records = [r for r in dataset.split(name) if keep is None or (r.y, r.place) in keep]
    if keep is not None and not records:
        raise AutoBackSwapError(f"{dataset.metadata_path}: no {name} image is left in the groups {sorted(keep or [])}")
    if cache_dir is not None and crop < 1.0:
        raise AutoBackSwapError("eval_crop needs the images in memory: run without --stream")
    size = crop_load_size(image_size, crop)
    images = (image_cache(records, image_size, cache_dir, name) if cache_dir is not None
              else centre_crop(load_images(records, size, desc=f"loading {name}"), image_size))
    labels = np.array([index[r.y] for r in records], dtype=np.int64)
    place = np.array([r.place for r in records], dtype=np.int64)
    return SplitData(records, images, labels, place, dataset, image_size, crop)  # type: ignore[arg-type]


def load_experiment_data(data_dir: str | Path, image_size: int, run_dir: str | Path, stream: bool = False,
                         drop_minority: bool = False, eval_crop: float = 1.0,
                         layout: str = "auto") -> ExperimentData:
    """The three splits of the dataset at ``data_dir`` (read in ``layout``, see :mod:`.layouts`); ``stream``
    keeps every split's images on disk.

    ``drop_minority`` drops the train and val images outside each class's most frequent place in train;
    ``eval_crop`` < 1 centre-crops val and test (see the module docstring). The working size is checked first,
    and the run folder must be writable (checked before any work)."""
    check_image_size(image_size)
    check_writable_dir(run_dir, "run folder")
    dataset = read_layout(data_dir, layout)
    cache = Path(run_dir) / "cache" if stream else None
    keep = None
    if drop_minority:
        train_records = dataset.split("train")
        keep = majority_groups(group_counts([r.y for r in train_records], [r.place for r in train_records]))
    train = load_split(dataset, "train", image_size, cache_dir=cache, keep=keep)
    val = load_split(dataset, "val", image_size, cache_dir=cache, keep=keep, crop=eval_crop)
    test = load_split(dataset, "test", image_size, cache_dir=cache, crop=eval_crop)
    return ExperimentData(dataset, image_size, train, val, test, Path(run_dir))


def load_also_test(also_test: dict[str, str], data: ExperimentData, layout: str = "auto") -> dict[str, SplitData]:
    """The test splits of other datasets (e.g. TuxBirds' ``unseen`` beside ``seen``, or an IN-9 variant folder),
    scored by every model; each is read in ``layout`` and needs only a test split.

    Their classes must be the training classes; a model trained once is then scored on each."""
    splits = {}
    for name, path in also_test.items():
        dataset = read_layout(path, layout, need=("test",))
        names, train_names = dataset.class_names, data.dataset.class_names
        if names and train_names and [names.get(c) for c in dataset.classes] != [
                train_names.get(c) for c in dataset.classes]:
            raise AutoBackSwapError(f"{dataset.metadata_path}: --also-test {name}: class names "
                                    f"{[names[c] for c in dataset.classes]} are not the training classes' "
                                    f"{[train_names.get(c) for c in dataset.classes]}")
        if not set(dataset.classes) <= set(data.dataset.classes):
            raise AutoBackSwapError(f"{dataset.metadata_path}: --also-test {name}: classes {dataset.classes} are not "
                                    f"the training classes {data.dataset.classes}")
        splits[name] = load_split(dataset, "test", data.image_size, data.dataset.classes)
    return splits
