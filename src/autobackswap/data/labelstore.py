"""The label store: patch labels in one SQLite file, written on every change.

* One row per image, keyed by ``img_filename`` (``metadata.csv``): the G*G ``0``/``1`` string
  (row-major, ``1`` = foreground, the reference ``masks.csv`` format), where it came from
  (``user`` / ``import``), a per-image revision counter and the time of the last write.
* WAL journal, one short transaction per write, a busy timeout: two browser tabs (two server
  threads, or two processes) can write at once. The last write wins per image and nothing else is
  lost.
* The grid size G is fixed when the store is created (``meta`` table) and checked on every write.
* ``import_csv`` / ``export_csv`` speak the reference ``masks.csv`` format (``info,mask``; ``info``
  is the ``img_id``). An import is validated completely before anything is written, and then written
  in a single transaction: a bad file changes nothing.

Every operation opens its own short-lived connection, so a :class:`LabelStore` may be shared freely
between threads. A store opened for writing proves at once that it can write (a probe write, rolled
back), so a read-only file or folder is one :class:`LabelStoreError` naming it at start, not a failure on
the first label; ``readonly=True`` opens an existing store for reading only (export, training), which
works on read-only files too. Any SQLite failure (not a database, damaged, locked, read-only) is a
:class:`LabelStoreError` naming the file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import AutoBackSwapError
from ..io import write_text
from .grid import grid_to_string, string_to_grid
from .layout import ImageDataset, read_masks_csv

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS labels (
    img_filename TEXT PRIMARY KEY,
    mask TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT 'user',
    revision INTEGER NOT NULL DEFAULT 1,
    updated_at REAL NOT NULL
);
"""
SOURCES = ("user", "import")


class LabelError(AutoBackSwapError, ValueError):
    """A label that cannot be stored: wrong length, bad characters, a grid size the store does not use."""


class LabelStoreError(AutoBackSwapError):
    """The label store cannot be read or written (not SQLite, damaged, locked, read-only); names the file."""


@dataclass(frozen=True)
class LabelEntry:
    img_filename: str
    mask: str
    source: str
    revision: int
    updated_at: float

    @property
    def grid(self) -> np.ndarray:
        return string_to_grid(self.mask)


def validate_mask(mask: str, grid: int) -> str:
    """The mask string itself, or a :class:`LabelError` that says exactly what is wrong."""
    if not isinstance(mask, str):
        raise LabelError(f"mask must be a string of {grid * grid} characters 0/1, got {type(mask).__name__}")
    if len(mask) != grid * grid:
        raise LabelError(f"mask must have {grid * grid} characters ({grid}x{grid} grid), got {len(mask)}")
    bad = sorted(set(mask) - {"0", "1"})
    if bad:
        shown = "".join(bad[:5])
        raise LabelError(f"mask may contain only the characters 0 and 1, found {shown!r}")
    return mask


class LabelStore:
    """Patch labels in an SQLite file. ``grid`` fixes G for a new store and is checked for an old one.

    ``readonly`` opens an existing store for reading only (nothing is created or written)."""

    def __init__(self, path: str | Path, grid: int | None = None, timeout: float = 10.0, readonly: bool = False) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.readonly = readonly
        stored = self._open_readonly() if readonly else self._open_writable(grid)
        if grid is not None and stored is not None and grid != stored:
            raise LabelError(
                f"{self.path}: the store holds {stored}x{stored} patch labels, not {grid}x{grid}; "
                f"use --grid {stored} or another --db"
            )
        self._grid = stored

    def _open_writable(self, grid: int | None) -> int | None:
        """Create the schema (a new store) and prove the store can be written; the stored G."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LabelStoreError(f"{self.path}: cannot create the label store's folder ({exc.strerror or exc})") from None
        with self._connect(writing=True) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            with conn:
                conn.executescript(SCHEMA)
                row = conn.execute("SELECT value FROM meta WHERE key = 'grid'").fetchone()
                stored = int(row[0]) if row else self._infer_grid(conn)
                if stored is None and grid is not None:
                    stored = grid
                if row is None and stored is not None:
                    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('grid', ?)", (str(stored),))
            conn.execute("BEGIN IMMEDIATE")  # a write, rolled back: a read-only file fails here, not on a label
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('write_check', '1')")
            conn.execute("ROLLBACK")
        return stored

    def _open_readonly(self) -> int | None:
        if not self.path.is_file():
            raise LabelStoreError(f"{self.path}: label store not found")
        with self._connect() as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not {"meta", "labels"} <= tables:
                raise LabelStoreError(f"{self.path}: an SQLite file but not a label store (no labels table); "
                                      "make one with `autobackswap label`")
            return self._read_grid(conn)

    def _read_grid(self, conn: sqlite3.Connection) -> int | None:
        row = conn.execute("SELECT value FROM meta WHERE key = 'grid'").fetchone()
        return int(row[0]) if row else self._infer_grid(conn)

    @staticmethod
    def _infer_grid(conn: sqlite3.Connection) -> int | None:
        row = conn.execute("SELECT mask FROM labels LIMIT 1").fetchone()
        return string_to_grid(row[0]).shape[0] if row else None

    def _error(self, exc: sqlite3.Error, writing: bool) -> LabelStoreError:
        """One line naming the file for an SQLite failure."""
        text = str(exc) or type(exc).__name__
        if "not a database" in text or "malformed" in text:
            return LabelStoreError(f"{self.path}: not an SQLite label store, or a damaged one ({text})")
        if writing and any(k in text for k in ("readonly", "read-only", "unable to open", "disk I/O")):
            return LabelStoreError(f"{self.path}: the label store cannot be written ({text}): labels are not saved; "
                                   "make the file and its folder writable, or use another --db")
        return LabelStoreError(f"{self.path}: label store error ({text})")

    def _readonly_uri(self) -> str:
        """A store nobody is writing (no ``-wal`` file) is opened immutable, so reading it creates no
        ``-wal`` / ``-shm`` files beside it (in DATA/); one in use is opened read-only, to see its latest labels."""
        in_use = Path(f"{self.path}-wal").exists()
        return self.path.absolute().as_uri() + ("?mode=ro" if in_use else "?immutable=1")

    @contextmanager
    def _connect(self, writing: bool = False) -> Iterator[sqlite3.Connection]:
        try:
            if self.readonly:
                conn = sqlite3.connect(self._readonly_uri(), uri=True, timeout=self.timeout, isolation_level=None)
            else:
                conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._error(exc, writing) from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            if not self.readonly:
                conn.execute("PRAGMA synchronous = NORMAL")
            yield conn
        except sqlite3.Error as exc:
            raise self._error(exc, writing) from None
        finally:
            conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` takes the write lock up front, so concurrent writers queue instead of failing."""
        if self.readonly:
            raise LabelStoreError(f"{self.path}: the label store was opened read-only")
        with self._connect(writing=True) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- grid size --------------------------------------------------------------------------------
    @property
    def grid(self) -> int | None:
        """G of the stored labels (None for a new, empty store created without ``grid``)."""
        return self._grid

    def _check(self, mask: str | np.ndarray) -> str:
        text = grid_to_string(mask) if isinstance(mask, np.ndarray) else mask
        if self._grid is None:
            if not isinstance(text, str):
                raise LabelError(f"mask must be a string of 0/1 characters, got {type(text).__name__}")
            try:
                g = string_to_grid(text).shape[0]
            except ValueError as exc:
                raise LabelError(str(exc)) from None
            self._set_grid(g)
        return validate_mask(text, self._grid or 0)

    def _set_grid(self, g: int) -> None:
        with self._transaction() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'grid'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta(key, value) VALUES ('grid', ?)", (str(g),))
            else:
                g = int(row[0])
        self._grid = g

    # -- writes -----------------------------------------------------------------------------------
    def put(self, img_filename: str, mask: str | np.ndarray, source: str = "user") -> int:
        """Store (or overwrite) one image's label; returns its new revision. Last write wins."""
        text = self._check(mask)
        if source not in SOURCES:
            raise LabelError(f"unknown label source {source!r}; valid: {', '.join(SOURCES)}")
        with self._transaction() as conn:
            row = conn.execute(
                "INSERT INTO labels(img_filename, mask, source, revision, updated_at) VALUES (?, ?, ?, 1, ?) "
                "ON CONFLICT(img_filename) DO UPDATE SET mask = excluded.mask, source = excluded.source, "
                "revision = labels.revision + 1, updated_at = excluded.updated_at RETURNING revision",
                (img_filename, text, source, time.time()),
            ).fetchone()
        return int(row[0])

    def put_many(self, labels: Mapping[str, str | np.ndarray], source: str = "import") -> int:
        """Store many labels in one transaction: all of them or, on any bad mask, none."""
        texts = {name: self._check(mask) for name, mask in labels.items()}
        now = time.time()
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO labels(img_filename, mask, source, revision, updated_at) VALUES (?, ?, ?, 1, ?) "
                "ON CONFLICT(img_filename) DO UPDATE SET mask = excluded.mask, source = excluded.source, "
                "revision = labels.revision + 1, updated_at = excluded.updated_at",
                [(name, text, source, now) for name, text in texts.items()],
            )
        return len(texts)

    def delete(self, img_filename: str) -> bool:
        """Forget one image's label; True when there was one."""
        with self._transaction() as conn:
            cur = conn.execute("DELETE FROM labels WHERE img_filename = ?", (img_filename,))
        return cur.rowcount > 0

    # -- reads ------------------------------------------------------------------------------------
    def get(self, img_filename: str) -> LabelEntry | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT img_filename, mask, source, revision, updated_at FROM labels WHERE img_filename = ?",
                (img_filename,),
            ).fetchone()
        return LabelEntry(*row) if row else None

    def entries(self) -> list[LabelEntry]:
        """Every label, most recently written last."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT img_filename, mask, source, revision, updated_at FROM labels ORDER BY updated_at, img_filename"
            ).fetchall()
        return [LabelEntry(*r) for r in rows]

    def names(self) -> set[str]:
        with self._connect() as conn:
            return {r[0] for r in conn.execute("SELECT img_filename FROM labels")}

    def count(self) -> int:
        with self._connect() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0])

    def grids(self) -> dict[str, np.ndarray]:
        """``img_filename`` -> (G, G) bool grid (True = foreground), for every stored label."""
        return {e.img_filename: e.grid for e in self.entries()}

    # -- masks.csv --------------------------------------------------------------------------------
    def to_csv_text(self, dataset: ImageDataset) -> str:
        """The labels as a reference ``masks.csv`` (``info`` = ``img_id``), in ``metadata.csv`` order."""
        labels = {e.img_filename: e.mask for e in self.entries()}
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["info", "mask"])
        known = 0
        for record in dataset.records:
            mask = labels.get(record.img_filename)
            if mask is not None:
                writer.writerow([record.img_id, mask])
                known += 1
        if known < len(labels):
            log.warning("%s: %d labels name images that are not in %s; they are not exported",
                        self.path, len(labels) - known, dataset.metadata_path)
        return out.getvalue()

    def export_csv(self, path: str | Path, dataset: ImageDataset) -> int:
        """Write ``masks.csv`` atomically; returns the number of rows."""
        text = self.to_csv_text(dataset)
        write_text(path, text)
        return text.count("\n") - 1

    def import_csv(self, path: str | Path, dataset: ImageDataset) -> int:
        """Read a reference ``masks.csv`` (validated against ``dataset``) and store every row at once."""
        labels = read_masks_csv(path, dataset)  # DataError naming the file and row on any bad row
        sizes = {g.shape[0] for g in labels.values()}
        g = next(iter(sizes))
        if self._grid is not None and g != self._grid:
            raise LabelError(f"{path}: masks are {g}x{g} grids but the label store {self.path} holds {self._grid}x{self._grid}")
        return self.put_many({name: grid_to_string(grid) for name, grid in labels.items()}, source="import")
