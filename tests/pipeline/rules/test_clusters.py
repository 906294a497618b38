"""The cluster table's per-member figures: estimated Jaccard and the bounded line diff."""

from __future__ import annotations

import numpy as np

from thresher.pipeline.rules.clusters import DIFF_LINE_CHARS, DIFF_MAX_CHARS, estimated_jaccard, line_diff
from thresher.pipeline.rules.minhash import MinHasher


def test_estimated_jaccard_is_the_share_of_equal_minhash_values():
    assert estimated_jaccard(np.array([1, 2, 3, 4], np.uint32), np.array([1, 0, 3, 0], np.uint32)) == 0.5
    hasher = MinHasher(2048, seed=1, ngram=1)
    words = [f"w{i}" for i in range(200)]
    # 150 shared of 250 distinct words: Jaccard 0.6, the estimate within a few hundredths.
    estimate = estimated_jaccard(hasher.signature(words[:200]), hasher.signature(words[50:] + [f"x{i}" for i in range(50)]))
    assert abs(estimate - 0.6) < 0.05


def test_the_line_diff_pairs_each_removed_line_with_the_one_that_replaced_it():
    kept = "title\nfirst paragraph\nsecond paragraph\nthird\nfooter"
    member = "title\nfirst paragraph, edited\nsecond paragraph, edited\nthird\nnew footer\nextra"
    assert line_diff(kept, member).splitlines() == [
        "@@ kept line 2, member line 2", "-first paragraph", "+first paragraph, edited",
        "-second paragraph", "+second paragraph, edited",
        "@@ kept line 5, member line 5", "-footer", "+new footer", "+extra"]
    assert line_diff(kept, kept) == ""


def test_the_line_diff_is_cut_per_line_where_the_pair_differs_and_in_all():
    long_line = "word " * 200
    diff = line_diff(long_line + "end", long_line + "more")
    removed, added = diff.splitlines()[1:]
    assert len(removed) <= DIFF_LINE_CHARS + 3 and removed.startswith("-…") and removed.endswith("end")
    assert added.endswith("more")  # the change is shown, not the line's unchanged start
    many = "\n".join(f"line {i}" for i in range(2_000))
    diff = line_diff(many, many.replace("line", "LINE"))
    assert len(diff) <= DIFF_MAX_CHARS + 60 and diff.endswith(f"… (diff cut at {DIFF_MAX_CHARS:,} characters)")
