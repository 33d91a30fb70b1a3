"""``autobackswap demo --photos``: TuxBirds with the photos-cpu recipe (pretrained Lite0 classifier and detector), end
to end in a reduced form: stand-in assets, 24 training images at 64 px, one epoch of each network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from photo_fakes import BACKGROUNDS, BIRDS, write_standins

from autobackswap import cli
from autobackswap.demo import DEMO_METHODS, PHOTO_RECIPE, run_photo_demo
from autobackswap.recipes import load_recipe
from autobackswap.settings import resolve

REDUCED = {"experiment": {"image_size": 64}, "train": {"epochs": 1, "batch_size": 8},
           "pipeline": {"detector_epochs": 15, "label_budget": 16}}


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_standins(tmp_path_factory.mktemp("assets"), BIRDS, BACKGROUNDS)


def test_photo_demo_runs_end_to_end(assets: Path, tmp_path: Path) -> None:
    settings = resolve("", load_recipe(PHOTO_RECIPE), REDUCED, runs=DEMO_METHODS)
    assert settings.train.model == "timm:tf_efficientnet_lite0" and settings.train.pretrained
    out = tmp_path / "demo"
    kwargs = {"n_train": 24, "n_val": 8, "n_test": 16, "assets": assets, "fetch": False, "birds": BIRDS,
              "backgrounds": BACKGROUNDS}
    results = run_photo_demo(out, settings, **kwargs)
    assert results["complete"] and list(results["methods"]) == DEMO_METHODS
    for method in DEMO_METHODS:
        entry = results["methods"][method]
        for split in ("test", "test:unseen"):  # every model is scored on both test settings
            assert 0.0 <= entry[split]["worst_group_accuracy"] <= 1.0
    abs_run = results["methods"]["autobackswap"]["runs"][0]
    assert 0.0 < abs_run["mask_iou"] <= 1.0
    detector = json.loads(json.dumps(results["config"]))["method_options"]
    assert detector["detector_weights"] == "tf_efficientnet_lite0.in1k"
    assert (out / "report.html").is_file() and (out / "contact_sheet.png").is_file()
    assert (out / "data" / "seen" / "metadata.csv").is_file() and (out / "data" / "unseen" / "metadata.csv").is_file()
    stamp = (out / "data" / "seen" / "metadata.csv").stat().st_mtime_ns
    again = run_photo_demo(out, settings, **kwargs)  # the data set and every run are reused
    assert (out / "data" / "seen" / "metadata.csv").stat().st_mtime_ns == stamp
    assert again["methods"]["erm"]["test"] == results["methods"]["erm"]["test"]


def test_demo_photos_flag_takes_the_photo_recipe(monkeypatch, tmp_path: Path, capsys) -> None:
    seen = {}

    def fake_run(out, settings, n_train):
        seen.update(out=out, settings=settings, n_train=n_train)
        raise SystemExit(0)

    monkeypatch.setattr("autobackswap.demo.run_photo_demo", fake_run)
    with pytest.raises(SystemExit):
        cli.main(["demo", "--photos", "--out", str(tmp_path / "d"), "--epochs", "2"])
    assert seen["settings"].recipe["name"] == PHOTO_RECIPE
    assert seen["settings"].train.epochs == 2 and seen["settings"].train.model == "timm:tf_efficientnet_lite0"
    assert seen["out"] == tmp_path / "d"
