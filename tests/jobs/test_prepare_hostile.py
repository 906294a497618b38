"""Stage 1 on hostile input, generated here: every bad file, record or page ends as a counted reject.

The suite is a table (`CASES`): one entry per kind of hostile input, each a file of its own that
holds the hostile record(s) and, where a file can hold more, a good page after them. One Spark run
reads every file; then each case is checked: the rule of each hostile page, the rules of the whole
file where they are exact, the good page after it still a document, the stats balanced, and no file
running past the extraction time bound plus a small constant. Adding a kind is adding one entry.
Config and path errors are checked to fail before any work starts.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import brotli
import pytest
import zstandard
from hostile_inputs import (
    ARC_FILE_HEADER,
    arc_record,
    broken_stored_block,
    brotli_bomb,
    chunked,
    deflate_bomb,
    http_response,
    huge_window_zstd,
    member_storing,
    with_bad_checksum,
    with_content_length,
    zstd_bomb,
)
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from thresher.jobs.prepare import run_prepare
from thresher.pipeline.config import ConfigError, load_config
from thresher.pipeline.prepare.extract import KILL_GRACE_S
from thresher.pipeline.stagedir import COMMITTED_MARKER
from thresher.schemas.errors import InputError

CHINESE = "茶叶的历史可以追溯到几千年前，人们在山间种植茶树，采摘嫩叶，再经过杀青、揉捻和干燥制成成品。" * 8
HUGE_PAGE_BYTES = 50 * 1024 * 1024
BOMB_BYTES = 5 * 1024 * 1024 * 1024  # what each decompression bomb inflates to
NESTING_DEPTH = 100_000
TIMEOUT_S = 2.0  # the suite's prepare.extract_timeout_s: a stalled page costs this, plus the kill grace
SLACK_S = 15.0  # per file, beyond the time bound: reading a 50 MB page or 5 MB bombs on a busy machine
BYTES_CODECS = ["base64", "hex", "rot13", "zlib", "uu", "idna", "punycode", "undefined"]
DOCUMENT = "document"  # the expected outcome of a page that must come through


def article(topic: str) -> bytes:
    sentences = " ".join(
        f"The history of {topic} in this town goes back many years, and sentence {i} tells one more part of it."
        for i in range(12)
    )
    return (f"<html><head><title>About {topic}</title></head><body><article><h1>On {topic}</h1>"
            f"<p>{sentences}</p><p>{sentences.upper()}</p></article></body></html>").encode()


def record_bytes(url: str, payload: bytes, content_type: str = "text/html; charset=utf-8", gzipped: bool = False) -> bytes:
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=gzipped)
    http = StatusAndHeaders("200 OK", [("Content-Type", content_type)], protocol="HTTP/1.1")
    writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(payload), http_headers=http))
    return buffer.getvalue()


def good_after(name: str, gzipped: bool = False) -> bytes:
    """The good page that follows a case's hostile records: it must still become a document."""
    return record_bytes(f"https://after.example/{name}", article(f"the {name} case"), gzipped=gzipped)


def huge_page_gz() -> bytes:
    """A gzip WARC record whose 50 MB page is compressed on the fly (it never sits in memory twice)."""
    head = b"<html><body><article><p>" + b"filler text " * 10 + b"</p>"
    filler = b"<p>" + b"more words about nothing in particular " * 25 + b"</p>\n"
    body_size = HUGE_PAGE_BYTES
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % body_size
    warc = (b"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: https://huge.example/page\r\n"
            b"WARC-Date: 2024-01-01T00:00:00Z\r\nWARC-Record-ID: <urn:uuid:huge>\r\n"
            b"Content-Type: application/http; msgtype=response\r\nContent-Length: %d\r\n\r\n" % (len(http) + body_size))
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    parts = [compressor.compress(warc + http + head)]
    written = len(head)
    while written + len(filler) <= body_size:
        parts.append(compressor.compress(filler))
        written += len(filler)
    parts.append(compressor.compress(b" " * (body_size - written) + b"\r\n\r\n"))
    parts.append(compressor.flush())
    return b"".join(parts)


def lying_length() -> bytes:
    """A good record, then one whose Content-Length claims ten times what the file holds."""
    lying = record_bytes("https://lying.example/long", article("lying"))
    head, _, rest = lying.partition(b"\r\n\r\n")
    declared = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    lying = head.replace(b"Content-Length: %d" % declared, b"Content-Length: %d" % (declared * 10)) + b"\r\n\r\n" + rest
    return record_bytes("https://lying.example/ok", article("lying ok")) + lying


def codec_pages(where: str) -> bytes:
    """Non-UTF-8 pages whose HTTP header or <meta> names a Python codec that is no text encoding."""
    western = "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e and the menu of the day, with every dish the kitchen makes. "
    records = []
    for codec in BYTES_CODECS:
        meta = f"<meta charset='{codec}'>" if where == "meta" else ""
        html = f"<html><head>{meta}</head><body><article><p>{western * 8} ({codec}, {where})</p></article></body></html>"
        content_type = f"text/html; charset={codec}" if where == "http" else "text/html"
        records.append(record_bytes(f"https://codec-{where}.example/{codec}", html.encode("cp1252"), content_type))
    return b"".join(records)


def attributes_tag(count: int) -> bytes:
    names = " ".join(f"a{i}=x" for i in range(count))
    return f"<html><body><div {names}>hello</div><article><p>{CHINESE}</p></article></body></html>".encode()


def parser_stall() -> bytes:
    """Under the attribute screen per tag, but so many such tags that libxml2 runs for many seconds in one C call."""
    tag = "<div " + " ".join(f"a{i}" for i in range(999)) + ">x</div>"
    return ("<html><body>" + tag * 1000 + "<p>end</p></body></html>").encode()


def bomb(url: str, body: bytes, headers: list[tuple[str, str]]) -> bytes:
    return http_response(url, body, [("Content-Type", "text/html"), *headers])


def truncated() -> bytes:
    """Two good gzip records, then half of a third: the file ends inside a gzip member."""
    last = record_bytes("https://cut.example/2", article("cut"), gzipped=True)
    return b"".join(record_bytes(f"https://cut.example/{i}", article(f"cut {i}"), gzipped=True) for i in range(2)) + \
        last[: len(last) // 2]


def corrupt_member() -> bytes:
    """Three gzip members; the middle one's compressed bytes are flipped (its CRC cannot match)."""
    members = [record_bytes(f"https://crc.example/{i}", article(f"crc {i}"), gzipped=True) for i in range(3)]
    middle = bytearray(members[1])
    for i in range(len(middle) // 2, len(middle) // 2 + 40):
        middle[i] ^= 0x5A
    return members[0] + bytes(middle) + members[2]


def quoting(name: str) -> bytes:
    """A page that shows a whole WARC record (of the url `https://phantom.example/<name>`), byte for byte."""
    quoted = record_bytes(f"https://phantom.example/{name}", article(f"phantom {name}"))
    return b"<html><body><p>A WARC record, as stored:</p><pre>" + quoted + b"</pre></body></html>"


def phantom_member(name: str, break_it) -> bytes:
    """A good member, then one whose payload is a stored .warc.gz (level 0, verbatim), damaged by
    `break_it(member, stored)`, then the good page: the stored record must never be read."""
    stored = gzip.compress(record_bytes(f"https://phantom.example/{name}", article(f"phantom {name}")))
    record = record_bytes(f"https://{name}.example/page", b"<p>" + b"a page that links a file " * 200 + b"</p>" + stored,
                          "application/gzip")
    return (record_bytes(f"https://{name}.example/before", article(f"{name} before"), gzipped=True)
            + break_it(member_storing(record, stored), stored) + good_after(name, True))


def unknown_length(name: str, length: bytes | None) -> bytes:
    """An uncompressed record (with its WARC-Block-Digest) quoting a record, its Content-Length
    replaced by `length` (None: removed), then the good page."""
    return with_content_length(record_bytes(f"https://{name}.example/page", quoting(name)), length) + good_after(name)


def arc_bad_length(name: str, length: bytes) -> bytes:
    """An ARC file: a page, a page quoting an ARC record whose length field is `length`, the good page."""
    quoted = arc_record(f"https://phantom.example/{name}", article(f"phantom {name}"))
    return (ARC_FILE_HEADER + arc_record(f"https://{name}.example/before", article(f"{name} before"))
            + arc_record(f"https://{name}.example/page", b"<html><body><pre>" + quoted + b"</pre></body></html>", length)
            + arc_record(f"https://after.example/{name}", article(f"the {name} case")))


def target_uri(name: str, uri: str) -> bytes:
    return http_response(uri, article(f"no url {name}")) + good_after(name)


@dataclass(frozen=True)
class Case:
    """One kind of hostile input: a file, what each hostile page must end as, and the good page after it."""

    kind: str
    file_name: str
    data: Callable[[], bytes] | None  # the file's bytes; None: a path that does not exist when the job runs
    pages: dict[str, set[str]] = field(default_factory=dict)  # url -> acceptable outcomes (rules, or DOCUMENT)
    file_rules: Counter | None = None  # every reject rule of the file, when exact
    good_page: bool = True  # a good page follows (the data builder appends it)
    detail: dict[str, str] = field(default_factory=dict)  # url -> text its reject's detail must contain


def page_case(kind: str, name: str, payload: Callable[[], bytes], content_type: str, outcomes: set[str], **extra) -> Case:
    """A single hostile page (warcio writes the record), then the good page."""
    url = f"https://{name}.example/page"
    return Case(kind, f"{name}.warc.gz", lambda: record_bytes(url, payload(), content_type, True) + good_after(name, True),
                pages={url: outcomes}, **extra)


def raw_case(kind: str, name: str, record: Callable[[str], bytes], outcomes: set[str], **extra) -> Case:
    """A single hostile record written byte for byte (plain WARC), then the good page."""
    url = f"https://{name}.example/page"
    return Case(kind, f"{name}.warc", lambda: record(url) + good_after(name), pages={url: outcomes}, **extra)


def file_case(kind: str, name: str, data: Callable[[], bytes], rules: Counter, **extra) -> Case:
    return Case(kind, name, data, file_rules=rules, good_page=False, **extra)


SAID_UTF8 = f"<html><body><article><p>{CHINESE}</p></article></body></html>".encode("gbk")
def utf16_page(how: str) -> str:
    """An English page for a UTF-16 case, its text its own (exact dedup would keep one of equal pages)."""
    return f"<html><body><article><p>{f'An English page stored as UTF-16, {how}. ' * 30}</p></article></body></html>"

PHANTOM = {"missing"}  # the quoted record: neither a document nor a reject
BINARIES = {
    "pdf": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n" * 50,
    "png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20,
    "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 20,
    "random": bytes((i * 7919) % 256 for i in range(20_000)),
}
TOO_LARGE, TIMEOUT, EMPTY = {"html_too_large"}, {"extract_timeout"}, {"empty_extraction"}
READ_ERROR = Counter({"warc_read_error": 1})

CASES = [
    # The WARC container.
    Case("gzip cut inside a record", "truncated.warc.gz", truncated,
         pages={"https://cut.example/0": {DOCUMENT}, "https://cut.example/1": {DOCUMENT}}, file_rules=READ_ERROR,
         good_page=False),
    Case("garbage bytes between records", "garbage-between.warc",
         lambda: record_bytes("https://garbage.example/before", article("garbage before"))
         + b"\x00\xff\xfegarbage that is no record\r\n\x07\x08" * 20 + good_after("garbage-between"),
         pages={"https://garbage.example/before": {DOCUMENT}}, file_rules=READ_ERROR),
    Case("Content-Length larger than the file", "lying-length.warc", lying_length,
         pages={"https://lying.example/ok": {DOCUMENT}, "https://lying.example/long": {"warc_read_error"}},
         file_rules=READ_ERROR, good_page=False),
    Case("a gzip member with corrupt bytes inside", "corrupt-member.warc.gz", corrupt_member,
         pages={"https://crc.example/0": {DOCUMENT}, "https://crc.example/2": {DOCUMENT}}, file_rules=READ_ERROR,
         good_page=False),
    # The phantom record (issue 26, finding 9): a record quoted inside a broken one is never read.
    Case("a gzip member with a wrong checksum, its payload a stored .warc.gz", "crc-stored.warc.gz",
         lambda: phantom_member("crc-stored", lambda member, stored: with_bad_checksum(member)),
         pages={"https://phantom.example/crc-stored": PHANTOM, "https://crc-stored.example/before": {DOCUMENT}},
         file_rules=READ_ERROR),
    Case("a gzip member whose stored block header broke, before a stored .warc.gz", "broken-stored.warc.gz",
         lambda: phantom_member("broken-stored", broken_stored_block),
         pages={"https://phantom.example/broken-stored": PHANTOM, "https://broken-stored.example/before": {DOCUMENT}},
         file_rules=READ_ERROR),
    Case("an uncompressed record whose Content-Length is not a number, quoting a record", "length-nan.warc",
         lambda: unknown_length("length-nan", b"12abc"),
         pages={"https://phantom.example/length-nan": PHANTOM, "https://length-nan.example/page": {"warc_read_error"}},
         file_rules=READ_ERROR, detail={"https://length-nan.example/page": "not a byte count"}),
    Case("an uncompressed record without a Content-Length, quoting a record", "no-length.warc",
         lambda: unknown_length("no-length", None),
         pages={"https://phantom.example/no-length": PHANTOM, "https://no-length.example/page": {"warc_read_error"}},
         file_rules=READ_ERROR),
    Case("an ARC record whose length is not a number, quoting an ARC record", "arc-length-nan.arc",
         lambda: arc_bad_length("arc-length-nan", b"abc"),
         pages={"https://phantom.example/arc-length-nan": PHANTOM, "https://arc-length-nan.example/before": {DOCUMENT}},
         file_rules=READ_ERROR),
    Case("an ARC record whose length runs past the end of the file", "arc-length-long.arc",
         lambda: arc_bad_length("arc-length-long", b"99999999"),
         pages={"https://phantom.example/arc-length-long": PHANTOM, "https://arc-length-long.example/before": {DOCUMENT}},
         file_rules=READ_ERROR),
    Case("an empty WARC-Target-URI", "empty-uri.warc", lambda: target_uri("empty-uri", ""),
         file_rules=Counter({"no_target_uri": 1})),
    Case("a `<>` WARC-Target-URI", "angle-uri.warc", lambda: target_uri("angle-uri", "<>"),
         file_rules=Counter({"no_target_uri": 1})),
    Case("no WARC-Target-URI header", "no-uri.warc", lambda: target_uri("no-uri", "https://x.example/").replace(
        b"WARC-Target-URI: https://x.example/\r\n", b""), file_rules=Counter({"no_target_uri": 1})),
    file_case("empty file", "empty.warc", lambda: b"", Counter()),
    file_case("empty gzip stream", "empty.warc.gz", lambda: gzip.compress(b""), Counter()),
    file_case("gzip text that is no WARC", "not-a-warc.warc.gz", lambda: gzip.compress(b"Just notes, one a line.\n" * 100),
              READ_ERROR),
    file_case("a PNG named .warc", "png-named.warc", lambda: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, READ_ERROR),
    file_case("a file gone when its task opens it", "vanished.warc.gz", None, Counter({"warc_unreadable": 1})),
    Case("an input name full of `..`", "..%2F..%2Fescape...warc",
         lambda: record_bytes("https://dots.example/page", article("dots")), pages={"https://dots.example/page": {DOCUMENT}},
         good_page=False),
    raw_case("a 1 MB HTTP header line", "long-header", lambda url: http_response(
        url, article("long header"), [("Content-Type", "text/html"), ("X-Junk", "j" * 1_000_000)]), {DOCUMENT}),
    raw_case("HTTP status 200 with garbage header lines", "garbage-http-headers", lambda url: http_response(
        url, article("garbage headers"), raw_http_headers=b"Content-Type: text/html\r\n\x00\xff\xfe: \x01\x02\r\n"
        b"no colon at all\r\n: empty name\r\n" + b"X-A: b\r\n" * 2000), {DOCUMENT}),
    raw_case("an unparseable HTTP status line", "bad-status", lambda url: http_response(
        url, article("bad status"), status_line=b"HTTP/1.1 abc what"), {"http_status:unparsed"}),
    # The payload's framing and encoding.
    raw_case("deflate bomb: one 5 MB chunk inflating to 5 GB", "bomb-deflate-chunk", lambda url: bomb(
        url, chunked(deflate_bomb(BOMB_BYTES)), [("Content-Encoding", "deflate"), ("Transfer-Encoding", "chunked")]),
        TOO_LARGE),
    raw_case("gzip bomb: 5 MB inflating to 5 GB", "bomb-gzip", lambda url: bomb(
        url, deflate_bomb(BOMB_BYTES, 31), [("Content-Encoding", "gzip")]), TOO_LARGE),
    raw_case("gzip in gzip bomb: 13 KB -> 5 MB -> 5 GB", "bomb-gzip-gzip", lambda url: bomb(
        url, zlib.compress(deflate_bomb(BOMB_BYTES, 31), 9, wbits=31), [("Content-Encoding", "gzip, gzip")]), TOO_LARGE),
    raw_case("gzip in gzip, a real page", "gzip-in-gzip", lambda url: bomb(
        url, zlib.compress(zlib.compress(article("nested gzip"), wbits=31), wbits=31),
        [("Content-Encoding", "gzip, gzip")]), {DOCUMENT}),
    raw_case("Transfer-Encoding chunked on a body that is not chunked", "mislabelled-chunked", lambda url: bomb(
        url, article("mislabelled chunks"), [("Transfer-Encoding", "chunked")]), {DOCUMENT}),
    raw_case("Content-Encoding gzip on a plain body", "mislabelled-gzip", lambda url: bomb(
        url, article("mislabelled gzip"), [("Content-Encoding", "gzip")]), {DOCUMENT}),
    raw_case("Content-Encoding br on bytes that are no brotli data", "brotli", lambda url: bomb(
        url, b"\x1b\x03\x00\xf8\x05\x00" + bytes((i * 31) % 256 for i in range(4000)), [("Content-Encoding", "br")]),
        {"content_encoding_not_decoded"}, detail={"https://brotli.example/page": "not br data"}),
    raw_case("Content-Encoding br, a real page", "brotli-page", lambda url: bomb(
        url, brotli.compress(article("brotli")), [("Content-Encoding", "br")]), {DOCUMENT}),
    raw_case("Content-Encoding zstd, a real page in small chunks", "zstd-page", lambda url: bomb(
        url, chunked(zstandard.ZstdCompressor().compress(article("zstd")), 50),
        [("Content-Encoding", "zstd"), ("Transfer-Encoding", "chunked")]), {DOCUMENT}),
    raw_case("brotli bomb: 1 MB inflating to 5 GB", "bomb-brotli", lambda url: bomb(
        url, brotli_bomb(BOMB_BYTES), [("Content-Encoding", "br")]), TOO_LARGE),
    raw_case("zstd bomb: 160 KB inflating to 5 GB", "bomb-zstd", lambda url: bomb(
        url, zstd_bomb(BOMB_BYTES), [("Content-Encoding", "zstd")]), TOO_LARGE),
    raw_case("Content-Encoding compress (not decoded)", "compress", lambda url: bomb(
        url, b"\x1f\x9d\x90" + bytes((i * 31) % 256 for i in range(4000)), [("Content-Encoding", "compress")]),
        {"content_encoding_not_decoded"}, detail={"https://compress.example/page": "'compress'"}),
    raw_case("a zstd frame asking for a 128 MiB window", "zstd-window", lambda url: bomb(
        url, huge_window_zstd(article("zstd window")), [("Content-Encoding", "zstd")]), {"content_encoding_not_decoded"},
        detail={"https://zstd-window.example/page": "too much memory"}),
    raw_case("a chunk longer than its size line", "long-chunk", lambda url: bomb(
        url, chunked(article("long chunk"), 100).replace(b"64\r\n", b"20\r\n", 1), [("Transfer-Encoding", "chunked")]),
        {"chunked_encoding_error"}),
    raw_case("a chunk-size line broken after the first chunk", "broken-chunk", lambda url: bomb(
        url, chunked(article("broken chunk"), 100).replace(b"\r\n64\r\n", b"\r\nzz\r\n", 1),
        [("Transfer-Encoding", "chunked")]), {"chunked_encoding_error"},
        detail={"https://broken-chunk.example/page": "b'zz"}),
    raw_case("a gzip body cut short", "cut-gzip-body", lambda url: bomb(
        url, zlib.compress(article("cut body") * 20, wbits=31)[:300], [("Content-Encoding", "gzip")]),
        {DOCUMENT, "empty_extraction"}),
    page_case("zero-length payload", "empty-payload", lambda: b"", "text/html", EMPTY),
    Case("a 50 MB page", "huge-page.warc.gz", lambda: huge_page_gz() + good_after("huge-page", True),
         pages={"https://huge.example/page": TOO_LARGE}),
    page_case("a 10 MB single line", "long-line",
              lambda: b"<html><body><p>" + b"word " * 2_000_000 + b"</p></body></html>", "text/html", TOO_LARGE),
    page_case("a 4.5 MB single line under the bound", "long-line-under",
              lambda: b"<html><body><article><p>" + b"The river runs past the old mill by the bridge. " * 92_000
              + b"</p></article></body></html>", "text/html", {DOCUMENT, "extract_timeout"}),
    # Binary payloads declared text/html.
    *[page_case(f"{kind} declared text/html", f"binary-{kind}", lambda data=data: data, "text/html", {"binary_payload"})
      for kind, data in BINARIES.items()],
    page_case("NUL bytes sprinkled through HTML", "nul-bytes",
              lambda: article("nul bytes").replace(b". ", b".\x00 "), "text/html", {DOCUMENT}),
    # Charsets.
    page_case("GBK page declared UTF-8", "gbk-said-utf8", lambda: SAID_UTF8, "text/html; charset=utf-8", {DOCUMENT}),
    Case("charset naming a bytes codec in the HTTP header", "codec-http.warc.gz", lambda: codec_pages("http")
         + good_after("codec-http"), pages={f"https://codec-http.example/{c}": {DOCUMENT} for c in BYTES_CODECS}),
    Case("charset naming a bytes codec in <meta>", "codec-meta.warc.gz", lambda: codec_pages("meta")
         + good_after("codec-meta"), pages={f"https://codec-meta.example/{c}": {DOCUMENT} for c in BYTES_CODECS}),
    page_case("a 1,000-character charset name", "absurd-charset", lambda: article("absurd charset").replace(
        b"<head>", b"<head><meta charset='" + b"x" * 1000 + b"'>"), "text/html; charset=" + "y" * 1000, {DOCUMENT}),
    page_case("UTF-16 without a byte-order mark, undeclared", "utf16-no-bom", lambda: utf16_page("undeclared").encode("utf-16-le"),
              "text/html", {DOCUMENT}),
    page_case("UTF-16BE without a byte-order mark, declared latin-1", "utf16be-no-bom", lambda: utf16_page("big-endian").encode("utf-16-be"),
              "text/html; charset=iso-8859-1", {DOCUMENT}),
    page_case("UTF-16 without a byte-order mark, declared", "utf16-declared", lambda: utf16_page("declared").encode("utf-16-le"),
              "text/html; charset=utf-16le", {DOCUMENT}),
    page_case("mixed encodings: UTF-8 and GBK halves", "mixed-encodings",
              lambda: b"<html><body><article><p>" + ("Caf\u00e9 society and its history. " * 30).encode()
              + CHINESE.encode("gbk") + b"</p></article></body></html>", "text/html", {DOCUMENT}),
    # What the parser and extractor are slow or fragile in.
    page_case("nesting 100,000 deep", "deep-nesting",
              lambda: b"<html><body>" + b"<div>" * NESTING_DEPTH + b"<p>deep text</p>" + b"</div>" * NESTING_DEPTH + b"</body></html>",
              "text/html", {"html_too_deep"}, detail={"https://deep-nesting.example/page": "nested over 256 deep"}),
    page_case("one tag with 300,000 attributes", "attributes-300k", lambda: attributes_tag(300_000), "text/html", TIMEOUT,
              detail={"https://attributes-300k.example/page": "300000 attributes"}),
    page_case("one tag with 100,000 attributes", "attributes-100k", lambda: attributes_tag(100_000), "text/html", TIMEOUT),
    page_case("1,000 tags of 999 attributes (a parser stall no signal stops)", "parser-stall", parser_stall,
              "text/html", TIMEOUT),
    page_case("a page of only scripts", "only-scripts",
              lambda: b"<html><head>" + b"<script>var x = 'no text here';</script>" * 2000 + b"</head><body></body></html>",
              "text/html", EMPTY),
    page_case("200,000 unclosed tags", "unclosed-tags", lambda: b"<html><body>" + b"<b><i>bold " * 100_000 + b"</body></html>",
              "text/html", {DOCUMENT, "empty_extraction", "extract_error", "extract_timeout", "lang_low_score"}),
]


def test_the_suite_has_at_least_60_kinds():
    kinds = [case.kind for case in CASES]
    assert len(kinds) == len(set(kinds)) >= 60
    assert len({case.file_name for case in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def hostile(spark, tmp_path_factory):
    """Every case's file, one Spark run over them all; what came out, by url and by file."""
    root = tmp_path_factory.mktemp("hostile")
    inputs_dir = root / "inputs"
    inputs_dir.mkdir()
    paths = {}
    for case in CASES:
        if case.data is None:
            paths[case.kind] = f"memory://hostile/{case.file_name}"
            continue
        paths[case.kind] = str(inputs_dir / case.file_name)
        with open(paths[case.kind], "wb") as handle:
            handle.write(case.data())

    output = root / "out" / "prepare"
    before = set(root.rglob("*"))
    config = load_config(None, {"prepare.extract_timeout_s": TIMEOUT_S})
    stats = run_prepare(spark, list(paths.values()), str(output), config)
    created = set(root.rglob("*")) - before
    rejects = spark.read.parquet(str(output / "rejects")).select("url", "warc_path", "rule", "detail").collect()
    documents = spark.read.parquet(str(output / "documents")).select("url", "lang").collect()
    return {
        "output": output, "stats": stats, "created": created, "paths": paths,
        "rejects": {r.url: r for r in rejects if r.url},
        "rules_by_file": {p: Counter(r.rule for r in rejects if r.warc_path == p) for p in paths.values()},
        "documents": {r.url: r.lang for r in documents},
    }


@pytest.mark.parametrize("case", CASES, ids=[case.kind for case in CASES])
def test_each_hostile_input_ends_as_counted_rejects_and_the_good_page_after_it_as_a_document(hostile, case):
    for url, outcomes in case.pages.items():
        outcome = DOCUMENT if url in hostile["documents"] else (hostile["rejects"][url].rule
                                                                if url in hostile["rejects"] else "missing")
        assert outcome in outcomes, (case.kind, url, outcome, hostile["rejects"].get(url))
    for url, text in case.detail.items():
        assert text in hostile["rejects"][url].detail, (case.kind, hostile["rejects"][url].detail)
    if case.file_rules is not None:
        assert hostile["rules_by_file"][hostile["paths"][case.kind]] == case.file_rules, case.kind
    if case.good_page:
        name = case.file_name.split(".")[0]
        assert f"https://after.example/{name}" in hostile["documents"], (case.kind, hostile["rules_by_file"])


def test_the_job_finishes_its_stats_add_up_and_no_file_runs_past_the_time_bound(hostile):
    stats = hostile["stats"]
    assert (hostile["output"] / COMMITTED_MARKER).is_file()
    assert stats["documents_in"] == stats["documents_out"] + sum(stats["rejects_by_rule"].values())
    assert stats["details"]["files_in"] == len(CASES) and stats["details"]["records_by_kind"]["unreadable"] == 1
    # Each file holds at most one page that can stall; the rest of its pages take milliseconds.
    assert stats["details"]["timings"]["tasks_wall_max_s"] < TIMEOUT_S + KILL_GRACE_S + SLACK_S
    # trafilatura, lid.176 and one page: the 5 GB bombs add nothing (the 50 MB page is read 5 MB at most)
    assert stats["details"]["worker_max_rss_mb"] < 1500 and 0 < stats["details"]["extract_process_max_rss_mb"] < 1500


def test_input_names_never_become_paths_outside_the_output(hostile):
    output = hostile["output"]
    assert all(output in path.parents or path == output or path in output.parents for path in hostile["created"])


def test_config_and_path_errors_come_before_any_work(spark, tmp_path):
    good = str(tmp_path / "one.warc")
    with open(good, "wb") as handle:
        handle.write(record_bytes("https://one.example/", article("one")))
    bad_configs = {
        "prepare.max_html_bytes": 0, "prepare.lang_threshold": 1.5, "prepare.extract_timeout_s": -1,
        "prepare.files_per_batch": -2, "prepare.lid_model_path": "no/such/model.ftz",
    }
    for key, value in bad_configs.items():
        with pytest.raises(ConfigError, match=key):
            run_prepare(spark, [good], str(tmp_path / "out"), load_config(None, {key: value}))
    # Values that passed validation and then failed every page (OverflowError in the time bound).
    for value in (float("inf"), 1e10, float("nan")):
        with pytest.raises(ConfigError, match="prepare.extract_timeout_s"):
            load_config(None, {"prepare.extract_timeout_s": value})
    with pytest.raises(ConfigError, match="prepare.no_such_key"):
        load_config(None, {"prepare.no_such_key": 1})
    (tmp_path / "empty-dir").mkdir()
    errors = {str(tmp_path / "missing.warc.gz"): "does not exist", str(tmp_path / "empty-dir"): "holds no",
              str(tmp_path / "nothing-*.warc.gz"): "matches no file"}
    for path, message in errors.items():
        with pytest.raises(InputError, match=message):
            run_prepare(spark, [path], str(tmp_path / "out"), load_config())
    assert not (tmp_path / "out").exists()
