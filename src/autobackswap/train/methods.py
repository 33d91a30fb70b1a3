"""Training methods, registered by name. ``experiment`` runs them side by side on the same splits.

A method receives the loaded :class:`~autobackswap.experiment.ExperimentData`, a training config and
its options, and returns the trained model. Each method states the group information it needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

from ..registry import Registry
from .loop import ArraySource, FitResult, TrainConfig, fit

if TYPE_CHECKING:
    from ..experiment import ExperimentData


@dataclass
class MethodOutput:
    model: nn.Module | None
    fit: FitResult | None
    info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None  # why the method cannot work on this data (no silently wrong number)


class Method:
    """Base class: subclasses set ``name``/``needs`` and implement ``run``."""

    name: ClassVar[str] = ""
    needs: ClassVar[str] = "no group labels"

    def __init__(self, **options: Any) -> None:
        self.options = options

    def settings(self) -> dict[str, Any]:
        """Everything the result depends on besides the data and the training config: the options as
        given, or (methods with defaults of their own) resolved against those defaults, so that a
        saved run is not reused after a default changed."""
        return dict(self.options)

    def run(self, data: ExperimentData, cfg: TrainConfig) -> MethodOutput:
        raise NotImplementedError


METHODS: Registry[type[Method]] = Registry("method")


@METHODS.register("erm")
class ERM(Method):
    """Empirical risk minimisation: plain training on the training images."""

    name = "erm"
    needs = "no group labels"

    def run(self, data: ExperimentData, cfg: TrainConfig) -> MethodOutput:
        source = ArraySource(data.train.images, data.train.labels, hflip=cfg.hflip)
        result = fit(source, data.val.images, data.val.labels, data.num_classes, cfg)
        return MethodOutput(result.model, result)


def parse_method_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"autobackswap:fill=gray:p=0.5"`` -> ``("autobackswap", {"fill": "gray", "p": "0.5"})``."""
    name, *parts = spec.strip().split(":")
    options: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ValueError(f"method option {part!r} in {spec!r} must look like key=value")
        options[key.strip()] = value.strip()
    METHODS.get(name)  # raises with the list of valid names
    return name, options


class PipelineMethod(Method):
    """Base of the methods that run the AutoBackSwap pipeline: their options are a
    :class:`~autobackswap.pipeline.PipelineConfig` (checked when the method is built), and their settings
    are that config with its defaults resolved."""

    def __init__(self, **options: Any) -> None:
        from ..pipeline import PipelineConfig

        super().__init__(**options)
        self.pipeline = PipelineConfig.from_options(options)

    def settings(self) -> dict[str, Any]:
        from ..pipeline import pipeline_settings

        return pipeline_settings(self.pipeline)


@METHODS.register("autobackswap")
class AutoBackSwap(PipelineMethod):
    """Learned masks: patch labels -> detector -> separation -> class-balanced background swaps."""

    name = "autobackswap"
    needs = "no group labels (patch labels on a few hundred training images)"
    oracle = False

    def run(self, data: ExperimentData, cfg: TrainConfig) -> MethodOutput:
        from ..compose.swap import SwapSource
        from ..pipeline import build_banks

        banks = build_banks(data, self.pipeline, cfg.seed, oracle=self.oracle)
        source = SwapSource(data.train.images, data.train.labels, banks.swap, hflip=cfg.hflip)
        result = fit(source, data.val.images, data.val.labels, data.num_classes, cfg)
        counts = banks.info.get("separation_counts", {})
        notes = []
        if counts.get("no_fg") or counts.get("all_fg"):
            notes.append(f"{counts.get('no_fg', 0)} no-fg / {counts.get('all_fg', 0)} all-fg images kept as is")
        return MethodOutput(result.model, result, banks.info, notes)


@METHODS.register("oracle")
class Oracle(AutoBackSwap):
    """The same pipeline with ground-truth segmentations instead of learned masks (upper bound)."""

    name = "oracle"
    needs = "ground-truth segmentations of every training image"
    oracle = True


# Baselines (groupdro, dfr, jtt, erm_aug, random_paste) register themselves on import.
from . import baselines as _baselines  # noqa: E402,F401
