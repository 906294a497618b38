"""Tokenizers: train a byte-level BPE, save and load tokenizer directories.

A tokenizer directory is the standard Hugging Face layout (tokenizer.json, tokenizer_config.json,
special_tokens_map.json) that `AutoTokenizer.from_pretrained(dir)` loads; any such directory, ours
or downloaded, can be used for export (pipeline.export.encode encodes with it). Encoding always goes
through the fast (Rust) tokenizer.

The trained BPE is lossless: ByteLevel pre-tokenization without a prefix space or offset trimming,
no normalizer and the ByteLevel decoder give decode(encode(text)) == text for every string.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Files that define a tokenizer, hashed into the manifest; whichever of them a directory holds.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer.model",
)


def train_byte_level_bpe(
    texts: Iterable[str],
    vocab_size: int,
    special_tokens: Sequence[str],
    min_frequency: int = 2,
):
    """A byte-level BPE `tokenizers.Tokenizer` trained on `texts`; special tokens take the first ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    # GPT-2 style: the regex split, no prefix space (it would add a space to every text) and no
    # offset trimming, so the bytes of the text are all kept.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: no text is out of vocabulary
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def save_tokenizer(tokenizer, directory: str | os.PathLike, eos_token: str, pad_token: str,
                   extra_special_tokens: Sequence[str] = ()) -> None:
    """Write `tokenizer` (a `tokenizers.Tokenizer`) as a Hugging Face tokenizer directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    special = {"eos_token": eos_token, "pad_token": pad_token}
    if extra_special_tokens:
        special["additional_special_tokens"] = list(extra_special_tokens)
    config = {
        # The class name both transformers 4 and 5 resolve to the fast tokenizer over tokenizer.json.
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "unk_token": None,
        **special,
        "add_prefix_space": False,
        # transformers' clean-up would rewrite " ." to "." on decode and break the round trip.
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1_000_000_000,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2, ensure_ascii=False) + "\n")


def tokenizer_sha256(directory: str | os.PathLike) -> str:
    """sha256 over the names and bytes of the tokenizer files in `directory` (TOKENIZER_FILES)."""
    directory = Path(directory)
    digest = hashlib.sha256()
    for name in TOKENIZER_FILES:
        path = directory / name
        if path.is_file():
            digest.update(name.encode() + b"\0")
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()


PIECE_CHARS = 100_000  # a text longer than this is encoded in pieces (line_pieces)
ENCODE_BATCH_CHARS = 1_000_000  # characters encoded in one call: what one call's encodings hold


def line_pieces(text: str, size: int) -> list[str]:
    """`text` cut into pieces of about `size` characters, each cut just after a newline that a non-space
    character follows. Byte-level BPE pre-tokenizers (GPT-2's, Qwen2's) never join a newline run to the
    next word, so encoding the pieces gives the tokens of the whole text; a text without such a place
    stays whole."""
    if len(text) <= size:
        return [text]
    pieces, start = [], 0
    while len(text) - start > size:
        cut = text.find("\n", start + size)
        while cut != -1 and cut + 1 < len(text) and text[cut + 1].isspace():
            cut = text.find("\n", cut + 1)
        if cut == -1 or cut + 1 >= len(text):
            break
        pieces.append(text[start : cut + 1])
        start = cut + 1
    pieces.append(text[start:])
    return pieces


@dataclass
class LoadedTokenizer:
    """A fast tokenizer, set up for export, and the ids export needs."""

    backend: object  # tokenizers.Tokenizer: no padding, no truncation, special-token text encoded as text
    eos_id: int
    pad_id: int  # the pad token's id, or the EOS id when the tokenizer has no pad token
    vocab_size: int  # including added tokens: the embedding rows a model needs

    @classmethod
    def from_json(cls, tokenizer_json: str, eos_id: int, pad_id: int, vocab_size: int) -> LoadedTokenizer:
        from tokenizers import Tokenizer

        backend = Tokenizer.from_str(tokenizer_json)
        backend.no_truncation()
        backend.no_padding()
        # A document that contains the text "<|endoftext|>" must not get a real EOS in the middle.
        backend.encode_special_tokens = True
        return cls(backend, eos_id, pad_id, vocab_size)

    def to_json(self) -> str:
        return self.backend.to_str()

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of `texts`, each closed with EOS, as flat int32 values and int64 offsets (len(texts) + 1).

        A tokenizer's encoding of a text holds about 100 bytes per token besides the ids (offsets, token
        strings): a long text is encoded in pieces cut at line starts (`line_pieces`), at most
        ENCODE_BATCH_CHARS at a time, and only its ids are kept, so memory follows the batch, not the text."""
        ids: list[list[np.ndarray]] = [[] for _ in texts]
        batch: list[tuple[int, str]] = []
        held = 0
        for index, text in enumerate(texts):
            for piece in line_pieces(text, PIECE_CHARS):
                batch.append((index, piece))
                held += len(piece)
                if held >= ENCODE_BATCH_CHARS:
                    self._encode_into(batch, ids)
                    batch, held = [], 0
        self._encode_into(batch, ids)
        lengths = np.fromiter((sum(len(part) for part in parts) + 1 for parts in ids), dtype=np.int64, count=len(ids))
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.empty(int(offsets[-1]), dtype=np.int32)
        for parts, start, end in zip(ids, offsets[:-1], offsets[1:], strict=True):
            values[start : end - 1] = np.concatenate(parts)
        values[offsets[1:] - 1] = self.eos_id
        return values, offsets

    def _encode_into(self, batch: list[tuple[int, str]], ids: list[list[np.ndarray]]) -> None:
        if not batch:
            return
        encodings = self.backend.encode_batch_fast([piece for _, piece in batch], add_special_tokens=False)
        for (index, _), encoding in zip(batch, encodings, strict=True):
            ids[index].append(np.asarray(encoding.ids, dtype=np.int32))

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=False)


def load_tokenizer(directory: str | os.PathLike, eos_token: str = "<|endoftext|>") -> LoadedTokenizer:
    """The fast tokenizer in `directory` (any Hugging Face tokenizer directory) with its EOS and pad ids.

    EOS is the tokenizer's own eos_token, else `eos_token` if the vocabulary has it; a tokenizer
    with neither cannot close documents and is an error.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"tokenizer directory {directory} does not exist")
    return _load_generic_fast(directory, eos_token) or _load_with_transformers(directory, eos_token)


def _token_text(value) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or an AddedToken dict."""
    return value.get("content") if isinstance(value, dict) else value


def _load_generic_fast(directory: Path, eos_token: str) -> LoadedTokenizer | None:
    """`directory` loaded without transformers when AutoTokenizer would use tokenizer.json as it is.

    That is the generic PreTrainedTokenizerFast class with every special token it names already in
    tokenizer.json (otherwise transformers adds them) and no added_tokens.json; anything else is
    left to transformers (None). transformers is the larger part of an export's start-up (3 s
    to import), and this is the case of every tokenizer `thresher tokenizer train` writes.
    """
    from tokenizers import Tokenizer

    config_path, json_path = directory / "tokenizer_config.json", directory / "tokenizer.json"
    if not (config_path.is_file() and json_path.is_file()) or (directory / "added_tokens.json").exists():
        return None
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("tokenizer_class") != "PreTrainedTokenizerFast":
        return None
    backend = Tokenizer.from_file(str(json_path))
    named = {key: _token_text(config.get(key)) for key in ("bos_token", "eos_token", "unk_token", "pad_token")}
    named_ids = {key: backend.token_to_id(text) for key, text in named.items() if text is not None}
    added = [_token_text(token) for token in config.get("added_tokens_decoder", {}).values()]
    added += [_token_text(token) for token in config.get("additional_special_tokens") or []]
    if None in named_ids.values() or any(backend.token_to_id(text) is None for text in added):
        return None
    eos_id = named_ids.get("eos_token", backend.token_to_id(eos_token))
    if eos_id is None:
        raise ValueError(f"{directory}: tokenizer has no eos_token and no {eos_token!r} in its vocabulary")
    pad_id = named_ids.get("pad_token", eos_id)
    return LoadedTokenizer.from_json(backend.to_str(), eos_id, pad_id, backend.get_vocab_size(with_added_tokens=True))


def _load_with_transformers(directory: Path, eos_token: str) -> LoadedTokenizer:
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(directory), use_fast=True)
    backend = getattr(hf, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(f"{directory}: no fast tokenizer (tokenizer.json) could be built")
    eos_id = hf.eos_token_id if hf.eos_token_id is not None else backend.token_to_id(eos_token)
    if eos_id is None:
        raise ValueError(f"{directory}: tokenizer has no eos_token and no {eos_token!r} in its vocabulary")
    pad_id = hf.pad_token_id if hf.pad_token_id is not None else eos_id
    return LoadedTokenizer.from_json(backend.to_str(), int(eos_id), int(pad_id), len(hf))
