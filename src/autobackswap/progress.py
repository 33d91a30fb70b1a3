"""Progress bars, only where a person watches: on a terminal, in the main process.

A redirected log gets no ``\\r`` frames (the phase lines are logged instead), and torchrun ranks other
than 0 stay quiet. ``AUTOBACKSWAP_PROGRESS=1`` / ``0`` forces bars on / off.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def enabled() -> bool:
    forced = os.environ.get("AUTOBACKSWAP_PROGRESS")
    if forced in ("0", "1"):
        return forced == "1"
    return sys.stderr.isatty() and os.environ.get("RANK", "0") == "0"


def progress(iterable: Iterable[T] | None = None, *, quiet: bool = False, **kwargs: Any) -> tqdm:
    """A ``tqdm`` bar (``leave=False``) that is shown only when :func:`enabled` and not ``quiet``."""
    kwargs.setdefault("leave", False)
    return tqdm(iterable, disable=quiet or not enabled(), **kwargs)
