"""autobackswap: make image classifiers robust to spurious backgrounds.

Pipeline stages are the subpackages: ``data`` -> ``label`` -> ``detect`` -> ``separate`` ->
``compose`` -> ``train`` -> ``evaluate``; ``experiment`` runs methods side by side.
"""

from .data import ImageDataset, read_dataset
from .errors import AutoBackSwapError, DataError, NotFittedError
from .evaluate.metrics import group_metrics
from .experiment import ExperimentConfig, run_experiment
from .train.loop import TrainConfig, load_classifier

__version__ = "0.1.0"

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
    "run_experiment",
]
