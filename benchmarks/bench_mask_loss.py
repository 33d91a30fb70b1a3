"""Where autobackswap's mask loss comes from on TuxBirds: the cut-outs, or the inpainted backgrounds.

    python benchmarks/bench_mask_loss.py                    # 3 seeds, 60 epochs, both hybrids
    python benchmarks/bench_mask_loss.py --hybrids learned/oracle --seeds 0

autobackswap draws cut-outs *and* inpainted backgrounds from the detector's masks; the oracle draws both
from the ground-truth segmentations. This trains the two hybrids with the same swap, the same training and
the same cached banks:

* ``mask_split:fg=learned:bg=oracle``: the detector's cut-outs on ground-truth-inpainted backgrounds;
* ``mask_split:fg=oracle:bg=learned``: ground-truth cut-outs on the detector's inpainted backgrounds.

With autobackswap (learned/learned) and the oracle (oracle/oracle) from ``bench_tuxbirds.py`` (pass its run
with ``--reference``), the four corners split autobackswap - oracle into a cut-out part and a background part.

It first prints the inpainting holes on the training images (seed 0's detector): their mean area and the
share of the bird's pixels they cover, for the reference's grid hole, the refined hole and the ground truth.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from _common import SETTINGS, add_pipeline_args, pipeline_options, tuxbirds

from autobackswap.compose.swap import BackgroundSwap
from autobackswap.evaluate.table import render_markdown
from autobackswap.experiment import ExperimentConfig, run_experiment
from autobackswap.methods.base import METHODS, MethodContext, MethodOutput, PipelineMethod
from autobackswap.pipeline import PipelineConfig
from autobackswap.train.loop import TrainConfig, fit
from autobackswap.train.sources import SwapSource

SOURCES = ("learned", "oracle")


@METHODS.register("mask_split")
class MaskSplit(PipelineMethod):
    """The AutoBackSwap swap with the cut-outs (``fg``) and the backgrounds (``bg``) each taken from the
    detector's masks (``learned``) or the ground truth (``oracle``). A diagnostic, not a method."""

    name = "mask_split"
    needs = "ground-truth segmentations of every training image"

    def __init__(self, **options: Any) -> None:
        self.fg, self.bg = options.pop("fg", "learned"), options.pop("bg", "oracle")
        if self.fg not in SOURCES or self.bg not in SOURCES:
            raise ValueError(f"mask_split: fg and bg must each be one of {SOURCES}")
        super().__init__(**options)

    def settings(self) -> dict[str, Any]:
        return {"fg": self.fg, "bg": self.bg, **super().settings()}

    def run(self, data: Any, cfg: TrainConfig, ctx: MethodContext) -> MethodOutput:
        banks = {s: ctx.build_banks(data, self.pipeline, cfg.seed, s == "oracle") for s in {self.fg, self.bg}}
        fg, bg = banks[self.fg].swap.fg, banks[self.bg].swap.bg
        swap = BackgroundSwap(fg, bg, data.train.labels, self.pipeline.swap, num_classes=data.num_classes)
        source = SwapSource(data.train.images, data.train.labels, swap, hflip=cfg.hflip)
        result = fit(source, data.val.images, data.val.labels, data.num_classes, cfg)
        return MethodOutput(result.model, result, {"mask_iou": banks[self.fg].info.get("mask_iou")})


def hole_stats(data: Any, options: dict[str, Any], run_dir: Path) -> None:
    """Area and bird coverage of each hole, on the training images with seed 0's detector."""
    import numpy as np

    from autobackswap.pipeline import fit_detector
    from autobackswap.separate.masks import create_refiner
    from autobackswap.separate.run import masks_from_grid, masks_from_segmentation

    det, _ = fit_detector(data, PipelineConfig.from_options(options), 0, run_dir / "detectors")
    images, masks = data.train.images, data.train.segmentations
    seg, p_fg = masks > 127, det.predict_proba(images)
    holes = {"ground truth, dilated 2 px (oracle)": [masks_from_segmentation(m)[1] for m in masks]}
    for name, extra in (("grid, t_loose 0.9 (reference)", {}),
                        ("refined, t_loose 0.7, 2 px", {"hole": "refined", "t_loose": 0.7, "hole_dilate": 2})):
        cfg = PipelineConfig.from_options({**options, **extra})
        sep, refine = cfg.separation_config(0), create_refiner(cfg.separation.refine)
        holes[name] = [masks_from_grid(im, p, sep, refine)[1] for im, p in zip(images, p_fg, strict=True)]
    rows = [[name, f"{np.mean([h.mean() for h in hs]):.3f}",
             f"{np.mean([h[m].mean() for h, m in zip(hs, seg, strict=True) if m.any()]):.3f}"]
            for name, hs in holes.items()]
    print("inpainting holes on the training images (seed 0's detector):")
    print(render_markdown(["hole", "area (share of the image)", "bird pixels covered"], rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--hybrids", default="learned/oracle,oracle/learned", help="fg/bg pairs, comma-separated")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--data-root", default="runs/bench/tuxbirds_data")
    ap.add_argument("--out", default="runs/bench/mask_loss")
    ap.add_argument("--reference", default="runs/bench/tuxbirds60/main",
                    help="a bench_tuxbirds.py run (its main/ folder) with autobackswap and oracle at the same settings")
    add_pipeline_args(ap)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    data = tuxbirds(Path(args.data_root), 1.0, 0, args.image_size)
    specs = [f"mask_split:fg={p.split('/')[0]}:bg={p.split('/')[1]}" for p in args.hybrids.split(",") if p]
    cfg = ExperimentConfig(data=str(data["seen"]), methods=specs, seeds=[int(s) for s in args.seeds.split(",")],
                           image_size=args.image_size, train=TrainConfig(epochs=args.epochs), diagnostics=False,
                           also_test={"unseen": str(data["unseen"])}, method_options=pipeline_options(args))
    from autobackswap.data.splits import load_experiment_data

    hole_stats(load_experiment_data(data["seen"], args.image_size, args.out), cfg.method_options, Path(args.out))
    results = run_experiment(cfg, Path(args.out))
    import json

    ref_file = Path(args.reference) / "results.json"
    ref = json.loads(ref_file.read_text())["methods"] if ref_file.is_file() else {}
    corners = {"learned/learned (autobackswap)": ref.get("autobackswap"), "oracle/oracle (oracle)": ref.get("oracle")}
    corners.update({s.split(":", 1)[1].replace("fg=", "").replace(":bg=", "/"): results["methods"][s] for s in specs})
    rows = []
    for name, entry in corners.items():
        if entry is None:
            continue
        cells = [name]
        for setting in SETTINGS:
            t = entry["test" if setting == "seen" else f"test:{setting}"]
            cells.append(f"{t['worst_group_accuracy']:.3f} ± {t['std']['worst_group_accuracy']:.3f}")
        rows.append(cells)
    print(f"TuxBirds, {args.epochs} epochs, seeds {args.seeds}: WGA by where the cut-outs (fg) and backgrounds (bg) come from")
    print(render_markdown(["fg/bg", *(f"WGA {s}" for s in SETTINGS)], rows))


if __name__ == "__main__":
    main()
