"""Command-line interface: parses arguments and calls the library, nothing else."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .errors import AutoBackSwapError

log = logging.getLogger("autobackswap")

def csv_ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def csv_strs(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def port_number(text: str) -> int:
    """A TCP port, 0-65535 (0: any free one)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {port}")
    return port


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (``prog: error: message``) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def named_path(text: str) -> tuple[str, str]:
    """``NAME=DIR`` or ``DIR`` (named after its folder)."""
    name, sep, path = text.partition("=")
    if not sep:
        name, path = Path(text).name, text
    if not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR or DIR, got {text!r}")
    return name, path


# Every setting flag defaults to None: the library resolves defaults <- --recipe <- the flags given
# (autobackswap.settings.resolve), so only the flags a user typed override a recipe.
def add_train_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("classifier training")
    g.add_argument("--image-size", type=int, default=None, help="working size in px; images are resized to a square (default 64)")
    g.add_argument("--epochs", type=int, default=None, help="training epochs (default 10)")
    g.add_argument("--batch-size", type=int, default=None, help="batch size (default 128)")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate (default 3e-3)")
    g.add_argument("--weight-decay", type=float, default=None, help="weight decay (default 5e-4)")
    g.add_argument("--optimizer", default=None, help="adamw (default) or sgd (with --momentum)")
    g.add_argument("--momentum", type=float, default=None, help="SGD momentum (default 0.9)")
    g.add_argument("--lr-schedule", default=None,
                   help="cosine (linear warmup, then cosine decay; default) or constant")
    g.add_argument("--label-smoothing", type=float, default=None, help="cross-entropy label smoothing (default 0)")
    g.add_argument("--class-weighted", action=argparse.BooleanOptionalAction, default=None,
                   help="weight the cross entropy per class by max(count) / count (default off)")
    g.add_argument("--grad-clip", type=float, default=None, help="clip the gradient norm to this (default 0: off)")
    g.add_argument("--model", default=None,
                   help="classifier: small_resnet or resnet18 (built in), tv:<name> (torchvision, e.g. tv:resnet50) or "
                        "timm:<name> (e.g. timm:efficientnet_b0) (default small_resnet)")
    g.add_argument("--pretrained", default=None, metavar="TAG|FILE",
                   help="pretrained weights: a torchvision weight name (IMAGENET1K_V1) or timm tag (resnet50.tv_in1k), "
                        "fetched (tf_efficientnet_lite0.in1k is read offline from an installed package); or a local "
                        ".pt/.pth/.safetensors file, loaded strictly (the head is sized to the data)")
    g.add_argument("--freeze", type=int, default=None, metavar="N",
                   help="pretrained tv:/timm: models: keep the stem and the first N stages fixed (weights and BatchNorm "
                        "statistics; default 0: train everything)")
    g.add_argument("--width", type=int, default=None, help="base channel width of the built-in classifiers (default 24)")
    g.add_argument("--model-weights", default=None, metavar="FILE",
                   help="a weight file (e.g. an earlier model.pt) loaded strictly into the classifier")
    g.add_argument("--no-hflip", dest="hflip", action="store_const", const=False, default=None,
                   help="disable horizontal-flip augmentation (wrong for digits, text)")
    g.add_argument("--augment", default=None,
                   help="extra batch augmentations for every method, '+'-separated: crop, color, resized_crop (default none)")
    g.add_argument("--ema", type=float, default=None,
                   help="per-step decay of a moving average of the weights, which is validated and kept (e.g. 0.995; default off)")
    g.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision (default: on for CUDA, bf16 where supported, else fp16; off on the CPU)")
    g.add_argument("--drop-minority", action=argparse.BooleanOptionalAction, default=None,
                   help="drop the train and val images outside each class's majority place (the paper's Waterbirds setting)")
    g.add_argument("--eval-crop", type=float, default=None,
                   help="val/test: resize to image size / f, keep the centre (0.875: the reference's 256 -> 224; default 1)")
    add_device_arg(p)
    add_recipe_arg(p)


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None,
                   help="auto (a GPU when there is one; default), cpu, cuda, cuda:N or mps: where the classifier "
                        "trains and the detector trains and predicts")


def add_recipe_arg(p: argparse.ArgumentParser, default: str = "none: the library defaults") -> None:
    p.add_argument("--recipe", default=None, metavar="NAME|FILE",
                   help="settings from a recipe (cpu-small, demo, photos-cpu, waterbirds-paper) or a .toml file; "
                        f"flags given override it (default {default})")


def settings(args: argparse.Namespace, data: Any, experiment: dict[str, Any] | None = None,
             runs: list[str] | None = None) -> Any:
    """The run's ExperimentConfig: defaults <- --recipe <- the flags given (``experiment``: extra overrides;
    ``runs``: the methods the pipeline options are for, default the config's)."""
    from dataclasses import fields

    from .recipes import load_recipe
    from .settings import resolve, section_kinds
    from .train.loop import TrainConfig

    recipe = load_recipe(args.recipe) if getattr(args, "recipe", None) else None
    given = {k: v for k, v in vars(args).items() if v is not None}
    given["also_test"] = dict(given["also_test"]) if "also_test" in given else None
    train = {f.name: given[f.name] for f in fields(TrainConfig) if f.name in given and f.name not in ("seed", "device")}
    exp = {k: given[k] for k in section_kinds()["experiment"] if given.get(k) is not None}
    overrides = {"experiment": {**exp, **(experiment or {})}, "train": train, "pipeline": method_options(args)}
    cfg = resolve(str(data), recipe, overrides, device=getattr(args, "device", None), runs=runs)
    if cfg.recipe:
        changed = ", ".join(cfg.recipe["overridden"]) or "none"
        print(f"recipe {cfg.recipe['name']} ({cfg.recipe['path']}); overridden by flags: {changed}")
    return cfg


# ----------------------------------------------------------------------------- make-synthetic
def _make_synthetic_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", type=Path, help="output folder (Waterbirds layout)")
    p.add_argument("--n-train", type=int, default=2000, help="training images (default 2000)")
    p.add_argument("--n-val", type=int, default=400, help="validation images (default 400)")
    p.add_argument("--n-test", type=int, default=800, help="test images, balanced: n/4 per (y, place) group (default 800)")
    p.add_argument("--correlation", type=float, default=1.0,
                   help="P(place == y) in train and val (default 1.0: no minority group at all)")
    p.add_argument("--image-size", type=int, default=64, help="side of the square images in px (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generator (default 0)")
    p.add_argument("--difficulty", default="easy",
                   help="easy (default: shape and colour tell foreground from background) or hard (several shapes per "
                        "class, textured foregrounds of any hue, backgrounds told apart by texture only, distractor "
                        "shapes, thin appendages)")
    p.set_defaults(func=_make_synthetic)


def _make_synthetic(args: argparse.Namespace) -> int:
    from .data.synthetic import make_synthetic

    out = make_synthetic(args.out, args.n_train, args.n_val, args.n_test, args.correlation, args.image_size, args.seed,
                         difficulty=args.difficulty)
    print(f"wrote synthetic benchmark to {out}")
    return 0


# ----------------------------------------------------------------------------- experiment
PIPELINE_SECTIONS = ("labels", "detector", "separation", "swap", "engine")


def add_method_option_args(p: argparse.ArgumentParser, sections: Sequence[str] = PIPELINE_SECTIONS) -> None:
    """Stage options of the AutoBackSwap pipeline (used by autobackswap, oracle and random_paste), by
    section: a command shows only the sections it uses. Unset ones keep the library's defaults."""
    if "labels" in sections:
        g = p.add_argument_group("patch labels")
        g.add_argument("--label-budget", type=int, default=None, help="labelled training images for the detector (default 200)")
        g.add_argument("--labels", default=None, help="patch labels: a masks.csv or a labels.sqlite (default: DATA/masks.csv "
                                                     "when present, else derived from segmentations/)")
        g.add_argument("--grid", type=int, default=None, help="patch grid G (default 16)")
    if "detector" in sections:
        g = p.add_argument_group("detector")
        g.add_argument("--detector-epochs", type=int, default=None, help="detector training epochs (default 100)")
        g.add_argument("--detector-backbone", default=None,
                       help="detector: fcn (built in, default), tv:efficientnet_b0 (the paper's; any tv:<name> or "
                            "timm:<name>: pooled features -> MLP -> GxG) or timm-map:<name> (feature map -> 1x1 conv)")
        g.add_argument("--detector-weights", default=None, metavar="TAG|FILE",
                       help="the detector backbone's pretrained weights: a tag (IMAGENET1K_V1; "
                            "tf_efficientnet_lite0.in1k offline) or a file, loaded strictly (default none)")
        g.add_argument("--detector-width", type=int, default=None,
                       help="the fcn's base channel width, or a timm-fpn head's channels (default 32)")
        g.add_argument("--detector-lr", type=float, default=None, help="the detector's peak learning rate (default 3e-3)")
        g.add_argument("--detector-batch-size", type=int, default=None, help="the detector's batch size (default 32)")
        g.add_argument("--detector-freeze", type=int, default=None, metavar="N",
                       help="a pretrained detector backbone keeps its stem and first N stages fixed (default 0)")
        g.add_argument("--detector-tta", action="store_const", const=True, default=None,
                       help="flip test-time augmentation: mean of the image's and its mirror's grid (default off)")
        g.add_argument("--detector-self-train", type=int, default=None,
                       help="self-training rounds on the unlabelled training images (confident patches as "
                            "pseudo-labels; default 0: off)")
        g.add_argument("--detector-input-scale", type=int, default=None,
                       help="the detector upsamples its input by this factor (bilinear; default 1: off)")
    if "separation" in sections:
        g = p.add_argument_group("separation")
        g.add_argument("--t-tight", type=float, default=None, help="tight foreground: p_bg < t (default 0.5)")
        g.add_argument("--t-loose", type=float, default=None, help="inpainting hole: p_bg < t (default 0.9)")
        g.add_argument("--hole", default=None,
                       help="inpainting hole: grid (the loose patches, the reference; default) or refined (the refiner's "
                            "mask at the loose threshold, following the object's edges)")
        g.add_argument("--hole-dilate", type=int, default=None, help="px the inpainting hole grows by (default 1)")
        g.add_argument("--inpainter", default=None, help="inpainter from the registry (default mean, chosen on TuxBirds by the inpainters study, benchmarks/run.py inpainters)")
        g.add_argument("--refine", default=None, help="mask refinement from the registry (default guided)")
        g.add_argument("--max-unswapped", type=float, default=None,
                       help="health check: stop when more than this share of images would train unswapped (default 0.25)")
        g.add_argument("--allow-bad-separation", action="store_const", const=True, default=None,
                       help="train on a separation that fails the health check (the report flags it)")
        g.add_argument("--min-confidence", type=float, default=None,
                       help="keep images whose separation confidence (OUT/separation/*/confidence.csv) is below this "
                            "as originals instead of swapping them (default 0: off; learned masks only)")
    if "swap" in sections:
        g = p.add_argument_group("background swaps")
        g.add_argument("--p", type=float, default=None, help="probability each image is swapped per epoch (default 1.0)")
        g.add_argument("--bg-shuffle", action="store_const", const=True, default=None,
                       help="permute each swapped background's colour channels at random (an option for photos; off by default)")
        g.add_argument("--bg-only", type=float, default=None,
                       help="extra inpainted backgrounds per batch, as a fraction of the batch, trained toward the "
                            "uniform prediction (default 0: off)")
        g.add_argument("--distractor", type=float, default=None,
                       help="probability of a second cut-out, of a random class, pasted behind the object on the swapped "
                            "background (default 0: off)")
    if "engine" in sections:
        e = p.add_argument_group("separation engine (execution only: every engine writes the same files)")
        e.add_argument("--engine", default=None,
                       help="local: a process pool on this machine (default); ray: a Ray Data pipeline")
        e.add_argument("--workers", type=int, default=None,
                       help="local: worker processes; ray: CPUs of a new local Ray instance (default: every core)")
        e.add_argument("--ray-address", default=None,
                       help="ray: connect to this cluster (e.g. auto, ray://head:10001) instead of starting a local instance")


def add_stream_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stream", action="store_const", const=True, default=None,
                   help="keep images, masks and swap banks on disk (OUT/cache/, read per batch) instead of in memory, "
                        "so memory stays flat as the dataset grows")


LAYOUT_HELP = ("dataset layout: auto (default: detected), waterbirds, spawrious[:variant=o2o_easy|...|m2m_hard]"
               "[:splits=reference|official], in9, metashift, imagefolder[:attributes=CSV] (docs/datasets.md)")


def add_layout_arg(p: argparse.ArgumentParser, default: str | None = "auto") -> None:
    """``--layout``; the commands that resolve their settings (``settings``) pass ``default=None`` so that a
    recipe's layout applies unless the flag is given."""
    p.add_argument("--layout", default=default, metavar="NAME", help=LAYOUT_HELP)


def load_data(args: argparse.Namespace, cfg: Any) -> Any:
    from .experiment import experiment_data

    return experiment_data(cfg, args.out, stream=cfg.stream)


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    """The pipeline flags the user set (flat option names, see ``autobackswap.pipeline.FLAT``)."""
    from .pipeline import FLAT

    return {k: getattr(args, k) for k in FLAT if getattr(args, k, None) is not None}


def _experiment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", type=Path, help="dataset folder (see --layout)")
    from .methods import METHODS
    p.add_argument("--methods", type=csv_strs, default=None,
                   help=f"comma-separated methods from {', '.join(METHODS.names())}; options as name:key=value, "
                        "e.g. autobackswap:inpainter=gray (default erm)")
    p.add_argument("--seeds", type=csv_ints, default=None, help="comma-separated seeds (default 0)")
    p.add_argument("--out", type=Path, required=True, help="run folder for results.json, models, caches")
    p.add_argument("--label-budgets", type=csv_ints, default=None,
                   help="sweep autobackswap over these label budgets, e.g. 25,50,100,200 (the label-efficiency curve)")
    p.add_argument("--no-diagnostics", dest="diagnostics", action="store_const", const=False, default=None,
                   help="skip the only_fg / only_bg / mixed_same / mixed_rand background diagnostics")
    p.add_argument("--also-test", type=named_path, action="append", default=None, metavar="[NAME=]DIR",
                   help="also score every model on the test split of the dataset DIR (same classes; repeatable), "
                        "e.g. TuxBirds' OUT/unseen beside OUT/seen, or an IN-9 variant folder "
                        "(mixed_rand=ROOT/bg_challenge/mixed_rand): each model is trained once")
    add_stream_arg(p)
    add_layout_arg(p, default=None)
    add_train_args(p)
    add_method_option_args(p)
    p.set_defaults(func=_experiment)


def _experiment(args: argparse.Namespace) -> int:
    from .experiment import run_experiment

    cfg = settings(args, args.data)
    results = run_experiment(cfg, args.out)
    print_results(results, args.out)
    return 0


def print_results(results: dict[str, Any], out: Path) -> None:
    """The test table (and one per --also-test set), the diagnostics table and where the files are."""
    from .evaluate.table import diagnostics_rows, paper_caption, render_text, results_rows, seeds_caption

    print(f"test split, {seeds_caption(results)}")
    print(render_text(*results_rows(results)))
    if paper_caption(results):
        print(paper_caption(results))
    for name, path in results["config"].get("also_test", {}).items():
        print(f"\ntest split of {name} ({path}), {seeds_caption(results)}")
        print(render_text(*results_rows(results, f"test:{name}")))
    gaps = {m: e["bg_gap_official"] for m, e in results["methods"].items() if e.get("bg_gap_official") is not None}
    if gaps:
        print("\nofficial BG-gap (mixed_same - mixed_rand): " + ", ".join(f"{m} {g:.3f}" for m, g in gaps.items()))
    header, rows = diagnostics_rows(results)
    if rows:
        print(f"\nbackground diagnostics (accuracy; bg_gap = mixed_same - mixed_rand)\n{render_text(header, rows)}")
    print(f"\nresults: {out / 'results.json'}\nreport: {out / 'report.html'}")


# ----------------------------------------------------------------------------- train / evaluate
def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", type=Path, help="dataset folder (see --layout)")
    p.add_argument("--out", type=Path, required=True, help="run folder; the checkpoint goes to OUT/model.pt")
    p.add_argument("--method", default="erm", help="a method from the registry (default erm)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    add_layout_arg(p, default=None)
    add_stream_arg(p)
    add_train_args(p)
    add_method_option_args(p)
    p.description = ("Train one classifier with a method and save its checkpoint. Under `torchrun --nproc_per_node N "
                     "-m autobackswap train ...` it trains with DDP (gloo on CPU, NCCL on GPU); --batch-size is the "
                     "global batch, split across the processes, and only rank 0 writes files.")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from . import runtime

    runtime.setup()
    try:
        return _train_run(args)
    finally:
        runtime.cleanup()


def _train_run(args: argparse.Namespace) -> int:
    from .evaluate.table import group_table
    from .experiment import train_single

    cfg = settings(args, args.data, {"methods": [args.method], "seeds": [args.seed]})
    record = train_single(cfg, args.out, stream=cfg.stream)
    if record is None:  # a torchrun rank other than 0
        return 0
    val = record["val"]
    print(f"trained {args.method} in {record['train_seconds']:.1f}s; val average accuracy {val['average_accuracy']:.3f}")
    print(group_table(val))
    print(f"checkpoint: {args.out / 'model.pt'}")
    return 0


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", type=Path, help="dataset folder (see --layout)")
    p.add_argument("--checkpoint", type=Path, required=True, help="a classifier checkpoint (model.pt)")
    p.add_argument("--split", choices=["train", "val", "test"], default="test", help="the split to score (default test)")
    p.add_argument("--out", type=Path, default=None, help="write the metrics JSON here")
    add_layout_arg(p)
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate.results import evaluate_checkpoint
    from .evaluate.table import group_table
    from .io import check_writable_file, write_json

    if args.out:
        check_writable_file(args.out, "--out")
    metrics = evaluate_checkpoint(args.data, args.checkpoint, args.split, layout=args.layout)
    print(json.dumps({k: v for k, v in metrics.items() if k != "groups"}, indent=2))
    print(group_table(metrics))
    if args.out:
        write_json(args.out, metrics)
    return 0


# ----------------------------------------------------------------------------- make-photo-benchmark
def _make_photo_benchmark_args(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Build TuxBirds: water birds (y=1) and land birds (y=0), photo cut-outs from Debian's tuxpaint-stamps-default, "
        "pasted onto random crops of water (place=1) and land (place=0) photos from Debian wallpaper packages. "
        "Writes OUT/seen and OUT/unseen, two datasets in the Waterbirds layout that share train and val: the seen "
        "test pastes the training birds on unseen photos, the unseen test also uses unseen birds. "
        "OUT/contact_sheet.png shows samples per group.")
    p.add_argument("out", type=Path, help="output folder; datasets go to OUT/seen and OUT/unseen")
    p.add_argument("--assets", type=Path, default=None,
                   help="folder of unpacked Debian packages, one folder per package (default: the user cache dir, "
                        "fetched there with apt-get download + dpkg -x when missing; / when installed)")
    p.add_argument("--no-fetch", action="store_true", help="never run apt-get; fail if an asset is missing")
    p.add_argument("--n-train", type=int, default=2000, help="training images (default 2000)")
    p.add_argument("--n-val", type=int, default=400, help="validation images (default 400)")
    p.add_argument("--n-test", type=int, default=800, help="per test setting; balanced: n/4 per (y, place) group (default 800)")
    p.add_argument("--correlation", type=float, default=1.0,
                   help="P(place == y) in train and val (default 1.0: no minority group; 0.95 as in Waterbirds)")
    p.add_argument("--image-size", type=int, default=64, help="working size in px; photos and cut-outs are resized to it (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the build: which photos, crops and placements (default 0)")
    p.add_argument("--test-setting", choices=["seen", "unseen", "both"], default="both",
                   help="which test set(s) to write (default both)")
    p.set_defaults(func=_make_photo_benchmark)


def _make_photo_benchmark(args: argparse.Namespace) -> int:
    from .data.photo import make_photo_benchmark

    written = make_photo_benchmark(args.out, args.assets, args.n_train, args.n_val, args.n_test, args.correlation,
                                   args.image_size, args.seed, args.test_setting, fetch=not args.no_fetch)
    for setting, path in written.items():
        print(f"wrote TuxBirds ({setting} test) to {path}")
    print(f"contact sheet: {args.out / 'contact_sheet.png'}")
    return 0


# ----------------------------------------------------------------------------- fit-detector / separate
def _fit_detector_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", type=Path, help="dataset folder (see --layout)")
    p.add_argument("--out", type=Path, required=True, help="run folder; the detector goes to OUT/detector.pt")
    p.add_argument("--image-size", type=int, default=None, help="working size in px (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seeds the label sample and the training (default 0)")
    p.add_argument("--drop-minority", action=argparse.BooleanOptionalAction, default=None,
                   help="drop the train images outside each class's majority place (as `experiment --drop-minority`)")
    add_layout_arg(p, default=None)
    add_device_arg(p)
    add_recipe_arg(p)
    add_method_option_args(p, ("labels", "detector"))
    p.set_defaults(func=_fit_detector)


def _fit_detector(args: argparse.Namespace) -> int:
    from .pipeline import PipelineConfig, detector_report, fit_detector

    exp = settings(args, args.data, runs=["autobackswap"])  # the stage commands run autobackswap's pipeline
    cfg = PipelineConfig.from_options(exp.method_options)
    cfg.check_files()
    data = load_data(args, exp)
    det, info = fit_detector(data, cfg, args.seed)
    det.save(args.out / "detector.pt")
    report = detector_report(data, det, cfg, info)
    print(json.dumps(report, indent=2))
    print(f"detector: {args.out / 'detector.pt'}")
    return 0


def _separate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", type=Path, help="dataset folder (see --layout)")
    p.add_argument("--out", type=Path, required=True, help="run folder; outputs go to OUT/separation/<digest>/")
    p.add_argument("--detector", type=Path, default=None,
                   help="a detector from fit-detector (default: fit one from the labels, cached in OUT/detectors/)")
    p.add_argument("--oracle", action="store_true", help="use the ground-truth segmentations instead of a detector")
    p.add_argument("--image-size", type=int, default=None, help="working size in px (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seeds the label sample, the detector and the inpainting (default 0)")
    p.add_argument("--drop-minority", action=argparse.BooleanOptionalAction, default=None,
                   help="drop the train images outside each class's majority place (as `experiment --drop-minority`)")
    add_layout_arg(p, default=None)
    add_stream_arg(p)
    add_device_arg(p)
    add_recipe_arg(p)
    add_method_option_args(p, ("labels", "detector", "separation", "engine"))
    p.set_defaults(func=_separate)


def _separate(args: argparse.Namespace) -> int:
    from .detect.detector import Detector
    from .pipeline import PipelineConfig, run_separation

    exp = settings(args, args.data, runs=["autobackswap"])  # the stage commands run autobackswap's pipeline
    cfg = PipelineConfig.from_options(exp.method_options)
    cfg.check_files()
    detector = Detector.load(args.detector, device=cfg.detector.device) if args.detector else None
    data = load_data(args, exp)
    banks = run_separation(data, cfg, args.seed, oracle=args.oracle, detector=detector)
    print(json.dumps(banks.info, indent=2))
    print(f"separation: {banks.info['separation']}")
    return 0


# ----------------------------------------------------------------------------- demo
def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/demo, with --photos runs/demo-photos)")
    p.add_argument("--photos", action="store_true",
                   help="TuxBirds (real photos, built offline) with the pretrained EfficientNet-Lite0 recipe photos-cpu, "
                        "scored on both test settings (seen, unseen), instead of the synthetic set")
    p.add_argument("--n-train", type=int, default=2000, help="training images of the data set (default 2000)")
    p.add_argument("--epochs", type=int, default=None, help="classifier training epochs (default: the recipe's)")
    p.add_argument("--image-size", type=int, default=None, help="working size in px (default: the recipe's)")
    p.add_argument("--seeds", type=csv_ints, default=None, help="comma-separated training seeds (default 0)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision (default: on for CUDA, off on the CPU)")
    add_device_arg(p)
    add_recipe_arg(p, "demo: the defaults with a narrower classifier and a shorter detector fit; with --photos "
                      "photos-cpu")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from .data.synthetic import check_counts
    from .demo import DEMO_METHODS, DEMO_RECIPE, PHOTO_RECIPE, run_demo, run_photo_demo
    from .io import check_writable_dir

    check_counts(args.n_train, 400, 800, 0)  # the demos' val and test counts; before the recipe line is printed
    args.out = check_writable_dir(args.out or Path("runs/demo-photos" if args.photos else "runs/demo"))
    args.recipe = args.recipe or (PHOTO_RECIPE if args.photos else DEMO_RECIPE)
    run = run_photo_demo if args.photos else run_demo
    results = run(args.out, settings(args, "", runs=DEMO_METHODS), n_train=args.n_train)
    print_results(results, args.out)
    abs_run = results["methods"]["autobackswap"]["runs"][0]
    print(f"autobackswap mask IoU vs ground truth: {abs_run.get('mask_iou', float('nan')):.3f}; "
          f"detector hold-out balanced patch accuracy: {abs_run.get('patch_balanced_accuracy') or float('nan'):.3f}")
    print(f"contact sheet: {args.out / 'contact_sheet.png'}")
    return 0


# ----------------------------------------------------------------------------- label
def _label_args(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Label training images patch by patch in a local web app. Click or drag to paint the patches of a GxG grid "
        "(left button foreground, right button or Shift background); every change is saved at once to an SQLite "
        "store. Once --assist-after images are labelled, a detector is trained in the background: it pre-fills each "
        "new image and 'label next' shows the images it is least sure of first. With --import or --export the "
        "command converts between the store and a masks.csv (reference format: info,mask) and exits without serving.")
    p.add_argument("data", type=Path, help="dataset folder (see --layout); its train split is labelled")
    p.add_argument("--db", type=Path, default=None, help="label store (default DATA/labels.sqlite)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to listen on (default 127.0.0.1: this machine only; another host exposes the app)")
    p.add_argument("--port", type=port_number, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--grid", type=int, default=None, help="patch grid G (default: the store's G, else 16)")
    p.add_argument("--budget", type=int, default=200, help="label budget, the progress counter's target (default 200)")
    p.add_argument("--assist-after", type=int, default=20, metavar="K",
                   help="train the suggesting detector once K images are labelled (default 20)")
    p.add_argument("--no-assist", action="store_true", help="no detector: no suggestions, 'label next' in metadata order")
    p.add_argument("--image-size", type=int, default=64, help="working size in px of the suggesting detector (default 64)")
    p.add_argument("--separation", type=Path, default=None, metavar="DIR",
                   help="a separation folder of this train split (RUN/separation/abs_*/): 'label next' shows its least "
                        "confident separations first (active labelling on the images the separator gets wrong)")
    add_device_arg(p)
    p.add_argument("--import", dest="import_csv", type=Path, default=None, metavar="CSV",
                   help="import a masks.csv into the store (all rows or none) and exit")
    p.add_argument("--export", dest="export_csv", type=Path, default=None, metavar="CSV",
                   help="write the store as masks.csv (info = img_id) and exit; runs after --import when both are given")
    add_layout_arg(p)
    p.set_defaults(func=_label)


def _label(args: argparse.Namespace) -> int:
    from .data.labelstore import LabelStore
    from .data.layout import read_masks_csv
    from .data.layouts import read_layout
    from .label.assist import AssistConfig
    from .label.server import allowed_hosts_for, create_app, serve

    db = args.db if args.db is not None else args.data / "labels.sqlite"
    if args.import_csv is not None or args.export_csv is not None:
        dataset = read_layout(args.data, args.layout)
        if args.import_csv is None and not db.is_file():
            raise AutoBackSwapError(f"{db}: label store not found (nothing to export)")
        if args.import_csv is not None:
            read_masks_csv(args.import_csv, dataset)  # a bad file is refused before the store is created
        store = LabelStore(db, grid=args.grid, readonly=args.import_csv is None)  # an export only reads
        if args.import_csv is not None:
            print(f"imported {store.import_csv(args.import_csv, dataset)} labels from {args.import_csv} into {db}")
        if args.export_csv is not None:
            print(f"exported {store.export_csv(args.export_csv, dataset)} labels from {db} to {args.export_csv}")
        return 0
    stored = LabelStore(db, readonly=True).grid if args.grid is None and db.is_file() else None
    grid = args.grid if args.grid is not None else stored or 16
    allowed_hosts = allowed_hosts_for(args.host)  # None: not a loopback address
    local = allowed_hosts is not None
    if args.separation is not None and args.no_assist:
        raise AutoBackSwapError("--separation orders 'label next' through the model assistance: drop --no-assist")
    assist_config = None
    if args.separation is not None:
        assist_config = AssistConfig(min_labels=args.assist_after, image_size=args.image_size, separation=args.separation,
                                     device=args.device or "auto")
    app = create_app(args.data, db, grid=grid, budget=args.budget, assist_after=args.assist_after,
                     assist=not args.no_assist, image_size=args.image_size, assist_config=assist_config,
                     device=args.device or "auto", allowed_hosts=allowed_hosts, layout=args.layout)
    info = app.state.labeller.info()
    print(f"labelling {info['n_train']} training images of {args.data} ({grid}x{grid} patches); "
          f"{info['n_labelled']} labelled so far; labels are saved to {db}")
    if not local:
        print(f"warning: listening on {args.host}: anyone who can reach this address can read the images and "
              "change the labels", file=sys.stderr)

    def ready(url: str) -> None:
        print(f"open {url}  (Ctrl+C stops)", flush=True)

    serve(app, args.host, args.port, log_level="info" if args.verbose else "warning", on_ready=ready)
    return 0


# ----------------------------------------------------------------------------- diagnose
def _diagnose_args(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Background diagnostics (ImageNet-9 style) for every model an experiment saved under RUN/models/: accuracy on "
        "the test split rebuilt as only_fg (foreground on gray), only_bg (foreground inpainted away), mixed_same "
        "(foreground on a background of the same class) and mixed_rand (on a random background), and "
        "bg_gap = mixed_same - mixed_rand. Updates RUN/results.json, writes RUN/diagnostics.json and the report.")
    p.add_argument("run", type=Path, help="a run folder written by `autobackswap experiment` (results.json, models/)")
    p.add_argument("--data", type=Path, default=None, help="dataset folder (default: the one recorded in results.json)")
    p.add_argument("--masks", choices=["auto", "ground_truth", "predicted"], default="auto",
                   help="test masks: ground-truth segmentations, or predicted by the run's detector (default auto: "
                        "ground truth when every test image has one)")
    p.add_argument("--detector", type=Path, default=None, help="detector for predicted masks (default: the run's)")
    p.add_argument("--inpainter", default=None, help="inpainter for only_bg and the mixed backgrounds (default mean)")
    p.add_argument("--mixed-same", choices=["majority", "class"], default=None,
                   help="mixed_same donors: the class's usual (training-majority) background, or any image of the class")
    p.add_argument("--seed", type=int, default=0, help="seeds the inpainting and the background draws")
    p.add_argument("--no-report", action="store_true", help="do not rewrite RUN/report.html and RUN/report.md")
    add_layout_arg(p, default=None)
    p.set_defaults(func=_diagnose)


def _diagnose(args: argparse.Namespace) -> int:
    from .evaluate.runner import diagnose_run
    from .evaluate.table import diagnostics_rows, render_text, seeds_caption

    results = diagnose_run(args.run, args.data, args.masks, args.detector, args.inpainter, args.mixed_same,
                           args.seed, report=not args.no_report, layout=args.layout)
    info = results["diagnostics"]
    print(f"{info['n']} test images, masks: {info['masks']}, {seeds_caption(results)}")
    print(render_text(*diagnostics_rows(results)))
    print(f"\ndiagnostics: {args.run / 'diagnostics.json'}")
    if not args.no_report:
        print(f"report: {args.run / 'report.html'}")
    return 0


# ----------------------------------------------------------------------------- inspect
def _inspect_args(p: argparse.ArgumentParser) -> None:
    p.description = (
        "A dataset card: per split the (class, attribute) group counts, the class-attribute association, the minority "
        "groups, image sizes and modes (a sample), mask coverage; patch labels available; files duplicated across "
        "splits; and warnings about what stops a method (no minority group in val for DFR, fewer labels than the "
        "budget, missing masks). With --out, writes OUT/card.json, OUT/card.md and OUT/contact_sheet.png (a row per group).")
    p.add_argument("data", type=Path, help="dataset folder (see --layout)")
    add_layout_arg(p)
    p.add_argument("--out", type=Path, default=None, help="write card.json, card.md and contact_sheet.png here")
    p.add_argument("--sample", type=int, default=32, help="images per split whose size and mode are read (default 32)")
    p.add_argument("--label-budget", type=int, default=None, help="label budget to check against (default: the method's, 200)")
    p.add_argument("--per-group", type=int, default=8, help="images per group on the contact sheet (default 8)")
    p.add_argument("--no-hash", action="store_true", help="skip hashing every file to find duplicates across splits")
    p.set_defaults(func=_inspect)


def _inspect(args: argparse.Namespace) -> int:
    from .data.card import inspect_dataset, render_card_markdown
    from .pipeline import PipelineConfig

    budget = args.label_budget if args.label_budget is not None else PipelineConfig().label_budget
    card, paths = inspect_dataset(args.data, args.layout, args.out, args.sample, budget, not args.no_hash, args.per_group)
    print(render_card_markdown(card))
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


PARSERS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "make-synthetic": ("write the synthetic spurious-background benchmark", _make_synthetic_args),
    "make-photo-benchmark": ("build the TuxBirds real-photo benchmark from offline Debian packages",
                             _make_photo_benchmark_args),
    "experiment": ("run methods side by side and write RUN/results.json", _experiment_args),
    "train": ("train one classifier with a method and save its checkpoint", _train_args),
    "evaluate": ("evaluate a classifier checkpoint per group (worst-group accuracy)", _evaluate_args),
    "fit-detector": ("train the secondary network (patch foreground detector) from patch labels", _fit_detector_args),
    "separate": ("cut out foregrounds and inpaint backgrounds for the whole train split (cached, resumable)",
                 _separate_args),
    "demo": ("end to end on the synthetic benchmark: ERM vs AutoBackSwap vs oracle", _demo_args),
    "label": ("label training images patch by patch in a local web app (model-assisted)", _label_args),
    "diagnose": ("background diagnostics (only_fg, only_bg, mixed_same, mixed_rand, bg_gap) for a run's models",
                 _diagnose_args),
    "inspect": ("a dataset card: groups, correlation, minority groups, sizes, masks, duplicates, warnings",
                _inspect_args),
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="autobackswap",
        description="Make image classifiers robust to spurious backgrounds (AutoBackSwap).",
    )
    from . import __version__

    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"autobackswap {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments) in PARSERS.items():
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        add_arguments(p)
        p.set_defaults(parser=p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # reported by the command's own parser, with its usage
            args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # a usage error argparse has printed (one line): exit code 2, returned
        if exc.code in (0, None):  # --help, --version
            raise
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and args.command != "train":  # started by torchrun
        print(f"autobackswap {args.command}: error: only `train` runs under torchrun with several processes; "
              f"run `{args.command}` in one process", file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except (AutoBackSwapError, KeyError, ValueError, OSError, MemoryError) as exc:
        print(f"autobackswap {args.command}: error: {error_line(exc)}", file=sys.stderr)
        return 2


def error_line(exc: BaseException) -> str:
    """One line for an error a user can act on: its message, and for an OSError the path it concerns."""
    if isinstance(exc, KeyError) and exc.args:
        message = str(exc.args[0])
    elif isinstance(exc, OSError) and not isinstance(exc, AutoBackSwapError):
        paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
        reason = exc.strerror or str(exc) or type(exc).__name__
        message = f"{paths}: {reason}" if paths else reason
    elif isinstance(exc, MemoryError):
        message = "out of memory (a smaller --image-size, --batch-size or --stream may help)"
    else:
        message = str(exc) or type(exc).__name__
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


if __name__ == "__main__":
    sys.exit(main())
