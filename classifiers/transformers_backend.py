"""transformers backend: any `AutoModelForSequenceClassification` checkpoint in a local directory.

Used for documents (page type, topic) and for lines (clutter scores each line as a short sequence).
Training fine-tunes a base model with a plain PyTorch loop (AdamW, gradient clipping). Inference is
built for a model-sized tagger on a GPU executor:
- the model is loaded once per worker, in bfloat16 on a GPU and float32 on CPU, with SDPA attention,
  on the GPU the Spark task was given (`task_device`);
- inside `predict_proba` a background thread tokenizes a window of documents, sorts it by length and
  cuts it into batches of at most `token_budget` padded tokens, while the model runs the previous
  batch; each document is truncated to `max_length` tokens (its head, or its head and tail);
- every document is padded to its own length rounded up to `pad_multiple`, and a batch holds documents
  of one padded length only, so a document's scores do not depend on which others share its batch
  (on CPU they are bit-identical whatever the token budget); scores are a float32 softmax, returned
  in the input order; host memory is bounded by the window, not by the number of documents.
Nothing is downloaded: `base_model` and saved models are local directories.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thresher.classifiers.base import TextClassifier, UnusableModelError

TRUNCATION_MODES = ("head", "head_tail")
# Characters kept from each end before tokenizing: bounds tokenization cost on huge pages. Tokens
# average 1-5 characters; 16 per token leaves a wide margin, so truncation still happens in tokens.
CHARS_PER_TOKEN_BOUND = 16


@dataclass(frozen=True)
class InferenceSettings:
    """How `predict_proba` tokenizes, batches and places the model; stored in classifier.json."""

    max_length: int = 512  # tokens per document, special tokens included; longer documents are truncated
    truncation: str = "head"  # head: the first max_length tokens; head_tail: the first and the last half
    token_budget: int = 32_768  # padded tokens per forward pass (rows x padded length)
    pad_multiple: int = 16  # each document is padded to its length rounded up to this
    window_documents: int = 2048  # documents tokenized and sorted together: bounds host memory
    device: str = "auto"  # auto: the Spark task's GPU, else the first visible GPU, else CPU; or cpu, cuda:N

    def __post_init__(self):
        if self.truncation not in TRUNCATION_MODES:
            raise ValueError(f"truncation must be one of {', '.join(TRUNCATION_MODES)}, got {self.truncation!r}")
        for name in ("max_length", "token_budget", "pad_multiple", "window_documents"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"inference setting {name} must be at least 1, got {getattr(self, name)}")
        if self.token_budget < self.max_length:
            raise ValueError(f"token_budget ({self.token_budget}) must be at least max_length ({self.max_length})")

    def replace(self, overrides: Mapping[str, Any]) -> InferenceSettings:
        """These settings with `overrides` applied; an unknown name is an error naming the known ones."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown inference setting(s) {unknown} (known: {', '.join(sorted(known))})")
        return dataclasses.replace(self, **dict(overrides))


DEFAULT_PARAMS: dict[str, Any] = {
    "base_model": "",  # local directory with config, tokenizer and (optionally) weights; required
    "epochs": 1,
    "max_steps": 0,  # stop after this many optimizer steps when > 0
    "lr": 5e-5,
    "weight_decay": 0.01,
    "batch_size": 16,
    "max_length": 256,  # tokens per text in training and inference; longer texts are truncated
    "truncation": "head",  # inference truncation (see InferenceSettings)
    "token_budget": 32_768,  # inference padded tokens per forward pass
}


def task_device(setting: str = "auto"):
    """The torch device to run on: `setting` itself unless "auto"; for "auto", the GPU Spark gave this
    task (spark.task.resource.gpu.amount), else the first visible GPU (local mode), else the CPU."""
    import torch

    if setting != "auto":
        return torch.device(setting)
    try:
        from pyspark import TaskContext
    except ImportError:  # pragma: no cover - pyspark is a dependency; scoring outside Spark still works
        TaskContext = None
    context = TaskContext.get() if TaskContext is not None else None
    if context is not None:
        gpus = context.resources().get("gpu")
        if gpus is not None and gpus.addresses:
            return torch.device(f"cuda:{visible_index(gpus.addresses[0])}")
    if torch.cuda.is_available():
        return torch.device("cuda:0")
    return torch.device("cpu")


def visible_index(address: str) -> int:
    """The CUDA index of the GPU Spark calls `address` (nvidia-smi's numbering): its place in
    CUDA_VISIBLE_DEVICES when the cluster manager restricted the visible GPUs, else the address."""
    visible = [item.strip() for item in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if item.strip()]
    return visible.index(address) if address in visible else int(address)


def _dtype_for(device):
    import torch

    return torch.bfloat16 if device.type == "cuda" else torch.float32


def truncate_ids(ids: list[int], length: int, mode: str) -> list[int]:
    """At most `length` token ids of `ids`: its head, or (head_tail) its first and last halves."""
    if len(ids) <= length:
        return ids
    if mode == "head":
        return ids[:length]
    tail = length // 2
    return ids[: length - tail] + ids[len(ids) - tail :]


@dataclass
class _Batch:
    rows: np.ndarray  # positions of the batch's documents in the caller's list
    input_ids: Any  # torch.LongTensor (rows, padded length)
    attention_mask: Any


class TransformersClassifier(TextClassifier):
    backend = "transformers"

    def __init__(self, model, tokenizer, labels: Sequence[str], settings: InferenceSettings | None = None):
        super().__init__(labels)
        self.settings = settings or InferenceSettings()
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:  # decoder tokenizers (Qwen2, Llama) often have none
            tokenizer.pad_token = tokenizer.eos_token
        if getattr(model.config, "pad_token_id", None) is None:
            # Decoder classifiers pool the last non-pad token and need to know which id pads.
            model.config.pad_token_id = tokenizer.pad_token_id
        self.device = task_device(self.settings.device)
        self.dtype = _dtype_for(self.device)
        self.model = model.to(self.device, dtype=self.dtype).eval()
        self._prefix, self._suffix = self._special_tokens()

    def with_settings(self, overrides: Mapping[str, Any]) -> TransformersClassifier:
        """This classifier (the same loaded model) with inference settings from the config, e.g.
        `config.transformers.overrides()`, over the manifest's."""
        configured = copy.copy(self)
        configured.settings = self.settings.replace(overrides)
        return configured

    def _special_tokens(self) -> tuple[list[int], list[int]]:
        """The ids the tokenizer adds before and after a text (e.g. [CLS] and [SEP]; none for Qwen2)."""
        plain = self.tokenizer("a", add_special_tokens=False)["input_ids"]
        full = self.tokenizer("a", add_special_tokens=True)["input_ids"]
        for start in range(len(full) - len(plain) + 1):
            if full[start : start + len(plain)] == plain:
                return full[:start], full[start + len(plain) :]
        return [], []

    def _place(self) -> None:
        """Follow the device this task was given (a worker may serve tasks on another GPU); the model
        object is shared by the copies `with_settings` makes, so its own placement is what counts."""
        device = task_device(self.settings.device)
        dtype = _dtype_for(device)
        weights = next(self.model.parameters())
        if weights.device != device or weights.dtype != dtype:
            self.model.to(device, dtype=dtype)
        self.device, self.dtype = device, dtype

    def _token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text as at most max_length ids, special tokens included, truncated per the settings."""
        content = self.settings.max_length - len(self._prefix) - len(self._suffix)
        if content < 1:
            raise ValueError(f"max_length {self.settings.max_length} leaves no room beside the special tokens")
        cap = self.settings.max_length * CHARS_PER_TOKEN_BOUND
        clipped = []
        for text in texts:
            text = text or ""
            if len(text) > cap:
                text = text[:cap] if self.settings.truncation == "head" else text[: cap // 2] + " " + text[-(cap // 2) :]
            clipped.append(text)
        encoded = self.tokenizer(clipped, add_special_tokens=False, truncation=False, return_attention_mask=False)
        # An empty text under a tokenizer that adds no special tokens (Qwen2) would be no tokens at all:
        # it is scored as the end-of-text token alone.
        empty = [self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else self.tokenizer.pad_token_id]
        return [self._prefix + truncate_ids(ids, content, self.settings.truncation) + self._suffix or empty for ids in encoded["input_ids"]]

    def _batches(self, texts: Sequence[str]) -> Iterator[_Batch]:
        """Batches in sorted order: per window, documents grouped by padded length, each group cut
        into batches of at most token_budget padded tokens."""
        import torch

        settings = self.settings
        pin = self.device.type == "cuda"
        pad = self.tokenizer.pad_token_id
        for window_start in range(0, len(texts), settings.window_documents):
            window = self._token_ids(texts[window_start : window_start + settings.window_documents])
            padded = np.array([-(-len(ids) // settings.pad_multiple) * settings.pad_multiple for ids in window])
            order = np.argsort(padded, kind="stable")
            start = 0
            while start < len(order):
                length = int(padded[order[start]])
                rows_per_batch = max(1, settings.token_budget // length)
                stop = start
                while stop < len(order) and stop - start < rows_per_batch and padded[order[stop]] == length:
                    stop += 1
                members = order[start:stop]
                input_ids = torch.full((len(members), length), pad, dtype=torch.long)
                attention_mask = torch.zeros((len(members), length), dtype=torch.long)
                for row, member in enumerate(members):
                    ids = window[member]
                    input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                    attention_mask[row, : len(ids)] = 1
                if pin:
                    input_ids, attention_mask = input_ids.pin_memory(), attention_mask.pin_memory()
                yield _Batch(members + window_start, input_ids, attention_mask)
                start = stop

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        self._place()
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        with torch.inference_mode():
            for batch in _prefetched(self._batches(texts)):
                logits = self.model(
                    input_ids=batch.input_ids.to(self.device, non_blocking=True),
                    attention_mask=batch.attention_mask.to(self.device, non_blocking=True),
                    use_cache=False,  # one forward pass: a decoder's key/value cache would be waste
                ).logits
                out[batch.rows] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return out

    def _encode_for_training(self, texts: Sequence[str]):
        encoded = self.tokenizer(
            [text or "" for text in texts],
            truncation=True,
            max_length=self.settings.max_length,
            padding=True,
            return_tensors="pt",
        )
        return {key: value.to(self.device) for key, value in encoded.items() if key != "token_type_ids"}

    @classmethod
    def train(cls, texts, labels, params=None, seed=0):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        options = {**DEFAULT_PARAMS, **(params or {})}
        if not options["base_model"] or not Path(options["base_model"]).is_dir():
            raise ValueError(f"transformers training needs params base_model: a local model directory, got {options['base_model']!r}")
        label_names = sorted(set(labels))
        if len(label_names) < 2:
            raise ValueError(f"training needs at least two labels, got {label_names}")
        label_ids = {label: i for i, label in enumerate(label_names)}
        settings = InferenceSettings(
            max_length=int(options["max_length"]),
            truncation=str(options["truncation"]),
            token_budget=max(int(options["token_budget"]), int(options["max_length"])),
        )
        torch.manual_seed(seed)
        tokenizer = AutoTokenizer.from_pretrained(options["base_model"])
        model = AutoModelForSequenceClassification.from_pretrained(
            options["base_model"],
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id=label_ids,
            ignore_mismatched_sizes=True,  # the base model's head (if any) has another label count
            attn_implementation="sdpa",
        )
        classifier = cls(model, tokenizer, label_names, settings)
        classifier._fine_tune(list(texts), [label_ids[label] for label in labels], options, seed)
        return classifier

    def _fine_tune(self, texts: list[str], targets: list[int], options: dict[str, Any], seed: int) -> None:
        import torch

        # Train in float32 (master weights); on GPU the forward pass runs under bf16 autocast.
        self.model.to(dtype=torch.float32).train()
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=float(options["lr"]), weight_decay=float(options["weight_decay"]))
        generator = torch.Generator().manual_seed(seed)
        batch_size, max_steps, step = int(options["batch_size"]), int(options["max_steps"]), 0
        target_tensor = torch.tensor(targets, dtype=torch.long)
        for _epoch in range(int(options["epochs"])):
            order = torch.randperm(len(texts), generator=generator).tolist()
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                batch = self._encode_for_training([texts[i] for i in rows])
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                    loss = self.model(**batch, labels=target_tensor[rows].to(self.device)).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                if max_steps and step >= max_steps:
                    break
            if max_steps and step >= max_steps:
                break
        self.model.to(dtype=self.dtype).eval()

    def _save_model(self, directory: Path) -> dict[str, Any]:
        import torch

        # Stored in float32 whatever the device, so CPU and GPU executors load the same weights.
        self.model.to(dtype=torch.float32).save_pretrained(directory)
        self.model.to(dtype=self.dtype)
        self.tokenizer.save_pretrained(directory)
        settings = dataclasses.asdict(self.settings)
        settings["device"] = InferenceSettings.device  # where it ran is not a property of the model
        return {"inference": settings}

    @classmethod
    def _check_files(cls, directory, manifest):
        """What loading needs, without the weights: config, tokenizer, and safetensors headers (a 1.5B model is
        not loaded on the driver to be checked)."""
        from safetensors import safe_open
        from transformers import AutoConfig, AutoTokenizer

        stored_settings(manifest)
        AutoConfig.from_pretrained(directory)
        AutoTokenizer.from_pretrained(directory)
        weights = sorted(Path(directory).glob("*.safetensors"))
        if not weights:
            raise UnusableModelError(f"{directory}: no .safetensors weights (pickled weights are never loaded: "
                                     "they can run code); save the model with save_pretrained(safe_serialization=True)")
        for path in weights:
            with safe_open(str(path), framework="pt") as handle:
                handle.keys()

    @classmethod
    def _load_model(cls, directory, manifest):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        settings = stored_settings(manifest)
        device = task_device(settings.device)
        # Our own saves are safetensors: refuse a pickled weights file dropped in their place. Loaded
        # straight in the dtype it runs in, so a 1.5B model never sits in host memory in float32.
        model = AutoModelForSequenceClassification.from_pretrained(
            directory, use_safetensors=True, attn_implementation="sdpa", dtype=_dtype_for(device)
        )
        tokenizer = AutoTokenizer.from_pretrained(directory)
        return cls(model, tokenizer, manifest["labels"], settings)


def stored_settings(manifest: Mapping[str, Any]) -> InferenceSettings:
    """The inference settings a classifier.json holds."""
    stored = dict(manifest.get("inference") or {})
    if "max_length" in manifest:  # classifier.json written before the inference settings existed
        stored.setdefault("max_length", int(manifest["max_length"]))
    return InferenceSettings().replace(stored)


_DONE = object()


def _prefetched(batches: Iterator[_Batch], depth: int = 2) -> Iterator[_Batch]:
    """`batches`, produced by a background thread up to `depth` ahead: tokenization and padding (the
    tokenizer releases the GIL) overlap the model's forward pass. An error in the producer is raised
    here; a consumer that stops early stops the producer."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    worker = threading.Thread(target=produce, name="thresher-tokenize", daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def build_scratch_model(
    texts: Sequence[str],
    output_dir: str | Path,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 2,
    vocab_size: int = 2000,
    max_positions: int = 512,
    seed: int = 0,
) -> Path:
    """A randomly initialised BERT-style encoder and a WordPiece tokenizer trained on `texts`.

    A base model for tests and small experiments where no pretrained checkpoint is at hand; real
    runs pass a pretrained local checkpoint as `base_model` instead.
    """
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    # BertNormalizer puts spaces around CJK characters, so Chinese gets per-character tokens.
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(list(texts), trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[(name, tokenizer.token_to_id(name)) for name in ("[CLS]", "[SEP]")],
    )
    fast_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_positions,
    )
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.token_to_id("[PAD]"),
    )
    torch.manual_seed(seed)
    output_dir = Path(output_dir)
    BertForSequenceClassification(config).save_pretrained(output_dir)
    fast_tokenizer.save_pretrained(output_dir)
    return output_dir


def build_scratch_qwen2(
    texts: Sequence[str],
    output_dir: str | Path,
    head: str = "classifier",
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    vocab_size: int = 1000,
    max_positions: int = 2048,
    seed: int = 0,
    init_std: float = 0.02,
) -> Path:
    """A randomly initialised Qwen2 decoder (the seed classifier's architecture) and a byte-level BPE
    tokenizer trained on `texts`: `head` "classifier" gives a Qwen2ForSequenceClassification (a base
    model to fine-tune or a tagger to benchmark), "causal_lm" a Qwen2ForCausalLM (an annotator)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM, Qwen2ForSequenceClassification

    if head not in ("classifier", "causal_lm"):
        raise ValueError(f"head must be 'classifier' or 'causal_lm', got {head!r}")
    specials = ["<|endoftext|>", "<|pad|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(list(texts), trainer)
    fast_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|pad|>", model_max_length=max_positions
    )
    config = Qwen2Config(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.token_to_id("<|pad|>"),
        eos_token_id=tokenizer.token_to_id("<|endoftext|>"),
        bos_token_id=tokenizer.token_to_id("<|endoftext|>"),
        tie_word_embeddings=False,
        initializer_range=init_std,
    )
    torch.manual_seed(seed)
    output_dir = Path(output_dir)
    model_class = Qwen2ForSequenceClassification if head == "classifier" else Qwen2ForCausalLM
    model_class(config).save_pretrained(output_dir)
    fast_tokenizer.save_pretrained(output_dir)
    return output_dir
