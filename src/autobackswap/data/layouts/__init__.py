"""Dataset layouts: ``--layout NAME[:key=value...]`` or ``auto`` (detected).

Each reader (one module here, registered in :data:`LAYOUTS`) returns the same
:class:`~autobackswap.data.layout.ImageDataset`, so every command works on every layout:

* ``waterbirds``: ``DATA/metadata.csv`` (+ ``segmentations/``, ``masks.csv``), :mod:`.waterbirds`
* ``spawrious``: ``spawrious224/{0,1}/<location>/<breed>/``, O2O / M2M splits, :mod:`.spawrious`
* ``in9``: the ImageNet-9 backgrounds challenge with IN-9L training data, :mod:`.in9`
* ``metashift``: MetaShift cats / dogs indoor / outdoor as SubpopBench lays it out, :mod:`.metashift`
* ``imagefolder``: ``{train,val,test}/<class>/`` with an optional attribute CSV, :mod:`.imagefolder`

Auto-detection tries them in that order (``Layout.priority``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ...errors import DataError
from ..layout import ImageDataset
from .base import ALL_SPLITS, LAYOUTS, Layout, check_dataset, detect_layout, detect_order, parse_layout_spec
from .imagefolder import IMAGEFOLDER
from .in9 import IN9
from .metashift import METASHIFT
from .spawrious import SPAWRIOUS
from .waterbirds import WATERBIRDS

READERS = (WATERBIRDS, SPAWRIOUS, IN9, METASHIFT, IMAGEFOLDER)


def read_layout(root: str | Path, layout: str = "auto", need: Sequence[str] = ALL_SPLITS) -> ImageDataset:
    """The dataset at ``root`` in ``layout`` (``auto``: detected), with every split in ``need`` non-empty.

    ``need=("test",)`` reads a test-only folder (an ``--also-test`` set such as an IN-9 variant)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "dataset folder not found")
    name, options = parse_layout_spec(layout)
    if name == "auto":
        name = detect_layout(root)
    return check_dataset(LAYOUTS.get(name).read(root, options), need)


def layout_names() -> list[str]:
    """Every layout, in the order auto-detection tries them."""
    return detect_order()


__all__ = ["LAYOUTS", "READERS", "Layout", "layout_names", "parse_layout_spec", "read_layout"]
