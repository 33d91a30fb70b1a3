"""Where TuxBirds' worst group is lost: test accuracy per background photo, for the models of a run.

    python benchmarks/tuxbirds_breakdown.py runs/bench/tuxbirds/main runs/bench/tuxbirds_data/c1.0_s64_seed0/seen

For each method saved in ``RUN/models`` (mean over its seeds) it prints the accuracy on every
(y, place, background photo) cell of the test split of ``DATA`` (a TuxBirds dataset: its metadata.csv names
the photo of each image), sorted from the worst. A worst group lost on one or two photos whose colours and
textures look like the *other* class's birds is a different finding from one lost everywhere.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from autobackswap.data.layout import load_images, read_dataset
from autobackswap.train.loop import load_classifier, predict_logits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--methods", default="erm,autobackswap,oracle")
    ap.add_argument("--worst", type=int, default=6, help="cells shown per method")
    args = ap.parse_args()
    ds = read_dataset(args.data)
    test = ds.split("test")
    photo = {r["img_filename"]: r.get("background", "?") for r in csv.DictReader(ds.metadata_path.open())}
    cells = [(r.y, r.place, photo[r.img_filename]) for r in test]
    y = np.array([r.y for r in test])
    images = None
    for method in args.methods.split(","):
        paths = sorted((args.run / "models").glob(f"{method}_seed*.pt"))
        if not paths:
            continue
        correct: dict[tuple, list[float]] = defaultdict(list)
        for path in paths:
            model, payload = load_classifier(path)
            if images is None:
                images = load_images(test, payload["image_size"])
            pred = np.asarray(payload["classes"])[predict_logits(model, images).argmax(1).numpy()]
            per_cell: dict[tuple, list[bool]] = defaultdict(list)
            for cell, ok in zip(cells, pred == y, strict=True):
                per_cell[cell].append(bool(ok))
            for cell, oks in per_cell.items():
                correct[cell].append(float(np.mean(oks)))
        rows = sorted((float(np.mean(v)), cell) for cell, v in correct.items())
        print(f"\n{method} ({len(paths)} seeds): accuracy per (y, place, photo), worst first")
        print("| y | place | photo | n | accuracy |\n|---|---|---|---|---|")
        n: dict[tuple, int] = defaultdict(int)
        for cell in cells:
            n[cell] += 1
        for acc, (cy, cp, ph) in rows[: args.worst]:
            print(f"| {cy} | {cp} | {ph} | {n[(cy, cp, ph)]} | {acc:.3f} |")


if __name__ == "__main__":
    main()
