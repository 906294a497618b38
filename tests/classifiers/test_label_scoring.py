"""Label scoring: the transformers scorer's shared-prefix log-likelihoods and the answer sequences a
whole-sequence backend scores."""

from __future__ import annotations

import numpy as np
import pytest

from thresher.classifiers.annotate import label_sets
from thresher.classifiers.label_scoring import answer_requests
from thresher.classifiers.page_type import PAGE_TYPES


def test_shared_prefix_scoring_equals_scoring_each_label_separately(scorer):
    taxonomy_domains = label_sets("topic").domains.labels
    prompt = scorer.encode_prompt("Which domain is this document about? 这篇文档属于哪个领域？\nAnswer:")
    for labels in (PAGE_TYPES, taxonomy_domains, ("keep", "clutter")):
        answers = [scorer.encode_answer(label) for label in labels]
        assert len({len(a) for a in answers}) > 1 or len(labels) == 2  # answers of several lengths share a batch
        shared = scorer.label_logprobs(prompt, answers)
        separate = scorer.label_logprobs_separately(prompt, answers)
        assert np.allclose(shared, separate, atol=1e-5, rtol=0), np.abs(shared - separate).max()
        assert len(np.unique(np.round(shared, 3))) > 1  # real, differing scores
    one_token = [[scorer.tokenizer.eos_token_id], [5], [7, 9]]
    assert np.allclose(scorer.label_logprobs(prompt, one_token), scorer.label_logprobs_separately(prompt, one_token), atol=1e-5)


def test_answer_requests_are_the_prompt_then_each_answer():
    assert answer_requests([1, 2, 3], [[7], [8, 9]]) == [[1, 2, 3, 7], [1, 2, 3, 8, 9]]
    with pytest.raises(ValueError, match="at least one token"):
        answer_requests([1, 2], [[7], []])
