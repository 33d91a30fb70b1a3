"""The AutoBackSwap pipeline end to end: labels -> detector -> separation -> swap banks.

Each step caches its output under the run folder, keyed by a digest of its configuration, so the
``fit-detector`` and ``separate`` commands, ``experiment`` and a resumed run all share the work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import runtime
from .compose.functional import JitterConfig
from .compose.sheets import composites_for, confidence_titles, separation_sheet, sheet_rows
from .compose.swap import BackgroundSwap, SwapConfig
from .data.grid import mask_to_grid
from .data.splits import ExperimentData
from .data.stream import is_disk_backed, mask_cache
from .detect.confidence import CONFIDENCE_FILE, confidence_by_index
from .detect.detector import Detector, DetectorConfig, balanced_accuracy, check_labels, config_key
from .detect.labels import check_label_source, patch_labels
from .detect.model import OWN_WEIGHTS
from .errors import AutoBackSwapError
from .io import fingerprint, json_digest
from .options import check_range, field_kinds, parse_options
from .separate.engines import ENGINES, SeparationJob, pack_banks, read_result, run_job
from .separate.masks import bg_share, fg_kept, pixel_iou, refined_iou
from .separate.run import SeparationConfig, load_banks
from .weights import check_weights_file, weights_key

log = logging.getLogger(__name__)


# Flat option name (``autobackswap:t_tight=0.3``, ``--t-tight``) -> (section of PipelineConfig, field).
FLAT: dict[str, tuple[str, str]] = {
    "label_budget": ("", "label_budget"), "labels": ("", "labels"), "label_threshold": ("", "label_threshold"),
    "grid": ("detector", "grid"), "detector_backbone": ("detector", "backbone"), "detector_width": ("detector", "width"),
    "detector_epochs": ("detector", "epochs"), "detector_weights": ("detector", "weights"),
    "detector_paste": ("detector", "paste"), "detector_patience": ("detector", "patience"),
    "detector_device": ("detector", "device"), "detector_tta": ("detector", "tta"),
    "detector_input_scale": ("detector", "input_scale"), "detector_self_train": ("detector", "self_train"),
    "detector_self_train_threshold": ("detector", "self_train_threshold"),
    "detector_self_train_epochs": ("detector", "self_train_epochs"), "detector_freeze": ("detector", "freeze"),
    "detector_lr": ("detector", "lr"), "detector_batch_size": ("detector", "batch_size"),
    "t_tight": ("separation", "t_tight"), "t_loose": ("separation", "t_loose"), "hole": ("separation", "hole"),
    "hole_dilate": ("separation", "hole_dilate"), "inpainter": ("separation", "inpainter"),
    "refine": ("separation", "refine"), "decontaminate": ("separation", "decontaminate"),
    "p": ("swap", "p"), "scale_min": ("jitter", "scale_min"), "scale_max": ("jitter", "scale_max"),
    "rotation": ("jitter", "rotation"), "shift": ("jitter", "shift"), "bg_shuffle": ("swap", "bg_shuffle"),
    "bg_only": ("swap", "bg_only"), "distractor": ("swap", "distractor"),
    "engine": ("", "engine"), "workers": ("", "workers"), "ray_address": ("", "ray_address"),
    "max_unswapped": ("", "max_unswapped"), "allow_bad_separation": ("", "allow_bad_separation"),
    "min_confidence": ("", "min_confidence"),
}
JITTER_KINDS = {"scale_min": float, "scale_max": float, "rotation": float, "shift": float}
# No cache or run key includes these: every engine writes the same files, the detector's device is where it
# runs, and the health check only decides whether a finished separation is used.
EXECUTION_ONLY = ("engine", "workers", "ray_address", "detector_device", "max_unswapped", "allow_bad_separation")
# Options added later: left out of settings() (and so of run keys) at their default, so runs saved
# before they existed are still reused.
LATER_OPTIONS: dict[str, Any] = {"min_confidence": 0.0, "detector_tta": False, "detector_input_scale": 1,
                                 "detector_self_train": 0, "detector_self_train_threshold": 0.9,
                                 "detector_self_train_epochs": 30, "detector_freeze": 0, "detector_lr": 3e-3,
                                 "detector_batch_size": 32}
MIN_AGREEMENT = 0.7  # tight masks vs the labelled patches (balanced accuracy) below this: the separation failed


@dataclass
class PipelineConfig:
    """Every stage option of the method, composed of the stages' own configs (each default lives
    there once). Built from flat options (``autobackswap:inpainter=gray:p=0.5``, ``--grid``) by
    :meth:`from_options`; :meth:`flat` gives them back."""

    label_budget: int = 200
    labels: str | None = None  # masks.csv / labels.sqlite; None: derive from segmentations/
    label_threshold: float = 0.25
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    separation: SeparationConfig = field(default_factory=SeparationConfig)
    swap: SwapConfig = field(default_factory=SwapConfig)
    engine: str = "local"  # separation engine: local (process pool) or ray (Ray Data)
    workers: int = 0  # separation processes (local) or CPUs of a new local Ray instance; 0 = every core
    ray_address: str = ""  # an existing Ray cluster ("auto", "ray://head:10001"); "" starts a local instance
    max_unswapped: float = 0.25  # health check: at most this share of images left unswapped (no fg / all fg)
    allow_bad_separation: bool = False  # train on a separation that fails the health check (flagged in the report)
    # keep images whose separation confidence (autobackswap.detect.confidence) is below this as originals:
    # never swapped, never a background donor; 0 = off. Learned masks only (the oracle has no detector).
    min_confidence: float = 0.0

    def __post_init__(self) -> None:
        check_range("label_budget", self.label_budget, 1, 100_000_000, integer=True)
        check_range("label_threshold (a fraction of a patch)", self.label_threshold, 0.0, 1.0)
        check_range("workers", self.workers, 0, 4096, integer=True)
        check_range("max_unswapped (a share of the images)", self.max_unswapped, 0.0, 1.0)
        check_range("min_confidence (a confidence)", self.min_confidence, 0.0, 1.0)
        ENGINES.get(self.engine)  # KeyError listing the valid names
        if self.detector.freeze and not self.detector.weights:
            raise ValueError(f"detector_freeze={self.detector.freeze} fixes the detector backbone's first stages, but "
                             "it has no pretrained weights (--detector-weights TAG|FILE): they would stay random")

    @classmethod
    def kinds(cls) -> dict[str, Any]:
        """Flat option name -> its annotation (what :func:`~autobackswap.options.coerce` parses to)."""
        sections = {"": cls, "detector": DetectorConfig, "separation": SeparationConfig, "swap": SwapConfig}
        return {k: JITTER_KINDS[k] if sec == "jitter" else field_kinds(sections[sec])[name]
                for k, (sec, name) in FLAT.items()}

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> PipelineConfig:
        """Build from flat string or typed options; unknown keys and unparsable values raise."""
        values = parse_options("autobackswap", options, cls.kinds())
        parts: dict[str, dict[str, Any]] = {"": {}, "detector": {}, "separation": {}, "swap": {}, "jitter": {}}
        for key, value in values.items():
            section, name = FLAT[key]
            parts[section][name] = value
        base, j = JitterConfig(), parts["jitter"]
        jitter = JitterConfig((j.get("scale_min", base.scale[0]), j.get("scale_max", base.scale[1])),
                              j.get("rotation", base.rotation), j.get("shift", base.shift))
        return cls(**parts[""], detector=DetectorConfig(**parts["detector"]),
                   separation=SeparationConfig(**parts["separation"]), swap=SwapConfig(jitter=jitter, **parts["swap"]))

    def flat(self) -> dict[str, Any]:
        """The flat options, every one resolved (the inverse of :meth:`from_options`)."""
        jitter = self.swap.jitter
        values = {"scale_min": jitter.scale[0], "scale_max": jitter.scale[1], "rotation": jitter.rotation,
                  "shift": jitter.shift}
        sections = {"": self, "detector": self.detector, "separation": self.separation, "swap": self.swap}
        return {k: values[k] if sec == "jitter" else getattr(sections[sec], name) for k, (sec, name) in FLAT.items()}

    def settings(self) -> dict[str, Any]:
        """The options a result depends on (:meth:`flat` without the execution-only ones; a detector weight file
        by its content digest, not its path)."""
        settings = {k: v for k, v in self.flat().items()
                    if k not in EXECUTION_ONLY and not (k in LATER_OPTIONS and v == LATER_OPTIONS[k])}
        settings["detector_weights"] = weights_key(settings["detector_weights"])
        return settings

    def separation_config(self, seed: int) -> SeparationConfig:
        return replace(self.separation, seed=seed)

    def check_files(self) -> None:
        """Check the files the options name (``labels``, a ``detector_weights`` file) before any work."""
        if self.labels is not None:
            check_label_source(self.labels)
        if self.detector.backbone.partition(":")[0] in OWN_WEIGHTS:  # an ONNX file (u2netp), read when built
            weights_key(self.detector.weights)  # a missing file is an error here already
        else:
            check_weights_file(self.detector.weights)


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


def check_inputs(data: ExperimentData, cfg: PipelineConfig, seed: int, oracle: bool = False) -> None:
    """What the pipeline will learn from is there and valid, checked without training: ground-truth
    segmentations for the oracle; else the patch labels (masks.csv or label store rows, or a label
    sample from segmentations/) with both kinds of patch."""
    if oracle:
        if not data.train.has_segmentations:
            raise missing_masks_error(data)
        return
    _, grids = patch_labels(data.dataset, data.train.records, data.image_size, cfg.detector.grid, cfg.labels,
                            cfg.label_budget, cfg.label_threshold, seed)
    check_labels(grids)


def missing_masks_error(data: ExperimentData) -> AutoBackSwapError:
    """The oracle's error when some training image has no ground-truth mask: it names the first one."""
    train = data.train.records
    missing = next((r for r in train if not data.dataset.segmentation_path(r).is_file()), train[0])
    return AutoBackSwapError(f"{data.dataset.root}: the oracle needs a ground-truth mask for every training image; "
                             f"the first missing: {data.dataset.segmentation_path(missing)}")


def fit_detector(data: ExperimentData, cfg: PipelineConfig, seed: int, cache_dir: Path | None = None) -> tuple[Detector, dict[str, Any]]:
    """Train (or load from the cache) the detector on the labelled training images."""
    idx, grids = patch_labels(data.dataset, data.train.records, data.image_size, cfg.detector.grid, cfg.labels,
                              cfg.label_budget, cfg.label_threshold, seed)
    det = Detector(**asdict(replace(cfg.detector, grid=grids.shape[1], seed=seed)))
    settings = config_key(det.config)  # not where it runs; later options only when on (older keys unchanged)
    key = {"labels": cfg.labels, "budget": cfg.label_budget, "thr": cfg.label_threshold,
           "detector": {**settings, "weights": weights_key(det.config.weights)}, "size": data.image_size,
           "idx": idx.tolist(),
           "data": fingerprint(data.train.images[idx], grids)}
    # self-training also learns from the unlabelled rest of the train split
    unlabelled = data.train.images[np.setdiff1d(np.arange(len(data.train)), idx)] if det.config.self_train else None
    if unlabelled is not None:
        key["unlabelled"] = fingerprint(unlabelled)
    path = None
    if cache_dir is not None:
        path = cache_dir / f"detector_{json_digest(key)}.pt"
        if path.is_file():
            log.info("detector: loading cached %s", path)
            det = Detector.load(path, device=cfg.detector.device)
    reused = hasattr(det, "model_")
    if not reused:
        log.info("fitting the detector: %d labelled images, %dx%d grid, %d epochs (%s backbone)", len(idx),
                 det.config.grid, det.config.grid, det.config.epochs, det.config.backbone)
        det.fit(data.train.images[idx], grids, unlabelled=unlabelled)
        if path is not None:
            det.save(path)
    # how well the tight masks (p_bg < t_tight) reproduce the labelled patches: the health check's second signal
    agreement = balanced_accuracy(det.predict_proba(data.train.images[idx]), grids, 1.0 - cfg.separation.t_tight)
    # detector_seconds: what the fit took when it ran (None for checkpoints older than the record)
    return det, {"n_labels": len(idx), "patch_balanced_accuracy": det.holdout_balanced_accuracy_,
                 "labelled_agreement": agreement, "detector": str(path) if path else None,
                 "detector_seconds": det.fit_seconds_, "detector_reused": reused}


def run_separation(data: ExperimentData, cfg: PipelineConfig, seed: int, oracle: bool = False,
                   detector: Detector | None = None, readonly: bool = False) -> Banks:
    """Separate the whole train split (cached under RUN/separation/, resumable) on the engine
    ``cfg.engine`` (:mod:`.separate.engines`).

    Learned masks come from ``detector``, or from one fitted (and cached) here; ``oracle`` uses
    the ground-truth segmentations instead. When the train images are a
    :class:`~autobackswap.data.stream.DiskArray` (``--stream``), nothing here holds the split in
    memory: ground-truth masks are cached on disk too and the swap banks are read per batch.
    ``readonly`` (torchrun ranks other than 0) reads a finished separation and writes nothing.
    Returns the swap banks and what the run measured (``info``: separation folder, counts, mask IoU,
    the detector's figures).
    """
    info: dict[str, Any] = {}
    sep_cfg = cfg.separation_config(seed)
    train = data.train
    stream = is_disk_backed(train.images)
    job, seg, detector = separation_job(data, cfg, seed, oracle, detector, info)
    out = job.out_dir
    start = time.perf_counter()
    result = read_result(job) if readonly else run_job(job, cfg.engine, cfg.workers, cfg.ray_address)
    info["separation_seconds"] = time.perf_counter() - start  # the cut-outs and inpainting (cached: reading them)
    info["inpainter"] = sep_cfg.inpainter
    info["separation"] = str(out)
    info["separation_counts"] = result.counts
    fg, bg = pack_banks(out, len(train)) if stream else load_banks(out, len(train))
    if seg is not None:
        info.update(mask_metrics(fg, seg, MASK_METRICS))
    confidence = None if oracle else confidence_by_index(out / CONFIDENCE_FILE, len(train))
    keep = low_confidence(confidence, cfg.min_confidence, info)
    swap = BackgroundSwap(fg, bg, train.labels, cfg.swap, data.num_classes, keep_original=keep)
    if keep is not None:
        info["n_unswapped"] = len(train) - int(swap.usable.sum())  # no-fg, all-fg or below min_confidence
    info["contact_sheet"] = str(out / "contact_sheet.png")
    if readonly:
        return Banks(swap, info)
    rows = sheet_rows(len(train), 8, confidence)
    separation_sheet(out / "contact_sheet.png", train.images[rows], fg[rows], bg[rows],
                     composites_for(swap, train.images, rows, 3, seed),
                     None if oracle or detector is None else detector.predict_proba(train.images[rows]),
                     row_titles=None if confidence is None else confidence_titles(rows, confidence))
    check_health(info, len(train), cfg, out / "contact_sheet.png")
    return Banks(swap, info)


def separation_job(data: ExperimentData, cfg: PipelineConfig, seed: int, oracle: bool, detector: Detector | None,
                   info: dict[str, Any]) -> tuple[SeparationJob, Any, Detector | None]:
    """The separation job of the train split (its folder keyed by the masks' source and the data), the
    ground-truth masks when the dataset has them, and the detector (fitted here when none is given; its
    figures go into ``info``)."""
    sep_cfg = cfg.separation_config(seed)
    train = data.train
    manifest: dict[str, Any] = {"paths": [str(r.path) for r in train.records], "rows": [r.row for r in train.records],
                                "image_size": data.image_size, "images": train.images}
    seg = None
    if data.dataset.has_segmentations:
        seg = (mask_cache(data.dataset, train.records, data.image_size, data.run_dir / "cache", "train")
               if is_disk_backed(train.images) else train.segmentations)
    if oracle:
        if seg is None:
            raise missing_masks_error(data)
        digest = sep_cfg.digest(f"{data.image_size}:{fingerprint(train.images, seg)}")
        job = SeparationJob(data.run_dir / "separation" / f"oracle_{digest}", sep_cfg, segmentation_masks=seg,
                            segmentations=[str(data.dataset.segmentation_path(r)) for r in train.records], **manifest)
        return job, seg, detector
    if detector is None:
        detector, det_info = fit_detector(data, cfg, seed, data.run_dir / "detectors")
        info.update(det_info)
    checkpoint, weights = detector_checkpoint(detector, data.run_dir / "detectors", info.get("detector"))
    # keyed by the detector's weights (its content), never by a path: a moved run folder is reused
    digest = sep_cfg.digest(f"{data.image_size}:{detector.config.grid}:{weights}:{fingerprint(train.images)}"
                            f"{prediction_key(detector.config)}")
    job = SeparationJob(data.run_dir / "separation" / f"abs_{digest}", sep_cfg, detector=str(checkpoint),
                        extra_config={"detector": info.get("detector")}, device=cfg.detector.device, **manifest)
    return job, seg, detector


def prediction_key(cfg: DetectorConfig) -> str:
    """How the detector predicts, beyond its weights, as a separation-key suffix: "" for the reference (so older
    separation folders keep their keys), else the options that change the grids (flip TTA, input scale)."""
    parts = ([":tta"] if cfg.tta else []) + ([f":x{cfg.input_scale}"] if cfg.input_scale != 1 else [])
    return "".join(parts)


def check_health(info: dict[str, Any], n: int, cfg: PipelineConfig, sheet: Path) -> None:
    """Stop on a separation that fails the health check (:func:`separation_problem`), or, with
    ``allow_bad_separation``, record the warning in ``info`` and go on."""
    problem = separation_problem(info, n, cfg)
    if problem is None:
        return
    if not cfg.allow_bad_separation:
        raise AutoBackSwapError(
            f"the separation looks broken: {problem}. Look at {sheet}; try a --t-tight nearer "
            f"0.5, more --detector-epochs or more labels; --allow-bad-separation trains on it anyway")
    log.warning("SEPARATION WARNING (training anyway, --allow-bad-separation): %s", problem)
    info["separation_warning"] = problem


def low_confidence(confidence: np.ndarray | None, min_confidence: float, info: dict[str, Any]) -> np.ndarray | None:
    """(N,) bool: the images kept as originals (confidence below ``min_confidence``; None when the option
    is off or there is no confidence). Records the mean confidence, the least confident images and the
    count kept in ``info``."""
    if confidence is None:
        if min_confidence > 0:
            log.info("min_confidence=%s ignored: ground-truth masks have no detector confidence", min_confidence)
        return None
    order = sheet_rows(len(confidence), 5, confidence)
    info["confidence_mean"] = float(confidence.mean()) if len(confidence) else None
    info["least_confident"] = [{"index": int(i), "confidence": round(float(confidence[i]), 4)} for i in order]
    if min_confidence <= 0:
        return None
    keep = confidence < min_confidence
    info["kept_original"] = int(keep.sum())
    log.info("separation: %d of %d images below min_confidence=%s are kept as originals", int(keep.sum()),
             len(keep), min_confidence)
    return keep


def separation_problem(info: dict[str, Any], n: int, cfg: PipelineConfig) -> str | None:
    """What is wrong with a finished separation, or None: too many images left unswapped, or tight
    masks that disagree with the labelled images."""
    counts = info["separation_counts"]
    problems = []
    kept = info.get("kept_original", 0)  # below min_confidence (some may be no-fg / all-fg too)
    unswapped = info.get("n_unswapped", counts.get("no_fg", 0) + counts.get("all_fg", 0))
    if unswapped > cfg.max_unswapped * n:
        problems.append(f"{unswapped} of {n} training images ({unswapped / n:.0%}) would train unswapped "
                        f"({counts.get('all_fg', 0)} all foreground, {counts.get('no_fg', 0)} no foreground, "
                        f"{kept} below min_confidence; at most {cfg.max_unswapped:.0%} allowed)")
    agreement = info.get("labelled_agreement")
    if agreement is not None and agreement < MIN_AGREEMENT:
        problems.append(f"the tight masks (p_bg < {cfg.separation.t_tight}) reproduce the labelled images' patches "
                        f"with balanced accuracy {agreement:.2f} (< {MIN_AGREEMENT})")
    return "; ".join(problems) or None


MaskMetric = Callable[[np.ndarray, np.ndarray], float | None]  # (cut-out alpha, ground truth) -> value or None
# What the separation info reports when segmentations exist: the IoU, the rim (cut-out alpha that is
# background) and the share of the object the cut-outs keep.
MASK_METRICS: dict[str, MaskMetric] = {"mask_iou": pixel_iou, "mask_bg_share": bg_share, "mask_fg_kept": fg_kept}


def mask_metrics(foregrounds: Any, segmentations: Any, metrics: dict[str, MaskMetric],
                 chunk: int = 1024) -> dict[str, float]:
    """Each metric's mean over the images where it is defined (not None), in one pass over the cut-outs read
    in chunks (a disk-backed bank is read once); NaN for a metric defined on none."""
    values: dict[str, list[float]] = {name: [] for name in metrics}
    for start in range(0, len(segmentations), chunk):
        fg, seg = foregrounds[start : start + chunk], segmentations[start : start + chunk]
        for i in range(len(seg)):
            for name, metric in metrics.items():
                v = metric(fg[i, ..., 3], seg[i])
                if v is not None:
                    values[name].append(v)
    return {name: float(np.mean(v)) if v else float("nan") for name, v in values.items()}


def mean_mask_metric(metric: MaskMetric, foregrounds: Any, segmentations: Any, chunk: int = 1024) -> float:
    """Mean of ``metric(cut-out alpha, ground truth)`` over the images where it is defined; NaN when none."""
    return mask_metrics(foregrounds, segmentations, {"metric": metric}, chunk)["metric"]


def mean_mask_bg_share(foregrounds: Any, segmentations: Any, chunk: int = 1024) -> float:
    """Mean over the images with a cut-out of :func:`~autobackswap.separate.masks.bg_share`: the share of the
    cut-out's alpha mass on ground-truth background (the rim it carries); NaN when no image has a cut-out."""
    return mean_mask_metric(bg_share, foregrounds, segmentations, chunk)


def build_banks(data: ExperimentData, cfg: PipelineConfig, seed: int, oracle: bool = False) -> Banks:
    """Separation (cached) and the swap banks the training loop draws from.

    Under torchrun, rank 0 runs the separation (and fits the detector) while the other ranks wait;
    they then read the same cache (every image done, nothing written) and build the same banks.
    """
    with runtime.main_process_first():
        return run_separation(data, cfg, seed, oracle, readonly=not runtime.is_main())


def detector_report(data: ExperimentData, det: Detector, cfg: PipelineConfig, info: dict[str, Any]) -> dict[str, Any]:
    """Hold-out balanced patch accuracy, and grid / refined-mask IoU over the train split when
    segmentations exist."""
    report: dict[str, Any] = {k: v for k, v in info.items() if k != "detector"}
    if data.dataset.has_segmentations:
        seg = data.train.segmentations
        p_fg = det.predict_proba(data.train.images)
        gt = np.stack([mask_to_grid(m, det.config.grid, cfg.label_threshold) for m in seg])
        report["train_patch_balanced_accuracy"] = balanced_accuracy(p_fg, gt)
        thr = 1.0 - cfg.separation.t_tight
        for name in ("nearest", cfg.separation.refine):
            report[f"mask_iou_{name}"] = refined_iou(data.train.images, p_fg, seg, name, thr)
    return report
