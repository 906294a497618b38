"""Tokenizers: train a byte-level BPE, save and load tokenizer directories, encode documents.

A tokenizer directory is the standard Hugging Face layout (tokenizer.json, tokenizer_config.json,
special_tokens_map.json) that `AutoTokenizer.from_pretrained(dir)` loads; any such directory, ours
or downloaded, can be used for export. Encoding always goes through the fast (Rust) tokenizer.

The trained BPE is lossless: ByteLevel pre-tokenization without a prefix space or offset trimming,
no normalizer and the ByteLevel decoder give decode(encode(text)) == text for every string.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.packing import (
    TOKENIZED,
    TOKENIZED_TALLIED,
    add_tally,
    document_key,
    is_validation,
    tally_batch,
    with_zero_tally,
)
from pipeline.process_cache import ProcessCache
from pipeline.spill import SpillWriter

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
        """Token ids of `texts`, each closed with EOS, as flat int32 values and int64 offsets (len(texts) + 1)."""
        encodings = self.backend.encode_batch_fast(list(texts), add_special_tokens=False)
        lengths = np.fromiter((len(e) + 1 for e in encodings), dtype=np.int64, count=len(encodings))
        offsets = np.zeros(len(encodings) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.empty(int(offsets[-1]), dtype=np.int32)
        for encoding, start, end in zip(encodings, offsets[:-1], offsets[1:], strict=True):
            values[start : end - 1] = encoding.ids
        values[offsets[1:] - 1] = self.eos_id
        return values, offsets

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


@dataclass(frozen=True)
class EncoderSpec:
    """What executors need to encode: the tokenizer as JSON (a str, or a Spark broadcast of one) and EOS.

    Executors build the Rust tokenizer from the JSON, once per process: they need neither
    transformers nor the tokenizer directory.
    """

    key: str  # sha256 of the JSON: the per-process cache key
    tokenizer_json: object  # str, or anything with `.value` holding the str (pyspark Broadcast)
    eos_id: int
    pad_id: int

    @staticmethod
    def of(tokenizer: LoadedTokenizer, share=lambda text: text) -> EncoderSpec:
        """The spec of `tokenizer`; `share` wraps the JSON for shipping (e.g. SparkContext.broadcast)."""
        text = tokenizer.to_json()
        return EncoderSpec(hashlib.sha256(text.encode()).hexdigest(), share(text), tokenizer.eos_id, tokenizer.pad_id)


_EXECUTOR_TOKENIZERS = ProcessCache()


def cached_tokenizer(spec: EncoderSpec) -> LoadedTokenizer:
    """The tokenizer of `spec`, built once per process: executors call this for every batch."""

    def build() -> LoadedTokenizer:
        shipped = spec.tokenizer_json
        text = shipped if isinstance(shipped, str) else shipped.value
        return LoadedTokenizer.from_json(text, spec.eos_id, spec.pad_id, 0)

    return _EXECUTOR_TOKENIZERS.get(spec.key, build)


DOCUMENT_SPILL_PREFIX = "documents"  # names of the spill files of documents' tokens

# The export's input tasks: row groups first_row_group ... + row_groups - 1 of one Parquet file.
PARTS = pa.schema([pa.field("path", pa.string()), pa.field("first_row_group", pa.int32()),
                   pa.field("row_groups", pa.int32())])

# What the export reads of a stage's documents: one row per document with its sampling copies.
DOCUMENTS = pa.schema([pa.field("doc_id", pa.string()), pa.field("text", pa.string()),
                       pa.field("copies", pa.int32())])


def document_parts(paths: Iterable[str | os.PathLike], part_bytes: int = 128 * 2**20) -> list[tuple[str, int, int]]:
    """The export's input tasks over the Parquet files `paths`: (path, first row group, row groups).

    Consecutive row groups of a file are taken together until they hold `part_bytes` (uncompressed,
    as the footer says), so files written with small row groups do not make a task each.
    InputError when a file lacks doc_id or text, before any work starts.
    """
    import pyarrow.parquet as pq

    from pipeline.inputs import InputError

    parts = []
    for path in paths:
        parquet = pq.ParquetFile(path)
        missing = {"doc_id", "text"} - set(parquet.schema_arrow.names)
        if missing:
            raise InputError(f"{path} lacks column(s) {sorted(missing)}")
        first, size = 0, 0
        for group in range(parquet.metadata.num_row_groups):
            size += parquet.metadata.row_group(group).total_byte_size
            if size >= part_bytes or group == parquet.metadata.num_row_groups - 1:
                parts.append((str(path), first, group + 1 - first))
                first, size = group + 1, 0
    return parts


def read_document_parts(parts: Iterator[pa.RecordBatch], batch_documents: int) -> Iterator[pa.RecordBatch]:
    """`document_parts` rows -> DOCUMENTS batches of at most `batch_documents` rows, read with pyarrow.

    Reading in the Python worker keeps the text out of the JVM: Spark's own reader would decode
    it, convert it to rows and send it over as Arrow, about 15% of the tokenizing time again.
    copies is sample_copies (null counts as 1), or 1 when the stage has no rebalancing.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for part in parts:
        for path, first, count in zip(*(part.column(name).to_pylist() for name in PARTS.names), strict=True):
            parquet = pq.ParquetFile(path)
            rebalanced = "sample_copies" in parquet.schema_arrow.names
            columns = ["doc_id", "text", "sample_copies"] if rebalanced else ["doc_id", "text"]
            row_groups = list(range(first, first + count))
            for batch in parquet.iter_batches(batch_size=batch_documents, row_groups=row_groups, columns=columns):
                if rebalanced:
                    copies = pc.fill_null(pc.cast(batch.column("sample_copies"), pa.int32()), 1)
                else:
                    copies = pa.array(np.ones(batch.num_rows, dtype=np.int32))
                yield pa.RecordBatch.from_arrays(
                    [batch.column("doc_id").cast(pa.string()), batch.column("text").cast(pa.string()), copies],
                    schema=DOCUMENTS)


def content_key(tokens: np.ndarray) -> int:
    """A signed 64-bit hash of a document's tokens: orders copies whose doc_keys are equal (a repeated doc_id)."""
    return int.from_bytes(hashlib.blake2b(tokens.tobytes(), digest_size=8).digest(), "little", signed=True)


def tokenize_batches(batches: Iterator[pa.RecordBatch], encoder: EncoderSpec, seed: int,
                     validation_fraction: float, pack_ranges: int, batch_documents: int, spill_dir: str,
                     tally: dict[int, list[int]] | None = None) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: documents (doc_id, text, copies) -> TOKENIZED rows, one per copy.

    The tokens, each document closed with EOS, go once to this task's spill file in `spill_dir`;
    the rows point at them. Documents with no text or no copies emit nothing; `tally`, when given,
    counts them and the documents and copies of each split (see packing.TALLY_FIELDS).
    """
    # Spark runs one task per core: the tokenizer's own thread pool would only oversubscribe it.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    tokenizer = cached_tokenizer(encoder)
    spill = SpillWriter(spill_dir, DOCUMENT_SPILL_PREFIX)
    try:
        for batch in batches:
            for chunk_start in range(0, batch.num_rows, batch_documents):
                chunk = batch.slice(chunk_start, batch_documents)
                doc_ids = chunk.column("doc_id").to_pylist()
                texts = chunk.column("text").to_pylist()
                copies = chunk.column("copies").to_pylist()
                keep = [i for i, (text, n) in enumerate(zip(texts, copies, strict=True)) if text and n and n > 0]
                if tally is not None:
                    empty = sum(1 for text in texts if not text)
                    add_tally(tally, 0, empty_text=empty, sampled_out=len(texts) - empty - len(keep))
                if not keep:
                    continue
                values, offsets = tokenizer.encode([texts[i] for i in keep])
                first = spill.append(values)
                columns = {name: [] for name in ("split", "range_id", "doc_key", "content_key", "start", "length")}
                for position, i in enumerate(keep):
                    validation = is_validation(doc_ids[i], seed, validation_fraction)
                    if tally is not None:
                        add_tally(tally, int(validation), source_documents=1, copies=copies[i])
                    begin, end = int(offsets[position]), int(offsets[position + 1])
                    content = content_key(values[begin:end])
                    for copy_index in range(copies[i]):
                        key = document_key(doc_ids[i], copy_index, seed)
                        columns["split"].append(1 if validation else 0)
                        columns["range_id"].append(key % pack_ranges)
                        columns["doc_key"].append(key)
                        columns["content_key"].append(content)
                        columns["start"].append(first + begin)
                        columns["length"].append(end - begin)
                yield pa.RecordBatch.from_arrays(
                    [pa.array(columns["split"], pa.int8()), pa.array(columns["range_id"], pa.int32()),
                     pa.array(columns["doc_key"], pa.int64()), pa.array(columns["content_key"], pa.int64()),
                     pa.array([spill.name] * len(columns["start"]), pa.string()),
                     pa.array(columns["start"], pa.int64()), pa.array(columns["length"], pa.int32())],
                    schema=TOKENIZED,
                )
    finally:
        spill.close()


def tokenize_tallied_batches(parts: Iterator[pa.RecordBatch], encoder: EncoderSpec, seed: int,
                             validation_fraction: float, pack_ranges: int, batch_documents: int,
                             spill_dir: str, read_documents=read_document_parts) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: PARTS of the input -> `tokenize_batches`' rows as
    TOKENIZED_TALLIED, then this task's input counts as tally rows, so that the job counts its
    input in the pass that tokenizes it. `read_documents(parts, batch_documents)` turns parts
    into DOCUMENTS batches (other inputs: pipeline.documents_input.document_batches)."""
    tally: dict[int, list[int]] = {}
    documents = read_documents(parts, batch_documents)
    for batch in tokenize_batches(documents, encoder, seed, validation_fraction, pack_ranges, batch_documents,
                                  spill_dir, tally):
        yield with_zero_tally(batch, TOKENIZED_TALLIED)
    if tally:
        yield tally_batch(tally, TOKENIZED_TALLIED)
