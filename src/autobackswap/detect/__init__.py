"""The secondary network ("detector"): patch labels -> G x G foreground probabilities."""

from .detector import Detector, DetectorConfig, balanced_accuracy
from .labels import patch_labels, read_label_source
from .model import BACKBONES, create_backbone

__all__ = ["BACKBONES", "Detector", "DetectorConfig", "balanced_accuracy", "create_backbone", "patch_labels", "read_label_source"]
