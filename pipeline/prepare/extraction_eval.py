"""Extraction quality as three public benchmarks score it, plus the page folds for cross-validation.

- trafilatura (tests/comparison_small.py): each `with` snippet found verbatim in the text is a true
  positive, else a false negative; each `without` snippet found is a false positive, else a true
  negative; no extraction counts all `with` as missed. Counts are summed over all pages; precision
  tp/(tp+fp), recall tp/(tp+fn), F1 2tp/(2tp+fp+fn).
- scrapinghub article-extraction-benchmark (evaluate.py): \\w+ tokens, shingles of 4 tokens (a text
  shorter than 4 tokens is one shingle), multiset tp/fp/fn per page normalised by their sum; precision
  is the mean over pages with tp+fp > 0, recall the mean over pages with tp+fn > 0, F1 of the means.
- magic-html: the data README's definition, character-bigram F1: the texts lowercased (NFKC) without
  whitespace, multisets of character bigrams, per-page precision/recall/F1 (both empty: 1; one empty:
  0), averaged over pages. (magic-html's own benchmark script computes summary-level ROUGE-L over
  jieba words of ltp-split sentences; jieba and ltp are not dependencies of thresher.)
"""

from __future__ import annotations

import re
import statistics
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from thresher.pipeline.seeded_hash import unit_hash

FOLD_SEED = 14  # fixed: the folds are part of the benchmark's definition
SHINGLE_TOKENS = 4
_WORD = re.compile(r"\w+", re.UNICODE)
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    f1: float
    pages: int


def url_fold(url: str, folds: int = 5) -> int:
    """The cross-validation fold of a page: a hash of its URL, so it never depends on page order."""
    return int(unit_hash(FOLD_SEED, url) * folds)


def cv_splits(urls: Iterable[str], folds: int = 5) -> list[tuple[set[str], set[str]]]:
    """(training pages, held-out pages) of each fold: every page is held out exactly once, and a page
    (all its lines) is never on both sides."""
    pages = set(urls)
    return [({u for u in pages if url_fold(u, folds) != k}, {u for u in pages if url_fold(u, folds) == k}) for k in range(folds)]


def snippet_counts(text: str | None, with_snippets: Sequence[str], without_snippets: Sequence[str]) -> tuple[int, int, int, int]:
    """(tp, fn, fp, tn) of one page, as trafilatura's evaluation counts them."""
    if not isinstance(text, str):
        return 0, len(with_snippets), 0, len(without_snippets)
    tp = sum(snippet in text for snippet in with_snippets)
    fp = sum(snippet in text for snippet in without_snippets)
    return tp, len(with_snippets) - tp, fp, len(without_snippets) - fp


def snippet_scores(counts: Iterable[tuple[int, int, int, int]]) -> Scores:
    counts = list(counts)
    tp, fn, fp, _tn = (sum(column) for column in zip(*counts, strict=True)) if counts else (0, 0, 0, 0)
    return Scores(tp / (tp + fp) if tp + fp else 0.0, tp / (tp + fn) if tp + fn else 0.0, 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0, len(counts))


def _shingles(text: str | None) -> Counter:
    tokens = _WORD.findall(text or "")
    return Counter(tuple(tokens[i : i + SHINGLE_TOKENS]) for i in range(max(1, len(tokens) - SHINGLE_TOKENS + 1)) if tokens[i : i + SHINGLE_TOKENS])


def shingle_tp_fp_fn(true: str | None, pred: str | None) -> tuple[float, float, float]:
    """One page's (tp, fp, fn) over 4-token shingles, normalised to sum to 1 (scrapinghub)."""
    truth, guess = _shingles(true), _shingles(pred)
    tp = sum((truth & guess).values())
    fp = sum((guess - truth).values())
    fn = sum((truth - guess).values())
    total = tp + fp + fn
    return (tp / total, fp / total, fn / total) if total else (0.0, 0.0, 0.0)


def _precision(tp: float, fp: float, fn: float) -> float:
    if fp == fn == 0:
        return 1.0
    return 0.0 if tp == fp == 0 else tp / (tp + fp)


def _recall(tp: float, fp: float, fn: float) -> float:
    if fp == fn == 0:
        return 1.0
    return 0.0 if tp == fn == 0 else tp / (tp + fn)


def shingle_scores(per_page: Sequence[tuple[float, float, float]]) -> Scores:
    precisions = [_precision(*page) for page in per_page if page[0] + page[1] > 0]
    recalls = [_recall(*page) for page in per_page if page[0] + page[2] > 0]
    precision = statistics.mean(precisions) if precisions else 0.0
    recall = statistics.mean(recalls) if recalls else 0.0
    return Scores(precision, recall, 2 * precision * recall / (precision + recall) if precision + recall else 0.0, len(per_page))


def _bigrams(text: str | None) -> Counter:
    flat = _SPACE.sub("", unicodedata.normalize("NFKC", text or "").lower())
    return Counter(flat[i : i + 2] for i in range(len(flat) - 1)) if len(flat) > 1 else Counter(flat)


def bigram_prf(true: str | None, pred: str | None) -> tuple[float, float, float]:
    """One page's character-bigram (precision, recall, F1)."""
    truth, guess = _bigrams(true), _bigrams(pred)
    if not truth and not guess:
        return 1.0, 1.0, 1.0
    overlap = sum((truth & guess).values())
    if not overlap:
        return 0.0, 0.0, 0.0
    precision, recall = overlap / sum(guess.values()), overlap / sum(truth.values())
    return precision, recall, 2 * precision * recall / (precision + recall)


def bigram_scores(per_page: Sequence[tuple[float, float, float]]) -> Scores:
    """Mean per-page precision, recall and F1."""
    if not per_page:
        return Scores(0.0, 0.0, 0.0, 0)
    return Scores(*(statistics.mean(column) for column in zip(*per_page, strict=True)), len(per_page))
