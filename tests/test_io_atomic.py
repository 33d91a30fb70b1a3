"""The atomic writer: file modes follow the umask, data reach the disk before the rename, stray temp
files are found; and the output-folder check made before any work."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from autobackswap import io as abs_io
from autobackswap.errors import AutoBackSwapError
from autobackswap.io import (
    atomic_open,
    check_writable_dir,
    check_writable_file,
    current_umask,
    remove_stale_temps,
    write_json,
    write_png,
    write_text,
)


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    """Set the process umask for the test (and forget the cached value); restored afterwards."""
    before = os.umask(0o022)
    os.umask(before)

    def set_mask(mask: int) -> None:
        os.umask(mask)
        current_umask.cache_clear()

    try:
        yield set_mask
    finally:
        os.umask(before)
        current_umask.cache_clear()


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600), (0o027, 0o640)])
def test_written_files_follow_the_umask(tmp_path: Path, umask: Callable[[int], None], mask: int, mode: int) -> None:
    umask(mask)
    write_text(tmp_path / "a.txt", "x")
    write_json(tmp_path / "b.json", {"k": 1})
    write_png(tmp_path / "c.png", np.zeros((2, 2, 3), np.uint8))
    for name in ("a.txt", "b.json", "c.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    plain = tmp_path / "plain.txt"  # what open() gives under the same umask
    plain.write_text("x")
    assert stat.S_IMODE(plain.stat().st_mode) == mode


def test_umask_is_read_without_changing_it(umask: Callable[[int], None]) -> None:
    umask(0o027)
    assert current_umask() == 0o027
    assert os.umask(0o027) == 0o027  # still set: reading it did not change it


def test_data_are_fsynced_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(abs_io.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(abs_io.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    write_text(tmp_path / "x.txt", "data")
    assert events == ["fsync", "replace"]
    assert (tmp_path / "x.txt").read_text() == "data"


def test_a_cache_write_may_skip_the_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(abs_io.os, "fsync", calls.append)
    write_png(tmp_path / "c.png", np.zeros((2, 2, 3), np.uint8), durable=False)
    assert calls == [] and (tmp_path / "c.png").is_file()
    write_png(tmp_path / "d.png", np.zeros((2, 2, 3), np.uint8))
    assert len(calls) == 1


def test_a_failed_write_leaves_neither_file_nor_temp(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_open(tmp_path / "x.bin") as fh:
        fh.write(b"half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_remove_stale_temps_removes_only_our_hidden_temp_files(tmp_path: Path) -> None:
    ours = [tmp_path / ".000001.png.k2j3.tmp", tmp_path / ".results.json.zz.tmp"]
    others = [tmp_path / "000001.png", tmp_path / "notes.tmp", tmp_path / ".hidden"]
    for path in ours + others:
        path.write_bytes(b"")
    assert remove_stale_temps(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in others)
    assert remove_stale_temps(tmp_path / "missing") == 0


# ----------------------------------------------------------------------------- output folders
def test_check_writable_dir_accepts_existing_and_creatable_folders(tmp_path: Path) -> None:
    assert check_writable_dir(tmp_path) == tmp_path
    assert check_writable_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert list(tmp_path.iterdir()) == []  # nothing created, the probe removed


def test_check_writable_dir_refuses_a_file_on_the_way(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    for target in (tmp_path / "f", tmp_path / "f" / "sub"):
        with pytest.raises(AutoBackSwapError, match="is a file, not a folder") as exc:
            check_writable_dir(target)
        assert str(target) in str(exc.value)


def test_check_writable_dir_refuses_a_read_only_folder(tmp_path: Path, make_readonly: Callable[[Path], Path]) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    make_readonly(ro)
    for target in (ro, ro / "new_run"):
        with pytest.raises(AutoBackSwapError, match="not writable") as exc:
            check_writable_dir(target, "run folder")
        assert str(target) in str(exc.value) and "run folder" in str(exc.value)


def test_check_writable_file_refuses_a_folder(tmp_path: Path) -> None:
    with pytest.raises(AutoBackSwapError, match="is a folder"):
        check_writable_file(tmp_path, "--out")
    assert check_writable_file(tmp_path / "m.json") == tmp_path / "m.json"
