"""How a causal LM scores candidate answers after a prompt: what `thresher annotate` asks of a model.

`LabelScorer` is what every backend shares (the model directory's tokenizer, prompt and answer token
ids, name, hash, context length); a backend adds `label_logprobs`: `CausalLMScorer` here (transformers,
the prompt run once and its key/value cache shared by the answers), classifiers.vllm_backend for vLLM.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from thresher.classifiers.base import ModelNotFoundError


def model_hash(directory: Path) -> str:
    """SHA-256 over every file of the model directory (relative path and content), in name order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(str(path.relative_to(directory)).encode() + b"\0")
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


class LabelScorer(abc.ABC):
    """What every backend shares: the model directory's tokenizer, how a prompt and the answers become
    token ids, and the model's name, hash and context length. A backend adds `label_logprobs`."""

    def __init__(self, model_dir: str | Path):
        from transformers import AutoConfig, AutoTokenizer

        self.directory = Path(model_dir)
        if not (self.directory / "config.json").is_file():
            raise ModelNotFoundError(f"--model {model_dir}: no config.json there; pass a local causal LM directory (transformers format)")
        self.tokenizer = AutoTokenizer.from_pretrained(self.directory)
        config = AutoConfig.from_pretrained(self.directory)
        self.name = str(getattr(config, "_name_or_path", "") or self.directory.name)
        if Path(self.name).is_absolute():  # a local path says where it was, not what it is
            self.name = self.directory.resolve().name
        self.hash = model_hash(self.directory)
        self.context = int(getattr(config, "max_position_embeddings", 0) or 0)

    def encode_prompt(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt)["input_ids"]

    def encode_answer(self, label: str) -> list[int]:
        # A newline after the label makes the answers prefix-free ("list" cannot win inside "listing").
        return self.tokenizer(f" {label}\n", add_special_tokens=False)["input_ids"]

    @abc.abstractmethod
    def label_logprobs(self, prompt_ids: Sequence[int], answers: Sequence[Sequence[int]]) -> np.ndarray:
        """log P(answer | prompt) for each answer (token ids), as float64."""


def answer_requests(prompt_ids: Sequence[int], answers: Sequence[Sequence[int]]) -> list[list[int]]:
    """One token sequence per answer, prompt then answer: what a backend that scores whole sequences
    runs (vLLM; the transformers reference `label_logprobs_separately`). The answer's tokens are the
    last len(answer) of its sequence."""
    if not answers or any(not answer for answer in answers):
        raise ValueError("every answer needs at least one token")
    return [[*prompt_ids, *answer] for answer in answers]


class CausalLMScorer(LabelScorer):
    """Log-likelihoods of candidate answers after a prompt, from any local causal LM transformers loads."""

    def __init__(self, model_dir: str | Path, device: str = "auto"):
        import torch
        from transformers import AutoModelForCausalLM

        from thresher.classifiers.transformers_backend import task_device

        super().__init__(model_dir)
        self.device = task_device(device)
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        # safetensors only: pickled weights (pytorch_model.bin) can run code as they load, so they are never read.
        self.model = AutoModelForCausalLM.from_pretrained(self.directory, dtype=dtype, attn_implementation="sdpa",
                                                          use_safetensors=True).to(self.device).eval()
        self._pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def label_logprobs(self, prompt_ids: Sequence[int], answers: Sequence[Sequence[int]]) -> np.ndarray:
        """log P(answer | prompt) for each answer: the prompt runs once, its key/value cache is repeated
        over the answers, and all answers run as one batch after it."""
        import torch

        with torch.inference_mode():
            prompt = torch.tensor([list(prompt_ids)], device=self.device)
            out = self.model(input_ids=prompt, use_cache=True, logits_to_keep=1)  # only the last position's logits
            first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
            totals = torch.stack([first[answer[0]] for answer in answers])
            longest = max(len(answer) for answer in answers)
            if longest > 1:
                cache = out.cache
                cache.batch_repeat_interleave(len(answers))
                steps = longest - 1  # feed all but the last answer token; each predicts the next
                ids = torch.full((len(answers), steps), self._pad, dtype=torch.long, device=self.device)
                targets = torch.zeros((len(answers), steps), dtype=torch.long, device=self.device)
                valid = torch.zeros((len(answers), steps), dtype=torch.bool, device=self.device)
                for row, answer in enumerate(answers):
                    fed = len(answer) - 1
                    if fed:
                        ids[row, :fed] = torch.tensor(answer[:-1], device=self.device)
                        targets[row, :fed] = torch.tensor(answer[1:], device=self.device)
                        valid[row, :fed] = True
                attention = torch.cat([torch.ones((len(answers), len(prompt_ids)), dtype=torch.long, device=self.device), valid.long()], dim=1)
                # Padded steps sit after each answer's real tokens: causal attention keeps them out of the real ones.
                positions = torch.arange(len(prompt_ids), len(prompt_ids) + steps, device=self.device).expand(len(answers), -1)
                logits = self.model(
                    input_ids=ids, attention_mask=attention, position_ids=positions, cache=cache, use_cache=True
                ).logits
                picked = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
                totals = totals + (picked * valid).sum(dim=1)
        return totals.double().cpu().numpy()

    def label_logprobs_separately(self, prompt_ids: Sequence[int], answers: Sequence[Sequence[int]]) -> np.ndarray:
        """The same log-likelihoods, one full forward pass of prompt + answer per answer (the reference)."""
        import torch

        totals = []
        with torch.inference_mode():
            for sequence, answer in zip(answer_requests(prompt_ids, answers), answers, strict=True):
                logprobs = torch.log_softmax(self.model(input_ids=torch.tensor([sequence], device=self.device)).logits[0].float(), dim=-1)
                start = len(prompt_ids) - 1
                totals.append(sum(float(logprobs[start + j, token]) for j, token in enumerate(answer)))
        return np.array(totals, dtype=np.float64)


def normalised(logprobs: np.ndarray) -> np.ndarray:
    shifted = np.exp(logprobs - logprobs.max())
    return shifted / shifted.sum()
