"""CLI misuse, table-driven: every numeric option at 0, negative and absurd, every path option at a file,
a folder, a read-only folder, a missing file and a file of the wrong kind. Each case must exit 2 with one
line on stderr that names the option or the file, print nothing else and write nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from autobackswap.cli import main
from autobackswap.data.labelstore import LabelStore
from autobackswap.data.layout import read_dataset
from autobackswap.train.loop import TrainConfig, save_classifier
from autobackswap.train.models import create_model

pytestmark = pytest.mark.usefixtures("torch_single_thread")

BIG = str(10**12)
TRAIN = ["--image-size", "32", "--epochs", "1"]

# (command and its required arguments, [(option, bad value, a fragment the error line must hold), ...])
# "{data}" is a valid dataset, "{out}" a fresh output path. Values valid at 0 (a seed, a weight decay, a
# threshold) are tested at their negative and absurd values only.
NUMERIC: list[tuple[list[str], list[tuple[str, str, str]]]] = [
    (["train", "{data}", "--out", "{out}"], [
        ("--image-size", "0", "image_size"), ("--image-size", "-5", "image_size"), ("--image-size", "100000", "image_size"),
        ("--epochs", "0", "epochs"), ("--epochs", "-3", "epochs"), ("--epochs", BIG, "epochs"),
        ("--batch-size", "0", "batch_size"), ("--batch-size", "-1", "batch_size"), ("--batch-size", BIG, "batch_size"),
        ("--lr", "0", "lr"), ("--lr", "-1", "lr"), ("--lr", "1e30", "lr"), ("--lr", "nan", "lr"),
        ("--weight-decay", "-1", "weight_decay"), ("--weight-decay", "1e30", "weight_decay"),
        ("--width", "0", "width"), ("--width", "-1", "width"), ("--width", BIG, "width"),
        ("--ema", "-0.5", "ema"), ("--ema", "1", "ema"), ("--ema", "1e30", "ema"),
        ("--seed", "-1", "seed"), ("--seed", str(2**64), "seed"),
        ("--label-budget", "0", "label_budget"), ("--label-budget", "-1", "label_budget"),
        ("--label-budget", BIG, "label_budget"),
        ("--grid", "0", "grid"), ("--grid", "-1", "grid"), ("--grid", BIG, "grid"),
        ("--t-tight", "-1", "t_tight"), ("--t-tight", "5", "t_tight"), ("--t-tight", "nan", "t_tight"),
        ("--t-loose", "-1", "t_loose"), ("--t-loose", "5", "t_loose"),
        ("--hole-dilate", "-1", "hole_dilate"), ("--hole-dilate", BIG, "hole_dilate"),
        ("--p", "-1", "p is a"), ("--p", "2", "p is a"),
        ("--bg-only", "-1", "bg_only"), ("--bg-only", "1e30", "bg_only"),
        ("--distractor", "-1", "distractor"), ("--distractor", "2", "distractor"),
        ("--workers", "-1", "workers"), ("--workers", BIG, "workers"),
    ]),
    (["experiment", "{data}", "--out", "{out}", *TRAIN], [
        ("--seeds", ",", "seeds"), ("--seeds", "-1", "seed"), ("--seeds", str(2**64), "seed"),
        ("--methods", ",", "methods"), ("--label-budgets", "0", "label_budgets"),
        ("--label-budgets", "-5", "label_budgets"), ("--label-budgets", BIG, "label_budgets"),
        ("--epochs", "0", "epochs"), ("--image-size", "0", "image_size"), ("--t-tight", "5", "t_tight"),
        ("--methods", "autobackswap:p=2", "p is a"), ("--methods", "autobackswap:bg_shuffle=ture", "bg_shuffle"),
        ("--methods", "autobackswap:t_loose=-1", "t_loose"), ("--methods", "groupdro:nope=1", "nope"),
    ]),
    (["fit-detector", "{data}", "--out", "{out}"], [
        ("--image-size", "0", "image_size"), ("--image-size", "100000", "image_size"),
        ("--detector-epochs", "0", "detector epochs"), ("--detector-epochs", "-1", "detector epochs"),
        ("--detector-epochs", BIG, "detector epochs"), ("--grid", "0", "grid"), ("--seed", "-1", "seed"),
        ("--label-budget", "0", "label_budget"),
    ]),
    (["separate", "{data}", "--out", "{out}", "--oracle"], [
        ("--image-size", "0", "image_size"), ("--image-size", "-5", "image_size"),
        ("--t-tight", "5", "t_tight"), ("--t-loose", "-1", "t_loose"), ("--seed", "-1", "seed"),
        ("--workers", "-1", "workers"), ("--hole-dilate", "-1", "hole_dilate"),
    ]),
    (["make-synthetic", "{out}"], [
        ("--n-train", "0", "n_train"), ("--n-train", "-10", "n_train"), ("--n-train", BIG, "n_train"),
        ("--n-val", "0", "n_val"), ("--n-val", "-1", "n_val"), ("--n-test", "0", "n_test"), ("--n-test", "3", "n_test"),
        ("--n-test", BIG, "n_test"), ("--correlation", "-1", "correlation"), ("--correlation", "2", "correlation"),
        ("--image-size", "0", "image_size"), ("--image-size", "100000", "image_size"), ("--seed", "-1", "seed"),
    ]),
    (["make-photo-benchmark", "{out}", "--no-fetch", "--assets", "{out}_assets"], [
        ("--n-train", "0", "n_train"), ("--n-train", "-10", "n_train"), ("--n-test", "0", "n_test"),
        ("--correlation", "2", "correlation"), ("--image-size", "0", "image_size"), ("--seed", "-1", "seed"),
    ]),
    (["demo", "--out", "{out}"], [
        ("--n-train", "0", "n_train"), ("--n-train", "-1", "n_train"), ("--epochs", "0", "epochs"),
        ("--epochs", "-3", "epochs"), ("--image-size", "0", "image_size"), ("--image-size", "100000", "image_size"),
        ("--seeds", ",", "seeds"), ("--seeds", "-1", "seed"),
    ]),
    (["label", "{data}", "--db", "{out}.sqlite"], [
        ("--grid", "0", "grid"), ("--grid", "-1", "grid"), ("--grid", BIG, "grid"), ("--budget", "0", "budget"), ("--budget", "-1", "budget"),
        ("--assist-after", "0", "assist_after"), ("--assist-after", "-1", "assist_after"),
        ("--image-size", "0", "image_size"), ("--image-size", "100000", "image_size"),
        ("--port", "-1", "--port"), ("--port", "70000", "--port"),
    ]),
    (["diagnose", "{out}"], [("--seed", "-1", "seed")]),
]

NUMERIC_CASES = [pytest.param(base, opt, value, fragment, id=f"{base[0]}{opt}={value}")
                 for base, options in NUMERIC for opt, value, fragment in options]

def argv_for(command: str, out: str) -> list[str]:
    """A valid invocation of ``command`` writing to ``out``."""
    return {"train": ["train", "{data}", "--out", out, *TRAIN],
            "experiment": ["experiment", "{data}", "--out", out, *TRAIN],
            "fit-detector": ["fit-detector", "{data}", "--out", out],
            "separate": ["separate", "{data}", "--out", out, "--oracle"],
            "make-synthetic": ["make-synthetic", out, "--n-train", "8", "--n-val", "4", "--n-test", "4"],
            "make-photo-benchmark": ["make-photo-benchmark", out, "--no-fetch", "--assets", "{missing}"],
            "demo": ["demo", "--out", out, "--n-train", "8", "--epochs", "1"]}[command]


# (argv, the fragment the error line must hold). Path tokens: {data} a valid dataset, {out} a fresh path,
# {file} a text file, {dir} an empty folder, {ro} a read-only folder, {missing} a path that does not exist,
# {garbage} binary bytes, {list_pt} a torch file holding a list, {classifier} a classifier checkpoint,
# {detector_kind} a torch file claiming to be a detector, {truncated} a checkpoint cut in half,
# {bad_header} a CSV without info,mask,
# {latin1} a CSV that is not UTF-8, {results_list} a run folder whose results.json is a list.
PATHS: list[tuple[str, list[str], str]] = [
    # the dataset folder
    *[(f"{cmd}-data-{kind}", [cmd, token, *rest], token)
      for cmd, rest in (("train", ["--out", "{out}", *TRAIN]), ("experiment", ["--out", "{out}", *TRAIN]),
                        ("fit-detector", ["--out", "{out}"]), ("separate", ["--out", "{out}", "--oracle"]),
                        ("evaluate", ["--checkpoint", "{classifier}"]), ("label", ["--db", "{out}.sqlite"]))
      for kind, token in (("file", "{file}"), ("dir", "{dir}"), ("missing", "{missing}"), ("wrong", "{wrong_data}"))],
    # output folders
    *[(f"{cmd}-out-{kind}", [*argv_for(cmd, token)], token)
      for cmd in ("train", "experiment", "fit-detector", "separate", "make-synthetic", "make-photo-benchmark", "demo")
      for kind, token in (("file", "{file}"), ("ro", "{ro}"), ("in-ro", "{ro}/run"), ("under-file", "{file}/run"))],
    # weights, labels, checkpoints
    *[(f"{cmd}-model-weights-{kind}", [cmd, "{data}", "--out", "{out}", *TRAIN, "--model-weights", token], token)
      for cmd in ("train", "experiment")
      for kind, token in (("missing", "{missing}"), ("dir", "{dir}"), ("text", "{file}"), ("garbage", "{garbage}"),
                          ("list", "{list_pt}"))],
    *[(f"{cmd}-labels-{kind}", [cmd, "{data}", "--out", "{out}", *extra, "--labels", token], token)
      for cmd, extra in (("fit-detector", []), ("separate", []), ("experiment", [*TRAIN, "--methods", "autobackswap"]),
                         ("train", [*TRAIN, "--method", "autobackswap"]))
      for kind, token in (("missing", "{missing}"), ("dir", "{dir}"), ("garbage-sqlite", "{garbage}.sqlite"),
                          ("text-sqlite", "{file}.sqlite"), ("bad-header", "{bad_header}"), ("latin1", "{latin1}"))],
    *[(f"separate-detector-{kind}", ["separate", "{data}", "--out", "{out}", "--detector", token], token)
      for kind, token in (("missing", "{missing}"), ("dir", "{dir}"), ("text", "{file}"), ("garbage", "{garbage}"),
                          ("classifier", "{classifier}"), ("list", "{list_pt}"), ("truncated", "{truncated}"))],
    *[(f"evaluate-checkpoint-{kind}", ["evaluate", "{data}", "--checkpoint", token], token)
      for kind, token in (("missing", "{missing}"), ("dir", "{dir}"), ("text", "{file}"), ("garbage", "{garbage}"),
                          ("detector", "{detector_kind}"), ("list", "{list_pt}"), ("truncated", "{truncated}"))],
    *[(f"evaluate-out-{kind}", ["evaluate", "{data}", "--checkpoint", "{classifier}", "--out", token], token)
      for kind, token in (("dir", "{dir}"), ("in-ro", "{ro}/m.json"), ("under-file", "{file}/m.json"))],
    *[(f"experiment-also-test-{kind}", ["experiment", "{data}", "--out", "{out}", *TRAIN, "--also-test", token], token)
      for kind, token in (("missing", "{missing}"), ("file", "{file}"), ("dir", "{dir}"))],
    # the labelling app's files
    *[(f"label-db-{kind}", ["label", "{data}", "--db", token, "--no-assist"], token)
      for kind, token in (("dir", "{dir}"), ("in-ro", "{ro}/labels.sqlite"), ("garbage", "{garbage}"),
                          ("under-file", "{file}/labels.sqlite"))],
    *[(f"label-import-{kind}", ["label", "{data}", "--db", "{out}.sqlite", "--import", token], token)
      for kind, token in (("missing", "{missing}"), ("dir", "{dir}"), ("garbage", "{garbage}"),
                          ("bad-header", "{bad_header}"), ("latin1", "{latin1}"))],
    ("label-export-missing-store", ["label", "{data}", "--db", "{missing}", "--export", "{out}.csv"], "{missing}"),
    ("label-export-in-ro", ["label", "{data}", "--db", "{store}", "--export", "{ro}/masks.csv"], "{ro}/masks.csv"),
    ("label-export-to-dir", ["label", "{data}", "--db", "{store}", "--export", "{dir}"], "{dir}"),
    # diagnose
    *[(f"diagnose-run-{kind}", ["diagnose", token], token)
      for kind, token in (("missing", "{missing}"), ("file", "{file}"), ("dir", "{dir}"), ("list", "{results_list}"))],
]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("misuse_checkpoints")
    cfg = TrainConfig(width=2)
    save_classifier(base / "classifier.pt", create_model("small_resnet", 2, width=2), cfg, 2, [0, 1], 32)
    torch.save([1, 2, 3], base / "list.pt")
    whole = (base / "classifier.pt").read_bytes()
    (base / "truncated.pt").write_bytes(whole[: len(whole) // 2])  # a checkpoint cut short by a crash
    torch.save({"kind": "detector", "config": {"nope": 1}}, base / "detector_kind.pt")
    return {"classifier": base / "classifier.pt", "list_pt": base / "list.pt", "detector_kind": base / "detector_kind.pt",
            "truncated": base / "truncated.pt"}


@pytest.fixture
def tokens(tmp_path: Path, tiny_synthetic: Path, checkpoints: dict[str, Path],
           make_readonly: Callable[[Path], Path]) -> dict[str, str]:
    (tmp_path / "a_file.txt").write_text("just text\n")
    (tmp_path / "a_file.txt.sqlite").write_text("just text\n")
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "garbage.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "garbage.bin.sqlite").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "bad_header.csv").write_text("id,label\nx,1\n")
    (tmp_path / "latin1.csv").write_bytes("info,mask\ncaf\xe9,0101\n".encode("latin-1"))
    (tmp_path / "wrong_data").mkdir()
    (tmp_path / "wrong_data" / "metadata.csv").write_bytes(bytes(range(256)))
    (tmp_path / "results_list").mkdir()
    (tmp_path / "results_list" / "results.json").write_text("[1, 2]")
    (tmp_path / "ro").mkdir()
    make_readonly(tmp_path / "ro")
    LabelStore(tmp_path / "store.sqlite", grid=4).put(read_dataset(tiny_synthetic).split("train")[0].img_filename, "1" * 16)
    return {"data": str(tiny_synthetic), "out": str(tmp_path / "out"), "file": str(tmp_path / "a_file.txt"),
            "dir": str(tmp_path / "empty_dir"), "ro": str(tmp_path / "ro"), "missing": str(tmp_path / "missing"),
            "garbage": str(tmp_path / "garbage.bin"), "bad_header": str(tmp_path / "bad_header.csv"),
            "latin1": str(tmp_path / "latin1.csv"), "wrong_data": str(tmp_path / "wrong_data"),
            "results_list": str(tmp_path / "results_list"), "store": str(tmp_path / "store.sqlite"),
            **{k: str(v) for k, v in checkpoints.items()}}


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``roots``: (size, mtime) of each file, (0, 0) for a folder (whose mtime
    the output-folder check, a temp file made and removed at once, may touch)."""
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            out.update({os.path.join(dirpath, name): (0, 0) for name in dirnames})
            for name in filenames:
                st = os.lstat(os.path.join(dirpath, name))
                out[os.path.join(dirpath, name)] = (st.st_size, st.st_mtime_ns)
    return out


def assert_misuse(argv: list[str], fragment: str, tmp_path: Path, data: Path,
                  capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(tmp_path, data)
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (argv, out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert fragment in lines[0], (fragment, lines[0])
    assert out == ""
    assert "Traceback" not in err
    assert snapshot(tmp_path, data) == before  # nothing written, nothing created


@pytest.mark.timeout(120)  # a case that is wrongly accepted must not train or serve for long
@pytest.mark.parametrize(("base", "option", "value", "fragment"), NUMERIC_CASES)
def test_bad_number(base: list[str], option: str, value: str, fragment: str, tokens: dict[str, str], tmp_path: Path,
                    tiny_synthetic: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [t.format(**tokens) for t in base] + [option, value]
    assert_misuse(argv, fragment, tmp_path, tiny_synthetic, capsys)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("argv", "fragment"), [pytest.param(a, f, id=i) for i, a, f in PATHS])
def test_bad_path(argv: list[str], fragment: str, tokens: dict[str, str], tmp_path: Path, tiny_synthetic: Path,
                  capsys: pytest.CaptureFixture[str]) -> None:
    assert_misuse([t.format(**tokens) for t in argv], fragment.format(**tokens), tmp_path, tiny_synthetic, capsys)


@pytest.mark.parametrize("argv", [
    ["train", "{data}", "--out", "{out}", "--epochs", "0"],
    ["experiment", "{data}", "--out", "{ro}", "--epochs", "1"],
    ["separate", "{data}", "--out", "{out}", "--detector", "{file}"],
    ["label", "{data}", "--db", "{garbage}", "--no-assist"],
], ids=["epochs", "ro-out", "detector", "db"])
def test_one_line_in_a_real_process(argv: list[str], tokens: dict[str, str], tmp_path: Path) -> None:
    """Outside pytest, logging goes to stderr too: a refused command still prints a single line."""
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-m", "autobackswap", *[t.format(**tokens) for t in argv]], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stdout == ""
