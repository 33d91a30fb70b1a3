"""The method contract and registry. ``experiment`` runs methods side by side on the same splits.

A method is built from its options (``name:key=value``, checked at once against the options it
declares), receives the loaded :class:`~autobackswap.data.splits.ExperimentData`, a training config and
a :class:`MethodContext`, and returns the trained model. Each method states the group information it
needs (``needs``) and refuses, with a reason in :attr:`MethodOutput.skipped`, to produce a number the
data cannot support.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from ..data.splits import ExperimentData
from ..options import ALIASES, field_kinds, parse_options
from ..pipeline import FLAT, Banks, PipelineConfig, build_banks, check_inputs
from ..registry import Registry
from ..train.loop import FitResult, TrainConfig, fit
from ..train.sources import ArraySource

# Pipeline options reach every method from the command line's stage flags; a method that does not
# run the pipeline leaves them alone.
PIPELINE_KEYS = frozenset(FLAT) | frozenset(ALIASES)


@dataclass
class MethodOutput:
    model: nn.Module | None
    fit: FitResult | None
    info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None  # why the method cannot work on this data (no silently wrong number)


def erm_key(cfg: TrainConfig) -> str:
    return "erm:" + json.dumps(asdict(cfg), sort_keys=True)


@dataclass
class MethodContext:
    """What a method may use besides the data and the training config.

    ``cache_dir``: where it may keep files (the run folder); ``erm_models``: ERM models already
    trained in this experiment, by training config (DFR reuses the one ``erm`` trained);
    ``build_banks``: separation + swap banks (an injection point: tests pass their own)."""

    cache_dir: Path
    erm_models: dict[str, nn.Module] = field(default_factory=dict)
    build_banks: Callable[[ExperimentData, PipelineConfig, int, bool], Banks] = build_banks

    def shared_erm(self, data: ExperimentData, cfg: TrainConfig) -> nn.Module:
        """The ERM model for ``cfg`` (trained once per experiment and config). Callers must not modify it."""
        key = erm_key(cfg)
        if key not in self.erm_models:
            self.erm_models[key] = train_erm(data, cfg).model
        return self.erm_models[key]

    def offer_erm(self, cfg: TrainConfig, model: nn.Module) -> None:
        self.erm_models[erm_key(cfg)] = model


def train_erm(data: ExperimentData, cfg: TrainConfig) -> FitResult:
    """Plain training on the training images (shuffled, flipped when ``cfg.hflip``)."""
    source = ArraySource(data.train.images, data.train.labels, hflip=cfg.hflip)
    return fit(source, data.val.images, data.val.labels, data.num_classes, cfg)


@dataclass
class NoOptions:
    """A method without options of its own."""


class Method:
    """Base class: subclasses set ``name``/``needs``, declare ``Options`` (a dataclass) and
    implement ``run``. Unknown or unparsable options raise when the method is built."""

    name: ClassVar[str] = ""
    needs: ClassVar[str] = "no group labels"
    Options: ClassVar[type] = NoOptions

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.params = self.Options(**parse_options(self.name, options, field_kinds(self.Options)))

    @classmethod
    def option_names(cls) -> frozenset[str]:
        """The options this method uses (an option it does not use is an error, never ignored)."""
        return frozenset(field_kinds(cls.Options))

    def check(self, data: ExperimentData, seed: int) -> str | None:
        """Validate, before anything trains, that the method can run on ``data``: raise on a missing
        requirement (labels, segmentations); return a reason when it will be skipped, else None."""
        return None

    def settings(self) -> dict[str, Any]:
        """Everything the result depends on besides the data and the training config: the method's
        own options, resolved against their defaults (so a saved run is not reused after a default
        changed)."""
        return {f.name: getattr(self.params, f.name) for f in fields(self.params)}

    def run(self, data: ExperimentData, cfg: TrainConfig, ctx: MethodContext) -> MethodOutput:
        raise NotImplementedError


class PipelineMethod(Method):
    """Base of the methods that run the AutoBackSwap pipeline: their options are a
    :class:`~autobackswap.pipeline.PipelineConfig` (checked when the method is built), and their
    settings are that config with its defaults resolved."""

    oracle: ClassVar[bool] = False  # ground-truth segmentations instead of a detector

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.pipeline = PipelineConfig.from_options(options)

    @classmethod
    def option_names(cls) -> frozenset[str]:
        return PIPELINE_KEYS

    def check(self, data: ExperimentData, seed: int) -> str | None:
        """The labels (or segmentations) this method will learn from exist and are valid: the same
        reading and checks as training, without training."""
        check_inputs(data, self.pipeline, seed, self.oracle)
        return None

    def settings(self) -> dict[str, Any]:
        return self.pipeline.settings()


METHODS: Registry[type[Method]] = Registry("method")


def parse_method_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"autobackswap:fill=gray:p=0.5"`` -> ``("autobackswap", {"fill": "gray", "p": "0.5"})``.

    A value may hold ``:`` itself (``detector_backbone=tv:efficientnet_b0``): a part without ``=`` continues the
    previous value."""
    name, *parts = spec.strip().split(":")
    options: dict[str, str] = {}
    key = ""
    for part in parts:
        k, sep, value = part.partition("=")
        if not sep and key:
            options[key] += ":" + part.strip()
            continue
        if not sep or not k.strip():
            raise ValueError(f"method option {part!r} in {spec!r} must look like key=value")
        key = k.strip()
        options[key] = value.strip()
    METHODS.get(name)  # raises with the list of valid names
    return name, options


def make_method(spec: str, defaults: dict[str, Any] | None = None) -> Method:
    """The method object for ``spec``, its options validated. ``defaults`` (options given for every
    method, e.g. the command line's stage flags) reach only the methods that use them."""
    name, options = parse_method_spec(spec)
    cls = METHODS.get(name)
    used = {k: v for k, v in (defaults or {}).items() if ALIASES.get(k, k) in cls.option_names()}
    return cls(**{**used, **options})


def check_options(specs: list[str], defaults: dict[str, Any], seeds: list[int]) -> None:
    """Every method and option of a run exists and parses, and no shared option goes unused."""
    if not specs:
        raise ValueError("no method to run: --methods is empty")
    if not seeds:
        raise ValueError("no seed to run: --seeds is empty")
    for spec in specs:
        make_method(spec, defaults)
    check_shared_options(specs, defaults)


def check_methods(specs: list[str], defaults: dict[str, Any], seeds: list[int],
                  data: ExperimentData) -> dict[tuple[str, int], str]:
    """One validation pass over every (method, seed) before any training: a missing requirement raises
    its one-line error now; the runs that will be skipped come back with their reason."""
    skips: dict[tuple[str, int], str] = {}
    for spec in specs:
        method = make_method(spec, defaults)
        for seed in seeds:
            reason = method.check(data, seed)
            if reason is not None:
                skips[(spec, seed)] = reason
    return skips


def check_shared_options(specs: list[str], defaults: dict[str, Any]) -> None:
    """Every option given for all methods must be used by at least one of ``specs`` (never silently ignored)."""
    classes = [METHODS.get(parse_method_spec(spec)[0]) for spec in specs]
    for key in defaults:
        if not any(ALIASES.get(key, key) in cls.option_names() for cls in classes):
            users = sorted(n for n in METHODS.names() if ALIASES.get(key, key) in METHODS.get(n).option_names())
            raise ValueError(f"option {key!r} is used by none of the methods {', '.join(specs)}; "
                             f"it applies to {', '.join(users) or 'no method'}")


def format_groups(groups: list[tuple[int, int]], classes: list[int]) -> str:
    return ", ".join(f"(y={classes[c]}, place={p})" for c, p in groups)


SWEPT_METHOD = "autobackswap"  # the method a --label-budgets sweep varies


def expand_methods(methods: list[str], label_budgets: list[int]) -> list[str]:
    """Each plain ``autobackswap`` spec (no label budget of its own) becomes one
    ``autobackswap:label_budget=N`` spec per budget; one is added when none is listed."""
    if not label_budgets:
        return list(methods)
    if any(b <= 0 for b in label_budgets):
        raise ValueError(f"label budgets must be positive, got {label_budgets}")
    out: list[str] = []
    swept = False
    for spec in methods:
        name, options = parse_method_spec(spec)
        if name == SWEPT_METHOD and not ({"label_budget", "budget"} & set(options)):
            out += [f"{spec}:label_budget={b}" for b in label_budgets]
            swept = True
        else:
            out.append(spec)
    if not swept:
        out += [f"{SWEPT_METHOD}:label_budget={b}" for b in label_budgets]
    return list(dict.fromkeys(out))
