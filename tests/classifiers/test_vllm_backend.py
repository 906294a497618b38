"""The vLLM backend's own logic, without vLLM: vLLM is not installed here (it would replace torch). Its
input is built from the tiny transformers causal LM's real logits in the shape vLLM returns
(`RequestOutput.prompt_logprobs`: a list with None first, then {token_id: Logprob} per position;
for one generated token, `outputs[0].logprobs[0]`: {token_id: Logprob}), and what the vLLM side
makes of it is compared with the transformers scorer. The `vllm.LLM` call
itself runs only on a GPU machine with vLLM (bench/gpu_checks_tagger.sh, bench/check_vllm_scorer.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from thresher.classifiers.annotate import annotate_file, label_sets
from thresher.classifiers.label_scoring import CausalLMScorer, answer_requests, normalised
from thresher.classifiers.page_type import PAGE_TYPES
from thresher.classifiers.vllm_backend import answer_logprobs, answer_logprobs_from_steps, sampled_logprob, token_steps
from thresher.pipeline.config import ConfigError

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


def generated_one(model, prefix: list[int], token: int):
    """What vLLM returns for `prefix` with max_tokens=1, logprobs=0, allowed_token_ids=[token]: the token,
    generated, with its raw log-probability (before the mask), here from the transformers model."""
    with torch.inference_mode():
        logprob = float(torch.log_softmax(model(input_ids=torch.tensor([prefix])).logits[0, -1].float(), dim=-1)[token])
    return SimpleNamespace(outputs=[SimpleNamespace(token_ids=[token], logprobs=[{token: Logprob(logprob, rank=None)}])])


class PromptLogprobsScorer(CausalLMScorer):
    """VLLMScorer.label_logprobs (--vllm-scoring prompt_logprobs) with the engine's part done by the
    transformers model: the same requests, each's prompt logprobs as vLLM shapes them, read by `answer_logprobs`."""

    def label_logprobs(self, prompt_ids, answers):
        outputs = [prompt_logprobs(self.model, sequence) for sequence in answer_requests(prompt_ids, answers)]
        return answer_logprobs(outputs, len(prompt_ids), answers)


class PrefixCacheScorer(CausalLMScorer):
    """VLLMScorer.label_logprobs (--vllm-scoring prefix_cache) likewise: the same steps, each's generated
    token as vLLM shapes it, read by `sampled_logprob` and summed by `answer_logprobs_from_steps`."""

    def label_logprobs(self, prompt_ids, answers):
        steps, uses = token_steps(prompt_ids, answers)
        return answer_logprobs_from_steps([sampled_logprob(generated_one(self.model, prefix, token), token) for prefix, token in steps], uses)


def test_label_logprobs_from_vllm_shaped_prompt_logprobs_equal_the_transformers_scorer(scorer):
    prompt = scorer.encode_prompt("Which page type is this? 这是哪一类网页？\nAnswer:")
    for labels in (PAGE_TYPES, label_sets("topic").domains.labels, ("keep", "clutter")):
        answers = [scorer.encode_answer(label) for label in labels]
        outputs = [prompt_logprobs(scorer.model, sequence) for sequence in answer_requests(prompt, answers)]
        from_prompt_logprobs = answer_logprobs(outputs, len(prompt), answers)
        steps, uses = token_steps(prompt, answers)
        from_steps = answer_logprobs_from_steps([sampled_logprob(generated_one(scorer.model, p, t), t) for p, t in steps], uses)
        shared = scorer.label_logprobs(prompt, answers)  # the transformers scorer: one prompt pass, cache shared
        for from_vllm in (from_prompt_logprobs, from_steps):
            # fp32 both ways; log-likelihoods near -60 differ in the last bits of their summed terms
            assert np.allclose(from_vllm, shared, atol=1e-4, rtol=0), np.abs(from_vllm - shared).max()
            assert np.allclose(normalised(from_vllm), normalised(shared), atol=1e-6)
            assert len(np.unique(np.round(from_vllm, 3))) > 1


def test_token_steps_share_the_prompt_and_common_leading_tokens():
    steps, uses = token_steps([1, 2], [[5, 6], [5, 7], [8]])
    assert steps == [([1, 2], 5), ([1, 2, 5], 6), ([1, 2, 5], 7), ([1, 2], 8)]  # one step for the shared first token 5
    assert uses == [[0, 1], [0, 2], [3]]
    assert answer_logprobs_from_steps([-1.0, -2.0, -3.0, -0.5], uses).tolist() == [-3.0, -4.0, -0.5]
    with pytest.raises(ValueError, match="at least one token"):
        token_steps([1], [[]])


def test_sampled_logprob_reads_the_allowed_token_and_refuses_another():
    output = SimpleNamespace(outputs=[SimpleNamespace(token_ids=[7], logprobs=[{7: Logprob(-2.5)}])])
    assert sampled_logprob(output, 7) == -2.5
    with pytest.raises(ValueError, match=r"generated \[7\], not the one allowed token 9"):
        sampled_logprob(output, 9)


def test_the_vllm_scorer_without_vllm_is_one_line(lm_dir):
    from thresher.classifiers.vllm_backend import VLLMScorer

    with pytest.raises(ConfigError, match=r"^--backend vllm: vLLM is not installed \(pip install vllm"):
        VLLMScorer(lm_dir)
    with pytest.raises(ConfigError, match="--vllm-scoring must be one of prefix_cache, prompt_logprobs"):
        VLLMScorer(lm_dir, scoring="sampled")



def test_answer_logprobs_sum_the_answer_positions_only_and_refuse_a_mismatch():
    positions = [None, {2: Logprob(-9.0)}, {7: Logprob(-0.5)}, {8: Logprob(-1.25)}]
    assert answer_logprobs([positions], 2, [[7, 8]]).tolist() == [-1.75]  # the prompt's own -9.0 is not counted
    with pytest.raises(ValueError, match="cover 4 tokens, the request has 5"):
        answer_logprobs([positions], 3, [[7, 8]])
    with pytest.raises(ValueError, match="1 prompt-logprob lists for 2 answers"):
        answer_logprobs([positions], 2, [[7, 8], [9, 9]])


def test_the_domain_then_subtopic_walk_through_the_vllm_conversions_writes_the_transformers_rows(rules_dir, lm_dir, scorer, tmp_path):
    for task, through_vllm in (("topic", PrefixCacheScorer(lm_dir, "cpu")), ("page_type", PromptLogprobsScorer(lm_dir, "cpu"))):
        rows = {}
        for name, each in (("transformers", scorer), ("vllm", through_vllm)):
            out = tmp_path / f"{task}-{name}.jsonl"
            annotate_file(rules_dir, out, task, each, sample=4, seed=2, max_chars=200)
            rows[name] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert len(rows["vllm"]) == len(rows["transformers"]) == 4
        for a, b in zip(rows["transformers"], rows["vllm"], strict=True):
            assert (a["doc_id"], a["label"], a["model_hash"], a["prompt_hash"]) == (b["doc_id"], b["label"], b["model_hash"], b["prompt_hash"])
            # fp32: the prompt's pass differs in length between the ways (batched answers vs one prefix each)
            assert b["probability"] == pytest.approx(a["probability"], abs=1e-5)
            assert b["label_probabilities"].keys() == a["label_probabilities"].keys()
            assert np.allclose(list(b["label_probabilities"].values()), list(a["label_probabilities"].values()), atol=1e-5)
            if task == "topic":
                assert np.allclose(list(b["domain_probabilities"].values()), list(a["domain_probabilities"].values()), atol=1e-5)
