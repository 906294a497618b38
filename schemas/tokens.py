"""Token shards: Parquet files of packed token sequences, and the manifest that lists them.

Tokens are int32: vocabularies in use (Qwen2 family: 152,064) overflow uint16, and int32 reads
natively in pyarrow, pandas, DuckDB and `datasets`. Each row is one training sequence of
`seq_len + 1` tokens (inputs are `tokens[:-1]`, targets `tokens[1:]`).
"""

import pyarrow as pa

TOKEN_DTYPE = "int32"

SHARD = pa.schema(
    [
        pa.field("tokens", pa.list_(pa.int32()), nullable=False),  # seq_len + 1 token ids
        # Start offsets of documents inside `tokens` (boundary-keeping mode; [0] when packing freely).
        pa.field("doc_offsets", pa.list_(pa.int32()), nullable=False),
    ]
)

# What the manifest says of the columns (`columns`), for readers used to Hugging Face's names: a row
# is one causal-LM example with inputs and labels in one list, so `input_ids` and `labels` are
# slices of `tokens`, not columns of their own (storing both would double the shards).
TOKEN_COLUMNS = {
    "tokens": "seq_len + 1 token ids (int32): input_ids = tokens[:-1], labels = tokens[1:]",
    "doc_offsets": "start offsets of the documents inside tokens ([0] when packing freely)",
}

# The export's document index (DIR/index/*.parquet, beside the shards): one row per piece of each exported
# document copy, sorted by (doc_id, copy, piece); the input's own columns (README "Your columns") follow.
# A document's tokens (its closing EOS included) are, piece by piece, tokens[token_start:token_end] of
# row `sequence` of `shard`; a dropped tail (tail: drop) leaves its pieces out.
DOCUMENT_INDEX = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("copy", pa.int32(), nullable=False),  # 0 .. sample_copies - 1
        pa.field("piece", pa.int32(), nullable=False),  # 0, 1, ...: the document's rows, in its token order
        pa.field("shard", pa.string(), nullable=False),  # the shard's path, relative to the manifest
        pa.field("sequence", pa.int64(), nullable=False),  # the row in the shard
        pa.field("token_start", pa.int32(), nullable=False),  # offsets into the row's `tokens`
        pa.field("token_end", pa.int32(), nullable=False),  # exclusive
    ]
)
DOCUMENT_INDEX_DIR = "index"
# What the manifest's `document_index` says of the index's columns (besides the input's own).
DOCUMENT_INDEX_COLUMNS = {
    "doc_id": "the document",
    "copy": "which of its sample_copies (0, 1, ...)",
    "piece": "which piece of the copy (0, 1, ...): its tokens in order are the pieces' in order",
    "shard": "the shard's path, relative to this manifest",
    "sequence": "the row of the shard",
    "token_start": "the piece is tokens[token_start:token_end] of that row (EOS closes the last piece)",
    "token_end": "exclusive",
}

MANIFEST_FORMAT = "thresher-tokens/1"

# manifest.json, written next to the shards:
# {
#   "format": "thresher-tokens/1",
#   "seq_len": int, "token_dtype": "int32", "vocab_size": int, "eos_token_id": int,
#   "pad_token_id": int  (fills padded tails; the EOS id when the tokenizer has none. The trainer never
#                         predicts padding, but does predict the EOS that ends each document),
#   "tail": "pad" | "drop", "validation_fraction": float,
#   "pack_mode": "concat" | "boundary",
#   "tokenizer": {"name": str, "path": str (absolute), "sha256": str},
#   "columns": TOKEN_COLUMNS,
#   "config_hash": str, "seed": int,
#   "splits": {
#     "train": {"shards": [{"path": "train/shard-00000.parquet", "sequences": int, "tokens": int}],
#               "sequences": int, "tokens": int, "documents": int,
#               "source_documents": int, "padding_tokens": int, "dropped_tokens": int, "dropped_documents": int},
#     (documents: copies exported, sample_copies counted; source_documents: distinct input documents;
#      tokens include padding_tokens)
#     "validation": {...same...}
#   },
#   "upstream_stats": {...stats.json of the input stage...},
#   "document_index": {"path": "index", "rows": int, "columns": DOCUMENT_INDEX_COLUMNS and the input's own}
# }
# Shard paths are relative to the manifest's directory.
