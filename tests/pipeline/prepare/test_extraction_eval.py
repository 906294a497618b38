"""The three benchmarks' scoring on hand-made cases, and the URL-hash folds."""

from __future__ import annotations

import pytest

from thresher.pipeline.prepare.extraction_eval import (
    bigram_prf,
    bigram_scores,
    cv_splits,
    shingle_scores,
    shingle_tp_fp_fn,
    snippet_counts,
    snippet_scores,
    url_fold,
)


def test_snippets_count_verbatim_matches_and_sum_over_pages():
    text = "The river floods every spring.\nShare this article"
    assert snippet_counts(text, ["river floods", "farmers plant"], ["Share this", "Sign up"]) == (1, 1, 1, 1)
    assert snippet_counts(None, ["a", "b"], ["c"]) == (0, 2, 0, 1)  # no extraction: every wanted snippet missed
    assert snippet_counts(text, ["River floods"], []) == (0, 1, 0, 0)  # verbatim, case-sensitive, as trafilatura's eval
    scores = snippet_scores([(1, 1, 1, 1), (3, 0, 0, 2)])
    assert scores.precision == pytest.approx(4 / 5) and scores.recall == pytest.approx(4 / 5)
    assert scores.f1 == pytest.approx(8 / 10) and scores.pages == 2


def test_shingles_are_four_token_multisets_normalised_per_page():
    truth = "one two three four five"  # shingles: (1 2 3 4), (2 3 4 5)
    assert shingle_tp_fp_fn(truth, truth) == (1.0, 0.0, 0.0)
    tp, fp, fn = shingle_tp_fp_fn(truth, "one two three four six")  # (1 2 3 4) right, (2 3 4 6) wrong
    assert (tp, fp, fn) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert shingle_tp_fp_fn("a b", "a b") == (1.0, 0.0, 0.0)  # shorter than 4 tokens: one shingle
    assert shingle_tp_fp_fn(truth, "") == (0.0, 0.0, 1.0)


def test_shingle_scores_average_pages_as_scrapinghub_does():
    # a perfect page and an empty prediction: precision skips the page with tp+fp == 0, recall counts it
    scores = shingle_scores([(1.0, 0.0, 0.0), (0.0, 0.0, 1.0)])
    assert scores.precision == 1.0 and scores.recall == 0.5
    assert scores.f1 == pytest.approx(2 * 0.5 / 1.5)


def test_bigrams_ignore_whitespace_and_case():
    assert bigram_prf("中国 地震", "中国地震") == (1.0, 1.0, 1.0)
    assert bigram_prf("Tea Time", "tea\ntime") == (1.0, 1.0, 1.0)
    precision, recall, f1 = bigram_prf("abcd", "abcdxy")  # 3 of the 5 predicted bigrams are true
    assert (precision, recall) == pytest.approx((3 / 5, 1.0)) and f1 == pytest.approx(0.75)
    assert bigram_prf("abc", "") == (0.0, 0.0, 0.0) and bigram_prf("", "") == (1.0, 1.0, 1.0)
    assert bigram_scores([(1.0, 1.0, 1.0), (0.0, 0.0, 0.0)]).f1 == 0.5


def test_url_folds_are_stable_and_spread():
    urls = [f"https://example.org/page/{i}" for i in range(500)]
    folds = [url_fold(url) for url in urls]
    assert folds == [url_fold(url) for url in reversed(urls)][::-1]  # a function of the URL alone
    assert set(folds) == {0, 1, 2, 3, 4}
    assert min(folds.count(k) for k in range(5)) > 60


def test_cross_validation_never_shares_a_page_between_training_and_scoring():
    urls = [f"https://example.org/{i}" for i in range(200)] * 3  # a page's many lines: its URL repeated
    splits = cv_splits(urls, folds=5)
    assert len(splits) == 5
    held_out = [url for _, held in splits for url in held]
    assert sorted(held_out) == sorted(set(urls))  # each page scored exactly once
    for train, held in splits:
        assert not train & held and train | held == set(urls)
