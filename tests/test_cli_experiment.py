"""End-to-end CLI tests on tiny synthetic data, and one clear error line for bad input."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autobackswap.cli import PARSERS, main
from autobackswap.data.groups import group_counts
from autobackswap.data.layout import load_images, read_dataset
from autobackswap.evaluate.metrics import group_metrics
from autobackswap.train.loop import load_classifier, predict_logits

pytestmark = pytest.mark.usefixtures("torch_single_thread")

TRAIN_ARGS = ["--image-size", "32", "--epochs", "1"]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def erm_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``make-synthetic`` then ``experiment --methods erm`` through the CLI, once for this module."""
    base = tmp_path_factory.mktemp("cli_e2e")
    data, run = base / "data", base / "run"
    out = io.StringIO()  # capsys is function-scoped; capture stdout by hand
    with contextlib.redirect_stdout(out):
        code_synth = main(["make-synthetic", str(data), "--n-train", "40", "--n-val", "16", "--n-test", "16",
                           "--image-size", "32", "--seed", "0"])
        code_exp = main(["experiment", str(data), "--methods", "erm", "--seeds", "0", *TRAIN_ARGS, "--out", str(run),
                         "--also-test", f"again={data}"])
    return {"data": data, "run": run, "codes": (code_synth, code_exp), "stdout": out.getvalue(),
            "results": json.loads((run / "results.json").read_text())}


def test_make_synthetic_and_experiment_exit_zero(erm_run: dict[str, Any]) -> None:
    assert erm_run["codes"] == (0, 0)
    assert f"wrote synthetic benchmark to {erm_run['data']}" in erm_run["stdout"]
    assert "erm" in erm_run["stdout"] and "WGA" in erm_run["stdout"]
    assert str(erm_run["run"] / "results.json") in erm_run["stdout"]
    ds = read_dataset(erm_run["data"])
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [40, 16, 16]


def test_results_schema(erm_run: dict[str, Any]) -> None:
    results = erm_run["results"]
    assert results["dataset"] == str(erm_run["data"])
    assert isinstance(results["config"], dict)
    erm = results["methods"]["erm"]
    assert isinstance(erm["train_seconds"], float) and erm["train_seconds"] > 0
    test = erm["test"]
    assert isinstance(test["groups"], list) and len(test["groups"]) == 4
    for group in test["groups"]:
        assert {"y", "place", "n", "accuracy"} <= set(group)
        assert isinstance(group["y"], int) and isinstance(group["place"], int) and isinstance(group["n"], int)
        correct = group["accuracy"] * group["n"]
        assert correct == pytest.approx(round(correct))  # a count of correct images over n
    groups = test["groups"]
    assert test["worst_group_accuracy"] == min(g["accuracy"] for g in groups)
    assert test["average_accuracy"] == pytest.approx(sum(g["accuracy"] * g["n"] for g in groups) / sum(g["n"] for g in groups))
    assert "val" in erm and "worst_group_accuracy" in erm["val"]


def test_results_values_are_consistent(erm_run: dict[str, Any]) -> None:
    erm = erm_run["results"]["methods"]["erm"]
    test = erm["test"]
    groups = test["groups"]
    assert {(g["y"], g["place"]) for g in groups} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert [g["n"] for g in groups] == [4, 4, 4, 4]  # balanced test split of 16
    assert sum(g["n"] for g in groups) == 16
    accs = [g["accuracy"] for g in groups]
    assert test["worst_group_accuracy"] == min(accs)
    assert test["average_accuracy"] == pytest.approx(sum(g["n"] * g["accuracy"] for g in groups) / 16)
    assert all(a * 4 == round(a * 4) for a in accs)  # k correct out of 4
    # train correlation 1.0: majority groups are (0, 0) and (1, 1)
    major = [g for g in groups if g["y"] == g["place"]]
    assert test["majority_accuracy"] == pytest.approx(np.mean([g["accuracy"] for g in major]))
    [run] = erm["runs"]
    assert run["seed"] == 0 and run["best_epoch"] == 1 and len(run["history"]) == 1
    assert erm["train_seconds"] == run["train_seconds"]
    assert run["test"]["worst_group_accuracy"] == test["worst_group_accuracy"]


def test_also_test_scores_the_same_models_on_another_test_split(erm_run: dict[str, Any]) -> None:
    """--also-test again=DATA scores each model on DATA's test split: here the same split, so the same figures."""
    erm = erm_run["results"]["methods"]["erm"]
    assert erm["test:again"] == erm["test"]
    assert erm["runs"][0]["test:again"] == erm["runs"][0]["test"]
    assert erm_run["results"]["config"]["also_test"] == {"again": str(erm_run["data"])}
    assert "test split of again" in erm_run["stdout"]
    assert "Results on the test split of again" in (erm_run["run"] / "report.md").read_text()
    assert 'id="results-table-again"' in (erm_run["run"] / "report.html").read_text()


def test_also_test_with_other_classes_is_one_clear_error(tiny_synthetic: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other"
    shutil.copytree(tiny_synthetic, other)
    meta = other / "metadata.csv"
    lines = meta.read_text().splitlines()
    header = lines[0].split(",")
    y = header.index("y")
    rows = [line.split(",") for line in lines[1:]]
    for row in rows:
        row[y] = str(int(row[y]) + 5)
    meta.write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")
    code, out, err = run_cli(capsys, "experiment", tiny_synthetic, "--methods", "erm", *TRAIN_ARGS,
                             "--out", tmp_path / "run", "--also-test", f"x={other}")
    assert code != 0
    assert "--also-test x" in err and "not the training classes" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "results.json").exists()


def test_config_saved(erm_run: dict[str, Any]) -> None:
    config = json.loads((erm_run["run"] / "config.json").read_text())
    assert config == erm_run["results"]["config"]
    assert config["data"] == str(erm_run["data"])
    assert config["methods"] == ["erm"] and config["seeds"] == [0] and config["image_size"] == 32
    assert config["train"]["epochs"] == 1 and config["train"]["model"] == "small_resnet"


def test_saved_model_reproduces_reported_test_metrics(erm_run: dict[str, Any]) -> None:
    model, payload = load_classifier(erm_run["run"] / "models" / "erm_seed0.pt")
    assert payload["image_size"] == 32 and payload["extra"]["method"] == "erm"
    ds = read_dataset(erm_run["data"])
    test, train = ds.split("test"), ds.split("train")
    pred = np.asarray(payload["classes"])[predict_logits(model, load_images(test, 32)).argmax(1).numpy()]
    metrics = group_metrics(pred, [r.y for r in test], [r.place for r in test],
                            group_counts([r.y for r in train], [r.place for r in train]))
    reported = erm_run["results"]["methods"]["erm"]["test"]
    assert metrics["worst_group_accuracy"] == reported["worst_group_accuracy"]
    assert [g["accuracy"] for g in metrics["groups"]] == [g["accuracy"] for g in reported["groups"]]


def test_train_then_evaluate(tiny_synthetic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    code, out, _ = run_cli(capsys, "train", tiny_synthetic, "--out", run, "--seed", "1", *TRAIN_ARGS)
    assert code == 0
    assert "trained erm" in out and str(run / "model.pt") in out
    trained = json.loads((run / "train.json").read_text())
    assert trained["config"]["train"]["seed"] == 1

    model, payload = load_classifier(run / "model.pt")
    assert payload["config"]["seed"] == 1 and payload["num_classes"] == 2 and payload["image_size"] == 32

    # evaluate on val reproduces the val figures computed from the in-memory model during `train`
    code, out, _ = run_cli(capsys, "evaluate", tiny_synthetic, "--checkpoint", run / "model.pt", "--split", "val",
                           "--out", tmp_path / "val.json")
    assert code == 0 and "worst_group_accuracy" in out
    val = json.loads((tmp_path / "val.json").read_text())
    assert val == trained["val"]

    # evaluate on test matches predictions of the reloaded checkpoint
    code, out, _ = run_cli(capsys, "evaluate", tiny_synthetic, "--checkpoint", run / "model.pt",
                           "--out", tmp_path / "test.json")
    assert code == 0
    reported = json.loads((tmp_path / "test.json").read_text())
    ds = read_dataset(tiny_synthetic)
    test = ds.split("test")
    images = load_images(test, 32)
    logits = predict_logits(model, images)
    again, _ = load_classifier(run / "model.pt")
    assert np.array_equal(logits.numpy(), predict_logits(again, images).numpy())
    pred = np.asarray(payload["classes"])[logits.argmax(1).numpy()]
    assert [g["accuracy"] for g in reported["groups"]] == [
        g["accuracy"] for g in group_metrics(pred, [r.y for r in test], [r.place for r in test])["groups"]
    ]
    assert sum(g["n"] for g in reported["groups"]) == 16


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: autobackswap {command}")
    assert PARSERS[command][0].split()[0].lower() in out.lower()  # the description is shown


def test_top_level_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("make-synthetic", "experiment", "train", "evaluate"):
        assert command in out


# ----------------------------------------------------------------------------- bad input
def _copy(tiny_synthetic: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_synthetic, tmp_path / "data"))


def _bad_row(data: Path) -> tuple[Path, str]:
    meta = data / "metadata.csv"
    lines = meta.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 2)[0] + ",9,0"  # split 9 on line 4
    meta.write_text("\n".join(lines) + "\n")
    return meta, "row 4"


def _truncated(data: Path) -> tuple[Path, str]:
    first = read_dataset(data).records[0]
    first.path.write_bytes(first.path.read_bytes()[:40])
    return first.path, f"row {first.row}"


def _missing_image(data: Path) -> tuple[Path, str]:
    record = read_dataset(data).records[5]
    record.path.unlink()
    return data / "metadata.csv", f"row {record.row}"


def _no_metadata(data: Path) -> tuple[Path, str]:
    (data / "metadata.csv").unlink()
    return data / "metadata.csv", "not found"


BAD_DATA = {"bad_row": _bad_row, "truncated_image": _truncated, "missing_image": _missing_image,
            "no_metadata": _no_metadata}


def assert_one_error_line(err: str, command: str, *fragments: str | Path) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"autobackswap {command}: error: ")
    for fragment in fragments:
        assert str(fragment) in lines[0]


@pytest.mark.parametrize("command", ["experiment", "train"])
@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_data_gives_one_clear_line(
    tiny_synthetic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, case: str
) -> None:
    data = _copy(tiny_synthetic, tmp_path)
    path, where = BAD_DATA[case](data)
    run = tmp_path / "run"
    extra = ["--methods", "erm"] if command == "experiment" else []
    code, out, err = run_cli(capsys, command, data, *extra, *TRAIN_ARGS, "--out", run)
    assert code != 0
    assert out == ""
    assert_one_error_line(err, command, path, where)
    assert not (run / "results.json").exists() and not (run / "model.pt").exists()  # nothing half-written


def test_unknown_method_lists_valid_names(tiny_synthetic: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "experiment", tiny_synthetic, "--methods", "erm,nope", "--out", tmp_path / "run")
    assert code != 0
    assert_one_error_line(err, "experiment", "unknown method 'nope'", "valid names:", "erm")


def test_evaluate_bad_checkpoint(tiny_synthetic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    code, _, err = run_cli(capsys, "evaluate", tiny_synthetic, "--checkpoint", bad)
    assert code != 0
    assert_one_error_line(err, "evaluate", bad)
    code, _, err = run_cli(capsys, "evaluate", tiny_synthetic, "--checkpoint", tmp_path / "none.pt")
    assert code != 0
    assert_one_error_line(err, "evaluate", tmp_path / "none.pt", "not found")


def test_bad_input_in_a_real_process(tmp_path: Path) -> None:
    """Through ``python -m autobackswap`` with the real logging set-up: stderr is one line, exit code 2."""
    proc = subprocess.run([sys.executable, "-m", "autobackswap", "experiment", str(tmp_path / "missing"),
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert_one_error_line(proc.stderr, "experiment", tmp_path / "missing", "dataset folder not found")
