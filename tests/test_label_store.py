"""The SQLite label store: persistence, validation, concurrency, masks.csv import/export."""

from __future__ import annotations

import csv
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from autobackswap.data.grid import grid_to_string, string_to_grid
from autobackswap.data.labelstore import LabelError, LabelStore, validate_mask
from autobackswap.data.layout import read_dataset, read_masks_csv
from autobackswap.detect.labels import patch_labels, read_label_source
from autobackswap.errors import DataError

G = 16


def mask_of(*cells: tuple[int, int], g: int = G) -> str:
    grid = np.zeros((g, g), bool)
    for r, c in cells:
        grid[r, c] = True
    return grid_to_string(grid)


def test_put_get_overwrite_and_revision(tmp_path: Path) -> None:
    store = LabelStore(tmp_path / "labels.sqlite", grid=G)
    assert store.get("a.png") is None
    assert store.put("a.png", mask_of((0, 0))) == 1
    assert store.put("a.png", mask_of((1, 2))) == 2
    entry = store.get("a.png")
    assert entry is not None and entry.revision == 2 and entry.source == "user"
    assert entry.mask == mask_of((1, 2))
    assert np.argwhere(entry.grid).tolist() == [[1, 2]]
    assert store.count() == 1 and store.names() == {"a.png"}
    assert store.delete("a.png") is True and store.delete("a.png") is False
    assert store.count() == 0


def test_grids_are_bool_arrays_keyed_by_filename(tmp_path: Path) -> None:
    store = LabelStore(tmp_path / "labels.sqlite", grid=G)
    grid = np.zeros((G, G), bool)
    grid[3:5, 7] = True
    store.put("x/1.png", grid)  # arrays are accepted too
    grids = store.grids()
    assert list(grids) == ["x/1.png"]
    assert grids["x/1.png"].dtype == bool and grids["x/1.png"].shape == (G, G)
    np.testing.assert_array_equal(grids["x/1.png"], grid)


def test_survives_reopen_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "labels.sqlite"
    LabelStore(path, grid=G).put("a.png", mask_of((2, 3)))
    again = LabelStore(path)  # a restarted server: no grid given, taken from the file
    assert again.grid == G
    assert again.get("a.png").mask == mask_of((2, 3))  # type: ignore[union-attr]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_grid_is_fixed_by_the_store(tmp_path: Path) -> None:
    path = tmp_path / "labels.sqlite"
    LabelStore(path, grid=8).put("a.png", mask_of((0, 0), g=8))
    with pytest.raises(LabelError, match="holds 8x8 patch labels, not 16x16"):
        LabelStore(path, grid=16)


def test_grid_inferred_from_first_label(tmp_path: Path) -> None:
    store = LabelStore(tmp_path / "labels.sqlite")
    assert store.grid is None
    store.put("a.png", "1" * 16)  # 4 x 4
    assert store.grid == 4
    with pytest.raises(LabelError, match="16 characters"):
        store.put("b.png", "1" * 256)


@pytest.mark.parametrize(
    ("mask", "message"),
    [("0" * 255, "must have 256 characters .16x16 grid., got 255"),
     ("0" * 257, "got 257"),
     ("", "got 0"),
     ("2" + "0" * 255, "only the characters 0 and 1, found '2'"),
     (" " + "0" * 255, "found ' '")],
)
def test_bad_masks_are_refused_and_change_nothing(tmp_path: Path, mask: str, message: str) -> None:
    store = LabelStore(tmp_path / "labels.sqlite", grid=G)
    store.put("a.png", mask_of((1, 1)))
    with pytest.raises(LabelError, match=message):
        store.put("a.png", mask)
    with pytest.raises(LabelError, match=message):
        store.put_many({"b.png": mask_of((0, 0)), "a.png": mask})
    assert store.get("a.png").mask == mask_of((1, 1))  # type: ignore[union-attr]
    assert store.names() == {"a.png"}  # put_many wrote nothing, not even the good row


def test_validate_mask_type() -> None:
    with pytest.raises(LabelError, match="must be a string"):
        validate_mask(123, 16)  # type: ignore[arg-type]


def test_concurrent_writers_lose_nothing_and_last_write_wins(tmp_path: Path) -> None:
    """Two connections in two threads: distinct images all survive; on the shared image the last write wins."""
    path = tmp_path / "labels.sqlite"
    LabelStore(path, grid=G)
    n = 60
    results: dict[str, list[tuple[int, str]]] = {"A": [], "B": []}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def writer(name: str, row: int) -> None:
        try:
            store = LabelStore(path)  # its own connections
            barrier.wait()
            for i in range(n):
                store.put(f"{name}/{i}.png", mask_of((row, i % G)))
                shared = mask_of((row, i % G), (15, 15))
                results[name].append((store.put("shared.png", shared), shared))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=("A", 0)), threading.Thread(target=writer, args=("B", 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    store = LabelStore(path)
    assert store.count() == 2 * n + 1
    for name, row in (("A", 0), ("B", 1)):
        for i in range(n):
            assert store.get(f"{name}/{i}.png").mask == mask_of((row, i % G))  # type: ignore[union-attr]
    revisions = sorted(results["A"] + results["B"])
    assert [r for r, _ in revisions] == list(range(1, 2 * n + 1))  # every write got its own revision
    last_revision, last_mask = revisions[-1]
    shared = store.get("shared.png")
    assert shared is not None and shared.revision == last_revision == 2 * n
    assert shared.mask == last_mask


def test_export_is_the_reference_format(tiny_synthetic: Path, tmp_path: Path) -> None:
    dataset = read_dataset(tiny_synthetic)
    train = dataset.split("train")
    store = LabelStore(tmp_path / "labels.sqlite", grid=G)
    store.put(train[3].img_filename, mask_of((4, 5), (4, 6)))
    store.put(train[1].img_filename, mask_of((0, 0)))
    out = tmp_path / "masks.csv"
    assert store.export_csv(out, dataset) == 2
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["info", "mask"]
    assert rows[1:] == [[train[1].img_id, mask_of((0, 0))], [train[3].img_id, mask_of((4, 5), (4, 6))]]
    assert all(len(mask) == 256 and set(mask) <= {"0", "1"} for _, mask in rows[1:])
    labels = read_masks_csv(out, dataset)  # the layout reader accepts it
    np.testing.assert_array_equal(labels[train[3].img_filename], string_to_grid(mask_of((4, 5), (4, 6))))


def test_import_roundtrip_and_bad_file_changes_nothing(tiny_synthetic: Path, tmp_path: Path) -> None:
    dataset = read_dataset(tiny_synthetic)
    train = dataset.split("train")
    good = tmp_path / "good.csv"
    good.write_text(f"info,mask\n{train[0].img_id},{mask_of((1, 1))}\n{train[2].img_filename},{mask_of((2, 2))}\n")
    store = LabelStore(tmp_path / "labels.sqlite", grid=G)
    store.put(train[0].img_filename, mask_of((9, 9)))
    assert store.import_csv(good, dataset) == 2
    assert store.get(train[0].img_filename).mask == mask_of((1, 1))  # type: ignore[union-attr]
    assert store.get(train[0].img_filename).source == "import"  # type: ignore[union-attr]
    before = {e.img_filename: e.mask for e in store.entries()}

    bad = tmp_path / "bad.csv"
    bad.write_text(f"info,mask\n{train[5].img_id},{mask_of((3, 3))}\n{train[6].img_id},0101\n")
    with pytest.raises(DataError, match=r"bad.csv, row 3: mask has 4 characters"):
        store.import_csv(bad, dataset)
    unknown = tmp_path / "unknown.csv"
    unknown.write_text(f"info,mask\nno-such-id,{mask_of((3, 3))}\n")
    with pytest.raises(DataError, match="row 2: unknown id 'no-such-id'"):
        store.import_csv(unknown, dataset)
    small = tmp_path / "small.csv"
    small.write_text(f"info,mask\n{train[5].img_id},{'0' * 64}\n")
    with pytest.raises(LabelError, match="8x8 grids but the label store"):
        store.import_csv(small, dataset)
    assert {e.img_filename: e.mask for e in store.entries()} == before


def test_detector_reads_labels_straight_from_the_store(tiny_synthetic: Path, tmp_path: Path) -> None:
    dataset = read_dataset(tiny_synthetic)
    train = dataset.split("train")
    path = tmp_path / "labels.sqlite"
    store = LabelStore(path, grid=G)
    store.put(train[4].img_filename, mask_of((5, 5)))
    store.put(train[7].img_filename, mask_of((6, 6)))
    grids = read_label_source(path, dataset)
    assert set(grids) == {train[4].img_filename, train[7].img_filename}
    idx, stacked = patch_labels(dataset, train, 32, G, source=path)
    assert idx.tolist() == [4, 7]
    assert stacked.shape == (2, G, G) and stacked[0, 5, 5] and stacked.sum() == 2
