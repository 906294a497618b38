"""The documents input of the stages after stage 1, as a Spark DataFrame (see pipeline.stagedir.documents)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from functools import partial
from pathlib import Path

import pyarrow as pa

from thresher.pipeline.config import Config
from thresher.pipeline.stagedir import StageOutput, storage
from thresher.pipeline.stagedir.documents import (
    INPUT_PARSE_ERROR,
    PARTS,
    DocumentSource,
    FieldMapping,
    document_file_kind,
    kept_fields,
    read_source_parts,
    refuse_clashes,
    resolve_source,
    source_parts,
)
from thresher.pipeline.stagedir.parts import read_parquet_files, read_parts, write_scratch
from thresher.schemas import to_spark_schema
from thresher.schemas.errors import InputError

INPUT_HELP = ("documents: a committed thresher stage directory, a Parquet file or directory, a JSONL(.gz) file "
              "or directory, or a Hugging Face datasets directory (save_to_disk)")


def add_field_arguments(parser: argparse.ArgumentParser) -> None:
    """--text-field, --id-field, --url-field: which input columns hold the text, id and URL."""
    parser.add_argument("--text-field", default="text", metavar="NAME", help="input column holding the document text (default: text)")
    parser.add_argument(
        "--id-field", default="", metavar="NAME",
        help="input column holding a document id (default: doc_id, else id, else one derived from file name and row)",
    )
    parser.add_argument("--url-field", default="url", metavar="NAME", help="input column holding the page URL, if any (default: url)")
    parser.add_argument(
        "--ids-per-file", action="store_true",
        help="the id column is unique within each file only (each file numbers from 0): doc_id becomes FILE:ID",
    )


def fields_from_args(args: argparse.Namespace) -> FieldMapping:
    return FieldMapping(text=args.text_field, id=args.id_field, url=args.url_field, ids_per_file=getattr(args, "ids_per_file", False))


def with_limits(fields: FieldMapping, config) -> FieldMapping:
    """`fields` reading no document longer than the config's input.max_document_bytes."""
    return dataclasses.replace(fields, max_document_bytes=config.input.max_document_bytes)


def run_documents_input(inputs: list[str]) -> str | None:
    """The documents INPUT of a `thresher run` that starts at rules, or None when the INPUTs are web archives
    for stage 1: one input that is a documents file by its name (.parquet, .jsonl, .jsonl.gz, .arrow), or a
    directory (a committed stage, Parquet or JSONL files, a datasets directory) holding no .warc/.arc/.wet file."""
    from thresher.pipeline.prepare.inputs import ARCHIVE_SUFFIXES, LISTING_SUFFIXES

    if len(inputs) != 1 or any(ch in inputs[0] for ch in "*?["):
        return None
    path = inputs[0]
    if document_file_kind(Path(path.rstrip("/"))) is not None:
        return path
    if path.startswith(("http://", "https://")) or path.endswith(ARCHIVE_SUFFIXES + LISTING_SUFFIXES):
        return None  # an HTTP filesystem would read a whole file to tell it from a directory
    fs, root = storage(path)
    fs.invalidate_cache(root)
    if not fs.isdir(root):
        return None
    return None if any(name.rstrip("/").endswith(ARCHIVE_SUFFIXES) for name in fs.ls(root, detail=False)) else path


def source_from_args(args: argparse.Namespace, path: str) -> DocumentSource:
    """The checked input named on the command line: InputError before Spark starts when it is unusable."""
    return resolve_source(path, fields_from_args(args))


def thresher_columns(config: Config) -> set[str]:
    """Every column a stage from rules to the export's document index writes under `config` (its taggers'
    columns, select's, the index's), but sample_copies, which a user's input may give the export."""
    from thresher.pipeline.select.batches import SelectSettings, filtered_schema
    from thresher.schemas.documents import RULES
    from thresher.schemas.tags import DeclaredTagger
    from thresher.schemas.tokens import DOCUMENT_INDEX

    taggers = [DeclaredTagger(name, kind=spec.kind) for name, spec in config.tag.taggers.items() if spec.model_dir]
    settings = SelectSettings(taggers=tuple(taggers), line_thresholds=tuple(config.select.line_thresholds.items()))
    written = set(RULES.names) | set(filtered_schema(settings).names) | set(DOCUMENT_INDEX.names)
    return written - {"sample_copies"}


def stage_kept_fields(source: DocumentSource, schema: pa.Schema, config: Config, stage: str, written: set[str] = frozenset(),
                      ) -> list[pa.Field]:
    """The input's own columns a stage reading `source` as `schema` carries through unchanged (README "Your
    columns"); one that is named as a column thresher writes (`thresher_columns`, `written`) is an InputError."""
    return refuse_clashes(source, kept_fields(source, schema), thresher_columns(config) | set(written), stage)


def parts_frame(spark, source: DocumentSource, part_rows: int = 100_000):
    """One partition per part of `source` (pipeline.stagedir.documents.PARTS)."""
    parts = source_parts(source, part_rows)
    return spark.createDataFrame(spark.sparkContext.parallelize(parts, len(parts)), to_spark_schema(PARTS))


def documents_frame(spark, source: DocumentSource, schema: pa.Schema, lid_model_path: str | None = None,
                    scratch: tuple[StageOutput, str] | None = None, part_rows: int = 100_000,
                    rejects_dir: str | None = None, stage: str = ""):
    """`source` as a DataFrame of `schema`. A committed stage with every column is read as its marker lists
    it; anything else is conformed in the Python workers, with lang computed when `lid_model_path` is not
    None, and, given `scratch` (a stage output and a name), written below that output's work directory, so
    that no later action converts it again. With `rejects_dir` (any URL), input records that cannot be read
    (pipeline.stagedir.documents: a JSONL line that is no JSON object, not UTF-8, ...) become `stage` reject rows there (`parse_rejects`) instead of failing the job."""
    from pyspark.sql import functions as F

    spark_schema = to_spark_schema(schema)
    if source.committed_stage and source.has_columns(schema.names):
        stored = read_parts(spark, source.path, "documents")
        return stored.select(*[F.col(field.name).cast(field.dataType) for field in spark_schema.fields])
    reader = partial(read_source_parts, fields=source.fields, schema=schema, lid_model_path=lid_model_path,
                     rejects_dir=rejects_dir, stage=stage)
    frame = parts_frame(spark, source, part_rows).mapInArrow(reader, spark_schema)
    if scratch is None:
        return frame
    frame = write_scratch(frame, *scratch)
    if source.fields.id_column(list(source.columns)) in source.columns:
        refuse_duplicate_ids(frame, source)
    return frame


def refuse_duplicate_ids(frame, source: DocumentSource) -> None:
    """InputError naming an id that the input's id column gives to more than one document: merged under
    one doc_id, they would be joined and deduplicated as one (a corpus whose files each number from 0)."""
    from pyspark.sql import functions as F

    repeated = frame.groupBy("doc_id").count().filter(F.col("count") > 1)
    first = repeated.orderBy(F.desc("count"), "doc_id").first()
    if first is None:
        return
    column = source.fields.id_column(list(source.columns))
    raise InputError(
        f"{source.path}: {repeated.count():,} ids of column {column!r} are on more than one document (e.g. "
        f"{first['doc_id']!r}, {first['count']} times): pass --ids-per-file when each file numbers its own "
        "(doc_id becomes FILE:ID), or name a column of unique ids with --id-field"
    )


def parse_rejects(spark, rejects_dir: str):
    """The reject rows `documents_frame` wrote to `rejects_dir` (none: an empty frame), once its frame was computed."""
    from thresher.schemas.rejects import REJECT

    return read_parquet_files(spark, rejects_dir, to_spark_schema(REJECT))


def fresh_rejects_dir(output: StageOutput) -> str:
    """An empty `input_rejects` directory under a stage's work directory (any store), for the JSONL lines
    that `documents_frame` sets aside (a crashed attempt's files would count lines the input may no longer have)."""
    return output.work_location("input_rejects")


def count_skipped_lines(rejects_dir: str, stage: str) -> int:
    """The JSONL lines set aside in `rejects_dir`, read on the driver once the reading job has run; when
    there are any, one console line says how many and names the first."""
    import pyarrow.parquet as pq

    fs, directory = storage(rejects_dir)
    fs.invalidate_cache(directory)
    names = sorted(fs.glob(f"{directory}/*.parquet")) if fs.exists(directory) else []
    details = []
    for name in names:
        with fs.open(name, "rb") as file:
            details += pq.read_table(file, columns=["detail"]).column("detail").to_pylist()
    if details:
        records = "record" if len(details) == 1 else "records"
        print(f"[thresher] {stage}: skipped {len(details):,} input {records} that could not be read, counted as "
              f"{INPUT_PARSE_ERROR} rejects; the first: {details[0]}", file=sys.stderr, flush=True)
    return len(details)
