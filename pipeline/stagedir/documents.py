"""Documents a user brings to any stage after stage 1: a committed thresher stage directory, Parquet
files or directories, JSONL(.gz) files, or a Hugging Face `datasets` directory (`save_to_disk`).

`resolve_source` finds the files and checks their columns on the driver, before Spark starts;
`read_source_parts` (a mapInArrow body) reads them in the Python workers with pyarrow and conforms
each batch to a stage's input schema (`conform_columns`). `read_documents` reads them the same way
without Spark, as rows, for the commands that run on one machine (annotate, classifiers bootstrap):

- the text, id and URL columns come from the field mapping (`--text-field`, `--id-field`, `--url-field`);
- a missing or null doc_id is derived from the file's name and the row's number in the file, so it is
  the same however the files are split into tasks;
- a missing lang is computed with lid.176 when the stage needs it (stage 2's Chinese rules);
- other columns of the schema that the input lacks are null;
- a record that cannot be read (a JSONL line that is no JSON object, not UTF-8, nested too deeply, with
  a number of more than 4,300 digits, a lone surrogate, or a text that is a list or an object; the cut
  of a truncated .gz, whose earlier lines are read; a Parquet text value that is not UTF-8) is skipped
  and written as a reject (INPUT_PARSE_ERROR) naming the file and line or row where the stage collects
  them (`rejects_dir`), else an InputError naming them; values of other fields that are lists or
  objects are read as their JSON text.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from thresher.pipeline.locations import is_url
from thresher.pipeline.stagedir import (
    CHECKPOINT_DIR,
    COMMITTED_MARKER,
    PARTS_LIST,
    STAGING_DIR,
    WORK_DIR,
    read_commit,
    storage,
    write_whole,
)
from thresher.schemas.errors import InputError
from thresher.schemas.stats import STATS_FILE

# What a thresher stage directory holds besides documents/: one of these without the marker is a
# stage that did not finish, not a user's folder of Parquet.
_STAGE_SIGNS = (STATS_FILE, "rejects", STAGING_DIR, WORK_DIR, CHECKPOINT_DIR)
PARQUET, JSONL, ARROW = "parquet", "jsonl", "arrow"
_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson", ".ndjson.gz")
FIELD_OPTIONS = {"text": "--text-field", "id": "--id-field", "url": "--url-field"}
DEFAULT_FIELDS_MAX_BYTES = 10_000_000  # the config's input.max_document_bytes
BATCH_BYTES = 64 << 20  # a JSONL batch ends at this many bytes of lines, however few they are

# One task's share of the input: a run of Parquet row groups, or a whole JSONL or Arrow file.
PARTS = pa.schema(
    [
        pa.field("path", pa.string()),
        pa.field("name", pa.string()),  # the file's path below the input root: what derived doc_ids hash
        pa.field("kind", pa.string()),
        pa.field("first_group", pa.int64()),  # Parquet row groups [first_group, first_group + groups)
        pa.field("groups", pa.int64()),
        pa.field("first_row", pa.int64()),  # the part's first row's number in its file
    ]
)


@dataclass(frozen=True)
class FieldMapping:
    """Which input columns hold the text, the document id and the URL."""

    text: str = "text"
    id: str = ""  # empty: doc_id, else id, else derived from the file name and row number
    url: str = "url"
    ids_per_file: bool = False  # each file numbers its own ids: doc_id is "<file>:<id>", unique across files
    max_document_bytes: int = DEFAULT_FIELDS_MAX_BYTES  # a longer JSONL line or text value is a reject, never read whole (config input.*)

    def id_column(self, columns: list[str]) -> str | None:
        if self.id:
            return self.id
        return next((name for name in ("doc_id", "id") if name in columns), None)


DEFAULT_FIELDS = FieldMapping()


@dataclass(frozen=True)
class DocumentSource:
    """Input files of one kind, found and checked; `committed_stage` when a thresher stage wrote them."""

    path: str
    kind: str
    root: str  # derived doc_ids hash file paths relative to this
    files: tuple[str, ...]
    columns: tuple[str, ...]  # the columns every file has
    fields: FieldMapping
    committed_stage: bool = False

    def has_columns(self, names: list[str]) -> bool:
        """Whether the files hold every column of `names` under those names (no mapping, no filling)."""
        plain = self.fields.text == "text" and self.fields.id in ("", "doc_id") and self.fields.url == "url"
        return plain and set(names) <= set(self.columns)


def resolve_source(path: str, fields: FieldMapping = DEFAULT_FIELDS) -> DocumentSource:
    """The documents at `path`, a local path or any fsspec URL (s3://...); InputError (one line naming the
    path) when there are none or the text column is missing."""
    kind, root, files, committed = _find_url(path) if is_url(path) else _find_local(Path(path))
    columns = _common_columns(kind, files)
    if fields.text not in columns:
        bad = next(file for file in files if fields.text not in _columns(kind, file))
        raise InputError(
            f"{bad} has no column {fields.text!r} (columns: {', '.join(sorted(_columns(kind, bad)))}); "
            f"name the text column with {FIELD_OPTIONS['text']}"
        )
    for key in ("id", "url"):
        name = getattr(fields, key)
        if name and name not in {"doc_id", "url"} and name not in columns:
            raise InputError(f"{path}: no column {name!r} in every file, as {FIELD_OPTIONS[key]} names")
    return DocumentSource(str(path), kind, str(root), tuple(str(f) for f in files), tuple(sorted(columns)), fields,
                          committed)


def _find_local(given: Path) -> tuple[str, Path, list[Path], bool]:
    """(kind, root, files, whether a committed stage) of the documents at local path `given`."""
    if not given.exists():
        raise InputError(f"input {given} does not exist")
    if given.is_file():
        kind = document_file_kind(given)
        if kind is None:
            raise InputError(f"{given}: not a Parquet (.parquet), JSONL (.jsonl, .jsonl.gz) or Arrow (.arrow) file")
        return kind, given.parent, [given], False
    if (given / COMMITTED_MARKER).is_file():
        root = given / "documents"
        files = [given / part.name for part in read_commit(given).parts("documents")]  # what the marker lists
        if not files:
            raise InputError(f"{root} holds no Parquet files")
        return PARQUET, root, files, True
    if _unfinished_stage(given):
        raise InputError(f"{given} is a thresher stage output that was not committed (no {COMMITTED_MARKER}): rerun that stage")
    return (*_directory_kind(given), False)


def _find_url(url: str) -> tuple[str, str, list[str], bool]:
    """As `_find_local`, for documents on an object store: a committed stage, a Parquet or JSONL file, or a
    prefix holding such files (datasets' Arrow directories are read from local disk only)."""
    fs, root = storage(url)
    fs.invalidate_cache(root)
    if fs.isfile(root):
        kind = document_file_kind(Path(root))
        if kind not in (PARQUET, JSONL):
            raise InputError(f"{url}: not a Parquet (.parquet) or JSONL (.jsonl, .jsonl.gz) file")
        return kind, url.rsplit("/", 1)[0], [url], False
    found = sorted(name[len(root) + 1:] for name in fs.find(root, withdirs=False))
    if not found:
        raise InputError(f"input {url} does not exist or holds nothing")
    base = url.rstrip("/")
    if COMMITTED_MARKER in found:
        files = [f"{base}/{part.name}" for part in read_commit(url).parts("documents")]
        if not files:
            raise InputError(f"{base}/documents holds no Parquet files")
        return PARQUET, f"{base}/documents", files, True
    tops = {name.split("/", 1)[0] for name in found}
    if {STAGING_DIR, WORK_DIR, PARTS_LIST} & tops or ("documents" in tops and tops & set(_STAGE_SIGNS)):
        raise InputError(f"{url} is a thresher stage output that was not committed (no {COMMITTED_MARKER}): rerun that stage")
    visible = [name for name in found if not any(step.startswith((".", "_")) for step in name.split("/"))]
    for kind in (PARQUET, JSONL):
        files = [f"{base}/{name}" for name in visible if document_file_kind(Path(name)) == kind]
        if files:
            return kind, base, files, False
    raise InputError(f"{url} holds no documents: no Parquet or JSONL files")


def _unfinished_stage(directory: Path) -> bool:
    """A thresher stage directory without its marker: staging or work left, or documents/ beside stats or rejects."""
    if any((directory / name).exists() for name in (STAGING_DIR, WORK_DIR, PARTS_LIST)):
        return True
    return (directory / "documents").is_dir() and any((directory / sign).exists() for sign in _STAGE_SIGNS)


def document_file_kind(path: Path) -> str | None:
    """PARQUET, JSONL or ARROW, by the file's name; None for a file that holds no documents."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        return PARQUET
    if name.endswith(_JSONL_SUFFIXES):
        return JSONL
    if name.endswith(".arrow"):
        return ARROW
    return None


def _parquet_files(directory: Path) -> list[Path]:
    # As Spark's reader does: every Parquet file below, except under names starting with . or _.
    return sorted(path for path in directory.rglob("*.parquet")
                  if not any(part.startswith((".", "_")) for part in path.relative_to(directory).parts))


def _directory_kind(directory: Path) -> tuple[str, Path, list[Path]]:
    if (directory / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in directory.iterdir() if p.is_dir())
        raise InputError(f"{directory} is a datasets DatasetDict: give one split's directory ({', '.join(splits)})")
    if (directory / "state.json").is_file():
        state = json.loads((directory / "state.json").read_text())
        files = [directory / item["filename"] for item in state.get("_data_files", [])]
        if not files:
            raise InputError(f"{directory}/state.json names no data files")
        return ARROW, directory, files
    parquet = _parquet_files(directory)
    if parquet:
        return PARQUET, directory, parquet
    jsonl = sorted(path for path in directory.rglob("*") if path.is_file() and path.name.lower().endswith(_JSONL_SUFFIXES)
                   and not any(part.startswith((".", "_")) for part in path.relative_to(directory).parts))
    if jsonl:
        return JSONL, directory, jsonl
    raise InputError(f"{directory} holds no documents: no Parquet or JSONL files, no datasets state.json")


def _columns(kind: str, path: Path | str) -> set[str]:
    if kind == PARQUET:
        import pyarrow.parquet as pq

        try:
            with _binary(path) as file:
                return set(pq.read_schema(file).names)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{path} is not a readable Parquet file: {exc}") from exc
    if kind == ARROW:
        try:
            with pa.memory_map(str(path)) as source:
                return set(pa.ipc.open_stream(source).schema.names)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{path} is not a readable Arrow stream file: {exc}") from exc
    for number, line in _lines(path):  # JSONL: the keys of the first record
        if line.strip():
            return set(_parse_line(line, path, number))
    return set()


def _common_columns(kind: str, files: Sequence[Path | str]) -> set[str]:
    common = None
    for path in files:
        columns = _columns(kind, path)
        if kind == JSONL and not columns:
            continue  # an empty file has no rows whose columns could be missing
        common = columns if common is None else common & columns
    return common or set()


def _binary(path: Path | str) -> BinaryIO:
    """`path` (a local path or any fsspec URL) opened for reading bytes."""
    if is_url(str(path)):
        import fsspec

        # Buffered by io, whose readline takes a limit (fsspec's reads a whole line, however long).
        return io.BufferedReader(fsspec.open(str(path), "rb").open(), buffer_size=1 << 20)
    return open(path, "rb")


def _lines(path: Path | str, bad_lines: list[dict] | None = None,
           max_bytes: int = DEFAULT_FIELDS_MAX_BYTES) -> Iterator[tuple[int, str]]:
    """(number, text) of each line of a JSONL(.gz) file. A line that is not UTF-8 or longer than `max_bytes`
    (read no further than that: the rest is skipped in chunks), or the end of a file cut short (a truncated
    gzip member), raises InputError naming the file and line, or, when `bad_lines` is a list, goes there and
    reading goes on (after a cut, nothing is left to read: the lines before it stay)."""
    number = 0
    try:
        with _binary(path) as raw:
            source = gzip.open(raw) if str(path).lower().endswith(".gz") else raw
            while data := source.readline(max_bytes + 1):
                number += 1
                if len(data) > max_bytes and not data.endswith(b"\n"):
                    while (rest := source.readline(1 << 20)) and not rest.endswith(b"\n"):
                        pass
                    _bad_line(bad_lines, f"{path} line {number} is longer than {max_bytes:,} bytes "
                                         "(input.max_document_bytes)", data[:200].decode("utf-8", "replace"))
                    continue
                try:
                    yield number, data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    _bad_line(bad_lines, f"{path} line {number} is not UTF-8 ({exc.reason} at byte {exc.start})",
                              data.decode("utf-8", "replace"))
    except (OSError, EOFError, zlib.error) as exc:
        if number == 0 and not isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile)):
            raise InputError(f"{path} is not readable: {exc}") from exc
        _bad_line(bad_lines, f"{path} is cut short after line {number} ({exc or type(exc).__name__}): "
                             "the lines before the cut are read", "")


def _bad_line(bad_lines: list[dict] | None, error: str, content: str) -> None:
    if bad_lines is None:
        raise InputError(error)
    bad_lines.append({"error": error, "content": content})


def read_jsonl(path: str | Path) -> Iterator[dict]:
    """The JSON objects of a JSONL(.gz) file, blank lines skipped; a line that is none is an InputError naming it."""
    for number, line in _lines(path):
        if line.strip():
            yield _parse_line(line, path, number)


INPUT_PARSE_ERROR = "input_parse_error"  # the reject rule of an input record that cannot be read


def _parse_line(line: str, path: Path | str, number: int) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} line {number} is not JSON: {exc}") from exc
    except ValueError as exc:  # a number of more than 4,300 digits
        raise InputError(f"{path} line {number} is not JSON thresher reads: {str(exc).split(';')[0]}") from exc
    except RecursionError:
        raise InputError(f"{path} line {number} is not JSON thresher reads: a value nested too deeply") from None
    if not isinstance(record, dict):
        raise InputError(f"{path} line {number} is a JSON {type(record).__name__}, not an object")
    if "\\ud" in line.lower() and _has_lone_surrogate(record):
        raise InputError(f"{path} line {number} holds a lone surrogate (an escaped \\ud800-\\udfff without its pair): "
                         "not valid Unicode")
    return record


def _has_lone_surrogate(value) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(key) or _has_lone_surrogate(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(item) for item in value)
    return False


def source_parts(source: DocumentSource, part_rows: int = 100_000) -> list[tuple]:
    """PARTS rows for `source`: Parquet files split into runs of row groups of about `part_rows` rows."""
    import pyarrow.parquet as pq

    parts = []
    for file in source.files:
        name = file[len(source.root) + 1:] if file.startswith(source.root.rstrip("/") + "/") else file.rsplit("/", 1)[-1]
        if source.kind != PARQUET:
            parts.append((file, name, source.kind, 0, 0, 0))
            continue
        with _binary(file) as handle:
            metadata = pq.ParquetFile(handle).metadata
        first_group, first_row, rows = 0, 0, 0
        for group in range(metadata.num_row_groups):
            rows += metadata.row_group(group).num_rows
            if rows >= part_rows or group == metadata.num_row_groups - 1:
                parts.append((str(file), name, PARQUET, first_group, group + 1 - first_group, first_row))
                first_group, first_row, rows = group + 1, first_row + rows, 0
    return parts


def derived_doc_id(name: str, row: int) -> str:
    """The doc_id of row `row` (from 0) of the input file `name`, for inputs that have none."""
    return hashlib.sha1(f"{name}#row{row}".encode()).hexdigest()[:32]


def conform_columns(columns: dict[str, pa.Array], num_rows: int, name: str, first_row: int, fields: FieldMapping,
                    schema: pa.Schema, lid_model_path: str | None = None) -> pa.RecordBatch:
    """One batch of input columns -> a batch of `schema`: mapped, ids derived, lang computed when
    `lid_model_path` is not None (empty: the shipped lid.176), the rest of the schema filled with nulls."""
    from thresher.pipeline.urls import registered_domain_guess

    values: dict[str, pa.Array] = {}
    text = columns.get(fields.text)
    values["text"] = text.cast(pa.string()) if text is not None else pa.nulls(num_rows, pa.string())
    id_column = fields.id_column(list(columns))
    ids = columns[id_column].cast(pa.string()).to_pylist() if id_column in columns else [None] * num_rows
    scope = f"{name}:" if fields.ids_per_file else ""
    values["doc_id"] = pa.array([scope + doc_id if doc_id is not None and doc_id != "" else derived_doc_id(name, first_row + i)
                                 for i, doc_id in enumerate(ids)], pa.string())
    if fields.url in columns:
        values["url"] = columns[fields.url].cast(pa.string())
    if "domain" in schema.names and "domain" not in columns and "url" in values:
        values["domain"] = pa.array([registered_domain_guess(url) if url else None
                                     for url in values["url"].to_pylist()], pa.string())
    if lid_model_path is not None and "lang" in schema.names and "lang" not in columns:
        from thresher.pipeline.langid import top_language

        predicted = [top_language(text or "", lid_model_path) for text in values["text"].to_pylist()]
        values["lang"] = pa.array([lang or None for lang, _ in predicted], pa.string())
        values["lang_score"] = pa.array([score for _, score in predicted], pa.float64())
    arrays = []
    for field in schema:
        column = values.get(field.name, columns.get(field.name))
        arrays.append(pa.nulls(num_rows, field.type) if column is None else _cast(column, field, name, first_row))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _cast(column: pa.Array, field: pa.Field, name: str, first_row: int) -> pa.Array:
    """`column` as `field`'s type; values that do not convert (a JSONL column whose later records change
    type) are an InputError naming the file and column."""
    try:
        return column.cast(field.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise InputError(f"{name} rows from {first_row}: column {field.name!r} holds {column.type} values that are "
                         f"no {field.type} (its type in the input's first file or records): {exc}") from None


JSONL_TYPE_SAMPLE = 1000  # records of a JSONL input's first file that give its own columns their types


def kept_fields(source: DocumentSource, schema: pa.Schema) -> list[pa.Field]:
    """The input's own columns that a stage reading it as `schema` passes on unchanged (README "Your
    columns"): every column of `source` but those `schema` reads and the text column the field mapping
    names, with its type as the files hold it, made what Spark holds (a timestamp in microseconds).
    A JSONL input's types are those of its first file's first JSONL_TYPE_SAMPLE records: lists and
    objects as their JSON text, a column of nulls only as text. A type Spark cannot hold (uint64) is an
    InputError naming the column."""
    from pyspark.sql.pandas.types import to_arrow_schema

    from thresher.schemas import to_spark_schema

    consumed = set(schema.names) | {source.fields.text}
    names = [name for name in source.columns if name not in consumed]
    if not names:
        return []
    kept = []
    for name, kind in _column_types(source, names).items():
        try:
            spark_type = to_arrow_schema(to_spark_schema(pa.schema([pa.field(name, kind)]))).field(0).type
        except (TypeError, ValueError) as exc:
            raise InputError(f"{source.path}: column {name!r} is {kind}, a type Spark cannot carry ({exc}); "
                             "cast it in your input or drop it") from None
        kept.append(pa.field(name, spark_type))
    return kept


def _column_types(source: DocumentSource, names: list[str]) -> dict[str, pa.DataType]:
    if source.kind == JSONL:
        sample = next((batch for file in source.files for batch in _jsonl_batches(file, JSONL_TYPE_SAMPLE, [],
                       source.fields.text, source.fields.max_document_bytes)), None)
        found = {} if sample is None else dict(zip(sample.schema.names, sample.schema.types, strict=True))
        return {name: pa.string() if pa.types.is_null(found.get(name, pa.null())) else found[name] for name in names}
    types: dict[str, pa.DataType] = {}
    first = source.files[0]
    for file in source.files:
        file_schema = _file_schema(source.kind, file)
        for name in names:
            kind = file_schema.field(name).type
            if types.setdefault(name, kind) != kind:
                raise InputError(f"{file}: column {name!r} is {kind} there but {types[name]} in {first}: "
                                 "give it one type in every file")
    return types


def _file_schema(kind: str, path: Path | str) -> pa.Schema:
    if kind == PARQUET:
        import pyarrow.parquet as pq

        with _binary(path) as file:
            return pq.read_schema(file)
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_stream(source).schema


def refuse_clashes(source: DocumentSource, kept: list[pa.Field], written: set[str], stage: str) -> list[pa.Field]:
    """`kept` without the columns thresher writes itself (`written`): in a thresher stage's output they are
    thresher's own from an earlier stage (written afresh); in a user's input each is an InputError naming it."""
    clash = sorted({field.name for field in kept} & written)
    if clash and not source.committed_stage:
        raise InputError(f"{source.path}: column {clash[0]!r} is a column thresher writes ({stage} and the stages "
                         f"after it); rename it in your input (clashing: {', '.join(clash)})")
    return [field for field in kept if field.name not in clash]


def read_source_parts(parts: Iterator[pa.RecordBatch], fields: FieldMapping, schema: pa.Schema,
                      lid_model_path: str | None = None, batch_rows: int = 4096, rejects_dir: str | None = None,
                      stage: str = "") -> Iterator[pa.RecordBatch]:
    """mapInArrow body: PARTS rows -> `schema` batches of at most `batch_rows` rows (see `conform_columns`).

    With `rejects_dir`, a JSONL line that is no JSON object is skipped and written, with the file and
    line, as a `stage` reject row to `rejects_dir/<hash of the part>.parquet` (a retried task rewrites
    the same file); without it, it is an InputError."""
    for part in parts:
        for row in part.to_pylist():
            bad_lines: list[dict] | None = [] if rejects_dir is not None else None
            for columns, num_rows, first_row in _read_part(row, batch_rows, bad_lines, text_field=fields.text,
                                                           max_bytes=fields.max_document_bytes):
                columns, valid = _checked_text(columns, fields, row["path"], first_row, bad_lines)
                if "sample_copies" in schema.names and "sample_copies" in columns:
                    columns, valid = _checked_copies(columns, valid, row["path"], first_row, bad_lines)
                batch = conform_columns(columns, num_rows, row["name"], first_row, fields, schema, lid_model_path)
                yield batch if valid is None else batch.filter(valid)
            if bad_lines:
                _write_parse_rejects(bad_lines, row["path"], rejects_dir, stage)


def read_documents(path: str | Path, fields: FieldMapping = DEFAULT_FIELDS,
                   columns: Sequence[str] = ("doc_id", "url", "text", "lang"), bad_lines: list[dict] | None = None,
                   batch_rows: int = 4096) -> Iterator[dict]:
    """The documents at `path` (any input `resolve_source` takes) as rows of `columns`, each str or None,
    without Spark: mapped and filled as `conform_columns` does, so a row without an id gets the
    `derived_doc_id` the Spark reader gives it. The input is checked at once (InputError); its rows are
    read as they are asked for. A JSONL line that is no JSON object is an InputError naming it, or,
    when `bad_lines` is a list, skipped and appended there (error, content)."""
    source = resolve_source(str(path), fields)
    return _document_rows(source, pa.schema([pa.field(name, pa.string()) for name in columns]), bad_lines, batch_rows)


def _document_rows(source: DocumentSource, schema: pa.Schema, bad_lines: list[dict] | None,
                   batch_rows: int) -> Iterator[dict]:
    # Only the input columns that fill `schema` are read from Parquet: no text when `schema` has none.
    fields = source.fields
    sources = {"text": {fields.text}, "doc_id": {fields.id, "doc_id", "id"}, "url": {fields.url},
               "domain": {"domain", fields.url}}
    wanted = set().union(*(sources.get(name, {name}) for name in schema.names))
    for values in source_parts(source):
        part = dict(zip(PARTS.names, values, strict=True))
        for columns, num_rows, first_row in _read_part(part, batch_rows, bad_lines, wanted, fields.text,
                                                       fields.max_document_bytes):
            columns, valid = _checked_text(columns, fields, part["path"], first_row, bad_lines)
            batch = conform_columns(columns, num_rows, part["name"], first_row, fields, schema)
            yield from (batch if valid is None else batch.filter(valid)).to_pylist()


def _checked_text(columns: dict[str, pa.Array], fields: FieldMapping, path: str, first_row: int,
                  bad_lines: list[dict] | None) -> tuple[dict[str, pa.Array], pa.Array | None]:
    """The text column of a Parquet or Arrow batch as text, each value checked: one that is not UTF-8 (a
    binary column's bytes) or longer than `fields.max_document_bytes` raises InputError naming the file and
    row, or goes to `bad_lines` and is masked out (the mask, else None: every row is kept). Its row keeps its
    number, so the derived ids of the rows after it do not move."""
    import pyarrow.compute as pc

    text = columns.get(fields.text)
    if text is None or not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)
                            or pa.types.is_binary(text.type) or pa.types.is_large_binary(text.type)):
        return columns, None
    too_long = pc.fill_null(pc.greater(pc.binary_length(text), fields.max_document_bytes), False)
    if pa.types.is_binary(text.type) or pa.types.is_large_binary(text.type):
        try:
            text = text.cast(pa.string())
        except pa.ArrowInvalid:
            text = None  # decoded value by value below
    if text is not None and not pc.any(too_long).as_py():
        return {**columns, fields.text: text}, None
    decoded, valid = [], []
    values = (text if text is not None else columns[fields.text]).to_pylist()
    for index, (value, long) in enumerate(zip(values, too_long.to_pylist(), strict=True)):
        if long:
            _bad_line(bad_lines, f"{path} row {first_row + index}: {fields.text!r} is longer than "
                                 f"{fields.max_document_bytes:,} bytes (input.max_document_bytes)", "")
            decoded.append(None)
            valid.append(False)
            continue
        try:
            decoded.append(value.decode("utf-8") if isinstance(value, bytes) else value)
            valid.append(True)
        except UnicodeDecodeError as exc:
            _bad_line(bad_lines, f"{path} row {first_row + index}: {fields.text!r} is not UTF-8 ({exc.reason} at byte "
                                 f"{exc.start})", value[:200].decode("utf-8", "replace"))
            decoded.append(None)
            valid.append(False)
    return {**columns, fields.text: pa.array(decoded, pa.string())}, pa.array(valid)


MAX_SAMPLE_COPIES = 1000  # a document repeated more often than this in a corpus is an error, not a mix


def _checked_copies(columns: dict[str, pa.Array], valid: pa.Array | None, path: str, first_row: int,
                    bad_lines: list[dict] | None) -> tuple[dict[str, pa.Array], pa.Array | None]:
    """sample_copies as int32, each value a whole number from 0 to MAX_SAMPLE_COPIES or null (one copy); any
    other (-7, "many", 2.5) raises InputError naming the file and row, or goes to `bad_lines`, masked out."""
    copies = columns["sample_copies"]
    if pa.types.is_integer(copies.type):
        import pyarrow.compute as pc

        in_range = pc.and_(pc.greater_equal(copies, 0), pc.less_equal(copies, MAX_SAMPLE_COPIES))
        if pc.all(pc.fill_null(in_range, True)).as_py():
            return {**columns, "sample_copies": copies.cast(pa.int32())}, valid
    kept, mask = [], [] if valid is None else valid.to_pylist()
    for index, value in enumerate(copies.to_pylist()):
        value = _number(value)  # a JSONL column of mixed types holds its numbers as their JSON text
        whole = isinstance(value, int) and not isinstance(value, bool) or isinstance(value, float) and value.is_integer()
        if value is None or whole and 0 <= value <= MAX_SAMPLE_COPIES:
            kept.append(None if value is None else int(value))
            if valid is None:
                mask.append(True)
            continue
        _bad_line(bad_lines, f"{path} row {first_row + index}: sample_copies {value!r} is not a whole number of copies "
                             f"from 0 to {MAX_SAMPLE_COPIES:,}", "")
        kept.append(None)
        if valid is None:
            mask.append(False)
        else:
            mask[index] = False
    return {**columns, "sample_copies": pa.array(kept, pa.int32())}, pa.array(mask)


def _number(value):
    if not isinstance(value, str):
        return value
    try:
        number = json.loads(value)
    except ValueError:
        return value
    return number if isinstance(number, (int, float)) else value


def _write_parse_rejects(bad_lines: list[dict], path: str, rejects_dir: str, stage: str) -> None:
    import pyarrow.parquet as pq

    from thresher.schemas.rejects import CONTENT_SNIPPET_CHARS, REJECT

    rows = [{"doc_id": None, "url": None, "warc_path": path, "stage": stage, "rule": INPUT_PARSE_ERROR,
             "detail": bad["error"], "content": bad["content"][:CONTENT_SNIPPET_CHARS]}
            for bad in bad_lines]
    # One object per input file, written whole (a retried task rewrites it): a PUT, or a local file moved into place.
    name = hashlib.sha1(path.encode()).hexdigest()[:16]
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=REJECT), buffer)
    fs, directory = storage(rejects_dir)
    fs.makedirs(directory, exist_ok=True)
    write_whole(fs, f"{directory}/{name}.parquet", buffer.getvalue().to_pybytes())


def _read_part(part: dict, batch_rows: int, bad_lines: list[dict] | None = None, columns: set[str] | None = None,
               text_field: str = "text", max_bytes: int = DEFAULT_FIELDS_MAX_BYTES,
               ) -> Iterator[tuple[dict[str, pa.Array], int, int]]:
    """(columns, rows, number of the first row in its file) for each batch of one part; JSONL lines
    that are no JSON object go to `bad_lines` when it is a list (else they raise InputError). Given
    `columns`, a Parquet part's other columns are not read."""
    first_row = part["first_row"]
    if part["kind"] == PARQUET:
        import pyarrow.parquet as pq

        groups = list(range(part["first_group"], part["first_group"] + part["groups"]))
        file = pq.ParquetFile(_binary(part["path"]) if is_url(part["path"]) else part["path"])
        names = None if columns is None else [name for name in file.schema_arrow.names if name in columns]
        batches = file.iter_batches(batch_size=batch_rows, row_groups=groups, columns=names)
    elif part["kind"] == ARROW:
        batches = _arrow_batches(part["path"], batch_rows)
    else:
        batches = _jsonl_batches(part["path"], batch_rows, bad_lines, text_field, max_bytes)
    for batch in batches:
        yield dict(zip(batch.schema.names, batch.columns, strict=True)), batch.num_rows, first_row
        first_row += batch.num_rows


def _arrow_batches(path: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
    with pa.memory_map(path) as source:
        for batch in pa.ipc.open_stream(source):
            for start in range(0, batch.num_rows, batch_rows):
                yield batch.slice(start, batch_rows)


def _jsonl_batches(path: str, batch_rows: int, bad_lines: list[dict] | None = None, text_field: str = "text",
                   max_bytes: int = DEFAULT_FIELDS_MAX_BYTES) -> Iterator[pa.RecordBatch]:
    """JSONL rows as batches; values that are not strings, numbers or null become their JSON text. A line
    that is no JSON object thresher reads, or whose `text_field` is a list or an object, raises InputError,
    or goes to `bad_lines` (error, content), as do lines that are not UTF-8 and the cut of a truncated file."""
    records: list[dict] = []
    held = 0  # bytes of the records in hand: a batch ends at batch_rows records or BATCH_BYTES
    for number, line in _lines(path, bad_lines, max_bytes):
        if not line.strip():
            continue
        try:
            record = _parse_line(line, path, number)
            if isinstance(record.get(text_field), (list, dict)):
                kind = "a list" if isinstance(record[text_field], list) else "an object"
                raise InputError(f"{path} line {number}: field {text_field!r} is {kind}, not text")
        except InputError as exc:
            _bad_line(bad_lines, str(exc), line.rstrip("\n"))  # the error names file and line
            continue
        records.append(record)
        held += len(line)
        if len(records) == batch_rows or held >= BATCH_BYTES:
            yield _records_batch(records)
            records, held = [], 0
    if records:
        yield _records_batch(records)


def _records_batch(records: list[dict]) -> pa.RecordBatch:
    names = sorted({key for record in records for key in record})
    arrays = []
    for name in names:
        column = [record.get(name) for record in records]
        nested = any(isinstance(value, (list, dict)) for value in column)
        try:
            arrays.append(pa.array(column) if not nested else _json_text(column))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # mixed types, huge integers: JSON text
            arrays.append(_json_text(column))
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _json_text(column: list) -> pa.Array:
    return pa.array([None if v is None else v if isinstance(v, str) else json.dumps(v) for v in column], pa.string())


# The export's view of a document: its id, its text and how many times rebalancing samples it.
EXPORT_COLUMNS = pa.schema([pa.field("doc_id", pa.string()), pa.field("text", pa.string()),
                            pa.field("sample_copies", pa.int32())])


def document_batches(parts: Iterator[pa.RecordBatch], batch_documents: int, fields: FieldMapping,
                     rejects_dir: str | None = None, stage: str = "") -> Iterator[pa.RecordBatch]:
    """PARTS rows -> the export's documents (schemas.export_wire.DOCUMENTS): copies is sample_copies,
    or 1 where the input has none. `rejects_dir` and `stage` as in `read_source_parts`."""
    import pyarrow.compute as pc

    from thresher.schemas.export_wire import DOCUMENTS

    for batch in read_source_parts(parts, fields, EXPORT_COLUMNS, batch_rows=batch_documents, rejects_dir=rejects_dir,
                                   stage=stage):
        copies = pc.fill_null(batch.column("sample_copies"), 1)
        yield pa.RecordBatch.from_arrays([batch.column("doc_id"), batch.column("text"), copies], schema=DOCUMENTS)
