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
#   "upstream_stats": {...stats.json of the input stage...}
# }
# Shard paths are relative to the manifest's directory.
