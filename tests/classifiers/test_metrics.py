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
