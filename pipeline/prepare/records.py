"""Stage 1 per file: every record of one WARC file -> document rows, reject rows, one file-stats row.

This is the function each Spark task runs (`process_warc`), plain Python so it is tested without
Spark. Exact dedup is the one step that needs the whole job and is left to the job. Every per-page
step (URL parse, HTTP checks, binary check, each URL filter, extraction, language ID, MD5) is a
`pipeline.filters.DocumentFilter`: the file-stats row carries each one's pages seen, dropped and
seconds for that file (`rules`), and the job sums them into stats.json.

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
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from thresher.pipeline.config import PrecheckConfig, PrepareConfig, ThreadPostsConfig
from thresher.pipeline.filters import (
    DocumentFilter,
    Drop,
    FilterStats,
    RuleStats,
    first_drop,
    rule_stats_to_json,
    take_stats,
)
from thresher.pipeline.langid import LanguageFilter, top_language
from thresher.pipeline.locations import local_copy
from thresher.pipeline.prepare.extract import PageExtractor, binary_kind
from thresher.pipeline.prepare.inputs import open_input, warc_name
from thresher.pipeline.prepare.precheck import Precheck
from thresher.pipeline.prepare.urlfilter import build_url_filters
from thresher.pipeline.prepare.warc import CONTENT_KINDS, ReadError, WarcRecord, iter_records
from thresher.pipeline.stagedir import is_local, storage, write_whole
from thresher.pipeline.text import text_md5
from thresher.pipeline.urls import registered_domain_guess
from thresher.schemas.rejects import CONTENT_SNIPPET_CHARS

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
    identity (`pipeline.prepare.inputs.input_identity`) names the version read, so that a file replaced
    since (a cut download completed) is read again rather than resumed from its old rows.
    """
    name = hashlib.sha1(warc_name(path).encode("utf-8", "surrogateescape")).hexdigest()
    if identity:
        name += "." + hashlib.sha1(identity.encode("utf-8", "surrogateescape")).hexdigest()[:20]
    return name + ".parquet"


def write_warc_rows(path: str, config: PrepareConfig, directory: str, identity: str = "") -> int:
    """Write `process_warc(path)`'s rows to `directory/file_output_name(path, identity)`; returns the row count.

    `directory` is a local path or any fsspec URL (s3://...) that the driver and every executor reach.
    The file is built in memory and written whole only once it is finished: one PUT on an object store
    (no rename, no copy), a temporary name of this attempt's own moved into place on local disk (two
    attempts of one file may overlap). So the final name exists only for a complete file: a rerun after
    a crash reuses it and skips the file, and a task that fails halfway leaves nothing at that name.
    """
    fs, root = storage(directory)
    target = f"{root}/{file_output_name(path, identity)}"
    buffer = pa.BufferOutputStream()
    count = 0
    with pq.ParquetWriter(buffer, ROW_SCHEMA) as writer:
        batch: list[tuple] = []
        for row in process_warc(path, config):
            batch.append(row)
            if len(batch) >= _ROWS_PER_BATCH:
                writer.write_table(_table(batch))
                count += len(batch)
                batch = []
        writer.write_table(_table(batch))
        count += len(batch)
    data = buffer.getvalue().to_pybytes()
    if is_local(fs):
        fs.makedirs(root, exist_ok=True)
        temporary = f"{target}.{uuid.uuid4().hex}.tmp"  # one per attempt: retried tasks never share a file
        try:
            Path(temporary).write_bytes(data)
            os.replace(temporary, target)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    else:
        write_whole(fs, target, data)
    return count


def _table(rows: list[tuple]) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in ROW_SCHEMA.names]
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, ROW_SCHEMA, strict=True)], schema=ROW_SCHEMA)


class _UrlParse(DocumentFilter):
    """Sets the page's `domain`; drops a record that names no URL (`no_target_uri`: an empty or `<>`
    WARC-Target-URI), which no URL rule could judge and no document could cite."""

    name = "url_parse"

    def judge(self, page: dict) -> Drop | None:
        if not page["url"].strip():
            return Drop("no_target_uri", "the record's WARC-Target-URI is empty")
        page["domain"] = registered_domain_guess(page["url"])
        return None


class _HttpResponse(DocumentFilter):
    """Pages that are no HTML document: an HTTP status other than 200, another content type, or a
    payload over the size bound (not parsed)."""

    name = "http_response"

    def __init__(self, max_html_bytes: int):
        super().__init__()
        self.max_html_bytes = max_html_bytes

    def judge(self, page: dict) -> Drop | None:
        record: WarcRecord = page["record"]
        if record.kind == "response" and record.http_status != 200:
            status = record.http_status
            return Drop(f"http_status:{status or 'unparsed'}",
                        f"HTTP status {status}; only 200 is extracted" if status else "the HTTP status line has no status code")
        if record.kind != "conversion" and not record.is_html:
            return Drop("not_html", record.mime_type or "no content type")
        if record.payload_truncated:
            return Drop("html_too_large", f"over {self.max_html_bytes} bytes (decoded)")
        return None


class _BinaryCheck(DocumentFilter):
    """Payloads that are not the text they are declared: a body whose chunked framing broke
    (`chunked_encoding_error`), one left in a content coding that was not decoded
    (`content_encoding_not_decoded`, naming the coding), files of another kind declared HTML (PDF,
    images, archives: `binary_payload`)."""

    name = "binary_check"

    def judge(self, page: dict) -> Drop | None:
        record: WarcRecord = page["record"]
        if record.framing_error:
            return Drop("chunked_encoding_error", record.framing_error)
        kind = binary_kind(record.payload, record.charset) if record.kind != "conversion" else ""
        if record.undecoded_coding and (kind or not record.payload):
            return Drop("content_encoding_not_decoded", f"{kind or 'empty'} payload: {record.undecoded_coding}")
        return Drop("binary_payload", f"{kind} declared {record.mime_type or 'untyped'}") if kind else None


class _Extract(DocumentFilter):
    """Sets the page's `text`: WET text as it is, HTML decoded and through trafilatura in the
    extractor's child process (its time counts here: the call waits for it); too little text drops,
    and so does the pre-check before trafilatura (`pipeline.prepare.precheck`), in the same child."""

    name = "extract"

    def __init__(self, extractor: PageExtractor, min_text_chars: int):
        super().__init__()
        self.extractor = extractor
        self.min_text_chars = min_text_chars

    def judge(self, page: dict) -> Drop | None:
        record: WarcRecord = page["record"]
        if record.kind == "conversion":  # WET: the text is already extracted
            page["text"] = record.payload.decode("utf-8", errors="replace").strip()
            chars = len(page["text"])
            return None if chars >= max(1, self.min_text_chars) else Drop("empty_extraction", f"{chars} chars")
        page["text"], drop, _child_cpu = self.extractor(record.payload, record.charset, record.url)
        return drop


class _LanguageId(DocumentFilter):
    """Sets the page's `lang` and `lang_score` with lid.176; drops what `LanguageFilter` drops."""

    name = "langid"

    def __init__(self, model_path: str, keep: LanguageFilter):
        super().__init__()
        self.model_path = model_path
        self.keep = keep

    def judge(self, page: dict) -> Drop | None:
        page["lang"], page["lang_score"] = top_language(page["text"], self.model_path)
        return self.keep.judge(page)  # its verdict is this step's: counted here, once


class _Md5(DocumentFilter):
    """Sets the page's `md5` (exact dedup groups on it in the job); drops nothing."""

    name = "md5"

    def judge(self, page: dict) -> None:
        page["md5"] = text_md5(page["text"])


@dataclasses.dataclass
class _Steps:
    """Per-process steps built from one config: list files are read once, not per task.

    `chain` is the page pipeline in order: (the step a failure is named after, its filters); a page
    that one drops goes no further. Steps named None cannot raise on a page.
    """

    chain: list[tuple[str | None, list[DocumentFilter]]]
    extractor: PageExtractor  # decoding and trafilatura, in a child process killed past the time bound

    @property
    def filters(self) -> list[DocumentFilter]:
        return [doc_filter for _, filters in self.chain for doc_filter in filters]


_LIST_MAPPINGS = ("domain_blocklists", "url_blocklists", "url_regex_lists")
_LIST_FILES = ("banned_words_file", "banned_subwords_file", "soft_banned_words_file", "lid_model_path")


def local_files(config: PrepareConfig) -> PrepareConfig:
    """`config` with every list and the model given as a URL (s3://...) replaced by this machine's cached copy
    of it (`pipeline.locations.local_copy`, fetched once per node and content version); local paths unchanged."""
    return dataclasses.replace(
        config,
        **{key: {name: local_copy(path) for name, path in getattr(config, key).items()} for key in _LIST_MAPPINGS},
        **{key: local_copy(getattr(config, key)) if getattr(config, key) else "" for key in _LIST_FILES},
    )


@functools.lru_cache(maxsize=4)
def _steps_for(config_json: str) -> _Steps:
    values = json.loads(config_json)
    config = local_files(PrepareConfig(**{**values, "thread_posts": ThreadPostsConfig(**values["thread_posts"]),
                                          "precheck": PrecheckConfig(**values["precheck"])}))
    precheck = Precheck(frozenset(config.languages), config.precheck.min_lang_score, config.min_text_chars,
                        config.lid_model_path) if config.precheck.enabled else None
    extractor = PageExtractor(config.extract_timeout_s, config.min_text_chars, config.thread_posts, precheck)
    url_filters = build_url_filters(
        config.domain_blocklists,
        config.url_blocklists,
        config.url_regex_lists,
        config.banned_words_file,
        config.banned_subwords_file,
        config.soft_banned_words_file,
        config.soft_word_threshold,
    )
    keep_language = LanguageFilter(config.languages, config.lang_threshold)
    return _Steps(
        chain=[
            ("url_parse", [_UrlParse()]),
            (None, [_HttpResponse(config.max_html_bytes)]),
            ("binary_check", [_BinaryCheck()]),
            ("url_filter", url_filters),
            ("extract", [_Extract(extractor, config.min_text_chars)]),
            ("langid", [_LanguageId(config.lid_model_path, keep_language)]),
            ("md5", [_Md5()]),
        ],
        extractor=extractor,
    )


def steps_for(config: PrepareConfig) -> _Steps:
    return _steps_for(json.dumps(dataclasses.asdict(config), sort_keys=True))


def _row(kind: str, **values) -> tuple:
    return (kind, *(values.get(name) for name in ROW_SCHEMA.names[1:]))


def _reject(record_fields: dict, drop: Drop, content: str = "") -> tuple:
    return _row(ROW_REJECT, **record_fields, rule=drop.rule, detail=drop.detail, content=content[:CONTENT_SNIPPET_CHARS])


READ_STEP = "read"  # the rule stats of reading: records read, read errors and unreadable files dropped


def process_warc(path: str, config: PrepareConfig) -> Iterator[tuple]:
    """Rows (in ROW_SCHEMA order) for every content record of the WARC file at `path`, then its stats.

    `config` must carry resolved (absolute) list and model paths. The stats row holds each step's
    pages seen, dropped and time for this file alone (`rules`, in pipeline order, reading first).
    """
    started = time.perf_counter()
    steps = steps_for(config)
    take_stats(steps.filters)  # an abandoned earlier file in this process may have left counts
    name = warc_name(path)
    kinds: Counter = Counter()
    read = FilterStats()
    tally = _Tally(Counter(), Counter())

    def want_payload(header: WarcRecord) -> bool:
        # Only pages that can become documents are worth reading; the rest are counted from headers.
        return header.kind == "conversion" or (header.may_be_html and header.http_status in (None, 200))

    def file_row() -> tuple:
        rules = {READ_STEP: read, **take_stats(steps.filters)}
        return _file_row(path, kinds, started, tally, rules, steps.extractor)

    read_started = time.perf_counter_ns()
    try:
        raw = open_input(path)
    except Exception as exc:  # noqa: BLE001 - an unreadable file is a reject, the job goes on
        kinds["unreadable"] += 1
        read += FilterStats(1, 1, time.perf_counter_ns() - read_started)
        yield _row(ROW_REJECT, warc_path=path, rule="warc_unreadable", detail=f"{type(exc).__name__}: {exc}"[:1000])
        yield file_row()
        return

    with raw:
        for event in iter_records(raw, config.max_html_bytes, want_payload):
            read += FilterStats(1, int(isinstance(event, ReadError)), time.perf_counter_ns() - read_started)
            if isinstance(event, ReadError):
                kinds["read_error"] += 1
                fields = {"warc_path": path, "url": event.url or None}
                if event.url:
                    fields["doc_id"] = make_doc_id(name, event.offset)
                yield _reject(fields, Drop("warc_read_error", event.message))
            else:
                kinds[event.kind] += 1
                if event.kind in CONTENT_KINDS:
                    yield _process_record(event, path, name, steps, tally)
            read_started = time.perf_counter_ns()
    yield file_row()


# Rejects that mean extraction failed on the page (rather than judged it); other steps fail as `<step>_error`.
EXTRACT_FAILURE_RULES = frozenset({"decode_error", "extract_error", "extract_timeout"})


@dataclasses.dataclass
class _Tally:
    """A file's per-step counters: pages that entered each step, pages whose step failed."""

    tried: Counter
    failed: Counter


class _StepFailed(Exception):
    """A page's step raised: the page becomes a `<step>_error` reject naming the error."""

    def __init__(self, step: str, error: Exception):
        super().__init__(step)
        self.step, self.error = step, error


@contextlib.contextmanager
def _step(name: str | None, tally: _Tally):
    if name is None:
        yield
        return
    tally.tried[name] += 1
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - named here, counted by the page's error boundary
        tally.failed[name] += 1
        raise _StepFailed(name, exc) from exc


_RECORD_FIELDS = ("doc_id", "url", "domain", "warc_path", "warc_record_id", "fetch_time")


def _process_record(record: WarcRecord, path: str, name: str, steps: _Steps, tally: _Tally) -> tuple:
    """The page's row: the steps of `steps.chain` in turn, each setting its fields on the page or
    dropping it. Its error boundary: an exception in any step is a `<step>_error` reject naming the
    error, so one page never fails its task (and with it the job, on every rerun)."""
    page = {
        "doc_id": make_doc_id(name, record.offset),
        "url": record.url,
        "domain": None,
        "warc_path": path,
        "warc_record_id": record.record_id,
        "fetch_time": record.date,
        "record": record,
    }
    try:
        for step_name, filters in steps.chain:
            with _step(step_name, tally):
                drop = first_drop(filters, page)
            if drop:
                if drop.rule in EXTRACT_FAILURE_RULES:
                    tally.failed["extract"] += 1
                row_fields = {key: value for key, value in page.items() if key != "text"}  # the text goes in `content`
                return _reject(row_fields, drop, page.get("text") or "")
    except _StepFailed as failed:
        kept = {key: page[key] for key in _RECORD_FIELDS}
        return _reject(kept, Drop(f"{failed.step}_error", f"{type(failed.error).__name__}: {failed.error}"[:500]))
    return _row(ROW_DOCUMENT, **page)


def _file_row(path: str, kinds: Counter, started: float, tally: _Tally, rules: RuleStats, extractor: PageExtractor) -> tuple:
    stats = {
        "records_by_kind": dict(kinds),
        "pages_by_step": dict(tally.tried),  # pages that entered each step
        "failures_by_step": dict(tally.failed),  # of those, pages whose step raised (or timed out)
        "rules": rule_stats_to_json(rules),  # pages each step saw, dropped, and its time, in pipeline order
        "wall_seconds": round(time.perf_counter() - started, 4),
        # Peak resident memory of this worker process so far (KiB on Linux): the memory bound.
        "worker_max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        # ... and of its extraction process (forked from it, so most of that is shared, copy-on-write).
        "extract_process_max_rss_kb": extractor.max_rss_kb,
    }
    return _row(ROW_FILE, warc_path=path, detail=json.dumps(stats))  # not key-sorted: `rules` is in pipeline order
