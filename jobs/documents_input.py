"""The documents input of the stages after stage 1, as a Spark DataFrame (see pipeline.stagedir.documents)."""

from __future__ import annotations

import argparse
import shutil
import sys
from functools import partial
from pathlib import Path

import pyarrow as pa

from thresher.pipeline.stagedir.documents import (
    INPUT_PARSE_ERROR,
    PARTS,
    DocumentSource,
    FieldMapping,
    read_source_parts,
    resolve_source,
    source_parts,
)
from thresher.schemas import to_spark_schema

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


def fields_from_args(args: argparse.Namespace) -> FieldMapping:
    return FieldMapping(text=args.text_field, id=args.id_field, url=args.url_field)


def source_from_args(args: argparse.Namespace, path: str) -> DocumentSource:
    """The checked input named on the command line: InputError before Spark starts when it is unusable."""
    return resolve_source(path, fields_from_args(args))


def parts_frame(spark, source: DocumentSource, part_rows: int = 100_000):
    """One partition per part of `source` (pipeline.stagedir.documents.PARTS)."""
    parts = source_parts(source, part_rows)
    return spark.createDataFrame(spark.sparkContext.parallelize(parts, len(parts)), to_spark_schema(PARTS))


def documents_frame(spark, source: DocumentSource, schema: pa.Schema, lid_model_path: str | None = None,
                    scratch_dir: str | None = None, part_rows: int = 100_000, rejects_dir: str | None = None,
                    stage: str = ""):
    """`source` as a DataFrame of `schema`. A committed stage with every column is read as it is;
    anything else is conformed in the Python workers, with lang computed when `lid_model_path` is
    not None, and written to `scratch_dir` when given, so that no later action converts it again.
    With `rejects_dir`, JSONL lines that are no JSON object become `stage` reject rows there
    (`parse_rejects`) instead of failing the job."""
    if source.committed_stage and source.has_columns(schema.names):
        return spark.read.schema(to_spark_schema(schema)).parquet(source.root)
    reader = partial(read_source_parts, fields=source.fields, schema=schema, lid_model_path=lid_model_path,
                     rejects_dir=rejects_dir, stage=stage)
    frame = parts_frame(spark, source, part_rows).mapInArrow(reader, to_spark_schema(schema))
    if scratch_dir is None:
        return frame
    frame.write.parquet(scratch_dir)
    return spark.read.schema(to_spark_schema(schema)).parquet(scratch_dir)


def parse_rejects(spark, rejects_dir: str):
    """The reject rows `documents_frame` wrote to `rejects_dir` (none: an empty frame), once its frame was computed."""
    from thresher.schemas.rejects import REJECT

    schema = to_spark_schema(REJECT)
    if not any(Path(rejects_dir).glob("*.parquet")):
        return spark.createDataFrame([], schema)
    return spark.read.schema(schema).parquet(f"{rejects_dir}/*.parquet")


def fresh_rejects_dir(work: Path) -> str:
    """An empty `input_rejects` directory under a stage's work directory, for the JSONL lines that
    `documents_frame` sets aside (a crashed attempt's files would count lines the input may no longer have)."""
    path = work / "input_rejects"
    shutil.rmtree(path, ignore_errors=True)
    return str(path)


def count_skipped_lines(rejects_dir: str, stage: str) -> int:
    """The JSONL lines set aside in `rejects_dir`, read on the driver once the reading job has run; when
    there are any, one console line says how many and names the first."""
    import pyarrow.parquet as pq

    details = [detail for path in sorted(Path(rejects_dir).glob("*.parquet"))
               for detail in pq.read_table(path, columns=["detail"]).column("detail").to_pylist()]
    if details:
        lines = "line that is" if len(details) == 1 else "lines that are"
        print(f"[thresher] {stage}: skipped {len(details):,} JSONL {lines} no JSON object, counted as "
              f"{INPUT_PARSE_ERROR} rejects; the first: {details[0]}", file=sys.stderr, flush=True)
    return len(details)
