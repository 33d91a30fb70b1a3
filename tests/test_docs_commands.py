"""Every command written in the README and in docs/ parses: ``autobackswap ...`` against the CLI's parser,
``.venv/bin/python benchmarks/X.py ...`` against the script's own parser (stopped before it runs), so a
documented command cannot rot. The README's Python example runs for real on the tiny synthetic set."""

from __future__ import annotations

import argparse
import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from autobackswap.cli import build_parser
from autobackswap.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RECORDER = r"""
record() { printf '%s\0' "$@" >> "$LOG"; printf '\n\0' >> "$LOG"; }
autobackswap() { record autobackswap "$@"; }
pyrec() { record python "$@"; }
make() { :; }
"""


def fenced(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)


def documented_commands() -> list[tuple[str, list[str]]]:
    """``(where, argv)`` of every command in the docs' bash blocks, expanded by bash itself (variables,
    braces, line continuations, comments) with the commands replaced by recorders."""
    found: list[tuple[str, list[str]]] = []
    for path in DOCS:
        for k, block in enumerate(fenced(path, "bash")):
            script = block.replace(".venv/bin/python ", "pyrec ").replace(".venv/bin/autobackswap ", "autobackswap ")
            log = ROOT / ".pytest_docs_commands.log"
            log.unlink(missing_ok=True)
            subprocess.run(["bash", "-c", RECORDER + script], env={"LOG": str(log), "PATH": "/usr/bin:/bin"},
                           check=False, capture_output=True, cwd=ROOT)
            if not log.exists():
                continue
            words = log.read_bytes().decode().split("\0")
            log.unlink()
            argv: list[str] = []
            for word in words:
                if word == "\n":
                    found.append((f"{path.relative_to(ROOT)} block {k + 1}", argv))
                    argv = []
                elif word:
                    argv.append(word)
    return found


COMMANDS = documented_commands()


class Parsed(Exception):
    """Raised by the patched parser once a script's arguments parsed: the script does not run."""


def test_the_docs_have_commands() -> None:
    kinds = {argv[0] for _, argv in COMMANDS}
    assert kinds == {"autobackswap", "python"} and len(COMMANDS) > 15


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[f"{w}: {' '.join(a[:3])}" for w, a in COMMANDS])
def test_documented_command_parses(where: str, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    if argv[0] == "autobackswap":
        try:
            build_parser().parse_args(argv[1:])
        except SystemExit as exc:
            pytest.fail(f"{where}: `{' '.join(argv)}` does not parse (exit {exc.code})")
        return
    script = ROOT / argv[1]
    assert script.is_file(), f"{where}: {argv[1]} does not exist"
    real = argparse.ArgumentParser.parse_args

    def parse_then_stop(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        real(self, *args, **kwargs)
        raise Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.setattr(METHODS, "_items", dict(METHODS._items))  # a script may register a method of its own
    monkeypatch.setattr(sys, "argv", [str(script), *argv[2:]])
    monkeypatch.syspath_prepend(str(script.parent))
    with pytest.raises((Parsed, SystemExit)) as exc:
        runpy.run_path(str(script), run_name="__main__")
    if exc.type is SystemExit:
        assert exc.value.code == 0 and "--help" in argv, f"{where}: `{' '.join(argv)}` does not parse"


def test_readme_python_example_runs(tiny_synthetic: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's example, with its placeholders filled in, one epoch instead of ten, no worker processes,
    and the oracle's masks instead of a detector trained first (the detector path is tested elsewhere)."""
    (code,) = fenced(ROOT / "README.md", "python")
    assert '"DATA"' in code and '"RUN"' in code and "range(10)" in code and "num_workers=2" in code
    code = (code.replace('"DATA"', repr(str(tiny_synthetic))).replace('"RUN"', repr(str(tmp_path / "run")))
            .replace("range(10)", "range(1)").replace("num_workers=2", "num_workers=0")
            .replace("PipelineConfig(label_budget=200), seed=0)", "PipelineConfig(label_budget=200), seed=0, oracle=True)"))
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the documented example itself
    swap, data = namespace["swap"], namespace["data"]
    assert len(swap.labels) == len(data.train) == 40
    assert namespace["x"].shape[1:] == (3, 64, 64) and namespace["x"].dtype.is_floating_point
