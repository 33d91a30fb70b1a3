"""Patch labelling: the SQLite label store, model-assisted labelling and the web app.

* :class:`~autobackswap.label.store.LabelStore`: labels in one SQLite file, ``masks.csv`` import/export.
* :class:`~autobackswap.label.assist.Assistant`: the background detector, suggestions, "label next".
* :func:`~autobackswap.label.server.create_app`: the FastAPI app behind ``autobackswap label``.

The web parts are imported lazily, so reading a label store does not import FastAPI.
"""

from __future__ import annotations

from typing import Any

from .store import LabelEntry, LabelError, LabelStore

__all__ = ["LabelEntry", "LabelError", "LabelStore", "create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name in ("create_app", "serve"):
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
