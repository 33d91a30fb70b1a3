"""Dataset layouts (Waterbirds, Spawrious, IN-9, MetaShift, image folders), synthetic benchmark, patch grids."""

from .grid import grid_to_mask, grid_to_string, mask_to_grid, string_to_grid
from .images import pil_to_rgb, read_rgb
from .layout import (
    SPLITS,
    ImageDataset,
    Record,
    load_images,
    load_segmentations,
    read_dataset,
    read_masks_csv,
)
from .layouts import read_layout

__all__ = [
    "SPLITS",
    "ImageDataset",
    "Record",
    "grid_to_mask",
    "grid_to_string",
    "load_images",
    "load_segmentations",
    "mask_to_grid",
    "pil_to_rgb",
    "read_dataset",
    "read_layout",
    "read_masks_csv",
    "read_rgb",
    "string_to_grid",
]
