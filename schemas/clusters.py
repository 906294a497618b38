"""Duplicate-cluster rows: one per member of every MinHash cluster of more than one document (stage 2's
`clusters` table), the kept document among them, so a reader sees which pages were duplicates and why
this copy stayed."""

import pyarrow as pa

CLUSTERS = pa.schema(
    [
        pa.field("cluster_id", pa.string(), nullable=False),  # the kept document's doc_id
        pa.field("cluster_size", pa.int32(), nullable=False),  # members, the kept one included
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("kept", pa.bool_(), nullable=False),  # the one member that stays in documents/
        pa.field("kept_by", pa.string(), nullable=False),  # the rule that chose the kept member
        pa.field("url", pa.string()),
        pa.field("warc_path", pa.string()),  # the input file the member came from
        pa.field("run", pa.string()),  # the stage 2 input (a run's prepare directory, or documents) it was read from
        pa.field("jaccard", pa.float64(), nullable=False),  # MinHash estimate of its shingle Jaccard with the kept one
        pa.field("diff", pa.string()),  # unified line diff from the kept text to this one, cut short; null: the kept one
    ]
)
