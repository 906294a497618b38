"""The export's Megatron shards: Megatron-LM's indexed dataset (a .bin/.idx pair per shard), for Megatron-LM and NeMo.

The format, as Megatron-LM's megatron/core/datasets/indexed_dataset.py writes and reads it (`_IndexWriter`,
`_IndexReader`; read, not copied): PREFIX.bin holds every sequence's token ids back to back in one dtype,
little-endian; PREFIX.idx holds the 9-byte magic b"MMIDIDX\\x00\\x00", the version 1 (<Q), the dtype's code
(<B: uint16 8, int32 4), the sequence count (<Q), the document count (<Q: the length of document_indices), then
every sequence's length (int32), its byte offset in .bin (int64) and document_indices (int64: document d is
sequences document_indices[d] .. document_indices[d + 1] - 1). As Megatron's tools/preprocess_data.py writes a
corpus without sentence splitting (and with --append-eod), each document is one sequence closed with EOS, so
document_indices is 0, 1, ..., n. Megatron's GPT dataset concatenates and shuffles sequences itself, so a
document must be one sequence: never the pieces the Parquet rows cut it into, which would be shuffled apart.

Shards and order follow the Parquet shards' plan (pipeline.export.plan), whether or not those are written: a
document copy goes to the Megatron shard numbered as the Parquet shard that holds its first token, and inside
it documents come in the order of their first tokens there (row, then offset in the row); its tokens are the
ones the Parquet shards hold of it (what a dropped tail took is left out, as there). A shard where no document
starts has no pair. Each copy's tokens are read whole from the packed rows' spill file: a range's rows are laid
back to back there, and a copy's tokens are contiguous in them (packing pads only between documents).

The files are written like the Parquet shards (pipeline.export.shards): from a task, at fixed names the job
listed in `_PARTS` first, through fsspec to any store, the .bin streamed and the .idx after it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from thresher.pipeline.export.index import kept_rows
from thresher.pipeline.export.plan import SPLITS, Placement, ShardPlan
from thresher.pipeline.export.shards import abandon, shard_runs
from thresher.pipeline.export.spill import WRITE_BLOCK_BYTES, SpillReader
from thresher.pipeline.stagedir import storage
from thresher.schemas.export_wire import MEGATRON_DOCUMENTS, MEGATRON_WRITTEN

MEGATRON_DIR = "megatron"  # below the export's directory: megatron/train/shard-00000.bin, .idx
MEGATRON_FORMAT = "megatron-mmap-indexed-dataset/1"  # the .idx's magic MMIDIDX and version 1
INDEX_MAGIC = b"MMIDIDX\x00\x00"
INDEX_VERSION = 1
_DTYPE_CODES = {np.dtype("<u2"): 8, np.dtype("<i4"): 4}  # Megatron's DType enum: uint16 = 8, int32 = 4


def megatron_dtype(vocab_size: int) -> np.dtype:
    """The token dtype: uint16 for a vocabulary under 65,500 ids, else int32 (Megatron's DType.optimal_dtype,
    which tools/preprocess_data.py applies to the tokenizer's vocabulary size)."""
    return np.dtype("<u2") if vocab_size < 65_500 else np.dtype("<i4")


def megatron_prefix(split: str, shard: int) -> str:
    """A Megatron shard's prefix, relative to the export's directory: what `--data-path` takes (without .bin/.idx)."""
    return f"{MEGATRON_DIR}/{split}/shard-{shard:05d}"


def megatron_files(split: str, shard: int) -> list[str]:
    return [f"{megatron_prefix(split, shard)}{suffix}" for suffix in (".bin", ".idx")]


def index_bytes(dtype: np.dtype, lengths: np.ndarray) -> bytes:
    """The .idx of a shard whose sequences, one per document, have `lengths` tokens of `dtype`."""
    lengths = np.asarray(lengths, dtype="<i4")
    pointers = np.zeros(len(lengths), dtype="<i8")
    np.cumsum(lengths[:-1].astype("<i8") * dtype.itemsize, out=pointers[1:])
    documents = np.arange(len(lengths) + 1, dtype="<i8")
    return b"".join([INDEX_MAGIC, struct.pack("<Q", INDEX_VERSION), struct.pack("<B", _DTYPE_CODES[dtype]),
                     struct.pack("<Q", len(lengths)), struct.pack("<Q", len(documents)),
                     lengths.tobytes(), pointers.tobytes(), documents.tobytes()])


def megatron_documents(batches: Iterator[pa.RecordBatch], placement: Placement, capacity: int,
                       range_sequences: dict[tuple[int, int], int],
                       range_rows: dict[tuple[int, int], tuple[str, int]]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: PACKED_DOCUMENTS rows -> MEGATRON_DOCUMENTS rows, one per document copy whose first token
    the shards keep; `range_sequences` gives the rows each (split, range_id) kept, `range_rows` the spill file of
    its rows and where the first starts there."""
    for batch in batches:
        splits, ranges = batch.column("split").to_numpy(), batch.column("range_id").to_numpy()
        starts, lengths = batch.column("range_start").to_numpy(), batch.column("length").to_numpy().astype(np.int64)
        kept_tokens = kept_rows(splits, ranges, range_sequences) * capacity
        kept = starts < kept_tokens
        splits, ranges, starts = splits[kept], ranges[kept], starts[kept]
        lengths = np.minimum(starts + lengths[kept], kept_tokens[kept]) - starts
        shards = np.empty(len(starts), dtype=np.int32)
        sequences = np.empty(len(starts), dtype=np.int64)
        for split in np.unique(splits).tolist():
            mine = splits == split
            positions = placement.positions(split, ranges[mine], starts[mine] // capacity)
            per_shard = placement.plans[split].sequences_per_shard
            shards[mine], sequences[mine] = positions // per_shard, positions % per_shard
        located = [range_rows[(int(s), int(r))] for s, r in zip(splits, ranges, strict=True)]
        yield pa.RecordBatch.from_arrays(
            [pa.array(splits, pa.int8()), pa.array(shards), pa.array(sequences), pa.array(starts % capacity, pa.int32()),
             pa.array([file for file, _ in located], pa.string()),
             pa.array(np.fromiter((first for _, first in located), np.int64, len(located)) + starts),
             pa.array(lengths, pa.int32())], schema=MEGATRON_DOCUMENTS)


class MegatronShardWriter:
    """One shard's .bin (streamed, a batch of documents at a time) and .idx (written at `close`)."""

    def __init__(self, prefix: str, dtype: np.dtype):
        self.prefix = prefix
        self.dtype = dtype
        self._fs, self._located = storage(prefix)
        self._fs.makedirs(self._located.rsplit("/", 1)[0], exist_ok=True)  # a local directory; nothing on a store
        self._bin = self._fs.open(f"{self._located}.bin", "wb", block_size=WRITE_BLOCK_BYTES)
        self._lengths: list[np.ndarray] = []
        self.documents = self.tokens = self.bin_size = self.idx_size = 0

    def write(self, values: np.ndarray, offsets: np.ndarray) -> None:
        """Append documents values[offsets[i]:offsets[i + 1]], one sequence each."""
        if len(values) and int(values.max()) > np.iinfo(self.dtype).max:
            raise ValueError(f"{self.prefix}: token id {int(values.max())} does not fit {self.dtype.name}")
        self._bin.write(np.ascontiguousarray(values[offsets[0]:offsets[-1]], dtype=self.dtype).data)
        self._lengths.append(np.diff(offsets))
        self.documents += len(offsets) - 1
        self.tokens += int(offsets[-1] - offsets[0])

    def close(self) -> None:
        self.bin_size = self._bin.tell()
        self._bin.close()  # on an object store: the upload completes, the object appears whole
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, dtype=np.int64)
        data = index_bytes(self.dtype, lengths)
        with self._fs.open(f"{self._located}.idx", "wb") as file:
            file.write(data)
        self.idx_size = len(data)

    def discard(self) -> None:
        """Give up the shard (its task failed): nothing of its .bin appears on an object store."""
        abandon(self._bin)


def token_chunks(lengths: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """[start, end) runs of documents with `lengths` holding at most `budget` tokens each (or one document)."""
    chunks, first, total = [], 0, 0
    for i, length in enumerate(lengths.tolist()):
        if total and total + length > budget:
            chunks.append((first, i))
            first, total = i, 0
        total += length
    return [*chunks, (first, len(lengths))] if len(lengths) else []


def write_megatron_batches(batches: Iterator[pa.RecordBatch], output_dir: str, spill_dir: str, dtype: np.dtype,
                           plans: dict[int, ShardPlan], batch_tokens: int) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: MEGATRON_DOCUMENTS rows sorted by (split, shard, sequence, token_start) -> a .bin/.idx
    pair per (split, shard), and a MEGATRON_WRITTEN row for each. Tokens are read and written `batch_tokens` at a
    time (or one document), so memory is bounded whatever the documents' lengths. A shard's documents out of
    order is an error."""
    reader = SpillReader(spill_dir)
    writer: MegatronShardWriter | None = None
    current: tuple[int, int] | None = None
    last = (-1, -1)

    def finish() -> pa.RecordBatch:
        writer.close()
        return pa.RecordBatch.from_pylist(
            [{"split": current[0], "shard": current[1], "prefix": megatron_prefix(SPLITS[current[0]], current[1]),
              "documents": writer.documents, "tokens": writer.tokens, "bin_size": writer.bin_size,
              "idx_size": writer.idx_size}], schema=MEGATRON_WRITTEN)

    try:
        for batch in batches:
            sequences, token_starts = batch.column("sequence").to_numpy(), batch.column("token_start").to_numpy()
            for key, start, end in shard_runs(batch):
                if key != current:
                    if writer is not None:
                        yield finish()
                    if key[1] >= plans[key[0]].shards:
                        raise RuntimeError(f"{SPLITS[key[0]]}: shard {key[1]} is not in the plan")
                    current, last = key, (-1, -1)
                    writer = MegatronShardWriter(f"{output_dir.rstrip('/')}/{megatron_prefix(SPLITS[key[0]], key[1])}",
                                                 dtype)
                order = np.stack([sequences[start:end], token_starts[start:end]], axis=1)
                previous = np.vstack([np.asarray([last]), order[:-1]])
                if not np.all((order[:, 0] > previous[:, 0]) | ((order[:, 0] == previous[:, 0])
                                                                 & (order[:, 1] > previous[:, 1]))):
                    raise RuntimeError(f"{writer.prefix}: documents out of order near row {int(order[0, 0])}")
                last = tuple(order[-1].tolist())
                files, firsts = batch.column("file").to_pylist()[start:end], batch.column("start").to_numpy()[start:end]
                lengths = batch.column("length").to_numpy()[start:end].astype(np.int64)
                for first, stop in token_chunks(lengths, batch_tokens):
                    writer.write(*reader.gather(files[first:stop], firsts[first:stop], lengths[first:stop]))
    except BaseException:
        if writer is not None and writer.bin_size == 0:
            writer.discard()  # the shard this attempt was writing: nothing of it appears
        raise
    finally:
        reader.close()
    if writer is not None:
        yield finish()


def megatron_manifest(written: list, dtype: np.dtype, tokenizer: dict, eos_token_id: int) -> dict:
    """What manifest.json says of the Megatron shards: format, dtype, tokenizer, per split the shards (prefix,
    documents, tokens, bytes) in order and the prefixes as `--data-path` takes them."""
    splits = {}
    for code, name in enumerate(SPLITS):
        shards = [{"prefix": row["prefix"], "documents": row["documents"], "tokens": row["tokens"],
                   "bin_bytes": row["bin_size"], "idx_bytes": row["idx_size"]}
                  for row in sorted((r for r in written if r["split"] == code), key=lambda r: r["shard"])]
        splits[name] = {"shards": shards, "data_path": [shard["prefix"] for shard in shards],
                        "documents": sum(shard["documents"] for shard in shards),
                        "tokens": sum(shard["tokens"] for shard in shards)}
    return {"format": MEGATRON_FORMAT, "dtype": dtype.name, "tokenizer": tokenizer, "eos_token_id": eos_token_id,
            "sequences": "one per document copy, closed with EOS (document_indices 0, 1, ..., n)", "splits": splits}
