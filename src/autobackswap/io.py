"""Atomic file writes (a temp file in the same folder, then ``os.replace``) and the one digest helper.

A killed run never leaves a half-written file under the final name, so "the file exists" always
means "the file is complete": the temp file is flushed to disk (``fsync``) before it is renamed, and
it gets the mode an ordinary ``open`` would give (``0o666`` less the umask), so outputs are readable by
the user's group when the umask says so. :func:`remove_stale_temps` deletes the hidden temp files a
killed run left behind; :func:`check_writable_dir` says, before any work, whether an output folder can
be written.
"""

from __future__ import annotations

import functools
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

from .errors import AutoBackSwapError

TEMP_SUFFIX = ".tmp"  # atomic_open's temp files: ".<name>.<random>.tmp" beside the final file


@functools.cache
def current_umask() -> int:
    """The process umask, read once: from ``/proc/self/status`` where there is one (no side effect),
    else by setting and restoring it (``os.umask`` can only be read by changing it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode of a new file under the current umask (what ``open(path, "w")`` creates)."""
    return 0o666 & ~current_umask()


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb", durable: bool = True) -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path``; rename it over ``path`` only if the block succeeds.

    The temp file gets :func:`file_mode` (``mkstemp`` creates it ``0o600``) and, with ``durable`` (the
    default), is ``fsync``-ed before the rename, so a power cut cannot leave a torn file under the final
    name. ``durable=False`` is for caches that are checked when they are read again (the separation's
    per-image files, decoded on every resume), where an fsync per file would cost more than the work."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:  # name the file the caller asked for, not a temp name
        raise type(exc)(exc.errno, exc.strerror or str(exc), str(path)) from None
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fchmod(fh.fileno(), file_mode())
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def remove_stale_temps(folder: str | Path) -> int:
    """Delete the hidden temp files (``.<name>.<random>.tmp``) that killed runs left in ``folder``; how many.

    Call it only where no other process is writing into ``folder`` (a resumed run owns its folder)."""
    removed = 0
    try:
        candidates = list(Path(folder).glob(f".*{TEMP_SUFFIX}"))
    except OSError:
        return 0
    for stale in candidates:
        try:
            if stale.is_file():
                stale.unlink()
                removed += 1
        except FileNotFoundError:
            pass
    return removed


def check_writable_dir(path: str | Path, what: str = "output folder") -> Path:
    """``path`` if a command can write into it (an existing writable folder, or a missing one whose nearest
    existing parent is a writable folder); else an :class:`AutoBackSwapError` naming it. Creates nothing."""
    path = Path(path)
    probe = path
    while not probe.exists():
        if probe.is_symlink():
            raise AutoBackSwapError(f"{path}: {what} is a broken symbolic link ({probe})")
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise AutoBackSwapError(f"{path}: {what} cannot be created: {probe} is a file, not a folder")
    if not _can_create_in(probe):
        where = "is" if probe == path else f"would be created in {probe}, which is"
        raise AutoBackSwapError(f"{path}: {what} {where} not writable")
    return path


def check_writable_file(path: str | Path, what: str = "output file") -> Path:
    """``path`` if a file can be written there (not a folder; its folder writable or creatable); else an
    :class:`AutoBackSwapError` naming it. Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise AutoBackSwapError(f"{path}: {what} is a folder; give a file name")
    try:
        check_writable_dir(path.parent, "folder")
    except AutoBackSwapError as exc:
        raise AutoBackSwapError(f"{path}: {what} cannot be written there ({exc})") from None
    return path


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be created in ``folder``: asked of the file system itself (a temp file made and
    removed at once), so read-only mounts, ACLs and immutable folders count, for root too."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        fd, probe = tempfile.mkstemp(prefix=".autobackswap-write-check.", suffix=TEMP_SUFFIX, dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def write_bytes(path: str | Path, data: bytes, durable: bool = True) -> None:
    with atomic_open(path, "wb", durable) as fh:
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


def write_png(path: str | Path, array: np.ndarray, durable: bool = True) -> None:
    write_bytes(path, encode_png(array), durable)


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
