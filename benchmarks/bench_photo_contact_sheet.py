"""Build TuxBirds and print what it is made of: speed, groups, held-out instances, cue strength.

Prints

* the build time and images/s (assets already fetched; the first run fetches them with apt-get);
* per dataset and split: images per (y, place) group, distinct bird instances and background photos,
  and whether the test ones are disjoint from train+val;
* how strong two simple colour cues are on the balanced test set: a nearest-centroid classifier
  fitted on the training images predicts ``place`` from the mean background colour and ``y`` from the
  mean bird colour (ground-truth masks). A high ``place`` figure means the background is an easy
  shortcut, as intended; the ``y`` figure shows how much a colour-only reading of the bird gives.

Usage::

    .venv/bin/python benchmarks/bench_photo_contact_sheet.py [OUT] [--assets DIR] [--image-size 64]

OUT defaults to a temporary folder; the contact sheet is ``OUT/contact_sheet.png``.
"""

from __future__ import annotations

import argparse
import csv
import logging
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from autobackswap.data.layout import ImageDataset, Record, load_images, load_segmentations, read_dataset
from autobackswap.data.photo import make_photo_benchmark


def mean_colours(dataset: ImageDataset, records: list[Record], size: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean background RGB, mean foreground RGB) per image, from the ground-truth masks."""
    images = load_images(records, size).astype(np.float64)
    fg = (load_segmentations(dataset, records, size) > 127)[..., None]
    bg_mean = (images * ~fg).sum((1, 2)) / np.maximum((~fg).sum((1, 2)), 1)
    fg_mean = (images * fg).sum((1, 2)) / np.maximum(fg.sum((1, 2)), 1)
    return bg_mean, fg_mean


def nearest_centroid(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    classes = np.unique(train_y)
    centroids = np.stack([train_x[train_y == c].mean(0) for c in classes])
    pred = classes[np.argmin(((test_x[:, None] - centroids[None]) ** 2).sum(-1), axis=1)]
    return float((pred == test_y).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=None)
    parser.add_argument("--assets", type=Path, default=None)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = args.out or Path(tempfile.mkdtemp(prefix="tuxbirds-"))

    start = time.perf_counter()
    written = make_photo_benchmark(out, args.assets, image_size=args.image_size, seed=args.seed)
    seconds = time.perf_counter() - start
    n_images = 2000 + 400 + 800 * len(written)
    print(f"built TuxBirds ({', '.join(written)}) at {args.image_size} px in {seconds:.1f} s "
          f"({n_images / seconds:.0f} images/s, asset loading included)")

    for setting, root in written.items():
        ds = read_dataset(root)
        meta = {r.img_filename: r for r in ds.records}
        with open(root / "metadata.csv", newline="") as fh:
            extra = {row["img_filename"]: row for row in csv.DictReader(fh)}
        print(f"\n[{setting}] {root}")
        seen_birds = {extra[n]["bird"] for n, r in meta.items() if r.split != 2}
        seen_bgs = {extra[n]["background"] for n, r in meta.items() if r.split != 2}
        for name in ("train", "val", "test"):
            records = ds.split(name)
            groups = Counter((r.y, r.place) for r in records)
            birds = {extra[r.img_filename]["bird"] for r in records}
            bgs = {extra[r.img_filename]["background"] for r in records}
            line = (f"  {name:5s} n={len(records):4d} groups(y,place)={dict(sorted(groups.items()))} "
                    f"birds={len(birds)} photos={len(bgs)}")
            if name == "test":
                line += (f" | birds shared with train+val: {len(birds & seen_birds)}, "
                         f"photos shared: {len(bgs & seen_bgs)}")
            print(line)
        train, test = ds.split("train"), ds.split("test")
        tr_bg, tr_fg = mean_colours(ds, train, args.image_size)
        te_bg, te_fg = mean_colours(ds, test, args.image_size)
        place_acc = nearest_centroid(tr_bg, np.array([r.place for r in train]), te_bg, np.array([r.place for r in test]))
        y_acc = nearest_centroid(tr_fg, np.array([r.y for r in train]), te_fg, np.array([r.y for r in test]))
        print(f"  colour cues on the balanced test: place from mean background colour {place_acc:.3f}, "
              f"y from mean bird colour {y_acc:.3f}")
    print(f"\ncontact sheet: {out / 'contact_sheet.png'}")


if __name__ == "__main__":
    main()
