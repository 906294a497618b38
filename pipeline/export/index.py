"""The export's document index (schemas.tokens.DOCUMENT_INDEX): where each exported document copy's tokens
lie in the shards, piece by piece.

Packing records where each document copy starts in its range's rows laid end to end (PACKED_DOCUMENTS,
keyed by the copy's doc_key); `index_pieces` cuts each copy at row ends and places the rows as the shard
writers do (pipeline.export.plan.Placement), dropping what a dropped tail (tail: drop) took. The job joins
the pieces to (doc_id, copy) by doc_key, which `document_copies` computes from the input's doc_ids and
sample_copies exactly as tokenizing did (plan.document_key).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from thresher.pipeline.export.plan import SPLITS, Placement, document_key, shard_path

# A piece of a document copy, placed; doc_key joins it to its doc_id and copy.
INDEX_PIECES = pa.schema(
    [
        pa.field("doc_key", pa.int64(), nullable=False),
        pa.field("piece", pa.int32(), nullable=False),
        pa.field("shard", pa.string(), nullable=False),
        pa.field("sequence", pa.int64(), nullable=False),
        pa.field("token_start", pa.int32(), nullable=False),
        pa.field("token_end", pa.int32(), nullable=False),
    ]
)

DOCUMENT_COPIES = pa.schema([pa.field("doc_key", pa.int64(), nullable=False), pa.field("doc_id", pa.string(), nullable=False),
                             pa.field("copy", pa.int32(), nullable=False)])


def kept_rows(splits: np.ndarray, ranges: np.ndarray, range_sequences: dict[tuple[int, int], int]) -> np.ndarray:
    """The rows each (splits[i], ranges[i]) kept (int64): its packed rows, a dropped tail not counted."""
    return np.fromiter((range_sequences.get((int(s), int(r)), 0) for s, r in zip(splits, ranges, strict=True)),
                       dtype=np.int64, count=len(splits))


def index_pieces(batches: Iterator[pa.RecordBatch], placement: Placement, capacity: int,
                 range_sequences: dict[tuple[int, int], int]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: PACKED_DOCUMENTS rows -> INDEX_PIECES rows, one per row of the shards a copy's tokens
    touch; `range_sequences` gives the rows each (split, range_id) kept (the rest were a dropped tail)."""
    for batch in batches:
        splits, ranges = batch.column("split").to_numpy(), batch.column("range_id").to_numpy()
        starts, lengths = batch.column("range_start").to_numpy(), batch.column("length").to_numpy().astype(np.int64)
        first_rows, last_rows = starts // capacity, (starts + lengths - 1) // capacity
        counts = (last_rows - first_rows + 1).astype(np.int64)
        owner = np.repeat(np.arange(len(batch)), counts)
        piece = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        rows = first_rows[owner] + piece
        token_start = np.maximum(starts[owner], rows * capacity) - rows * capacity
        token_end = np.minimum(starts[owner] + lengths[owner], (rows + 1) * capacity) - rows * capacity
        kept = rows < kept_rows(splits[owner], ranges[owner], range_sequences)
        owner, piece, rows, token_start, token_end = (a[kept] for a in (owner, piece, rows, token_start, token_end))
        shards = np.empty(len(rows), dtype=object)
        sequences = np.empty(len(rows), dtype=np.int64)
        for split in np.unique(splits[owner]).tolist():
            mine = splits[owner] == split
            positions = placement.positions(split, ranges[owner][mine], rows[mine])
            per_shard = placement.plans[split].sequences_per_shard
            shards[mine] = [shard_path(SPLITS[split], shard) for shard in (positions // per_shard).tolist()]
            sequences[mine] = positions % per_shard
        yield pa.RecordBatch.from_arrays(
            [pc.take(batch.column("doc_key"), pa.array(owner)), pa.array(piece, pa.int32()),
             pa.array(shards, pa.string()), pa.array(sequences, pa.int64()), pa.array(token_start, pa.int32()),
             pa.array(token_end, pa.int32())], schema=INDEX_PIECES)


def document_copies(batches: Iterator[pa.RecordBatch], seed: int) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: (doc_id, sample_copies) rows -> DOCUMENT_COPIES rows, one per copy the export makes
    (sample_copies null: one; 0: none)."""
    for batch in batches:
        keys, ids, copies = [], [], []
        for doc_id, count in zip(batch.column("doc_id").to_pylist(), batch.column("sample_copies").to_pylist(),
                                 strict=True):
            for copy in range(1 if count is None else count):
                keys.append(document_key(doc_id, copy, seed))
                ids.append(doc_id)
                copies.append(copy)
        yield pa.RecordBatch.from_arrays([pa.array(keys, pa.int64()), pa.array(ids, pa.string()),
                                          pa.array(copies, pa.int32())], schema=DOCUMENT_COPIES)
