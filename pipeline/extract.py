"""Main-content extraction (stage 1, step 3): bytes -> correctly decoded HTML -> trafilatura text.

Decoding order: a byte-order mark; strict UTF-8 (valid multi-byte UTF-8 almost never happens by
accident, and pages that declare latin-1 but are UTF-8 are common); the HTTP Content-Type charset;
the `<meta>` charset in the first 4 KB; then detection with charset_normalizer. A declared charset
whose decoding produces many U+FFFD is treated as wrong and the next candidate is tried. Legacy
Chinese and Western names map to their supersets (WHATWG encoding standard): gb2312/gbk -> gb18030,
iso-8859-1/ascii -> cp1252, big5 -> big5hkscs, shift_jis -> cp932, euc-kr -> cp949.
"""

from __future__ import annotations

import codecs
import re
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass

from pipeline.filters import Drop

_META_CHARSET = re.compile(
    rb"""<meta[^>]+?charset\s*=\s*["']?\s*([a-zA-Z0-9_\-:.]+)""",
    re.IGNORECASE,
)
_META_SCAN_BYTES = 4096
_DETECT_BYTES = 200_000  # charset_normalizer cost grows with input; this much is plenty to decide
MAX_REPLACEMENT_RATIO = 0.01  # over 1% U+FFFD after decoding: the charset is wrong
# A single-byte charset never fails to decode, so a page declared latin-1 that is really GBK would
# pass as mojibake. When that many bytes are non-ASCII, a detected multi-byte charset wins.
SUSPICIOUS_HIGH_BYTE_RATIO = 0.05
_MULTI_BYTE = frozenset({"gb18030", "big5hkscs", "cp932", "euc_jp", "cp949", "shift_jis", "euc_kr", "iso2022_jp"})

_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "latin_1": "cp1252",
    "iso8859-1": "cp1252",
    "ascii": "cp1252",
    "big5": "big5hkscs",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
}

# trafilatura's own defaults (comments kept: a forum's replies are its content), chosen on the dev
# set by cross-validation over favor_precision / favor_recall / include_comments with the clutter
# remover after it (bench/bench_extraction.py, bench/RESULTS.md "Issue 14"). FineWeb's favor_precision
# lost recall that the clutter model cannot give back. No `deduplicate`: its cache spans calls,
# which would make a page's text depend on which pages the same worker saw before.
_TRAFILATURA_OPTIONS = {"include_comments": True}


# Payloads declared text/html that are files of another kind: extracting them yields garbage text.
_BINARY_SIGNATURES = (
    (b"%PDF-", "pdf"), (b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"GIF87a", "gif"),
    (b"GIF89a", "gif"), (b"RIFF", "riff"), (b"PK\x03\x04", "zip"), (b"\x1f\x8b", "gzip"), (b"\x7fELF", "elf"),
    (b"wOFF", "woff"), (b"wOF2", "woff2"), (b"OggS", "ogg"), (b"\x00\x00\x01\x00", "ico"), (b"7z\xbc\xaf", "7z"),
)
# C0 control bytes other than tab, newlines, form feed and escape (ISO-2022 uses it) almost never
# occur in text; past this share of the first 4 KB the payload is binary.
_CONTROL_BYTES = bytes(sorted(set(range(32)) - {9, 10, 12, 13, 27}))
MAX_CONTROL_BYTE_RATIO = 0.05
_BINARY_SNIFF_BYTES = 4096


class ExtractTimeout(Exception):
    """trafilatura ran past the per-page time bound."""


@dataclass(frozen=True)
class Decoded:
    html: str
    encoding: str  # the Python codec used
    source: str  # bom | utf-8 | http | meta | detected | fallback


def normalize_encoding(name: str) -> str:
    """The Python codec for an encoding label, widened to its superset; "" if unknown."""
    try:
        codec = codecs.lookup(name.strip().lower()).name
    except (LookupError, ValueError):
        return ""
    return _SUPERSETS.get(codec, codec)


def meta_charset(payload: bytes) -> str:
    """The charset named by `<meta charset>` or `<meta http-equiv content="...charset=...">`."""
    match = _META_CHARSET.search(payload[:_META_SCAN_BYTES])
    return match.group(1).decode("ascii", "replace") if match else ""


def _decode_if_clean(payload: bytes, encoding: str) -> str | None:
    text = payload.decode(encoding, errors="replace")
    if text.count("\ufffd") > MAX_REPLACEMENT_RATIO * max(len(text), 1):
        return None
    return text


def binary_kind(payload: bytes, http_charset: str = "") -> str:
    """"pdf", "png", ..., "binary" when `payload` is not text whatever its declared type; "" for text."""
    for signature, kind in _BINARY_SIGNATURES:
        if payload.startswith(signature):
            return kind
    # UTF-16/32 text is full of NUL bytes.
    if payload.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or http_charset.lower().startswith(("utf-16", "utf-32")):
        return ""
    sample = payload[:_BINARY_SNIFF_BYTES]
    control = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    return "binary" if control > MAX_CONTROL_BYTE_RATIO * len(sample) else ""


def decode_html(payload: bytes, http_charset: str = "") -> Decoded:
    """`payload` decoded by the first trustworthy source (see the module docstring)."""
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if payload.startswith(bom):
            return Decoded(payload.decode(encoding, errors="replace"), encoding, "bom")
    try:
        return Decoded(payload.decode("utf-8"), "utf-8", "utf-8")
    except UnicodeDecodeError:
        pass
    tried = {"utf-8"}
    for source, label in (("http", http_charset), ("meta", meta_charset(payload))):
        encoding = normalize_encoding(label) if label else ""
        if not encoding or encoding in tried or encoding.startswith("utf-16"):
            continue
        tried.add(encoding)
        text = _decode_if_clean(payload, encoding)
        if text is not None and encoding not in _MULTI_BYTE and _high_byte_ratio(payload) > SUSPICIOUS_HIGH_BYTE_RATIO:
            detected = _detect(payload)
            if detected in _MULTI_BYTE and (better := _decode_if_clean(payload, detected)) is not None:
                return Decoded(better, detected, "detected")
        if text is not None:
            return Decoded(text, encoding, source)
    detected = _detect(payload)
    if detected and detected not in tried:
        text = _decode_if_clean(payload, detected)
        if text is not None:
            return Decoded(text, detected, "detected")
    return Decoded(payload.decode("utf-8", errors="replace"), "utf-8", "fallback")


def _high_byte_ratio(payload: bytes) -> float:
    sample = payload[:_DETECT_BYTES]
    return (len(sample) - len(sample.translate(None, bytes(range(128, 256))))) / max(len(sample), 1)


def _detect(payload: bytes) -> str:
    from charset_normalizer import from_bytes

    best = from_bytes(payload[:_DETECT_BYTES]).best()
    return normalize_encoding(best.encoding) if best is not None else ""


@contextmanager
def time_limit(seconds: float):
    """Raise ExtractTimeout in the block after `seconds` (SIGALRM; only on a process's main thread).

    Spark's Python workers run tasks on their main thread; elsewhere (e.g. a threaded caller) the
    block runs unbounded rather than failing.
    """
    if seconds <= 0 or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def on_alarm(signum, frame):
        raise ExtractTimeout(f"extraction took longer than {seconds:g}s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def extract_text(html: str, url: str = "", timeout_s: float = 0) -> str:
    """trafilatura's main text of `html` ("" when it finds none); raises ExtractTimeout past `timeout_s`."""
    import trafilatura

    with time_limit(timeout_s):
        return trafilatura.extract(html, url=url or None, **_TRAFILATURA_OPTIONS) or ""


def extract_page(
    payload: bytes,
    http_charset: str,
    url: str,
    timeout_s: float,
    min_chars: int = 1,
) -> tuple[str, Drop | None]:
    """(text, None) for a page with main content, or ("", Drop) naming why there is none."""
    decoded = decode_html(payload, http_charset)
    try:
        text = extract_text(decoded.html, url, timeout_s)
    except ExtractTimeout as exc:
        return "", Drop("extract_timeout", str(exc))
    except RecursionError:
        return "", Drop("extract_error", "RecursionError: HTML nested too deeply")
    except Exception as exc:  # noqa: BLE001 - a page that breaks the extractor is a reject, not a crash
        return "", Drop("extract_error", f"{type(exc).__name__}: {exc}"[:500])
    text = text.strip()
    if len(text) < max(1, min_chars):
        return "", Drop("empty_extraction", f"{len(text)} chars extracted")
    return text, None


# --- Line origins: which kind of XML element each line of the text came from -----------------
# trafilatura's XML keeps element types that the plain text loses; the clutter model uses them
# (navigation is list items, link lists and table cells; content is mostly paragraphs).
_ORIGIN_TAGS = {"p": "p", "head": "head", "list": "item", "item": "item", "table": "cell", "row": "cell", "cell": "cell",
                "quote": "quote", "code": "code", "graphic": "graphic"}
ORIGIN_UNKNOWN = "other"
ORIGIN_COMMENT = "comment"
_ALIGN_WINDOW = 200  # lines searched ahead when aligning the text with the per-element rendering


def extract_with_origins(html: str, url: str = "", options: dict | None = None) -> tuple[str, list[str]]:
    """(text, origins): trafilatura's plain text of `html`, the same as `trafilatura.extract` with
    `options` returns, and for each of its lines the element kind it came from (p, head, item, cell,
    quote, code, comment, other; "" for blank lines). ("", []) when trafilatura finds no text."""
    import trafilatura
    from trafilatura.utils import normalize_unicode
    from trafilatura.xml import xmltotxt

    document = trafilatura.bare_extraction(
        html, url=url or None, output_format="txt", as_dict=False, **(options if options is not None else _TRAFILATURA_OPTIONS)
    )
    if document is None or document.body is None:
        return "", []
    text = xmltotxt(document.body, False)
    rendered: list[tuple[str, str]] = []
    for child in document.body:
        kind = _ORIGIN_TAGS.get(child.tag, ORIGIN_UNKNOWN)
        rendered.extend((line.strip(), kind) for line in xmltotxt(child, False).split("\n") if line.strip())
    if document.commentsbody is not None:
        text = f"{text}\n{xmltotxt(document.commentsbody, False)}".strip()
        rendered.extend((line.strip(), ORIGIN_COMMENT) for line in xmltotxt(document.commentsbody, False).split("\n") if line.strip())
    text = normalize_unicode(text)
    return text, align_origins(text.split("\n"), [(normalize_unicode(line), kind) for line, kind in rendered])


def align_origins(lines: list[str], rendered: list[tuple[str, str]]) -> list[str]:
    """The origin of each of `lines`: the kind of the next rendered line with the same stripped text."""
    origins, position = [], 0
    for line in lines:
        stripped = line.strip()
        if not stripped:
            origins.append("")
            continue
        for ahead in range(position, min(position + _ALIGN_WINDOW, len(rendered))):
            if rendered[ahead][0] == stripped:
                origins.append(rendered[ahead][1])
                position = ahead + 1
                break
        else:
            origins.append(ORIGIN_UNKNOWN)
    return origins
