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
