"""Fail early, never fail silently: every input and option is checked before anything trains, options a
method does not use are errors, and a broken separation stops the run with its reason."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import pytest

from autobackswap.cli import build_parser, main
from autobackswap.data.layout import read_dataset
from autobackswap.experiment import ExperimentConfig, run_key
from autobackswap.methods import METHODS
from autobackswap.methods.base import make_method
from autobackswap.train.loop import TrainConfig

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SMALL = ["--image-size", "32", "--grid", "8", "--label-budget", "20", "--epochs", "1"]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    (line,) = [line for line in err.splitlines() if ": error: " in line]
    return line


@pytest.fixture
def no_labels(tiny_synthetic: Path, tmp_path: Path) -> Path:
    """The tiny set without segmentations/ (so without any patch labels)."""
    data = Path(shutil.copytree(tiny_synthetic, tmp_path / "data"))
    shutil.rmtree(data / "segmentations")
    return data


def test_missing_labels_fail_before_erm_trains(no_labels: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "experiment", no_labels, "--methods", "erm,autobackswap", *SMALL, "--out", run)
    assert code == 2
    assert "no patch labels given and no ground-truth mask to derive them from" in error_line(err)
    assert not (run / "models").exists() and not (run / "results.json").exists()  # nothing trained first


def test_a_bad_masks_csv_row_fails_before_erm_trains(tiny_synthetic: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    ds = read_dataset(tiny_synthetic)
    labels = tmp_path / "masks.csv"
    with open(labels, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["info", "mask"])
        writer.writerow([ds.split("train")[0].img_filename, "01" * 32])
        writer.writerow([ds.split("train")[1].img_filename, "0" * 257])  # 257 characters: no square grid
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "experiment", tiny_synthetic, "--methods", "erm,autobackswap", *SMALL,
                           "--labels", labels, "--out", run)
    assert code == 2
    line = error_line(err)
    assert str(labels) in line and "row 3" in line
    assert not (run / "models").exists()


@pytest.mark.parametrize(("spec", "message"), [
    ("erm:lr=0.1", "unknown option 'lr' for erm; valid options: none"),
    ("erm:foo=1", "unknown option 'foo' for erm"),
    ("erm:inpainter=telea", "unknown option 'inpainter' for erm"),
    ("groupdro:t_tight=0.3", "unknown option 't_tight' for groupdro; valid options: eta, on_no_minority"),
    ("autobackswap:bg_shuffle=ture", "autobackswap:bg_shuffle='ture': expected a boolean"),
])
def test_an_option_a_method_does_not_use_is_an_error(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_method(spec)


def test_a_stage_flag_no_listed_method_uses_is_an_error(tiny_synthetic: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "experiment", tiny_synthetic, "--methods", "erm,dfr", "--inpainter", "telea",
                           "--epochs", "1", "--image-size", "32", "--out", tmp_path / "run")
    assert code == 2
    assert error_line(err).endswith("option 'inpainter' is used by none of the methods erm, dfr; "
                                    "it applies to autobackswap, oracle, random_paste")
    assert not (tmp_path / "run").exists()


def test_stage_flags_reach_only_the_methods_that_use_them() -> None:
    """ERM's run key does not move with the pipeline's flags, so `--inpainter telea` reruns only autobackswap."""
    cfg = ExperimentConfig(data="DATA", methods=["erm", "autobackswap"], train=TrainConfig(epochs=1))
    flagged = ExperimentConfig(data="DATA", methods=["erm", "autobackswap"], train=TrainConfig(epochs=1),
                               method_options={"inpainter": "telea", "labels": "masks.csv"})
    assert run_key("erm", 0, cfg, "d") == run_key("erm", 0, flagged, "d")
    assert run_key("autobackswap", 0, cfg, "d") != run_key("autobackswap", 0, flagged, "d")
    assert make_method("erm", flagged.method_options).settings() == {}
    assert make_method("autobackswap", flagged.method_options).settings()["inpainter"] == "telea"


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_declares_its_options(name: str) -> None:
    cls = METHODS.get(name)
    assert isinstance(cls.option_names(), frozenset)
    method = cls()
    assert set(method.settings()) <= set(cls.option_names()) | {"scale_min", "scale_max", "rotation", "shift"}


def test_an_empty_methods_or_seeds_list_is_an_error(tiny_synthetic: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "experiment", tiny_synthetic, "--methods", ",", "--out", tmp_path / "run")
    assert code == 2 and "no method to run" in error_line(err)
    code, _, err = run_cli(capsys, "experiment", tiny_synthetic, "--seeds", ",", "--out", tmp_path / "run")
    assert code == 2 and "no seed to run" in error_line(err)


# ----------------------------------------------------------------------------- separation health check
def test_a_separation_that_keeps_every_image_stops_with_its_reason(tiny_synthetic: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """t_tight = 0: no tight foreground anywhere, so every image would train as it is (ERM in disguise)."""
    args = ["separate", tiny_synthetic, "--out", tmp_path / "run", "--image-size", "32", "--grid", "8",
            "--label-budget", "20", "--detector-epochs", "2", "--t-tight", "0", "--refine", "nearest"]
    code, _, err = run_cli(capsys, *args)
    assert code == 2
    line = error_line(err)
    assert "the separation looks broken: 40 of 40 training images (100%) would train unswapped" in line
    assert "contact_sheet.png" in line and "--allow-bad-separation" in line
    code, out, err = run_cli(capsys, *args, "--allow-bad-separation")
    assert code == 0, err
    assert '"separation_warning": "40 of 40 training images (100%) would train unswapped' in out


def test_the_health_check_reads_counts_and_agreement() -> None:
    from autobackswap.pipeline import PipelineConfig, separation_problem

    cfg = PipelineConfig()
    ok = {"separation_counts": {"ok": 90, "no_fg": 5, "all_fg": 5}, "labelled_agreement": 0.9}
    assert separation_problem(ok, 100, cfg) is None
    many = {**ok, "separation_counts": {"ok": 70, "no_fg": 0, "all_fg": 30}}
    assert separation_problem(many, 100, cfg).startswith("30 of 100 training images (30%) would train unswapped")
    assert separation_problem(many, 100, PipelineConfig.from_options({"max_unswapped": 0.5})) is None
    disagree = {**ok, "labelled_agreement": 0.55}
    assert "balanced accuracy 0.55 (< 0.7)" in separation_problem(disagree, 100, cfg)


# ----------------------------------------------------------------------------- help
def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from autobackswap import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"autobackswap {__version__}"


def test_commands_show_only_the_options_they_use() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    fit = {o for a in sub.choices["fit-detector"]._actions for o in a.option_strings}
    assert {"--label-budget", "--labels", "--grid", "--detector-epochs"} <= fit
    assert not {"--p", "--bg-shuffle", "--bg-only", "--distractor", "--inpainter", "--hole"} & fit
    experiment = {o for a in sub.choices["experiment"]._actions for o in a.option_strings}
    assert {"--detector-epochs", "--allow-bad-separation", "--inpainter", "--p"} <= experiment


def test_every_option_says_its_default() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name, parser in sub.choices.items():
        for action in parser._actions:
            if action.dest == "help":
                continue
            assert action.help, (name, action.dest)
            if action.option_strings and action.default not in (None, False, [], ""):
                assert "default" in action.help, (name, action.option_strings)
    methods_help = next(a.help for a in sub.choices["experiment"]._actions if a.dest == "methods")
    assert all(m in methods_help for m in METHODS.names()) and "(default erm)" in methods_help


# ----------------------------------------------------------------------------- logs
def test_progress_bars_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from autobackswap import progress

    monkeypatch.delenv("AUTOBACKSWAP_PROGRESS", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert not progress.enabled() and progress.progress(range(3)).disable
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert progress.enabled()
    monkeypatch.setenv("RANK", "1")  # a torchrun rank other than 0
    assert not progress.enabled()
    monkeypatch.setenv("AUTOBACKSWAP_PROGRESS", "1")
    assert progress.enabled()


def test_a_redirected_run_logs_phases_without_bar_frames(tiny_synthetic: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="autobackswap")
    code, out, err = run_cli(capsys, "experiment", tiny_synthetic, "--methods", "erm,dfr", "--epochs", "2",
                             "--image-size", "32", "--out", tmp_path / "run", "--no-diagnostics")
    assert code == 0, err
    assert "\r" not in err and "\r" not in out
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("plan: 2 method(s) x 1 seed(s) on 40 train / 16 val / 16 test images at 32 px, 2 epochs each; "
                            "dfr seed 0 will be skipped: val has no image of group(s)") for m in messages)
    assert "training small_resnet: 40 images, 2 epochs of 1 steps (batch 128)" in messages
    assert any(m.startswith("done in ") and "1 run(s) trained, 0 reused from an earlier run, 1 skipped" in m
               for m in messages)
