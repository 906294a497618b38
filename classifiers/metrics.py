"""Held-out evaluation figures: accuracy, macro-F1, and ROC AUC for binary tasks (no sklearn needed),
each with a seeded percentile-bootstrap interval, the chance level, and warnings when the interval
cannot tell the model from chance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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


def classification_metrics(truth: Sequence[str], labels: Sequence[str], probs: np.ndarray) -> dict[str, Any]:
    """accuracy, macro_f1, examples; plus auc when the model has two labels; each figure's bootstrap
    interval (`interval`), the chance level (`chance`) and `warnings`. `probs` columns follow `labels`."""
    predicted = [labels[i] for i in probs.argmax(axis=1)] if len(truth) else []
    result: dict[str, Any] = {
        "examples": len(truth),
        "accuracy": accuracy(truth, predicted),
        "macro_f1": macro_f1(truth, predicted),
    }
    positive_scores = is_positive = None
    if len(labels) == 2:
        positive = positive_label(labels)
        is_positive = np.array([t == positive for t in truth], dtype=bool)
        positive_scores = probs[:, list(labels).index(positive)] if len(truth) else np.zeros(0)
        result["auc"] = roc_auc(is_positive, positive_scores)
        result["positive_label"] = positive
    if truth:
        result["interval"] = bootstrap_intervals(truth, predicted, is_positive, positive_scores)
    result["chance"] = chance_levels(len(labels))
    result["warnings"] = chance_warnings(result)
    return result


# The interval of every model figure: a percentile bootstrap over the evaluated examples, seeded.
INTERVAL_LEVEL = 0.95
INTERVAL_RESAMPLES = 1000
INTERVAL_SEED = 0
# Fewer held-out examples than this get a warning whatever the interval says: a percentile bootstrap
# of a handful of examples (all right, say) is degenerate, not narrow.
MIN_HELDOUT_EXAMPLES = 30


def chance_levels(classes: int) -> dict[str, float]:
    """What a model that learned nothing scores: accuracy 1/classes (a uniform guess), AUC 0.5 (two labels)."""
    levels = {"accuracy": 1.0 / classes} if classes else {}
    if classes == 2:
        levels["auc"] = 0.5
    return levels


def bootstrap_intervals(
    truth: Sequence[str],
    predicted: Sequence[str],
    is_positive: Sequence[bool] | None = None,
    positive_scores: Sequence[float] | None = None,
    level: float = INTERVAL_LEVEL,
    resamples: int = INTERVAL_RESAMPLES,
    seed: int = INTERVAL_SEED,
) -> dict[str, Any]:
    """Percentile-bootstrap intervals of accuracy and macro-F1 (and AUC with `is_positive` and
    `positive_scores`): the examples resampled with replacement `resamples` times from a generator
    seeded with `seed`, each figure's (1-level)/2 and (1+level)/2 quantiles over the resamples.
    A resample without both classes has no AUC and is left out of the AUC's quantiles."""
    classes = sorted(set(truth) | set(predicted))
    index = {c: i for i, c in enumerate(classes)}
    t = np.array([index[c] for c in truth], dtype=np.int64)
    p = np.array([index[c] for c in predicted], dtype=np.int64)
    n, k = len(t), len(classes)
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, n, n) for _ in range(resamples)]
    acc, f1, auc = np.empty(resamples), np.empty(resamples), np.empty(resamples)
    auc_order = None
    if is_positive is not None and positive_scores is not None:
        auc_order = _auc_groups(np.asarray(is_positive, dtype=bool), np.asarray(positive_scores, dtype=np.float64))
    for r, rows in enumerate(draws):
        counts = np.bincount(rows, minlength=n)
        confusion = np.bincount(t * k + p, weights=counts, minlength=k * k).reshape(k, k)
        tp = np.diag(confusion)
        acc[r] = tp.sum() / n
        seen = (confusion.sum(axis=0) + confusion.sum(axis=1)) > 0
        denominator = confusion.sum(axis=0) + confusion.sum(axis=1)  # 2tp + fp + fn
        f1[r] = np.mean(np.where(tp[seen] > 0, 2 * tp[seen] / np.maximum(denominator[seen], 1), 0.0))
        if auc_order is not None:
            auc[r] = _weighted_auc(auc_order, counts)
    low, high = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    result: dict[str, Any] = {"level": level, "method": "percentile bootstrap", "resamples": resamples, "seed": seed}
    for name, values in (("accuracy", acc), ("macro_f1", f1), *((("auc", auc),) if auc_order is not None else ())):
        values = values[~np.isnan(values)]
        result[name] = [round(float(np.percentile(values, low)), 6), round(float(np.percentile(values, high)), 6)] if len(values) else None
    return result


def _auc_groups(is_positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """(order of the examples by score, tie-group number of each example in that order, groups, is_positive in that order)."""
    order = np.argsort(scores, kind="mergesort")
    ranked = scores[order]
    group = np.concatenate([[0], np.cumsum(ranked[1:] != ranked[:-1])]) if len(ranked) else np.zeros(0, np.int64)
    return order, group, (int(group[-1]) + 1 if len(group) else 0), is_positive[order]


def _weighted_auc(groups, counts: np.ndarray) -> float:
    """The Mann-Whitney AUC of a resample given as a count per example (ties counted half)."""
    order, group, n_groups, positive = groups
    weights = counts[order].astype(np.float64)
    pos = np.bincount(group, weights=weights * positive, minlength=n_groups)
    neg = np.bincount(group, weights=weights * ~positive, minlength=n_groups)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    below = np.cumsum(neg) - neg
    return float((pos * (below + 0.5 * neg)).sum() / (n_pos * n_neg))


def chance_warnings(figures: dict[str, Any]) -> list[str]:
    """A line for each figure whose interval includes its chance level (the held-out set cannot tell
    the model from one that learned nothing: too few examples, or a model no better than chance), and
    one for a held-out set under MIN_HELDOUT_EXAMPLES."""
    warnings = []
    examples = figures.get("examples", 0)
    if 0 < examples < MIN_HELDOUT_EXAMPLES:
        warnings.append(f"only {examples} held-out examples (fewer than {MIN_HELDOUT_EXAMPLES}): too few for its "
                        "figures or their intervals to tell the model from chance")
    interval, chance = figures.get("interval") or {}, figures.get("chance") or {}
    for name in ("accuracy", "auc"):
        bounds, level = interval.get(name), chance.get(name)
        if bounds is not None and level is not None and bounds[0] <= level:
            warnings.append(
                f"{name} {figures[name]:.3f}, {interval['level']:.0%} interval [{bounds[0]:.3f}, {bounds[1]:.3f}] on "
                f"{figures['examples']} held-out examples includes chance ({level:.3f}): too few examples (or too weak "
                "a model) to tell it from chance"
            )
    return warnings

