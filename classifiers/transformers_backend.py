"""transformers backend: any `AutoModelForSequenceClassification` checkpoint in a local directory.

Used for documents (page type, topic) and for lines (clutter scores each line as a short sequence).
Training fine-tunes a base model with a plain PyTorch loop (AdamW, gradient clipping); inference runs
in batches under `torch.inference_mode`, in bfloat16 on a GPU when one is present, float32 on CPU.
Nothing is downloaded: `base_model` and saved models are local directories.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.base import TextClassifier

DEFAULT_PARAMS: dict[str, Any] = {
    "base_model": "",  # local directory with config, tokenizer and (optionally) weights; required
    "epochs": 1,
    "max_steps": 0,  # stop after this many optimizer steps when > 0
    "lr": 5e-5,
    "weight_decay": 0.01,
    "batch_size": 16,
    "max_length": 256,  # tokens per text; longer texts are truncated
    "inference_batch_size": 64,
}


def _device_and_dtype():
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.float32


class TransformersClassifier(TextClassifier):
    backend = "transformers"

    def __init__(self, model, tokenizer, labels: Sequence[str], max_length: int, batch_size: int):
        super().__init__(labels)
        self.device, self.dtype = _device_and_dtype()
        self.model = model.to(self.device, dtype=self.dtype).eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size

    def _encode(self, texts: Sequence[str]):
        encoded = self.tokenizer(
            [text or "" for text in texts],
            truncation=True,
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        )
        return {key: value.to(self.device) for key, value in encoded.items() if key != "token_type_ids"}

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                logits = self.model(**self._encode(texts[start : start + self.batch_size])).logits
                out[start : start + len(logits)] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return out

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
        torch.manual_seed(seed)
        tokenizer = AutoTokenizer.from_pretrained(options["base_model"])
        model = AutoModelForSequenceClassification.from_pretrained(
            options["base_model"],
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id=label_ids,
            ignore_mismatched_sizes=True,  # the base model's head (if any) has another label count
        )
        classifier = cls(model, tokenizer, label_names, int(options["max_length"]), int(options["inference_batch_size"]))
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
                batch = self._encode([texts[i] for i in rows])
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
        return {"max_length": self.max_length, "inference_batch_size": self.batch_size}

    @classmethod
    def _load_model(cls, directory, manifest):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        # Our own saves are safetensors: refuse a pickled weights file dropped in their place.
        model = AutoModelForSequenceClassification.from_pretrained(directory, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(directory)
        return cls(
            model,
            tokenizer,
            manifest["labels"],
            int(manifest.get("max_length", DEFAULT_PARAMS["max_length"])),
            int(manifest.get("inference_batch_size", DEFAULT_PARAMS["inference_batch_size"])),
        )


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
