"""Separation: masks (tight / loose / refined), inpainters (registry), the cached separation job."""

from .engines import separate
from .inpaint import INPAINTERS, create_inpainter
from .masks import REFINERS, create_refiner, decontaminate, pixel_iou
from .run import SeparationConfig, load_banks

__all__ = ["INPAINTERS", "REFINERS", "SeparationConfig", "create_inpainter", "create_refiner", "decontaminate",
           "load_banks", "pixel_iou", "separate"]
