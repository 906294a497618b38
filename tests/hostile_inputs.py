"""Generated hostile WARC pieces shared by the WARC reader tests and the stage 1 hostile-input suite."""

from __future__ import annotations

import zlib

MIB = 1 << 20


def deflate_bomb(inflated_bytes: int, window_bits: int = -15) -> bytes:
    """A deflate stream (raw: -15, zlib: 15, gzip: 31) of `inflated_bytes` zeros, built without inflating.

    After a full flush the compressor's state is reset, so every further MiB of zeros compresses to
    the same ~1 KB: that segment is repeated instead of compressed again (5 GB -> 5 MB in a blink).
    The stream stops after the last segment, unterminated: a reader that honours a bound never gets there.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, window_bits)
    zeros = bytes(MIB)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    segment = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    return first + segment * (inflated_bytes // MIB - 1)


def chunked(body: bytes, chunk_bytes: int | None = None) -> bytes:
    """`body` in HTTP/1.1 chunked transfer coding (one chunk unless `chunk_bytes` is given)."""
    size = chunk_bytes or max(len(body), 1)
    parts = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)]
    return b"".join(parts) + b"0\r\n\r\n"


def http_response(url: str, body: bytes, headers: list[tuple[str, str]] | None = None,
                  status_line: bytes = b"HTTP/1.1 200 OK", raw_http_headers: bytes | None = None) -> bytes:
    """One uncompressed WARC response record, byte for byte as given (no writer tidies the headers)."""
    head = raw_http_headers if raw_http_headers is not None else b"".join(
        f"{key}: {value}\r\n".encode("latin-1") for key, value in (headers or [("Content-Type", "text/html")]))
    http = status_line + b"\r\n" + head + b"\r\n"
    block_length = len(http) + len(body)
    warc = (b"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: %s\r\nWARC-Date: 2024-01-01T00:00:00Z\r\n"
            b"WARC-Record-ID: <urn:uuid:%s>\r\nContent-Type: application/http; msgtype=response\r\n"
            b"Content-Length: %d\r\n\r\n") % (url.encode(), zlib.crc32(url.encode()).to_bytes(4, "big").hex().encode(),
                                             block_length)
    return warc + http + body + b"\r\n\r\n"


def brotli_bomb(inflated_bytes: int) -> bytes:
    """A brotli stream of `inflated_bytes` zeros (about 190 KB per GB), compressed a MiB at a time."""
    import brotli

    compressor = brotli.Compressor(quality=1)
    zeros = bytes(MIB)
    return b"".join(compressor.process(zeros) for _ in range(inflated_bytes // MIB)) + compressor.finish()


def zstd_bomb(inflated_bytes: int) -> bytes:
    """A zstd frame of `inflated_bytes` zeros (about 32 KB per GB), compressed a MiB at a time."""
    import zstandard

    compressor = zstandard.ZstdCompressor(level=1).compressobj()
    zeros = bytes(MIB)
    return b"".join(compressor.compress(zeros) for _ in range(inflated_bytes // MIB)) + compressor.flush()


def huge_window_zstd(data: bytes) -> bytes:
    """A zstd frame that asks the decoder for a 128 MiB window (streamed: no content size to shrink it)."""
    import zstandard

    compressor = zstandard.ZstdCompressor(compression_params=zstandard.ZstdCompressionParameters(window_log=27))
    stream = compressor.compressobj()
    return stream.compress(data) + stream.flush()


def gzip_member(*parts: tuple[bytes, int]) -> bytes:
    """One gzip member whose deflate data holds each (bytes, level) part compressed at its level, in
    order: level 0 parts lie verbatim in stored blocks, as a compressor stores incompressible data."""
    deflated = []
    for data, level in parts:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
        deflated.append(compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH))  # byte-aligned, not final
    deflated.append(zlib.compressobj(0, zlib.DEFLATED, -15).flush())  # an empty final block
    whole = b"".join(data for data, _ in parts)
    trailer = zlib.crc32(whole).to_bytes(4, "little") + (len(whole) % (1 << 32)).to_bytes(4, "little")
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + b"".join(deflated) + trailer


def member_storing(record: bytes, verbatim: bytes) -> bytes:
    """A gzip member of `record`: compressed up to `verbatim`, which lies (with the rest) in a stored block."""
    split = record.index(verbatim)
    return gzip_member((record[:split], 6), (record[split:], 0))


def with_bad_checksum(member: bytes) -> bytes:
    """A gzip member whose CRC32 trailer no longer matches its data (every data byte intact)."""
    return member[:-8] + bytes(b ^ 0xFF for b in member[-8:-4]) + member[-4:]


def broken_stored_block(member: bytes, content: bytes) -> bytes:
    """A gzip member whose stored block holding `content` has its LEN/NLEN header overwritten with
    0xFF: its deflate data breaks right before `content`, which lies verbatim after the break."""
    at = member.index(content) - 4
    return member[:at] + b"\xff" * 4 + member[at + 4 :]


def with_content_length(record: bytes, value: bytes | None) -> bytes:
    """A WARC record with its header's Content-Length set to `value` as written, or removed (None)."""
    head, separator, rest = record.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"content-length:")]
    if value is not None:
        lines.append(b"Content-Length: " + value)
    return b"\r\n".join(lines) + separator + rest


_ARC_VERSION_BLOCK = b"1 0 thresher\nURL IP-address Archive-date Content-type Archive-length\n"
ARC_FILE_HEADER = b"filedesc://hostile.arc 127.0.0.1 20240101000000 text/plain %d\n%s\n" % (
    len(_ARC_VERSION_BLOCK), _ARC_VERSION_BLOCK)


def arc_record(url: str, body: bytes, length: bytes | None = None) -> bytes:
    """One ARC (version 1) record of an HTTP response with a Content-Length; `length` as written overrides the true one."""
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    return b"%s 1.2.3.4 20240101000000 text/html %s\n%s\n" % (url.encode(), length or str(len(http)).encode(), http)
