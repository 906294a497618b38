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

MANIFEST_FORMAT = "thresher-tokens/1"

# manifest.json, written next to the shards:
# {
#   "format": "thresher-tokens/1",
#   "seq_len": int, "token_dtype": "int32", "vocab_size": int, "eos_token_id": int,
#   "pad_token_id": int (fills padded rows; the EOS id when the tokenizer has none: mask it out of the loss),
#   "tail": "pad" | "drop", "validation_fraction": float,
#   "pad_token_id": int,  (fills padded tails; the trainer never uses it as a prediction target)
#   "tail": "pad" | "drop", "validation_fraction": float,
#   "pack_mode": "concat" | "boundary",
#   "tokenizer": {"name": str, "sha256": str},
#   "config_hash": str, "seed": int,
#   "splits": {
#     "train": {"shards": [{"path": "train/shard-00000.parquet", "sequences": int, "tokens": int}],
#               "sequences": int, "tokens": int, "documents": int,
#               "source_documents": int, "padding_tokens": int, "dropped_tokens": int, "dropped_documents": int},
#     (documents: copies exported, sample_copies counted; source_documents: distinct input documents;
#      tokens include padding_tokens)
#     "validation": {...same...}
#   },
#   "upstream_stats": {...stats.json of the input stage...}
# }
# Shard paths are relative to the manifest's directory.
