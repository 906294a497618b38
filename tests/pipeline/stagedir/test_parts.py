"""pipeline.stagedir.parts: a DataFrame written as parts from the Python workers and read back, on local disk
and on the local S3 server (the JVM has no S3 connector: Spark never touches the store itself)."""

import pyarrow.parquet as pq
import pytest
from stage_rows import stage_stats_json

from thresher.pipeline.stagedir import (
    COMMITTED_MARKER,
    CRASH_ENV,
    CRASH_MODE_ENV,
    SimulatedCrash,
    StageOutput,
    read_commit,
    storage,
)
from thresher.pipeline.stagedir.parts import read_parts, read_written, write_parts
from thresher.schemas.errors import InputError

STATS = stage_stats_json("test", 1, 1)


@pytest.fixture
def session(request, stage_url):
    """The Spark session, its workers reaching the S3 server where the stage is there."""
    return request.getfixturevalue("spark_s3" if stage_url.startswith("s3://") else "spark")


SCHEMA = ("doc_id string, text string, score double, copies array<bigint>, "
          "detail struct<n: bigint, s: string>")
ROWS = [(f"doc-{i:03d}", None if i % 7 == 0 else "words " * i, i / 3, [i, 2 * i], (i, "x")) for i in range(40)]
PARTITIONS = [ROWS[:10], ROWS[10:25], [], ROWS[25:]]  # one partition empty: it writes no part


def _documents(spark):
    """ROWS in PARTITIONS, as a stage's table arrives at its writer (no shuffle: each test's is the same)."""
    context = spark.sparkContext
    partitions = context.union([context.parallelize(rows, 1) for rows in PARTITIONS])
    return spark.createDataFrame(partitions, SCHEMA)


def test_parts_written_from_spark_read_back_row_identical_in_order(session, stage_url):
    documents = _documents(session)
    rejects = documents.filter("score < 0")  # no rows: a table with no part
    fs, _ = storage(stage_url)
    out = StageOutput(stage_url)
    out.begin()
    written = write_parts(documents, out, "documents")
    write_parts(rejects, out, "rejects")
    assert read_written(session, out, "documents").collect() == ROWS  # this attempt's, before the commit
    out.commit(STATS)
    expected = [rows for rows in PARTITIONS if rows]
    back = read_parts(session, stage_url, "documents")
    assert back.schema == documents.schema
    assert back.rdd.glom().collect() == expected  # partition by partition, rows in order
    assert [part.rows for part in written] == [len(partition) for partition in expected]
    commit = read_commit(stage_url)
    assert commit.parts("documents") == written and [part.rows for part in commit.parts("rejects")] == [0]
    empty = read_parts(session, stage_url, "rejects")
    assert empty.schema == rejects.schema and empty.count() == 0
    with fs.open(commit.path(commit.parts("rejects")[0].name), "rb") as part:  # a bare directory's reader finds it
        assert pq.read_schema(part).names == rejects.schema.names
    with fs.open(commit.path(written[0].name), "rb") as part:  # a plain Parquet file any reader reads
        assert pq.read_table(part).column("doc_id").to_pylist() == [row[0] for row in expected[0]]


def test_a_crash_between_the_parts_and_the_marker_leaves_no_reader_a_stage_and_a_rerun_the_same_objects(
        session, stage_url, monkeypatch):
    documents = _documents(session)

    def run():
        out = StageOutput(stage_url)
        out.begin()
        write_parts(documents, out, "documents")
        out.commit(STATS)

    monkeypatch.setenv(CRASH_MODE_ENV, "raise")
    monkeypatch.setenv(CRASH_ENV, "commit:before_marker")
    with pytest.raises(SimulatedCrash):
        run()
    with pytest.raises(InputError, match=r"holds no committed stage output \(no _COMMITTED marker\): rerun that stage"):
        read_parts(session, stage_url, "documents")
    fs, root = storage(stage_url)
    fs.invalidate_cache(root)
    crashed = {path: fs.cat_file(path) for path in fs.find(f"{root}/documents")}
    assert len(crashed) == 3
    monkeypatch.delenv(CRASH_ENV)
    run()
    commit = read_commit(stage_url)
    fs.invalidate_cache(root)
    assert sorted(fs.find(root)) == sorted(commit.path(name) for name in
                                           [COMMITTED_MARKER, "stats.json", *(part.name for part in commit.parts("documents"))])
    # Byte-identical parts, partition by partition: only the attempt in their names differs.
    assert [fs.cat_file(commit.path(part.name)) for part in commit.parts("documents")] == [
        crashed[path] for path in sorted(crashed)]
    assert read_parts(session, stage_url, "documents").collect() == ROWS


def test_a_stage_spark_wrote_before_markers_listed_parts_reads_back(spark, tmp_path):
    documents = _documents(spark)
    documents.write.parquet(str(tmp_path / "stage" / "documents"))
    (tmp_path / "stage" / COMMITTED_MARKER).write_text("{}\n")
    back = read_parts(spark, str(tmp_path / "stage"), "documents")
    assert sorted(back.collect()) == sorted(ROWS) and back.schema == documents.schema
