"""Pool the seeds of several TuxBirds runs per method, with differences paired by seed.

    python benchmarks/tuxbirds_seeds.py runs/bench/tuxbirds60/main runs/bench/tuxbirds60_s34 ... --baseline autobackswap

Worst-group accuracy on TuxBirds moves by about 0.1 from one seed to the next (the seed draws the labelled images,
the detector and the classifier's initialisation and batches), so a 3-seed mean can hide or invent a 0.05
difference. This reads ``results.json`` of every run folder given, pools each method's runs by seed (a method
trained on seeds 0-2 in one run and 3-4 in another counts five seeds; a seed seen twice is an error) and prints,
per test setting, the mean ± std over seeds and the difference to ``--baseline`` on the seeds both have, with its
standard error. The seed draws the same labelled images and the same detector for every pipeline method, so the
paired difference removes much of that spread. A last table gives, per method, the mean over seeds of the mask
IoU, the rim (``mask_bg_share``), the share of the object the cut-outs keep (``mask_fg_kept``), the diagnostics' bg_gap and the average accuracy on each test setting.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from autobackswap.train.loop import TrainConfig

SPLITS = {"seen": "test", "unseen": "test:unseen"}
# Per-seed figures beside WGA, for the second table: name -> how a run entry of results.json gives it (None if absent).
EXTRAS: dict[str, Callable[[dict[str, Any]], float | None]] = {
    "mask IoU": lambda r: r.get("mask_iou"),
    "rim": lambda r: r.get("mask_bg_share"),
    "object kept": lambda r: r.get("mask_fg_kept"),
    "bg_gap": lambda r: r.get("diagnostics", {}).get("bg_gap"),
    "avg. acc., seen": lambda r: r.get("test", {}).get("average_accuracy"),
    "avg. acc., unseen": lambda r: r.get("test:unseen", {}).get("average_accuracy"),
}


def train_suffix(config: dict) -> str:
    """The classifier settings of a run's ``config.json`` ``train`` that differ from the library defaults
    (seed and epochs aside), e.g. ``" [augment=color]"``, so that runs trained differently are not pooled
    as one method."""
    defaults = asdict(TrainConfig())
    changed = [f"{k}={v}" for k, v in config.items() if k not in ("seed", "epochs") and v != defaults.get(k)]
    return f" [{', '.join(changed)}]" if changed else ""


def pooled(runs: list[Path]) -> dict[str, dict[int, dict[str, float]]]:
    """method -> seed -> {setting: WGA, extra: value}; a method trained with other classifier settings is its
    own row. A run's mask IoU and rim, when its run entry lacks them (older results), come from the method's
    entry if it holds that one seed only."""
    configs = {run: json.loads((run / "config.json").read_text())["train"] for run in runs}
    epochs = {c["epochs"] for c in configs.values()}
    if len(epochs) > 1:
        raise SystemExit(f"the run folders were trained for different epochs ({sorted(epochs)}): pool like with like")
    out: dict[str, dict[int, dict[str, float]]] = defaultdict(dict)
    for run in runs:
        results = json.loads((run / "results.json").read_text())
        suffix = train_suffix(configs[run])
        for spec, entry in results["methods"].items():
            method = spec + suffix
            for r in entry.get("runs", []):
                if "test" not in r:
                    continue
                if r["seed"] in out[method]:
                    raise SystemExit(f"{run}: {method} seed {r['seed']} is in more than one run folder")
                one_seed = len(entry["runs"]) == 1
                figures = {s: r[k]["worst_group_accuracy"] for s, k in SPLITS.items() if k in r}
                for name, get in EXTRAS.items():
                    value = get(r)
                    if value is None and one_seed:
                        value = get(entry)
                    if value is not None:
                        figures[name] = float(value)
                out[method][r["seed"]] = figures
    return out


def paired(diffs: np.ndarray) -> str:
    """Mean of the per-seed differences ± its standard error."""
    se = diffs.std(ddof=1) / np.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
    return f"{diffs.mean():+.3f} ± {se:.3f} ({len(diffs)} seeds)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+", help="run folders holding results.json")
    ap.add_argument("--baseline", default="autobackswap")
    args = ap.parse_args()
    table = pooled(args.runs)
    base = table.get(args.baseline, {})
    for setting in SPLITS:
        print(f"\n{setting}: WGA over seeds, and the difference to {args.baseline} paired by seed")
        print(f"| method | seeds | WGA | per seed | vs {args.baseline} (± s.e.) |")
        print("|---|---|---|---|---|")
        for method, seeds in sorted(table.items(), key=lambda kv: -np.mean([v[setting] for v in kv[1].values()])):
            vals = [seeds[k][setting] for k in sorted(seeds)]
            common = sorted(set(seeds) & set(base))
            diff = "" if method == args.baseline or not common else paired(
                np.array([seeds[k][setting] - base[k][setting] for k in common]))
            print(f"| {method} | {','.join(map(str, sorted(seeds)))} | {np.mean(vals):.3f} ± {np.std(vals):.3f} "
                  f"| {' '.join(f'{v:.2f}' for v in vals)} | {diff} |")
    print("\nmasks and diagnostics: mean over the seeds that report each (n), - where none does")
    print(f"| method | {' | '.join(EXTRAS)} |\n|---|{'---|' * len(EXTRAS)}")
    for method, seeds in sorted(table.items()):
        cells = []
        for name in EXTRAS:
            vals = [v[name] for v in seeds.values() if name in v]
            cells.append(f"{np.mean(vals):.3f} ({len(vals)})" if vals else "-")
        print(f"| {method} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
