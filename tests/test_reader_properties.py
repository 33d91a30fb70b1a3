"""Property-based tests (hypothesis) of the metadata.csv and masks.csv readers: for random bytes, any
encoding, repeated ids, odd numbers and long fields, a reader either returns a consistent dataset (no row
lost, no row doubled) or raises one DataError: one line naming the file."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_data_layout import make_minimal

from autobackswap.data.layout import SPLITS, ImageDataset, leaves_root, read_dataset, read_masks_csv
from autobackswap.errors import DataError

SETTINGS = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16", "cp1252"])
NUMBER_TEXT = st.one_of(
    st.integers(-3, 3).map(str), st.sampled_from(["0", "1", "2", "1.0", " 2 ", "1e30", "1.5", "nan", "", "x", "3",
                                                  "99999999999", "-0", "+1", "0x1"]))
NAME = st.one_of(st.sampled_from(["a.png", "b.png", "c.png", "d/e.png", "../up.png", "/abs.png", "a.png ", ""]),
                 st.text(min_size=0, max_size=12))
ID = st.one_of(st.sampled_from(["1", "2", "3", "a.png", ""]), st.text(max_size=6))


def check_error(error: DataError, path: Path) -> None:
    event("one DataError")
    text = str(error)
    assert "\n" not in text and "\r" not in text
    assert text.startswith(str(path))
    assert error.path == str(path)


def check_dataset(ds: ImageDataset, n_rows: int) -> None:
    """What a returned dataset promises: every data row once, validated."""
    event("a dataset")
    assert len(ds.records) == n_rows  # no row lost or doubled
    assert len({r.img_filename for r in ds.records}) == n_rows
    assert len({r.img_id for r in ds.records}) == n_rows
    assert [r.row for r in ds.records] == sorted({r.row for r in ds.records}) and ds.records[0].row >= 2
    for r in ds.records:
        assert isinstance(r.y, int) and isinstance(r.place, int) and r.split in SPLITS.values()
        assert r.y in ds.classes and not leaves_root(r.img_filename)
    assert ds.classes == sorted({r.y for r in ds.records if r.split == 0}) and len(ds.classes) >= 2
    assert all(ds.split(s) for s in SPLITS)


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *rows])
    return out.getvalue()


# ----------------------------------------------------------------------------- metadata.csv
@SETTINGS
@given(data=st.binary(max_size=400))
def test_metadata_from_random_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "metadata.csv").write_bytes(b"img_filename,y,split,place\n" + data)
        try:
            ds = read_dataset(root, check_files=False)
        except DataError as error:
            check_error(error, root / "metadata.csv")
        else:
            check_dataset(ds, len(ds.records))


ANY_ROW = st.tuples(ID, NAME, NUMBER_TEXT, st.sampled_from(["0", "1", "2", "3", "-1", "0.0", "x"]), NUMBER_TEXT)
GOOD_ROW = st.tuples(st.sampled_from("123456"), st.sampled_from(["a.png", "b.png", "c.png", "d/e.png", "f.png", "g.png"]),
                     st.sampled_from(["0", "1", " 1", "1.0"]), st.sampled_from(["0", "1", "2"]), st.sampled_from(["0", "1"]))
ROWS = st.one_of(st.lists(GOOD_ROW, max_size=6, unique_by=(lambda r: r[0], lambda r: r[1])),  # mostly valid
                 st.lists(st.one_of(GOOD_ROW, ANY_ROW), max_size=8))  # repeats and bad values


@SETTINGS
@given(rows=ROWS, encoding=ENCODINGS, valid_base=st.booleans())
def test_metadata_rows_either_all_kept_or_one_error(rows: list[tuple[str, ...]], encoding: str,
                                                    valid_base: bool) -> None:
    base = [["b1", "base1.png", "0", "0", "0"], ["b2", "base2.png", "1", "0", "1"], ["b3", "base3.png", "0", "1", "0"],
            ["b4", "base4.png", "1", "2", "1"]] if valid_base else []
    all_rows = base + [list(r) for r in rows]
    text = csv_text(["img_id", "img_filename", "y", "split", "place"], all_rows)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        try:
            (root / "metadata.csv").write_bytes(text.encode(encoding))
        except UnicodeEncodeError:
            return  # not every text exists in every encoding
        try:
            ds = read_dataset(root, check_files=False)
        except DataError as error:
            check_error(error, root / "metadata.csv")
        else:
            check_dataset(ds, len(all_rows))


@SETTINGS
@given(length=st.sampled_from([10, 131_072, 131_073, 400_000]), column=st.sampled_from(["img_filename", "y"]))
def test_metadata_long_field(length: int, column: str) -> None:
    row = {"img_id": "x", "img_filename": "a.png", "y": "0", "split": "0", "place": "0"}
    row[column] = "7" * length
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "metadata.csv").write_text(csv_text(list(row), [list(row.values())]))
        with pytest.raises(DataError) as exc:  # too long, too big, or a single-row dataset: always refused
            read_dataset(root, check_files=False)
        check_error(exc.value, root / "metadata.csv")
        assert len(str(exc.value)) < 1000  # the message does not echo the field


# ----------------------------------------------------------------------------- masks.csv
@pytest.fixture(scope="module")
def minimal(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ImageDataset]:
    root = make_minimal(tmp_path_factory.mktemp("props"))
    return root, read_dataset(root)


IMAGE_OF = {"a0": 0, "c0/img0.png": 0, "a0 ": 0, "a1": 1, "c1/img1.png": 1, "a2": 2, "a5": 5}  # key -> image
KEYS = [*IMAGE_OF, "zz", ""]
MASK = st.one_of(st.sampled_from(["0" * 16, "1" * 16, "01" * 8, "0" * 15, "0" * 64, "1" * 64, "2" * 16, ""]),
                 st.text(alphabet="01", min_size=0, max_size=20), st.text(max_size=20))
GOOD_MASK_ROW = st.tuples(st.sampled_from(list(IMAGE_OF)), st.sampled_from(["0" * 16, "1" * 16, "01" * 8, " " + "0110" * 4]))
MASK_ROWS = st.one_of(st.lists(GOOD_MASK_ROW, max_size=5, unique_by=lambda r: IMAGE_OF[r[0]]),  # mostly valid
                      st.lists(st.one_of(GOOD_MASK_ROW, st.tuples(st.sampled_from(KEYS), MASK)), max_size=8))


@SETTINGS
@given(rows=MASK_ROWS, encoding=ENCODINGS)
def test_masks_csv_rows_either_all_kept_or_one_error(minimal: tuple[Path, ImageDataset], rows: list[tuple[str, str]],
                                                     encoding: str) -> None:
    root, ds = minimal
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "masks.csv"
        try:
            path.write_bytes(csv_text(["info", "mask"], [list(r) for r in rows]).encode(encoding))
        except UnicodeEncodeError:
            return  # not every text exists in every encoding
        try:
            labels = read_masks_csv(path, ds)
        except DataError as error:
            check_error(error, path)
            return
    event("labels")
    names = {r.img_filename for r in ds.records}
    assert len(labels) == len(rows)  # every row kept: a repeated image is an error, never a silent overwrite
    assert set(labels) <= names
    assert len({g.shape for g in labels.values()}) == 1
    index = ds.lookup()
    for key, mask in rows:
        grid = labels[index[key.strip()].img_filename]
        assert "".join("1" if v else "0" for v in grid.ravel()) == mask.strip()


@SETTINGS
@given(data=st.binary(max_size=300))
def test_masks_csv_from_random_bytes(minimal: tuple[Path, ImageDataset], data: bytes) -> None:
    _, ds = minimal
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "masks.csv"
        path.write_bytes(b"info,mask\n" + data)
        try:
            labels = read_masks_csv(path, ds)
        except DataError as error:
            check_error(error, path)
        else:
            assert labels and all(g.dtype == np.bool_ and g.ndim == 2 for g in labels.values())


@SETTINGS
@given(length=st.sampled_from([131_072, 131_073, 1_000_000]), where=st.sampled_from(["info", "mask"]))
def test_masks_csv_long_field(minimal: tuple[Path, ImageDataset], length: int, where: str) -> None:
    _, ds = minimal
    row = {"info": "a0", "mask": "0" * 16}
    row[where] = "1" * length
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "masks.csv"
        path.write_text(csv_text(["info", "mask"], [list(row.values())]))
        with pytest.raises(DataError) as exc:
            read_masks_csv(path, ds)
        check_error(exc.value, path)
        assert len(str(exc.value)) < 1000 and "row 2" in str(exc.value)
