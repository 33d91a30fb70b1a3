"""Recipes: named and file recipes resolve, flags override them, every bad key or name is one clear
error, cpu-small is exactly the defaults, and waterbirds-paper holds the reference's values."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, fields
from pathlib import Path

import pytest

from autobackswap.cli import main
from autobackswap.detect.model import BACKBONES
from autobackswap.errors import AutoBackSwapError, DataError
from autobackswap.evaluate.table import paper_caption, recipe_rows, results_rows
from autobackswap.experiment import ExperimentConfig, run_key
from autobackswap.methods.base import check_options
from autobackswap.pipeline import PipelineConfig
from autobackswap.recipes import RECIPE_DIR, load_recipe, recipe_names
from autobackswap.settings import resolve, section_kinds
from autobackswap.train.loop import TrainConfig

pytestmark = pytest.mark.usefixtures("torch_single_thread")

PART_A = "pretrained" in {f.name for f in fields(TrainConfig)} and "tv:efficientnet_b0" in BACKBONES


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_named_recipes_ship_with_the_package() -> None:
    assert {"cpu-small", "waterbirds-paper"} <= set(recipe_names())
    recipe = load_recipe("cpu-small")
    assert recipe["name"] == "cpu-small" and Path(recipe["path"]) == RECIPE_DIR / "cpu-small.toml"
    assert set(recipe) == {"name", "path", "experiment", "train", "pipeline", "paper"}


def test_cpu_small_is_exactly_the_defaults() -> None:
    plain, small = resolve("DATA"), resolve("DATA", load_recipe("cpu-small"))
    assert asdict(small.train) == asdict(plain.train)
    assert PipelineConfig.from_options(small.method_options) == PipelineConfig()
    assert {k: v for k, v in asdict(small).items() if k not in ("train", "method_options", "recipe")} == \
        {k: v for k, v in asdict(plain).items() if k not in ("train", "method_options", "recipe")}
    for spec in ("erm", "autobackswap", "oracle"):
        assert run_key(spec, 0, small, "digest") == run_key(spec, 0, plain, "digest")
    every = set(section_kinds()["pipeline"]) - {"labels", "detector_weights", "detector_device", "engine", "workers",
                                                  "ray_address"}  # no value in TOML for None; execution settings
    assert set(load_recipe("cpu-small")["pipeline"]) == every  # every setting is written out


def test_a_flag_overrides_a_recipe_value(tmp_path: Path) -> None:
    path = write(tmp_path / "mine.toml", '[train]\nepochs = 7\nlr = 1\n[pipeline]\nt_tight = 0.4\n[experiment]\nseeds = [2, 3]\n')
    cfg = resolve("DATA", load_recipe(path), {"train": {"epochs": 2}, "pipeline": {"t_tight": 0.3}})
    assert (cfg.train.epochs, cfg.train.lr, cfg.seeds, cfg.train.seed) == (2, 1.0, [2, 3], 2)
    assert isinstance(cfg.train.lr, float)  # an int where a float is expected becomes a float
    assert PipelineConfig.from_options(cfg.method_options).separation.t_tight == 0.3
    assert cfg.recipe["overridden"] == {"train.epochs": {"recipe": 7, "flag": 2},
                                        "pipeline.t_tight": {"recipe": 0.4, "flag": 0.3}}
    assert cfg.recipe["settings"]["train"] == {"epochs": 2, "lr": 1.0}
    assert resolve("DATA", load_recipe(path)).train.epochs == 7


def test_device_places_the_classifier_and_the_detector() -> None:
    cfg = resolve("DATA", None, {"experiment": {"methods": ["erm", "autobackswap"]}, "train": {"device": "cuda:1"}})
    assert cfg.method_options["detector_device"] == "cuda:1"  # the detector follows the classifier
    cfg = resolve("DATA", None, {"train": {"device": "cuda:1"}}, runs=["oracle"])  # runs: whose options to keep
    assert cfg.method_options["detector_device"] == "cuda:1"
    cfg = resolve("DATA", None, {"train": {"device": "cuda"}, "pipeline": {"detector_device": "cpu"}})
    assert (cfg.train.device, cfg.method_options["detector_device"]) == ("cuda", "cpu")
    cfg = resolve("DATA", None, {"pipeline": {"detector_device": "cpu"}}, device="mps")  # --device sets both
    assert (cfg.train.device, cfg.method_options["detector_device"]) == ("mps", "mps")


def test_recipe_and_device_options_no_listed_method_uses_are_left_out(tmp_path: Path) -> None:
    """A recipe's pipeline settings and the device's detector placement reach only the methods that use
    them, so ``--methods erm`` with a recipe or ``--device`` passes the fail-early check; an option the user
    gave explicitly is kept, and the check still rejects it when no listed method uses it."""
    path = tmp_path / "r.toml"
    path.write_text('[experiment]\nmethods = ["erm", "autobackswap"]\n[pipeline]\ngrid = 8\ndetector_epochs = 3\n')
    cfg = resolve("DATA", load_recipe(str(path)), device="cpu")
    assert cfg.method_options == {"grid": 8, "detector_epochs": 3, "detector_device": "cpu"}
    cfg = resolve("DATA", load_recipe(str(path)), {"experiment": {"methods": ["erm"]}}, device="cpu")
    assert cfg.method_options == {}
    check_options(cfg.methods, cfg.method_options, cfg.seeds)
    cfg = resolve("DATA", None, {"experiment": {"methods": ["erm"]}, "pipeline": {"t_tight": 0.3}}, device="cpu")
    assert cfg.method_options == {"t_tight": 0.3}
    with pytest.raises(ValueError, match="option 't_tight' is used by none of the methods erm"):
        check_options(cfg.methods, cfg.method_options, cfg.seeds)


@pytest.mark.parametrize("text, message", [
    ("[train]\nepoch = 3\n", "unknown key 'epoch' in [train]; valid keys: "),
    ("[pipeline]\ntight = 0.3\n", "unknown key 'tight' in [pipeline]; valid keys: "),
    ("[experiment]\nimage = 64\n", "unknown key 'image' in [experiment]; valid keys: "),
    ("[train]\nseed = 3\n", "unknown key 'seed' in [train]"),  # seeds are [experiment] seeds
    ("[train]\nepochs = \"50\"\n", "[train] epochs = '50': expected int"),
    ("[train]\nclass_weighted = 1\n", "[train] class_weighted = 1: expected bool"),
    ("[experiment]\nseeds = [0, \"1\"]\n", "[experiment] seeds = [0, '1']: expected list"),
    ("[model]\nname = \"x\"\n", "unknown section [model]; valid sections: experiment, train, pipeline, paper"),
    ("train = 3\n", "[train] must be a table of settings, got int"),
    ("[train\nepochs = 3\n", "not a valid TOML file"),
])
def test_a_bad_recipe_is_one_error_naming_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(DataError) as info:
        resolve("DATA", load_recipe(path))
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)
    assert "\n" not in str(info.value)


def test_an_unknown_recipe_name_or_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AutoBackSwapError, match=r"^unknown recipe 'waterbirds'; named recipes: cpu-small, demo, photos-cpu, waterbirds-paper"):
        load_recipe("waterbirds")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'nope.toml'}: recipe file not found")):
        load_recipe(tmp_path / "nope.toml")


def test_an_invalid_value_fails_before_any_data_is_read(tmp_path: Path) -> None:
    path = write(tmp_path / "r.toml", '[train]\noptimizer = "adam"\n')
    with pytest.raises(KeyError, match="unknown optimizer 'adam'"):
        resolve("DATA", load_recipe(path))
    with pytest.raises(ValueError, match="eval_crop=1.5"):
        resolve("DATA", None, {"experiment": {"eval_crop": 1.5}})


def test_waterbirds_paper_holds_the_reference_values() -> None:
    """The issue's list of the reference's settings (each cited in the file's comments)."""
    recipe = load_recipe("waterbirds-paper")
    assert recipe["experiment"] == {"image_size": 224, "methods": ["erm", "autobackswap", "oracle"], "seeds": [0, 1, 2],
                                    "label_budgets": [50, 200], "drop_minority": True, "eval_crop": 0.875}
    train = recipe["train"]
    assert (train["model"], train["pretrained"], train["optimizer"], train["momentum"], train["lr"],
            train["weight_decay"], train["batch_size"], train["epochs"], train["label_smoothing"],
            train["class_weighted"]) == ("tv:resnet50", "IMAGENET1K_V1", "sgd", 0.9, 1e-3, 1e-3, 32, 50, 0.1, True)
    pipe = recipe["pipeline"]
    assert (pipe["detector_backbone"], pipe["detector_weights"], pipe["grid"], pipe["label_threshold"],
            pipe["t_tight"], pipe["t_loose"], pipe["scale_min"], pipe["scale_max"], pipe["rotation"]) == \
        ("tv:efficientnet_b0", "IMAGENET1K_V1", 16, 0.25, 0.33, 0.9, 0.5, 1.5, 30.0)
    assert pipe["shift"] == pytest.approx(32 / 224, abs=1e-6)
    assert recipe["paper"]["figures"]["autobackswap:label_budget=200"] == "92.6 ± 0.8"
    assert recipe["paper"]["figures"]["autobackswap:label_budget=50"] == "89.3"
    kinds = section_kinds()
    unknown = {f"{s}.{k}" for s in ("experiment", "train", "pipeline") for k in recipe[s] if k not in kinds[s]}
    assert unknown <= {"train.pretrained"}  # the field that comes with the tv: / timm: models


@pytest.mark.skipif(not PART_A, reason="needs the tv: / timm: models and --pretrained (issue 15, part A)")
def test_waterbirds_paper_resolves() -> None:
    cfg = resolve("DATA", load_recipe("waterbirds-paper"))
    assert (cfg.image_size, cfg.train.model, cfg.train.optimizer, cfg.drop_minority) == (224, "tv:resnet50", "sgd", True)
    assert PipelineConfig.from_options(cfg.method_options).detector.backbone == "tv:efficientnet_b0"


def test_the_paper_column_comes_from_the_recipe() -> None:
    metrics = {"worst_group_accuracy": 0.9, "average_accuracy": 0.95, "groups": []}
    paper = {"source": "the paper", "metric": "worst_group_accuracy", "unit": "%",
             "figures": {"autobackswap:label_budget=200": "92.6 ± 0.8", "erm": "about 38"}}
    results = {"config": {"recipe": {"name": "r", "path": "r.toml", "paper": paper,
                                     "settings": {"train": {"epochs": 2}},
                                     "overridden": {"train.epochs": {"recipe": 50, "flag": 2}}}},
               "methods": {"erm": {"test": metrics}, "autobackswap:label_budget=200": {"test": metrics},
                           "oracle": {"test": metrics}}}
    header, rows = results_rows(results)
    assert header[-2:] == ["paper WGA (%)", "note"]
    assert [r[-2] for r in rows] == ["about 38", "92.6 ± 0.8", "-"]
    assert paper_caption(results) == "paper: the paper"
    assert "paper WGA (%)" not in results_rows(results, "val")[0]
    plain = {"config": {}, "methods": {"erm": {"test": metrics}}}
    assert results_rows(plain)[0][-2:] == ["separation s", "note"] and paper_caption(plain) == ""
    caption, _, recipe_table = recipe_rows(results)
    assert caption == "recipe r (r.toml)" and recipe_table == [["train.epochs", "2", "flag (recipe: 50)"]]


def test_cli_writes_the_resolved_recipe_into_config_json(tiny_synthetic: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write(tmp_path / "quick.toml", '[experiment]\nimage_size = 32\n[train]\nepochs = 3\nwidth = 8\n'
                                            '[paper]\nsource = "nowhere"\nmetric = "worst_group_accuracy"\n'
                                            '[paper.figures]\nerm = "12.3"\n')
    out = tmp_path / "run"
    code = main(["experiment", str(tiny_synthetic), "--recipe", str(recipe), "--epochs", "1", "--no-diagnostics",
                 "--out", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["image_size"], config["train"]["epochs"], config["train"]["width"]) == (32, 1, 8)
    assert config["recipe"]["overridden"] == {"train.epochs": {"recipe": 3, "flag": 1}}
    assert f"recipe {recipe} ({recipe}); overridden by flags: train.epochs" in stdout
    assert "paper WGA" in stdout and "12.3" in stdout and "paper: nowhere" in stdout
    assert "train.width" in (out / "report.md").read_text() and 'id="recipe"' in (out / "report.html").read_text()


def test_cli_bad_recipe_is_one_line(tiny_synthetic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path / "bad.toml", "[train]\nepoch = 3\n")
    for command in (["experiment", str(tiny_synthetic), "--out", str(tmp_path / "e")],
                    ["fit-detector", str(tiny_synthetic), "--out", str(tmp_path / "f")],
                    ["demo", "--out", str(tmp_path / "d")]):
        code = main([*command, "--recipe", str(bad)])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1
        assert f"error: {bad}: unknown key 'epoch' in [train]" in err
    code = main(["train", str(tiny_synthetic), "--out", str(tmp_path / "t"), "--recipe", "nope"])
    err = capsys.readouterr().err
    assert code == 2 and "error: unknown recipe 'nope'; named recipes: cpu-small, demo, photos-cpu, waterbirds-paper" in err


def test_experiment_config_knows_every_experiment_key() -> None:
    assert {"image_size", "methods", "seeds", "drop_minority", "eval_crop"} <= set(section_kinds()["experiment"])
    assert not {"data", "train", "method_options", "recipe"} & set(section_kinds()["experiment"])
    assert ExperimentConfig("x").recipe == {}


def test_the_demo_recipe_is_the_defaults_but_two_settings() -> None:
    """`demo` differs from the library defaults in exactly the classifier's width and the detector's epochs."""
    plain, demo = resolve("DATA"), resolve("DATA", load_recipe("demo"), runs=["autobackswap"])
    train = {k for k, v in asdict(demo.train).items() if asdict(plain.train)[k] != v}
    assert train == {"width"} and demo.train.width == 16
    pipe, default = PipelineConfig.from_options(demo.method_options).flat(), PipelineConfig().flat()
    assert {k for k, v in pipe.items() if default[k] != v} == {"detector_epochs"} and pipe["detector_epochs"] == 25


def test_demo_takes_the_demo_recipe_and_a_named_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[ExperimentConfig] = []

    def fake_run(out: Path, settings: ExperimentConfig, n_train: int) -> None:
        seen.append(settings)
        raise SystemExit(0)

    monkeypatch.setattr("autobackswap.demo.run_demo", fake_run)
    for extra in ([], ["--recipe", "cpu-small"], ["--epochs", "3"]):
        with pytest.raises(SystemExit):
            main(["demo", "--out", str(tmp_path / "d"), *extra])
    assert [s.recipe["name"] for s in seen] == ["demo", "cpu-small", "demo"]
    assert [(s.train.width, s.train.epochs) for s in seen] == [(16, 10), (24, 10), (16, 3)]
