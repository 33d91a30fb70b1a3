"""Render the figure blocks of README.md and docs/results.md from the studies' stored results.

A page marks each rendered figure with a block::

    <!-- figure STUDY/TABLE -->
    (written by `benchmarks/run.py render`: the table, then a line with its seeds, date, commit, machine, command)
    <!-- /figure -->

and each figure quoted in a sentence with ``<!-- value STUDY/NAME -->TEXT<!-- /value -->``. :func:`render_page`
rewrites every block from ``docs/results/STUDY.json``; :func:`check_pages` says which blocks differ from what it
would write (a hand-edited or stale figure), so ``make test`` fails on them. A figure whose study's source files
changed since it was measured is rendered with a **stale** line naming them; one never measured says so.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from _studies import ROOT, read_record, stale_files

PAGES = (ROOT / "README.md", ROOT / "docs" / "results.md")
FIGURE = re.compile(r"<!-- figure (?P<key>[\w-]+/[\w-]+) -->\n(?P<body>.*?)<!-- /figure -->", re.S)
VALUE = re.compile(r"<!-- value (?P<key>[\w-]+/[\w-]+) -->(?P<body>.*?)<!-- /value -->", re.S)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def provenance(record: dict[str, Any]) -> str:
    """One line: seeds, date, commit, machine and the command that reproduces the figure."""
    seeds = record.get("seeds") or []
    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}" if seeds else ""
    m = record.get("machine", {})
    where = f"{m.get('cores')}-core {m.get('cpu')}" + (f", {m['gpu']}" if m.get("gpu") else "")
    parts = [p for p in (seed_text, "reduced (--quick)" if record.get("quick") else "", f"measured {record['date']}",
                         f"commit {record['commit']}" + (" + local changes" if record.get("dirty") else ""), where,
                         f"`{record['command']}`") if p]
    return "<sub>" + " · ".join(parts) + "</sub>"


class Missing(KeyError):
    """A page names a study or table that has no stored result."""


_stale_cache: dict[str, list[str]] = {}


def _stale(record: dict[str, Any]) -> list[str]:
    name = record["study"]
    if name not in _stale_cache:
        _stale_cache[name] = stale_files(record)
    return _stale_cache[name]


def stale_line(record: dict[str, Any]) -> str:
    changed = _stale(record)
    if not changed:
        return ""
    shown = ", ".join(f"`{f}`" for f in changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
    return f"\n\n> **Stale**: {shown} changed since this was measured; rerun `{record['command']}`."


def render_figure(key: str) -> str:
    study, _, table = key.partition("/")
    record = read_record(study)
    if record is None:
        return f"*Not measured yet: `python benchmarks/run.py {study}`.*\n"
    if table not in record["tables"]:
        raise Missing(f"{study}/{table}: docs/results/{study}.json has no table {table!r} "
                      f"(it has {', '.join(record['tables']) or 'none'})")
    t = record["tables"][table]
    parts = [f"*{t['caption']}*\n\n" if t.get("caption") else "", markdown_table(t["header"], t["rows"])]
    notes = "".join(f"\n* {n}" for n in t.get("notes") or [])
    return "".join(parts) + ("\n" + notes if notes else "") + "\n\n" + provenance(record) + stale_line(record) + "\n"


def render_value(key: str) -> str:
    study, _, name = key.partition("/")
    record = read_record(study)
    if record is None:
        return f"(not measured yet: `python benchmarks/run.py {study}`)"
    if name not in record.get("values", {}):
        raise Missing(f"{study}/{name}: docs/results/{study}.json has no value {name!r}")
    return str(record["values"][name]) + (" (stale)" if _stale(record) else "")


def render_page(text: str) -> str:
    text = FIGURE.sub(lambda m: f"<!-- figure {m['key']} -->\n{render_figure(m['key'])}<!-- /figure -->", text)
    return VALUE.sub(lambda m: f"<!-- value {m['key']} -->{render_value(m['key'])}<!-- /value -->", text)


def differences(text: str) -> list[str]:
    """The figure and value keys of ``text`` whose content differs from what :func:`render_page` writes."""
    out = []
    for m in FIGURE.finditer(text):
        if m["body"] != render_figure(m["key"]):
            out.append(f"table {m['key']}")
    for m in VALUE.finditer(text):
        if m["body"] != render_value(m["key"]):
            out.append(f"value {m['key']}")
    return out


def render_pages(pages: tuple[Path, ...] = PAGES) -> list[Path]:
    """Rewrite every page whose figures changed; return those."""
    changed = []
    for page in pages:
        text = page.read_text()
        new = render_page(text)
        if new != text:
            page.write_text(new)
            changed.append(page)
    return changed


def check_pages(pages: tuple[Path, ...] = PAGES) -> list[str]:
    """One line per figure that differs from its stored result (empty: every page is current)."""
    problems = []
    for page in pages:
        rel = page.relative_to(ROOT) if page.is_relative_to(ROOT) else page
        try:
            for what in differences(page.read_text()):
                problems.append(f"{rel}: {what} differs from what `benchmarks/run.py render` writes from the stored "
                                "results (edited by hand, or a study reran / its code changed): run "
                                "`.venv/bin/python benchmarks/run.py render`")
        except Missing as exc:
            problems.append(f"{rel}: {exc.args[0]}")
    return problems
