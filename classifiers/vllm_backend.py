"""vLLM as the engine of `thresher annotate --backend vllm`: the same constrained label scoring as the
transformers scorer (classifiers.annotate.CausalLMScorer), read from vLLM's prompt log-probabilities.

For each label, one request is the prompt followed by the label's tokens (`answer_requests`), run with
`SamplingParams(max_tokens=1, prompt_logprobs=0)`: vLLM then returns, for every prompt position
after the first, the log-probability of the token that is there (`RequestOutput.prompt_logprobs`, a
list of {token_id: Logprob} with None first; vllm/logprobs.py), and log P(label | prompt) is the sum
over the label's positions (`answer_logprobs`). The labels of one step go to `LLM.generate` as one
batch. Tokenizer, prompts, the domain-then-subtopic walk and the normalisation are the ones the
transformers scorer uses (classifiers.annotate).

Prefix caching (`enable_prefix_caching=True`) is on, but vLLM V1 does not read the prefix cache for a
request that asks for prompt logprobs: it prefills the whole prompt again to produce them (vllm PR
#17251, `KVCacheManager.get_computed_blocks`; the V1 guide as of PR #23399), so each label's request
pays for the prompt. vLLM is optional and never imported unless this backend is chosen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.annotate import LabelScorer, answer_requests
from pipeline.config import ConfigError

INSTALL_HINT = "--backend vllm: vLLM is not installed (pip install vllm, on a CUDA machine); --backend transformers needs nothing more"


def answer_logprobs(
    prompt_logprobs: Sequence[Sequence[Mapping[int, Any] | None]], prompt_length: int, answers: Sequence[Sequence[int]]
) -> np.ndarray:
    """log P(answer | prompt) for each answer, from the prompt logprobs of its request (`answer_requests`
    order): position i of a request's list maps token ids to objects with `.logprob` (vllm Logprob),
    the one of the token at position i among them; position 0 is None (nothing precedes it)."""
    if len(prompt_logprobs) != len(answers):
        raise ValueError(f"{len(prompt_logprobs)} prompt-logprob lists for {len(answers)} answers")
    totals = []
    for positions, answer in zip(prompt_logprobs, answers, strict=True):
        if len(positions) != prompt_length + len(answer):
            raise ValueError(f"prompt logprobs cover {len(positions)} tokens, the request has {prompt_length + len(answer)}")
        totals.append(sum(float(positions[prompt_length + j][token].logprob) for j, token in enumerate(answer)))
    return np.array(totals, dtype=np.float64)


class VLLMScorer(LabelScorer):
    """Label log-likelihoods from a local causal LM run by vLLM (offline `vllm.LLM`) on the visible GPU(s)."""

    def __init__(self, model_dir: str | Path, dtype: str = "auto", gpu_memory_utilization: float = 0.9):
        try:  # first: a missing vLLM is one line before any model file is read
            from vllm import LLM, SamplingParams
        except ImportError:
            raise ConfigError(INSTALL_HINT) from None
        super().__init__(model_dir)
        self.llm = LLM(
            model=str(self.directory),
            tokenizer=str(self.directory),
            dtype=dtype,
            enable_prefix_caching=True,
            gpu_memory_utilization=gpu_memory_utilization,
            seed=0,
        )
        # max_tokens=1: nothing is generated that matters; prompt_logprobs=0: each prompt token's own
        # log-probability only (no top-k alternatives); detokenize=False: ids are all that is read.
        self.params = SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False)

    def label_logprobs(self, prompt_ids: Sequence[int], answers: Sequence[Sequence[int]]) -> np.ndarray:
        requests = [{"prompt_token_ids": sequence} for sequence in answer_requests(prompt_ids, answers)]  # vllm.inputs.TokensPrompt
        outputs = self.llm.generate(requests, self.params, use_tqdm=False)
        return answer_logprobs([output.prompt_logprobs for output in outputs], len(prompt_ids), answers)
