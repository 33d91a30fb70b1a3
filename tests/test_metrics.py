"""Group metrics and their aggregation over seeds, on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from autobackswap.data.groups import group_counts, majority_groups
from autobackswap.evaluate.metrics import aggregate, group_metrics
from autobackswap.evaluate.table import fmt, group_table, render_markdown, render_text, results_rows

# 12 test samples in four (y, place) groups:
#   (0, 0): 4 samples, 3 correct -> 0.75      (1, 0): 2 samples, 0 correct -> 0.0
#   (0, 1): 2 samples, 1 correct -> 0.5       (1, 1): 4 samples, 4 correct -> 1.0
Y = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
PLACE = [0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1]
PRED = [0, 0, 0, 1, 0, 1, 0, 0, 1, 1, 1, 1]
TRAIN_COUNTS = {(0, 0): 60, (0, 1): 10, (1, 0): 5, (1, 1): 25}  # majority: (0, 0) and (1, 1)


def test_group_metrics_hand_computed() -> None:
    m = group_metrics(PRED, Y, PLACE, TRAIN_COUNTS)
    assert m["groups"] == [
        {"y": 0, "place": 0, "n": 4, "accuracy": 0.75},
        {"y": 0, "place": 1, "n": 2, "accuracy": 0.5},
        {"y": 1, "place": 0, "n": 2, "accuracy": 0.0},
        {"y": 1, "place": 1, "n": 4, "accuracy": 1.0},
    ]
    assert m["average_accuracy"] == pytest.approx(8 / 12)
    assert m["worst_group_accuracy"] == 0.0
    assert m["mean_group_accuracy"] == pytest.approx((0.75 + 0.5 + 0.0 + 1.0) / 4)
    # weighted by training proportions 0.60, 0.10, 0.05, 0.25
    assert m["train_weighted_accuracy"] == pytest.approx(0.6 * 0.75 + 0.1 * 0.5 + 0.05 * 0.0 + 0.25 * 1.0)
    assert m["majority_accuracy"] == pytest.approx(7 / 8)  # (0,0) and (1,1): 3 + 4 of 8
    assert m["minority_accuracy"] == pytest.approx(1 / 4)  # (0,1) and (1,0): 1 + 0 of 4


def test_average_differs_from_train_weighted() -> None:
    """The two averages users confuse really are different numbers on a skewed training mix."""
    m = group_metrics(PRED, Y, PLACE, TRAIN_COUNTS)
    assert m["average_accuracy"] != pytest.approx(m["train_weighted_accuracy"])


def test_group_metrics_without_train_counts() -> None:
    m = group_metrics(PRED, Y, PLACE)
    assert m["worst_group_accuracy"] == 0.0
    for key in ("train_weighted_accuracy", "majority_accuracy", "minority_accuracy"):
        assert key not in m


def test_no_minority_in_training() -> None:
    """Correlation 1.0: training has only (0, 0) and (1, 1); the other two groups are minority."""
    m = group_metrics(PRED, Y, PLACE, {(0, 0): 50, (1, 1): 50})
    assert m["train_weighted_accuracy"] == pytest.approx(0.5 * 0.75 + 0.5 * 1.0)
    assert m["majority_accuracy"] == pytest.approx(7 / 8)
    assert m["minority_accuracy"] == pytest.approx(1 / 4)


def test_train_weighted_renormalises_over_groups_present() -> None:
    # test split holds only (0, 0) [acc 0.75] and (1, 1) [acc 1.0]; they cover 0.85 of training
    keep = [i for i in range(12) if Y[i] == PLACE[i]]
    m = group_metrics([PRED[i] for i in keep], [Y[i] for i in keep], [PLACE[i] for i in keep], TRAIN_COUNTS)
    assert m["train_weighted_accuracy"] == pytest.approx((0.6 * 0.75 + 0.25 * 1.0) / 0.85)
    assert m["minority_accuracy"] is None
    assert m["majority_accuracy"] == pytest.approx(7 / 8)
    assert m["worst_group_accuracy"] == 0.75


def test_train_weighted_is_none_when_no_group_was_trained_on() -> None:
    m = group_metrics([0, 1], [0, 1], [1, 0], {(0, 0): 3, (1, 1): 3})
    assert m["train_weighted_accuracy"] is None
    assert m["majority_accuracy"] is None
    assert m["minority_accuracy"] == 1.0


def test_perfect_predictions() -> None:
    m = group_metrics(Y, Y, PLACE, TRAIN_COUNTS)
    for key in ("average_accuracy", "worst_group_accuracy", "mean_group_accuracy", "train_weighted_accuracy",
                "majority_accuracy", "minority_accuracy"):
        assert m[key] == 1.0


def test_accepts_numpy_and_non_binary_labels() -> None:
    y = np.array([3, 3, 7, 7])
    m = group_metrics(np.array([3, 7, 7, 7]), y, np.array([0, 0, 2, 2]))
    assert [(g["y"], g["place"], g["n"], g["accuracy"]) for g in m["groups"]] == [(3, 0, 2, 0.5), (7, 2, 2, 1.0)]
    assert isinstance(m["groups"][0]["y"], int)  # JSON-friendly


@pytest.mark.parametrize("pred,y,place", [([], [], []), ([0, 1], [0], [0]), ([0], [0], [0, 1])])
def test_group_metrics_bad_lengths(pred: list[int], y: list[int], place: list[int]) -> None:
    with pytest.raises(ValueError, match="non-empty and of equal length"):
        group_metrics(pred, y, place)


def test_group_counts_and_majority() -> None:
    counts = group_counts(Y, PLACE)
    assert counts == {(0, 0): 4, (0, 1): 2, (1, 0): 2, (1, 1): 4}
    assert majority_groups(TRAIN_COUNTS) == {(0, 0), (1, 1)}
    assert majority_groups({(0, 0): 1, (0, 1): 9, (1, 1): 2}) == {(0, 1), (1, 1)}


def _run(wga: float, avg: float, accs: list[float], minority: float | None) -> dict:
    return {
        "worst_group_accuracy": wga,
        "average_accuracy": avg,
        "minority_accuracy": minority,
        "groups": [{"y": 0, "place": 0, "n": 10, "accuracy": accs[0]}, {"y": 1, "place": 1, "n": 10, "accuracy": accs[1]}],
    }


def test_aggregate_mean_and_population_std() -> None:
    out = aggregate([_run(0.2, 0.6, [0.2, 1.0], 0.2), _run(0.4, 0.8, [0.4, 0.8], None)])
    assert out["n_seeds"] == 2
    assert out["worst_group_accuracy"] == pytest.approx(0.3)
    assert out["std"]["worst_group_accuracy"] == pytest.approx(0.1)  # ddof=0
    assert out["average_accuracy"] == pytest.approx(0.7)
    assert out["std"]["average_accuracy"] == pytest.approx(0.1)
    assert out["minority_accuracy"] == pytest.approx(0.2)  # None values are skipped
    assert out["std"]["minority_accuracy"] == 0.0
    assert "train_weighted_accuracy" not in out and "majority_accuracy" not in out
    assert [(g["y"], g["place"], g["n"]) for g in out["groups"]] == [(0, 0, 10), (1, 1, 10)]
    assert [g["accuracy"] for g in out["groups"]] == pytest.approx([0.3, 0.9])
    assert [g["accuracy_std"] for g in out["groups"]] == pytest.approx([0.1, 0.1])


def test_aggregate_single_run_and_empty() -> None:
    out = aggregate([_run(0.25, 0.5, [0.25, 0.75], 0.25)])
    assert out["worst_group_accuracy"] == 0.25 and out["std"]["worst_group_accuracy"] == 0.0
    with pytest.raises(ValueError, match="nothing to aggregate"):
        aggregate([])


def test_tables() -> None:
    assert fmt(None) == "-"
    assert fmt(0.12345) == "0.123"
    assert fmt(0.5, 0.01) == "0.500 ± 0.010"
    metrics = group_metrics(PRED, Y, PLACE, TRAIN_COUNTS)
    results = {"methods": {"erm": {"test": metrics, "train_seconds": 1.5, "notes": ["a note"]},
                           "dfr": {"skipped": "needs a minority group"}}}
    header, rows = results_rows(results)
    assert header[:3] == ["method", "WGA", "avg acc"]
    assert rows[0][:3] == ["erm", "0.000", "0.667"]
    assert rows[0][-4:] == ["1.5", "-", "-", "a note"]  # train s (the classifier), detector s, separation s, note
    assert rows[1][0] == "dfr" and rows[1][-1] == "needs a minority group"
    text = render_text(header, rows)
    assert len(text.splitlines()) == 4
    assert render_markdown(header, rows).splitlines()[1].startswith("|---|")
    table = group_table(metrics)
    assert "0.750" in table and len(table.splitlines()) == 2 + 4
