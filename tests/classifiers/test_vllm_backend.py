"""The vLLM backend's own logic, without vLLM: vLLM is not installed here (it would replace torch). Its
input is built from the tiny transformers causal LM's real logits in the shape vLLM returns
(`RequestOutput.prompt_logprobs`: a list with None first, then {token_id: Logprob} per position),
and what the vLLM side makes of it is compared with the transformers scorer. The `vllm.LLM` call
itself runs only on a GPU machine with vLLM (bench/gpu_checks_tagger.sh, bench/check_vllm_scorer.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from classifiers.annotate import CausalLMScorer, annotate_file, answer_requests, label_sets, normalised
from classifiers.page_type import PAGE_TYPES
from classifiers.vllm_backend import answer_logprobs

torch.set_num_threads(1)


@dataclass
class Logprob:  # the fields of vllm.logprobs.Logprob
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


def prompt_logprobs(model, sequence: list[int]) -> list[dict[int, Logprob] | None]:
    """What vLLM returns for `sequence` with prompt_logprobs=0: each position's own token's
    log-probability given the tokens before it (the first has none), here from the transformers model."""
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(input_ids=torch.tensor([sequence])).logits[0].float(), dim=-1)
    return [None] + [{token: Logprob(float(logprobs[i - 1, token]), rank=None)} for i, token in enumerate(sequence) if i > 0]


class PromptLogprobsScorer(CausalLMScorer):
    """The vLLM scorer's label_logprobs with the engine's part done by the transformers model: the same
    requests (`answer_requests`), each's prompt logprobs as vLLM shapes them, read by `answer_logprobs`."""

    def label_logprobs(self, prompt_ids, answers):
        outputs = [prompt_logprobs(self.model, sequence) for sequence in answer_requests(prompt_ids, answers)]
        return answer_logprobs(outputs, len(prompt_ids), answers)


def test_label_logprobs_from_vllm_shaped_prompt_logprobs_equal_the_transformers_scorer(scorer):
    prompt = scorer.encode_prompt("Which page type is this? 这是哪一类网页？\nAnswer:")
    for labels in (PAGE_TYPES, label_sets("topic").domains.labels, ("keep", "clutter")):
        answers = [scorer.encode_answer(label) for label in labels]
        outputs = [prompt_logprobs(scorer.model, sequence) for sequence in answer_requests(prompt, answers)]
        from_vllm = answer_logprobs(outputs, len(prompt), answers)
        shared = scorer.label_logprobs(prompt, answers)  # the transformers scorer: one prompt pass, cache shared
        # fp32 both ways; log-likelihoods near -60 differ in the last bits of their summed terms
        assert np.allclose(from_vllm, shared, atol=1e-4, rtol=0), np.abs(from_vllm - shared).max()
        assert np.allclose(normalised(from_vllm), normalised(shared), atol=1e-6)
        assert len(np.unique(np.round(from_vllm, 3))) > 1


def test_answer_requests_are_the_prompt_then_each_answer():
    assert answer_requests([1, 2, 3], [[7], [8, 9]]) == [[1, 2, 3, 7], [1, 2, 3, 8, 9]]
    with pytest.raises(ValueError, match="at least one token"):
        answer_requests([1, 2], [[7], []])


def test_answer_logprobs_sum_the_answer_positions_only_and_refuse_a_mismatch():
    positions = [None, {2: Logprob(-9.0)}, {7: Logprob(-0.5)}, {8: Logprob(-1.25)}]
    assert answer_logprobs([positions], 2, [[7, 8]]).tolist() == [-1.75]  # the prompt's own -9.0 is not counted
    with pytest.raises(ValueError, match="cover 4 tokens, the request has 5"):
        answer_logprobs([positions], 3, [[7, 8]])
    with pytest.raises(ValueError, match="1 prompt-logprob lists for 2 answers"):
        answer_logprobs([positions], 2, [[7, 8], [9, 9]])


def test_the_domain_then_subtopic_walk_through_the_vllm_conversion_writes_the_transformers_rows(rules_dir, lm_dir, scorer, tmp_path):
    through_vllm = PromptLogprobsScorer(lm_dir, "cpu")
    for task in ("topic", "page_type"):
        rows = {}
        for name, each in (("transformers", scorer), ("vllm", through_vllm)):
            out = tmp_path / f"{task}-{name}.jsonl"
            annotate_file(rules_dir, out, task, each, sample=4, seed=2, max_chars=200)
            rows[name] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert len(rows["vllm"]) == len(rows["transformers"]) == 4
        for a, b in zip(rows["transformers"], rows["vllm"], strict=True):
            assert (a["doc_id"], a["label"], a["model_hash"], a["prompt_hash"]) == (b["doc_id"], b["label"], b["model_hash"], b["prompt_hash"])
            assert b["probability"] == pytest.approx(a["probability"], abs=1e-6)
            assert b["label_probabilities"].keys() == a["label_probabilities"].keys()
            assert np.allclose(list(b["label_probabilities"].values()), list(a["label_probabilities"].values()), atol=1e-6)
            if task == "topic":
                assert np.allclose(list(b["domain_probabilities"].values()), list(a["domain_probabilities"].values()), atol=1e-6)
