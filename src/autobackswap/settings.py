"""Settings, resolved in one place: the library's defaults, then a recipe, then explicit flags.

The defaults live in the configuration dataclasses (``ExperimentConfig``, ``TrainConfig``, the stage
configs behind ``PipelineConfig``); a recipe (:mod:`autobackswap.recipes`) replaces some of them; the
options a user gave explicitly (the command line passes only the flags that were given) replace
those. :func:`resolve` returns the resulting :class:`~autobackswap.experiment.ExperimentConfig`, with
the recipe it used recorded in ``cfg.recipe`` (written into ``config.json`` and shown in the report).

Every key is checked against its section: an unknown key or a value of the wrong type is one error
naming the recipe file (or the command line) and the key.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from .data.splits import crop_load_size
from .errors import DataError
from .experiment import ExperimentConfig
from .methods import METHODS, parse_method_spec
from .methods.base import expand_methods
from .options import ALIASES, field_kinds
from .pipeline import PipelineConfig
from .train.loop import TrainConfig

SETTING_SECTIONS = ("experiment", "train", "pipeline")
NOT_SETTINGS = {"experiment": ("data", "train", "method_options", "recipe"), "train": ("seed",)}


def section_kinds() -> dict[str, dict[str, Any]]:
    """``{section: {key: annotation}}``: what a recipe (or a flag) may set in each section."""
    experiment = {k: v for k, v in field_kinds(ExperimentConfig).items() if k not in NOT_SETTINGS["experiment"]}
    train = {k: v for k, v in field_kinds(TrainConfig).items() if k not in NOT_SETTINGS["train"]}
    return {"experiment": experiment, "train": train, "pipeline": PipelineConfig.kinds()}


def _matches(value: Any, kind: Any) -> bool:
    """Whether ``value`` (as TOML or the command line gives it) fits the annotation ``kind``."""
    if kind is Any:
        return True
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return any(_matches(value, k) for k in typing.get_args(kind))
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)) and all(_matches(v, args[0]) for v in value) if args else True
    if origin is dict:
        return isinstance(value, dict) and (not args or all(_matches(v, args[1]) for v in value.values()))
    if kind is type(None):
        return value is None
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind) if isinstance(kind, type) else True


def checked(values: Mapping[str, Any], section: str, kinds: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``values`` of ``section`` with every key known and every value of its type (ints made floats where
    a float is expected); otherwise one :class:`~autobackswap.errors.DataError` naming ``source`` and the key."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in kinds:
            raise DataError(source, f"unknown key {key!r} in [{section}]; valid keys: {', '.join(sorted(kinds))}")
        if not _matches(value, kinds[key]):
            name = getattr(kinds[key], "__name__", str(kinds[key]))
            raise DataError(source, f"[{section}] {key} = {value!r}: expected {name}")
        base = typing.get_args(kinds[key])[0] if typing.get_origin(kinds[key]) in (typing.Union, types.UnionType) else kinds[key]
        out[key] = float(value) if base is float and isinstance(value, int) else value
    return out


def recipe_record(recipe: Mapping[str, Any], resolved: Mapping[str, Mapping[str, Any]],
                  given: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """What goes into ``config.json``: the recipe's name and file, each key it sets with the value in force
    (``overridden``: the keys a flag replaced, with the recipe's value), and its ``paper`` figures."""
    settings = {s: {k: resolved[s][k] for k in recipe.get(s, {})} for s in SETTING_SECTIONS if recipe.get(s)}
    overridden = {f"{s}.{k}": {"recipe": recipe[s][k], "flag": given[s][k]}
                  for s in SETTING_SECTIONS for k in recipe.get(s, {}) if k in given.get(s, {})}
    return {"name": recipe.get("name"), "path": recipe.get("path"), "settings": settings, "overridden": overridden,
            "paper": dict(recipe.get("paper") or {})}


def used_options(options: Mapping[str, Any], given: Mapping[str, Any], specs: Sequence[str]) -> dict[str, Any]:
    """The pipeline options passed to the methods ``specs``: every option given explicitly (one that none of
    them uses is then an error, see ``methods.base.check_shared_options``), and those from the recipe or the
    device only where one of them uses it (a recipe's detector settings do not stop ``--methods erm``)."""
    classes = [METHODS.get(parse_method_spec(s)[0]) for s in specs]
    return {k: v for k, v in options.items()
            if k in given or any(ALIASES.get(k, k) in cls.option_names() for cls in classes)}


def resolve(data: str, recipe: Mapping[str, Any] | None = None,
            overrides: Mapping[str, Mapping[str, Any]] | None = None, device: str | None = None,
            runs: Sequence[str] | None = None) -> ExperimentConfig:
    """The experiment configuration for ``data``: defaults <- ``recipe`` <- ``overrides`` (explicit options,
    by section: ``experiment``, ``train``, ``pipeline``).

    ``device`` (the command line's ``--device``) is where the classifier trains and the detector runs;
    without it, a recipe's ``[train] device`` also places the detector unless ``[pipeline]
    detector_device`` says otherwise.

    ``runs`` (default: the config's methods, with the label-budget sweep) are the methods the pipeline
    options are for: an option from the recipe or the device that none of them uses is left out."""
    kinds = section_kinds()
    recipe = recipe or {}
    overrides = overrides or {}
    source = str(recipe.get("path", "recipe"))
    given = {s: checked(overrides.get(s, {}), s, kinds[s], "command line") for s in SETTING_SECTIONS}
    merged = {s: {**checked(recipe.get(s, {}), s, kinds[s], source), **given[s]} for s in SETTING_SECTIONS}
    if device is not None:
        merged["train"]["device"] = device
        merged["pipeline"]["detector_device"] = device
    elif "device" in merged["train"]:
        merged["pipeline"].setdefault("detector_device", merged["train"]["device"])
    seeds = merged["experiment"].get("seeds") or [0]
    train = TrainConfig(**merged["train"], seed=seeds[0])  # invalid values raise here, before any data is read
    PipelineConfig.from_options(merged["pipeline"])
    cfg = ExperimentConfig(data=str(data), train=train, **merged["experiment"])
    specs = runs if runs is not None else expand_methods(cfg.methods, cfg.label_budgets)
    cfg.method_options = used_options(merged["pipeline"], given["pipeline"], specs)
    crop_load_size(cfg.image_size, cfg.eval_crop)
    if recipe:
        resolved = {"experiment": asdict(cfg), "train": asdict(train), "pipeline": PipelineConfig.from_options(
            merged["pipeline"]).flat()}
        cfg.recipe = recipe_record(recipe, resolved, given)
    return cfg


__all__ = ["SETTING_SECTIONS", "checked", "recipe_record", "resolve", "section_kinds", "used_options"]
