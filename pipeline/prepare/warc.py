"""Streaming WARC / ARC / WET reading with warcio: one record at a time, payloads bounded.

Gzip is decompressed here (`GzipMembers`), not by warcio, and warcio reads the plain stream. That
reads per-record gzip members (Common Crawl), whole-file gzip streams (ClueWeb09, which warcio
refuses) and uncompressed files alike, and a truncated gzip is an error at the cut instead of
warcio quietly returning a short record or ending early. Offsets are therefore offsets in the
decompressed stream.

A read failure is a `ReadError` event among the records, never an exception, so one bad file
never stops a job. When the file can seek, reading then resumes at the next place where a record
really starts (a gzip member that decompresses into a record header, or a `WARC/` line opening a
header block that parses), so a corrupt record or garbage between records costs that stretch, not
the rest of the file. The search never looks inside bytes a record has claimed (its gzip member,
or the Content-Length its header gave), so a page quoting a WARC record, or a stored .warc.gz, is
never read as records of this file, and it gives up after `MAX_RESUME_SCAN_BYTES`.
"""

from __future__ import annotations

import io
import re
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from warcio.archiveiterator import ArchiveIterator
from warcio.recordloader import ArchiveLoadFailed, ArcWarcRecordLoader

# Records whose payload is a page (or, for WET `conversion`, its extracted text).
CONTENT_KINDS = frozenset({"response", "resource", "conversion"})
HTML_MIME_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# Types that say nothing: the payload is sniffed for HTML, as browsers do.
UNTYPED_MIME_TYPES = frozenset({"", "application/octet-stream", "unk", "no-type"})
_HTML_SNIFF = re.compile(rb"<\s*(!doctype\s+html|html|head|body|meta|title)\b", re.IGNORECASE)
_READ_CHUNK = 1 << 16
_GZIP_MAGIC = b"\x1f\x8b\x08"  # a gzip member header: magic and the deflate method
_MEMBERS_KEPT = 1024  # recent gzip members remembered for resuming (records are read in order)
_MAX_RESUMES = 10_000  # per file: past this many failures, the rest of the file is one read error
# Per search for a resume point: bytes scanned (and decompressed, to find a member's end) before the
# rest of the file is given up as one read error. Real garbage stretches are a few records long; the
# bound stops an endless or random stream (a link to /dev/urandom) from being scanned forever.
MAX_RESUME_SCAN_BYTES = 1 << 30
_RECORD_HEAD_BYTES = 1 << 16  # a record header block that starts a resume must fit in this
_URL_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:")
_RECORD_LOADER = ArcWarcRecordLoader(arc2warc=True)
_HTTP_HEADER_PARSER = _RECORD_LOADER.http_parser


class _LenientArchiveIterator(ArchiveIterator):
    """warcio's iterator, except that a record header line right after a record is never swallowed.

    warcio drops the first line after each record even when it is not blank (meant for records
    whose Content-Length is a few bytes short). ClueWeb09 (WARC/0.18) records end without the two
    blank lines, so that dropped line is the next record's `WARC/0.18` and reading stops.
    """

    claimed_end = -1  # stream position where the block of the latest record whose length was read ends

    def _next_record(self, next_line):
        # warcio's own parse, split so that the block's extent is known before the HTTP headers are
        # parsed (and may fail): a failed record's bytes are then never searched for a resume point.
        record = self.loader.parse_record_stream(self.reader, next_line, self.known_format, no_record_parse=True)
        self.member_info = None
        if record.length is not None:
            self.claimed_end = self.fh.tell() - self.reader.rem_length() + record.length
        _check_target_uri(record)
        uri = record.rec_headers.get_header("WARC-Target-URI") or ""
        start = record.raw_stream.tell()
        record.http_headers = self.loader.load_http_headers(record.rec_type, uri, record.raw_stream, record.length)
        if record.length and record.http_headers:
            record.payload_length = record.length - (record.raw_stream.tell() - start)
        return record

    def _consume_blanklines(self):
        empty_size = 0
        first_line = True
        while True:
            line = self.reader.readline()
            if not line:
                return None, empty_size
            stripped = line.rstrip()
            if stripped.startswith((b"WARC/", b"http://", b"https://", b"filedesc://")):
                return line, empty_size
            if stripped and not first_line:
                return line, empty_size
            empty_size += len(line)
            first_line = False


def _check_target_uri(record) -> None:
    uri = (record.rec_headers.get_header("WARC-Target-URI") or "").lstrip("<")
    if uri and not _URL_SCHEME.match(uri):
        # With arc2warc, warcio takes any line of five or more words for an ARC header, so text
        # or garbage bytes would become phantom records; a real record names a URL.
        raise ArchiveLoadFailed(f"not a WARC or ARC record: target {uri[:100]!r}")


@dataclass(frozen=True)
class WarcRecord:
    """One record's headers, plus its payload when it is a content record worth reading."""

    kind: str  # WARC-Type: response, resource, conversion, request, metadata, warcinfo, revisit
    offset: int  # byte offset of the record in the decompressed file
    url: str
    record_id: str
    date: str  # WARC-Date as written
    http_status: int | None  # None for records without HTTP headers (resource, conversion)
    mime_type: str  # lowercased, without parameters; "" when unknown
    charset: str  # from the Content-Type header; "" when not declared
    payload: bytes | None = None  # HTTP body (dechunked, content-decoded) or resource/conversion block
    payload_truncated: bool = False  # the payload was longer than the read limit and was cut

    @property
    def is_html(self) -> bool:
        return self.mime_type in HTML_MIME_TYPES

    @property
    def may_be_html(self) -> bool:
        """HTML, or untyped until the payload is sniffed."""
        return self.is_html or (self.mime_type in UNTYPED_MIME_TYPES and self.kind != "conversion")


@dataclass(frozen=True)
class ReadError:
    """Reading stopped: a truncated gzip stream, a short record, or a malformed header."""

    offset: int  # where the failure was noticed (decompressed offset of the record being read)
    url: str  # the record being read when it failed, "" when between records
    message: str


def parse_content_type(value: str | None) -> tuple[str, str]:
    """('text/html', 'gbk') from 'text/html; charset="GBK"'; empty strings for what is missing."""
    if not value:
        return "", ""
    mime, _, params = value.partition(";")
    charset = ""
    for param in params.split(";"):
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset":
            charset = val.strip().strip("\"'").lower()
    return mime.strip().lower(), charset


class TruncatedInput(OSError):
    """The compressed stream ended inside a gzip member. Not an EOFError: warcio takes an EOFError
    between records for a clean end of file and would hide the truncation."""


class GzipMembers(io.RawIOBase):
    """Decompresses concatenated gzip members (or one whole-file member) as one stream.

    Unlike gzip.GzipFile, every byte decompressed before a cut is returned before TruncatedInput is
    raised, and reads return what is ready rather than blocking on a full buffer, so the records
    before a cut are all read. tell() is the decompressed offset, which warcio uses for offsets.
    """

    def __init__(self, raw: BinaryIO):
        super().__init__()
        self._raw = raw
        self._decompressor = zlib.decompressobj(31)
        self._member_has_data = False
        self._ready = b""
        self._ready_start = 0  # bytes of _ready already returned (slicing from an index avoids copies)
        self._position = 0
        self._done = False
        self._raw_read = 0  # compressed bytes taken from raw
        self._produced = 0  # decompressed bytes produced
        # (decompressed start, compressed start) of the most recent members, to resume after a failure
        self._members: deque[tuple[int, int]] = deque([(0, 0)], maxlen=_MEMBERS_KEPT)

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def read(self, size: int = -1) -> bytes:
        while self._ready_start >= len(self._ready) and not self._done:
            self._decompress_more()
        if size is None or size < 0:
            size = len(self._ready)
        data = self._ready[self._ready_start : self._ready_start + size]
        self._ready_start += len(data)
        self._position += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def member_start(self, offset: int) -> int:
        """The compressed offset of the member holding decompressed `offset` (or of the oldest member kept)."""
        return next((raw for start, raw in reversed(self._members) if start <= offset), self._members[0][1])

    def _decompress_more(self) -> None:
        if self._decompressor.eof:
            data = self._decompressor.unused_data
            self._decompressor = zlib.decompressobj(31)
            self._member_has_data = False
            self._members.append((self._produced, self._raw_read - len(data)))
        else:
            data = b""
        if not data:
            data = self._raw.read(_READ_CHUNK)
            self._raw_read += len(data)
        if not data:
            if self._member_has_data:
                raise TruncatedInput("gzip stream ends inside a member: the file is truncated")
            self._done = True
            return
        self._member_has_data = True
        self._ready = self._decompressor.decompress(data)
        self._ready_start = 0
        self._produced += len(self._ready)


def open_stream(raw: BinaryIO) -> BinaryIO:
    """A readable plain (decompressed) stream over `raw`, which may be gzip-compressed or not."""
    buffered = raw if hasattr(raw, "peek") else io.BufferedReader(raw, _READ_CHUNK)
    if buffered.peek(2)[:2] == _GZIP_MAGIC[:2]:
        return GzipMembers(buffered)
    return buffered


def iter_records(
    raw: BinaryIO, max_payload_bytes: int, want_payload=None, max_scan_bytes: int = MAX_RESUME_SCAN_BYTES
) -> Iterator[WarcRecord | ReadError]:
    """Every record of the WARC/ARC/WET stream `raw`, in file order, with a ReadError for each stretch
    that could not be read.

    Payloads are read only for content records that `want_payload(record)` accepts (default: all
    content records), and at most `max_payload_bytes + 1` bytes of each, so memory stays bounded
    by one page whatever the file size; `payload_truncated` marks a longer payload.

    After a failure, a seekable file is searched (at most `max_scan_bytes` on) for the next record
    start past every byte already claimed by a record, and reading resumes there; failures before
    the next good record are one ReadError. Offsets after a resume in a gzip file continue past
    every offset seen before (the lost member's decompressed length is unknown), so they stay
    unique and the same on every read.
    """
    buffered = raw if hasattr(raw, "peek") else io.BufferedReader(raw, _READ_CHUNK)
    gzipped = buffered.peek(2)[:2] == _GZIP_MAGIC[:2]
    start, offset_base = 0, 0  # where the current stream starts in the file, and what its offsets add
    floor = 0  # file position before which no record may start: bytes claimed by records already seen
    highest = -1  # the highest offset given out
    failure: ReadError | None = None
    for _ in range(_MAX_RESUMES):
        stream = open_stream(buffered)
        records = _LenientArchiveIterator(stream, arc2warc=True)
        offset, url = 0, ""
        try:
            for record in records:
                offset = records.offset  # start of this record; get_record_offset() would consume it
                highest = max(highest, offset_base + offset)
                url = _target_uri(record)
                event = _record_event(record, offset_base + offset, url, max_payload_bytes, want_payload)
                if failure is not None:
                    yield failure
                    failure = None
                yield event
                url = ""
            break
        except Exception as exc:  # noqa: BLE001 - any failure of a file becomes a counted reject
            if failure is None:
                failure = ReadError(offset=offset_base + offset, url=url,
                                    message=f"{type(exc).__name__}: {exc}".strip()[:1000])
            if not buffered.seekable():
                break
            # records.offset: the start of the record being read when reading failed.
            if gzipped:
                member = start + stream.member_start(records.offset)
                claimed = max(_member_end(buffered, member, max_scan_bytes), member + 1)
            else:  # a plain stream's positions are file positions already (it is the file, seeked)
                claimed = max(records.claimed_end, records.offset + 1)
            floor = max(floor, claimed)
            resume = _next_record_start(buffered, floor, gzipped, max_scan_bytes)
            if resume is None:
                break
            buffered.seek(resume)
            start, floor = resume, resume + 1
            offset_base = highest + 1 if gzipped else 0
    if failure is not None:
        yield failure


def _record_event(record, offset: int, url: str, max_payload_bytes: int, want_payload) -> WarcRecord:
    """The WarcRecord of a warcio record, with its bounded payload when it is a wanted content record."""
    _ensure_http_headers(record)
    header = _headers(record, offset, url)
    if header.kind not in CONTENT_KINDS or (want_payload is not None and not want_payload(header)):
        return header
    payload = _decoded_payload(record, max_payload_bytes + 1)
    truncated = len(payload) > max_payload_bytes
    if not truncated:
        _drain(record.raw_stream)  # what decoding left (chunk trailers, bytes after a gzip end)
    if not truncated and getattr(record.raw_stream, "limit", 0) > 0:
        # The block ended before its Content-Length: the file is cut inside this record.
        raise EOFError(f"record ends after its content was cut short ({record.raw_stream.limit} bytes missing)")
    return _with_payload(header, payload[:max_payload_bytes], truncated)


def _next_record_start(stream: BinaryIO, position: int, gzipped: bool, max_scan_bytes: int) -> int | None:
    """The file position of the next record start at or after `position` within `max_scan_bytes`, if any.

    A candidate is a gzip member header (in a gzip file) or a `WARC/` version line, not only at a
    line start (garbage before a record need not end with a newline), and it counts only when what
    follows parses as a record header.
    """
    needle = _GZIP_MAGIC if gzipped else b"WARC/"
    end = position + max_scan_bytes
    while (found := _find(stream, needle, position, end)) is not None:
        stream.seek(found)
        head = stream.read(_RECORD_HEAD_BYTES)
        if _starts_with_record_header(_gunzip_head(head) if gzipped else head):
            return found
        position = found + 1
    return None


def _find(stream: BinaryIO, needle: bytes, position: int, end: int) -> int | None:
    """The first position of `needle` in the stream between `position` and `end`, if any."""
    stream.seek(position)
    base, carried = position, b""
    while base < end:
        chunk = stream.read(min(_READ_CHUNK, end - base))
        if not chunk:
            return None
        data = carried + chunk
        found = data.find(needle)
        if found >= 0:
            return base - len(carried) + found
        carried = data[-(len(needle) - 1):]
        base += len(chunk)
    return None


def _member_end(stream: BinaryIO, position: int, max_scan_bytes: int) -> int:
    """Where the gzip member at `position` ends; if its data is corrupt, cut, or longer than the
    scan bound, how far it was read without error (its bytes up to there are its own)."""
    stream.seek(position)
    decompressor = zlib.decompressobj(31)
    consumed = produced = 0
    while consumed < max_scan_bytes and produced < max_scan_bytes:
        chunk = stream.read(_READ_CHUNK)
        if not chunk:
            break
        data = chunk
        try:
            while data and not decompressor.eof:  # bounded output per call: a bomb costs time, not memory
                produced += len(decompressor.decompress(data, _READ_CHUNK))
                data = decompressor.unconsumed_tail
        except zlib.error:
            break
        if decompressor.eof:
            return position + consumed + len(chunk) - len(decompressor.unused_data)
        consumed += len(chunk)
    return position + consumed


def _gunzip_head(data: bytes) -> bytes:
    """The first decompressed bytes of the gzip member that `data` starts with; b"" if it is not one."""
    try:
        return zlib.decompressobj(31).decompress(data, _RECORD_HEAD_BYTES)
    except zlib.error:
        return b""


def _starts_with_record_header(head: bytes) -> bool:
    """Whether `head` opens with a WARC (or ARC) record header that names its type and length."""
    try:
        record = _RECORD_LOADER.parse_record_stream(io.BytesIO(head), no_record_parse=True)
        _check_target_uri(record)
        int(record.rec_headers.get_header("Content-Length"))
    except Exception:  # noqa: BLE001 - anything that does not parse is not a record start
        return False
    return bool(record.rec_type)


def _target_uri(record) -> str:
    uri = record.rec_headers.get_header("WARC-Target-URI") or ""
    # wget writes `<https://...>` (WARC 1.0 draft syntax); warcio does not always strip it.
    return uri.strip().removeprefix("<").removesuffix(">")


def _ensure_http_headers(record) -> None:
    """Parse the HTTP headers of a response whose target URI is not http(s) (warcio skips those)."""
    if record.rec_type != "response" or record.http_headers is not None or not record.length:
        return
    if (record.rec_headers.get_header("Content-Type") or "").startswith("application/http"):
        record.http_headers = _HTTP_HEADER_PARSER.parse(record.raw_stream)


def _headers(record, offset: int, url: str) -> WarcRecord:
    status = None
    if record.http_headers is not None and record.rec_type in ("response", "revisit"):
        try:
            status = int(record.http_headers.get_statuscode())
        except (TypeError, ValueError):
            status = None
    if record.http_headers is not None and record.rec_type == "response":
        content_type = record.http_headers.get_header("Content-Type")
    else:
        content_type = record.rec_headers.get_header("Content-Type")
    mime, charset = parse_content_type(content_type)
    return WarcRecord(
        kind=record.rec_type or "",
        offset=offset,
        url=url,
        record_id=(record.rec_headers.get_header("WARC-Record-ID") or "").strip("<>"),
        date=record.rec_headers.get_header("WARC-Date") or "",
        http_status=status,
        mime_type=mime,
        charset=charset,
    )


def _with_payload(header: WarcRecord, payload: bytes, truncated: bool) -> WarcRecord:
    mime = header.mime_type
    if header.may_be_html and not header.is_html and _HTML_SNIFF.search(payload[:1024]):
        mime = "text/html"
    return WarcRecord(**{**header.__dict__, "mime_type": mime, "payload": payload, "payload_truncated": truncated})


# Content codings decoded (zlib window bits to try, in order); others are left as sent, as warcio does.
# Servers send zlib-wrapped and raw deflate alike under "deflate".
_CONTENT_CODINGS = {"gzip": (31,), "x-gzip": (31,), "deflate": (15, -15)}


def _decoded_payload(record, limit: int) -> bytes:
    """At most `limit` bytes of the record's payload: dechunked and content-decoded as it is read.

    The bound holds on the decoded bytes however the payload is framed: chunks are read and
    inflated a piece at a time (`max_length`), so a small chunk that inflates to gigabytes costs
    `limit` bytes of memory, not gigabytes. warcio's content_stream() inflates a whole chunk at once.
    """
    headers = record.http_headers
    if headers is None:  # resource and conversion records: the block is the payload
        return _read_bounded(_pieces(record.raw_stream), limit)
    transfer = (headers.get_header("Transfer-Encoding") or "").replace(" ", "").lower().split(",")
    pieces = _dechunked(record.raw_stream) if transfer[-1] == "chunked" else _pieces(record.raw_stream)
    codings = [c.strip().lower() for c in (headers.get_header("Content-Encoding") or "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if all(c in _CONTENT_CODINGS for c in codings):  # gzip, deflate, or stacked ("gzip, gzip")
        for coding in reversed(codings):
            pieces = _inflated(pieces, _CONTENT_CODINGS[coding])
    return _read_bounded(pieces, limit)


def _pieces(stream) -> Iterator[bytes]:
    while piece := stream.read(_READ_CHUNK):
        yield piece


def _dechunked(stream) -> Iterator[bytes]:
    """The body of a `Transfer-Encoding: chunked` stream in pieces of at most _READ_CHUNK bytes.

    A size line that does not parse means the body was not chunked after all (servers mislabel
    it): from there the bytes come as they are, as warcio does.
    """
    while True:
        line = stream.readline(64)
        try:
            size = int(line.split(b";")[0], 16) if line.endswith(b"\n") else -1
        except ValueError:
            size = -1
        if size < 0:
            yield line
            yield from _pieces(stream)
            return
        if size == 0:
            return
        while size > 0:
            piece = stream.read(min(size, _READ_CHUNK))
            if not piece:
                return
            size -= len(piece)
            yield piece
        stream.readline(64)  # the line end after the chunk's data


def _inflated(pieces: Iterator[bytes], window_bits: tuple[int, ...]) -> Iterator[bytes]:
    """`pieces` inflated, in pieces of at most _READ_CHUNK bytes, whatever the compression ratio.

    A body that does not start as compressed data is passed through as it is (warcio does so too);
    one that breaks later ends there, with what was decoded before.
    """
    pieces = iter(pieces)
    data = next(pieces, b"")
    for bits in window_bits:
        decompressor = zlib.decompressobj(bits)
        try:
            out = decompressor.decompress(data, _READ_CHUNK)
            break
        except zlib.error:
            continue
    else:
        yield data
        yield from pieces
        return
    data = decompressor.unconsumed_tail
    while True:
        if out:
            yield out
        if decompressor.eof:
            return
        if not data and len(out) < _READ_CHUNK:  # input used up (a full piece out may leave output pending)
            data = next(pieces, None)
            if data is None:
                return
        try:
            out = decompressor.decompress(data, _READ_CHUNK)
        except zlib.error:
            return
        data = decompressor.unconsumed_tail


def _read_bounded(pieces: Iterator[bytes], limit: int) -> bytes:
    chunks, size = [], 0
    for piece in pieces:
        chunks.append(piece[: limit - size])
        size += len(chunks[-1])
        if size >= limit:
            break
    return b"".join(chunks)


def _drain(stream) -> None:
    while stream.read(_READ_CHUNK):
        pass
