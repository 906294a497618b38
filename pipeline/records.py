"""Stage 1 per file: every record of one WARC file -> document rows, reject rows, one file-stats row.

This is the function each Spark task runs (`process_warc`), plain Python so it is tested without
Spark. Exact dedup is the one step that needs the whole job and is left to the job.

Every content record (`response`, `resource`, `conversion`) becomes exactly one row: a document or
a reject. A read failure (truncated gzip, malformed record) is one more reject, `warc_read_error`;
a file that cannot be opened is one reject, `warc_unreadable`. So per file:
`content_records + read_errors + unreadable == documents + rejects`, and the job sums that up.

doc_id = sha1("<file base name>:<decompressed byte offset of the record>")[:32]. The base name, not
the full path, so that the same WARC read from a mirror, a bucket or a local copy gives the same
ids (Common Crawl file names are unique; the job refuses two inputs with one base name). The
offset, not WARC-Record-ID, because ARC records have none (warcio invents a random one) and some
WARC writers reuse them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import resource
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import PrepareConfig, ThreadPostsConfig
from pipeline.extract import PageExtractor, binary_kind
from pipeline.filters import DocumentFilter, Drop, first_drop
from pipeline.inputs import open_input, warc_name
from pipeline.langid import LanguageFilter, top_language
from pipeline.text import text_md5
from pipeline.urlfilter import build_url_filters, registered_domain_guess
from pipeline.warc import CONTENT_KINDS, ReadError, WarcRecord, iter_records
from schemas.rejects import CONTENT_SNIPPET_CHARS

ROW_DOCUMENT = "document"
ROW_REJECT = "reject"
ROW_FILE = "file"

# One row type for all three kinds, so a task yields a single stream. `detail` of a file row holds
# the file's stats as JSON.
ROW_SCHEMA = pa.schema(
    [
        pa.field("row_kind", pa.string(), nullable=False),
        pa.field("doc_id", pa.string()),
        pa.field("url", pa.string()),
        pa.field("domain", pa.string()),
        pa.field("warc_path", pa.string()),
        pa.field("warc_record_id", pa.string()),
        pa.field("fetch_time", pa.string()),
        pa.field("text", pa.string()),
        pa.field("lang", pa.string()),
        pa.field("lang_score", pa.float64()),
        pa.field("md5", pa.string()),
        pa.field("rule", pa.string()),
        pa.field("detail", pa.string()),
        pa.field("content", pa.string()),
    ]
)


_ROWS_PER_BATCH = 1000  # rows buffered before they go to the Parquet writer: bounds a task's memory


def make_doc_id(file_name: str, offset: int) -> str:
    return hashlib.sha1(f"{file_name}:{offset}".encode()).hexdigest()[:32]


def file_output_name(path: str, identity: str = "") -> str:
    """`<sha1 of the file's base name>[.<sha1 of its identity>].parquet`: one input file's finished rows.

    A hash, never the input's own name, so no input name (`..`, `/`, odd bytes) can steer a write
    out of the output directory; the base name, as for doc ids, so a mirror's copy resumes too. The
    identity (`pipeline.inputs.input_identity`) names the version read, so that a file replaced
    since (a cut download completed) is read again rather than resumed from its old rows.
    """
    name = hashlib.sha1(warc_name(path).encode("utf-8", "surrogateescape")).hexdigest()
    if identity:
        name += "." + hashlib.sha1(identity.encode("utf-8", "surrogateescape")).hexdigest()[:20]
    return name + ".parquet"


def write_warc_rows(path: str, config: PrepareConfig, directory: str, identity: str = "") -> int:
    """Write `process_warc(path)`'s rows to `directory/file_output_name(path, identity)`; returns the row count.

    Written to a temporary name and renamed when the file is finished, so the final name exists
    only for a complete file: a rerun after a crash reuses it and skips the file. `directory` must
    be one the Spark executors and the driver both see (local mode, or a shared filesystem).
    """
    target = os.path.join(directory, file_output_name(path, identity))
    temporary = f"{target}.{uuid.uuid4().hex}.tmp"  # one per attempt: retried tasks never share a file
    count = 0
    try:
        with pq.ParquetWriter(temporary, ROW_SCHEMA) as writer:
            batch: list[tuple] = []
            for row in process_warc(path, config):
                batch.append(row)
                if len(batch) >= _ROWS_PER_BATCH:
                    writer.write_table(_table(batch))
                    count += len(batch)
                    batch = []
            writer.write_table(_table(batch))
            count += len(batch)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return count


def _table(rows: list[tuple]) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in ROW_SCHEMA.names]
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, ROW_SCHEMA, strict=True)], schema=ROW_SCHEMA)


@dataclasses.dataclass
class _Steps:
    """Per-process filters built from one config: list files are read once, not per task."""

    url_filters: list[DocumentFilter]
    lang_filter: LanguageFilter
    extractor: PageExtractor  # decoding and trafilatura, in a child process killed past the time bound


@functools.lru_cache(maxsize=4)
def _steps_for(config_json: str) -> _Steps:
    values = json.loads(config_json)
    config = PrepareConfig(**{**values, "thread_posts": ThreadPostsConfig(**values["thread_posts"])})
    return _Steps(
        url_filters=build_url_filters(
            config.domain_blocklists,
            config.url_blocklists,
            config.url_regex_lists,
            config.banned_words_file,
            config.banned_subwords_file,
            config.soft_banned_words_file,
            config.soft_word_threshold,
        ),
        lang_filter=LanguageFilter(config.languages, config.lang_threshold),
        extractor=PageExtractor(config.extract_timeout_s, config.min_text_chars, config.thread_posts),
    )


def steps_for(config: PrepareConfig) -> _Steps:
    return _steps_for(json.dumps(dataclasses.asdict(config), sort_keys=True))


def _row(kind: str, **values) -> tuple:
    return (kind, *(values.get(name) for name in ROW_SCHEMA.names[1:]))


def _reject(record_fields: dict, drop: Drop, content: str = "") -> tuple:
    return _row(ROW_REJECT, **record_fields, rule=drop.rule, detail=drop.detail, content=content[:CONTENT_SNIPPET_CHARS])


def process_warc(path: str, config: PrepareConfig) -> Iterator[tuple]:
    """Rows (in ROW_SCHEMA order) for every content record of the WARC file at `path`, then its stats.

    `config` must carry resolved (absolute) list and model paths.
    """
    started = time.perf_counter()  # wall clock for the file; steps below count CPU time (robust to contention)
    steps = steps_for(config)
    name = warc_name(path)
    kinds: Counter = Counter()
    seconds: Counter = Counter()
    steps_tried: Counter = Counter()  # pages that entered each step, and those whose step failed
    steps_failed: Counter = Counter()

    def want_payload(header: WarcRecord) -> bool:
        # Only pages that can become documents are worth reading; the rest are counted from headers.
        return header.kind == "conversion" or (header.may_be_html and header.http_status in (None, 200))

    try:
        raw = open_input(path)
    except Exception as exc:  # noqa: BLE001 - an unreadable file is a reject, the job goes on
        kinds["unreadable"] += 1
        yield _row(ROW_REJECT, warc_path=path, rule="warc_unreadable", detail=f"{type(exc).__name__}: {exc}"[:1000])
        yield _file_row(path, kinds, seconds, started, steps_tried, steps_failed, steps.extractor)
        return

    with raw:
        read_started = time.process_time()
        for event in iter_records(raw, config.max_html_bytes, want_payload):
            seconds["read"] += time.process_time() - read_started
            if isinstance(event, ReadError):
                kinds["read_error"] += 1
                fields = {"warc_path": path, "url": event.url or None}
                if event.url:
                    fields["doc_id"] = make_doc_id(name, event.offset)
                yield _reject(fields, Drop("warc_read_error", event.message))
            else:
                kinds[event.kind] += 1
                if event.kind in CONTENT_KINDS:
                    yield _process_record(event, path, name, config, steps, _Tally(seconds, steps_tried, steps_failed))
            read_started = time.process_time()
    yield _file_row(path, kinds, seconds, started, steps_tried, steps_failed, steps.extractor)


# Rejects that mean extraction failed on the page (rather than judged it); other steps fail as `<step>_error`.
EXTRACT_FAILURE_RULES = frozenset({"decode_error", "extract_error", "extract_timeout"})


@dataclasses.dataclass
class _Tally:
    """A file's per-step counters: CPU seconds, pages that entered each step, pages whose step failed."""

    seconds: Counter
    tried: Counter
    failed: Counter


class _StepFailed(Exception):
    """A page's step raised: the page becomes a `<step>_error` reject naming the error."""

    def __init__(self, step: str, error: Exception):
        super().__init__(step)
        self.step, self.error = step, error


@contextlib.contextmanager
def _step(name: str, tally: _Tally):
    tally.tried[name] += 1
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - named here, counted by the page's error boundary
        tally.failed[name] += 1
        raise _StepFailed(name, exc) from exc


def _process_record(record: WarcRecord, path: str, name: str, config: PrepareConfig, steps: _Steps, tally: _Tally) -> tuple:
    """The page's row. Its error boundary: an exception in any step is a `<step>_error` reject naming
    the error, so one page never fails its task (and with it the job, on every rerun)."""
    fields = {
        "doc_id": make_doc_id(name, record.offset),
        "url": record.url,
        "domain": None,
        "warc_path": path,
        "warc_record_id": record.record_id,
        "fetch_time": record.date,
    }
    try:
        with _step("url_parse", tally):
            fields["domain"] = registered_domain_guess(record.url)
        if record.kind == "response" and record.http_status != 200:
            return _reject(fields, Drop(f"http_status:{record.http_status or 'unparsed'}"))
        if record.kind != "conversion" and not record.is_html:
            return _reject(fields, Drop("not_html", record.mime_type or "no content type"))
        if record.payload_truncated:
            return _reject(fields, Drop("html_too_large", f"over {config.max_html_bytes} bytes (decoded)"))
        with _step("binary_check", tally):
            kind = binary_kind(record.payload, record.charset) if record.kind != "conversion" else ""
        if kind:
            return _reject(fields, Drop("binary_payload", f"{kind} declared {record.mime_type or 'untyped'}"))
        return _page_row(record, fields, config, steps, tally)
    except _StepFailed as failed:
        kept = {key: fields[key] for key in ("doc_id", "url", "domain", "warc_path", "warc_record_id", "fetch_time")}
        return _reject(kept, Drop(f"{failed.step}_error", f"{type(failed.error).__name__}: {failed.error}"[:500]))


def _page_row(record: WarcRecord, fields: dict, config: PrepareConfig, steps: _Steps, tally: _Tally) -> tuple:
    seconds = tally.seconds
    start = time.process_time()
    with _step("url_filter", tally):
        drop = first_drop(steps.url_filters, fields)
    seconds["url_filter"] += time.process_time() - start
    if drop:
        return _reject(fields, drop)

    start = time.process_time()
    with _step("extract", tally):
        if record.kind == "conversion":  # WET: the text is already extracted
            text = record.payload.decode("utf-8", errors="replace").strip()
            drop = None if len(text) >= max(1, config.min_text_chars) else Drop("empty_extraction", f"{len(text)} chars")
            child_cpu = 0.0
        else:  # decoding and trafilatura, in the extractor's child process
            text, drop, child_cpu = steps.extractor(record.payload, record.charset, record.url)
    seconds["extract"] += time.process_time() - start + child_cpu
    if drop and drop.rule in EXTRACT_FAILURE_RULES:
        tally.failed["extract"] += 1
    if drop:
        return _reject(fields, drop, text)

    start = time.process_time()
    with _step("langid", tally):
        fields["lang"], fields["lang_score"] = top_language(text, config.lid_model_path)
        drop = steps.lang_filter(fields)
    seconds["langid"] += time.process_time() - start
    if drop:
        return _reject(fields, drop, text)

    start = time.process_time()
    with _step("md5", tally):
        fields["md5"] = text_md5(text)
    seconds["md5"] += time.process_time() - start
    return _row(ROW_DOCUMENT, **fields, text=text)


def _file_row(path: str, kinds: Counter, seconds: Counter, started: float, tried: Counter, failed: Counter,
              extractor: PageExtractor) -> tuple:
    stats = {
        "records_by_kind": dict(kinds),
        "pages_by_step": dict(tried),  # pages that entered each step
        "failures_by_step": dict(failed),  # of those, pages whose step raised (or timed out)
        "cpu_seconds": {k: round(v, 4) for k, v in seconds.items()},
        "wall_seconds": round(time.perf_counter() - started, 4),
        # Peak resident memory of this worker process so far (KiB on Linux): the memory bound.
        "worker_max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        # ... and of its extraction process (forked from it, so most of that is shared, copy-on-write).
        "extract_process_max_rss_kb": extractor.max_rss_kb,
    }
    return _row(ROW_FILE, warc_path=path, detail=json.dumps(stats, sort_keys=True))
