"""Main-content extraction (stage 1, step 3): bytes -> correctly decoded HTML -> trafilatura text.

Decoding order: a byte-order mark; UTF-16 declared, or recognised without a BOM by its NUL bytes
(ASCII markup in UTF-16 puts a NUL in every other byte, at odd offsets in UTF-16LE); strict UTF-8 (valid multi-byte UTF-8 almost never happens by
accident, and pages that declare latin-1 but are UTF-8 are common); the HTTP Content-Type charset;
the `<meta>` charset in the first 4 KB; then detection with charset_normalizer. A declared charset
whose decoding produces many U+FFFD is treated as wrong and the next candidate is tried. Legacy
Chinese and Western names map to their supersets (WHATWG encoding standard): gb2312/gbk -> gb18030,
iso-8859-1/ascii -> cp1252, big5 -> big5hkscs, shift_jis -> cp932, euc-kr -> cp949. A declared
label counts only when it names a text codec (Python's registry also holds base64, zlib, rot13, ...).

Time: `PageExtractor` runs decoding and trafilatura in a forked child that is killed past the
page's bound (SIGALRM alone cannot stop libxml2), after a pre-parse screen for tags with more
attributes than libxml2 parses in reasonable time (`parse_hazard`) and, where configured, the cheap
look that drops a page before trafilatura (`pipeline.prepare.precheck`).
"""

from __future__ import annotations

import codecs
import ctypes
import functools
import multiprocessing
import re
import resource
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from thresher.pipeline.config import ThreadPostsConfig
from thresher.pipeline.filters import Drop
from thresher.pipeline.lexicon import CJK_CHAR
from thresher.pipeline.prepare.precheck import SNIPPET_CHARS, Precheck

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
# UTF-16 without a byte-order mark: at least this share of the bytes at one parity are NUL (the high
# bytes of ASCII markup), at most the second share at the other, and the text decodes clean.
_UTF16_NUL_SHARE = (0.1, 0.05)
_UTF16_SNIFF_MIN_BYTES = 32
# libxml2 stops parsing a document nested deeper than this many elements (without XML_PARSE_HUGE,
# which lxml's HTML parser does not set): the page's text is lost, and `html_too_deep` says so.
_DEPTH_LIMIT_MESSAGE = re.compile(r"Excessive depth in document: (\d+)")


# A charset label names a codec only when it looks like one: letters, digits and - _ . : (WHATWG labels).
_CHARSET_NAME = re.compile(r"[a-z0-9][a-z0-9_.:\-]{0,39}")
# Text codecs by Python's flag that are no page charset: they raise on bytes that are not already
# ASCII-clean (idna, punycode), always (undefined), or turn backslashes into characters.
_NOT_PAGE_CHARSETS = frozenset({"idna", "punycode", "undefined", "unicode-escape", "raw-unicode-escape"})

# libxml2 checks every attribute of a tag against all those before it: time grows with the square of
# the attributes per tag (20,000 take 2.6 s in trafilatura, 300,000 over 14 min). No real page comes
# near this many; a tag that has more is screened out before parsing.
MAX_TAG_ATTRIBUTES = 1_000
# Tags long enough to hold that many attributes (two characters each at least): the only ones counted.
_LONG_TAG = re.compile(rf"<[A-Za-z][A-Za-z0-9:_-]*\s[^<>]{{{2 * MAX_TAG_ATTRIBUTES},}}")
# Where a `<` starts no tag: script and style bodies (minified JavaScript is full of `a<b ...`), comments.
_RAW_TEXT = (("<script", "</script"), ("<style", "</style"), ("<!--", "-->"))
_ATTRIBUTE = re.compile(r"""[^\s"'<>/=]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'<>]*))?""")
# The extraction process is killed this long after the page's own (SIGALRM) bound has passed.
KILL_GRACE_S = 1.0


class ExtractTimeout(BaseException):
    """trafilatura ran past the per-page time bound.

    A BaseException: trafilatura wraps its lxml parse in `except Exception`, which would swallow
    the alarm and carry on extracting from a half-parsed page, unbounded.
    """


@dataclass(frozen=True)
class Decoded:
    html: str
    encoding: str  # the Python codec used
    source: str  # bom | http | sniffed (UTF-16 without a BOM) | utf-8 | meta | detected | fallback


def normalize_encoding(name: str) -> str:
    """The Python codec for an encoding label, widened to its superset; "" if unknown or not a text charset.

    Python's codec registry also holds bytes-to-bytes codecs (base64, zlib, rot13, ...) that
    `bytes.decode` refuses with LookupError; a page declaring one gets detection instead.
    """
    label = name.strip().lower()
    if not _CHARSET_NAME.fullmatch(label):
        return ""
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        return ""
    if not info._is_text_encoding or info.name in _NOT_PAGE_CHARSETS:
        return ""
    return _SUPERSETS.get(info.name, info.name)


def meta_charset(payload: bytes) -> str:
    """The charset named by `<meta charset>` or `<meta http-equiv content="...charset=...">`."""
    match = _META_CHARSET.search(payload[:_META_SCAN_BYTES])
    return match.group(1).decode("ascii", "replace") if match else ""


def _decode_if_clean(payload: bytes, encoding: str) -> str | None:
    try:
        text = payload.decode(encoding, errors="replace")
    except (LookupError, UnicodeError, ValueError):  # a codec that cannot decode every byte string
        return None
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
    if utf16_without_bom(payload):
        return ""
    sample = payload[:_BINARY_SNIFF_BYTES]
    control = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    return "binary" if control > MAX_CONTROL_BYTE_RATIO * len(sample) else ""


def utf16_without_bom(payload: bytes) -> str:
    """"utf-16-le" or "utf-16-be" when `payload` is UTF-16 text without a byte-order mark; "" otherwise."""
    sample = payload[: _BINARY_SNIFF_BYTES & ~1]
    sample = sample[: len(sample) & ~1]
    if len(sample) < _UTF16_SNIFF_MIN_BYTES:
        return ""
    half = len(sample) // 2
    even, odd = sample[0::2].count(0) / half, sample[1::2].count(0) / half
    most, fewest = _UTF16_NUL_SHARE
    encoding = "utf-16-le" if odd >= most and even <= fewest else "utf-16-be" if even >= most and odd <= fewest else ""
    if not encoding:
        return ""
    text = sample.decode(encoding, errors="replace")
    unreadable = sum(1 for char in text if char == "\ufffd" or (char < " " and char not in "\t\n\r\f"))
    return encoding if unreadable <= MAX_CONTROL_BYTE_RATIO * len(text) else ""


def decode_html(payload: bytes, http_charset: str = "") -> Decoded:
    """`payload` decoded by the first trustworthy source (see the module docstring)."""
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if payload.startswith(bom):
            return Decoded(payload.decode(encoding, errors="replace"), encoding, "bom")
    declared = normalize_encoding(http_charset) if http_charset else ""
    if declared.startswith(("utf-16", "utf-32")) and b"\x00" in payload[:_META_SCAN_BYTES]:
        # UTF-16 without a BOM, as the header says: its NUL bytes would pass for (valid) UTF-8 below.
        return Decoded(payload.decode(declared, errors="replace"), declared, "http")
    if sniffed := utf16_without_bom(payload):  # undeclared, or declared as something it is not
        return Decoded(payload.decode(sniffed, errors="replace"), sniffed, "sniffed")
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


@functools.cache
def c_level_element_lookup() -> None:
    """Give trafilatura's HTML parser lxml's C-level element class lookup instead of lxml.html's.

    lxml.html's lookup is a Python method called for every element proxy lxml creates: 3.3 million
    calls on 975 pages, and trafilatura.extract ran 15-23% faster without it (bench/RESULTS.md
    "Issue 28: per-page costs"). Every element is still an HtmlElement; only the form-field subclasses
    (InputElement, SelectElement, ...) go, and trafilatura uses none of their properties: its text is
    the same (tests/pipeline/prepare/test_extract.py compares it with lxml.html's parser).
    """
    from lxml import etree
    from lxml.html import HtmlComment, HtmlElement, HtmlEntity, HtmlProcessingInstruction
    from trafilatura.utils import HTML_PARSER

    HTML_PARSER.set_element_class_lookup(etree.ElementDefaultClassLookup(
        element=HtmlElement, comment=HtmlComment, pi=HtmlProcessingInstruction, entity=HtmlEntity))


def extract_text(html: str, url: str = "", timeout_s: float = 0, thread_posts: ThreadPostsConfig | None = None) -> str:
    """trafilatura's main text of `html` ("" when it finds none), with the thread posts it missed when
    `thread_posts` is enabled (`missing_thread_posts`); raises ExtractTimeout past `timeout_s`."""
    import trafilatura
    from trafilatura.utils import normalize_unicode

    c_level_element_lookup()

    with time_limit(timeout_s):
        if thread_posts is None or not thread_posts.enabled:
            return trafilatura.extract(html, url=url or None, **_TRAFILATURA_OPTIONS) or ""
        document = trafilatura.bare_extraction(html, url=url or None, output_format="txt", as_dict=False, **_TRAFILATURA_OPTIONS)
        if document is None or document.body is None:
            return ""
        main_text, text = _body_and_text(document)
        if posts := _thread_posts(html, main_text, text, thread_posts):
            text = f"{text}\n" + "\n".join(posts)
        return normalize_unicode(text)


def _body_and_text(document) -> tuple[str, str]:
    """(body text, body + comments text) of a trafilatura document, as `trafilatura.extract` joins them."""
    from trafilatura.xml import xmltotxt

    main_text = xmltotxt(document.body, False)
    if document.commentsbody is None:
        return main_text, main_text
    return main_text, f"{main_text}\n{xmltotxt(document.commentsbody, False)}".strip()


def parse_hazard(html: str) -> str:
    """Why parsing `html` would run for minutes in libxml2 (which no signal interrupts); "" when nothing does."""
    lowered = None
    for tag in _LONG_TAG.finditer(html):
        span = tag.group()
        # Cheapest test first: attributes are separated by white space (minified JavaScript has little).
        if sum(span.count(space) for space in " \n\t\r\f") < MAX_TAG_ATTRIBUTES:
            continue
        attributes = sum(1 for _ in _ATTRIBUTE.finditer(span, 1)) - 1  # the first word is the tag name
        if attributes <= MAX_TAG_ATTRIBUTES:
            continue
        lowered = html.lower() if lowered is None else lowered
        if not any(lowered.rfind(start, 0, tag.start()) > lowered.rfind(end, 0, tag.start()) for start, end in _RAW_TEXT):
            name = tag.group()[1:].split(None, 1)[0][:40]
            return f"a <{name}> tag with {attributes} attributes (over {MAX_TAG_ATTRIBUTES}): libxml2 is quadratic in them"
    return ""


def extract_page(
    payload: bytes,
    http_charset: str,
    url: str,
    timeout_s: float,
    min_chars: int = 1,
    thread_posts: ThreadPostsConfig | None = None,
    precheck: Precheck | None = None,
) -> tuple[str, Drop | None]:
    """(text, None) for a page with main content, or ("", Drop) naming why there is none.

    Every failure is a Drop naming its step (`decode_error`, `extract_timeout`, `extract_error`).
    With `precheck`, a page it drops is not extracted: (the start of its cheap text, its Drop).
    The time bound is SIGALRM's, which Python code honours and libxml2 does not: `PageExtractor`
    runs this where an overrun can be killed.
    """
    try:
        decoded = decode_html(payload, http_charset)
    except Exception as exc:  # noqa: BLE001 - a page no decoding handles is a reject, not a crash
        return "", Drop("decode_error", f"{type(exc).__name__}: {exc}"[:500])
    if hazard := parse_hazard(decoded.html):
        return "", Drop("extract_timeout", hazard)
    if precheck is not None:
        try:
            look, drop = precheck.judge(decoded.html)
        except Exception:  # noqa: BLE001 - a page the cheap look cannot read is left to the full path
            look, drop = None, None
        if drop is not None:
            return look.text[:SNIPPET_CHARS], drop
    try:
        text = extract_text(decoded.html, url, timeout_s, thread_posts)
    except ExtractTimeout as exc:
        return "", Drop("extract_timeout", str(exc))
    except RecursionError:
        return "", Drop("extract_error", "RecursionError: HTML nested too deeply")
    except Exception as exc:  # noqa: BLE001 - a page that breaks the extractor is a reject, not a crash
        return "", Drop("extract_error", f"{type(exc).__name__}: {exc}"[:500])
    text = text.strip()
    if len(text) < max(1, min_chars):
        if too_deep := nesting_too_deep(decoded.html):
            return "", Drop("html_too_deep", too_deep)
        return "", Drop("empty_extraction", f"{len(text)} chars extracted")
    return text, None


def nesting_too_deep(html: str) -> str:
    """Why libxml2 stops parsing `html` early for its nesting depth (losing the text below); "" when it does not."""
    from lxml import etree

    parser = etree.HTMLParser(encoding="utf-8", collect_ids=False, default_doctype=False, no_network=True)
    try:
        etree.fromstring(html.encode("utf-8", errors="replace"), parser)
    except (etree.LxmlError, ValueError):
        pass
    for entry in parser.error_log:
        if match := _DEPTH_LIMIT_MESSAGE.search(entry.message):
            return (f"elements nested over {match.group(1)} deep (libxml2's limit): parsing stops at line {entry.line}, "
                    f"column {entry.column}, and the text from there on is lost")
    return ""


class PageExtractor:
    """`extract_page` in a forked child process that is killed when a page overruns its time bound.

    One per Python worker, long-lived: a page costs a pipe round trip, not a fork. The child is
    forked from a process that has imported trafilatura, so a restart after a kill is a few
    milliseconds. A child that dies (killed, out of memory, crashed in C) fails only its page.
    With `timeout_s` 0 (no bound) pages are extracted in this process.
    """

    def __init__(self, timeout_s: float, min_chars: int, thread_posts: ThreadPostsConfig | None = None,
                 precheck: Precheck | None = None):
        self.timeout_s = timeout_s
        self.min_chars = min_chars
        self.thread_posts = thread_posts
        self.precheck = precheck
        self._process = None
        self._connection = None
        self._cpu_reported = 0.0  # CPU seconds the current child has reported for its pages
        self.max_rss_kb = 0  # peak resident memory of any child so far (most of it shared with this process)

    def __call__(self, payload: bytes, http_charset: str, url: str) -> tuple[str, Drop | None, float]:
        """(text, drop, CPU seconds the child spent on the page), as `extract_page` gives (text, drop)."""
        if self.timeout_s <= 0:
            return (*extract_page(payload, http_charset, url, 0, self.min_chars, self.thread_posts, self.precheck), 0.0)
        if self._process is None or not self._process.is_alive():  # first page, or the child died idle
            self.close()
            self._start()
        started = time.monotonic()
        try:
            self._connection.send((payload, http_charset, url))
            if self._connection.poll(self.timeout_s + KILL_GRACE_S):
                text, drop, cpu, rss_kb = self._connection.recv()
                self._cpu_reported += cpu
                self.max_rss_kb = max(self.max_rss_kb, rss_kb)
                return text, drop, cpu
        except (EOFError, OSError):  # the child died on this page (its end of the pipe closed)
            cpu, code = self._stop()
            return "", Drop("extract_error", f"extraction process died on the page (exit code {code})"), cpu
        cpu, _ = self._stop()
        return "", Drop("extract_timeout", f"extraction killed after {time.monotonic() - started:.1f}s "
                                           f"(bound {self.timeout_s:g}s)"), cpu

    def _start(self) -> None:
        c_level_element_lookup()  # imports trafilatura here, so every fork starts warm
        if self.precheck is not None:
            self.precheck.preload_model()

        context = multiprocessing.get_context("fork")
        self._cpu_reported = 0.0
        self._connection, child_end = context.Pipe()
        self._process = context.Process(target=_serve_pages, args=(child_end, self.timeout_s, self.min_chars, self.thread_posts,
                                                                     self.precheck),
                                        name="thresher-extract", daemon=True)
        self._process.start()
        child_end.close()

    def _stop(self) -> tuple[float, int | None]:
        """Kill and reap the child: (CPU seconds it used, its exit code). The next page starts another."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._process.kill()
        self._process.join()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        code = self._process.exitcode
        self._connection.close()
        used = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime) - self._cpu_reported
        self._process, self._connection, self._cpu_reported = None, None, 0.0
        return max(used, 0.0), code

    def close(self) -> float:
        """Stop the child; returns the CPU seconds it used beyond what it reported for pages (pipe, pickling)."""
        return self._stop()[0] if self._process is not None else 0.0


def _serve_pages(connection, timeout_s: float, min_chars: int, thread_posts: ThreadPostsConfig | None,
                 precheck: Precheck | None) -> None:
    """The child's loop: a page in, (text, drop, CPU seconds, peak RSS in KiB) out, until the parent goes away."""
    _die_with_parent()
    while True:
        try:
            payload, http_charset, url = connection.recv()
        except (EOFError, OSError):
            return
        started = time.process_time()
        text, drop = extract_page(payload, http_charset, url, timeout_s, min_chars, thread_posts, precheck)
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        connection.send((text, drop, time.process_time() - started, peak_kb))


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies, so a killed Spark worker leaves no child parsing."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the closed pipe ends the loop instead, after the page
        pass


# --- Thread posts: the replies trafilatura leaves out of a forum thread --------------------------
# trafilatura takes one main block (on a thread page: the first post) plus the comment areas its
# rules know; the other posts of a thread are usually sibling blocks of the same tag and class.
# A page is treated as a thread when one such block is in trafilatura's text and its siblings are
# not; their lines are then appended (the clutter model takes out their bylines and buttons).
# Class words of post containers across forum software (phpBB, Discourse, vBulletin, IPS,
# bbPress, wpForo, Stack Exchange, Discuz's `t_f` post cells, Baidu Tieba `l_post`, ...).
THREAD_POST_WORDS = ("post", "reply", "comment", "answer", "message", "t_f", "floor")
_POST_TAGS = ("div", "article", "li", "td", "section")
# Elements that end a line of text (as in a browser); the rest are inline.
_BLOCK_TAGS = frozenset({"p", "div", "br", "li", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre",
                         "article", "section", "ul", "ol", "dl", "dd", "dt", "table", "header", "footer", "figure", "figcaption"})
_NO_TEXT_TAGS = frozenset({"script", "style", "noscript", "template", "svg", "button", "form", "input", "select",
                           "textarea", "iframe", "head", "nav"})


def element_lines(element) -> list[str]:
    """The text of an lxml element as lines, broken at block elements, white space collapsed
    (iterative: a page nested deeper than Python's recursion limit is no reject here)."""
    from lxml import etree

    lines: list[list[str]] = [[]]
    walker = etree.iterwalk(element, events=("start", "end", "comment", "pi"))
    for event, node in walker:
        tag = node.tag.lower() if isinstance(node.tag, str) else ""
        if event == "start":
            if tag in _NO_TEXT_TAGS:
                walker.skip_subtree()  # its "end" still comes, with the tail
                continue
            if tag in _BLOCK_TAGS:
                lines.append([])
            if node.text:
                lines[-1].append(node.text)
            continue
        if tag in _BLOCK_TAGS:  # an "end" (comments and processing instructions only have a tail)
            lines.append([])
        if node is not element and node.tail:
            lines[-1].append(node.tail)
    return [line for line in (" ".join("".join(parts).split()) for parts in lines) if line]


_CLASS_ATTRIBUTE = re.compile(r"""class=(["'])([^"'<>]*)\1""")  # as written; spaced `class = "x"` is rare
_PROBE_CHARS = 16  # a run of main text this long, free of characters HTML escapes, is looked up verbatim
_PROBE_RUN = re.compile(rf"""[^&<>"'\s][^&<>"']{{{_PROBE_CHARS - 1},}}""")


def thread_classes(html: str, main_text: str, settings: ThreadPostsConfig) -> list[str]:
    """The class attributes of `html` that may hold the posts of a thread: those written shortly
    before a run of trafilatura's main text, naming a post container and occurring more than once in
    the page. String search only, so most pages stop here unparsed ([])."""
    classes: dict[str, None] = {}
    for attempt, run in enumerate(_PROBE_RUN.finditer(main_text)):
        if attempt == settings.probes:
            break
        position = html.find(run.group()[:_PROBE_CHARS])
        if position < 0:
            continue
        for quote, value in _CLASS_ATTRIBUTE.findall(html, max(0, position - settings.probe_window), position):
            if value not in classes and any(word in value for word in THREAD_POST_WORDS) \
                    and html.count(f"={quote}{value}{quote}") >= settings.min_posts:
                classes[value] = None
    return list(classes)


def missing_thread_posts(tree, classes: list[str], main_text: str, text: str, settings: ThreadPostsConfig) -> list[str]:
    """Lines of the thread posts of `tree` that trafilatura's `text` lacks, in page order: the
    elements of one of `classes` (`thread_classes`), [] unless one of them is in trafilatura's
    `main_text` (its body, comments aside).

    Each candidate class is scored by its missing lines' characters beyond
    `settings.short_line_chars` each, so bylines, dates and buttons weigh little; of the classes
    within `settings.near_best` of the best score, the one adding the fewest characters wins (a
    post body rather than the whole post box with its author card)."""
    from lxml import etree

    main_flat, flat = "".join(main_text.split()), "".join(text.split())
    groups: dict[str, list] = {value: [] for value in classes}
    tags = " or ".join(f"self::{tag}" for tag in _POST_TAGS)
    names = " or ".join(f"@class = '{value}'" for value in classes)  # no quotes in them (_CLASS_ATTRIBUTE)
    for element in etree.XPath(f"//*[{tags}][{names}]")(tree):
        groups[element.get("class")].append(element)
    candidates: list[tuple[float, int, list[str]]] = []
    for members in groups.values():
        if len(members) < settings.min_posts:
            continue
        inside = {id(member) for member in members}
        members = [m for m in members if not any(id(a) in inside for a in m.iterancestors())]  # outermost only
        if len(members) < settings.min_posts:
            continue
        posts = [element_lines(member) for member in members]
        if not any(_share_in(post, main_flat) > 0.5 for post in posts):
            continue  # trafilatura took none of these blocks as main text: not this page's thread
        missing, widths, seen = [], [], set()
        for line in (line for post in posts for line in post):
            key = "".join(line.split())
            if (width := _width(line, settings.cjk_char_weight)) >= settings.min_line_chars and key not in flat and key not in seen:
                seen.add(key)
                missing.append(line)
                widths.append(width)
        score = sum(max(0, width - settings.short_line_chars) for width in widths)
        if score >= settings.min_new_chars:
            candidates.append((score, sum(widths), missing))
    if not candidates:
        return []
    best = max(score for score, _, _ in candidates)
    return min((c for c in candidates if c[0] >= settings.near_best * best), key=lambda c: c[1])[2]


def _thread_posts(html: str, main_text: str, text: str, settings: ThreadPostsConfig) -> list[str]:
    from trafilatura.utils import load_html

    if not (classes := thread_classes(html, main_text, settings)):
        return []
    tree = load_html(html)  # parsed again: trafilatura's own tree is cleaned in place and not returned
    return missing_thread_posts(tree, classes, main_text, text, settings) if tree is not None else []


def _width(line: str, cjk_char_weight: float) -> float:
    """The length of `line` with each Chinese or Japanese character counted `cjk_char_weight` times."""
    return len(line) + (cjk_char_weight - 1) * len(CJK_CHAR.findall(line)) if cjk_char_weight != 1 else len(line)


def _share_in(lines: list[str], flat_text: str) -> float:
    """The share of the characters of `lines` whose line is in `flat_text` (white space removed)."""
    total = sum(map(len, lines))
    return sum(len(line) for line in lines if "".join(line.split()) in flat_text) / total if total else 0.0

# --- Line origins: which kind of XML element each line of the text came from -----------------
# trafilatura's XML keeps element types that the plain text loses; the clutter model uses them
# (navigation is list items, link lists and table cells; content is mostly paragraphs).
_ORIGIN_TAGS = {"p": "p", "head": "head", "list": "item", "item": "item", "table": "cell", "row": "cell", "cell": "cell",
                "quote": "quote", "code": "code", "graphic": "graphic"}
ORIGIN_UNKNOWN = "other"
ORIGIN_COMMENT = "comment"
ORIGIN_POST = "post"  # a thread post trafilatura missed
_ALIGN_WINDOW = 200  # lines searched ahead when aligning the text with the per-element rendering


def extract_with_origins(
    html: str, url: str = "", options: dict | None = None, thread_posts: ThreadPostsConfig | None = None
) -> tuple[str, list[str]]:
    """(text, origins): trafilatura's plain text of `html`, the same as `trafilatura.extract` with
    `options` returns, then with `thread_posts` the thread posts it missed (`missing_thread_posts`),
    and for each line the element kind it came from (p, head, item, cell, quote, code, comment, post,
    other; "" for blank lines). ("", []) when trafilatura finds no text."""
    import trafilatura
    from trafilatura.utils import normalize_unicode
    from trafilatura.xml import xmltotxt

    c_level_element_lookup()
    document = trafilatura.bare_extraction(
        html, url=url or None, output_format="txt", as_dict=False, **(options if options is not None else _TRAFILATURA_OPTIONS)
    )
    if document is None or document.body is None:
        return "", []
    main_text, text = _body_and_text(document)
    rendered: list[tuple[str, str]] = []
    for child in document.body:
        kind = _ORIGIN_TAGS.get(child.tag, ORIGIN_UNKNOWN)
        rendered.extend((line.strip(), kind) for line in xmltotxt(child, False).split("\n") if line.strip())
    if document.commentsbody is not None:
        rendered.extend((line.strip(), ORIGIN_COMMENT) for line in xmltotxt(document.commentsbody, False).split("\n") if line.strip())
    if thread_posts is not None and (posts := _thread_posts(html, main_text, text, thread_posts)):
        text = f"{text}\n" + "\n".join(posts)
        rendered.extend((line, ORIGIN_POST) for line in posts)
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
