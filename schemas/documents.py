"""Document rows: one per page that survives so far. Each stage appends its own columns."""

import pyarrow as pa

from thresher.schemas import extend

# Stage 1 (prepare) output.
PREPARED = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),  # stable: hash of WARC file name + record
        pa.field("url", pa.string()),
        pa.field("domain", pa.string()),
        pa.field("warc_path", pa.string()),
        pa.field("warc_record_id", pa.string()),
        pa.field("fetch_time", pa.string()),  # WARC-Date as written in the record (ISO 8601)
        pa.field("text", pa.string()),
        pa.field("lang", pa.string()),
        pa.field("lang_score", pa.float64()),
        pa.field("md5", pa.string()),  # of the normalized text, see pipeline.text.normalize
    ]
)

# Stage 2 (rules) output: stage 1 columns plus these.
RULES = extend(
    PREPARED,
    pa.field("lines_removed_dedup", pa.int32()),  # lines deleted by cross-document line dedup
    pa.field("minhash_cluster", pa.string()),  # doc_id of the cluster's kept document (itself if alone)
    pa.field("minhash_cluster_size", pa.int32()),  # documents in its MinHash cluster, itself included (1 if alone)
)

# Stage 3 columns depend on the configured taggers: schemas.tags.tagged_schema (tag) and
# pipeline.select.batches.selected_schema (select) derive them.
