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
the rest of the file. The search never looks inside bytes a record has claimed, so a page quoting
a WARC record, or a stored .warc.gz, is never read as records of this file, and it gives up after
`MAX_RESUME_SCAN_BYTES`. What a record claims, by the rules `_resume_after_member` and
`_proven_record_end` state in full:
- a gzip member: up to the end of its deflate data, found even when its checksum is wrong; when
  the deflate data itself is broken its end is unknown, and a member found after the break counts
  only where the broken one's size ends, or where no stored (verbatim) block of it can reach;
- an uncompressed record: the Content-Length its header gives; a record whose length is missing,
  not a number, or past the end of the file ends only where its own WARC-Block-Digest or HTTP
  Content-Length proves it; without such proof the rest of the file is the read error.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import itertools
import re
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import brotli
import numpy as np
import zstandard
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
_MAX_STORED_BLOCK_SPAN = 4 + 0xFFFF  # a deflate stored block: LEN and NLEN (2 bytes each), then LEN verbatim bytes
_RECORD_SEPARATOR_BYTES = 4  # line ends between an uncompressed record's block and the next record (CRLF CRLF)
_URL_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:")
_RECORD_LOADER = ArcWarcRecordLoader(arc2warc=True)
_HTTP_HEADER_PARSER = _RECORD_LOADER.http_parser


@dataclass(frozen=True)
class _Framing:
    """Where a record's block lies in an uncompressed stream, and the headers that may prove its end."""

    block_start: int
    claimed_end: int | None  # where its Content-Length ends it; None when that is no byte count
    rec_headers: object  # warcio's StatusAndHeaders


class _LenientArchiveIterator(ArchiveIterator):
    """warcio's iterator, except that a record header line right after a record is never swallowed.

    warcio drops the first line after each record even when it is not blank (meant for records
    whose Content-Length is a few bytes short). ClueWeb09 (WARC/0.18) records end without the two
    blank lines, so that dropped line is the next record's `WARC/0.18` and reading stops.
    """

    claimed_end = -1  # stream position where the block of the latest record whose length was read ends
    current: _Framing | None = None  # the record being read, once its header has parsed
    previous: _Framing | None = None  # the record before it

    def _next_record(self, next_line):
        # warcio's own parse, split so that the block's extent is known before the HTTP headers are
        # parsed (and may fail): a failed record's bytes are then never searched for a resume point.
        self.previous, self.current = self.current or self.previous, None
        if next_line is None:
            next_line = self.reader.readline()
        record = self.loader.parse_record_stream(self.reader, next_line, self.known_format, no_record_parse=True)
        self.member_info = None
        if not next_line.startswith(b"WARC/"):
            _check_target_uri(record)  # an ARC header line naming no URL is no record: nothing is claimed
        block_start = self.fh.tell() - self.reader.rem_length()
        declared = record.rec_headers.get_header("Content-Length")
        # warcio reads a length that is no byte count as 0, and no length as "up to the end of the file".
        if not _is_byte_count(declared):
            self.current = _Framing(block_start, None, record.rec_headers)
            what = "no length" if declared is None else f"length {declared[:40]!r}, not a byte count"
            raise ArchiveLoadFailed(f"record has {what}: where it ends is unknown")
        self.claimed_end = block_start + record.length
        self.current = _Framing(block_start, self.claimed_end, record.rec_headers)
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


def _is_byte_count(value: str | None) -> bool:
    return value is not None and value.strip().isascii() and value.strip().isdigit()


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
    # Why the body is not as its HTTP headers frame it: its chunked framing broke after the first chunk
    # (the payload then holds the chunks before the break); "" when it is.
    framing_error: str = ""
    # Why the payload is left content-encoded: a coding thresher does not decode, or a body that is
    # not data of its declared coding; "" when every declared coding was decoded.
    undecoded_coding: str = ""

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
                url = _target_uri(record.rec_headers)
                event = _record_event(record, offset_base + offset, url, max_payload_bytes, want_payload)
                if failure is not None:
                    yield failure
                    failure = None
                yield event
                url = ""
            break
        except Exception as exc:  # noqa: BLE001 - any failure of a file becomes a counted reject
            if failure is None and records.current is not None and records.current.claimed_end is None:
                # a record whose header parsed but gave no length: the error is that record's
                offset, url = records.offset, _target_uri(records.current.rec_headers)
            if failure is None:
                failure = ReadError(offset=offset_base + offset, url=url,
                                    message=f"{type(exc).__name__}: {exc}".strip()[:1000])
            if not buffered.seekable():
                break
            # records.offset: the start of the record being read when reading failed.
            if gzipped:
                resume, floor = _resume_after_member(buffered, start + stream.member_start(records.offset), floor,
                                                     max_scan_bytes)
            else:  # a plain stream's positions are file positions already (it is the file, seeked)
                resume, floor = _resume_after_record(buffered, records, floor, max_scan_bytes)
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
    notes = _PayloadNotes()
    payload = _decoded_payload(record, max_payload_bytes + 1, notes)
    truncated = len(payload) > max_payload_bytes
    if not truncated:
        _drain(record.raw_stream)  # what decoding left (chunk trailers, bytes after a gzip end)
    if not truncated and getattr(record.raw_stream, "limit", 0) > 0:
        # The block ended before its Content-Length: the file is cut inside this record.
        raise EOFError(f"record ends after its content was cut short ({record.raw_stream.limit} bytes missing)")
    return _with_payload(header, payload[:max_payload_bytes], truncated, notes)


def _record_starts(stream: BinaryIO, position: int, gzipped: bool, max_scan_bytes: int) -> Iterator[int]:
    """The file positions of the record starts at or after `position` within `max_scan_bytes`, in order.

    A candidate is a gzip member header (in a gzip file) or a `WARC/` version line, not only at a
    line start (garbage before a record need not end with a newline), and it counts only when what
    follows parses as a record header. The stream may be read elsewhere between two positions.
    """
    needle = _GZIP_MAGIC if gzipped else b"WARC/"
    end = position + max_scan_bytes
    while (found := _find(stream, needle, position, end)) is not None:
        if _record_header_at(stream, found, gzipped):
            yield found
        position = found + 1


def _record_header_at(stream: BinaryIO, position: int, gzipped: bool) -> bool:
    stream.seek(position)
    head = stream.read(_RECORD_HEAD_BYTES)
    return _starts_with_record_header(_gunzip_head(head) if gzipped else head)


def _resume_after_record(stream: BinaryIO, records: _LenientArchiveIterator, floor: int,
                         max_scan_bytes: int) -> tuple[int | None, int]:
    """(where reading resumes, the new floor) after a failure inside an uncompressed file.

    A record whose header gave a length claims the bytes up to where that length ends: reading
    resumes right there when a record starts there (ARC files too, which have no `WARC/` line to
    search for), else at the next record start found past it. A record whose length is missing,
    not a number, or runs past the end of the file claims an unknown stretch, which may hold a
    whole quoted record: it ends only where `_proven_record_end` proves it. When no record header
    follows where the record before ended, that record's length may be short (its payload then
    read as cut, and its rest taken for what follows): its own proof, if any, says where the
    next record starts.
    """
    current = records.current
    if current is not None and (current.claimed_end is None or _past_the_end(stream, current.claimed_end)):
        return _proven_record_end(stream, current, max_scan_bytes), floor
    floor = max(floor, records.claimed_end, records.offset + 1)
    if current is not None:  # this record's own length was read
        after = _after_line_ends(stream, current.claimed_end, _RECORD_SEPARATOR_BYTES)
        if _record_header_at(stream, after, False):
            return after, floor
    elif records.previous is not None and records.previous.claimed_end is not None:
        proven = _proven_record_end(stream, records.previous, max_scan_bytes)
        if proven is not None and proven > records.offset:
            return proven, floor
    return next(_record_starts(stream, floor, False, max_scan_bytes), None), floor


def _proven_record_end(stream: BinaryIO, framing: _Framing, max_scan_bytes: int) -> int | None:
    """Where the record after an uncompressed record of doubtful length starts, when the record proves it.

    The rule: the record's WARC-Block-Digest, when it has one, must match the bytes from its block's
    start up to a record start (less the line ends between them): only the true end does. A record
    without a digest (ARC, some writers) ends where its HTTP response's Content-Length ends its body,
    when a record starts right there: the crawler stored the body as that header framed it. Either
    way, a record quoted anywhere inside the payload cannot pass; with neither proof, None. None
    too when the digest matches the length the record claims: that length is right, and what
    follows it is not this record's.
    """
    block_start = framing.block_start
    digest = _block_digest(framing.rec_headers)
    if digest is not None:
        if framing.claimed_end is not None and _digest_of(stream, digest[0], block_start, framing.claimed_end) == digest[1]:
            return None
        hasher, hashed_to = hashlib.new(digest[0]), block_start
        for start in _record_starts(stream, block_start, False, max_scan_bytes):
            tail_start = max(hashed_to, start - _RECORD_SEPARATOR_BYTES)
            _hash_span(stream, hasher, hashed_to, tail_start)
            hashed_to = tail_start
            tail = stream.read(start - tail_start)
            for cut in range(len(tail) + 1):
                if not tail[cut:].strip(b"\r\n"):
                    candidate = hasher.copy()
                    candidate.update(tail[:cut])
                    if candidate.digest() == digest[1]:
                        return start
        return None
    body_end = _http_body_end(stream, block_start)
    if body_end is None:
        return None
    start = _after_line_ends(stream, body_end, _RECORD_SEPARATOR_BYTES)
    return start if _record_header_at(stream, start, False) else None


def _hash_span(stream: BinaryIO, hasher, start: int, end: int) -> None:
    """Feed the stream's bytes from `start` to `end` to `hasher`; the stream is left at `end` (or its end)."""
    stream.seek(start)
    while start < end and (piece := stream.read(min(_READ_CHUNK, end - start))):
        hasher.update(piece)
        start += len(piece)


def _digest_of(stream: BinaryIO, algorithm: str, start: int, end: int) -> bytes:
    hasher = hashlib.new(algorithm)
    _hash_span(stream, hasher, start, end)
    return hasher.digest()


def _block_digest(rec_headers) -> tuple[str, bytes] | None:
    """(hashlib name, digest) of a `WARC-Block-Digest: sha1:BASE32` header (base32, hex or base64); None if none."""
    algorithm, _, encoded = (rec_headers.get_header("WARC-Block-Digest") or "").strip().partition(":")
    algorithm = algorithm.lower().replace("-", "")
    if algorithm not in hashlib.algorithms_guaranteed or not encoded:
        return None
    size = hashlib.new(algorithm).digest_size
    decoders = (lambda v: base64.b32decode(v + "=" * (-len(v) % 8), casefold=True), bytes.fromhex, base64.b64decode)
    for decode in decoders:
        try:
            digest = decode(encoded.strip())
        except ValueError:  # binascii.Error is a ValueError
            continue
        if len(digest) == size:
            return algorithm, digest
    return None


def _http_body_end(stream: BinaryIO, block_start: int) -> int | None:
    """Where the body of the HTTP response at `block_start` ends by its Content-Length; None when it has none."""
    stream.seek(block_start)
    head = io.BytesIO(stream.read(_RECORD_HEAD_BYTES))
    if not head.getvalue().startswith(b"HTTP/"):
        return None
    try:
        headers = _HTTP_HEADER_PARSER.parse(head)
    except Exception:  # noqa: BLE001 - headers that do not parse prove nothing
        return None
    length = headers.get_header("Content-Length")
    if headers.get_header("Transfer-Encoding") or not _is_byte_count(length) or head.tell() == len(head.getvalue()):
        return None  # chunked framing is not followed; a header block that fills the head may go on
    return block_start + head.tell() + int(length)


def _after_line_ends(stream: BinaryIO, position: int, most: int) -> int:
    """`position` moved past at most `most` CR and LF bytes."""
    stream.seek(position)
    ends = stream.read(most)
    return position + len(ends) - len(ends.lstrip(b"\r\n"))


def _past_the_end(stream: BinaryIO, position: int) -> bool:
    """Whether the stream ends before `position`."""
    if position <= 0:
        return False
    stream.seek(position - 1)
    return not stream.read(1)


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


@dataclass(frozen=True)
class _MemberExtent:
    """What a gzip member that failed claims of the file."""

    is_member: bool  # a gzip header parses at its start (else: garbage, or a member whose header is damaged)
    end: int | None  # where it ends (its deflate data followed to the end), None when that is unknown
    broken_at: int  # where its data stopped decoding (its end, when that is known): no member starts before
    data_start: int  # where its deflate data starts (its own start when it is no member)
    sizes: frozenset[int]  # the decompressed sizes (mod 2**32) the record header it starts with gives it

    def reach(self) -> int | None:
        """The farthest its deflate data can run, from the size its record header gives it: no writer
        spends more than 9 bits a byte (fixed Huffman codes; stored blocks cost 5 bytes per 64 KiB),
        plus a block header's worth (1 KiB). None when no size is known."""
        return self.data_start + max(self.sizes) * 9 // 8 + 1024 if self.sizes else None

    def precedes(self, stream: BinaryIO, start: int) -> bool:
        """Whether a member at `start` lies past this one (the rule of `_resume_after_member`)."""
        if self.end is not None:  # the bytes from its end on may be a member whose header is damaged
            return not _in_stored_block(stream, self.end, start)
        if self.sizes:
            stream.seek(start - 4)
            return int.from_bytes(stream.read(4), "little") in self.sizes or start >= self.reach()
        return not _in_stored_block(stream, self.data_start, start)


def _resume_after_member(stream: BinaryIO, member: int, floor: int, max_scan_bytes: int) -> tuple[int | None, int]:
    """(where reading resumes, the new floor) after a failure inside the gzip member at `member`.

    The rule. A member whose deflate data can be followed to its end ends there, whatever its
    checksum or the record inside says (a bad CRC is noticed only at the trailer, after its data
    has gone by). A member whose deflate data breaks has an unknown end, and past the break may lie
    a stored (verbatim) block holding a whole .warc.gz someone published, its own block header
    perhaps the bytes that broke. A member found past it starts a resume only
    - where the 4 bytes before it are the broken member's size as its record header gives it
      (gzip's ISIZE trailer: the broken member ends right there), or
    - past the farthest its data can reach for that size (`_MemberExtent.reach`).
    When the broken member's size is unknown (its record header did not decode), and for the bytes
    after a member's end or at a failure where no gzip header parses (garbage, or a member whose
    header is damaged), a member found counts only where no stored block can reach: no LEN/NLEN
    pair (a stored block's header) among those bytes, up to 64 KiB back, whose block runs past it.
    A member found that starts no record is itself skipped by these rules, never searched. A
    quote stays unread unless its payload predicts its own record's size to the byte, or the damage
    destroyed both a member's record header and the header of the stored block the quote is in.
    """
    end = member + max_scan_bytes
    extent = _member_extent(stream, member, max_scan_bytes)
    position = max(floor, extent.broken_at, member + 1)
    while (found := _find(stream, _GZIP_MAGIC, position, end)) is not None:
        position = found + 1
        if not extent.precedes(stream, found):
            continue
        if _record_header_at(stream, found, True):
            return found, position
        skipped = _member_extent(stream, found, end - found)
        if skipped.is_member:  # a member that holds no record start: what follows is judged by it
            extent, position = skipped, max(position, skipped.broken_at)
    return None, position


# Where deflate data breaks is looked for this closely (a chunk that fails is fed again in steps this long).
_BREAK_STEP_BYTES = 64


class _Inflater:
    """Raw deflate data inflated piece by piece with bounded output per call (a bomb costs time, not
    memory), keeping the first decompressed bytes (the record header) and the count of the rest."""

    def __init__(self):
        self.decompressor = zlib.decompressobj(-15)
        self.head = b""
        self.produced = 0

    def copy(self) -> _Inflater:
        copy = _Inflater()
        copy.decompressor, copy.head, copy.produced = self.decompressor.copy(), self.head, self.produced
        return copy

    def feed(self, data: bytes) -> int | None:
        """Inflate `data` (raises zlib.error where it breaks); the length of it the deflate data used when
        the data ends in it, else None."""
        given = len(data)
        while not self.decompressor.eof:
            out = self.decompressor.decompress(data, _READ_CHUNK)
            self.head += out[: _RECORD_HEAD_BYTES - len(self.head)]
            self.produced += len(out)
            data = self.decompressor.unconsumed_tail
            if not data and len(out) < _READ_CHUNK:  # a full piece out may leave output pending
                break
        return given - len(self.decompressor.unused_data) if self.decompressor.eof else None


def _member_extent(stream: BinaryIO, position: int, max_scan_bytes: int) -> _MemberExtent:
    """The extent of the gzip member at `position`: its deflate data followed (raw, so that a wrong
    checksum does not hide its end) for at most `max_scan_bytes` in and out."""
    stream.seek(position)
    header_end = _gzip_header_end(stream.read(_RECORD_HEAD_BYTES))
    if header_end is None:  # garbage, or a member whose header is damaged: unknown from here
        return _MemberExtent(False, None, position + 1, position, frozenset())
    data_start = position + header_end
    stream.seek(data_start)
    inflater, consumed = _Inflater(), 0
    while consumed < max_scan_bytes and inflater.produced < max_scan_bytes:
        chunk = stream.read(_READ_CHUNK)
        if not chunk:  # the file ends inside the member: it claims the rest
            return _MemberExtent(True, data_start + consumed, data_start + consumed, data_start, frozenset())
        before = inflater.copy()
        try:
            used = inflater.feed(chunk)
        except zlib.error:  # again from before the chunk, in steps: where it breaks, and the header before
            inflater = before
            for step in range(0, len(chunk), _BREAK_STEP_BYTES):
                try:
                    used = inflater.feed(chunk[step : step + _BREAK_STEP_BYTES])
                except zlib.error:
                    return _MemberExtent(True, None, data_start + consumed + step, data_start,
                                         _record_sizes(inflater.head))
                if used is not None:
                    used += step
                    break
        if used is not None:  # the deflate data ends; then the 8-byte trailer (CRC32, ISIZE)
            end = data_start + consumed + used + 8
            return _MemberExtent(True, end, end, data_start, frozenset())
        consumed += len(chunk)
    return _MemberExtent(True, None, data_start + consumed, data_start, _record_sizes(inflater.head))


def _gzip_header_end(head: bytes) -> int | None:
    """The length of the gzip member header `head` starts with (RFC 1952); None if it is none."""
    if head[:3] != _GZIP_MAGIC or len(head) < 10 or head[3] & 0xE0:  # reserved flag bits must be 0
        return None
    flags, end = head[3], 10
    if flags & 0x04:  # FEXTRA: a length, then that many bytes
        end += 2 + int.from_bytes(head[10:12], "little")
    for flag in (0x08, 0x10):  # FNAME, FCOMMENT: zero-terminated
        if flags & flag:
            terminator = head.find(b"\0", end)
            if terminator < 0:
                return None
            end = terminator + 1
    end += 2 if flags & 0x02 else 0  # FHCRC
    return end if end <= len(head) else None


def _record_sizes(head: bytes) -> frozenset[int]:
    """The sizes (mod 2**32) of a member holding the record whose header `head` starts with: the
    header, its Content-Length, and 0 to 4 bytes of line ends; empty unless a whole header parses."""
    buffer = io.BytesIO(head)
    try:
        record = _RECORD_LOADER.parse_record_stream(buffer, no_record_parse=True)
    except Exception:  # noqa: BLE001 - a header that does not parse gives no size
        return frozenset()
    length = record.rec_headers.get_header("Content-Length")
    if not _is_byte_count(length) or buffer.tell() >= len(head):  # no length, or a header block cut short
        return frozenset()
    return frozenset((buffer.tell() + int(length) + ends) % (1 << 32) for ends in range(_RECORD_SEPARATOR_BYTES + 1))


def _in_stored_block(stream: BinaryIO, low: int, start: int) -> bool:
    """Whether a deflate stored block whose LEN/NLEN header lies from `low` on (up to 64 KiB back)
    can hold the byte at `start`."""
    low = max(low, start - _MAX_STORED_BLOCK_SPAN)
    if start - low < 4:
        return False
    stream.seek(low)
    window = np.frombuffer(stream.read(start - low), dtype=np.uint8).astype(np.int64)
    lengths = window[:-3] | window[1:-2] << 8
    headers = np.flatnonzero((lengths ^ (window[2:-1] | window[3:] << 8)) == 0xFFFF)
    return bool(np.any(low + headers + 4 + lengths[headers] > start))


def _gunzip_head(data: bytes) -> bytes:
    """The first decompressed bytes of the gzip member that `data` starts with, up to where its data
    breaks (no checksum checked: a bad CRC shows only at the member's end); b"" if it is not one."""
    header_end = _gzip_header_end(data)
    if header_end is None:
        return b""
    inflater = _Inflater()
    for step in range(header_end, len(data), _BREAK_STEP_BYTES):
        try:
            if inflater.feed(data[step : step + _BREAK_STEP_BYTES]) is not None:
                break
        except zlib.error:
            break
        if len(inflater.head) >= _RECORD_HEAD_BYTES:
            break
    return inflater.head


def _starts_with_record_header(head: bytes) -> bool:
    """Whether `head` opens with a WARC (or ARC) record header that names its type and length."""
    try:
        record = _RECORD_LOADER.parse_record_stream(io.BytesIO(head), no_record_parse=True)
        _check_target_uri(record)
        int(record.rec_headers.get_header("Content-Length"))
    except Exception:  # noqa: BLE001 - anything that does not parse is not a record start
        return False
    return bool(record.rec_type)


def _target_uri(rec_headers) -> str:
    uri = rec_headers.get_header("WARC-Target-URI") or ""
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


def _with_payload(header: WarcRecord, payload: bytes, truncated: bool, notes: _PayloadNotes) -> WarcRecord:
    mime = header.mime_type
    if header.may_be_html and not header.is_html and _HTML_SNIFF.search(payload[:1024]):
        mime = "text/html"
    return WarcRecord(**{**header.__dict__, "mime_type": mime, "payload": payload, "payload_truncated": truncated,
                         "framing_error": notes.framing_error, "undecoded_coding": notes.undecoded_coding})


@dataclass
class _PayloadNotes:
    """What reading a payload found wrong with its framing or coding (the WarcRecord fields of those names)."""

    framing_error: str = ""
    undecoded_coding: str = ""

    def not_decoded(self, coding: str, why: object) -> None:
        self.undecoded_coding = self.undecoded_coding or f"the body is not {coding} data, as its Content-Encoding says ({why})"


def _decoded_payload(record, limit: int, notes: _PayloadNotes) -> bytes:
    """At most `limit` bytes of the record's payload: dechunked and content-decoded as it is read.

    The bound holds on the decoded bytes however the payload is framed: chunks are read and
    decoded a piece at a time (zlib's `max_length`, brotli's `output_buffer_limit`, a zstd reader's
    read size), so a small chunk that inflates to gigabytes costs `limit` bytes of memory, not
    gigabytes. warcio's content_stream() inflates a whole chunk at once.
    """
    headers = record.http_headers
    if headers is None:  # resource and conversion records: the block is the payload
        return _read_bounded(_pieces(record.raw_stream), limit)
    transfer = (headers.get_header("Transfer-Encoding") or "").replace(" ", "").lower().split(",")
    pieces = _dechunked(record.raw_stream, notes) if transfer[-1] == "chunked" else _pieces(record.raw_stream)
    codings = [c.strip().lower() for c in (headers.get_header("Content-Encoding") or "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if unknown := [c for c in codings if c not in _DECODERS]:
        notes.undecoded_coding = (f"Content-Encoding {unknown[0][:40]!r} is not one thresher decodes "
                                  f"({', '.join(sorted(_DECODERS))})")
    else:  # one coding, or stacked ("gzip, br"): the last applied is undone first
        for coding in reversed(codings):
            pieces = _DECODERS[coding](pieces, coding, notes)
    return _read_bounded(pieces, limit)


def _pieces(stream) -> Iterator[bytes]:
    while piece := stream.read(_READ_CHUNK):
        yield piece


def _dechunked(stream, notes: _PayloadNotes) -> Iterator[bytes]:
    """The body of a `Transfer-Encoding: chunked` stream in pieces of at most _READ_CHUNK bytes.

    A first size line that does not parse means the body was not chunked after all (servers
    mislabel it): the bytes come as they are, as warcio does. Framing that breaks after a chunk
    (a size line that does not parse, a chunk longer than its size) ends the body there and is
    noted, so no size line or stray bytes pass for text. A body cut short just ends.
    """
    chunks = read = 0
    while True:
        line = stream.readline(64)
        try:
            size = int(line.split(b";")[0], 16) if line.endswith(b"\n") else -1
        except ValueError:
            size = -1
        if size < 0 and not chunks:
            yield line
            yield from _pieces(stream)
            return
        if size < 0:
            if line:
                notes.framing_error = f"chunk-size line {line[:40]!r} after {chunks} chunks ({read} bytes) does not parse"
            return
        if size == 0:
            return
        chunks += 1
        while size > 0:
            piece = stream.read(min(size, _READ_CHUNK))
            if not piece:
                return
            size -= len(piece)
            read += len(piece)
            yield piece
        if after := stream.readline(64).strip(b"\r\n"):  # the line end after the chunk's data, and nothing else
            notes.framing_error = f"chunk {chunks} is longer than its size line says: {after[:40]!r} follows it"
            return


def _inflated(pieces: Iterator[bytes], coding: str, notes: _PayloadNotes, window_bits: tuple[int, ...]) -> Iterator[bytes]:
    """`pieces` inflated, in pieces of at most _READ_CHUNK bytes, whatever the compression ratio.

    A body that does not start as compressed data is passed through as it is (warcio does so too)
    and noted; one that breaks later ends there, with what was decoded before.
    """
    pieces = iter(pieces)
    data = next(pieces, b"")
    for bits in window_bits:
        decompressor = zlib.decompressobj(bits)
        try:
            out = decompressor.decompress(data, _READ_CHUNK)
            break
        except zlib.error as exc:
            error = exc
    else:
        notes.not_decoded(coding, error)
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


def _unbrotli(pieces: Iterator[bytes], coding: str, notes: _PayloadNotes) -> Iterator[bytes]:
    """`pieces` decoded from brotli, in pieces of about _READ_CHUNK bytes at most, as `_inflated` does."""
    pieces = iter(pieces)
    decompressor = brotli.Decompressor()
    data = next(pieces, b"")
    try:
        out = decompressor.process(data, output_buffer_limit=_READ_CHUNK)
    except brotli.error as exc:
        notes.not_decoded(coding, exc)
        yield data
        yield from pieces
        return
    while True:
        if out:
            yield out
        if decompressor.is_finished():
            return
        if decompressor.can_accept_more_data():
            data = next(pieces, None)
            if data is None:
                return
        elif out:  # output is pending, to be had with empty input
            data = b""
        else:  # pending, yet none came: no progress to be had
            return
        try:
            out = decompressor.process(data, output_buffer_limit=_READ_CHUNK)
        except brotli.error:
            return


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# A zstd frame may ask for a window of up to 2 GiB, allocated before any output: HTTP's zstd coding
# allows 8 MiB (RFC 9659), and a frame asking for more does not decode.
_ZSTD_MAX_WINDOW_BYTES = 1 << 23


class _PiecesReader:
    """A file-like `read` over an iterator of byte pieces (what zstandard's stream_reader reads from)."""

    def __init__(self, pieces: Iterator[bytes]):
        self._pieces = pieces

    def read(self, size: int = -1) -> bytes:
        return next(self._pieces, b"")


def _unzstd(pieces: Iterator[bytes], coding: str, notes: _PayloadNotes) -> Iterator[bytes]:
    """`pieces` decoded from zstd (every frame), in pieces of at most _READ_CHUNK bytes, as `_inflated` does."""
    pieces = iter(pieces)
    head = b""
    while len(head) < len(_ZSTD_MAGIC) and (piece := next(pieces, None)) is not None:
        head += piece
    if not head.startswith(_ZSTD_MAGIC):
        notes.not_decoded(coding, "no zstd frame magic")
        yield head
        yield from pieces
        return
    decompressor = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW_BYTES)
    reader = decompressor.stream_reader(_PiecesReader(itertools.chain([head], pieces)), read_size=_READ_CHUNK,
                                        read_across_frames=True)
    decoded = False
    while True:
        try:
            out = reader.read(_READ_CHUNK)
        except zstandard.ZstdError as exc:
            if not decoded:  # its bytes are gone into the reader: nothing to pass through
                notes.not_decoded(coding, exc)
            return
        if not out:
            return
        decoded = True
        yield out


# Content codings decoded; a body with any other is left as sent, as warcio does, and noted.
# Servers send zlib-wrapped and raw deflate alike under "deflate" (window bits tried in order).
_DECODERS = {
    "gzip": functools.partial(_inflated, window_bits=(31,)),
    "x-gzip": functools.partial(_inflated, window_bits=(31,)),
    "deflate": functools.partial(_inflated, window_bits=(15, -15)),
    "br": _unbrotli,
    "zstd": _unzstd,
}


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
