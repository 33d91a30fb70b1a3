"""The AutoBackSwap pipeline end to end: labels -> detector -> separation -> swap banks.

Each step caches its output under the run folder, keyed by a digest of its configuration, so the
``fit-detector`` and ``separate`` commands, ``experiment`` and a resumed run all share the work.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .compose.functional import JitterConfig
from .compose.swap import BackgroundSwap, SwapConfig
from .data.stream import DiskArray, is_disk_backed, mask_cache
from .detect.detector import Detector
from .detect.labels import patch_labels
from .errors import AutoBackSwapError
from .evaluate.sheets import composites_for, separation_sheet
from .separate.engines import SeparationJob, pack_banks, read_result, run_job
from .separate.masks import pixel_iou
from .separate.run import SeparationConfig, load_banks

if TYPE_CHECKING:
    from .experiment import ExperimentData

log = logging.getLogger(__name__)


@dataclass
class PipelineConfig:
    """Every stage option of the method (reachable from the CLI as --label-budget, --grid, ...)."""

    label_budget: int = 200
    labels: str | None = None  # masks.csv / labels.sqlite; None: derive from segmentations/
    label_threshold: float = 0.25
    grid: int = 16
    detector_backbone: str = "fcn"
    detector_width: int = 32  # width 32, 100 epochs, copy-paste: mask IoU 0.68 -> 0.79 on TuxBirds (README)
    detector_epochs: int = 100
    detector_weights: str | None = None
    detector_paste: float = 1.0  # copy-paste augmentation probability (detect.detector)
    detector_patience: int = 0  # early stopping after this many epochs without a hold-out gain; 0 = off
    t_tight: float = 0.5
    t_loose: float = 0.9
    hole: str = "grid"  # the inpainting hole from the grid (separate.masks.HOLES): grid (reference) or refined
    hole_dilate: int = 1  # px the hole grows by
    inpainter: str = "mean"  # chosen on TuxBirds by benchmarks/bench_inpainters.py (README, Inpainters)
    refine: str = "guided"
    decontaminate: bool = True
    p: float = 1.0
    scale_min: float = 0.8
    scale_max: float = 1.2
    rotation: float = 30.0
    shift: float = 0.15
    bg_shuffle: bool = False  # permute background colour channels at random (see compose.swap.SwapConfig)
    bg_only: float = 0.0  # extra background-only images per batch (fraction), uniform targets
    distractor: float = 0.0  # probability of a second cut-out pasted behind the object (compose.swap.SwapConfig)
    # Execution only (no cache key includes them: every engine writes the same files).
    engine: str = "local"  # separation engine: local (process pool) or ray (Ray Data)
    workers: int = 0  # separation processes (local) or CPUs of a new local Ray instance; 0 = every core
    ray_address: str = ""  # an existing Ray cluster ("auto", "ray://head:10001"); "" starts a local instance

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> PipelineConfig:
        """Build from string or typed options (``autobackswap:inpainter=gray:p=0.5``); unknown keys raise."""
        known = {f.name: f for f in fields(cls)}
        aliases = {"fill": "inpainter", "budget": "label_budget"}
        values: dict[str, Any] = {}
        for key, value in options.items():
            key = aliases.get(key, key)
            if key not in known:
                raise ValueError(f"unknown option {key!r}; valid options: {', '.join(sorted(known))}")
            default = getattr(cls(), key)
            try:
                values[key] = _coerce(value, default)
            except ValueError:
                raise ValueError(f"option {key!r} expects {type(default).__name__}, got {value!r}") from None
        return cls(**values)

    def __post_init__(self) -> None:
        """Check registry names now, before any data is loaded or a detector is trained."""
        from .detect.model import BACKBONES
        from .separate.engines import ENGINES
        from .separate.inpaint import INPAINTERS
        from .separate.masks import HOLES, REFINERS

        if not 0.0 <= self.distractor <= 1.0:
            raise ValueError(f"distractor is a probability in [0, 1], got {self.distractor}")
        if not 0.0 <= self.bg_only <= 4.0:
            raise ValueError(f"bg_only must lie in [0, 4] (extra backgrounds per batch image), got {self.bg_only}")
        if self.hole_dilate < 0:
            raise ValueError(f"hole_dilate is a number of pixels >= 0, got {self.hole_dilate}")
        for registry, name in ((INPAINTERS, self.inpainter), (REFINERS, self.refine), (HOLES, self.hole),
                               (BACKBONES, self.detector_backbone), (ENGINES, self.engine)):
            registry.get(name)  # KeyError listing the valid names

    def swap_config(self) -> SwapConfig:
        return SwapConfig(p=self.p, jitter=JitterConfig((self.scale_min, self.scale_max), self.rotation, self.shift),
                          bg_shuffle=self.bg_shuffle, bg_only=self.bg_only, distractor=self.distractor)

    def separation_config(self, seed: int) -> SeparationConfig:
        return SeparationConfig(t_tight=self.t_tight, t_loose=self.t_loose, inpainter=self.inpainter, refine=self.refine,
                                hole_dilate=self.hole_dilate, hole=self.hole, decontaminate=self.decontaminate, seed=seed)


def _coerce(value: Any, default: Any) -> Any:
    if not isinstance(value, str) or isinstance(default, str):
        return value
    if isinstance(default, bool):
        return value.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    return value if value.lower() not in ("none", "") else None


def fingerprint(*arrays: np.ndarray | DiskArray) -> str:
    """A short digest of array contents: cached outputs are keyed by their inputs, not just their options."""
    h = hashlib.sha1()
    for a in arrays:
        h.update(str((a.dtype.str, a.shape)).encode())
        if isinstance(a, DiskArray):  # the same digest, read chunk by chunk
            for _, rows in a.chunks():
                h.update(rows.tobytes())
        else:
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:10]


def detector_checkpoint(detector: Detector, cache_dir: Path, saved: str | None = None) -> tuple[Path, str]:
    """A checkpoint of ``detector`` that engine workers can load (``saved`` when it has one already,
    else ``cache_dir/weights_<digest>.pt``), and a digest of its weights."""
    digest = fingerprint(*[t.detach().cpu().numpy() for t in detector.model_.state_dict().values()])
    if saved and Path(saved).is_file():
        return Path(saved), digest
    path = cache_dir / f"weights_{digest}.pt"
    if not path.is_file():
        detector.save(path)
    return path, digest


@dataclass
class Banks:
    swap: BackgroundSwap
    info: dict[str, Any] = field(default_factory=dict)


def fit_detector(data: ExperimentData, cfg: PipelineConfig, seed: int, cache_dir: Path | None = None) -> tuple[Detector, dict[str, Any]]:
    """Train (or load from the cache) the detector on the labelled training images."""
    idx, grids = patch_labels(data.dataset, data.train.records, data.image_size, cfg.grid, cfg.labels,
                              cfg.label_budget, cfg.label_threshold, seed)
    det = Detector(grid=grids.shape[1], backbone=cfg.detector_backbone, width=cfg.detector_width,
                   epochs=cfg.detector_epochs, weights=cfg.detector_weights, paste=cfg.detector_paste,
                   patience=cfg.detector_patience, seed=seed)
    key = json.dumps({"labels": cfg.labels, "budget": cfg.label_budget, "thr": cfg.label_threshold,
                      "detector": asdict(det.config), "size": data.image_size, "idx": idx.tolist(),
                      "data": fingerprint(data.train.images[idx], grids)}, sort_keys=True)
    path = None
    if cache_dir is not None:
        path = cache_dir / f"detector_{hashlib.sha1(key.encode()).hexdigest()[:10]}.pt"
        if path.is_file():
            log.info("detector: loading cached %s", path)
            det = Detector.load(path)
            return det, {"n_labels": len(idx), "patch_balanced_accuracy": det.holdout_balanced_accuracy_, "detector": str(path)}
    det.fit(data.train.images[idx], grids)
    if path is not None:
        det.save(path)
    return det, {"n_labels": len(idx), "patch_balanced_accuracy": det.holdout_balanced_accuracy_,
                 "detector": str(path) if path else None}


def run_separation(data: ExperimentData, cfg: PipelineConfig, seed: int, oracle: bool = False,
                   detector: Detector | None = None, readonly: bool = False) -> tuple[Path, dict[str, Any]]:
    """Separate the whole train split (cached under RUN/separation/, resumable) on the engine
    ``cfg.engine`` (:mod:`.separate.engines`).

    Learned masks come from ``detector``, or from one fitted (and cached) here; ``oracle`` uses
    the ground-truth segmentations instead. When the train images are a
    :class:`~autobackswap.data.stream.DiskArray` (``--stream``), nothing here holds the split in
    memory: ground-truth masks are cached on disk too and the swap banks are read per batch.
    ``readonly`` (torchrun ranks other than 0) reads a finished separation and writes nothing.
    """
    info: dict[str, Any] = {}
    sep_cfg = cfg.separation_config(seed)
    train = data.train
    stream = is_disk_backed(train.images)
    manifest: dict[str, Any] = {"paths": [str(r.path) for r in train.records], "rows": [r.row for r in train.records],
                                "image_size": data.image_size, "images": train.images}
    seg = None
    if data.dataset.has_segmentations:
        seg = (mask_cache(data.dataset, train.records, data.image_size, data.run_dir / "cache", "train")
               if stream else train.segmentations)
    if oracle:
        if seg is None:
            raise AutoBackSwapError(f"{data.dataset.root}: the oracle needs segmentations/ for every training image")
        digest = sep_cfg.digest(f"{data.image_size}:{fingerprint(train.images, seg)}")
        out = data.run_dir / "separation" / f"oracle_{digest}"
        job = SeparationJob(out, sep_cfg, segmentations=[str(data.dataset.segmentation_path(r)) for r in train.records],
                            segmentation_masks=seg, **manifest)
    else:
        if detector is None:
            detector, det_info = fit_detector(data, cfg, seed, data.run_dir / "detectors")
            info.update(det_info)
        checkpoint, weights = detector_checkpoint(detector, data.run_dir / "detectors", info.get("detector"))
        digest = sep_cfg.digest(f"{data.image_size}:{info.get('detector')}:{detector.config.grid}:{weights}"
                                f":{fingerprint(train.images)}")
        out = data.run_dir / "separation" / f"abs_{digest}"
        job = SeparationJob(out, sep_cfg, detector=str(checkpoint), extra_config={"detector": info.get("detector")},
                            **manifest)
    result = read_result(job) if readonly else run_job(job, cfg.engine, cfg.workers, cfg.ray_address)
    info["separation"] = str(out)
    info["separation_counts"] = result.counts
    fg, bg = pack_banks(out, len(train)) if stream else load_banks(out, len(train))
    if seg is not None:
        info["mask_iou"] = mean_mask_iou(fg, seg)
    swap = BackgroundSwap(fg, bg, train.labels, cfg.swap_config(), data.num_classes)
    info["contact_sheet"] = str(out / "contact_sheet.png")
    info["_swap"] = swap
    if readonly:
        return out, info
    rows = np.linspace(0, len(train) - 1, min(8, len(train))).round().astype(int)
    separation_sheet(out / "contact_sheet.png", train.images[rows], fg[rows], bg[rows],
                     composites_for(swap, train.images, rows, 3, seed),
                     None if oracle or detector is None else detector.predict_proba(train.images[rows]))
    return out, info


def mean_mask_iou(foregrounds: Any, segmentations: Any, chunk: int = 1024) -> float:
    """Mean pixel IoU of the cut-outs' alpha against ground truth, read in chunks."""
    ious: list[float] = []
    for start in range(0, len(segmentations), chunk):
        fg, seg = foregrounds[start : start + chunk], segmentations[start : start + chunk]
        ious += [pixel_iou(fg[i, ..., 3], seg[i]) for i in range(len(seg))]
    return float(np.mean(ious))


def build_banks(data: ExperimentData, cfg: PipelineConfig, seed: int, oracle: bool = False) -> Banks:
    """Separation (cached) and the swap banks the training loop draws from.

    Under torchrun, rank 0 runs the separation (and fits the detector) while the other ranks wait;
    they then read the same cache (every image done, nothing written) and build the same banks.
    """
    from .train import distributed

    with distributed.main_process_first():
        if distributed.is_main():
            _, info = run_separation(data, cfg, seed, oracle)
        else:
            _, info = run_separation(data, cfg, seed, oracle, readonly=True)
    swap = info.pop("_swap")
    return Banks(swap, info)


def config_dict(cfg: PipelineConfig) -> dict[str, Any]:
    return asdict(cfg)


EXECUTION_ONLY = ("engine", "workers", "ray_address")


def pipeline_settings(cfg: PipelineConfig) -> dict[str, Any]:
    """The options a result depends on (``config_dict`` without the execution-only ones)."""
    return {k: v for k, v in asdict(cfg).items() if k not in EXECUTION_ONLY}


def detector_report(data: ExperimentData, det: Detector, cfg: PipelineConfig, info: dict[str, Any]) -> dict[str, Any]:
    """Hold-out balanced patch accuracy, and grid / refined-mask IoU over the train split when
    segmentations exist."""
    from .data.grid import mask_to_grid
    from .detect.detector import balanced_accuracy
    from .separate.masks import refined_iou

    report: dict[str, Any] = {k: v for k, v in info.items() if k != "detector"}
    if data.dataset.has_segmentations:
        seg = data.train.segmentations
        p_fg = det.predict_proba(data.train.images)
        gt = np.stack([mask_to_grid(m, det.config.grid, cfg.label_threshold) for m in seg])
        report["train_patch_balanced_accuracy"] = balanced_accuracy(p_fg, gt)
        thr = 1.0 - cfg.t_tight
        for name in ("nearest", cfg.refine):
            report[f"mask_iou_{name}"] = refined_iou(data.train.images, p_fg, seg, name, thr)
    return report
