"""Atomic file writes (a temp file in the same folder, then ``os.replace``) and the one digest helper.

A killed run never leaves a half-written file under the final name, so "the file exists" always
means "the file is complete".
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of an HWC uint8 RGB/RGBA or HW uint8 array (deterministic: no timestamps)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def write_png(path: str | Path, array: np.ndarray) -> None:
    write_bytes(path, encode_png(array))


def csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    """CSV text (header from the first row's keys, ``\\n`` line ends) of a list of dicts."""
    import csv

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


# ----------------------------------------------------------------------------- digests
def digest(*parts: str | bytes, length: int = 10) -> str:
    """The one content digest (SHA-1, hex, truncated) of strings and bytes, fed in order.

    Cache folders, run keys and checkpoints are named by it, so equal inputs give equal names."""
    h = hashlib.sha1()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
    return h.hexdigest()[:length]


def file_digest(path: str | Path, length: int = 16) -> str:
    """:func:`digest` of a file's bytes (read in chunks): weight files enter run keys by their content, so
    a file replaced under the same name is a new input."""
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]


def json_digest(payload: Any, length: int = 10) -> str:
    """:func:`digest` of a JSON-able payload (keys sorted, other objects as ``str``)."""
    return digest(json.dumps(payload, sort_keys=True, default=str), length=length)


def fingerprint(*arrays: Any, length: int = 10) -> str:
    """:func:`digest` of array contents (dtype, shape and bytes): cached outputs are keyed by their
    inputs, not just their options. An on-disk array (anything with ``chunks()``) is read in chunks."""
    h = hashlib.sha1()
    for a in arrays:
        h.update(str((a.dtype.str, a.shape)).encode())
        if hasattr(a, "chunks"):
            for _, rows in a.chunks():
                h.update(rows.tobytes())
        else:
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:length]
