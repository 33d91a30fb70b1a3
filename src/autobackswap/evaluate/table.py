"""Plain-text tables for the console and Markdown for reports."""

from __future__ import annotations

from typing import Any

COLUMNS = (
    ("worst_group_accuracy", "WGA"),
    ("average_accuracy", "avg acc"),
    ("train_weighted_accuracy", "train-weighted acc"),
    ("minority_accuracy", "minority acc"),
    ("majority_accuracy", "majority acc"),
)


def fmt(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if not std else f"{value:.3f} ± {std:.3f}"


def results_rows(results: dict[str, Any], split: str = "test") -> tuple[list[str], list[list[str]]]:
    header = ["method", *[label for _, label in COLUMNS], "train s", "note"]
    rows = []
    for name, entry in results["methods"].items():
        metrics = entry.get(split)
        if metrics is None:
            rows.append([name, *["n/a"] * len(COLUMNS), "-", entry.get("skipped", "")])
            continue
        std = metrics.get("std", {})
        cells = [fmt(metrics.get(key), std.get(key)) for key, _ in COLUMNS]
        note = "; ".join(entry.get("notes", []))
        rows.append([name, *cells, f"{entry.get('train_seconds', 0):.1f}", note])
    return header, rows


def render_text(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, sep, *body])


def render_markdown(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def group_table(metrics: dict[str, Any]) -> str:
    header = ["y", "place", "n", "accuracy"]
    rows = [[str(g["y"]), str(g["place"]), str(g["n"]), fmt(g["accuracy"], g.get("accuracy_std"))]
            for g in metrics["groups"]]
    return render_text(header, rows)
