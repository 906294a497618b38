"""Held-out evaluation figures: accuracy, macro-F1, and ROC AUC for binary tasks (no sklearn needed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Labels read as "the positive class" of a binary task, in order of preference.
POSITIVE_NAMES = ("1", "true", "yes", "pos", "positive", "keep", "hq", "good", "clean")


def positive_label(labels: Sequence[str]) -> str:
    """The positive class of a two-label task: a conventional name if one is there, else the last sorted."""
    lowered = {label.lower(): label for label in labels}
    for name in POSITIVE_NAMES:
        if name in lowered:
            return lowered[name]
    return sorted(labels)[-1]


def accuracy(truth: Sequence[str], predicted: Sequence[str]) -> float:
    return float(np.mean([t == p for t, p in zip(truth, predicted, strict=True)])) if truth else float("nan")


def macro_f1(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """Unweighted mean of per-class F1 over every class seen in `truth` or `predicted` (sklearn's default)."""
    classes = sorted(set(truth) | set(predicted))
    scores = []
    for cls in classes:
        tp = sum(t == cls and p == cls for t, p in zip(truth, predicted, strict=True))
        fp = sum(t != cls and p == cls for t, p in zip(truth, predicted, strict=True))
        fn = sum(t == cls and p != cls for t, p in zip(truth, predicted, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(scores)) if scores else float("nan")


def roc_auc(is_positive: Sequence[bool], scores: Sequence[float]) -> float:
    """Area under the ROC curve: the Mann-Whitney U statistic with ties counted half."""
    is_positive = np.asarray(is_positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(is_positive.sum()), int((~is_positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    start = 0
    while start < len(scores):  # average ranks over runs of tied scores
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return float((ranks[is_positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(truth: Sequence[str], labels: Sequence[str], probs: np.ndarray) -> dict[str, float | int]:
    """accuracy, macro_f1, examples; plus auc when the model has two labels. `probs` columns follow `labels`."""
    predicted = [labels[i] for i in probs.argmax(axis=1)] if len(truth) else []
    result: dict[str, float | int] = {
        "examples": len(truth),
        "accuracy": accuracy(truth, predicted),
        "macro_f1": macro_f1(truth, predicted),
    }
    if len(labels) == 2:
        positive = positive_label(labels)
        result["auc"] = roc_auc([t == positive for t in truth], probs[:, list(labels).index(positive)])
        result["positive_label"] = positive
    return result
