"""Plots for the report, as PNG bytes (matplotlib's object API on the Agg canvas: no global backend
switch, no display needed).

* :func:`group_bars`: per-group test accuracy of every method (mean over seeds, std as error bars).
* :func:`label_efficiency_plot`: worst-group accuracy against the number of labelled images.
* :func:`training_curves`: train loss and validation accuracy per epoch of every method and seed (the
  ``history`` each run saved).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..data.groups import majority_groups

PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")


def _png(fig: Figure, dpi: int = 100) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def group_label(group: dict[str, Any], majority: set[tuple[int, int]] | None = None) -> str:
    label = f"y={group['y']}, place={group['place']}"
    if majority is not None:
        label += " (majority)" if (group["y"], group["place"]) in majority else " (minority)"
    return label


def group_bars(results: dict[str, Any], split: str = "test") -> bytes | None:
    """Grouped bars: one cluster per method, one bar per (y, place) group; None if no method has a result."""
    methods = [(name, e[split]) for name, e in results["methods"].items() if e.get(split)]
    if not methods:
        return None
    majority = _majority(results)
    groups = [(g["y"], g["place"]) for g in methods[0][1]["groups"]]
    width = 0.8 / len(groups)
    fig = Figure(figsize=(min(11.0, max(6.5, 1.35 * len(methods) + 2.0)), 4.6))
    ax = fig.add_subplot()
    x = np.arange(len(methods))
    for k, (gy, gp) in enumerate(groups):
        values, errors = [], []
        for _, metrics in methods:
            match = [g for g in metrics["groups"] if (g["y"], g["place"]) == (gy, gp)]
            values.append(match[0]["accuracy"] if match else np.nan)
            errors.append(match[0].get("accuracy_std", 0.0) if match else 0.0)
        minority = majority is not None and (gy, gp) not in majority
        ax.bar(x + (k - (len(groups) - 1) / 2) * width, values, width, yerr=errors, capsize=2,
               color=PALETTE[k % len(PALETTE)], edgecolor="white" if not minority else "#333333",
               hatch="//" if minority else None, linewidth=0.6, error_kw={"elinewidth": 0.8},
               label=group_label({"y": gy, "place": gp}, majority))
    for i, (_, metrics) in enumerate(methods):
        wga = metrics["worst_group_accuracy"]
        ax.plot([i - 0.42, i + 0.42], [wga, wga], color="black", linewidth=1.2, linestyle="--",
                label="worst-group accuracy" if i == 0 else None)
    ax.set_xticks(x)
    ax.set_xticklabels([_wrap(n) for n, _ in methods], fontsize=10 if len(methods) <= 6 else 8.5)
    ax.tick_params(axis="y", labelsize=9.5)
    ax.set_xlim(-0.6, len(methods) - 0.4)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"{split} accuracy", fontsize=10.5)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=9, ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    return _png(fig)


def training_curves(results: dict[str, Any]) -> bytes | None:
    """Train loss (left) and validation accuracy (right) per epoch: one colour per method, one line per seed
    (a dot marks the epoch selected by validation accuracy). None when no run saved a history."""
    curves = [(name, run) for name, entry in results["methods"].items() for run in entry.get("runs", [])
              if run.get("history")]
    if not curves:
        return None
    fig = Figure(figsize=(11.0, 4.0), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(dict.fromkeys(n for n, _ in curves))}
    styles = ("-", "--", ":", "-.")
    seeds = sorted({int(run.get("seed", 0)) for _, run in curves})
    for name, run in curves:
        epochs = [h["epoch"] for h in run["history"]]
        style = styles[seeds.index(int(run.get("seed", 0))) % len(styles)]
        label = name if len(seeds) == 1 else f"{name}, seed {run.get('seed', 0)}"
        loss_ax.plot(epochs, [h["train_loss"] for h in run["history"]], style, marker=".", color=colours[name],
                     linewidth=1.3, label=label)
        acc_ax.plot(epochs, [h["val_accuracy"] for h in run["history"]], style, marker=".", color=colours[name],
                    linewidth=1.3)
        best = run.get("best_epoch")
        if best and 1 <= best <= len(run["history"]):
            acc_ax.plot([best], [run["history"][best - 1]["val_accuracy"]], "o", color=colours[name], markersize=6)
    for ax, ylabel in ((loss_ax, "train loss"), (acc_ax, "validation accuracy (average)")):
        ax.set_xlabel("epoch", fontsize=10.5)
        ax.set_ylabel(ylabel, fontsize=10.5)
        ax.tick_params(labelsize=9.5)
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        ax.xaxis.get_major_locator().set_params(integer=True)
    acc_ax.set_ylim(0, 1.02)
    fig.legend(*loss_ax.get_legend_handles_labels(), fontsize=9, loc="outside right center", frameon=False)
    return _png(fig)


def label_efficiency_plot(curve: dict[str, Any]) -> bytes | None:
    """WGA (mean ± std) against labelled images, with ERM / oracle as horizontal references."""
    points = [p for p in curve.get("points", []) if "worst_group_accuracy" in p]
    if not points:
        return None
    fig = Figure(figsize=(6.0, 3.6))
    ax = fig.add_subplot()
    budgets = [p.get("n_labels") or p["label_budget"] for p in points]
    wga = np.array([p["worst_group_accuracy"] for p in points])
    std = np.array([p.get("worst_group_accuracy_std", 0.0) for p in points])
    avg = np.array([p["average_accuracy"] for p in points])
    ax.errorbar(budgets, wga, yerr=std, marker="o", color=PALETTE[0], capsize=3, label="worst-group accuracy")
    ax.plot(budgets, avg, marker="s", color=PALETTE[1], linewidth=1, alpha=0.8, label="average accuracy")
    styles = {"erm": ("#c44e52", ":"), "oracle": ("#55a868", "--")}
    for name, value in curve.get("reference_worst_group_accuracy", {}).items():
        colour, style = styles.get(name, ("#8c8c8c", "-."))
        ax.axhline(value, color=colour, linestyle=style, linewidth=1, label=f"{name} WGA")
    ax.set_xscale("log")
    ax.set_xticks(budgets)
    ax.set_xticklabels([str(b) for b in budgets])
    ax.minorticks_off()
    ax.set_xlabel("labelled training images")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _png(fig)


def _wrap(name: str) -> str:
    """One line per ``:``-separated part of a method spec, long option names shortened."""
    short = {"label_budget=": "labels=", "inpainter=": "fill="}
    parts = name.split(":")
    for long, abbrev in short.items():
        parts = [p.replace(long, abbrev) for p in parts]
    return "\n".join(parts)


def _majority(results: dict[str, Any]) -> set[tuple[int, int]] | None:
    train = results.get("train_groups")
    if not train:
        return None
    return majority_groups({(g["y"], g["place"]): g["n"] for g in train})
