"""Packing tokenized documents into fixed-length sequences, and the seeded orders around it.

- Each document goes to train or validation by a seeded hash of its doc_id alone, so every copy of
  a document lands in the same split.
- Each document copy gets a seeded 63-bit key; sorting by it is a seeded shuffle of the documents,
  and `key % ranges` deals them into independent packing ranges.
- A packer turns a stream of documents (each closed with EOS) into rows of `capacity` tokens
  (seq_len + 1). concat mode fills every row to the brim, documents running on into the next row;
  boundary mode starts a document that fits in one row on a fresh row when the current one has no
  room, padding the rest, and records where documents start in each row.
- `permute` is a seeded bijection of [0, n): a sequence's position in the shuffled split, computed
  from its index alone, so the global shuffle needs no global sort.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.seeded_hash import hash64
from pipeline.spill import SpillReader, SpillWriter

PACK_MODES = ("concat", "boundary")
TAIL_MODES = ("pad", "drop")
SPLITS = ("train", "validation")  # split codes 0 and 1


def is_validation(doc_id: str, seed: int, validation_fraction: float) -> bool:
    """Whether `doc_id` belongs to the validation split (depends on doc_id and seed only)."""
    return hash64("split", seed, doc_id) < validation_fraction * 2.0**64


def document_key(doc_id: str, copy_index: int, seed: int) -> int:
    """The seeded, non-negative 63-bit sort key of one copy of a document."""
    return hash64("order", seed, doc_id, copy_index) >> 1


@dataclass
class PackedRows:
    """Rows made by a packer: tokens [rows, capacity], per-row document starts, counts."""

    tokens: np.ndarray  # int32 [rows, capacity]
    doc_offsets: list[np.ndarray]  # int32 offsets of documents starting in each row ([0] in concat mode)
    documents: np.ndarray  # int32: how many documents start in each row
    padding: np.ndarray  # int32: pad tokens at the end of each row

    @staticmethod
    def empty(capacity: int) -> PackedRows:
        nothing = np.zeros(0, dtype=np.int32)
        return PackedRows(np.zeros((0, capacity), dtype=np.int32), [], nothing, nothing)

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class Packer:
    """Packs documents, given in order as flat values + offsets batches, into rows of `capacity`.

    `add` returns the rows completed so far; `finish` returns the last, partial row padded with
    `pad_id` (tail="pad") or nothing (tail="drop", its tokens counted in `dropped_tokens`).
    """

    capacity: int
    mode: str = "concat"
    pad_id: int = 0
    tail: str = "pad"
    dropped_tokens: int = 0
    dropped_documents: int = 0  # documents that start in a dropped tail
    _pending: list[np.ndarray] = field(default_factory=list)  # tokens of the unfinished row
    _pending_len: int = 0
    _pending_starts: list[int] = field(default_factory=list)  # document starts in the unfinished row

    def __post_init__(self):
        if self.mode not in PACK_MODES:
            raise ValueError(f"pack mode {self.mode!r}: expected one of {PACK_MODES}")
        if self.tail not in TAIL_MODES:
            raise ValueError(f"tail {self.tail!r}: expected one of {TAIL_MODES}")
        if self.capacity < 2:
            raise ValueError("capacity (seq_len + 1) must be at least 2")

    def add(self, values: np.ndarray, offsets: np.ndarray) -> PackedRows:
        """Add documents values[offsets[i]:offsets[i+1]] (each already closed with EOS)."""
        if self.mode == "concat":
            return self._add_concat(values, offsets)
        return self._add_boundary(values, offsets)

    def _add_concat(self, values: np.ndarray, offsets: np.ndarray) -> PackedRows:
        # Vectorised: the stream is the pending tokens then the batch; full rows are reshaped out of it.
        carried = self._pending_len
        stream = np.concatenate([*self._pending, values[offsets[0] : offsets[-1]]]).astype(np.int32, copy=False)
        starts = np.concatenate([np.asarray(self._pending_starts, dtype=np.int64), offsets[:-1] - offsets[0] + carried])
        rows = len(stream) // self.capacity
        used = rows * self.capacity
        self._pending = [stream[used:]]
        self._pending_len = len(stream) - used
        self._pending_starts = (starts[starts >= used] - used).tolist()
        documents = np.bincount(starts[starts < used] // self.capacity, minlength=rows).astype(np.int32)
        zero = np.zeros(1, dtype=np.int32)
        return PackedRows(
            tokens=stream[:used].reshape(rows, self.capacity),
            doc_offsets=[zero] * rows,
            documents=documents,
            padding=np.zeros(rows, dtype=np.int32),
        )

    def _add_boundary(self, values: np.ndarray, offsets: np.ndarray) -> PackedRows:
        out = _RowCollector(self.capacity)
        for start, end in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
            document = values[start:end]
            room = self.capacity - self._pending_len
            if len(document) > room and len(document) <= self.capacity and self._pending_len:
                out.append(self._take_pending(pad=True))  # it fits a row of its own: don't split it
            self._pending_starts.append(self._pending_len)
            while len(document):
                room = self.capacity - self._pending_len
                self._pending.append(document[:room])
                self._pending_len += min(room, len(document))
                document = document[room:]
                if self._pending_len == self.capacity:
                    out.append(self._take_pending(pad=False))
        return out.rows()

    def _take_pending(self, pad: bool) -> tuple[np.ndarray, np.ndarray, int, int]:
        padding = self.capacity - self._pending_len if pad else 0
        tokens = np.concatenate([*self._pending, np.full(padding, self.pad_id, dtype=np.int32)]).astype(np.int32)
        starts = self._pending_starts or []
        offsets = np.asarray([0] + [s for s in starts if s != 0], dtype=np.int32)
        if self.mode == "concat":
            offsets = np.zeros(1, dtype=np.int32)
        documents = len(starts)
        self._pending, self._pending_len, self._pending_starts = [], 0, []
        return tokens, offsets, documents, padding

    def finish(self) -> PackedRows:
        """The last, partial row (padded), or nothing: tail="drop" or no pending tokens."""
        if not self._pending_len:
            return PackedRows.empty(self.capacity)
        if self.tail == "drop":
            self.dropped_tokens += self._pending_len
            self.dropped_documents += len(self._pending_starts)
            self._pending, self._pending_len, self._pending_starts = [], 0, []
            return PackedRows.empty(self.capacity)
        out = _RowCollector(self.capacity)
        out.append(self._take_pending(pad=True))
        return out.rows()


class _RowCollector:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.items: list[tuple[np.ndarray, np.ndarray, int, int]] = []

    def append(self, item: tuple[np.ndarray, np.ndarray, int, int]) -> None:
        self.items.append(item)

    def rows(self) -> PackedRows:
        if not self.items:
            return PackedRows.empty(self.capacity)
        tokens, offsets, documents, padding = zip(*self.items, strict=True)
        return PackedRows(
            tokens=np.stack(tokens),
            doc_offsets=list(offsets),
            documents=np.asarray(documents, dtype=np.int32),
            padding=np.asarray(padding, dtype=np.int32),
        )


def _mix64(x: np.ndarray, key: int) -> np.ndarray:
    """splitmix64's finaliser over uint64 `x` xor `key`: the Feistel round function."""
    with np.errstate(over="ignore"):
        z = x ^ np.uint64(key)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def permute(indices: np.ndarray, n: int, seed: int, rounds: int = 6) -> np.ndarray:
    """A seeded bijection of [0, n) applied to `indices`: a Feistel network with cycle walking.

    Each index maps to its own position without materialising the permutation, so positions of
    a billion sequences can be computed in pieces, anywhere.
    """
    indices = np.asarray(indices, dtype=np.uint64)
    if n <= 1:
        return indices.astype(np.int64)
    half_bits = max(1, ((n - 1).bit_length() + 1) // 2)
    mask = np.uint64((1 << half_bits) - 1)
    keys = [hash64("permute", seed, n, r) for r in range(rounds)]

    def feistel(x: np.ndarray) -> np.ndarray:
        left, right = x >> np.uint64(half_bits), x & mask
        for key in keys:
            left, right = right, left ^ (_mix64(right, key) & mask)
        return (left << np.uint64(half_bits)) | right

    out = feistel(indices)
    outside = out >= np.uint64(n)
    while outside.any():  # cycle walking: the domain is at most 4n, so this ends in a few steps
        out[outside] = feistel(out[outside])
        outside = out >= np.uint64(n)
    return out.astype(np.int64)


def shuffle_seed(seed: int, split: str) -> int:
    """The `permute` seed of a split: row i of the split (ranges in order) goes to permute(i, n, this)."""
    return hash64("shuffle", seed, split)


@dataclass(frozen=True)
class ShardPlan:
    """Where the sequence at shuffled position `pos` of a split goes: a shard and a row in it."""

    sequences: int  # in the split
    sequences_per_shard: int

    @staticmethod
    def for_split(sequences: int, capacity: int, shard_tokens: int) -> ShardPlan:
        return ShardPlan(sequences, max(1, shard_tokens // capacity))

    @property
    def shards(self) -> int:
        return -(-self.sequences // self.sequences_per_shard)

    def shard_sequences(self, shard: int) -> int:
        return min(self.sequences_per_shard, self.sequences - shard * self.sequences_per_shard)


def shard_path(split: str, shard: int) -> str:
    """A shard's path relative to the output directory."""
    return f"{split}/shard-{shard:05d}.parquet"


# Between stages the tokens stay in spill files (pipeline/spill.py); rows carry where they are.
# `file` is a spill file's name, `start` the offset of the first token in it.

# Tokenized document copies, the input of packing: one row per copy. Copies of a document point
# at the same tokens (closed with EOS).
TOKENIZED = pa.schema(
    [
        pa.field("split", pa.int8(), nullable=False),  # index into SPLITS
        pa.field("range_id", pa.int32(), nullable=False),  # doc_key % pack_ranges
        pa.field("doc_key", pa.int64(), nullable=False),  # document_key(doc_id, copy, seed)
        pa.field("content_key", pa.int64(), nullable=False),  # hash of the tokens: orders equal doc_keys
        pa.field("file", pa.string(), nullable=False),
        pa.field("start", pa.int64(), nullable=False),
        pa.field("length", pa.int32(), nullable=False),  # tokens, EOS included
    ]
)

# Packed rows of one range, in order; each row's tokens are `capacity` tokens at (file, start).
# A row with start -1 holds no tokens: it only carries what tail="drop" dropped.
PACKED = pa.schema(
    [
        pa.field("split", pa.int8(), nullable=False),
        pa.field("range_id", pa.int32(), nullable=False),
        pa.field("seq_index", pa.int64(), nullable=False),  # position of the row inside its range
        pa.field("file", pa.string(), nullable=False),
        pa.field("start", pa.int64(), nullable=False),
        pa.field("doc_offsets", pa.list_(pa.int32()), nullable=False),
        pa.field("documents", pa.int32(), nullable=False),  # documents that start in this row
        pa.field("padding", pa.int32(), nullable=False),
        pa.field("dropped_tokens", pa.int32(), nullable=False),
        pa.field("dropped_documents", pa.int32(), nullable=False),
    ]
)

# Packed rows with their place in the output: shard, and position in the shuffled split.
PLACED = pa.schema(
    [
        pa.field("split", pa.int8(), nullable=False),
        pa.field("shard", pa.int32(), nullable=False),
        pa.field("pos", pa.int64(), nullable=False),
        pa.field("file", pa.string(), nullable=False),
        pa.field("start", pa.int64(), nullable=False),
        pa.field("doc_offsets", pa.list_(pa.int32()), nullable=False),
    ]
)

# The job's input counts travel with the data, so that the input text is read once: TOKENIZED_TALLIED
# adds them to TOKENIZED. Data rows carry zeros; a tally row (no tokens, range_id TALLY_RANGE)
# carries one task's counts. Documents without text or sampled out have no split of their own:
# their counts go on split 0's tally row.
TALLY_FIELDS = ("source_documents", "copies", "empty_text", "sampled_out")
TALLY_RANGE = -1


def _with_tally(schema: pa.Schema) -> pa.Schema:
    return pa.schema([*schema, *(pa.field(name, pa.int64(), nullable=False) for name in TALLY_FIELDS)])


TOKENIZED_TALLIED = _with_tally(TOKENIZED)

# What a packing task reports to the driver: a row per range it packed (its counts, and the
# Parquet file of PACKED rows holding the range's rows), then its summed tally rows.
RANGE_COUNTS = ("sequences", "documents", "padding", "dropped_tokens", "dropped_documents")
RANGE_SUMMARY = _with_tally(pa.schema(
    [
        pa.field("split", pa.int8(), nullable=False),
        pa.field("range_id", pa.int32(), nullable=False),
        pa.field("file", pa.string(), nullable=False),  # PACKED rows, in the spill directory
        *(pa.field(name, pa.int64(), nullable=False) for name in RANGE_COUNTS),
    ]
))
_TALLY_ROW_DEFAULTS = {"range_id": TALLY_RANGE, "doc_key": -1, "content_key": 0, "file": "", "start": -1,
                       "length": 0, "sequences": 0, "documents": 0, "padding": 0, "dropped_tokens": 0,
                       "dropped_documents": 0}


def with_zero_tally(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """`batch` (TOKENIZED rows) in its TALLIED `schema`, with zero counts."""
    zeros = pa.array(np.zeros(batch.num_rows, dtype=np.int64))
    return pa.RecordBatch.from_arrays([*batch.columns, *[zeros] * len(TALLY_FIELDS)], schema=schema)


def add_tally(tally: dict[int, list[int]], split: int, **counts: int) -> None:
    """Add `counts` (names from TALLY_FIELDS) to `split`'s entry of `tally`."""
    entry = tally.setdefault(split, [0] * len(TALLY_FIELDS))
    for name, count in counts.items():
        entry[TALLY_FIELDS.index(name)] += count


def tally_batch(tally: dict[int, list[int]], schema: pa.Schema) -> pa.RecordBatch:
    """One tally row per split of `tally`, in `schema` (TOKENIZED_TALLIED or RANGE_SUMMARY)."""
    rows = [{**{name: _TALLY_ROW_DEFAULTS[name] for name in schema.names if name in _TALLY_ROW_DEFAULTS},
             "split": split, **dict(zip(TALLY_FIELDS, counts, strict=True))}
            for split, counts in sorted(tally.items())]
    return pa.RecordBatch.from_pylist(rows, schema=schema)


def list_array(values: np.ndarray, offsets: np.ndarray) -> pa.Array:
    """A list<int32> Arrow array over flat `values` and `offsets` (from 0), without copying."""
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32, copy=False)), pa.array(values, pa.int32()))


def _group_bounds(*keys: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of runs of equal keys in sorted columns."""
    n = len(keys[0])
    change = np.zeros(n, dtype=bool)
    for key in keys:
        change[1:] |= key[1:] != key[:-1]
    starts = np.flatnonzero(change).tolist()
    bounds = [0, *starts, n] if n else []
    return list(zip(bounds[:-1], bounds[1:], strict=False))


def _packed_batch(split: int, range_id: int, first_index: int, rows: PackedRows, spill: SpillWriter) -> pa.RecordBatch:
    n, capacity = rows.tokens.shape
    first = spill.append(rows.tokens.reshape(-1))
    lengths = np.fromiter((len(o) for o in rows.doc_offsets), dtype=np.int64, count=n)
    zeros = pa.array(np.zeros(n, np.int32))
    return pa.RecordBatch.from_arrays(
        [
            pa.array(np.full(n, split, np.int8)),
            pa.array(np.full(n, range_id, np.int32)),
            pa.array(np.arange(first_index, first_index + n, dtype=np.int64)),
            pa.array([spill.name] * n, pa.string()),
            pa.array(np.arange(first, first + n * capacity, capacity, dtype=np.int64)),
            list_array(np.concatenate(rows.doc_offsets), np.concatenate([[0], np.cumsum(lengths)])),
            pa.array(rows.documents, pa.int32()),
            pa.array(rows.padding, pa.int32()),
            zeros,
            zeros,
        ],
        schema=PACKED,
    )


def _dropped_batch(split: int, range_id: int, tokens: int, documents: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(
        [{"split": split, "range_id": range_id, "seq_index": -1, "file": "", "start": -1, "doc_offsets": [],
          "documents": 0, "padding": 0, "dropped_tokens": tokens, "dropped_documents": documents}],
        schema=PACKED,
    )


def pack_batches(batches: Iterator[pa.RecordBatch], capacity: int, mode: str, pad_id: int, tail: str,
                 spill_dir: str) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: TOKENIZED rows sorted by (split, range_id, doc_key, content_key) -> PACKED rows.

    Each range is packed on its own. Documents' tokens are read from their spill files and the
    packed rows' tokens appended to this task's own spill file in `spill_dir`.
    """
    reader, spill = SpillReader(spill_dir), SpillWriter(spill_dir, "rows")
    group: tuple[int, int] | None = None
    packer: Packer | None = None
    emitted = 0

    def close() -> Iterator[pa.RecordBatch]:
        rows = packer.finish()
        if len(rows):
            yield _packed_batch(*group, emitted, rows, spill)
        if packer.dropped_tokens:
            yield _dropped_batch(*group, packer.dropped_tokens, packer.dropped_documents)

    try:
        for batch in batches:
            splits = batch.column("split").to_numpy()
            ranges = batch.column("range_id").to_numpy()
            values, offsets = reader.gather(batch.column("file").to_pylist(), batch.column("start").to_numpy(),
                                            batch.column("length").to_numpy())
            for start, end in _group_bounds(splits, ranges):
                key = (int(splits[start]), int(ranges[start]))
                if key != group:
                    if packer is not None:
                        yield from close()
                    group, packer, emitted = key, Packer(capacity, mode, pad_id, tail), 0
                rows = packer.add(values, offsets[start : end + 1])
                if len(rows):
                    yield _packed_batch(*group, emitted, rows, spill)
                    emitted += len(rows)
        if packer is not None:
            yield from close()
    finally:
        reader.close()
        spill.close()


def pack_and_summarize(batches: Iterator[pa.RecordBatch], capacity: int, mode: str, pad_id: int, tail: str,
                       spill_dir: str) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: TOKENIZED_TALLIED rows, sorted as for `pack_batches` -> RANGE_SUMMARY rows.

    Data rows are packed by `pack_batches` and the PACKED rows that hold tokens written to this
    task's own Parquet file in `spill_dir` (a retried attempt writes another file, and only the
    files named by the summaries the driver receives are read). The tally rows met on the way are
    summed per split and reported at the end, so the job's input counts come out of this pass too.
    """
    tally: dict[int, list[int]] = {}
    counts: dict[tuple[int, int], Counter] = {}  # (split, range) -> RANGE_COUNTS
    name = f"packed-{uuid.uuid4().hex}.parquet"
    writer = None

    def data_rows() -> Iterator[pa.RecordBatch]:
        for batch in batches:
            is_tally = batch.column("range_id").to_numpy() == TALLY_RANGE
            if is_tally.any():
                for row in batch.filter(pa.array(is_tally)).select(["split", *TALLY_FIELDS]).to_pylist():
                    add_tally(tally, row["split"], **{field: row[field] for field in TALLY_FIELDS})
                batch = batch.filter(pa.array(~is_tally))
            if batch.num_rows:
                yield pa.RecordBatch.from_arrays(batch.columns[: len(TOKENIZED)], schema=TOKENIZED)

    try:
        for packed in pack_batches(data_rows(), capacity, mode, pad_id, tail, spill_dir):
            group = (packed.column("split")[0].as_py(), packed.column("range_id")[0].as_py())
            entry = counts.setdefault(group, Counter())
            holds_tokens = packed.column("start").to_numpy() >= 0
            entry["sequences"] += int(holds_tokens.sum())
            for column in RANGE_COUNTS[1:]:
                entry[column] += int(packed.column(column).to_numpy().sum())
            if holds_tokens.any():
                if writer is None:
                    writer = pq.ParquetWriter(Path(spill_dir) / name, PACKED)
                writer.write_batch(packed.filter(pa.array(holds_tokens)))
    finally:
        if writer is not None:
            writer.close()
    if counts:
        rows = [{"split": split, "range_id": range_id, "file": name if entry["sequences"] else "",
                 **{column: entry[column] for column in RANGE_COUNTS}, **dict.fromkeys(TALLY_FIELDS, 0)}
                for (split, range_id), entry in sorted(counts.items())]
        yield pa.RecordBatch.from_pylist(rows, schema=RANGE_SUMMARY)
    if tally:
        yield tally_batch(tally, RANGE_SUMMARY)


@dataclass(frozen=True)
class Placement:
    """What a task needs to place packed rows: per split, the rows before each range, and the plan."""

    range_starts: dict[int, dict[int, int]]  # split code -> range_id -> index of its first row
    plans: dict[int, ShardPlan]  # split code -> plan
    seed: int

    def positions(self, split: int, range_ids: np.ndarray, seq_index: np.ndarray) -> np.ndarray:
        starts = self.range_starts[split]
        canonical = np.fromiter((starts[r] for r in range_ids.tolist()), dtype=np.int64, count=len(range_ids))
        canonical += seq_index
        return permute(canonical, self.plans[split].sequences, shuffle_seed(self.seed, SPLITS[split]))


def place_batches(batches: Iterator[pa.RecordBatch], placement: Placement) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: PACKED rows that hold tokens (start >= 0) -> PLACED rows."""
    for batch in batches:
        splits = batch.column("split").to_numpy()
        ranges = batch.column("range_id").to_numpy()
        seq_index = batch.column("seq_index").to_numpy()
        pos = np.empty(len(batch), dtype=np.int64)
        shard = np.empty(len(batch), dtype=np.int32)
        for split in np.unique(splits).tolist():
            rows = splits == split
            pos[rows] = placement.positions(split, ranges[rows], seq_index[rows])
            shard[rows] = pos[rows] // placement.plans[split].sequences_per_shard
        yield pa.RecordBatch.from_arrays(
            [batch.column("split"), pa.array(shard), pa.array(pos), batch.column("file"), batch.column("start"),
             batch.column("doc_offsets")],
            schema=PLACED,
        )
