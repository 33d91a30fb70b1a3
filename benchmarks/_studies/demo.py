"""The demos' tables and wall times: ``autobackswap demo`` (synthetic) and ``autobackswap demo --photos`` (TuxBirds)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import METHOD_CODE, Context, Measured, Study, Table, fmt, metric, register

DEMO_CODE = (*METHOD_CODE, "src/autobackswap/demo.py", "src/autobackswap/data/synthetic.py",
             "src/autobackswap/recipes/demo.toml")
PHOTO_CODE = (*METHOD_CODE, "src/autobackswap/demo.py", "src/autobackswap/data/photo.py",
              "src/autobackswap/data/photo_lists.py", "src/autobackswap/recipes/photos-cpu.toml")


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def run_cli(args: list[str], out: Path) -> tuple[dict[str, Any], float]:
    """``autobackswap ARGS --out OUT`` in a fresh folder, timed as a user would (the whole command)."""
    if out.exists():
        shutil.rmtree(out)
    exe = Path(sys.executable).with_name("autobackswap")
    start = time.perf_counter()
    subprocess.run([str(exe), *args, "--out", str(out)], check=True, env=os.environ.copy())
    seconds = time.perf_counter() - start
    return json.loads((out / "results.json").read_text()), seconds


def demo_rows(results: dict[str, Any], split: str = "test") -> list[list[str]]:
    rows = []
    for name, entry in results["methods"].items():
        diag = entry.get("diagnostics") or {}
        rows.append([name, metric(entry, split), metric(entry, split, "average_accuracy"),
                     fmt(entry.get("mask_iou")) if entry.get("mask_iou") is not None else "",
                     fmt(diag.get("bg_gap")) if split == "test" and diag else ""])
    return rows


@register
class Demo(Study):
    name = "demo"
    title = "The demo"
    about = "`autobackswap demo` from a fresh folder: its test table and its wall time"
    depends = DEMO_CODE

    def measure(self, ctx: Context) -> Measured:
        args = ["demo"] + (["--n-train", "600", "--epochs", "3"] if ctx.quick else [])
        if ctx.seeds != [0]:
            args += ["--seeds", ",".join(map(str, ctx.seeds))]
        results, seconds = run_cli(args, ctx.out / "run")
        iou = results["methods"]["autobackswap"]["runs"][0].get("mask_iou")
        table = Table(["method", "WGA", "average accuracy", "mask IoU", "bg_gap"], demo_rows(results),
                      "The synthetic benchmark, train and val correlation 1.0, 2000 / 400 / 800 images at 64 px, "
                      "the demo recipe (small_resnet width 16, 10 epochs; 200 labels, fcn detector 25 epochs); test split")
        return Measured({"main": table}, {"seconds": duration(seconds), "mask_iou": fmt(iou)})


@register
class PhotoDemo(Study):
    name = "photo-demo"
    title = "The photo demo"
    about = "`autobackswap demo --photos` from a fresh folder (TuxBirds, photos-cpu): its tables and its wall time"
    depends = PHOTO_CODE

    def measure(self, ctx: Context) -> Measured:
        args = ["demo", "--photos"] + (["--n-train", "600", "--epochs", "2"] if ctx.quick else [])
        results, seconds = run_cli(args, ctx.out / "run")
        header = ["method", "WGA", "average accuracy", "mask IoU", "bg_gap"]
        caption = ("TuxBirds, train and val correlation 1.0, 2000 / 400 / 800 images at 96 px, the photos-cpu recipe "
                   "(pretrained EfficientNet-Lite0 classifier and detector); test split {}")
        tables = {"seen": Table(header, demo_rows(results), caption.format("`seen`")),
                  "unseen": Table(header, demo_rows(results, "test:unseen"), caption.format("`unseen`"))}
        return Measured(tables, {"seconds": duration(seconds)})
