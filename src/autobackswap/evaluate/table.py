"""Plain-text tables for the console and Markdown for reports.

Every figure aggregated over more than one seed is shown as ``mean ± std``; a method that cannot work
on the data shows ``skipped`` and the reason instead of a number.
"""

from __future__ import annotations

from typing import Any

COLUMNS = (
    ("worst_group_accuracy", "WGA"),
    ("average_accuracy", "avg acc"),
    ("train_weighted_accuracy", "train-weighted acc"),
    ("minority_accuracy", "minority acc"),
    ("majority_accuracy", "majority acc"),
)

DIAGNOSTIC_COLUMNS = (
    ("original", "original"),
    ("only_fg", "only_fg"),
    ("only_bg", "only_bg"),
    ("mixed_same", "mixed_same"),
    ("mixed_rand", "mixed_rand"),
    ("bg_gap", "bg_gap"),
)


def fmt(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if std is None else f"{value:.3f} ± {std:.3f}"


def _std(metrics: dict[str, Any], key: str) -> float | None:
    """The spread to show: only for figures aggregated over more than one seed."""
    if metrics.get("n_seeds", 1) <= 1:
        return None
    return metrics.get("std", {}).get(key)


def seeds_caption(results: dict[str, Any]) -> str:
    seeds = results.get("config", {}).get("seeds") or []
    if len(seeds) > 1:
        return f"mean ± std over {len(seeds)} seeds ({', '.join(map(str, seeds))})"
    return f"seed {seeds[0]}" if seeds else ""


TIME_COLUMNS = ("train s", "detector s", "separation s")
TIME_LEGEND = ("train s: seconds training the classifier; detector s: seconds fitting the detector (\"reused\": "
               "loaded from an earlier run, which took that long); separation s: seconds cutting out and inpainting "
               "the training set (short when cached). Means over seeds.")


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def time_cells(entry: dict[str, Any]) -> list[str]:
    """The classifier's, the detector's and the separation's seconds of a method (``-`` where it has none)."""
    classifier = entry.get("classifier_seconds", entry.get("train_seconds"))
    detector = seconds(entry.get("detector_seconds"))
    if entry.get("detector_reused") and detector != "-":
        detector += " reused"
    return [seconds(classifier), detector, seconds(entry.get("separation_seconds"))]


def paper_figures(results: dict[str, Any]) -> dict[str, Any]:
    """The ``[paper]`` section of the recipe the run used (``settings.resolve`` records it in the config):
    ``source``, ``metric``, ``unit`` and ``figures`` (method -> the paper's figure); ``{}`` without one."""
    return dict(((results.get("config") or {}).get("recipe") or {}).get("paper") or {})


def paper_caption(results: dict[str, Any]) -> str:
    """One line naming where the ``paper`` column's figures come from ("" when there is none)."""
    paper = paper_figures(results)
    return f"paper: {paper['source']}" if paper.get("figures") and paper.get("source") else ""


def recipe_rows(results: dict[str, Any]) -> tuple[str, list[str], list[list[str]]]:
    """The recipe a run used: a caption and one row per setting it made (a flag's replacement marked);
    ``("", [], [])`` without a recipe."""
    recipe = (results.get("config") or {}).get("recipe") or {}
    if not recipe:
        return "", [], []
    overridden = recipe.get("overridden") or {}
    rows = []
    for section, values in (recipe.get("settings") or {}).items():
        for key, value in values.items():
            flag = overridden.get(f"{section}.{key}")
            rows.append([f"{section}.{key}", str(value), f"flag (recipe: {flag['recipe']})" if flag else "recipe"])
    return f"recipe {recipe.get('name')} ({recipe.get('path')})", ["setting", "value", "from"], rows


def results_rows(results: dict[str, Any], split: str = "test") -> tuple[list[str], list[list[str]]]:
    """One row per method; on the test split of a run whose recipe carries a paper's figures, a ``paper``
    column beside the note shows them (the figures live in the recipe file, not here)."""
    paper = paper_figures(results) if split == "test" else {}
    figures = paper.get("figures") or {}
    metric = dict(COLUMNS).get(paper.get("metric", ""), paper.get("metric", ""))
    header = ["method", *[label for _, label in COLUMNS], "mask IoU", *TIME_COLUMNS, "note"]
    if figures:
        header.insert(-1, f"paper {metric} ({paper['unit']})" if paper.get("unit") else f"paper {metric}")
    rows = []
    for name, entry in results["methods"].items():
        metrics = entry.get(split)
        extra = [str(figures.get(name, "-"))] if figures else []
        if metrics is None:
            rows.append([name, "skipped", *["n/a"] * (len(COLUMNS) - 1), "-", *["-"] * len(TIME_COLUMNS), *extra,
                         entry.get("skipped", "")])
            continue
        cells = [fmt(metrics.get(key), _std(metrics, key)) for key, _ in COLUMNS]
        note = "; ".join(entry.get("notes", []))
        iou = fmt(entry.get("mask_iou"))
        rows.append([name, *cells, iou, *time_cells(entry), *extra, note])
    return header, rows


def best_rows(values: list[float | None], digits: int = 3) -> set[int]:
    """The rows holding the best (largest) value, as shown with ``digits`` decimals; none when fewer than two
    values are there or all of them are equal (every method at 0.000 has no best)."""
    shown = {i: round(v, digits) for i, v in enumerate(values) if v is not None}
    if len(shown) < 2 or len(set(shown.values())) == 1:
        return set()
    top = max(shown.values())
    return {i for i, v in shown.items() if v == top}


def diagnostics_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per method with diagnostics (accuracy on each diagnostic set, and bg_gap)."""
    header = ["method", *[label for _, label in DIAGNOSTIC_COLUMNS]]
    rows = []
    for name, entry in results["methods"].items():
        diag = entry.get("diagnostics")
        if diag:
            rows.append([name, *[fmt(diag.get(key), _std(diag, key)) for key, _ in DIAGNOSTIC_COLUMNS]])
    return header, rows


def label_efficiency_rows(curve: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["label budget", "labelled images", "WGA", "avg acc", "mask IoU", "patch bal. acc", "bg_gap"]
    rows = []
    for p in curve.get("points", []):
        if "worst_group_accuracy" not in p:
            rows.append([str(p["label_budget"]), "-", "skipped", "n/a", "n/a", "n/a", p.get("skipped", "")])
            continue
        several = p.get("n_seeds", 1) > 1
        rows.append([
            str(p["label_budget"]), str(p.get("n_labels") or "-"),
            fmt(p["worst_group_accuracy"], p.get("worst_group_accuracy_std") if several else None),
            fmt(p["average_accuracy"], p.get("average_accuracy_std") if several else None),
            fmt(p.get("mask_iou")), fmt(p.get("patch_balanced_accuracy")), fmt(p.get("bg_gap")),
        ])
    return header, rows


def render_text(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, sep, *body])


def _md(cell: object) -> str:
    return str(cell).replace("|", "\\|").replace("\n", " ")


def render_markdown(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(_md(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_md(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def group_table(metrics: dict[str, Any]) -> str:
    header = ["y", "place", "n", "accuracy"]
    several = metrics.get("n_seeds", 1) > 1
    rows = [[str(g["y"]), str(g["place"]), str(g["n"]), fmt(g["accuracy"], g.get("accuracy_std") if several else None)]
            for g in metrics["groups"]]
    return render_text(header, rows)
