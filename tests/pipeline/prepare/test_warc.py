import gzip
import io
import zlib
from collections import Counter

import pytest
from hostile_inputs import (
    ARC_FILE_HEADER,
    MIB,
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

from thresher.pipeline.prepare.warc import GzipMembers, ReadError, WarcRecord, iter_records, parse_content_type


def read_all(path, max_payload_bytes=5_000_000, **kwargs):
    with open(path, "rb") as handle:
        return list(iter_records(handle, max_payload_bytes, **kwargs))


def records_of(events):
    return [e for e in events if isinstance(e, WarcRecord)]


def errors_of(events):
    return [e for e in events if isinstance(e, ReadError)]


def test_parse_content_type():
    assert parse_content_type('text/html; charset="GBK"') == ("text/html", "gbk")
    assert parse_content_type("TEXT/HTML") == ("text/html", "")
    assert parse_content_type(None) == ("", "")


def test_common_crawl_warc_kinds_and_payloads(shared_data):
    events = read_all(shared_data / "warc/cc-main-2020-34-sample.warc.gz")
    assert not errors_of(events)
    kinds = Counter(r.kind for r in records_of(events))
    assert kinds == {"warcinfo": 1, "request": 17, "response": 16, "metadata": 16}
    responses = [r for r in records_of(events) if r.kind == "response"]
    assert all(r.http_status == 200 and r.is_html and r.payload for r in responses)
    assert all(r.url.startswith("http") and r.record_id.startswith("urn:uuid:") for r in responses)
    # Only content records carry payloads.
    assert all(r.payload is None for r in records_of(events) if r.kind != "response")
    offsets = [r.offset for r in records_of(events)]
    assert offsets == sorted(set(offsets))


def test_warc_0_18_clueweb_reads_every_record(shared_data):
    # Whole-file gzip and records without the two trailing blank lines: warcio alone stops after one.
    for name, pages in (("clueweb09-en-bad-date.warc.gz", 23), ("clueweb09-ja-eucjp.warc.gz", 29)):
        events = read_all(shared_data / "warc" / name)
        assert not errors_of(events), name
        responses = [r for r in records_of(events) if r.kind == "response"]
        assert len(responses) == pages, name
        assert all(r.payload and r.http_status == 200 for r in responses)
    ja = [r for r in records_of(read_all(shared_data / "warc/clueweb09-ja-eucjp.warc.gz")) if r.kind == "response"]
    assert {r.charset for r in ja} == {"euc-jp"}


def test_arc_file_reads_as_response(shared_data):
    records = records_of(read_all(shared_data / "warc/warcio-example.arc.gz"))
    response = [r for r in records if r.kind == "response"]
    assert len(response) == 1 and response[0].url == "http://example.com/"
    assert b"Example Domain" in response[0].payload


def test_chunked_transfer_encoding_is_decoded(shared_data):
    response = [r for r in records_of(read_all(shared_data / "warc/warcio-chunked.warc")) if r.kind == "response"][0]
    assert response.payload.lstrip().lower().startswith(b"<!doctype html")
    assert response.payload.rstrip().endswith(b"</html>")


def test_wget_angle_bracket_uris_and_resource_records(shared_data):
    records = records_of(read_all(shared_data / "warc/wget-sample-0000.warc.gz"))
    responses = [r for r in records if r.kind == "response"]
    assert len(responses) == 22
    assert all(r.url.startswith("https://") and not r.url.endswith(">") for r in responses)
    resources = [r for r in records if r.kind == "resource"]
    assert len(resources) == 2 and all(r.mime_type == "text/plain" for r in resources)


def test_revisit_and_wet_conversion(shared_data):
    kinds = Counter(r.kind for r in records_of(read_all(shared_data / "warc/warcio-example.warc.gz")))
    assert kinds["revisit"] == 1 and kinds["response"] == 1
    wet = [r for r in records_of(read_all(shared_data / "warc/cc-main-2024-22-one-page.warc.wet.gz")) if r.kind == "conversion"]
    assert len(wet) == 1 and wet[0].url.startswith("https://an.wikipedia.org/") and len(wet[0].payload) > 1000


def test_http_headers_parsed_for_non_http_target_uris(shared_data):
    # Seven records of this file have URIs like "hard::pcgamer.com..."; warcio leaves their headers unparsed.
    responses = [r for r in records_of(read_all(shared_data / "crawl/pages-00002.warc.gz")) if r.kind == "response"]
    assert len(responses) == 110
    assert all(r.http_status == 200 and r.is_html for r in responses)
    odd = [r for r in responses if not r.url.startswith("http")]
    assert len(odd) == 7 and all(not r.payload.startswith(b"HTTP/") for r in odd)


def test_truncated_gzip_is_an_error_event_not_an_exception(shared_data):
    events = read_all(shared_data / "warc/truncated.warc.gz")
    assert records_of(events) == []
    (error,) = errors_of(events)
    assert "truncated" in error.message and error.url.startswith("http://www.houstonpress.com/")


def test_records_before_a_cut_are_kept(shared_data, tmp_path):
    data = (shared_data / "crawl/pages-00000.warc.gz").read_bytes()
    whole = records_of(read_all(shared_data / "crawl/pages-00000.warc.gz"))
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(data[: len(data) // 2])
    events = read_all(cut)
    before = records_of(events)
    assert 10 < len(before) < len(whole)
    assert [(r.url, r.payload) for r in before] == [(r.url, r.payload) for r in whole[: len(before)]]
    assert len(errors_of(events)) == 1 and events[-1] == errors_of(events)[0]


def test_uncompressed_record_cut_short_is_an_error(shared_data, tmp_path):
    data = (shared_data / "warc/warcio-chunked.warc").read_bytes()
    cut = tmp_path / "cut.warc"
    cut.write_bytes(data[: data.index(b"</html>")])
    events = read_all(cut)
    assert [r.kind for r in records_of(events)] == ["warcinfo"]
    assert len(errors_of(events)) == 1


def test_payload_is_bounded(shared_data):
    responses = [r for r in records_of(read_all(shared_data / "crawl/pages-00000.warc.gz", max_payload_bytes=1000)) if r.kind == "response"]
    assert all(len(r.payload) <= 1000 for r in responses)
    assert all(r.payload_truncated for r in responses)


def test_want_payload_skips_reading(shared_data):
    events = read_all(shared_data / "warc/cc-main-2020-34-sample.warc.gz", want_payload=lambda header: False)
    assert all(r.payload is None for r in records_of(events))


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_gzip_members_reads_concatenated_and_single_members(chunk):
    parts = [b"alpha " * 1000, b"beta " * 10, b"", b"gamma"]
    multi = b"".join(gzip.compress(p) for p in parts)
    for blob, expected in ((multi, b"".join(parts)), (gzip.compress(b"".join(parts)), b"".join(parts))):
        stream = GzipMembers(io.BytesIO(blob))
        out = b""
        while piece := stream.read(chunk):
            out += piece
        assert out == expected and stream.tell() == len(expected)


def test_untyped_payloads_are_sniffed(tmp_path):
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    path = tmp_path / "untyped.warc.gz"
    with open(path, "wb") as handle:
        writer = WARCWriter(handle, gzip=True)
        for url, body in (("https://e.com/page", b"<!DOCTYPE html><html><body>hi</body></html>"),
                          ("https://e.com/blob", b"\x00\x01binary")):
            http = StatusAndHeaders("200 OK", [("Content-Length", str(len(body)))], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http))
    page, blob = records_of(read_all(path))
    assert page.is_html and page.payload.startswith(b"<!DOCTYPE")
    assert not blob.is_html and blob.mime_type == ""


def gzip_members(data):
    """The gzip members of `data`, as bytes each."""
    members, position = [], 0
    while position < len(data):
        decompressor = zlib.decompressobj(31)
        decompressor.decompress(data[position:])
        end = len(data) - len(decompressor.unused_data)
        members.append(data[position:end])
        position = end
    return members


class Unseekable(io.RawIOBase):
    def __init__(self, data):
        self._stream = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, buffer):
        return self._stream.readinto(buffer)


@pytest.fixture(scope="module")
def cc_members(shared_data):
    members = gzip_members((shared_data / "warc/cc-main-2020-34-sample.warc.gz").read_bytes())
    assert len(members) == 50  # one gzip member per record, as Common Crawl writes them
    return members


def urls_and_kinds(events):
    return [(r.url, r.kind) for r in records_of(events)]


def test_a_corrupt_gzip_member_costs_its_record_only(cc_members):
    clean = records_of(list(iter_records(io.BytesIO(b"".join(cc_members)), 5_000_000)))
    damaged = bytearray(cc_members[10])
    damaged[len(damaged) // 2 : len(damaged) // 2 + 64] = b"\xff" * 64  # inside the deflate data
    data = b"".join(cc_members[:10]) + bytes(damaged) + b"".join(cc_members[11:])
    events = list(iter_records(io.BytesIO(data), 5_000_000))
    assert len(errors_of(events)) == 1
    assert urls_and_kinds(events) == urls_and_kinds(clean[:10] + clean[11:])
    offsets = [r.offset for r in records_of(events)]
    assert offsets == sorted(set(offsets)) and offsets[:10] == [r.offset for r in clean[:10]]
    assert [(e.offset, e.message) for e in errors_of(events)] == [
        (e.offset, e.message) for e in errors_of(iter_records(io.BytesIO(data), 5_000_000))]  # same every read
    assert [r.offset for r in records_of(iter_records(io.BytesIO(data), 5_000_000))] == offsets


def test_garbage_between_gzip_members_is_skipped(cc_members):
    garbage = b"\x1f\x8b not a member \x00\xff" * 100  # starts like a member, to be resumed from and skipped
    data = b"".join(cc_members[:20]) + garbage + b"".join(cc_members[20:])
    events = list(iter_records(io.BytesIO(data), 5_000_000))
    assert len(errors_of(events)) == 1 and len(records_of(events)) == 50
    assert events.index(errors_of(events)[0]) == 20  # reported where it is, between the records


def test_garbage_between_plain_records_is_skipped(cc_members):
    plain = [gzip.decompress(member) for member in cc_members[:6]]
    garbage = b"\x00\xffno record here\r\n" * 50
    data = b"".join(plain[:3]) + garbage + b"".join(plain[3:])
    events = list(iter_records(io.BytesIO(data), 5_000_000))
    assert len(errors_of(events)) == 1 and len(records_of(events)) == 6
    assert records_of(events)[3].offset == len(b"".join(plain[:3])) + len(garbage)  # true offsets in a plain file


def test_an_unseekable_stream_stops_at_the_first_failure(cc_members):
    data = b"".join(cc_members[:5]) + b"garbage" + b"".join(cc_members[5:])
    events = list(iter_records(io.BufferedReader(Unseekable(data)), 5_000_000))
    assert len(records_of(events)) == 5 and isinstance(events[-1], ReadError)


# ---------------------------------------------------------------- resuming only where a record starts


def warc_record(url, body, content_type="text/html"):
    """One uncompressed WARC response record, as bytes."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    out = io.BytesIO()
    writer = WARCWriter(out, gzip=False)
    http = StatusAndHeaders("200 OK", [("Content-Type", content_type)], protocol="HTTP/1.1")
    writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http))
    return out.getvalue()


PAGE = b"<html><body><p>a page</p></body></html>"
QUOTED = warc_record("http://phantom.example/quoted", PAGE)  # a record some page shows, or a stored .warc.gz holds
QUOTED_TOO = warc_record("http://phantom.example/quoted-too", PAGE)
BAD_TARGET = "not a url"  # a header that parses, naming no URL: the reader refuses the record after its header


def test_a_page_quoting_a_warc_record_is_never_read_as_a_record():
    data = (
        warc_record("http://a.example/", b"<html><body><pre>" + QUOTED + b"</pre></body></html>")
        + b"\x00\xff no record here; WARC/1.0 is a file format\r\n" * 20  # garbage, with a WARC/ that is no header
        + warc_record("http://b.example/", PAGE)
        + warc_record(BAD_TARGET, b"<html><body><pre>" + QUOTED_TOO + b"</pre></body></html>")  # broken, quoting
        + warc_record("http://d.example/", PAGE)
    )
    events = list(iter_records(io.BytesIO(data), 5_000_000))
    assert [r.url for r in records_of(events)] == ["http://a.example/", "http://b.example/", "http://d.example/"]
    assert len(errors_of(events)) == 2


def test_a_gzip_member_storing_a_warc_gz_is_never_read_as_members():
    # Level 0 (stored blocks, as some writers do): the stored .warc.gz's own members lie verbatim in the file.
    def member(record):
        return gzip.compress(record, compresslevel=0)

    stored, stored_too = gzip.compress(QUOTED), gzip.compress(QUOTED_TOO)
    members = [
        member(warc_record("http://a.example/", stored, "application/gzip")),
        b"\x1f\x8b\x08 not a member, though it starts like one" * 10,
        member(warc_record("http://b.example/", PAGE)),
        member(warc_record(BAD_TARGET, stored_too, "application/gzip")),
        member(warc_record("http://d.example/", PAGE)),
    ]
    data = b"".join(members)
    assert stored in data and stored_too in data  # the phantom members are there to be found
    events = list(iter_records(io.BytesIO(data), 5_000_000))
    assert [r.url for r in records_of(events)] == ["http://a.example/", "http://b.example/", "http://d.example/"]
    assert records_of(events)[0].payload == stored
    assert len(errors_of(events)) == 2


def test_after_a_corrupt_member_the_next_real_member_is_read_whole():
    stored = gzip.compress(QUOTED)
    damaged = bytearray(gzip.compress(warc_record("http://x.example/", PAGE * 200)))
    damaged[len(damaged) // 2 : len(damaged) // 2 + 16] = b"\xff" * 16
    data = (
        gzip.compress(warc_record("http://a.example/", PAGE))
        + bytes(damaged)
        + gzip.compress(warc_record("http://s.example/", stored, "application/gzip"), compresslevel=0)
        + gzip.compress(warc_record("http://d.example/", PAGE))
    )
    events = list(iter_records(io.BytesIO(data), 5_000_000))
    assert [r.url for r in records_of(events)] == ["http://a.example/", "http://s.example/", "http://d.example/"]
    assert len(errors_of(events)) == 1


# ---------------------------------------------------------------- the phantom record (issue 26, finding 9)

FILLER = b"<html><body><p>" + b"".join(b"line %d of a page that shows a file it links to\n" % i for i in range(3000))


@pytest.mark.parametrize("filler", [b"", FILLER], ids=["small member", "member over 64 KiB"])
@pytest.mark.parametrize("damage", ["crc", "stored byte"])
def test_a_member_with_a_wrong_checksum_ends_where_its_deflate_data_ends(filler, damage):
    # A page serving a .warc.gz, stored verbatim (level 0, as compressors store incompressible data);
    # its member's checksum fails, so zlib stops at the trailer: the quoted member must stay unread.
    record = warc_record("http://x.example/", filler + gzip.compress(QUOTED), "application/gzip")
    member = gzip.compress(record, compresslevel=0)
    if damage == "crc":
        member = with_bad_checksum(member)
    else:  # a flipped byte in the stored data: deflate goes on, the CRC fails at the end
        at = member.index(b"a file it links to") if filler else member.index(b"WARC-Type")
        member = member[:at] + bytes([member[at] ^ 1]) + member[at + 1 :]
    data = gzip.compress(warc_record("http://a.example/", PAGE)) + member + gzip.compress(warc_record("http://d.example/", PAGE))
    events = list(iter_records(io.BytesIO(data), 5_000_000))
    assert [r.url for r in records_of(events)] == ["http://a.example/", "http://d.example/"]
    assert len(errors_of(events)) == 1 and "incorrect data check" in errors_of(events)[0].message


def quoting_member(stored: bytes, filler: bytes = FILLER) -> bytes:
    """A member whose record's payload is compressed text (Huffman blocks), then `stored` verbatim."""
    return member_storing(warc_record("http://x.example/", filler + stored, "application/gzip"), stored)


def test_after_broken_deflate_data_a_stored_warc_gz_is_never_a_resume_point():
    # The stored block's own header is what broke: nothing marks where its verbatim bytes end.
    stored = gzip.compress(QUOTED) + gzip.compress(QUOTED_TOO)
    member = quoting_member(stored, FILLER[:2000])
    assert gzip.decompress(member).endswith(stored + b"\r\n\r\n")
    broken = broken_stored_block(member, stored)
    size = len(gzip.decompress(member))
    garbage = b"\x00\xff no member here \x01" * (size // 10)  # longer than the broken member could be
    short_garbage = garbage[:100]
    # The next member right after (the broken one's ISIZE says it ends there), past garbage longer
    # than the broken member can reach, or past garbage within that reach (not found: it could be inside).
    for after, found in ((b"", ["http://d.example/"]), (garbage, ["http://d.example/"]), (short_garbage, [])):
        data = gzip.compress(warc_record("http://a.example/", PAGE)) + broken + after + gzip.compress(
            warc_record("http://d.example/", PAGE))
        events = list(iter_records(io.BytesIO(data), 5_000_000))
        assert [r.url for r in records_of(events)] == ["http://a.example/", *found], len(after)
        assert len(errors_of(events)) == 1


def test_a_member_with_a_damaged_header_is_not_searched_for_members():
    # The member's first bytes are gone: no gzip header at its start, its stored .warc.gz further on.
    member = quoting_member(gzip.compress(QUOTED))
    data = gzip.compress(warc_record("http://a.example/", PAGE)) + b"\x00" * 10 + member[10:] + gzip.compress(
        warc_record("http://d.example/", PAGE))
    events = list(iter_records(io.BytesIO(data), 5_000_000))
    assert "http://phantom.example/quoted" not in [r.url for r in records_of(events)]
    assert [r.url for r in records_of(events)][0] == "http://a.example/"


UNPARSEABLE_LENGTHS = [b"12abc", b"-5", b"", None, b"99999999"]


@pytest.mark.parametrize("length", UNPARSEABLE_LENGTHS, ids=lambda v: repr(v))
def test_an_uncompressed_record_whose_length_does_not_parse_ends_where_its_digest_proves(length):
    quoting = warc_record("http://x.example/", b"<html><body><pre>" + QUOTED + b"</pre></body></html>")
    assert b"WARC-Block-Digest: sha1:" in quoting
    data = warc_record("http://a.example/", PAGE) + with_content_length(quoting, length) + warc_record("http://d.example/", PAGE)
    events = list(iter_records(io.BytesIO(data), 5_000_000))
    assert [r.url for r in records_of(events)] == ["http://a.example/", "http://d.example/"]
    assert len(errors_of(events)) == 1 and errors_of(events)[0].url == "http://x.example/"


def test_a_record_of_unknown_length_without_a_digest_ends_where_its_http_content_length_ends_it():
    body = b"<html><body><pre>" + QUOTED + b"</pre></body></html>"
    framed = http_response("http://x.example/", body, [("Content-Type", "text/html"), ("Content-Length", str(len(body)))])
    unframed = http_response("http://y.example/", body, [("Content-Type", "text/html")])
    for record, after in ((framed, ["http://d.example/"]), (unframed, [])):  # without any proof: the rest is lost
        data = warc_record("http://a.example/", PAGE) + with_content_length(record, b"oops") + warc_record(
            "http://d.example/", PAGE)
        events = list(iter_records(io.BytesIO(data), 5_000_000))
        assert [r.url for r in records_of(events)] == ["http://a.example/", *after]
        assert len(errors_of(events)) == 1


ARC_PAGE = b"<html><body><article><p>" + b"An ARC page. " * 30 + b"</p></article></body></html>"


@pytest.mark.parametrize("length", [b"abc", b"-5", b"99999999", b"10"])
@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
def test_an_arc_record_with_a_bad_length_costs_that_record_only(length, gzipped):
    parts = [ARC_FILE_HEADER, arc_record("http://a.example/", ARC_PAGE),
             arc_record("http://bad.example/", ARC_PAGE + b"<pre>" + arc_record("http://quoted.example/", ARC_PAGE) + b"</pre>",
                        length),
             arc_record("http://c.example/", ARC_PAGE)]
    data = b"".join(gzip.compress(part) for part in parts) if gzipped else b"".join(parts)
    events = list(iter_records(io.BytesIO(data), 5_000_000))
    urls = [r.url for r in records_of(events) if r.kind == "response"]
    assert urls[0] == "http://a.example/" and urls[-1] == "http://c.example/"
    assert "http://quoted.example/" not in urls and len(errors_of(events)) == 1
    bad = [r for r in records_of(events) if r.url == "http://bad.example/"]
    assert not bad or bad[0].payload != ARC_PAGE  # a record cut at its too-short length is never read whole


class EndlessGarbage(io.RawIOBase):
    """A seekable stream of text lines that never ends and holds no record (a link to a device, say)."""

    def __init__(self):
        self._position = 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, position, whence=io.SEEK_SET):
        assert whence == io.SEEK_SET
        self._position = position
        return position

    def tell(self):
        return self._position

    def readinto(self, buffer):
        line = b"no record on this line\n"
        start = self._position % len(line)
        data = (line * (len(buffer) // len(line) + 2))[start : start + len(buffer)]
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


@pytest.mark.timeout(60)
def test_the_search_for_a_resume_point_is_bounded():
    events = list(iter_records(io.BufferedReader(EndlessGarbage()), 5_000_000, max_scan_bytes=1 << 20))
    assert records_of(events) == [] and len(errors_of(events)) == 1
    # The default bound ends an endless stream too.
    events = list(iter_records(io.BufferedReader(EndlessGarbage()), 5_000_000))
    assert records_of(events) == [] and len(errors_of(events)) == 1


BOMB_BYTES = 5 * 1024 * MIB  # each bomb inflates to 5 GB


def bombs() -> dict[str, bytes]:
    """HTTP responses whose few MB of payload inflate to gigabytes, framed every way HTTP allows."""
    one_chunk = deflate_bomb(BOMB_BYTES)  # ~5 MB
    return {
        "deflate-one-chunk": http_response("https://bomb.example/deflate-chunk", chunked(one_chunk),
                                           [("Content-Type", "text/html"), ("Content-Encoding", "deflate"),
                                            ("Transfer-Encoding", "chunked")]),
        "gzip-plain": http_response("https://bomb.example/gzip", deflate_bomb(BOMB_BYTES, 31),
                                    [("Content-Type", "text/html"), ("Content-Encoding", "gzip")]),
        "deflate-small-chunks": http_response("https://bomb.example/deflate-chunks", chunked(one_chunk, 4096),
                                              [("Content-Type", "text/html"), ("Content-Encoding", "deflate"),
                                               ("Transfer-Encoding", "chunked")]),
        # 5 GB -> 5 MB -> a few KB: a gzip of a gzip bomb, declared as such.
        "gzip-in-gzip": http_response("https://bomb.example/gzip-gzip",
                                      zlib.compress(deflate_bomb(BOMB_BYTES, 31), 9, wbits=31),
                                      [("Content-Type", "text/html"), ("Content-Encoding", "gzip, gzip")]),
        "brotli": http_response("https://bomb.example/br", brotli_bomb(BOMB_BYTES),
                                [("Content-Type", "text/html"), ("Content-Encoding", "br")]),
        "zstd-small-chunks": http_response("https://bomb.example/zstd", chunked(zstd_bomb(BOMB_BYTES), 4096),
                                           [("Content-Type", "text/html"), ("Content-Encoding", "zstd"),
                                            ("Transfer-Encoding", "chunked")]),
    }


GOOD_PAGE = b"<html><body><article><p>" + b"A good page after the bomb. " * 20 + b"</p></article></body></html>"

# Reads the WARC files named on the command line in a fresh process and prints, per file, the first
# record's (url, truncated, payload length), the next record's url, and the growth of peak RSS in MB.
# Address space is capped 2 GB above the start, so a reader that inflates a bomb fails fast
# (MemoryError) instead of taking the machine down.
_MEASURE = r"""
import json, resource, sys
from thresher.pipeline.prepare.warc import WarcRecord, iter_records
def vm_bytes():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + (2 << 30), resource.RLIM_INFINITY))
out = {}
for path in sys.argv[1:]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(path, "rb") as handle:
        events = list(iter_records(handle, 5_000_000))
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    records = [e for e in events if isinstance(e, WarcRecord)]
    out[path] = {"first": [records[0].url, records[0].payload_truncated, len(records[0].payload or b"")] if records else None,
                 "next": records[1].url if len(records) > 1 else None, "errors": [e.message for e in events if e not in records],
                 "rss_growth_mb": grown}
    del events, records
print(json.dumps(out))
"""


def test_decompression_bombs_stop_at_the_bound_on_decoded_bytes_in_bounded_memory(tmp_path):
    import json
    import os
    import subprocess
    import sys

    paths = {}
    for name, record in bombs().items():
        paths[name] = tmp_path / f"{name}.warc"
        paths[name].write_bytes(record + http_response(f"https://after.example/{name}", GOOD_PAGE))
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-c", _MEASURE, *map(str, paths.values())], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHONPATH": repo})
    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(result.stdout)
    for name, path in paths.items():
        got = measured[str(path)]
        assert got["errors"] == [] and got["first"][1:] == [True, 5_000_000], (name, got)
        assert got["next"] == f"https://after.example/{name}", name
        assert got["rss_growth_mb"] < 300, (name, got["rss_growth_mb"])  # 5 GB inflated, at most one page held


def test_chunked_and_content_encoded_payloads_decode_as_before(tmp_path):
    page = GOOD_PAGE * 50
    variants = {
        "chunked": (chunked(page, 1000), [("Transfer-Encoding", "chunked")]),
        "gzip": (zlib.compress(page, wbits=31), [("Content-Encoding", "gzip")]),
        "zlib-deflate": (zlib.compress(page), [("Content-Encoding", "deflate")]),
        "raw-deflate": (zlib.compress(page, wbits=-15), [("Content-Encoding", "deflate")]),
        "chunked-gzip": (chunked(zlib.compress(page, wbits=31), 100), [("Content-Encoding", "gzip"),
                                                                        ("Transfer-Encoding", "chunked")]),
        "mislabelled-gzip": (page, [("Content-Encoding", "gzip")]),
        "mislabelled-chunked": (page, [("Transfer-Encoding", "chunked")]),
        "unknown-coding": (b"\x8b\x00brotli-ish", [("Content-Encoding", "br")]),
    }
    path = tmp_path / "codings.warc"
    path.write_bytes(b"".join(http_response(f"https://coding.example/{name}", body,
                                            [("Content-Type", "text/html"), *headers])
                              for name, (body, headers) in variants.items()))
    events = read_all(path)
    assert not errors_of(events)
    payloads = {r.url.rsplit("/", 1)[1]: r.payload for r in records_of(events)}
    assert {name: payloads[name] == page for name in variants if name != "unknown-coding"} == {
        name: True for name in variants if name != "unknown-coding"}
    assert payloads["unknown-coding"] == b"\x8b\x00brotli-ish"  # left as sent: binary, rejected downstream


def test_brotli_and_zstd_bodies_are_decoded_and_a_coding_left_undecoded_is_named(tmp_path):
    import brotli
    import zstandard

    page = GOOD_PAGE * 50
    decoded = {
        "br": (brotli.compress(page), [("Content-Encoding", "br")]),
        "zstd": (zstandard.ZstdCompressor().compress(page), [("Content-Encoding", "zstd")]),
        "zstd-two-frames": (zstandard.ZstdCompressor().compress(page[:1000]) + zstandard.ZstdCompressor().compress(
            page[1000:]), [("Content-Encoding", "zstd")]),
        "chunked-br": (chunked(brotli.compress(page), 7), [("Content-Encoding", "br"), ("Transfer-Encoding", "chunked")]),
        "br-in-gzip": (zlib.compress(brotli.compress(page), wbits=31), [("Content-Encoding", "br, gzip")]),
        "mislabelled-br": (page, [("Content-Encoding", "br")]),
        "mislabelled-zstd": (page, [("Content-Encoding", "zstd")]),
    }
    undecoded = {
        "compress": (b"\x1f\x9d\x90" + bytes(range(256)) * 8, [("Content-Encoding", "compress")], "'compress' is not one"),
        "garbage-br": (b"\x1b\x03\x00\xf8" + bytes((i * 31) % 256 for i in range(4000)), [("Content-Encoding", "br")],
                       "not br data"),
        "garbage-zstd": (b"\x28\xb5\x2f\xfd" + b"\xff" * 100, [("Content-Encoding", "zstd")], "not zstd data"),
        "huge-zstd-window": (huge_window_zstd(page), [("Content-Encoding", "zstd")], "too much memory"),
    }
    path = tmp_path / "codings.warc"
    path.write_bytes(b"".join(http_response(f"https://coding.example/{name}", body, [("Content-Type", "text/html"), *headers])
                              for name, (body, headers, *_) in {**decoded, **undecoded}.items()))
    events = read_all(path)
    assert not errors_of(events)
    records = {r.url.rsplit("/", 1)[1]: r for r in records_of(events)}
    assert {name: records[name].payload == page for name in decoded} == dict.fromkeys(decoded, True)
    assert [name for name in decoded if records[name].undecoded_coding] == ["mislabelled-br", "mislabelled-zstd"]
    for name, (_, _, said) in undecoded.items():
        assert said in records[name].undecoded_coding, (name, records[name].undecoded_coding)


def test_chunked_framing_that_breaks_after_a_chunk_is_noted_and_never_read_as_text(tmp_path):
    page = GOOD_PAGE * 4
    bodies = {
        "bad-size-line": b"40\r\n" + page[:64] + b"\r\nzz not a size\r\n" + page[64:] + b"\r\n0\r\n\r\n",
        "chunk-longer-than-its-size": b"40\r\n" + page[:100] + b"\r\n0\r\n\r\n",
        "cut-after-a-chunk": b"40\r\n" + page[:64] + b"\r\n",  # a capture cut short: no framing error
    }
    path = tmp_path / "chunks.warc"
    path.write_bytes(b"".join(http_response(f"https://chunks.example/{name}", body,
                                            [("Content-Type", "text/html"), ("Transfer-Encoding", "chunked")])
                              for name, body in bodies.items()))
    records = {r.url.rsplit("/", 1)[1]: r for r in records_of(read_all(path))}
    assert records["bad-size-line"].payload == page[:64] and "b'zz not a size" in records["bad-size-line"].framing_error
    assert records["chunk-longer-than-its-size"].payload == page[:64]
    assert "longer than its size line" in records["chunk-longer-than-its-size"].framing_error
    assert records["cut-after-a-chunk"].payload == page[:64] and not records["cut-after-a-chunk"].framing_error
