"""Packing tokenized documents into fixed-length rows: the packers and the export's packing task.

A packer turns a stream of documents (each closed with EOS) into rows of `capacity` tokens
(seq_len + 1). concat mode fills every row to the brim, documents running on into the next row;
boundary mode starts a document that fits in one row on a fresh row when the current one has no
room, padding the rest, and records where documents start in each row. Each range of the export
(pipeline.export.plan) is packed by a packer of its own; what each range packed is counted beside
its rows (`RangeCounts`), never inside them. A packing task's spill file and its Parquet file of
packed rows go to the spill directory, a local path or any fsspec URL, through fsspec.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.pipeline.export.spill import WRITE_BLOCK_BYTES, SpillReader, SpillWriter
from thresher.pipeline.stagedir import storage, write_whole
from thresher.schemas.export_wire import PACKED, PACKED_DOCUMENTS, RANGE_SUMMARY, list_array

PACK_MODES = ("concat", "boundary")
TAIL_MODES = ("pad", "drop")


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
    rows_out: int = 0  # rows this packer made so far (a dropped tail not counted)
    # Where each document added so far starts, in tokens from the start of this packer's first row (its
    # rows laid end to end, padding included): what the export's document index is made of (take_starts).
    _document_starts: list[np.ndarray] = field(default_factory=list)

    def take_starts(self) -> np.ndarray:
        """The start of each document added since the last take, in the order added (int64)."""
        starts = np.concatenate(self._document_starts) if self._document_starts else np.zeros(0, dtype=np.int64)
        self._document_starts = []
        return starts.astype(np.int64, copy=False)

    def __post_init__(self):
        if self.mode not in PACK_MODES:
            raise ValueError(f"pack mode {self.mode!r}: expected one of {PACK_MODES}")
        if self.tail not in TAIL_MODES:
            raise ValueError(f"tail {self.tail!r}: expected one of {TAIL_MODES}")
        if self.capacity < 2:
            raise ValueError("capacity (seq_len + 1) must be at least 2")

    def add(self, values: np.ndarray, offsets: np.ndarray) -> PackedRows:
        """Add documents values[offsets[i]:offsets[i+1]] (each already closed with EOS)."""
        rows = self._add_concat(values, offsets) if self.mode == "concat" else self._add_boundary(values, offsets)
        self.rows_out += len(rows)
        return rows

    def _add_concat(self, values: np.ndarray, offsets: np.ndarray) -> PackedRows:
        # Vectorised: the stream is the pending tokens then the batch; full rows are reshaped out of it.
        carried = self._pending_len
        self._document_starts.append(self.rows_out * self.capacity + carried + offsets[:-1].astype(np.int64) - offsets[0])
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
        starts = []
        for start, end in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
            document = values[start:end]
            room = self.capacity - self._pending_len
            if len(document) > room and len(document) <= self.capacity and self._pending_len:
                out.append(self._take_pending(pad=True))  # it fits a row of its own: don't split it
            starts.append((self.rows_out + len(out.items)) * self.capacity + self._pending_len)
            self._pending_starts.append(self._pending_len)
            while len(document):
                room = self.capacity - self._pending_len
                self._pending.append(document[:room])
                self._pending_len += min(room, len(document))
                document = document[room:]
                if self._pending_len == self.capacity:
                    out.append(self._take_pending(pad=False))
        self._document_starts.append(np.asarray(starts, dtype=np.int64))
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
        self.rows_out += 1
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


def _group_bounds(*keys: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of runs of equal keys in sorted columns."""
    n = len(keys[0])
    change = np.zeros(n, dtype=bool)
    for key in keys:
        change[1:] |= key[1:] != key[:-1]
    starts = np.flatnonzero(change).tolist()
    bounds = [0, *starts, n] if n else []
    return list(zip(bounds[:-1], bounds[1:], strict=False))


@dataclass
class RangeCounts:
    """What one range packed: its rows, the document copies starting in them, pad tokens, and the dropped tail."""

    sequences: int = 0
    documents: int = 0
    padding: int = 0
    dropped_tokens: int = 0
    dropped_documents: int = 0
    rows_file: str = ""  # the spill file of the range's rows, and where the first row starts in it
    rows_start: int = 0

    def add_rows(self, rows: PackedRows) -> None:
        self.sequences += len(rows)
        self.documents += int(rows.documents.sum())
        self.padding += int(rows.padding.sum())


def _packed_batch(split: int, range_id: int, first_index: int, rows: PackedRows, spill: SpillWriter) -> pa.RecordBatch:
    n, capacity = rows.tokens.shape
    first = spill.append(rows.tokens.reshape(-1))
    lengths = np.fromiter((len(o) for o in rows.doc_offsets), dtype=np.int64, count=n)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(np.full(n, split, np.int8)),
            pa.array(np.full(n, range_id, np.int32)),
            pa.array(np.arange(first_index, first_index + n, dtype=np.int64)),
            pa.array([spill.name] * n, pa.string()),
            pa.array(np.arange(first, first + n * capacity, capacity, dtype=np.int64)),
            list_array(np.concatenate(rows.doc_offsets), np.concatenate([[0], np.cumsum(lengths)])),
        ],
        schema=PACKED,
    )


def pack_batches(batches: Iterator[pa.RecordBatch], capacity: int, mode: str, pad_id: int, tail: str,
                 spill_dir: str, counts: dict[tuple[int, int], RangeCounts] | None = None,
                 pieces: list[pa.RecordBatch] | None = None) -> Iterator[pa.RecordBatch]:
    """TOKENIZED rows sorted by (split, range_id, doc_key, content_key) -> PACKED rows.

    Each range is packed on its own. Documents' tokens are read from their spill files and the
    packed rows' tokens appended to this task's own spill file in `spill_dir`. `counts`, when
    given, receives each (split, range_id)'s RangeCounts, the dropped tail included; `pieces`, when
    given, a PACKED_DOCUMENTS batch per batch of documents packed (where each starts in its range).
    """
    counts = {} if counts is None else counts
    reader, spill = SpillReader(spill_dir), SpillWriter(spill_dir, "rows")
    group: tuple[int, int] | None = None
    packer: Packer | None = None

    def emit(rows: PackedRows) -> Iterator[pa.RecordBatch]:
        if len(rows):
            if not counts[group].sequences:  # the range's rows go to `spill` back to back from here
                counts[group].rows_file, counts[group].rows_start = spill.name, spill.tokens
            yield _packed_batch(*group, counts[group].sequences, rows, spill)
            counts[group].add_rows(rows)

    def close() -> Iterator[pa.RecordBatch]:
        yield from emit(packer.finish())
        counts[group].dropped_tokens += packer.dropped_tokens
        counts[group].dropped_documents += packer.dropped_documents

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
                    group, packer = key, Packer(capacity, mode, pad_id, tail)
                    counts[group] = RangeCounts()
                yield from emit(packer.add(values, offsets[start : end + 1]))
                if pieces is not None:
                    pieces.append(pa.RecordBatch.from_arrays(
                        [batch.column("split").slice(start, end - start), batch.column("range_id").slice(start, end - start),
                         batch.column("doc_key").slice(start, end - start), pa.array(packer.take_starts()),
                         batch.column("length").slice(start, end - start)], schema=PACKED_DOCUMENTS))
        if packer is not None:
            yield from close()
    finally:
        reader.close()
        spill.close()


def packed_documents_file(packed_file: str) -> str:
    """The name of the PACKED_DOCUMENTS file written beside the packed rows' file `packed_file`."""
    return packed_file.replace("packed-", "packed-documents-", 1)


def pack_and_summarize(batches: Iterator[pa.RecordBatch], capacity: int, mode: str, pad_id: int, tail: str,
                       spill_dir: str) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: TOKENIZED rows, sorted as for `pack_batches` -> RANGE_SUMMARY rows.

    The PACKED rows go to this task's own Parquet file in `spill_dir` (a retried attempt writes
    another file, and only the files named by the summaries the driver receives are read); what
    the task returns is one summary row per range, its counts and that file.
    """
    counts: dict[tuple[int, int], RangeCounts] = {}
    name = f"packed-{uuid.uuid4().hex}.parquet"
    fs, directory = storage(spill_dir)
    file = writer = None
    pieces: list[pa.RecordBatch] = []
    try:
        for packed in pack_batches(batches, capacity, mode, pad_id, tail, spill_dir, counts, pieces):
            if writer is None:
                fs.makedirs(directory, exist_ok=True)  # a local directory; nothing on an object store
                file = fs.open(f"{directory}/{name}", "wb", block_size=WRITE_BLOCK_BYTES)
                writer = pq.ParquetWriter(file, PACKED)
            writer.write_batch(packed)
    finally:
        if writer is not None:
            writer.close()
        if file is not None:
            file.close()  # on an object store: the upload completes, the object appears whole
    if writer is not None:  # beside the packed rows, under its name: the summaries name both (packed_documents_file)
        buffer = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_batches(pieces, schema=PACKED_DOCUMENTS), buffer)
        write_whole(fs, f"{directory}/{packed_documents_file(name)}", buffer.getvalue().to_pybytes())
    if counts:
        rows = [{"split": split, "range_id": range_id, "file": name if entry.sequences else "", **asdict(entry)}
                for (split, range_id), entry in sorted(counts.items())]
        yield pa.RecordBatch.from_pylist(rows, schema=RANGE_SUMMARY)
