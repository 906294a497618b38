"""How a causal LM scores candidate answers after a prompt: what `thresher annotate` asks of a model.

`LabelScorer` is what every backend shares (the model directory's tokenizer, prompt and answer token
ids, name, hash, context length); a backend adds `label_logprobs`: `CausalLMScorer` here (transformers,
the prompt run once and its key/value cache shared by the answers), classifiers.vllm_backend for vLLM.
"""

from __future__ import annotations

import abc
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
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


NORMALISATIONS = ("sum", "mean", "calibrated")


@dataclass(frozen=True)
class ScoringRequest:
    """One scoring step of one document: the prompt's token ids, the answers' token ids, and how many
    leading prompt tokens are the instructions every document of the step shares (their key/value
    cache is computed once and reused; 0: none)."""

    prompt_ids: list[int]
    answers: list[list[int]]
    shared: int = 0


def _end_of_turn(tokenizer) -> str:
    """What a chat template writes after an assistant's message (Qwen: `<|im_end|>`), from a rendered
    conversation; a newline where the template shows none."""
    marker = "\x00THRESHER\x00"
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}], tokenize=False
        )
    except Exception:  # a template that cannot render an assistant turn  # noqa: BLE001
        return "\n"
    end = text.split(marker, 1)[1].rstrip() if marker in text else ""
    return end or "\n"


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
        # An instruct model (its tokenizer has a chat template) is asked in its own format: the prompt is
        # the user's turn, the label the assistant's answer, closed by the template's end of turn.
        self.chat = bool(getattr(self.tokenizer, "chat_template", None))
        self._answer_end = _end_of_turn(self.tokenizer) if self.chat else "\n"

    def format_prompt(self, prompt: str) -> str:
        """The text the model reads: with a chat template, the prompt as the user's turn and the start of
        the assistant's; without one, the prompt itself."""
        if not self.chat:
            return prompt
        return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)

    def encode_prompt(self, prompt: str) -> list[int]:
        if self.chat:  # the template writes the special tokens itself
            return self.tokenizer(self.format_prompt(prompt), add_special_tokens=False)["input_ids"]
        return self.tokenizer(prompt)["input_ids"]

    def encode_answer(self, label: str) -> list[int]:
        # An end after the label makes the answers prefix-free ("list" cannot win inside "listing"): a
        # newline after a plain prompt, the end-of-turn text after a chat template's assistant start.
        if self.chat:
            return self.tokenizer(f"{label}{self._answer_end}", add_special_tokens=False)["input_ids"]
        return self.tokenizer(f" {label}\n", add_special_tokens=False)["input_ids"]

    def score_many(self, requests: Sequence[ScoringRequest]) -> list[np.ndarray]:
        """log P(answer | prompt) of every request's answers; a backend that batches overrides this."""
        return [self.label_logprobs(r.prompt_ids, r.answers) for r in requests]

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
        self._prefixes: OrderedDict[tuple[int, ...], list[tuple]] = OrderedDict()  # shared instructions -> per-layer (keys, values)

    PREFIXES_KEPT = 8  # instruction prefixes whose key/value caches stay (steps x languages of a task)

    def score_many(self, requests: Sequence[ScoringRequest]) -> list[np.ndarray]:
        """log P(answer | prompt) of every request's answers, several documents per forward pass.

        Requests are grouped by their shared instructions (`shared` leading prompt tokens); a group's
        instructions run once (their key/value cache kept for later batches, by exact token ids), then
        one forward pass runs every document's rest of the prompt followed by all its answers, laid out
        as a tree: each answer's tokens see the prompt and their own earlier tokens only (a 4-D
        attention mask), so one pass gives every label's log-likelihood. Rows are left-padded between
        the instructions and the document (padding masked out), so the positions whose logits are read
        sit at the end of every row."""
        results: list[np.ndarray | None] = [None] * len(requests)
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, request in enumerate(requests):
            if not request.answers or any(not answer for answer in request.answers):
                raise ValueError("every answer needs at least one token")
            shared = max(0, min(request.shared, len(request.prompt_ids) - 1))
            groups.setdefault(tuple(request.prompt_ids[:shared]), []).append(index)
        for key, members in groups.items():
            totals = self._score_group(key, [requests[i] for i in members])
            for index, value in zip(members, totals, strict=True):
                results[index] = value
        return results  # type: ignore[return-value]

    def _prefix_cache(self, key: tuple[int, ...]) -> list[tuple]:
        import torch

        if key in self._prefixes:
            self._prefixes.move_to_end(key)
            return self._prefixes[key]
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([list(key)], device=self.device), use_cache=True, logits_to_keep=1)
        layers = [(layer.keys, layer.values) for layer in out.cache.layers]
        self._prefixes[key] = layers
        while len(self._prefixes) > self.PREFIXES_KEPT:
            self._prefixes.popitem(last=False)
        return layers

    def _score_group(self, key: tuple[int, ...], requests: Sequence[ScoringRequest]) -> list[np.ndarray]:
        import torch
        from transformers import DynamicCache

        shared, rows = len(key), len(requests)
        suffixes = [list(r.prompt_ids[shared:]) for r in requests]
        trees = [[token for answer in r.answers for token in answer[:-1]] for r in requests]
        width = max(len(s) + len(t) for s, t in zip(suffixes, trees, strict=True))
        keep = max(len(t) for t in trees) + 1  # logits read: each row's last prompt token and its answer tree
        ids = torch.full((rows, width), self._pad, dtype=torch.long)
        positions = torch.full((rows, width), shared, dtype=torch.long)
        allowed = torch.zeros((rows, width, shared + width), dtype=torch.bool)
        allowed[:, :, :shared] = True
        for row, (suffix, tree, request) in enumerate(zip(suffixes, trees, requests, strict=True)):
            start = width - len(suffix) - len(tree)  # left padding before the document's rest
            end = start + len(suffix)
            ids[row, start:] = torch.tensor(suffix + tree)
            positions[row, start:end] = torch.arange(shared, shared + len(suffix))
            for q in range(start):  # padding: attends to itself only (never read, never attended to)
                allowed[row, q, shared + q] = True
            prompt_cols = torch.arange(shared + start, shared + end)
            allowed[row, start:end, shared + start:shared + end] = torch.ones(len(suffix), len(suffix), dtype=torch.bool).tril()
            offset = end
            for answer in request.answers:
                fed = len(answer) - 1
                if fed:
                    positions[row, offset:offset + fed] = torch.arange(shared + len(suffix), shared + len(suffix) + fed)
                    allowed[row, offset:offset + fed][:, prompt_cols] = True
                    allowed[row, offset:offset + fed, shared + offset:shared + offset + fed] = torch.ones(fed, fed, dtype=torch.bool).tril()
                offset += fed
        mask = torch.zeros(allowed.shape, dtype=self.model.dtype).masked_fill_(~allowed, torch.finfo(self.model.dtype).min)
        with torch.inference_mode():
            cache = DynamicCache(config=self.model.config)
            if shared:
                for layer, (keys, values) in enumerate(self._prefix_cache(key)):
                    cache.update(keys.expand(rows, -1, -1, -1), values.expand(rows, -1, -1, -1), layer)
            logits = self.model(
                input_ids=ids.to(self.device), attention_mask=mask[:, None].to(self.device), position_ids=positions.to(self.device),
                cache=cache, use_cache=True, logits_to_keep=keep,
            ).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        results = []
        for row, (tree, request) in enumerate(zip(trees, requests, strict=True)):
            last = keep - 1 - len(tree)  # the prompt's last token, in the kept logits
            totals, offset = [], last + 1
            for answer in request.answers:
                total = float(logprobs[row, last, answer[0]])
                for j, token in enumerate(answer[1:]):
                    total += float(logprobs[row, offset + j, token])
                offset += len(answer) - 1
                totals.append(total)
            results.append(np.array(totals, dtype=np.float64))
        return results

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


def label_scores(totals: np.ndarray, answers: Sequence[Sequence[int]], how: str, content_free: np.ndarray | None = None) -> np.ndarray:
    """Scores to normalise over the labels from their summed log-likelihoods: `sum` as they are (a
    label of fewer tokens pays fewer token probabilities, so short labels win), `mean` per label
    token, `calibrated` minus the same labels' log-likelihoods after a content-free prompt (the
    document replaced by "N/A"; Zhao et al. 2021, "Calibrate before use": P(label | document) /
    P(label | no document), which removes the label's prior, its length's included)."""
    if how == "sum":
        return totals
    if how == "mean":
        return totals / np.array([len(answer) for answer in answers], dtype=np.float64)
    if how == "calibrated":
        if content_free is None:
            raise ValueError("calibrated scores need the content-free prompt's log-likelihoods")
        return totals - content_free
    raise ValueError(f"label score must be one of {', '.join(NORMALISATIONS)}, got {how!r}")


def normalised(logprobs: np.ndarray) -> np.ndarray:
    shifted = np.exp(logprobs - logprobs.max())
    return shifted / shifted.sum()
