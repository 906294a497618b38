"""What a rules stage commits beside its documents so that a later run can dedup against them without
hashing them again (config rules.dedup.references): one row per kept document, its band keys, and the
edge lines it kept. Tables of the stage directory, listed by its `_COMMITTED` marker."""

import pyarrow as pa

DEDUP_DOCS_TABLE = "dedup_docs"
DEDUP_BANDS_TABLE = "dedup_bands"
DEDUP_LINES_TABLE = "dedup_lines"

# One row per document of the stage's output.
DEDUP_DOCS = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("md5", pa.string()),  # as in the documents (of the normalized text the stage read)
        pa.field("url_key", pa.string()),  # pipeline.urls.normalized_url of its url
        pa.field("fetch_time", pa.string()),
    ]
)

# The LSH band keys (rules.minhash_bands of them) of each output document that MinHash hashed.
DEDUP_BANDS = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("band", pa.int32(), nullable=False),
        pa.field("key", pa.int64(), nullable=False),
    ]
)

# Per edge line key (Spark's xxhash64 of pipeline.rules.line_dedup.line_key), its occurrences among the edge
# lines of the output documents' text as read (the lines line dedup removed not counted).
DEDUP_LINES = pa.schema(
    [
        pa.field("key_hash", pa.int64(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
    ]
)
