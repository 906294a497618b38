"""Reading a user's documents into Spark: the same rows and ids whatever the number of partitions."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from thresher.jobs.documents_input import documents_frame, parts_frame
from thresher.pipeline.stagedir import COMMITTED_MARKER
from thresher.pipeline.stagedir.documents import FieldMapping, derived_doc_id, resolve_source
from thresher.schemas.documents import PREPARED, RULES


def test_derived_ids_are_the_same_with_1_and_4_partitions(spark, tmp_path):
    texts = [f"document number {i} about the weather in spring" for i in range(40)]
    pq.write_table(pa.table({"body": texts}), tmp_path / "docs.parquet", row_group_size=10)
    source = resolve_source(str(tmp_path / "docs.parquet"), FieldMapping(text="body"))
    frames = {}
    for partitions, part_rows in ((1, 100), (4, 10)):
        assert parts_frame(spark, source, part_rows).rdd.getNumPartitions() == partitions
        frame = documents_frame(spark, source, PREPARED, part_rows=part_rows,
                                scratch_dir=str(tmp_path / f"scratch{partitions}"))
        frames[partitions] = sorted((row.doc_id, row.text) for row in frame.select("doc_id", "text").collect())
    assert frames[1] == frames[4] == sorted((derived_doc_id("docs.parquet", i), t) for i, t in enumerate(texts))


def test_a_complete_committed_stage_is_read_as_it_is(spark, tmp_path):
    (tmp_path / "documents").mkdir()
    row = {name: None for name in RULES.names} | {"doc_id": "a", "text": "hello", "lines_removed_dedup": 2}
    pq.write_table(pa.Table.from_pylist([row], schema=RULES), tmp_path / "documents" / "part-0.parquet")
    (tmp_path / COMMITTED_MARKER).write_text("{}")
    frame = documents_frame(spark, resolve_source(str(tmp_path)), RULES)
    assert "mapInArrow" not in frame._jdf.queryExecution().toString()  # Spark's own reader, no conversion
    assert [r.asDict() for r in frame.collect()] == [row]
