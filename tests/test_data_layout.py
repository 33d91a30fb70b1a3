"""Dataset layout: parsing, image decoding, and one clear error per bad input (file + row)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autobackswap.data.images import pil_to_rgb, read_gray, read_rgb
from autobackswap.data.layout import SPLITS, load_images, load_segmentations, read_dataset, read_masks_csv
from autobackswap.data.splits import load_experiment_data
from autobackswap.errors import DataError

HEADER = "img_id,img_filename,y,split,place"
# (img_id, img_filename, y, split, place); data row k sits on line k + 2 of metadata.csv.
ROWS = [
    ("a0", "c0/img0.png", 0, 0, 0),
    ("a1", "c1/img1.png", 1, 0, 1),
    ("a2", "c0/img2.png", 0, 1, 0),
    ("a3", "c1/img3.png", 1, 1, 1),
    ("a4", "c0/img4.png", 0, 2, 1),
    ("a5", "c1/img5.png", 1, 2, 0),
]


def write_csv(path: Path, header: str, lines: list[str]) -> None:
    path.write_text("\n".join([header, *lines]) + "\n")


def row_line(row: tuple[object, ...]) -> str:
    return ",".join(str(v) for v in row)


def make_minimal(root: Path, rows: list[tuple[object, ...]] = ROWS, header: str = HEADER) -> Path:
    """Six 8x8 PNGs under images/, two per split, both classes in every split."""
    for i, (_, name, *_rest) in enumerate(rows):
        path = root / "images" / str(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), 20 * i, np.uint8)).save(path)
    write_csv(root / "metadata.csv", header, [row_line(r) for r in rows])
    return root


def assert_data_error(exc: pytest.ExceptionInfo[DataError], path: Path, row: int | None, *fragments: str) -> None:
    text = str(exc.value)
    assert str(path) in text
    assert exc.value.path == str(path)
    if row is not None:
        assert f"row {row}" in text
        assert exc.value.row == row
    for fragment in fragments:
        assert fragment in text
    assert "\n" not in text  # one line


# ----------------------------------------------------------------------------- parsing
def test_read_dataset_parses_every_row(tiny_synthetic: Path) -> None:
    ds = read_dataset(tiny_synthetic)
    assert len(ds.records) == 40 + 16 + 16
    assert [len(ds.split(s)) for s in SPLITS] == [40, 16, 16]
    assert ds.classes == [0, 1]
    first = ds.records[0]
    assert first.row == 2  # header is line 1
    assert [r.row for r in ds.records] == list(range(2, 2 + len(ds.records)))
    assert first.img_id == "0"
    assert first.path == tiny_synthetic / "images" / first.img_filename
    assert all(r.path.is_file() for r in ds.records)
    assert ds.has_segmentations
    assert ds.segmentation_path(first) == tiny_synthetic / "segmentations" / first.img_filename
    assert ds.lookup()["0"] is first and ds.lookup()[first.img_filename] is first


def test_load_images_and_segmentations(tiny_synthetic: Path) -> None:
    ds = read_dataset(tiny_synthetic)
    test = ds.split("test")
    images = load_images(test, 16)
    assert images.shape == (16, 16, 16, 3) and images.dtype == np.uint8
    full = load_images(test[:1], 32)
    assert np.array_equal(full[0], np.asarray(Image.open(test[0].path).convert("RGB")))
    masks = load_segmentations(ds, test, 32)
    assert masks.shape == (16, 32, 32) and masks.dtype == np.uint8
    assert (masks > 127).any(axis=(1, 2)).all() and (masks < 128).any(axis=(1, 2)).all()


def test_filename_resolved_against_root_then_images(tmp_path: Path) -> None:
    root = make_minimal(tmp_path)
    # the same name at the root wins over images/
    shutil.copy(root / "images" / "c0" / "img0.png", root / "img_root.png")
    (root / "images" / "img_root.png").write_bytes(b"shadowed")
    rows = [("a0", "img_root.png", 0, 0, 0), *ROWS[1:]]
    write_csv(root / "metadata.csv", HEADER, [row_line(r) for r in rows])
    ds = read_dataset(root)
    assert ds.records[0].path == root / "img_root.png"
    assert ds.records[1].path == root / "images" / "c1" / "img1.png"


def test_img_id_optional_and_other_columns_ignored(tmp_path: Path) -> None:
    root = make_minimal(tmp_path)
    lines = [f"{name},{y},{split},{place},whatever{i}" for i, (_, name, y, split, place) in enumerate(ROWS)]
    write_csv(root / "metadata.csv", "img_filename,y,split,place,note", lines)
    ds = read_dataset(root)
    assert [r.img_id for r in ds.records] == [r[1] for r in ROWS]
    assert [(r.y, r.split, r.place) for r in ds.records] == [r[2:] for r in ROWS]


def test_integer_like_floats_and_whitespace_accepted(tmp_path: Path) -> None:
    root = make_minimal(tmp_path)
    lines = [row_line(r) for r in ROWS]
    lines[0] = "a0, c0/img0.png ,0.0, 0 ,0"
    write_csv(root / "metadata.csv", HEADER, lines)
    record = read_dataset(root).records[0]
    assert (record.img_filename, record.y, record.split, record.place) == ("c0/img0.png", 0, 0, 0)


def test_check_files_false_skips_existence(tmp_path: Path) -> None:
    root = make_minimal(tmp_path)
    (root / "images" / "c0" / "img0.png").unlink()
    ds = read_dataset(root, check_files=False)
    assert ds.records[0].path == root / "c0" / "img0.png"


# ----------------------------------------------------------------------------- bad metadata.csv
def test_missing_dataset_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        read_dataset(tmp_path / "nope")
    assert_data_error(exc, tmp_path / "nope", None, "not found")


def test_missing_metadata_csv(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        read_dataset(tmp_path)
    assert_data_error(exc, tmp_path / "metadata.csv", None, "metadata.csv not found")


def test_missing_column(tmp_path: Path) -> None:
    root = make_minimal(tmp_path)
    write_csv(root / "metadata.csv", "img_id,img_filename,y,split", [row_line(r[:4]) for r in ROWS])
    with pytest.raises(DataError) as exc:
        read_dataset(root)
    assert_data_error(exc, root / "metadata.csv", 1, "missing column", "place")


def test_missing_image_file(tmp_path: Path) -> None:
    root = make_minimal(tmp_path)
    (root / "images" / "c1" / "img3.png").unlink()
    with pytest.raises(DataError) as exc:
        read_dataset(root)
    assert_data_error(exc, root / "metadata.csv", 5, "c1/img3.png", "not found")


def test_truncated_image(tmp_path: Path) -> None:
    root = make_minimal(tmp_path)
    image = root / "images" / "c0" / "img4.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(image)
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    read_dataset(root)  # the layout itself is fine; decoding fails before any training
    with pytest.raises(DataError) as exc:
        load_experiment_data(root, 16, tmp_path / "run")
    assert_data_error(exc, image, 6, "cannot decode image")


def test_truncated_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "x.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as exc:
        read_rgb(path, row=9)
    assert_data_error(exc, path, 9, "cannot decode image")


def test_corrupt_non_image_file(tmp_path: Path) -> None:
    root = make_minimal(tmp_path)
    image = root / "images" / "c1" / "img1.png"
    image.write_bytes(b"this is not an image\n")
    with pytest.raises(DataError) as exc:
        load_experiment_data(root, 16, tmp_path / "run")
    assert_data_error(exc, image, 3, "cannot decode image")


def test_row_with_too_many_fields(tmp_path: Path) -> None:
    root = make_minimal(tmp_path)
    lines = [row_line(r) for r in ROWS]
    lines[2] += ",extra"
    write_csv(root / "metadata.csv", HEADER, lines)
    with pytest.raises(DataError) as exc:
        read_dataset(root)
    assert_data_error(exc, root / "metadata.csv", 4, "6 fields", "header has 5")


def test_row_with_too_few_fields(tmp_path: Path) -> None:
    root = make_minimal(tmp_path)
    lines = [row_line(r) for r in ROWS]
    lines[1] = row_line(ROWS[1][:4])
    write_csv(root / "metadata.csv", HEADER, lines)
    with pytest.raises(DataError) as exc:
        read_dataset(root)
    assert_data_error(exc, root / "metadata.csv", 3, "fewer fields")


def test_row_with_too_few_fields_in_an_optional_column(tmp_path: Path) -> None:
    """A short row is malformed even when only an ignored trailing column is missing."""
    root = make_minimal(tmp_path)
    lines = [row_line(r) + ",x.jpg" for r in ROWS]
    lines[3] = row_line(ROWS[3])
    write_csv(root / "metadata.csv", HEADER + ",place_filename", lines)
    with pytest.raises(DataError) as exc:
        read_dataset(root)
    assert_data_error(exc, root / "metadata.csv", 5, "fewer fields")


@pytest.mark.parametrize("value", ["3", "-1", "7"])
def test_unknown_split_value(tmp_path: Path, value: str) -> None:
    root = make_minimal(tmp_path)
    lines = [row_line(r) for r in ROWS]
    lines[4] = f"a4,c0/img4.png,0,{value},1"
    write_csv(root / "metadata.csv", HEADER, lines)
    with pytest.raises(DataError) as exc:
        read_dataset(root)
    assert_data_error(exc, root / "metadata.csv", 6, f"unknown split value {value}")


@pytest.mark.parametrize("column,value", [("y", "bird"), ("y", "1.5"), ("y", ""), ("place", "water"), ("split", "train")])
def test_non_integer_field(tmp_path: Path, column: str, value: str) -> None:
    root = make_minimal(tmp_path)
    lines = [row_line(r) for r in ROWS]
    fields = dict(zip(HEADER.split(","), lines[2].split(","), strict=True))
    fields[column] = value
    lines[2] = ",".join(fields.values())
    write_csv(root / "metadata.csv", HEADER, lines)
    with pytest.raises(DataError) as exc:
        read_dataset(root)
    assert_data_error(exc, root / "metadata.csv", 4, repr(column))


@pytest.mark.parametrize("split_name", ["train", "val", "test"])
def test_split_with_no_rows(tmp_path: Path, split_name: str) -> None:
    code = SPLITS[split_name]
    root = make_minimal(tmp_path)
    write_csv(root / "metadata.csv", HEADER, [row_line(r) for r in ROWS if r[3] != code])
    with pytest.raises(DataError) as exc:
        read_dataset(root)
    assert_data_error(exc, root / "metadata.csv", None, f"the {split_name} split (split={code}) has no rows")


def test_empty_filename(tmp_path: Path) -> None:
    root = make_minimal(tmp_path)
    lines = [row_line(r) for r in ROWS]
    lines[0] = "a0,,0,0,0"
    write_csv(root / "metadata.csv", HEADER, lines)
    with pytest.raises(DataError) as exc:
        read_dataset(root)
    assert_data_error(exc, root / "metadata.csv", 2, "img_filename")


def test_repeated_filename(tmp_path: Path) -> None:
    root = make_minimal(tmp_path)
    lines = [row_line(r) for r in ROWS] + ["a9,c1/img3.png,1,2,1"]
    write_csv(root / "metadata.csv", HEADER, lines)
    with pytest.raises(DataError) as exc:
        read_dataset(root)
    assert_data_error(exc, root / "metadata.csv", 8, "repeats row 5")


def test_label_missing_from_train(tmp_path: Path) -> None:
    root = make_minimal(tmp_path)
    rows = [*ROWS[:5], ("a5", "c1/img5.png", 2, 2, 0)]
    write_csv(root / "metadata.csv", HEADER, [row_line(r) for r in rows])
    with pytest.raises(DataError) as exc:
        read_dataset(root)
    assert_data_error(exc, root / "metadata.csv", 7, "y=2 does not occur in the train split")


def test_single_class_in_train(tmp_path: Path) -> None:
    root = make_minimal(tmp_path)
    rows = [ROWS[0], ("a1", "c1/img1.png", 0, 0, 1), *ROWS[2:]]
    write_csv(root / "metadata.csv", HEADER, [row_line(r) for r in rows])
    with pytest.raises(DataError) as exc:
        read_dataset(root)
    assert_data_error(exc, root / "metadata.csv", None, "single class")


def test_missing_segmentation(tmp_path: Path) -> None:
    root = make_minimal(tmp_path)
    ds = read_dataset(root)
    assert not ds.has_segmentations
    with pytest.raises(DataError) as exc:
        load_segmentations(ds, ds.records[:1], 8)
    assert_data_error(exc, root / "segmentations" / "c0" / "img0.png", 2, "segmentation")


# ----------------------------------------------------------------------------- masks.csv
def masks_dataset(tmp_path: Path, lines: list[str], header: str = "info,mask") -> tuple[Path, object]:
    root = make_minimal(tmp_path)
    write_csv(root / "masks.csv", header, lines)
    return root / "masks.csv", read_dataset(root)


def test_masks_csv_by_img_id_and_filename(tmp_path: Path) -> None:
    mask_a0 = "1000" + "0" * 12
    mask_a1 = "0" * 15 + "1"
    path, ds = masks_dataset(tmp_path, [f"a0,{mask_a0}", f"c1/img1.png,{mask_a1}"])
    labels = read_masks_csv(path, ds)  # type: ignore[arg-type]
    assert set(labels) == {"c0/img0.png", "c1/img1.png"}
    expected = np.zeros((4, 4), bool)
    expected[0, 0] = True
    assert np.array_equal(labels["c0/img0.png"], expected)
    assert labels["c1/img1.png"][3, 3] and labels["c1/img1.png"].sum() == 1


def test_masks_csv_wrong_length(tmp_path: Path) -> None:
    path, ds = masks_dataset(tmp_path, ["a0," + "0" * 256, "a1," + "0" * 255])
    with pytest.raises(DataError) as exc:
        read_masks_csv(path, ds)  # type: ignore[arg-type]
    assert_data_error(exc, path, 3, "255 characters", "not a square")


def test_masks_csv_bad_character(tmp_path: Path) -> None:
    path, ds = masks_dataset(tmp_path, ["a0," + "0" * 15 + "x"])
    with pytest.raises(DataError) as exc:
        read_masks_csv(path, ds)  # type: ignore[arg-type]
    assert_data_error(exc, path, 2, "only the characters 0 and 1")


def test_masks_csv_unknown_id(tmp_path: Path) -> None:
    path, ds = masks_dataset(tmp_path, ["a0," + "0" * 16, "a1," + "0" * 16, "zz," + "0" * 16])
    with pytest.raises(DataError) as exc:
        read_masks_csv(path, ds)  # type: ignore[arg-type]
    assert_data_error(exc, path, 4, "unknown id 'zz'")


def test_masks_csv_inconsistent_grid(tmp_path: Path) -> None:
    path, ds = masks_dataset(tmp_path, ["a0," + "0" * 256, "a1," + "1" * 256, "a2," + "0" * 64])
    with pytest.raises(DataError) as exc:
        read_masks_csv(path, ds)  # type: ignore[arg-type]
    assert_data_error(exc, path, 4, "64 characters", "256", "16x16")


def test_masks_csv_missing_columns(tmp_path: Path) -> None:
    path, ds = masks_dataset(tmp_path, ["a0," + "0" * 16], header="id,mask")
    with pytest.raises(DataError) as exc:
        read_masks_csv(path, ds)  # type: ignore[arg-type]
    assert_data_error(exc, path, 1, "info,mask")


def test_masks_csv_missing_or_empty(tmp_path: Path) -> None:
    path, ds = masks_dataset(tmp_path, [])
    with pytest.raises(DataError) as exc:
        read_masks_csv(path, ds)  # type: ignore[arg-type]
    assert_data_error(exc, path, None, "no rows")
    with pytest.raises(DataError) as exc:
        read_masks_csv(tmp_path / "other.csv", ds)  # type: ignore[arg-type]
    assert_data_error(exc, tmp_path / "other.csv", None, "not found")


# ----------------------------------------------------------------------------- image decoding
def _palette_image() -> Image.Image:
    img = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode="P")
    img.putpalette([10, 20, 30, 200, 100, 50] + [0] * (256 * 3 - 6))
    return img


IMAGE_CASES = {
    # mode: (image, file format, expected HxWx3 uint8, computed by hand)
    "L": (Image.fromarray(np.array([[0, 100], [200, 255]], np.uint8)), "PNG",
          np.array([[0, 100], [200, 255]])[..., None].repeat(3, 2)),
    "LA": (Image.fromarray(np.array([[[100, 0], [50, 255]]], np.uint8), mode="LA"), "PNG",
           np.array([[[100] * 3, [50] * 3]])),
    "P": (_palette_image(), "PNG",
          np.array([[[10, 20, 30], [200, 100, 50]], [[200, 100, 50], [10, 20, 30]]])),
    "RGBA": (Image.fromarray(np.array([[[10, 20, 30, 0], [40, 50, 60, 255]]], np.uint8), mode="RGBA"), "PNG",
             np.array([[[10, 20, 30], [40, 50, 60]]])),
    "CMYK": (Image.frombytes("CMYK", (3, 1), bytes([0, 0, 0, 0, 255, 0, 0, 0, 0, 0, 0, 255])), "TIFF",
             np.array([[[255, 255, 255], [0, 255, 255], [0, 0, 0]]])),
    "I;16": (Image.fromarray(np.array([[0, 65535, 32768, 257]], np.uint16)), "PNG",
             np.array([[0, 255, 128, 1]])[..., None].repeat(3, 2)),
}


@pytest.mark.parametrize("mode", list(IMAGE_CASES))
def test_any_mode_decodes_to_rgb_uint8(tmp_path: Path, mode: str) -> None:
    image, fmt, expected = IMAGE_CASES[mode]
    assert image.mode == mode
    path = tmp_path / f"img.{fmt.lower()}"
    image.save(path, format=fmt)
    with Image.open(path) as reopened:
        assert reopened.mode == mode  # the file really is in that mode
    decoded = read_rgb(path)
    assert decoded.dtype == np.uint8 and decoded.ndim == 3 and decoded.shape[2] == 3
    assert np.array_equal(decoded, expected.astype(np.uint8))
    assert np.array_equal(pil_to_rgb(image), expected.astype(np.uint8))


def test_palette_with_transparency_decodes(tmp_path: Path) -> None:
    image = _palette_image()
    image.info["transparency"] = 0
    path = tmp_path / "p.png"
    image.save(path, transparency=0)
    decoded = read_rgb(path)
    assert decoded.shape == (2, 2, 3)
    assert decoded[0, 1].tolist() == [200, 100, 50]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = np.zeros((20, 40, 3), np.uint8)  # H=20, W=40: left half red, right half blue
    stored[:, :20] = (255, 0, 0)
    stored[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, format="JPEG", quality=95, exif=exif.tobytes())
    decoded = read_rgb(path)
    assert decoded.shape == (40, 20, 3)  # height and width swap
    top, bottom = decoded[:15].reshape(-1, 3).mean(0), decoded[25:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 50  # the stored left (red) is now on top
    assert bottom[2] > 200 and bottom[0] < 50


def test_read_gray_uses_alpha(tmp_path: Path) -> None:
    path = tmp_path / "m.png"
    Image.fromarray(np.array([[[9, 9, 9, 0], [9, 9, 9, 200]]], np.uint8), mode="RGBA").save(path)
    assert read_gray(path).tolist() == [[0, 200]]
    Image.fromarray(np.array([[0, 255]], np.uint8)).save(path)
    assert read_gray(path).tolist() == [[0, 255]]


def test_read_rgb_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        read_rgb(tmp_path / "none.png", row=4)
    assert_data_error(exc, tmp_path / "none.png", 4, "not found")
