"""Benchmark decontamination without Spark: which test items a document contains, and where.

Benchmarks are read from the files a config names (JSONL, JSONL.gz, CSV or Parquet, or a directory
of them): per item, the text of the named fields (joined by a line break) and an id (the id field,
else the row number; in a directory, the file's path below it and the row number).

Normalisation (documents and items alike): Unicode NFKC (full-width letters and digits become
ASCII, compatibility ideographs unified), casefold, every character that is not a letter, digit or
combining mark (punctuation, symbols, underscore, whitespace) a separator, so punctuation and
runs of whitespace count as one space; Kangxi radicals NFKC maps to ideographs (⼀ is 一) count as
those. The result is two token streams:

- words: the runs of letters and digits outside Han text; matched as word n-grams (`word_ngram`,
  13 by default as GPT-3 and Llama report);
- Han characters, one token each (Chinese has no spaces); matched as character n-grams
  (`han_ngram`, chosen on CMMLU: bench/RESULTS.md "Issue 27, decontamination").

A sequence of a field or an item shorter than its n-gram size but at least `min_short_words` words /
`min_short_han` characters long is indexed whole, as one shorter n-gram, so short items are found
too. An n-gram shared by `max_items_per_ngram` items or more (a benchmark's boilerplate, such as
HumanEval's shared docstring phrases) identifies no item and is left out.

The index is a sorted numpy array of 64-bit n-gram hashes with the item of each (exact up to hash
collisions: for an index of N n-grams each document n-gram falsely matches with probability about
N / 2^64, 4e-14 for the three shared benchmarks' 0.7 million; 13 bytes per indexed n-gram, 12.9 MiB
per million with the per-item arrays), pickled with the Spark tasks; each worker process adds a
16 MiB bit table of the keys' top 27 bits, a first test that spares most binary searches.

A document hits an item when it holds at least min(`min_matches`, the item's n-grams) distinct
n-grams of that item, covering at least `min_coverage` of the item's words or Han characters (or of
its question's); a hit records the benchmark, the item ids, the matched n-gram count and the matched
character spans of the original text, merged.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from thresher.pipeline.lexicon import HAN
from thresher.schemas.errors import UserError

FORMATS = (".jsonl", ".jsonl.gz", ".csv", ".parquet", ".arrow")  # .arrow: a Hugging Face datasets file (save_to_disk)
WORD = re.compile(f"(?:[^\\W_{HAN}]|[\u0300-\u036f])+")  # letters and digits (with combining accents), outside Han
HAN_TOKEN = re.compile(f"[{HAN}]")
_MASK = (1 << 64) - 1
# The n-gram hash's base (odd, so invertible mod 2^64: n-grams come from one prefix sum per text).
_NGRAM_BASE = np.uint64(0x9E3779B97F4A7C15)
_NGRAM_BASE_INVERSE = np.uint64(pow(0x9E3779B97F4A7C15, -1, 1 << 64))
_BASE = np.uint64(0x100000001B3)  # FNV's 64-bit prime, odd: invertible mod 2^64
_BASE_INVERSE = np.uint64(pow(0x100000001B3, -1, 1 << 64))
_RADICALS = (0x2E80, 0x2FDF)  # CJK Radicals Supplement and Kangxi Radicals: NFKC maps most to ideographs
_TOP_BITS = 27  # the first test's table: 2^27 bits (16 MiB), under 1% of them set per million keys


class BenchmarkError(UserError):
    """A configured benchmark that cannot be read as configured (no such file, a field it lacks)."""


@dataclass(frozen=True)
class Benchmark:
    name: str
    path: str  # a file or a directory of FORMATS files
    fields: tuple[str, ...]  # the fields holding an item's text, joined by a line break
    id_field: str = ""  # empty: the row number


@dataclass(frozen=True)
class Settings:
    word_ngram: int = 13
    han_ngram: int = 11  # chosen on CMMLU (bench/bench_decontam.py --sweep)
    min_short_words: int = 10  # shorter questions and items are not indexed
    min_short_han: int = 8
    max_items_per_ngram: int = 10  # n-grams in this many items or more are boilerplate
    min_matches: int = 1
    # share of an item's (or its question's) words or Han characters a document must hold: a slogan
    # that a long test question quotes is no copy of the question
    min_coverage: float = 0.5


@dataclass
class Tokens:
    """One stream of a text's tokens: their hashes and the character span of each in the original text."""

    hashes: np.ndarray  # uint64
    starts: np.ndarray  # int64
    ends: np.ndarray  # int64


@dataclass(frozen=True)
class Hit:
    benchmark: str
    item_ids: tuple[str, ...]
    ngrams: int  # distinct n-grams of the document that belong to a hit item of this benchmark
    spans: tuple[tuple[int, int], ...]  # merged [start, end) character spans


@dataclass
class DecontamIndex:
    """Sorted n-gram hashes, the item of each, and per item its benchmark, id and n-gram count."""

    settings: Settings
    benchmarks: tuple[str, ...]
    keys: np.ndarray  # uint64, sorted
    items: np.ndarray  # int32: the item of each key
    item_benchmark: np.ndarray  # int32
    item_ids: list[str]
    item_ngrams: np.ndarray  # int32: the distinct n-grams each item has in the index
    in_question: np.ndarray  # bool: the key is an n-gram of its item's question (first field)
    question_ngrams: np.ndarray  # int32: the distinct n-grams of each item's question in the index
    item_tokens: np.ndarray  # int32 (items, 2): each item's words and Han characters
    question_tokens: np.ndarray  # int32 (items, 2): its question's
    short_lengths: tuple[tuple[str, int], ...] = ()  # (stream, length) of the shorter n-grams indexed
    dropped_common: int = 0  # boilerplate n-grams left out
    counts: dict[str, int] = field(default_factory=dict)  # items per benchmark
    _top_bits: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def nbytes(self) -> int:
        arrays = (self.keys, self.items, self.in_question, self.item_benchmark, self.item_ngrams, self.question_ngrams,
                  self.item_tokens, self.question_tokens)
        return sum(array.nbytes for array in arrays)

    def may_hold(self, hashes: np.ndarray) -> np.ndarray:
        """A first, cheap test of each hash against the keys' top bits (a table built on first use in
        each process, never pickled): False is certain, True is checked by binary search."""
        if self._top_bits is None:
            table = np.zeros(1 << (_TOP_BITS - 3), np.uint8)
            top = self.keys >> np.uint64(64 - _TOP_BITS)
            np.bitwise_or.at(table, top >> np.uint64(3), np.left_shift(1, top & np.uint64(7)).astype(np.uint8))
            self._top_bits = table
        top = hashes >> np.uint64(64 - _TOP_BITS)
        return (self._top_bits[top >> np.uint64(3)] >> (top & np.uint64(7)).astype(np.uint8)) & 1 == 1

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_top_bits": None}


def normalise(text: str) -> str:
    """The text as matching sees it: its tokens, space separated (for people and tests; matching hashes them)."""
    return " ".join(word for token in WORD.findall(text) for word in _normal_words(token))


def _normal_words(token: str) -> tuple[str, ...]:
    if token.isascii():
        return (token.lower(),)
    folded = unicodedata.normalize("NFKC", token).casefold()
    return (folded,) if WORD.fullmatch(folded) else tuple(WORD.findall(folded))


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64, copy=True)
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


@dataclass(frozen=True)
class _Tables:
    """Per code point of the Basic Multilingual Plane: a word character (letter, digit or combining
    accent, not Han); its normalised form (NFKC then casefold) when that is word characters only
    (`folded`, or `expansions` where several: ß is ss); and whether it is (else a text holding it
    takes the exact path)."""

    word: np.ndarray
    folded: np.ndarray
    lengths: np.ndarray  # characters of the normalised form
    simple: np.ndarray
    expansions: dict[int, tuple[int, ...]]


@lru_cache(maxsize=1)
def _bmp_tables() -> _Tables:
    """Built once per process (a fraction of a second)."""
    word = np.zeros(0x10000, bool)
    folded = np.arange(0x10000, dtype=np.uint64)
    lengths = np.ones(0x10000, np.int64)
    simple = np.ones(0x10000, bool)
    expansions = {}
    han = _is_han(np.arange(0x10000, dtype=np.uint32))
    for code in range(0x10000):
        char = chr(code)
        if han[code] or not (char.isalnum() or "\u0300" <= char <= "\u036f"):
            continue
        word[code] = True
        form = char.lower() if code < 0x80 else unicodedata.normalize("NFKC", char).casefold()
        if not (form and all(c.isalnum() and c < "\U00010000" and not han[ord(c)] for c in form)):
            simple[code] = False
        elif len(form) == 1:
            folded[code] = ord(form)
        else:
            lengths[code] = len(form)
            expansions[code] = tuple(map(ord, form))
    return _Tables(word, folded, lengths, simple, expansions)


def _poly_hashes(codes: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The hash of each word codes[start:end] (normalised code points): a polynomial in a fixed odd
    base mod 2^64 from prefix sums, then splitmix64-mixed with the length; vectorised."""
    if not len(starts):
        return np.zeros(0, np.uint64)
    count = len(codes)
    with np.errstate(over="ignore"):
        powers = np.cumprod(np.full(count, _BASE, np.uint64))  # B^1 .. B^count
        inverse = np.cumprod(np.full(count, _BASE_INVERSE, np.uint64))  # B^-1 .. B^-count
        prefix = np.concatenate([np.zeros(1, np.uint64), np.cumsum(codes.astype(np.uint64) * inverse, dtype=np.uint64)])
        sums = (prefix[ends] - prefix[starts]) * powers[ends - 1]
        return _mix(sums + (ends - starts).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))


def tokenize(text: str) -> tuple[Tokens, Tokens]:
    """The word and Han streams of `text` (normalised as the module says), with spans in `text`."""
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
    words = _words_fast(codes)
    if words is None:
        words = _words_exact(text)
    radicals = (codes >= _RADICALS[0]) & (codes <= _RADICALS[1])
    han_starts = np.nonzero(_is_han(codes) | radicals)[0].astype(np.int64)
    points = codes[han_starts].astype(np.uint64)
    kept = np.ones(len(points), bool)
    # compatibility ideographs and Kangxi radicals (PDF-extracted text writes 一 as ⼀): NFKC's ideograph
    for i in np.nonzero((points >= 0xF900) | (points <= _RADICALS[1]))[0].tolist():
        form = unicodedata.normalize("NFKC", chr(int(points[i])))
        if len(form) == 1 and _is_han(np.array([ord(form)], np.uint32))[0]:
            points[i] = ord(form)
        else:
            kept[i] = False
    han_starts, points = han_starts[kept], points[kept]
    return words, Tokens(_mix(points + np.uint64(0x4A4E)), han_starts, han_starts + 1)


def _words_fast(codes: np.ndarray) -> Tokens | None:
    """The word stream by table lookups, or None when the text holds a character whose normal form is
    not word characters alone (combining accents, ½, letters beyond the BMP)."""
    tables = _bmp_tables()
    bmp = codes < 0x10000
    if not bmp.all():
        beyond = np.unique(codes[~bmp])
        if any(chr(int(code)).isalnum() for code in beyond):
            return None
    clipped = np.where(bmp, codes, 0)
    word = tables.word[clipped] & bmp
    if not tables.simple[clipped[word]].all():
        return None
    folded = tables.folded[clipped]
    origin = np.arange(len(codes), dtype=np.int64)
    lengths = np.where(word, tables.lengths[clipped], 1)
    if (lengths > 1).any():  # ß is ss: the normalised text is longer; each character keeps its origin
        at = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        folded, word, origin = np.repeat(folded, lengths), np.repeat(word, lengths), np.repeat(origin, lengths)
        for position in np.nonzero(lengths > 1)[0].tolist():
            expansion = tables.expansions[int(clipped[position])]
            folded[at[position]:at[position] + len(expansion)] = expansion
    edges = np.diff(np.concatenate([[False], word, [False]]).astype(np.int8))
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    return Tokens(_poly_hashes(folded, starts, ends), origin[starts], origin[ends - 1] + 1)


def _words_exact(text: str) -> Tokens:
    """The word stream with Unicode's normalisation per token (a token may become several words, each
    keeping its token's span)."""
    normal, starts, ends, spans = [], [], [], []
    at = 0
    for match in WORD.finditer(text):
        for word in _normal_words(match.group()):
            normal.append(word)
            starts.append(at)
            at += len(word)
            ends.append(at)
            spans.append(match.span())
    codes = np.frombuffer("".join(normal).encode("utf-32-le", "surrogatepass"), np.uint32)
    located = np.array(spans, np.int64).reshape(-1, 2)
    return Tokens(_poly_hashes(codes, np.array(starts, np.int64), np.array(ends, np.int64)), located[:, 0], located[:, 1])


def _is_han(codes: np.ndarray) -> np.ndarray:
    """Whether each code point is a Han character (in one of lexicon.HAN's ranges, "a-b" each)."""
    han = np.zeros(len(codes), bool)
    for low, high in zip(HAN[0::3], HAN[2::3], strict=True):
        han |= (codes >= ord(low)) & (codes <= ord(high))
    return han


@lru_cache(maxsize=8)
def _powers(length: int) -> tuple[np.ndarray, np.ndarray]:
    """B^0 .. B^(length-1) and B^0 .. B^-(length-1) mod 2^64 (B = _NGRAM_BASE), cached per process."""
    with np.errstate(over="ignore"):
        powers = np.cumprod(np.concatenate([[np.uint64(1)], np.full(length - 1, _NGRAM_BASE, np.uint64)]), dtype=np.uint64)
        inverse = np.cumprod(np.concatenate([[np.uint64(1)], np.full(length - 1, _NGRAM_BASE_INVERSE, np.uint64)]), dtype=np.uint64)
    return powers, inverse


def _raw_ngrams(tokens: np.ndarray, sizes: Sequence[int], stream: int) -> list[np.ndarray]:
    """Per size n, every n-gram of `tokens` (token hashes) as sum_k t_k B^(n-1-k) mod 2^64 plus a
    (stream, n) salt, from one prefix sum: with random token hashes, two distinct n-grams collide with
    probability about 2^-64. Not yet mixed."""
    count = len(tokens)
    if not count:
        return [np.zeros(0, np.uint64) for _ in sizes]
    powers, inverse = _powers(1 << max(count, 1).bit_length())
    with np.errstate(over="ignore"):
        prefix = np.concatenate([np.zeros(1, np.uint64), np.cumsum(tokens * inverse[:count], dtype=np.uint64)])
        return [(prefix[n:] - prefix[:count - n + 1]) * powers[n - 1:count] + np.uint64((stream << 32) | n)
                if n <= count else np.zeros(0, np.uint64) for n in sizes]


def ngram_hashes(tokens: np.ndarray, n: int, stream: int) -> np.ndarray:
    """The hash of every n-gram of `tokens` (token hashes) in order; empty when there are fewer than n."""
    return _mix(_raw_ngrams(tokens, [n], stream)[0])


WORDS, HAN_STREAM = 0, 1


def _item_ngrams(texts: Sequence[str], settings: Settings) -> tuple[set[int], set[int], set[tuple[int, int]], tuple[int, int]]:
    """The n-gram hashes of an item whose fields are `texts`, and those of its first field (the
    question): the n-grams of the joined text, plus the item and its question whole where shorter
    than the n-gram size but long enough; and the (stream, length) of those shorter ones. Later
    fields alone (a multiple-choice option, an answer) are no item's identity: "中华人民共和国外交部"
    is an option and a ministry."""
    found: set[int] = set()
    question: set[int] = set()
    short: set[tuple[int, int]] = set()
    lengths = []
    sizes = ((WORDS, settings.word_ngram, settings.min_short_words), (HAN_STREAM, settings.han_ngram, settings.min_short_han))
    for part, into in (("\n".join(texts), found), (texts[0] if texts else "", question)):
        streams = tokenize(part)
        lengths.append([len(tokens.hashes) for tokens in streams])
        for stream, n, min_short in sizes:
            hashes = streams[stream].hashes
            into.update(ngram_hashes(hashes, n, stream).tolist())
            if min_short <= len(hashes) < n:
                into.update(ngram_hashes(hashes, len(hashes), stream).tolist())
                short.add((stream, len(hashes)))
    return found | question, question, short, (lengths[0], lengths[1])


def build_index(items: Sequence[tuple[str, str, Sequence[str]]], benchmarks: Sequence[str], settings: Settings) -> DecontamIndex:
    """The index of `items`: (benchmark, item id, field texts) each."""
    benchmark_number = {name: i for i, name in enumerate(benchmarks)}
    key_parts, item_parts, question_parts = [], [], []
    item_benchmark, item_ids, item_tokens = [], [], []
    short: set[tuple[int, int]] = set()
    for number, (benchmark, item_id, texts) in enumerate(items):
        found, question, lengths, tokens = _item_ngrams(texts, settings)
        short |= lengths
        item_tokens.append(tokens)
        hashes = np.fromiter(found, np.uint64, len(found))
        key_parts.append(hashes)
        item_parts.append(np.full(len(hashes), number, np.int32))
        question_parts.append(np.isin(hashes, np.fromiter(question, np.uint64, len(question))))
        item_benchmark.append(benchmark_number[benchmark])
        item_ids.append(item_id)
    keys = np.concatenate(key_parts) if key_parts else np.zeros(0, np.uint64)
    owners = np.concatenate(item_parts) if item_parts else np.zeros(0, np.int32)
    in_question = np.concatenate(question_parts) if question_parts else np.zeros(0, bool)
    order = np.argsort(keys, kind="stable")
    keys, owners, in_question = keys[order], owners[order], in_question[order]
    _, per_key = np.unique(keys, return_counts=True)
    common = np.repeat(per_key >= settings.max_items_per_ngram, per_key)
    keys, owners, in_question = keys[~common], owners[~common], in_question[~common]
    counts = {name: 0 for name in benchmarks}
    for benchmark, _, _ in items:
        counts[benchmark] += 1
    return DecontamIndex(
        settings=settings, benchmarks=tuple(benchmarks), keys=keys, items=owners, in_question=in_question,
        item_benchmark=np.array(item_benchmark, np.int32), item_ids=item_ids,
        item_ngrams=np.bincount(owners, minlength=len(item_ids)).astype(np.int32),
        question_ngrams=np.bincount(owners[in_question], minlength=len(item_ids)).astype(np.int32),
        item_tokens=np.array([t[0] for t in item_tokens], np.int32).reshape(-1, 2),
        question_tokens=np.array([t[1] for t in item_tokens], np.int32).reshape(-1, 2),
        short_lengths=tuple(sorted(("words" if s == WORDS else "han", n) for s, n in short)),
        dropped_common=int((per_key >= settings.max_items_per_ngram).sum()), counts=counts)


def find(text: str, index: DecontamIndex) -> list[Hit]:
    """The benchmarks and items `text` contains, in benchmark order, with the matched spans."""
    if not len(index.keys) or not text:
        return []
    settings = index.settings
    streams = tokenize(text)
    sizes = [(WORDS, settings.word_ngram), (HAN_STREAM, settings.han_ngram)]
    sizes += [(WORDS if name == "words" else HAN_STREAM, length) for name, length in index.short_lengths]
    segments = []  # (stream, n, first row in `hashes`) of each size's n-grams
    parts, at = [], 0
    for stream in (WORDS, HAN_STREAM):
        lengths = [n for s, n in sizes if s == stream]
        for n, raw in zip(lengths, _raw_ngrams(streams[stream].hashes, lengths, stream), strict=True):
            segments.append((stream, n, at))
            parts.append(raw)
            at += len(raw)
    hashes = _mix(np.concatenate(parts))
    candidates = np.nonzero(index.may_hold(hashes))[0]
    left = np.searchsorted(index.keys, hashes[candidates], "left")
    right = np.searchsorted(index.keys, hashes[candidates], "right")
    firsts = [first for _, _, first in segments]
    by_item: dict[int, list[_Match]] = {}
    for row_at, low, high in zip(candidates.tolist(), left.tolist(), right.tolist(), strict=True):
        if low == high:
            continue
        stream, n, first = segments[bisect_right(firsts, row_at) - 1]
        tokens, position = streams[stream], row_at - first
        for row in range(low, high):
            by_item.setdefault(int(index.items[row]), []).append(_Match(
                int(hashes[row_at]), bool(index.in_question[row]), stream, n, position,
                int(tokens.starts[position]), int(tokens.ends[position + n - 1])))
    hit = {item for item, matches in by_item.items() if _is_hit(item, matches, index)}
    hits = []
    for number, benchmark in enumerate(index.benchmarks):
        items = sorted((item for item in hit if index.item_benchmark[item] == number), key=lambda i: index.item_ids[i])
        if not items:
            continue
        chosen = [m for item in items for m in by_item[item]]
        hits.append(Hit(benchmark, tuple(index.item_ids[i] for i in items), len({m.ngram for m in chosen}),
                        tuple(merge_spans([(m.start, m.end) for m in chosen]))))
    return hits


@dataclass(frozen=True)
class _Match:
    ngram: int
    in_question: bool
    stream: int
    n: int
    position: int  # of the n-gram in the document's stream
    start: int
    end: int


def _covered_tokens(matches: Sequence[_Match]) -> int:
    """The tokens of an item the document holds: each run of consecutive matching n-grams covers its
    length plus n - 1 tokens; a run repeating n-grams already counted (a quote seen twice) counts once."""
    seen: set[frozenset[int]] = set()
    covered = 0
    run: list[_Match] = []
    for match in [*sorted(matches, key=lambda m: (m.stream, m.n, m.position)), None]:
        if run and (match is None or (match.stream, match.n, match.position) != (run[-1].stream, run[-1].n, run[-1].position + 1)):
            ngrams = frozenset(m.ngram for m in run)
            if ngrams not in seen:
                seen.add(ngrams)
                covered += len(run) + run[0].n - 1
            run = []
        if match is not None:
            run.append(match)
    return covered


def _is_hit(item: int, matches: Sequence[_Match], index: DecontamIndex) -> bool:
    """At least `min_matches` distinct n-grams of the item (all it has, when fewer), covering at least
    `min_coverage` of the item's words or Han characters, or of its question's (per stream: a CMMLU
    item's Latin formulas, too few words for a word n-gram, do not dilute its Chinese)."""
    settings = index.settings
    if len({m.ngram for m in matches}) < min(settings.min_matches, int(index.item_ngrams[item])):
        return False
    for totals, in_question in ((index.item_tokens[item], False), (index.question_tokens[item], True)):
        for stream in (WORDS, HAN_STREAM):
            found = [m for m in matches if m.stream == stream and (m.in_question or not in_question)]
            if found and _covered_tokens(found) >= settings.min_coverage * int(totals[stream]):
                return True
    return False


def merge_spans(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching [start, end) spans as one, in order."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def cut_spans(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """`text` without the characters of `spans`, except line breaks, so a text's lines (and any line
    scores aligned with them) keep their count."""
    pieces, at = [], 0
    for start, end in merge_spans(spans):
        pieces.append(text[at:start])
        pieces.append("\n" * text.count("\n", start, end))
        at = max(at, end)
    pieces.append(text[at:])
    return "".join(pieces)


def read_items(benchmark: Benchmark) -> Iterator[tuple[str, list[str]]]:
    """(item id, field texts) of every item of `benchmark`; BenchmarkError naming the benchmark, the
    file and the field when a file is missing or lacks a field."""
    where = f"decontam.benchmarks.{benchmark.name}"
    path = Path(benchmark.path)
    if path.is_dir() and (path / "state.json").is_file():  # a datasets Dataset (save_to_disk): its files in order
        files = [path / entry["filename"] for entry in json.loads((path / "state.json").read_text()).get("_data_files", [])]
        if not files:
            raise BenchmarkError(f"{where}.path: {path}/state.json names no data files")
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(FORMATS))
        if not files:
            raise BenchmarkError(f"{where}.path: {path} holds no {', '.join(FORMATS)} file")
    elif path.is_file():
        files = [path]
    else:
        raise BenchmarkError(f"{where}.path: no such file or directory: {path}")
    if not benchmark.fields:
        raise BenchmarkError(f"{where}.fields: name at least one field holding the item's text")
    for file in files:
        prefix = f"{file.relative_to(path).as_posix()}:" if path.is_dir() else ""
        for row_number, row in enumerate(_rows(file)):
            if row_number == 0:
                wanted = [*benchmark.fields, *([benchmark.id_field] if benchmark.id_field else [])]
                missing = [name for name in wanted if name not in row]
                if missing:
                    raise BenchmarkError(f"{where}: {file} has no field {', '.join(missing)} "
                                         f"(its fields: {', '.join(map(str, row))})")
            item_id = str(row[benchmark.id_field]) if benchmark.id_field else f"{prefix}{row_number}"
            yield item_id, [str(row[name]) for name in benchmark.fields if row.get(name) is not None]


def _rows(file: Path) -> Iterator[dict]:
    name = file.name
    try:
        if name.endswith(".parquet"):
            import pyarrow.parquet as pq

            yield from pq.read_table(file).to_pylist()
        elif name.endswith(".arrow"):
            import pyarrow as pa

            with pa.memory_map(str(file)) as source:
                for batch in pa.ipc.open_stream(source):
                    yield from batch.to_pylist()
        elif name.endswith(".csv"):
            with file.open(encoding="utf-8", newline="") as handle:
                yield from csv.DictReader(handle)
        else:
            opener = gzip.open if name.endswith(".gz") else open
            with opener(file, "rt", encoding="utf-8") as handle:
                for line in handle:
                    if line.strip():
                        yield json.loads(line)
    except (OSError, ValueError, UnicodeDecodeError, csv.Error) as exc:
        raise BenchmarkError(f"{file}: cannot read it as {name.rsplit('.', 1)[-1]} ({exc})") from None


def load_index(benchmarks: Sequence[Benchmark], settings: Settings) -> DecontamIndex:
    """Every configured benchmark's items read and indexed."""
    items = [(b.name, item_id, texts) for b in benchmarks for item_id, texts in read_items(b)]
    return build_index(items, [b.name for b in benchmarks], settings)


def benchmarks_digest(benchmarks: Sequence[Benchmark], settings: Settings) -> str:
    """A content hash of the benchmark files and the matching settings (what the tag columns depend on)."""
    digest = hashlib.sha256(repr(settings).encode())
    for benchmark in benchmarks:
        digest.update(repr((benchmark.name, benchmark.fields, benchmark.id_field)).encode())
        path = Path(benchmark.path)
        for file in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
            with file.open("rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]

