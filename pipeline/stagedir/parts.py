"""A stage's tables written and read as Parquet parts from the Python workers, with pyarrow and fsspec.

Whatever must reach object storage is written here rather than by Spark's own writer: the JVM may have
no connector for the store (pyspark ships none for S3), and Spark's committers rename. Each task writes
its partition as one part under a name of its own attempt (`part_name`) and returns the name, size and
row count to the driver, which has the commit list them (`StageOutput.add_parts`). Reading gives one
Spark partition per listed part, in the listed order, rows in the order they were written, so a table
reads back as it was written however it is split.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from thresher.pipeline.stagedir import Part, StageOutput, part_name, read_commit, storage

WRITTEN = pa.schema([pa.field("name", pa.string()), pa.field("size", pa.int64()), pa.field("rows", pa.int64())])
_WRITTEN_DDL = "name string, size long, rows long"
_PATH_DDL = "path string"


def write_part(batches: Iterator[pa.RecordBatch], url: str, table: str) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: this task's batches as one Parquet part of `table` in the stage at `url`; yields its
    name, size and row count (nothing for an empty partition, which writes no part)."""
    from pyspark import TaskContext

    first = next(batches, None)
    if first is None:
        return
    name = part_name(table, TaskContext.get().partitionId())
    size, rows = _write_parquet(f"{url.rstrip('/')}/{name}", first.schema, itertools.chain([first], batches))
    yield pa.RecordBatch.from_pylist([{"name": name, "size": size, "rows": rows}], schema=WRITTEN)


def _write_parquet(url: str, schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> tuple[int, int]:
    """One Parquet file at `url` (an object appears whole when the upload completes); its size and rows."""
    fs, path = storage(url)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)  # a local directory; nothing on an object store
    rows = 0
    with fs.open(path, "wb") as file:
        with pq.ParquetWriter(file, schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
                rows += batch.num_rows
        return file.tell(), rows


def write_parts(frame, output: StageOutput, table: str) -> list[Part]:
    """Write `frame` (a Spark DataFrame), one part per partition, as `table` of `output`, and have the commit
    list the parts; returns them in partition order. A table with no rows is one empty part (its schema),
    so that a reader of the bare directory (Spark's, pyarrow's) finds the table too."""
    from pyspark.sql.pandas.types import to_arrow_schema

    stage_url = output.fs.unstrip_protocol(output.root)  # absolute: a relative local path means the driver's
    written = frame.mapInArrow(functools.partial(write_part, url=stage_url, table=table), _WRITTEN_DDL).collect()
    parts = sorted((Part(row["name"], row["size"], row["rows"]) for row in written), key=lambda part: part.name)
    if not parts:
        name = part_name(table, 0)
        parts = [Part(name, *_write_parquet(output.location(name), to_arrow_schema(frame.schema), iter([])))]
    output.add_parts(table, parts, frame.schema.jsonValue())
    return parts


def write_scratch(frame, output: StageOutput, name: str):
    """`frame` computed once and written as parts below the work directory of `output` (any store, no
    connector needed), read back as a frame of the same schema: what a stage reads more than once, and
    what breaks a long lineage (in place of Spark's checkpoint, which needs a store the JVM can write)."""
    directory = output.work_location(name)
    root = directory.rsplit("/", 1)[0]
    written = frame.mapInArrow(functools.partial(write_part, url=root, table=name), _WRITTEN_DDL).collect()
    urls = [f"{root}/{row['name']}" for row in sorted(written, key=lambda row: row["name"])]
    return _parts_frame(frame.sparkSession, urls, frame.schema)


def read_part(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: the rows of each part whose URL the input batches hold, in order."""
    for batch in batches:
        for url in batch.column("path").to_pylist():
            fs, path = storage(url)
            with fs.open(path, "rb") as file:
                yield from pq.ParquetFile(file).iter_batches()


def read_parquet_files(spark, directory: str, schema):
    """Every Parquet file directly in `directory` (any URL; none there, or no directory: no rows), in name
    order, as a frame of `schema` (a Spark StructType): files the Python workers wrote whole, one per task."""
    fs, path = storage(directory)
    fs.invalidate_cache(path)
    try:
        names = sorted(name for name in fs.ls(path, detail=False) if name.endswith(".parquet")
                       and not name.rsplit("/", 1)[-1].startswith((".", "_")))
    except FileNotFoundError:
        names = []
    return _parts_frame(spark, [fs.unstrip_protocol(name) for name in names], schema)


def read_parts(spark, directory: str, table: str):
    """`table` of the committed stage at `directory` as a DataFrame: one partition per listed part, in order."""
    from pyspark.sql.pandas.types import from_arrow_schema
    from pyspark.sql.types import StructType

    commit = read_commit(directory)
    parts = commit.parts(table)
    recorded: dict[str, Any] | None = commit.schema(table)
    if recorded is not None:
        schema = StructType.fromJson(recorded)
    elif parts:
        with commit.fs.open(commit.path(parts[0].name), "rb") as file:
            schema = from_arrow_schema(pq.read_schema(file))
    else:
        from thresher.schemas.errors import InputError

        raise InputError(f"{directory} holds no table {table}")
    return _parts_frame(spark, [commit.fs.unstrip_protocol(commit.path(part.name)) for part in parts], schema)


def read_written(spark, output: StageOutput, table: str):
    """`table` as this attempt of `output` wrote it, before the commit, read as `read_parts` reads."""
    from pyspark.sql.types import StructType

    parts, schema = output.written(table)
    return _parts_frame(spark, [output.location(part.name) for part in parts], StructType.fromJson(schema))


def read_parquet_urls(spark, urls: list[str], schema):
    """The Parquet files at `urls` (any store), one partition each, in the given order, as a frame of `schema`
    (a Spark StructType), read by the Python workers: in place of Spark's reader, which needs a connector."""
    return _parts_frame(spark, urls, schema)


def _parts_frame(spark, urls: list[str], schema):
    if not urls:
        return spark.createDataFrame([], schema)
    paths = spark.createDataFrame(spark.sparkContext.parallelize([(url,) for url in urls], len(urls)), _PATH_DDL)
    return paths.mapInArrow(read_part, schema)
