"""TuxBirds (real photo cut-outs on real photos), with pretrained networks (the photos-cpu recipe) and from scratch."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from autobackswap.data.photo import make_photo_benchmark
from autobackswap.errors import AutoBackSwapError
from autobackswap.experiment import ExperimentConfig
from autobackswap.recipes import load_recipe
from autobackswap.settings import resolve
from autobackswap.train.loop import TrainConfig

from . import METHOD_CODE, Context, Measured, Study, Table, fmt, metric, register, seeds_text

DATA_ROOT = Path("runs/bench/tuxbirds_data")
SPLITS = {"seen": "test", "unseen": "test:unseen"}
PHOTO_CODE = (*METHOD_CODE, "src/autobackswap/data/photo.py", "src/autobackswap/data/photo_lists.py")


def tuxbirds(correlation: float, image_size: int, seed: int = 0, root: Path = DATA_ROOT) -> dict[str, Path]:
    """TuxBirds built once under ``root`` and reused while its settings match."""
    out = root / f"c{correlation}_s{image_size}_seed{seed}"
    if not ((out / "seen" / "config.json").is_file() and (out / "unseen" / "config.json").is_file()):
        return make_photo_benchmark(out, correlation=correlation, image_size=image_size, seed=seed)
    return {s: out / s for s in SPLITS}


def recipe_config(recipe: str, data: dict[str, Path], methods: list[str], seeds: list[int],
                  **train: Any) -> ExperimentConfig:
    """An experiment on TuxBirds ``seen`` (every model also scored on ``unseen``) with a recipe's settings."""
    overrides = {"experiment": {"methods": methods, "seeds": seeds}, "train": train}
    cfg = resolve(str(data["seen"]), load_recipe(recipe), overrides, runs=methods)
    cfg.also_test = {"unseen": str(data["unseen"])}
    return cfg


def mask_cells(entry: dict[str, Any]) -> list[str]:
    return [fmt(entry.get(k)) if entry.get(k) is not None else "" for k in ("mask_iou", "mask_bg_share", "mask_fg_kept")]


def row(label: str, entry: dict[str, Any], split: str, seeds: str) -> list[str]:
    return [label, seeds, metric(entry, split), metric(entry, split, "average_accuracy"), *mask_cells(entry)]


def wga_values(entry: dict[str, Any], split: str) -> np.ndarray:
    return np.array([r[split]["worst_group_accuracy"] for r in entry.get("runs", []) if split in r])


def wga_by_seed(entry: dict[str, Any], split: str) -> dict[int, float]:
    return {r["seed"]: r[split]["worst_group_accuracy"] for r in entry.get("runs", []) if split in r}


HEADER = ["method", "seeds", "WGA", "average accuracy", "mask IoU", "rim", "object kept"]
LEGEND = ("rim: the share of the cut-outs' alpha on ground-truth background; object kept: the share of the "
          "ground-truth bird the cut-outs cover.")


@register
class PretrainedPhotos(Study):
    name = "photos"
    title = "TuxBirds with pretrained networks"
    about = ("TuxBirds with the photos-cpu recipe (pretrained EfficientNet-Lite0 classifier and detector): "
             "ERM, autobackswap at 200 and 50 labels and the oracle over three seeds; the baselines, a 4x4 grid, the "
             "fcn detector and group-balanced ERM on one")
    seeds = [0, 1, 2]
    depends = (*PHOTO_CODE, "src/autobackswap/recipes/photos-cpu.toml")
    recipe = "photos-cpu"

    def measure(self, ctx: Context) -> Measured:
        size = load_recipe(self.recipe)["experiment"]["image_size"]
        data = tuxbirds(1.0, size)
        one = ctx.seeds[:1]
        main_methods = ["erm", "autobackswap", "oracle"]
        parts = {  # run folder -> (methods, seeds), in the order of the priorities
            "main": (main_methods, ctx.seeds),
            "labels50": (["autobackswap:label_budget=50"], ctx.seeds),
            "baselines": (["erm_aug", "random_paste"], one),
            "grid4": (["autobackswap:grid=4"], one),
            "fcn": (["autobackswap:detector_backbone=fcn:detector_weights=none:detector_freeze=0:detector_lr=0.003:"
                    "detector_epochs=100:detector_width=32"], one),
        }
        if ctx.quick:
            parts = {"main": (main_methods, one)}
        results: dict[str, dict[str, Any]] = {}
        failed: dict[str, dict[int, str]] = {}
        for name, (methods, seeds) in parts.items():
            done, failed[name] = experiment_by_seed(ctx, name, lambda s, m=methods: recipe_config(self.recipe, data, m, s),
                                                   seeds)
            if done is not None:
                results[name] = done
        failures = [f"{name}, seed {seed}: {why}" for name, by_seed in failed.items() for seed, why in by_seed.items()]
        balanced = None
        if not ctx.quick:
            bdata = tuxbirds(0.5, size)
            balanced = ctx.experiment("balanced", dataclasses.replace(
                recipe_config(self.recipe, bdata, ["erm"], one), diagnostics=False))
        labels = {"erm": "erm", "erm_aug": "erm_aug", "random_paste": "random_paste",
                  "autobackswap": "autobackswap (16x16, 200 labels)",
                  "autobackswap:label_budget=50": "autobackswap (16x16, 50 labels)",
                  "autobackswap:grid=4": "autobackswap (4x4, 200 labels)",
                  "oracle": "oracle (ground-truth masks)"}
        tables: dict[str, Table] = {}
        for setting, split in SPLITS.items():
            rows = []
            for part in results.values():
                for spec, entry in part["methods"].items():
                    seeds = ",".join(str(r["seed"]) for r in entry.get("runs", []))
                    label = labels.get(spec, "autobackswap, fcn detector (from scratch)" if "fcn" in spec else spec)
                    rows.append(row(label, entry, split, seeds))
            if balanced is not None:
                entry = balanced["methods"]["erm"]
                rows.append(row("ERM on group-balanced TuxBirds (the classifier's ceiling)", entry, split,
                                ",".join(str(r["seed"]) for r in entry["runs"])))
            tables[setting] = Table(HEADER, rows, f"TuxBirds `{setting}`, {size} px, photos-cpu recipe; the first rows "
                                                  f"{seeds_text(ctx.seeds)}, the rest as their seeds say",
                                    [LEGEND, *(f"failed its health check, not trained: {f}" for f in failures)])
        tables["targets"] = self.targets(results, ctx.seeds, failed)
        return Measured(tables)

    def targets(self, results: dict[str, dict[str, Any]], seeds: list[int], failed: dict[str, dict[int, str]]) -> Table:
        main = results["main"]["methods"]
        rows = []
        for setting, split in SPLITS.items():
            erm, abs_, oracle = (wga_values(main[m], split) for m in ("erm", "autobackswap", "oracle"))
            if setting == "unseen":
                rows.append([f"oracle WGA ≥ 0.85 ({setting})", fmt(oracle.mean()), yes(oracle.mean() >= 0.85)])
            ratio = abs_.mean() / oracle.mean() if oracle.mean() > 0 else float("nan")
            rows.append([f"autobackswap ≥ 0.95 × oracle ({setting})", f"{ratio:.3f} × ({fmt(abs_.mean())} / "
                         f"{fmt(oracle.mean())})", yes(ratio >= 0.95)])
            rows.append([f"autobackswap ≥ ERM + 0.30 ({setting})", f"{abs_.mean() - erm.mean():+.3f}",
                         yes(abs_.mean() - erm.mean() >= 0.30)])
            if "labels50" in results:
                fifty = wga_by_seed(results["labels50"]["methods"]["autobackswap:label_budget=50"], split)
                full = wga_by_seed(main["autobackswap"], split)  # the same seeds, paired
                base = float(np.mean([full[k] for k in fifty]))
                r50 = float(np.mean(list(fifty.values()))) / base if base > 0 else float("nan")
                lost = sorted(failed.get("labels50", {}))
                shown = f"{r50:.3f} ×" + (f" (seed {', '.join(map(str, lost))}: the separation failed its health check; "
                                          f"counted as not met)" if lost else "")
                rows.append([f"50 labels ≥ 0.96 × 200 labels ({setting})", shown, yes(r50 >= 0.96 and not lost)])
        iou = main["autobackswap"].get("mask_iou")
        rows.append(["mask IoU of the pretrained detector ≥ 0.85", fmt(iou), yes(iou is not None and iou >= 0.85)])
        return Table(["target", "measured", "met"], rows, f"The targets, {seeds_text(seeds)} (means)")


def experiment_by_seed(ctx: Context, name: str, make: Callable[[list[int]], ExperimentConfig],
                       seeds: list[int]) -> tuple[dict[str, Any] | None, dict[int, str]]:
    """The part ``name`` on ``seeds`` (finished runs reused). When a run fails one of the library's checks (the
    separation's health check: a detector that finds no bird, or only birds), each seed runs alone: the failing ones
    are left out with their one-line reason, and the part is the seeds that ran (None when none did)."""
    try:
        return ctx.experiment(name, make(seeds)), {}
    except AutoBackSwapError:
        pass
    failed = {}
    for seed in seeds:
        try:
            ctx.experiment(name, make([seed]))
        except AutoBackSwapError as exc:
            failed[seed] = str(exc)
    ok = [s for s in seeds if s not in failed]
    return (ctx.experiment(name, make(ok)) if ok else None), failed


def yes(ok: bool) -> str:
    return "**met**" if ok else "not met"


@register
class ScratchPhotos(Study):
    name = "photos-scratch"
    title = "TuxBirds with small networks trained from scratch"
    about = "TuxBirds at 64 px, the library defaults (small_resnet, fcn detector), 60 epochs: ERM, autobackswap, oracle"
    seeds = [0, 1, 2]
    depends = PHOTO_CODE

    def measure(self, ctx: Context) -> Measured:
        data = tuxbirds(1.0, 64)
        methods = ["erm", "autobackswap", "oracle"]
        cfg = ExperimentConfig(data=str(data["seen"]), methods=methods, seeds=ctx.seeds, image_size=64,
                               train=TrainConfig(epochs=10 if ctx.quick else 60), also_test={"unseen": str(data["unseen"])})
        results = ctx.experiment("main", cfg)
        tables = {}
        for setting, split in SPLITS.items():
            rows = [row(m, results["methods"][m], split, ",".join(map(str, ctx.seeds))) for m in methods]
            tables[setting] = Table(HEADER, rows, f"TuxBirds `{setting}`, 64 px, library defaults, "
                                                  f"{cfg.train.epochs} epochs, {seeds_text(ctx.seeds)}", [LEGEND])
        return Measured(tables)
