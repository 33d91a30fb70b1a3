"""autobackswap: make image classifiers robust to spurious backgrounds.

Pipeline stages are the subpackages: ``data`` -> ``label`` -> ``detect`` -> ``separate`` ->
``compose`` -> ``train`` -> ``evaluate``; ``experiment`` runs methods side by side.

The public names below are imported on first use (PEP 562), so a process that needs one stage (a
separation worker, for instance) does not pay for importing torch and every other stage.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import AutoBackSwapError, DataError, NotFittedError

if TYPE_CHECKING:
    from .data import ImageDataset, read_dataset, read_layout
    from .evaluate.metrics import group_metrics
    from .experiment import ExperimentConfig, run_experiment
    from .train.loop import TrainConfig, load_classifier

__version__ = "0.1.0"

_LAZY = {
    "ImageDataset": ".data",
    "read_dataset": ".data",
    "read_layout": ".data",
    "group_metrics": ".evaluate.metrics",
    "ExperimentConfig": ".experiment",
    "run_experiment": ".experiment",
    "TrainConfig": ".train.loop",
    "load_classifier": ".train.loop",
}

__all__ = [
    "AutoBackSwapError",
    "DataError",
    "ExperimentConfig",
    "ImageDataset",
    "NotFittedError",
    "TrainConfig",
    "group_metrics",
    "load_classifier",
    "read_dataset",
    "read_layout",
    "run_experiment",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
