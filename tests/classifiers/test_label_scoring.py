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


def test_batched_scoring_with_a_shared_instruction_cache_equals_one_document_at_a_time(scorer):
    """Several documents per forward pass (padding, a tree of answers under a 4-D mask), the shared
    instructions computed once and their key/value cache reused across batches: the same
    log-likelihoods as one full forward pass per document and answer."""
    from thresher.classifiers.label_scoring import ScoringRequest

    instructions = "Judge the page below. 判断下面的网页。\nLabels: article, forum, listing.\nDocument:\n"
    shared = len(scorer.encode_prompt(instructions)) - 1  # the last one may merge with the document
    documents = ["A short one.", "A much longer document about the weather, trains and 中文 text " * 3, "x", "Another page."]
    answers = [scorer.encode_answer(label) for label in PAGE_TYPES]
    requests = [ScoringRequest(scorer.encode_prompt(instructions + d + "\nAnswer:"), answers, shared) for d in documents]
    assert len({len(r.prompt_ids) for r in requests}) == len(requests)  # rows of different lengths: padding
    for batch in (requests, requests[1:3], requests[:1]):  # the second and third reuse the cached instructions
        for request, batched in zip(batch, scorer.score_many(batch), strict=True):
            one = scorer.label_logprobs_separately(request.prompt_ids, request.answers)
            assert np.allclose(batched, one, atol=1e-4, rtol=0), np.abs(batched - one).max()
    assert tuple(requests[0].prompt_ids[:shared]) in scorer._prefixes  # computed once, kept
    mixed = [requests[0], ScoringRequest(scorer.encode_prompt("Other instructions: " + documents[1]), [[5], [7, 9, 11]], 3)]
    for request, batched in zip(mixed, scorer.score_many(mixed), strict=True):  # two groups of instructions in one call
        assert np.allclose(batched, scorer.label_logprobs_separately(request.prompt_ids, request.answers), atol=1e-4, rtol=0)


def test_label_scores_sum_mean_and_calibrated():
    """Summed log-likelihoods favour the label of fewer tokens; mean per token and calibration do not."""
    from thresher.classifiers.label_scoring import label_scores, normalised

    totals = np.array([-3.0, -4.5])  # a 1-token label, a 3-token label at -1.5 a token
    answers = [[1], [2, 3, 4]]
    assert normalised(label_scores(totals, answers, "sum")).argmax() == 0  # short label wins
    assert np.allclose(label_scores(totals, answers, "mean"), [-3.0, -1.5])
    assert normalised(label_scores(totals, answers, "mean")).argmax() == 1
    content_free = np.array([-1.0, -6.0])  # the short label is likely whatever the document
    assert np.allclose(label_scores(totals, answers, "calibrated", content_free), [-2.0, 1.5])
    with pytest.raises(ValueError, match="content-free"):
        label_scores(totals, answers, "calibrated")
    with pytest.raises(ValueError, match="sum, mean, calibrated"):
        label_scores(totals, answers, "max")


def test_an_instruct_models_chat_template_frames_the_prompt_and_closes_the_answer(lm_dir, tmp_path):
    import json
    import shutil

    from thresher.classifiers.label_scoring import CausalLMScorer

    model = shutil.copytree(lm_dir, tmp_path / "instruct")
    config_file = model / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["chat_template"] = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    config_file.write_text(json.dumps(config))
    chat, plain = CausalLMScorer(model, "cpu"), CausalLMScorer(lm_dir, "cpu")
    assert chat.chat and not plain.chat
    decode = chat.tokenizer.decode
    assert decode(chat.encode_prompt("Is it good?\nAnswer:")) == "<|im_start|>user\nIs it good?\nAnswer:<|im_end|>\n<|im_start|>assistant\n"
    assert decode(chat.encode_answer("high")) == "high<|im_end|>"
    assert decode(plain.encode_prompt("Is it good?")) == "Is it good?" and decode(plain.encode_answer("high")) == " high\n"
    prompt = chat.encode_prompt("Is it good?")
    answers = [chat.encode_answer(x) for x in ("high", "low")]
    assert np.allclose(chat.label_logprobs(prompt, answers), chat.label_logprobs_separately(prompt, answers), atol=1e-5)
