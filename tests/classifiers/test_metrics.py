"""Evaluation figures checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np

from thresher.classifiers.metrics import accuracy, classification_metrics, macro_f1, positive_label, roc_auc


def test_auc_counts_ordered_pairs_and_half_ties():
    # positives 0.9, 0.4; negatives 0.5, 0.1: pairs (0.9>0.5, 0.9>0.1, 0.4<0.5, 0.4>0.1) -> 3/4
    assert roc_auc([True, True, False, False], [0.9, 0.4, 0.5, 0.1]) == 0.75
    assert roc_auc([True, False], [0.5, 0.5]) == 0.5
    assert roc_auc([True, False, True], [1.0, 0.0, 0.7]) == 1.0
    assert math.isnan(roc_auc([True, True], [0.1, 0.2]))


def test_macro_f1_averages_classes_unweighted():
    truth = ["a", "a", "a", "b"]
    predicted = ["a", "a", "b", "b"]
    # a: tp2 fp0 fn1 -> 0.8; b: tp1 fp1 fn0 -> 2/3
    assert math.isclose(macro_f1(truth, predicted), (0.8 + 2 / 3) / 2)
    assert accuracy(truth, predicted) == 0.75


def test_positive_label_prefers_conventional_names():
    assert positive_label(["0", "1"]) == "1"
    assert positive_label(["clutter", "keep"]) == "keep"
    assert positive_label(["bad", "zzz"]) == "zzz"


def test_classification_metrics_reads_columns_in_label_order():
    probs = np.array([[0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
    result = classification_metrics(["1", "0", "0"], ["0", "1"], probs)
    assert result["accuracy"] == 2 / 3 and result["auc"] == 1.0 and result["positive_label"] == "1"
    three = classification_metrics(["a", "b"], ["a", "b", "c"], np.eye(3)[:2])
    assert "auc" not in three and three["accuracy"] == 1.0


def _noisy(n: int, right: float, seed: int = 3):
    """Two-label truth, predictions right on a `right` share of them, and scores that rank them."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    correct = rng.random(n) < right
    predicted = np.where(correct, truth, 1 - truth)
    p1 = np.where(predicted == 1, 0.5 + 0.5 * rng.random(n), 0.5 * rng.random(n))
    return [str(t) for t in truth], np.column_stack([1 - p1, p1])


def test_every_figure_has_a_seeded_interval_that_holds_it_and_narrows_with_more_data():
    widths = {}
    for n in (40, 400, 4000):
        truth, probs = _noisy(n, 0.8)
        result = classification_metrics(truth, ["0", "1"], probs)
        interval = result["interval"]
        assert interval["level"] == 0.95 and interval["resamples"] == 1000 and interval["method"] == "percentile bootstrap"
        for name in ("accuracy", "macro_f1", "auc"):
            low, high = interval[name]
            assert 0.0 <= low <= result[name] <= high <= 1.0, (n, name)
        widths[n] = {name: interval[name][1] - interval[name][0] for name in ("accuracy", "macro_f1", "auc")}
        assert classification_metrics(truth, ["0", "1"], probs) == result  # seeded: the same every time
    for name in ("accuracy", "macro_f1", "auc"):
        assert widths[40][name] > widths[400][name] > widths[4000][name] > 0
    assert result["chance"] == {"accuracy": 0.5, "auc": 0.5} and result["warnings"] == []


def test_bootstrap_auc_with_unit_weights_is_the_auc():
    from thresher.classifiers.metrics import _auc_groups, _weighted_auc

    positive, scores = [True, True, False, False, True], [0.9, 0.4, 0.5, 0.1, 0.5]
    assert _weighted_auc(_auc_groups(np.array(positive), np.array(scores)), np.ones(5, int)) == roc_auc(positive, scores)


def test_a_held_out_set_too_small_to_tell_the_model_from_chance_is_warned_about():
    truth, probs = _noisy(23, 0.65)
    small = classification_metrics(truth, ["0", "1"], probs)
    assert small["interval"]["accuracy"][0] <= 0.5  # the interval includes chance
    assert any("held-out examples includes chance (0.500)" in w and w.startswith("accuracy") for w in small["warnings"])
    assert any("only 23 held-out examples" in w for w in small["warnings"])
    # four pages, all right: a degenerate interval, still too few
    four = classification_metrics(["a", "b", "c", "a"], ["a", "b", "c"], np.eye(3)[[0, 1, 2, 0]])
    assert four["accuracy"] == 1.0 and four["chance"] == {"accuracy": 1 / 3}
    assert any("only 4 held-out examples" in w for w in four["warnings"])
    truth, probs = _noisy(4000, 0.65)
    assert classification_metrics(truth, ["0", "1"], probs)["warnings"] == []  # the same model on enough data
