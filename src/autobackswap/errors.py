"""Exceptions the CLI turns into one clear line and a non-zero exit."""

from __future__ import annotations

from pathlib import Path


class AutoBackSwapError(Exception):
    """Base class for errors a user can act on."""


class DataError(AutoBackSwapError, ValueError):
    """Bad input data. The message names the file and, where there is one, the row."""

    def __init__(self, path: str | Path, message: str, row: int | None = None) -> None:
        self.path = str(path)
        self.row = row
        self.message = message
        where = f"{self.path}, row {row}" if row is not None else self.path
        super().__init__(f"{where}: {message}")


class NotFittedError(AutoBackSwapError, RuntimeError):
    """``predict`` was called on an estimator before ``fit``."""
