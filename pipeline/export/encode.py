"""The export's first step: read documents, encode them into spilled tokens, and count the input.

Executors read the input's documents themselves (a committed stage's Parquet row groups with
pyarrow, other inputs through pipeline.stagedir.documents), encode them in batches with the fast
tokenizer shipped as JSON (`EncoderSpec`), close each document with EOS, append the tokens to the
task's spill file and emit one TOKENIZED pointer row per sampling copy (schemas/export_wire.py),
with its split, seeded key and packing range (pipeline.export.plan).

Each task's input counts (`InputTally`) leave it by a channel of their own: one INPUT_TALLY file
per task attempt in the spill directory (a local path or any fsspec URL), named by the input part it
read and written whole. A part's counts depend only on
its documents, so a retried or speculative attempt writes the same counts, and the driver takes
one file per part (`read_input_tally`) however many attempts ran. The input's Parquet files, too, may
be on any fsspec URL (a committed stage on s3://...): they are opened through fsspec.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from thresher.pipeline.export.plan import SPLITS, document_key, is_validation
from thresher.pipeline.export.spill import SpillWriter
from thresher.pipeline.export.tokenize import LoadedTokenizer
from thresher.pipeline.process_cache import ProcessCache
from thresher.pipeline.stagedir import storage, write_whole
from thresher.schemas.export_wire import DOCUMENTS, INPUT_TALLY, PARTS, TOKENIZED

DOCUMENT_SPILL_PREFIX = "documents"  # names of the spill files of documents' tokens
TALLY_PREFIX = "tally"  # names of the INPUT_TALLY files, one per task attempt


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


@dataclass
class InputTally:
    """Input counts: documents exported and their copies per split code, documents without text or sampled out."""

    source_documents: list[int] = field(default_factory=lambda: [0] * len(SPLITS))
    copies: list[int] = field(default_factory=lambda: [0] * len(SPLITS))
    empty_text: int = 0
    sampled_out: int = 0  # text, but no copies

    def add(self, other: InputTally) -> None:
        self.source_documents = [a + b for a, b in zip(self.source_documents, other.source_documents, strict=True)]
        self.copies = [a + b for a, b in zip(self.copies, other.copies, strict=True)]
        self.empty_text += other.empty_text
        self.sampled_out += other.sampled_out

    @property
    def documents_in(self) -> int:
        return self.empty_text + self.sampled_out + sum(self.source_documents)


def document_parts(paths: Iterable[str | os.PathLike], part_bytes: int = 128 * 2**20) -> list[tuple[str, int, int]]:
    """The export's input tasks over the Parquet files `paths`: (path, first row group, row groups).

    Consecutive row groups of a file are taken together until they hold `part_bytes` (uncompressed,
    as the footer says), so files written with small row groups do not make a task each.
    InputError when a file lacks doc_id or text, before any work starts.
    """
    from thresher.schemas.errors import InputError

    parts = []
    for path in paths:
        parquet = open_parquet(path)
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


def open_parquet(path: str | os.PathLike):
    """A pyarrow ParquetFile of the Parquet file at `path`, a local path or any fsspec URL."""
    import pyarrow.parquet as pq

    fs, located = storage(path)
    return pq.ParquetFile(located, filesystem=fs)


def read_document_parts(parts: Iterator[pa.RecordBatch], batch_documents: int) -> Iterator[pa.RecordBatch]:
    """`document_parts` rows -> DOCUMENTS batches of at most `batch_documents` rows, read with pyarrow.

    Reading in the Python worker keeps the text out of the JVM: Spark's own reader would decode
    it, convert it to rows and send it over as Arrow, about 15% of the tokenizing time again.
    copies is sample_copies (null counts as 1), or 1 when the stage has no rebalancing.
    """
    import pyarrow.compute as pc

    for part in parts:
        for path, first, count in zip(*(part.column(name).to_pylist() for name in PARTS.names), strict=True):
            parquet = open_parquet(path)
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
                     tally: InputTally | None = None) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: documents (doc_id, text, copies) -> TOKENIZED rows, one per copy.

    The tokens, each document closed with EOS, go once to this task's spill file in `spill_dir`;
    the rows point at them. Documents with no text or no copies emit nothing; `tally`, when given,
    counts them and the documents and copies of each split.
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
                    tally.empty_text += empty
                    tally.sampled_out += len(texts) - empty - len(keep)
                if not keep:
                    continue
                values, offsets = tokenizer.encode([texts[i] for i in keep])
                first = spill.append(values)
                columns = {name: [] for name in ("split", "range_id", "doc_key", "content_key", "start", "length")}
                for position, i in enumerate(keep):
                    validation = is_validation(doc_ids[i], seed, validation_fraction)
                    if tally is not None:
                        tally.source_documents[int(validation)] += 1
                        tally.copies[int(validation)] += copies[i]
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


def _task_part() -> int:
    """The Spark partition this task reads: the input part its counts are reported under."""
    from pyspark import TaskContext

    context = TaskContext.get()
    if context is None:
        raise RuntimeError("tokenize_parts runs as a Spark task, or is given its part")
    return context.partitionId()


def write_input_tally(spill_dir: str | os.PathLike, part: int, tally: InputTally) -> None:
    """`tally` as this attempt's INPUT_TALLY file of `part` in `spill_dir` (any URL), complete or absent
    (one PUT on an object store)."""
    import pyarrow.parquet as pq

    fs, directory = storage(spill_dir)
    fs.makedirs(directory, exist_ok=True)  # a local directory; nothing on an object store
    name = f"{TALLY_PREFIX}-{part:05d}-{uuid.uuid4().hex}.parquet"
    table = pa.Table.from_pylist([{"part": part, "source_documents": tally.source_documents, "copies": tally.copies,
                                   "empty_text": tally.empty_text, "sampled_out": tally.sampled_out}],
                                 schema=INPUT_TALLY)
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    write_whole(fs, f"{directory}/{name}", buffer.getvalue().to_pybytes())


def read_input_tally(spill_dir: str | os.PathLike, parts: int) -> InputTally:
    """The summed counts of input parts 0 ... parts - 1, one INPUT_TALLY file each.

    Several files of a part (a retried or speculative attempt) must agree, since a part's counts
    depend on its documents alone; a part without one is an error, never a silently short count.
    """
    import pyarrow.parquet as pq

    fs, directory = storage(spill_dir)
    fs.invalidate_cache(directory)
    by_part: dict[int, dict] = {}
    for path in sorted(fs.glob(f"{directory}/{TALLY_PREFIX}-*.parquet")):
        for row in pq.read_table(path, schema=INPUT_TALLY, filesystem=fs).to_pylist():
            seen = by_part.setdefault(row["part"], row)
            if seen != row:
                raise RuntimeError(f"input part {row['part']}: two attempts counted differently: {seen} and {row}")
    if sorted(by_part) != list(range(parts)):
        missing, extra = sorted(set(range(parts)) - set(by_part)), sorted(set(by_part) - set(range(parts)))
        raise RuntimeError(f"input counts: parts {missing} reported none, parts {extra} are not in the job")
    total = InputTally()
    for row in by_part.values():
        total.add(InputTally(row["source_documents"], row["copies"], row["empty_text"], row["sampled_out"]))
    return total


def tokenize_parts(parts: Iterator[pa.RecordBatch], encoder: EncoderSpec, seed: int, validation_fraction: float,
                   pack_ranges: int, batch_documents: int, spill_dir: str, read_documents=read_document_parts,
                   part: int | None = None) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: input parts -> `tokenize_batches`' TOKENIZED rows; at the end, this task's
    input counts go to its INPUT_TALLY file, so that the job counts its input in the pass that
    tokenizes it. `read_documents(parts, batch_documents)` turns parts into DOCUMENTS batches
    (PARTS rows by default; other inputs: pipeline.stagedir.documents.document_batches). `part` is
    the task's Spark partition unless given."""
    part = _task_part() if part is None else part
    tally = InputTally()
    documents = read_documents(parts, batch_documents)
    yield from tokenize_batches(documents, encoder, seed, validation_fraction, pack_ranges, batch_documents,
                                spill_dir, tally)
    write_input_tally(spill_dir, part, tally)
