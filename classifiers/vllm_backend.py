"""vLLM as the engine of `thresher annotate --backend vllm`: the same constrained label scoring as the
transformers scorer (classifiers.label_scoring.CausalLMScorer), from vLLM's offline `LLM.generate`.
Tokenizer, prompts, the domain-then-subtopic walk and the normalisation are the ones the transformers
scorer uses (classifiers.annotate); only `label_logprobs` is vLLM's. Two ways to get it:

- prefix_cache (default): log P(label | prompt) is a sum over the label's tokens of log P(token |
  prompt + the label's tokens before it). Each distinct (prefix, next token) is one request that
  generates one token restricted to that token (`SamplingParams(max_tokens=1, logprobs=0,
  allowed_token_ids=[token])`); the log-probability vLLM returns for it is the model's raw one,
  computed before the allowed-token mask (V1 sampler: logprobs from the raw output unless
  `logprobs_mode` says otherwise; vllm/v1/sample/sampler.py, docs "vLLM V1 User Guide",
  Logprobs Calculation). With `enable_prefix_caching=True` the prompt's KV blocks are computed once
  (a first request) and reused by every other request of the step, which prefill only the last
  partial block and the label's tokens (docs "Automatic Prefix Caching").
- prompt_logprobs: one request per label, prompt then label (`answer_requests`), with
  `SamplingParams(max_tokens=1, prompt_logprobs=0)`: each position's own token's log-probability
  (`RequestOutput.prompt_logprobs`, a list of {token_id: Logprob} with None first; vllm/logprobs.py),
  summed over the label's positions. Simple, but vLLM V1 does not read the prefix cache for a request
  that asks for prompt logprobs (vllm PR #17251, `KVCacheManager.get_computed_blocks`; V1 guide as of
  PR #23399): every label's request prefills the whole prompt. A cross-check of the first way.

vLLM is optional and never imported unless this backend is chosen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from thresher.classifiers.label_scoring import LabelScorer, answer_requests
from thresher.pipeline.config import ConfigError

INSTALL_HINT = "--backend vllm: vLLM is not installed (pip install vllm, on a CUDA machine); --backend transformers needs nothing more"
SCORING = ("prefix_cache", "prompt_logprobs")


def token_steps(prompt_ids: Sequence[int], answers: Sequence[Sequence[int]]) -> tuple[list[tuple[list[int], int]], list[list[int]]]:
    """(steps, uses): the distinct (prefix, next token) pairs whose log-probabilities add up to the
    answers' (prefix = prompt + the answer's earlier tokens; answers that share leading tokens share
    steps), in first-seen order, and for each answer the indices of its steps."""
    if not answers or any(not answer for answer in answers):
        raise ValueError("every answer needs at least one token")
    index: dict[tuple[int, ...], int] = {}
    steps: list[tuple[list[int], int]] = []
    uses = []
    for answer in answers:
        mine = []
        for j, token in enumerate(answer):
            key = (*answer[:j], token)
            if key not in index:
                index[key] = len(steps)
                steps.append(([*prompt_ids, *answer[:j]], token))
            mine.append(index[key])
        uses.append(mine)
    return steps, uses


def sampled_logprob(output: Any, token: int) -> float:
    """log P(token | request) from a vLLM RequestOutput of one generated token with logprobs=0: its
    `outputs[0].logprobs[0]` maps the generated token's id to its Logprob."""
    generated = output.outputs[0]
    if list(generated.token_ids) != [token]:
        raise ValueError(f"vLLM generated {list(generated.token_ids)}, not the one allowed token {token}")
    return float(generated.logprobs[0][token].logprob)


def answer_logprobs_from_steps(step_logprobs: Sequence[float], uses: Sequence[Sequence[int]]) -> np.ndarray:
    """log P(answer | prompt) for each answer: the sum of its steps' log-probabilities (`token_steps`)."""
    return np.array([sum(step_logprobs[i] for i in mine) for mine in uses], dtype=np.float64)


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

    def __init__(self, model_dir: str | Path, scoring: str = "prefix_cache", dtype: str = "auto", gpu_memory_utilization: float = 0.9):
        if scoring not in SCORING:
            raise ConfigError(f"--vllm-scoring must be one of {', '.join(SCORING)}, got {scoring!r}")
        try:  # first: a missing vLLM is one line before any model file is read
            from vllm import LLM, SamplingParams
        except ImportError:
            raise ConfigError(INSTALL_HINT) from None
        super().__init__(model_dir)
        self.scoring = scoring
        self._sampling_params = SamplingParams
        self.llm = LLM(
            model=str(self.directory),
            tokenizer=str(self.directory),
            dtype=dtype,
            enable_prefix_caching=True,
            gpu_memory_utilization=gpu_memory_utilization,
            # Every request is a prefill that generates one token; CUDA graphs only speed up decode steps,
            # so eager mode skips their capture at start-up (vllm EngineArgs enforce_eager).
            enforce_eager=True,
            seed=0,
        )

    def label_logprobs(self, prompt_ids: Sequence[int], answers: Sequence[Sequence[int]]) -> np.ndarray:
        if self.scoring == "prompt_logprobs":
            # prompt_logprobs=0: each prompt token's own log-probability only; detokenize=False: ids are all that is read
            params = self._sampling_params(max_tokens=1, prompt_logprobs=0, detokenize=False)
            requests = [{"prompt_token_ids": sequence} for sequence in answer_requests(prompt_ids, answers)]  # vllm.inputs.TokensPrompt
            outputs = self.llm.generate(requests, params, use_tqdm=False)
            return answer_logprobs([output.prompt_logprobs for output in outputs], len(prompt_ids), answers)
        steps, uses = token_steps(prompt_ids, answers)
        params = [self._sampling_params(max_tokens=1, logprobs=0, allowed_token_ids=[token], detokenize=False) for _, token in steps]
        requests = [{"prompt_token_ids": prefix} for prefix, _ in steps]
        # The first step alone, then the rest: its finished prompt blocks are in the prefix cache for all others.
        outputs = self.llm.generate(requests[:1], params[:1], use_tqdm=False)
        if len(steps) > 1:
            outputs += self.llm.generate(requests[1:], params[1:], use_tqdm=False)
        logprobs = [sampled_logprob(output, token) for output, (_, token) in zip(outputs, steps, strict=True)]
        if len(answers) > 1 and all(value == 0.0 for value in logprobs):
            raise ConfigError(
                "--backend vllm: this vLLM returned log-probabilities after the allowed-token mask (all 0); "
                "run it with raw logprobs (logprobs_mode raw_logprobs) or use --vllm-scoring prompt_logprobs"
            )
        return answer_logprobs_from_steps(logprobs, uses)
