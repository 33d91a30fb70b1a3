"""No silent label loss and one line per bad input: repeated ids, DATA/masks.csv, labels that are not
integers, paths that leave the dataset, bytes that are not UTF-8, oversized fields and images."""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from test_data_layout import HEADER, ROWS, assert_data_error, make_minimal, row_line, write_csv

from autobackswap.cli import main
from autobackswap.data.grid import grid_to_string
from autobackswap.data.images import MAX_IMAGE_PIXELS, read_gray, read_rgb
from autobackswap.data.labelstore import LabelStore
from autobackswap.data.layout import read_dataset, read_masks_csv
from autobackswap.detect.labels import patch_labels
from autobackswap.errors import DataError
from autobackswap.label.server import create_app

MASK_A = "1" + "0" * 15  # 4x4 grids
MASK_B = "0" * 15 + "1"


def with_rows(tmp_path: Path, rows: list[tuple[object, ...]]) -> Path:
    """The minimal dataset (six images) with ``metadata.csv`` rewritten to ``rows``."""
    root = make_minimal(tmp_path)
    write_csv(root / "metadata.csv", HEADER, [row_line(r) for r in rows])
    return root


# ----------------------------------------------------------------------------- repeated ids
def test_repeated_img_id_is_one_error_naming_both_rows(tmp_path: Path) -> None:
    rows = list(ROWS)
    rows[3] = ("a1", *ROWS[3][1:])  # a1 again, on line 5; first on line 3
    root = with_rows(tmp_path, rows)
    with pytest.raises(DataError) as exc:
        read_dataset(root)
    assert_data_error(exc, root / "metadata.csv", 5, "img_id 'a1' repeats row 3")


def test_img_id_equal_to_another_rows_filename_is_refused(tmp_path: Path) -> None:
    rows = list(ROWS)
    rows[2] = ("c0/img0.png", *ROWS[2][1:])  # line 4's id is line 2's file name: masks.csv could not tell
    root = with_rows(tmp_path, rows)
    with pytest.raises(DataError) as exc:
        read_dataset(root)
    assert_data_error(exc, root / "metadata.csv", 4, "is the img_filename of row 2")


@pytest.mark.parametrize("second", ["a0", "c0/img0.png"], ids=["same-id", "id-then-filename"])
def test_masks_csv_second_row_for_an_image_names_both_rows(tmp_path: Path, second: str) -> None:
    root = make_minimal(tmp_path)
    write_csv(root / "masks.csv", "info,mask", [f"a0,{MASK_A}", f"a1,{MASK_B}", f"{second},{'0' * 16}"])
    with pytest.raises(DataError) as exc:
        read_masks_csv(root / "masks.csv", read_dataset(root))
    assert_data_error(exc, root / "masks.csv", 4, "a second label for image 'c0/img0.png'", "row 2 labels it already")


def test_cli_and_api_import_refuse_a_repeated_row_and_store_nothing(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    root = make_minimal(tmp_path)
    csv_text = f"info,mask\na0,{MASK_A}\na1,{MASK_B}\na0,{'0' * 16}\n"
    (tmp_path / "dup.csv").write_text(csv_text)
    db = tmp_path / "labels.sqlite"
    code = main(["label", str(root), "--db", str(db), "--import", str(tmp_path / "dup.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "dup.csv, row 4" in err and "row 2 labels it already" in err and err.count("\n") == 1
    assert LabelStore(db).count() == 0
    app = create_app(root, db, grid=4, assist=False)
    with TestClient(app, base_url="http://localhost") as client:
        r = client.post("/api/import", content=csv_text, headers={"content-type": "text/csv"})
        assert r.status_code == 422 and "row 4" in r.json()["detail"]
        assert client.get("/api/info").json()["n_labelled"] == 0


def test_labels_survive_import_export_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's loss: import keyed by file name, export (keyed by img_id), import the export back."""
    root = make_minimal(tmp_path)
    write_csv(tmp_path / "by_name.csv", "info,mask", [f"c0/img0.png,{MASK_A}", f"c1/img1.png,{MASK_B}"])
    db1, db2, export = tmp_path / "one.sqlite", tmp_path / "two.sqlite", tmp_path / "export.csv"
    assert main(["label", str(root), "--db", str(db1), "--import", str(tmp_path / "by_name.csv"),
                 "--export", str(export)]) == 0
    assert main(["label", str(root), "--db", str(db2), "--import", str(export)]) == 0
    out = capsys.readouterr().out
    assert "imported 2 labels" in out.splitlines()[-1]
    assert {k: grid_to_string(v) for k, v in LabelStore(db2).grids().items()} == {"c0/img0.png": MASK_A,
                                                                                    "c1/img1.png": MASK_B}


# ----------------------------------------------------------------------------- DATA/masks.csv
def test_dataset_masks_csv_is_read_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_minimal(tmp_path)
    write_csv(root / "masks.csv", "info,mask", [f"a1,{MASK_B}", f"a0,{MASK_A}"])
    dataset = read_dataset(root)
    with caplog.at_level(logging.INFO, logger="autobackswap.detect.labels"):
        idx, grids = patch_labels(dataset, dataset.split("train"), 8, grid=4, source=None)
    assert idx.tolist() == [0, 1]  # both train images, in train order
    assert [grid_to_string(g) for g in grids] == [MASK_A, MASK_B]  # from DATA/masks.csv, not segmentations/
    assert any(str(root / "masks.csv") in r.getMessage() for r in caplog.records)


def test_explicit_labels_win_over_the_dataset_masks_csv(tmp_path: Path) -> None:
    root = make_minimal(tmp_path)
    write_csv(root / "masks.csv", "info,mask", [f"a0,{MASK_A}"])
    write_csv(tmp_path / "other.csv", "info,mask", [f"a1,{MASK_B}"])
    dataset = read_dataset(root)
    idx, grids = patch_labels(dataset, dataset.split("train"), 8, grid=4, source=tmp_path / "other.csv")
    assert idx.tolist() == [1] and grid_to_string(grids[0]) == MASK_B


# ----------------------------------------------------------------------------- labels and paths
@pytest.mark.parametrize("value", ["1e30", "1.5", "nan", "inf", "0x1", "99999999999", "1_0"])
def test_label_that_is_not_a_small_integer_is_refused(tmp_path: Path, value: str) -> None:
    rows = list(ROWS)
    rows[1] = (*ROWS[1][:2], value, *ROWS[1][3:])
    root = with_rows(tmp_path, rows)
    with pytest.raises(DataError) as exc:
        read_dataset(root)
    assert_data_error(exc, root / "metadata.csv", 3, "column 'y' must be an integer")


@pytest.mark.parametrize("name", ["../outside.png", "images/../../outside.png", "ABSOLUTE"])
def test_filename_leaving_the_dataset_is_refused(tmp_path: Path, name: str) -> None:
    root = make_minimal(tmp_path / "data")
    outside = tmp_path / "outside.png"
    outside.write_bytes((root / "images" / "c0" / "img0.png").read_bytes())  # it exists: still refused
    name = str(outside) if name == "ABSOLUTE" else name
    rows = list(ROWS)
    rows[0] = (ROWS[0][0], name, *ROWS[0][2:])
    write_csv(root / "metadata.csv", HEADER, [row_line(r) for r in rows])
    with pytest.raises(DataError) as exc:
        read_dataset(root)
    assert_data_error(exc, root / "metadata.csv", 2, "leaves the dataset folder")


def test_filename_with_dotdot_that_stays_inside_is_accepted(tmp_path: Path) -> None:
    rows = list(ROWS)
    rows[0] = (ROWS[0][0], "images/../images/c0/img0.png", *ROWS[0][2:])
    root = with_rows(tmp_path, rows)
    assert read_dataset(root).records[0].path == root / "images/../images/c0/img0.png"


# ----------------------------------------------------------------------------- encodings and field sizes
def test_metadata_that_is_not_utf8_names_the_file_and_row(tmp_path: Path) -> None:
    root = make_minimal(tmp_path)
    lines = (root / "metadata.csv").read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b"a2", b"a\xe92")  # Latin-1 e-acute on line 4
    (root / "metadata.csv").write_bytes(b"\n".join(lines))
    with pytest.raises(DataError) as exc:
        read_dataset(root)
    assert_data_error(exc, root / "metadata.csv", 4, "not UTF-8", "0xe9")


def test_masks_csv_that_is_not_utf8_names_the_file_and_row(tmp_path: Path) -> None:
    root = make_minimal(tmp_path)
    (root / "masks.csv").write_bytes(f"info,mask\na0,{MASK_A}\n".encode() + b"a1,\xff\xfe\n")
    with pytest.raises(DataError) as exc:
        read_masks_csv(root / "masks.csv", read_dataset(root))
    assert_data_error(exc, root / "masks.csv", 3, "not UTF-8")


def test_masks_csv_with_a_million_character_field(tmp_path: Path) -> None:
    root = make_minimal(tmp_path)
    (root / "masks.csv").write_text(f"info,mask\na0,{MASK_A}\na1,{'0' * 1_000_000}\n")
    with pytest.raises(DataError) as exc:
        read_masks_csv(root / "masks.csv", read_dataset(root))
    assert_data_error(exc, root / "masks.csv", 3, "malformed CSV", "field larger than field limit")
    app = create_app(root, tmp_path / "labels.sqlite", grid=4, assist=False, max_import=4 * 1024 * 1024)
    with TestClient(app, base_url="http://localhost") as client:  # the API answers 422, not 500
        r = client.post("/api/import", content=(root / "masks.csv").read_bytes(), headers={"content-type": "text/csv"})
        assert r.status_code == 422 and "row 3" in r.json()["detail"]


def test_unterminated_quote_in_metadata_is_one_error(tmp_path: Path) -> None:
    root = make_minimal(tmp_path)
    text = (root / "metadata.csv").read_text().splitlines()
    text[2] = 'a1,"c1/img1.png,1,0,1'
    (root / "metadata.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(DataError) as exc:
        read_dataset(root)
    assert str(root / "metadata.csv") in str(exc.value) and "\n" not in str(exc.value)


# ----------------------------------------------------------------------------- decompression bombs
def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` (1-bit gray) with a tiny image body: opening it is
    enough to see the size, so no test allocates gigabytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [20000, 9000], ids=["above-twice-the-limit", "just-above-the-limit"])
def test_huge_image_is_refused_before_decoding(tmp_path: Path, side: int) -> None:
    assert side * side > MAX_IMAGE_PIXELS
    bomb = png_header_only(tmp_path / "bomb.png", side, side)
    for reader, what in ((read_rgb, "image"), (read_gray, "mask")):
        with pytest.raises(DataError) as exc:
            reader(bomb, 7)
        assert_data_error(exc, bomb, 7, f"{what} is too large to decode")


def test_huge_image_in_the_app_is_a_clear_4xx(tmp_path: Path) -> None:
    root = make_minimal(tmp_path)
    png_header_only(root / "images" / "c0" / "img0.png", 20000, 20000)
    app = create_app(root, tmp_path / "labels.sqlite", grid=4, assist=False)
    with TestClient(app, base_url="http://localhost") as client:
        for _ in range(2):  # the connection survives: the same answer twice
            r = client.get("/api/images/0.png")
            assert r.status_code == 422 and "too large to decode" in r.json()["detail"]
        assert client.get("/api/images/1.png").status_code == 200


def test_an_image_of_ordinary_size_still_decodes(tmp_path: Path) -> None:
    path = tmp_path / "ok.png"
    Image.fromarray(np.full((40, 30, 3), 7, np.uint8)).save(path)
    assert read_rgb(path).shape == (40, 30, 3)
