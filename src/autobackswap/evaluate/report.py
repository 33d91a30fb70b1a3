"""The experiment report: ``RUN/report.html`` (self-contained: inline CSS, images as base64 data URIs)
and ``RUN/report.md`` (images written next to it under ``RUN/report_files/``).

Sections: the results table (mean ± std over seeds, skipped methods with their reason), per-group
bar charts, the training curves, the label-efficiency curve when swept, the background diagnostics with
sample images (and a note when the fill leaves the removed object's silhouette), the contact sheets of
masks and composites, and the group make-up of train, val and test.
"""

from __future__ import annotations

import base64
import html
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..compose.sheets import heat
from ..io import write_bytes, write_text
from ..methods.base import parse_method_spec
from ..separate.inpaint import SILHOUETTE_FILLS
from . import plots
from .table import (
    COLUMNS,
    TIME_LEGEND,
    best_rows,
    diagnostics_rows,
    fmt,
    label_efficiency_rows,
    paper_caption,
    recipe_rows,
    render_markdown,
    results_rows,
    seeds_caption,
)

log = logging.getLogger(__name__)

CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg-alt: #f6f8fa; --accent: #0969da; --warn: #9a6700; }
* { box-sizing: border-box; }
body { margin: 0; background: #ffffff; color: var(--fg);
       font: 14px/1.5 -apple-system, "Segoe UI", "Helvetica Neue", Arial, "DejaVu Sans", sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
p.meta, p.caption, .note, figcaption { color: var(--muted); }
p.caption { margin: 4px 0 8px; font-size: 13px; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; margin: 4px 0 8px; }
th, td { border: 1px solid var(--line); padding: 5px 9px; text-align: right; vertical-align: top; }
th { background: var(--bg-alt); font-weight: 600; white-space: nowrap; }
th.wrap { white-space: normal; min-width: 64px; }
td.name, th.name { text-align: left; font-family: ui-monospace, "DejaVu Sans Mono", monospace; white-space: nowrap; }
tr.method td.name { white-space: normal; min-width: 200px; max-width: 380px; }
.mname { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-weight: 600; word-break: break-all; }
.sub { font-family: -apple-system, "Segoe UI", Arial, "DejaVu Sans", sans-serif; font-size: 11.5px; color: var(--muted);
       line-height: 1.35; margin-top: 2px; }
.sub.warn { color: var(--warn); }
h3 { font-size: 14px; margin: 18px 0 4px; font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
td.text, th.text { text-align: left; color: var(--muted); max-width: 340px; font-size: 12px; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fbfcfd; }
tr.skipped td { color: var(--muted); background: #fff8e6; }
td.skip { text-align: left; color: var(--warn); }
td.best { font-weight: 700; color: var(--accent); }
img { max-width: 100%; height: auto; border: 1px solid var(--line); background: #fff; }
img.pixelated { image-rendering: pixelated; }
figure { margin: 12px 0 20px; }
figcaption { font-size: 12px; margin-top: 4px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; font-size: 13px; }
dt { font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
dd { margin: 0; color: var(--muted); }
details { margin-top: 24px; }
summary { cursor: pointer; font-weight: 600; }
.scale { display: inline-block; width: 160px; height: 11px; vertical-align: middle; border: 1px solid var(--line); }
p.note.warn { color: var(--warn); background: #fff8e6; border-left: 3px solid var(--warn); padding: 6px 10px; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; background: var(--bg-alt); padding: 0 3px;
       white-space: nowrap; }
"""

LEGEND = ("WGA: worst-group accuracy (the minimum over (y, place) groups). avg acc: plain accuracy on the test split. "
          "train-weighted acc: per-group accuracies weighted by the training group proportions (the DFR / JTT "
          "convention). minority / majority acc: pooled over groups whose place is not / is the class's most "
          "frequent place in training. mask IoU: learned masks against the ground-truth segmentations (train split). "
          + TIME_LEGEND)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _code(text: str) -> str:
    """Escaped ``text`` with its `backticked` spans as <code>."""
    parts = _e(text).split("`")
    return "".join(f"<code>{p}</code>" if k % 2 else p for k, p in enumerate(parts))


def html_table(header: list[str], rows: list[list[str]], table_id: str, text_columns: tuple[int, ...] = (),
               skipped_rows: tuple[int, ...] = (), best: dict[int, int] | None = None) -> str:
    """A table; column 0 is the name, ``text_columns`` are left-aligned prose; ``best`` maps a column
    to the row index to highlight."""
    out = [f'<div class="table-wrap"><table id="{_e(table_id)}"><thead><tr>']
    out += [f'<th class="{"name" if i == 0 else "text" if i in text_columns else ""}">{_e(h)}</th>'
            for i, h in enumerate(header)]
    out.append("</tr></thead><tbody>")
    for r, row in enumerate(rows):
        out.append('<tr class="skipped">' if r in skipped_rows else "<tr>")
        for c, cell in enumerate(row):
            cls = "name" if c == 0 else "text" if c in text_columns else "num"
            if best and best.get(c) == r:
                cls += " best"
            out.append(f'<td class="{cls}">{_e(cell)}</td>')
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _results_table_html(results: dict[str, Any], split: str = "test", table_id: str = "results-table") -> str:
    """Numbers in columns; the method cell also carries what the method needs, its notes and, for a
    skipped method, why it has no number."""
    header, rows = results_rows(results, split)
    header = header[:-1]  # notes go under the method name
    names = list(results["methods"])
    entries = list(results["methods"].values())
    best = best_wga_rows(results, split)
    out = [f'<div class="table-wrap"><table id="{_e(table_id)}"><thead><tr>']
    out += [f'<th class="{"name" if i == 0 else "wrap"}">{_e(h).replace(" s", "&nbsp;s") if h.endswith(" s") else _e(h)}</th>'
            for i, h in enumerate(header)]
    out.append("</tr></thead><tbody>")
    for i, (row, entry) in enumerate(zip(rows, entries, strict=True)):
        skipped = not entry.get(split)
        out.append(f'<tr class="method{" skipped" if skipped else ""}" data-method="{_e(names[i])}">')
        cell = [f'<span class="mname">{_e(row[0])}</span>']
        if entry.get("needs"):
            cell.append(f'<div class="sub">needs: {_e(entry["needs"])}</div>')
        if skipped:
            cell.append(f'<div class="sub warn">skipped: {_e(entry.get("skipped", "no result"))}</div>')
        cell += [f'<div class="sub warn">{_e(n)}</div>' for n in entry.get("notes", [])]
        out.append(f'<td class="name">{"".join(cell)}</td>')
        for c, value in enumerate(row[1:-1], start=1):
            cls = "num skip" if value == "skipped" else "num best" if (c == 1 and i in best) else "num"
            out.append(f'<td class="{cls}">{_e(value)}</td>')
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def best_wga_rows(results: dict[str, Any], split: str = "test") -> set[int]:
    """The rows of the results table to highlight: the best WGA apart from the oracle, when there is a best."""
    values = [e[split]["worst_group_accuracy"] if e.get(split) and not name.startswith("oracle") else None
              for name, e in results["methods"].items()]
    return best_rows(values)


def scored_groups(results: dict[str, Any], split: str) -> list[dict[str, Any]] | None:
    """``[{"y", "place", "n"}]`` of a scored split: as recorded (``<split>_groups``), else from the group
    metrics of the first method scored on it."""
    if results.get(f"{split}_groups"):
        return list(results[f"{split}_groups"])
    scored = next((e[split] for e in results["methods"].values() if e.get(split)), None)
    if scored is None:
        return None
    return [{"y": g["y"], "place": g["place"], "n": g["n"]} for g in scored.get("groups", [])]


def _group_make_up(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["split", "images", "groups (y, place): n"]
    rows = []
    splits = ["train", "val", "test", *(f"test:{name}" for name, _ in also_tests(results))]
    for split in splits:
        groups = results.get(f"{split}_groups") if split in ("train", "val") else scored_groups(results, split)
        if groups:
            rows.append([split, str(sum(int(g["n"]) for g in groups)),
                         ", ".join(f"({g['y']}, {g['place']}): {g['n']}" for g in groups)])
    return header, rows


def dataset_notes(results: dict[str, Any]) -> list[str]:
    """What the dataset's layout says about it (e.g. that its groups are its classes), with the layout's name."""
    notes = results.get("dataset_notes") or []
    layout = results.get("dataset_layout")
    return [f"{layout} layout: {n}" if layout else n for n in notes]


def silhouette_notes(results: dict[str, Any]) -> list[str]:
    """Where a fill leaves the removed object's silhouette: in the diagnostic images, and in the training
    backgrounds of the methods that separated with such a fill."""
    notes = []
    diag = results.get("diagnostics") or {}
    fill = diag.get("inpainter")
    if fill in SILHOUETTE_FILLS and not diag.get("skipped"):
        notes.append(f"The {fill} fill leaves the removed object's silhouette ({SILHOUETTE_FILLS[fill]}) in only_bg "
                     "and in the backgrounds of mixed_same and mixed_rand: a shape cue inside a 'background only' test. only_bg "
                     "can then be read from the object's outline, and mixed_same (a silhouette of the image's own "
                     "class) against mixed_rand (of a random class) inflates bg_gap. telea, ns and patchmatch "
                     "continue the surroundings into the hole and leave no such silhouette: rerun the diagnostics "
                     "with one of them (`autobackswap diagnose RUN --inpainter telea`) before reading these columns "
                     "as background reliance.")
    trained: dict[str, list[str]] = {}
    for name, entry in results["methods"].items():
        fills = {r.get("inpainter") for r in entry.get("runs", [])} & set(SILHOUETTE_FILLS)
        for f in sorted(fills):
            trained.setdefault(f, []).append(name)
    for f, names in trained.items():
        notes.append(f"Training backgrounds of {', '.join(names)} were filled with {f}: each carries the silhouette "
                     f"of the object removed from it ({SILHOUETTE_FILLS[f]}). Backgrounds are drawn class-balanced, so "
                     "it does not predict the label, but it is a second object outline in every composite.")
    return notes


GROUPS_CAPTION = "Images per (y, place) group in each split the experiment used."


def locate_file(path: str | None, run_dir: Path, recorded_run_dir: str | None = None) -> Path | None:
    """A file recorded in results.json: as recorded; else relative to the run folder; else, when it
    lay under the run folder as it was then (``recorded_run_dir``), under the run folder as it is now
    (a copied or moved run)."""
    if not path:
        return None
    candidates = [Path(path), run_dir / path]
    if recorded_run_dir:
        try:
            candidates.append(run_dir / Path(path).relative_to(recorded_run_dir))
        except ValueError:
            pass
    return next((c for c in candidates if c.is_file()), None)


def _sheets(results: dict[str, Any], run_dir: Path) -> list[tuple[str, Path]]:
    """(caption, path) of the contact sheets to show: the first seed of each method, and of a
    label-budget sweep only the largest budget."""
    chosen: dict[str, tuple[int, str, dict[str, Any]]] = {}
    for name, entry in results["methods"].items():
        recorded = results.get("run_dir")
        runs = [{**r, "contact_sheet": str(locate_file(r.get("contact_sheet"), run_dir, recorded))}
                for r in entry.get("runs", []) if locate_file(r.get("contact_sheet"), run_dir, recorded)]
        if not runs:
            continue
        try:
            base, options = parse_method_spec(name)
        except (KeyError, ValueError):
            base, options = name, {}
        budget = int(options.pop("label_budget", options.pop("budget", 0)) or 0)
        key = base + "".join(f":{k}={v}" for k, v in sorted(options.items()))
        if key not in chosen or budget > chosen[key][0]:
            chosen[key] = (budget, name, runs[0])
    seen: set[str] = set()
    out = []
    for _, name, run in chosen.values():
        if run["contact_sheet"] not in seen:
            seen.add(run["contact_sheet"])
            out.append((f"{name} (seed {run['seed']})", Path(run["contact_sheet"])))
    return out


SHEET_CAPTIONS = {
    "default": "One row per training image, columns as titled: the image, the detector's p(fg) grid (learned masks "
               "only), the refined alpha, the cut-out, the inpainted background and composites on class-balanced "
               "backgrounds.",
    "random_paste": "One row per training image, columns as titled: the image, the alpha, the cut-out, the original "
                    "image (not inpainted) and composites on uniformly drawn training images.",
}


def colour_scale_css() -> str:
    """A CSS gradient of the p(fg) colour scale of the contact sheets (0 on the left, 1 on the right)."""
    stops = heat(np.linspace(0.0, 1.0, 11)[None])[0]
    return "linear-gradient(to right, " + ", ".join(f"rgb({r}, {g}, {b})" for r, g, b in stops) + ")"


def _config_line(results: dict[str, Any]) -> str:
    cfg = results.get("config", {})
    train = cfg.get("train", {})
    bits = [f"dataset <code>{_e(results.get('dataset', '?'))}</code>",
            f"image size {_e(cfg.get('image_size', '?'))} px",
            f"model {_e(train.get('model', '?'))} (width {_e(train.get('width', '?'))})",
            f"{_e(train.get('epochs', '?'))} epochs", _e(seeds_caption(results))]
    if cfg.get("method_options"):
        bits.append("options " + ", ".join(f"{_e(k)}={_e(v)}" for k, v in cfg["method_options"].items()))
    return " · ".join(b for b in bits if b)


def also_tests(results: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, dataset) of every extra test split scored with ``--also-test``."""
    return list((results.get("config", {}).get("also_test") or {}).items())


def render_html(results: dict[str, Any], images: dict[str, bytes], sheets: list[tuple[str, Path]]) -> str:
    """The self-contained HTML report. ``images`` maps a figure key (``groups``, ``label_efficiency``,
    ``diagnostic_samples``) to PNG bytes; ``sheets`` lists the contact sheets as (caption, path)."""
    parts = [*_html_header(results), *_html_results(results), *_html_recipe(results), *_html_groups(images),
             *_html_curves(images),
             *_html_label_efficiency(results, images), *_html_diagnostics(results, images), *_html_sheets(sheets),
             *_html_data(results), *_html_validation(results), "</main></body></html>"]
    return "\n".join(parts)


def _html_header(results: dict[str, Any]) -> list[str]:
    """The document head (title, inline CSS), the heading and the configuration line."""
    return ['<!doctype html><html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>autobackswap report: {_e(Path(str(results.get('dataset', ''))).name)}</title>",
            f"<style>{CSS}</style></head><body><main>",
            "<h1>AutoBackSwap experiment report</h1>", f'<p class="meta">{_config_line(results)}</p>',
            *([f'<p class="sub warn" id="incomplete"><strong>{_e(incomplete_note(results))}</strong></p>']
              if incomplete_note(results) else [])]


def incomplete_note(results: dict[str, Any]) -> str:
    """A warning for a results.json an interrupted ``experiment`` left (``"complete": false``), else ""."""
    if results.get("complete", True):
        return ""
    pending = results.get("pending") or []
    left = f"; not finished: {', '.join(map(str, pending))}" if pending else "; the diagnostics were not finished"
    return f"Incomplete run: the experiment stopped before it finished{left}. Rerun the same command to complete it."


def best_caption(results: dict[str, Any]) -> str:
    if best_wga_rows(results):
        return "The best WGA apart from the oracle is highlighted."
    return "No WGA is highlighted: there is no best apart from the oracle (one method, or all equal)."


def _html_results(results: dict[str, Any]) -> list[str]:
    """The results table on the test split, then one per extra test split (``--also-test``)."""
    parts = ['<section id="results"><h2>Results on the test split</h2>',
             f'<p class="caption">{_e(seeds_caption(results))}. {_e(best_caption(results))} A method that cannot '
             "work on this data is marked <em>skipped</em> with the reason; no number is reported for it.</p>",
             _results_table_html(results),
             f'<p class="caption">{_e(LEGEND)}</p>',
             f'<p class="caption">{_e(paper_caption(results))}</p>' if paper_caption(results) else "",
             "</section>"]
    for name, dataset in also_tests(results):
        parts.append(f'<section class="also-test"><h2>Results on the test split of {_e(name)}</h2>')
        parts.append(f'<p class="caption">The same models scored on the test split of <code>{_e(dataset)}</code>. '
                     f"{_e(seeds_caption(results))}.</p>")
        parts.append(_results_table_html(results, f"test:{name}", f"results-table-{name}"))
        parts.append("</section>")
    gap = official_gap_line(results)
    if gap:
        parts.append(f'<p class="caption" id="bg-gap-official">{_e(gap)}</p>')
    return parts


def official_gap_line(results: dict[str, Any]) -> str | None:
    """The backgrounds challenge's BG-gap per method, from the ``mixed_same`` / ``mixed_rand`` test sets."""
    gaps = [f"{spec} {entry['bg_gap_official']:.3f}" for spec, entry in results["methods"].items()
            if entry.get("bg_gap_official") is not None]
    if not gaps:
        return None
    return "Official BG-gap (average accuracy on mixed_same minus mixed_rand): " + ", ".join(gaps)


def _html_groups(images: dict[str, bytes]) -> list[str]:
    """The per-group accuracy chart, when there is one."""
    if "groups" not in images:
        return []
    return ['<section id="groups"><h2>Per-group accuracy</h2>',
            f'<figure><img alt="per-group test accuracy" src="{_data_uri(images["groups"])}">'
            "<figcaption>Test accuracy per (y, place) group, mean over seeds with std error bars; hatched "
            "bars are groups that are a minority (or absent) in training; the dashed line is each "
            "method's worst-group accuracy.</figcaption></figure></section>"]


def _html_curves(images: dict[str, bytes]) -> list[str]:
    """The training curves, when any run saved its history."""
    if "training_curves" not in images:
        return []
    return ['<section id="training-curves"><h2>Training curves</h2>',
            f'<figure><img alt="training curves" src="{_data_uri(images["training_curves"])}">'
            f"<figcaption>{_e(CURVES_CAPTION)}</figcaption></figure></section>"]


CURVES_CAPTION = ("Train loss and average validation accuracy per epoch, one colour per method and one line per seed; "
                  "a dot marks the epoch kept (the best validation accuracy).")


def _html_label_efficiency(results: dict[str, Any], images: dict[str, bytes]) -> list[str]:
    """The label-efficiency curve and table, when a label budget was swept."""
    curve = results.get("label_efficiency")
    if not curve:
        return []
    parts = ['<section id="label-efficiency"><h2>Label efficiency</h2>']
    if "label_efficiency" in images:
        parts.append(f'<figure><img alt="label-efficiency curve" src="{_data_uri(images["label_efficiency"])}">'
                     f"<figcaption>{_e(curve['method'])}: test accuracy against the number of patch-labelled "
                     "training images.</figcaption></figure>")
    parts.append(html_table(*label_efficiency_rows(curve), "label-efficiency-table"))
    parts.append("</section>")
    return parts


def _html_diagnostics(results: dict[str, Any], images: dict[str, bytes]) -> list[str]:
    """The background diagnostics: how they were made, the table, the definitions and sample images."""
    diag = results.get("diagnostics")
    if not diag:
        return []
    parts = ['<section id="diagnostics"><h2>Background diagnostics</h2>']
    if diag.get("skipped"):
        parts.append(f'<p class="note">Not computed: {_e(diag["skipped"])}</p>')
    else:
        source = "ground-truth segmentations" if diag.get("masks") == "ground_truth" else \
            f"masks predicted by the detector {diag.get('detector')}"
        excluded = sum((diag.get("excluded") or {}).values())
        parts.append(f'<p class="caption">Accuracy on {diag.get("n")} test images rebuilt from {_e(source)} '
                     f"(inpainter {_e(diag.get('inpainter'))}, seed {_e(diag.get('seed'))}; {excluded} images "
                     f"without a usable mask left out). {_e(seeds_caption(results))}.</p>")
        parts.append(html_table(*diagnostics_rows(results), "diagnostics-table"))
        parts += [f'<p class="note warn silhouette">{_code(note)}</p>' for note in silhouette_notes(results)]
        parts.append("<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>"
                                      for k, v in (diag.get("definitions") or {}).items()) + "</dl>")
        if "diagnostic_samples" in images:
            parts.append(f'<figure><img class="pixelated" alt="diagnostic samples" '
                         f'src="{_data_uri(images["diagnostic_samples"])}"><figcaption>Samples of the diagnostic '
                         "sets.</figcaption></figure>")
    parts.append("</section>")
    return parts


def _html_sheets(sheets: list[tuple[str, Path]]) -> list[str]:
    """The contact sheets of masks and composites, each under its caption, inlined."""
    if not sheets:
        return []
    parts = ['<section id="samples"><h2>Sample masks and composites</h2>',
             f'<p class="caption">p(fg) grid colours: 0 (background) <span class="scale" style="background: '
             f'{colour_scale_css()}"></span> 1 (foreground).</p>']
    for caption, path in sheets:
        kind = "random_paste" if caption.startswith("random_paste") else "default"
        parts.append(f"<h3>{_e(caption)}</h3><p class=\"caption\">{_e(SHEET_CAPTIONS[kind])}</p>"
                     f'<figure><img class="pixelated" alt="{_e(caption)}" src="{_data_uri(path.read_bytes())}">'
                     "</figure>")
    parts.append("</section>")
    return parts


def _html_recipe(results: dict[str, Any]) -> list[str]:
    """The recipe the settings came from, each setting it made (and which a flag replaced)."""
    caption, header, rows = recipe_rows(results)
    if not caption:
        return []
    return ['<section id="recipe"><h2>Recipe</h2>', f'<p class="caption">{_e(caption)}</p>',
            html_table(header, rows, "recipe-table", text_columns=(1, 2)), "</section>"]


def _html_data(results: dict[str, Any]) -> list[str]:
    """The group make-up of train and val, when recorded."""
    header, rows = _group_make_up(results)
    if not rows:
        return []
    notes = [f'<p class="caption">{_e(n)}</p>' for n in dataset_notes(results)]
    return ['<section id="data"><h2>Data</h2>', f'<p class="caption">{_e(GROUPS_CAPTION)}</p>',
            html_table(header, rows, "groups-table", text_columns=(2,)), *notes, "</section>"]


def _html_validation(results: dict[str, Any]) -> list[str]:
    """The results on the validation split, folded away, when any method has them."""
    if not any("val" in e for e in results["methods"].values()):
        return []
    return ["<details><summary>Validation split (model selection uses average validation accuracy)</summary>",
            _results_table_html(results, "val", "val-table"), "</details>"]


def render_markdown_report(results: dict[str, Any], files: dict[str, str], sheets: list[tuple[str, str]]) -> str:
    """``files`` maps an image key to its path relative to the report; ``sheets`` (caption, relative path)."""
    lines = ["# AutoBackSwap experiment report", ""]
    if incomplete_note(results):
        lines += [f"**{incomplete_note(results)}**", ""]
    cfg = results.get("config", {})
    train = cfg.get("train", {})
    lines += [f"Dataset `{results.get('dataset', '?')}`, image size {cfg.get('image_size', '?')} px, "
              f"model {train.get('model', '?')}, {train.get('epochs', '?')} epochs, {seeds_caption(results)}.", ""]
    lines += ["## Results on the test split", "", f"{seeds_caption(results)}.", ""]
    header, rows = results_rows(results)
    for i in best_wga_rows(results):
        rows[i][1] = f"**{rows[i][1]}**"
    needs = [e.get("needs", "") for e in results["methods"].values()]
    lines += [render_markdown([header[0], "needs", *header[1:]], [[r[0], n, *r[1:]] for r, n in zip(rows, needs, strict=True)]), ""]
    lines += [best_caption(results).replace("highlighted", "in bold"), "", LEGEND, ""]
    if paper_caption(results):
        lines += [paper_caption(results), ""]
    caption, recipe_header, recipe_table = recipe_rows(results)
    if caption:
        lines += ["## Recipe", "", caption, "", render_markdown(recipe_header, recipe_table), ""]
    for name, dataset in also_tests(results):
        lines += [f"## Results on the test split of {name}", "", f"The same models on `{dataset}`. {seeds_caption(results)}.", ""]
        header, rows = results_rows(results, f"test:{name}")
        lines += [render_markdown(header, rows), ""]
    if official_gap_line(results):
        lines += [str(official_gap_line(results)), ""]
    if "groups" in files:
        lines += ["## Per-group accuracy", "", f"![per-group test accuracy]({files['groups']})", ""]
    if "training_curves" in files:
        lines += ["## Training curves", "", f"![training curves]({files['training_curves']})", "", CURVES_CAPTION, ""]
    curve = results.get("label_efficiency")
    if curve:
        lines += ["## Label efficiency", ""]
        if "label_efficiency" in files:
            lines += [f"![label-efficiency curve]({files['label_efficiency']})", ""]
        lines += [render_markdown(*label_efficiency_rows(curve)), ""]
    diag = results.get("diagnostics")
    if diag:
        lines += ["## Background diagnostics", ""]
        if diag.get("skipped"):
            lines += [f"Not computed: {diag['skipped']}", ""]
        else:
            lines += [f"{diag.get('n')} test images, masks: {diag.get('masks')}, inpainter {diag.get('inpainter')}. "
                      f"{seeds_caption(results)}.", ""]
            lines += [render_markdown(*diagnostics_rows(results)), ""]
            lines += [f"> **Note.** {note}\n" for note in silhouette_notes(results)]
            lines += [f"- `{k}`: {v}" for k, v in (diag.get("definitions") or {}).items()] + [""]
            if "diagnostic_samples" in files:
                lines += [f"![diagnostic samples]({files['diagnostic_samples']})", ""]
    if sheets:
        lines += ["## Sample masks and composites", "", "p(fg) grid colours: dark purple 0 (background), teal 0.5, "
                  "yellow 1 (foreground).", ""]
        for caption, rel in sheets:
            lines += [f"**{caption}**", "", f"![{caption}]({rel})", ""]
    header, rows = _group_make_up(results)
    if rows:
        lines += ["## Data", "", render_markdown(header, rows), ""]
        lines += [*(f"- {n}" for n in dataset_notes(results)), ""] if dataset_notes(results) else []
    return "\n".join(lines)


def write_report(run_dir: str | Path, results: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` (+ ``report_files/``) into ``run_dir``."""
    run_dir = Path(run_dir)
    images: dict[str, bytes] = {}
    groups = plots.group_bars(results)
    if groups:
        images["groups"] = groups
    curves = plots.training_curves(results)
    if curves:
        images["training_curves"] = curves
    curve = results.get("label_efficiency")
    if curve:
        png = plots.label_efficiency_plot(curve)
        if png:
            images["label_efficiency"] = png
    samples = locate_file((results.get("diagnostics") or {}).get("samples"), run_dir, results.get("run_dir"))
    if samples is not None:
        images["diagnostic_samples"] = samples.read_bytes()
    sheets = _sheets(results, run_dir)
    html_path = run_dir / "report.html"
    write_text(html_path, render_html(results, images, sheets))
    files: dict[str, str] = {}
    for key, png in images.items():
        if key == "diagnostic_samples" and samples is not None:
            files[key] = os.path.relpath(samples, run_dir)
            continue
        write_bytes(run_dir / "report_files" / f"{key}.png", png)
        files[key] = f"report_files/{key}.png"
    rel_sheets = [(caption, os.path.relpath(path, run_dir)) for caption, path in sheets]
    md_path = run_dir / "report.md"
    write_text(md_path, render_markdown_report(results, files, rel_sheets))
    log.info("report: %s, %s", html_path, md_path)
    return html_path, md_path


__all__ = ["COLUMNS", "fmt", "render_html", "render_markdown_report", "write_report"]
