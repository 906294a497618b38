"""The export's wire formats: what its Spark stages and tasks hand each other, in one place.

These are internal to `thresher export` (its outputs are schemas/tokens.py). Tokens never travel
in these rows: they stay in spill files (pipeline/spill.py) and rows point at them with `file`
(a spill file's name, relative to the spill directory) and `start` (the offset of the first token
in it, in tokens). `split` is a split code, an index into pipeline.export.plan.SPLITS.

Counts travel in outputs of their own, never as marked rows inside a pointer stream: each
tokenizing task reports its input counts as one INPUT_TALLY row in a file of its own, each packing
task one RANGE_SUMMARY row per range it packed, each shard writer one WRITTEN row.
"""

import numpy as np
import pyarrow as pa

# The export's input tasks over a committed stage: row groups first_row_group ... + row_groups - 1
# of one Parquet file (other inputs: pipeline.stagedir.documents.PARTS).
PARTS = pa.schema([pa.field("path", pa.string()), pa.field("first_row_group", pa.int32()),
                   pa.field("row_groups", pa.int32())])

# What the export reads of any input's documents: one row per document with its sampling copies.
DOCUMENTS = pa.schema([pa.field("doc_id", pa.string()), pa.field("text", pa.string()),
                       pa.field("copies", pa.int32())])

# Tokenized document copies, the input of packing: one row per copy. Copies of a document point
# at the same tokens (closed with EOS).
TOKENIZED = pa.schema(
    [
        pa.field("split", pa.int8(), nullable=False),
        pa.field("range_id", pa.int32(), nullable=False),  # doc_key % pack_ranges
        pa.field("doc_key", pa.int64(), nullable=False),  # export_plan.document_key(doc_id, copy, seed)
        pa.field("content_key", pa.int64(), nullable=False),  # hash of the tokens: orders equal doc_keys
        pa.field("file", pa.string(), nullable=False),
        pa.field("start", pa.int64(), nullable=False),
        pa.field("length", pa.int32(), nullable=False),  # tokens, EOS included
    ]
)

# One tokenizing task's input counts, keyed by its input part (the Spark partition it read), so
# that the driver takes one report per part however many attempts ran it. Per-split counts are
# lists indexed by split code; documents without text or sampled out belong to no split.
INPUT_TALLY = pa.schema(
    [
        pa.field("part", pa.int32(), nullable=False),
        pa.field("source_documents", pa.list_(pa.int64()), nullable=False),  # documents exported, per split
        pa.field("copies", pa.list_(pa.int64()), nullable=False),  # their sampling copies, per split
        pa.field("empty_text", pa.int64(), nullable=False),
        pa.field("sampled_out", pa.int64(), nullable=False),  # text, but no copies
    ]
)

# Packed rows of one range, in order; each row's tokens are `capacity` tokens at (file, start).
PACKED = pa.schema(
    [
        pa.field("split", pa.int8(), nullable=False),
        pa.field("range_id", pa.int32(), nullable=False),
        pa.field("seq_index", pa.int64(), nullable=False),  # position of the row inside its range
        pa.field("file", pa.string(), nullable=False),
        pa.field("start", pa.int64(), nullable=False),
        pa.field("doc_offsets", pa.list_(pa.int32()), nullable=False),
    ]
)

# Where each packed document copy's tokens start in its range's rows, laid end to end (row r holds
# tokens r * capacity ... (r + 1) * capacity - 1, padding included): the export's document index is
# made of these. Written by each packing task beside its PACKED file (packing.packed_documents_file).
PACKED_DOCUMENTS = pa.schema(
    [
        pa.field("split", pa.int8(), nullable=False),
        pa.field("range_id", pa.int32(), nullable=False),
        pa.field("doc_key", pa.int64(), nullable=False),  # the copy's key: its doc_id and copy index, hashed
        pa.field("range_start", pa.int64(), nullable=False),
        pa.field("length", pa.int32(), nullable=False),  # tokens, EOS included
    ]
)

# What a packing task reports to the driver: one row per range it packed, with its counts and the
# Parquet file of PACKED rows (in the spill directory) holding the range's rows ("" when none).
RANGE_SUMMARY = pa.schema(
    [
        pa.field("split", pa.int8(), nullable=False),
        pa.field("range_id", pa.int32(), nullable=False),
        pa.field("file", pa.string(), nullable=False),
        pa.field("sequences", pa.int64(), nullable=False),
        pa.field("documents", pa.int64(), nullable=False),  # document copies starting in the range's rows
        pa.field("padding", pa.int64(), nullable=False),  # pad tokens
        pa.field("dropped_tokens", pa.int64(), nullable=False),  # the range's partial last row (tail="drop")
        pa.field("dropped_documents", pa.int64(), nullable=False),  # documents starting in it
        # The spill file holding the range's packed rows' tokens, and where its first row starts there (a
        # range's rows are appended back to back by one task): where a document copy's tokens lie, whole.
        pa.field("rows_file", pa.string(), nullable=False),
        pa.field("rows_start", pa.int64(), nullable=False),
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

# What each written shard reports back to the driver, for the manifest.
WRITTEN = pa.schema(
    [
        pa.field("split", pa.int8(), nullable=False),
        pa.field("shard", pa.int32(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("sequences", pa.int64(), nullable=False),
        pa.field("tokens", pa.int64(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),  # the shard file's bytes, for the commit's list
    ]
)


# A document copy as the Megatron shards hold it (pipeline.export.megatron): where its first token lies
# in the Parquet shards' plan (shard, row `sequence`, offset `token_start` in the row), and its tokens
# in the packed rows' spill file, whole (the part a dropped tail took left out).
MEGATRON_DOCUMENTS = pa.schema(
    [
        pa.field("split", pa.int8(), nullable=False),
        pa.field("shard", pa.int32(), nullable=False),
        pa.field("sequence", pa.int64(), nullable=False),
        pa.field("token_start", pa.int32(), nullable=False),
        pa.field("file", pa.string(), nullable=False),
        pa.field("start", pa.int64(), nullable=False),
        pa.field("length", pa.int32(), nullable=False),
    ]
)

# What each written Megatron shard (a .bin/.idx pair at `prefix`) reports back to the driver.
MEGATRON_WRITTEN = pa.schema(
    [
        pa.field("split", pa.int8(), nullable=False),
        pa.field("shard", pa.int32(), nullable=False),
        pa.field("prefix", pa.string(), nullable=False),
        pa.field("documents", pa.int64(), nullable=False),
        pa.field("tokens", pa.int64(), nullable=False),
        pa.field("bin_size", pa.int64(), nullable=False),
        pa.field("idx_size", pa.int64(), nullable=False),
    ]
)


def list_array(values: np.ndarray, offsets: np.ndarray) -> pa.Array:
    """A list<int32> Arrow array over flat `values` and `offsets` (from 0), without copying."""
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32, copy=False)), pa.array(values, pa.int32()))
