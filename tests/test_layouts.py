"""Dataset layouts (data/layouts/): every reader on a tiny fake of its real folder structure, the splits
each benchmark defines, one clear error per malformed variant, and ``run_experiment`` end to end."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from layout_fakes import (
    make_imagefolder,
    make_in9,
    make_metashift,
    make_spawrious,
    make_waterbirds_images_prefix,
    write_rows,
)

from autobackswap.cli import build_parser, main, settings
from autobackswap.data.layout import load_segmentations, read_masks_csv
from autobackswap.data.layouts import layout_names, parse_layout_spec, read_layout
from autobackswap.data.layouts.base import detect_layout
from autobackswap.data.splits import load_also_test, load_experiment_data
from autobackswap.errors import AutoBackSwapError, DataError
from autobackswap.experiment import ExperimentConfig, run_experiment
from autobackswap.train.loop import TrainConfig

pytestmark = pytest.mark.usefixtures("torch_single_thread")

IMAGEFOLDER_GROUPS = {
    "train": {("cat", "in"): 3, ("cat", "out"): 1, ("dog", "out"): 3, ("dog", "in"): 1},
    "val": {("cat", "in"): 2, ("dog", "out"): 2},
    "test": {("cat", "in"): 2, ("cat", "out"): 2, ("dog", "out"): 2, ("dog", "in"): 2},
}


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One read-only tiny fake per layout (copy before changing one)."""
    base = tmp_path_factory.mktemp("layout_fakes")
    return {
        "waterbirds": make_waterbirds_images_prefix(base / "waterbirds"),
        "spawrious": make_spawrious(base / "spawrious"),
        "in9": make_in9(base / "in9"),
        "metashift": make_metashift(base / "metashift"),
        "imagefolder": make_imagefolder(base / "imagefolder", IMAGEFOLDER_GROUPS),
    }


def one_line_error(exc: pytest.ExceptionInfo[Exception], *fragments: str) -> str:
    text = str(exc.value.args[0]) if isinstance(exc.value, KeyError) else str(exc.value)
    assert "\n" not in text
    for fragment in fragments:
        assert fragment in text, text
    return text


# ----------------------------------------------------------------------------- registry, specs, detection
def test_layouts_are_detected_in_priority_order() -> None:
    assert layout_names() == ["waterbirds", "spawrious", "in9", "metashift", "imagefolder"]


@pytest.mark.parametrize("name", ["waterbirds", "spawrious", "in9", "metashift", "imagefolder"])
def test_every_layout_detects_and_reads_its_fake(fakes: dict[str, Path], name: str) -> None:
    root = fakes[name]
    assert detect_layout(root) == name
    auto, named = read_layout(root), read_layout(root, name)
    assert auto.layout == named.layout == name
    assert [r.img_filename for r in auto.records] == [r.img_filename for r in named.records]
    assert all(auto.split(s) for s in ("train", "val", "test")) and len(auto.classes) >= 2


def test_layout_spec_parsing() -> None:
    assert parse_layout_spec("spawrious:variant=m2m_hard:splits=official") == (
        "spawrious", {"variant": "m2m_hard", "splits": "official"})
    assert parse_layout_spec("auto") == ("auto", {})
    with pytest.raises(AutoBackSwapError) as exc:
        parse_layout_spec("spawrious:flavour=x")
    one_line_error(exc, "no option 'flavour'", "variant, splits")
    with pytest.raises(AutoBackSwapError) as exc:
        parse_layout_spec("spawrious:m2m_hard")
    one_line_error(exc, "must look like key=value")
    with pytest.raises(AutoBackSwapError) as exc:
        parse_layout_spec("auto:variant=m2m_hard")
    one_line_error(exc, "auto takes no options")
    with pytest.raises(KeyError) as key_exc:
        parse_layout_spec("coco")
    one_line_error(key_exc, "unknown dataset layout 'coco'", "imagefolder, in9, metashift, spawrious, waterbirds")


def test_an_unrecognised_folder_names_what_each_layout_expects(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    with pytest.raises(DataError) as exc:
        read_layout(tmp_path)
    one_line_error(exc, "no dataset layout recognised, expected files not found",
                   f"waterbirds: {tmp_path}/metadata.csv", f"spawrious: {tmp_path}/spawrious224/{{0,1}}",
                   f"in9: {tmp_path}/in9l/{{train,val}}", f"metashift: {tmp_path}/MetaShift-Cat-Dog-indoor-outdoor",
                   f"imagefolder: {tmp_path}/{{train,val,test}}", "pass --layout NAME")
    with pytest.raises(DataError) as exc:
        read_layout(tmp_path / "nope")
    one_line_error(exc, "dataset folder not found")


# ----------------------------------------------------------------------------- waterbirds
def test_waterbirds_masks_are_found_without_the_images_prefix(fakes: dict[str, Path]) -> None:
    """img_filename images/c0/x.png finds segmentations/c0/x.png (the issue's refused copy)."""
    root = fakes["waterbirds"]
    ds = read_layout(root)
    first = ds.records[0]
    assert first.img_filename == "images/c0/s0_p0_0.png"
    assert ds.segmentation_path(first) == root / "segmentations" / "c0" / "s0_p0_0.png"
    assert ds.has_segmentations
    masks = load_segmentations(ds, ds.split("train")[:2], 16)
    assert masks.shape == (2, 16, 16) and set(np.unique(masks)) <= {0, 255}


def test_waterbirds_missing_mask_follows_its_neighbours_convention(fakes: dict[str, Path], tmp_path: Path) -> None:
    root = shutil.copytree(fakes["waterbirds"], tmp_path / "wb")
    (root / "segmentations" / "c1" / "s0_p1_2.png").unlink()
    ds = read_layout(root)
    missing = next(r for r in ds.records if r.img_filename == "images/c1/s0_p1_2.png")
    assert ds.segmentation_path(missing) == root / "segmentations" / "c1" / "s0_p1_2.png"
    assert not ds.has_segmentations


def test_waterbirds_segmentations_matching_nothing_names_the_first_expected_path(fakes: dict[str, Path],
                                                                                 tmp_path: Path) -> None:
    root = shutil.copytree(fakes["waterbirds"], tmp_path / "wb")
    shutil.rmtree(root / "segmentations")
    (root / "segmentations" / "elsewhere").mkdir(parents=True)
    with pytest.raises(DataError) as exc:
        read_layout(root)
    one_line_error(exc, str(root / "metadata.csv"), "row 2", "segmentations/ holds no mask for any image",
                   str(root / "segmentations" / "images" / "c0" / "s0_p0_0.png"),
                   str(root / "segmentations" / "c0" / "s0_p0_0.png"))


# ----------------------------------------------------------------------------- spawrious
def spawrious_names(records: list[Any]) -> list[str]:
    return sorted(r.img_filename for r in records)


def test_spawrious_o2o_reference_lists_and_holdout(fakes: dict[str, Path]) -> None:
    """o2o_easy, reference: bulldog trains on desert; env 0 keeps int(11 * 0.97) = 10 desert images (numeric
    order, so _10 is the one dropped) and takes 1 beach image; env 1 keeps int(11 * 0.87) = 9 and takes 2.
    Each list of 11 gives int(11 * 0.2) = 2 to val; tests on dirt, both env folders."""
    ds = read_layout(fakes["spawrious"])
    assert ds.root == fakes["spawrious"] / "spawrious224" / "m2m"
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [72, 16, 88]
    pooled = [r for r in ds.records if r.split in (0, 1) and r.y == 0 and r.img_filename.startswith("0/")]
    expected = [f"0/desert/bulldog/desert_bulldog_{i}.png" for i in range(10)] + ["0/beach/bulldog/beach_bulldog_0.png"]
    assert spawrious_names(pooled) == sorted(expected)
    shuffled = list(expected)
    random.Random(0).shuffle(shuffled)  # spur-corr's split_train_valid
    assert spawrious_names([r for r in pooled if r.split == 1]) == sorted(shuffled[:2])
    env1 = {r.img_filename for r in ds.records if r.split in (0, 1) and r.y == 0 and r.img_filename.startswith("1/")}
    assert env1 == {f"1/desert/bulldog/desert_bulldog_{i}.png" for i in range(9)} | {
        "1/beach/bulldog/beach_bulldog_0.png", "1/beach/bulldog/beach_bulldog_1.png"}
    test = [r for r in ds.split("test") if r.y == 0]
    assert {r.img_filename.split("/")[1] for r in test} == {"dirt"} and len(test) == 22
    first = ds.records[0]
    assert (first.y, first.place, ds.class_names[0], ds.place_names[first.place]) == (0, 0, "bulldog", "desert")
    assert first.img_id == "/" + first.img_filename


def test_spawrious_official_splits_and_m2m_env_folders(fakes: dict[str, Path]) -> None:
    """official o2o_easy: the first 3072 / 2756 of each list (all 11 here) plus 96 / 412 filler images (all 11):
    22 per list, 4 of them to val. m2m_hard: bulldog trains on dirt (env 0) and jungle (env 1) and tests on
    snow / beach; the reference reads env 1 from folder 1, the official code every list from folder 0."""
    official = read_layout(fakes["spawrious"], "spawrious:splits=official")
    assert [len(official.split(s)) for s in ("train", "val", "test")] == [144, 32, 88]
    for splits, env1_folder in (("reference", "1"), ("official", "0")):
        ds = read_layout(fakes["spawrious"], f"spawrious:variant=m2m_hard:splits={splits}")
        bulldog = [r.img_filename for r in ds.records if r.y == 0]
        assert {n.rsplit("/", 2)[0] for n in bulldog if "/jungle/" in n} == {f"{env1_folder}/jungle"}
        assert {r.img_filename.split("/")[1] for r in ds.records if r.y == 0 and r.split in (0, 1)} == {"dirt", "jungle"}
        assert {r.img_filename.split("/")[1] for r in ds.split("test") if r.y == 0} == {"snow", "beach"}


def test_spawrious_masks_and_shared_masks_csv(fakes: dict[str, Path]) -> None:
    """Masks are the .tiff files beside spawrious224; masks.csv has a row for every image of every location,
    and the rows of images this variant does not use are skipped."""
    ds = read_layout(fakes["spawrious"])
    r = ds.records[0]
    assert ds.segmentation_path(r) == (fakes["spawrious"] / "spawrious224_segmentation_masks" / "m2m"
                                       / r.img_filename).with_suffix(".tiff")
    assert ds.has_segmentations
    assert set(np.unique(load_segmentations(ds, [r], 16))) == {0, 255}
    labels = read_masks_csv(ds.masks_csv_path, ds)
    assert ds.masks_csv_path == fakes["spawrious"] / "spawrious224" / "masks.csv"
    assert len(labels) == len(ds.records) == 176 and labels[r.img_filename].shape == (4, 4)


def test_spawrious_official_folder_uses_the_built_in_tables(tmp_path: Path) -> None:
    """No json files: the built-in o2o_easy table. Lists of 5 (4 + 1 generic in both envs), 1 to val each."""
    official = make_spawrious(tmp_path / "official", n=5, reference=False, masks=False)
    ds = read_layout(official)
    assert ds.root == official / "spawrious224" and not ds.has_segmentations
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [32, 8, 40]
    assert {r.img_filename.split("/")[1] for r in ds.records if r.y == 0 and r.split < 2} == {"desert", "beach"}


def test_spawrious_errors(tmp_path: Path) -> None:
    root = make_spawrious(tmp_path / "sp", n=3, masks=False)
    with pytest.raises(DataError) as exc:
        read_layout(root, "spawrious:variant=o2o_extreme")
    one_line_error(exc, "unknown Spawrious variant 'o2o_extreme'", "m2m_easy")
    with pytest.raises(DataError) as exc:
        read_layout(root, "spawrious:splits=mine")
    one_line_error(exc, "unknown Spawrious splits 'mine'")
    shutil.rmtree(root / "spawrious224" / "m2m" / "1" / "dirt" / "bulldog")
    with pytest.raises(DataError) as exc:
        read_layout(root)
    one_line_error(exc, str(root / "spawrious224" / "m2m" / "1" / "dirt" / "bulldog"), "reads bulldog on dirt from env folder 1")
    (root / "spawrious224" / "o2o" / "easy.json").write_text("{not json")
    with pytest.raises(DataError) as exc:
        read_layout(root)
    one_line_error(exc, "easy.json", "not valid JSON")
    with pytest.raises(DataError) as exc:
        read_layout(tmp_path / "sp" / "spawrious224" / "o2o", "spawrious")
    one_line_error(exc, "env folder with location folders not found")


# ----------------------------------------------------------------------------- in9
def test_in9_trains_on_in9l_and_tests_on_the_original_images(fakes: dict[str, Path]) -> None:
    root = fakes["in9"]
    ds = read_layout(root)
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [12, 6, 6]
    assert ds.class_names == {0: "00_dog", 1: "01_bird", 2: "02_wheeled vehicle"}
    assert {r.place for r in ds.records} == {0} and "groups are the classes" in ds.notes[0]
    test = ds.split("test")
    assert test[0].img_filename == "bg_challenge/original/val/00_dog/n00_0.JPEG"
    assert ds.segmentation_path(test[0]) == root / "bg_challenge" / "fg_mask" / "val" / "00_dog" / "n00_0.npy"
    masks = load_segmentations(ds, test, 16)
    assert set(np.unique(masks)) == {0, 255}  # .npy 0/1 -> 0/255
    assert not ds.has_segmentations  # IN-9L ships no masks


def test_in9_variant_folders_are_test_only_also_test_sets(fakes: dict[str, Path], tmp_path: Path) -> None:
    variant = fakes["in9"] / "bg_challenge" / "mixed_rand"
    ds = read_layout(variant, need=("test",))
    assert len(ds.split("test")) == 6 and not ds.split("train")
    with pytest.raises(DataError) as exc:
        read_layout(variant)
    one_line_error(exc, "the train split has no images", "in9 layout")
    data = load_experiment_data(fakes["in9"], 16, tmp_path / "run")
    also = load_also_test({"mixed_rand": str(variant)}, data, "in9")
    assert also["mixed_rand"].labels.tolist() == [0, 0, 1, 1, 2, 2]
    other = shutil.copytree(variant, tmp_path / "mixed_same")
    (other / "val" / "02_wheeled vehicle").rename(other / "val" / "03_reptile")
    with pytest.raises(AutoBackSwapError) as ae:
        load_also_test({"odd": str(other)}, data, "in9")
    one_line_error(ae, "--also-test odd", "03_reptile", "not the training classes")


def test_in9_errors(tmp_path: Path) -> None:
    root = make_in9(tmp_path / "in9", n=2)
    (root / "in9l").rename(root / "in9l_elsewhere")
    with pytest.raises(DataError) as exc:
        read_layout(root, "in9")
    one_line_error(exc, str(root / "in9l" / "train"), "IN-9L training images not found")
    (root / "in9l_elsewhere").rename(root / "in9l")
    (root / "in9l" / "val" / "07_primate").mkdir()
    with pytest.raises(DataError) as exc:
        read_layout(root)
    one_line_error(exc, "07_primate", "not an IN-9 class here")
    (root / "in9l" / "val" / "07_primate").rmdir()
    bad = root / "bg_challenge" / "fg_mask" / "val" / "00_dog" / "n00_0.npy"
    np.save(bad, np.zeros((4, 4, 3)))
    ds = read_layout(root)
    with pytest.raises(DataError) as exc:
        load_segmentations(ds, ds.split("test"), 16)
    one_line_error(exc, str(bad), "mask array must be 2-D")


# ----------------------------------------------------------------------------- metashift
def test_metashift_folders_get_subpopbench_labels_and_split_sizes(fakes: dict[str, Path]) -> None:
    """40 images: int(40 * 0.25) = 10 test, int(40 * 0.1) = 4 val, 26 train; cat = 1, indoor = 1."""
    ds = read_layout(fakes["metashift"])
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [26, 4, 10]
    by_folder = {r.img_filename.rsplit("/", 1)[0].split("/", 1)[1]: (r.y, r.place) for r in ds.records}
    assert by_folder == {"train/cat/cat(indoor)": (1, 1), "train/dog/dog(outdoor)": (0, 0),
                         "test/cat/cat(outdoor)": (1, 0), "test/dog/dog(indoor)": (0, 1)}
    assert ds.class_names == {0: "dog", 1: "cat"} and ds.place_names == {0: "outdoor", 1: "indoor"}


def test_metashift_csv_from_another_machine_is_found_under_the_root(tmp_path: Path) -> None:
    root = make_metashift(tmp_path / "ms", n=3, csv_from="/home/someone/data/metashift")
    ds = read_layout(root)
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [4, 4, 4]  # splits cycle 0, 1, 2 over 12
    assert ds.records[0].row == 2 and ds.records[0].path.is_file()
    assert ds.records[0].path == root / "MetaShift-Cat-Dog-indoor-outdoor" / "train/cat/cat(indoor)/11000.jpg"


def test_metashift_errors(tmp_path: Path) -> None:
    root = make_metashift(tmp_path / "ms", n=3, csv_from="/elsewhere")
    meta = root / "metadata_metashift.csv"
    lines = meta.read_text().splitlines()
    meta.write_text("\n".join([lines[0], *lines[1:3], lines[3].replace("11002.jpg", "gone.jpg"), *lines[4:]]) + "\n")
    with pytest.raises(DataError) as exc:
        read_layout(root)
    one_line_error(exc, str(meta), "row 4", "gone.jpg", "not found")
    write_rows(meta, ["filename", "y", "split"], [["x.jpg", 0, 0]])
    with pytest.raises(DataError) as exc:
        read_layout(root)
    one_line_error(exc, str(meta), "row 1", "missing column(s) a")
    meta.unlink()
    shutil.rmtree(root / "MetaShift-Cat-Dog-indoor-outdoor" / "test" / "dog" / "dog(indoor)")
    with pytest.raises(DataError) as exc:
        read_layout(root)
    one_line_error(exc, "dog(indoor)", "folder not found")


# ----------------------------------------------------------------------------- imagefolder
def test_imagefolder_attributes_masks_and_names(fakes: dict[str, Path]) -> None:
    ds = read_layout(fakes["imagefolder"])
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [8, 4, 8]
    assert ds.class_names == {0: "cat", 1: "dog"} and ds.place_names == {0: "in", 1: "out"}
    first = ds.records[0]
    assert (first.img_filename, first.y, first.place) == ("train/cat/cat_in_0.png", 0, 0)
    assert ds.has_segmentations and ds.notes == []


def test_imagefolder_without_attributes_has_class_groups(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path / "imf", IMAGEFOLDER_GROUPS, attributes=False, masks=False)
    ds = read_layout(root)
    assert {r.place for r in ds.records} == {0}
    assert "groups are the classes" in ds.notes[0]


def test_imagefolder_errors(tmp_path: Path, fakes: dict[str, Path]) -> None:
    root = shutil.copytree(fakes["imagefolder"], tmp_path / "imf")
    attributes = root / "attributes.csv"
    lines = attributes.read_text().splitlines()
    attributes.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError) as exc:
        read_layout(root)
    one_line_error(exc, str(attributes), "no attribute for 1 image(s)", "every image needs a row")
    attributes.write_text("\n".join([*lines, lines[3]]) + "\n")
    with pytest.raises(DataError) as exc:
        read_layout(root)
    one_line_error(exc, f"row {len(lines) + 1}", "repeats row 4")
    attributes.write_text("\n".join([*lines, "train/cat/nope.png,in"]) + "\n")
    with pytest.raises(DataError) as exc:
        read_layout(root)
    one_line_error(exc, f"row {len(lines) + 1}", "no image 'train/cat/nope.png'")
    attributes.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as exc:
        read_layout(root, "imagefolder:attributes=other.csv")
    one_line_error(exc, str(root / "other.csv"), "attribute CSV not found")
    shutil.copytree(root / "val" / "cat", root / "val" / "bird")
    with pytest.raises(DataError) as exc:
        read_layout(root)
    one_line_error(exc, str(root / "val" / "bird"), "class folder 'bird' is not one of train/'s classes (cat, dog)")
    shutil.rmtree(root / "val")
    with pytest.raises(DataError) as exc:
        read_layout(root, "imagefolder")
    one_line_error(exc, str(root / "val"), "split folder not found")


# ----------------------------------------------------------------------------- end to end
E2E = {  # layout -> (methods, also-test variants)
    "waterbirds": (["erm", "oracle"], ()),
    "spawrious": (["erm", "oracle"], ()),
    "in9": (["erm", "jtt"], ("mixed_same", "mixed_rand")),
    "metashift": (["erm", "groupdro"], ()),
    "imagefolder": (["erm", "oracle"], ()),
}


@pytest.mark.parametrize("name", list(E2E))
def test_run_experiment_end_to_end_on_every_layout(fakes: dict[str, Path], tmp_path: Path, name: str) -> None:
    methods, variants = E2E[name]
    also = {v: str(fakes["in9"] / "bg_challenge" / v) for v in variants}
    cfg = ExperimentConfig(data=str(fakes[name]), methods=methods, image_size=16, layout=name,
                           train=TrainConfig(epochs=1, batch_size=32, width=8), diagnostics=False,
                           report=name == "in9", also_test=also,
                           method_options={"workers": 1} if "oracle" in methods else {})
    results = run_experiment(cfg, tmp_path / "run")
    assert results["dataset_layout"] == name and results["config"]["layout"] == name
    for method in methods:
        entry = results["methods"][method]
        assert "skipped" not in entry, entry.get("skipped")
        assert 0.0 <= entry["test"]["worst_group_accuracy"] <= entry["test"]["average_accuracy"] <= 1.0
    if "oracle" in methods:
        assert results["methods"]["oracle"]["mask_iou"] > 0.9  # ground-truth cut-outs of the fake squares
        assert results["methods"]["oracle"]["mask_bg_share"] < 0.05  # and (almost) no rim of background
        assert results["methods"]["oracle"]["mask_fg_kept"] > 0.95  # and the whole object
    if variants:
        for method in methods:
            entry = results["methods"][method]
            gap = entry["test:mixed_same"]["average_accuracy"] - entry["test:mixed_rand"]["average_accuracy"]
            assert entry["bg_gap_official"] == pytest.approx(gap)
        report = (tmp_path / "run" / "report.md").read_text()
        assert "Official BG-gap" in report and "in9 layout: IN-9 has no background label" in report


def test_run_experiment_reports_class_groups_without_attributes(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path / "imf", IMAGEFOLDER_GROUPS, attributes=False, masks=False)
    cfg = ExperimentConfig(data=str(root), methods=["erm", "jtt"], image_size=16,
                           train=TrainConfig(epochs=1, batch_size=32, width=8), diagnostics=False)
    results = run_experiment(cfg, tmp_path / "run")
    assert {g["place"] for g in results["train_groups"]} == {0}
    assert "skipped" not in results["methods"]["jtt"]
    assert "groups are the classes" in (tmp_path / "run" / "report.md").read_text()
    assert "groups are the classes" in json.loads((tmp_path / "run" / "results.json").read_text())["dataset_notes"][0]


def test_cli_commands_take_the_layout(fakes: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """experiment (with IN-9 variants as --also-test sets), diagnose (the run's layout, the .npy test masks)
    and evaluate, on the in9 fake."""
    root, run = fakes["in9"], tmp_path / "run"
    variants = [a for v in ("mixed_same", "mixed_rand") for a in ("--also-test", f"{v}={root / 'bg_challenge' / v}")]
    assert main(["experiment", str(root), "--layout", "in9", "--methods", "erm", "--image-size", "16", "--epochs", "1",
                 "--width", "8", "--no-diagnostics", "--out", str(run), *variants]) == 0
    out = capsys.readouterr().out
    assert "official BG-gap (mixed_same - mixed_rand): erm " in out
    assert main(["diagnose", str(run), "--no-report"]) == 0
    assert "6 test images, masks: ground_truth" in capsys.readouterr().out
    assert main(["evaluate", str(root), "--layout", "in9", "--checkpoint", str(run / "models" / "erm_seed0.pt"),
                 "--split", "val"]) == 0
    assert '"average_accuracy"' in capsys.readouterr().out
    assert main(["evaluate", str(root), "--layout", "metashift", "--checkpoint", str(run / "models" / "erm_seed0.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "neither metadata_metashift.csv nor the image folders found" in err and len(err.splitlines()) == 1


def test_label_import_export_with_the_spawrious_masks_csv(fakes: dict[str, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The reference masks.csv imports into a label store (rows of unused images skipped) and exports with
    the same keys (img_id = /<env>/<location>/<breed>/<file>)."""
    root = fakes["spawrious"]
    db, exported = tmp_path / "labels.sqlite", tmp_path / "export.csv"
    assert main(["label", str(root), "--layout", "spawrious:variant=m2m_easy", "--db", str(db),
                 "--import", str(root / "spawrious224" / "masks.csv"), "--export", str(exported)]) == 0
    assert "imported 176 labels" in capsys.readouterr().out
    rows = exported.read_text().splitlines()
    assert rows[0] == "info,mask" and len(rows) == 177
    ds = read_layout(root, "spawrious:variant=m2m_easy")
    assert {r.split(",")[0] for r in rows[1:]} == {r.img_id for r in ds.records}


DATASET_COMMANDS = ("experiment", "train", "evaluate", "fit-detector", "separate", "label", "diagnose", "inspect")


def test_every_command_that_reads_a_dataset_has_layout() -> None:
    parser = build_parser()
    for command in DATASET_COMMANDS:
        argv = [command, "RUN" if command == "diagnose" else "DATA", "--layout", "spawrious:variant=m2m_hard"]
        argv += {"evaluate": ["--checkpoint", "m.pt"], "inspect": [], "label": [], "diagnose": []}.get(command, ["--out", "o"])
        assert parser.parse_args(argv).layout == "spawrious:variant=m2m_hard"
    assert parser.parse_args(["diagnose", "RUN"]).layout is None  # the run's layout
    # the flag defaults to None (a recipe may set the layout); resolved, the default is auto
    assert settings(parser.parse_args(["train", "DATA", "--out", "o"]), "DATA").layout == "auto"


def test_train_and_separate_read_the_layout(fakes: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(fakes["metashift"]), "--layout", "metashift", "--image-size", "16", "--epochs", "1",
                 "--width", "8", "--out", str(tmp_path / "train")]) == 0
    assert (tmp_path / "train" / "model.pt").is_file()
    assert main(["separate", str(fakes["imagefolder"]), "--layout", "imagefolder", "--oracle", "--image-size", "16",
                 "--workers", "1", "--out", str(tmp_path / "sep")]) == 0
    assert '"mask_iou": 1.0' in capsys.readouterr().out


def test_oracle_and_labels_without_masks_name_the_first_missing_mask(fakes: dict[str, Path], tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    root = fakes["metashift"]
    first = read_layout(root).split("train")[0]
    expected = (root / "segmentations" / first.img_filename).with_suffix(".png")
    for method in ("oracle", "autobackswap"):
        assert main(["train", str(root), "--method", method, "--image-size", "16", "--epochs", "1",
                     "--out", str(tmp_path / method)]) == 2
        err = capsys.readouterr().err.strip()
        assert str(expected) in err and len(err.splitlines()) == 1
