"""Reading a user's documents into Spark: the same rows and ids whatever the number of partitions."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.jobs.documents_input import documents_frame, fresh_rejects_dir, parse_rejects, parts_frame
from thresher.pipeline.stagedir import COMMITTED_MARKER, StageOutput
from thresher.pipeline.stagedir.documents import FieldMapping, derived_doc_id, resolve_source
from thresher.schemas.documents import PREPARED, RULES


def test_derived_ids_are_the_same_with_1_and_4_partitions(spark, tmp_path):
    texts = [f"document number {i} about the weather in spring" for i in range(40)]
    pq.write_table(pa.table({"body": texts}), tmp_path / "docs.parquet", row_group_size=10)
    source = resolve_source(str(tmp_path / "docs.parquet"), FieldMapping(text="body"))
    frames = {}
    for partitions, part_rows in ((1, 100), (4, 10)):
        assert parts_frame(spark, source, part_rows).rdd.getNumPartitions() == partitions
        output = StageOutput(tmp_path / f"out{partitions}")
        output.begin()
        frame = documents_frame(spark, source, PREPARED, part_rows=part_rows, scratch=(output, "input"))
        frames[partitions] = sorted((row.doc_id, row.text) for row in frame.select("doc_id", "text").collect())
    assert frames[1] == frames[4] == sorted((derived_doc_id("docs.parquet", i), t) for i, t in enumerate(texts))


def test_a_complete_committed_stage_is_read_as_it_is(spark, tmp_path):
    (tmp_path / "documents").mkdir()
    row = {name: None for name in RULES.names} | {"doc_id": "a", "text": "hello", "lines_removed_dedup": 2}
    pq.write_table(pa.Table.from_pylist([row], schema=RULES), tmp_path / "documents" / "part-0.parquet")
    (tmp_path / COMMITTED_MARKER).write_text("{}")
    frame = documents_frame(spark, resolve_source(str(tmp_path)), RULES)
    assert "read_source_parts" not in frame._jdf.queryExecution().toString()  # its parts as they are, no conversion
    assert [r.asDict() for r in frame.collect()] == [row]


def test_documents_on_s3_read_as_the_same_documents_on_local_disk(spark_s3, s3_url, tmp_path):
    import fsspec

    texts = [f"document {i} on a shared store" for i in range(30)]
    pq.write_table(pa.table({"text": texts, "id": [f"d{i}" for i in range(30)]}), tmp_path / "a.parquet",
                   row_group_size=7)
    (tmp_path / "b.jsonl").write_text("".join(f'{{"text": "jsonl {i}"}}\n' for i in range(5)) + "not json\n")
    fsspec.filesystem("s3").put(str(tmp_path / "a.parquet"), f"{s3_url}/parquet/a.parquet")
    fsspec.filesystem("s3").put(str(tmp_path / "b.jsonl"), f"{s3_url}/jsonl/b.jsonl")
    for local, remote in ((tmp_path / "a.parquet", f"{s3_url}/parquet"), (tmp_path / "b.jsonl", f"{s3_url}/jsonl/b.jsonl")):
        rows = {}
        for where, path in (("local", str(local)), ("s3", remote)):
            output = StageOutput(tmp_path / f"out-{where}" if where == "local" else f"{s3_url}/out")
            output.begin()
            rejects = fresh_rejects_dir(output)
            frame = documents_frame(spark_s3, resolve_source(path), RULES, part_rows=10, rejects_dir=rejects, stage="rules")
            rows[where] = (sorted(tuple(row) for row in frame.select("doc_id", "text").collect()),
                           [row.detail.replace(path, "INPUT") for row in parse_rejects(spark_s3, rejects).collect()])
        assert rows["s3"] == rows["local"]
        assert len(rows["s3"][0]) == (30 if "parquet" in remote else 5)
    assert rows["s3"][1] == ["INPUT line 6 is not JSON: Expecting value: line 1 column 1 (char 0)"]  # the JSONL line that is no object, counted on s3 too


def test_ids_unique_only_per_file_are_refused_in_one_line_or_scoped_by_file(spark, tmp_path):
    """Each file of a sharded corpus numbering its ids from 0 gave 43 documents 23 ids, merged without a word."""
    from thresher.schemas.errors import InputError

    (tmp_path / "corpus").mkdir()
    for shard, count in (("a", 23), ("b", 20)):
        (tmp_path / "corpus" / f"{shard}.jsonl").write_text(
            "".join(f'{{"id": {i}, "text": "shard {shard} document {i}"}}\n' for i in range(count)))
    output = StageOutput(tmp_path / "out")
    output.begin()
    with pytest.raises(InputError, match=rf"^{tmp_path}/corpus: 20 ids of column 'id' are on more than one document "
                                         r"\(e.g. '0', 2 times\): pass --ids-per-file when each file numbers its own"):
        documents_frame(spark, resolve_source(str(tmp_path / "corpus")), PREPARED, scratch=(output, "input"))
    scoped = resolve_source(str(tmp_path / "corpus"), FieldMapping(ids_per_file=True))
    frame = documents_frame(spark, scoped, PREPARED, scratch=(output, "input"))
    ids = [row.doc_id for row in frame.collect()]
    assert len(ids) == len(set(ids)) == 43 and {"a.jsonl:0", "b.jsonl:0", "a.jsonl:22"} <= set(ids)
