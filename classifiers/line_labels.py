"""Keep/clutter labels for the lines of an extraction, from a page's main-text ground truth.

Matching works on normalised text (NFKC, lowercase, whitespace collapsed) in units that suit the
script: spaced scripts in words (\\w+ tokens), CJK in characters. A line is compared with the ground
truth by shingle coverage: the share of its shingles (3 words, or 3 characters in a line that is
mostly CJK) that occur in the ground truth.

- Whole-text ground truth (magic_html `content`, scrapinghub `articleBody`): a line is `keep` when at
  least KEEP_COVERAGE of its shingles occur in the ground truth (a line that is half content is kept:
  removing it would lose that content), `clutter` below CLUTTER_COVERAGE, unlabelled in between. A line
  too short for one shingle is `keep` only when it is a whole line of the ground truth (a heading, a
  byline), else `clutter`: short strings such as "Home" occur inside any long text. A line repeated
  in the extraction is `keep` only as often as its text occurs in the ground truth; the extra copies
  are `clutter`.
- Snippet ground truth (trafilatura `with` / `without`): a line that contains a `without` snippet, or
  is a (non-trivial) part of one, is `clutter`; one that contains or is part of a `with` snippet is
  `keep`; other lines are unlabelled (the ground truth says nothing about them).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

from thresher.classifiers.clutter import CLUTTER, KEEP

KEEP_COVERAGE = 0.5
CLUTTER_COVERAGE = 0.2
SHINGLE = 3
MIN_SNIPPET_PART = 12  # characters of a line that is part of a snippet (shorter: too ambiguous)
_WORD = re.compile(r"\w+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text or "").lower()).strip()


def _is_cjk(text: str) -> bool:
    letters = _WORD.findall(text)
    chars = sum(len(word) for word in letters)
    return bool(chars) and len(_CJK.findall(text)) * 2 >= chars


def units(text: str) -> list[str]:
    """Matching units of normalised text: characters for CJK text, words otherwise."""
    if _is_cjk(text):
        return [ch for ch in text if not ch.isspace() and (ch.isalnum() or _CJK.match(ch))]
    return _WORD.findall(text)


def shingles(unit_list: Sequence[str]) -> list[tuple[str, ...]]:
    return [tuple(unit_list[i : i + SHINGLE]) for i in range(len(unit_list) - SHINGLE + 1)]


class ContentMatcher:
    """Labels lines against one page's whole main text."""

    def __init__(self, truth: str):
        self.truth = normalize(truth)
        self.lines = Counter(normalize(line) for line in (truth or "").split("\n") if line.strip())
        # both unit kinds: an English line on a Chinese page (or the reverse) is matched in its own units
        self.shingles = set(shingles(_WORD.findall(self.truth))) | set(shingles(_cjk_chars(self.truth)))

    def coverage(self, line: str) -> float | None:
        """Share of the line's shingles found in the ground truth; None for a line shorter than one."""
        line_shingles = shingles(units(normalize(line)))
        if not line_shingles:
            return None
        return sum(s in self.shingles for s in line_shingles) / len(line_shingles)

    def label(self, line: str) -> str | None:
        coverage = self.coverage(line)
        if coverage is None:
            return KEEP if normalize(line) in self.lines else CLUTTER
        if coverage >= KEEP_COVERAGE:
            return KEEP
        return CLUTTER if coverage < CLUTTER_COVERAGE else None

    def occurrences(self, line: str) -> int:
        """How often the line's text may be kept: its count in the ground truth (at least 1 when a
        ground-truth line is the same, since lines may be normalised differently)."""
        text = normalize(line)
        return max(self.truth.count(text), 1 if text in self.lines else 0)


def _cjk_chars(text: str) -> list[str]:
    return [ch for ch in text if _CJK.match(ch) or (ch.isalnum() and not ch.isspace())]


def content_labels(lines: Sequence[str], truth: str) -> list[str | None]:
    """Label of each line (None for blank or ambiguous lines) against whole-text ground truth."""
    matcher = ContentMatcher(truth)
    kept: Counter = Counter()
    labels: list[str | None] = []
    for line in lines:
        if not line.strip():
            labels.append(None)
            continue
        label = matcher.label(line)
        if label == KEEP:
            key = normalize(line)
            kept[key] += 1
            if kept[key] > 1 and kept[key] > matcher.occurrences(line):
                label = CLUTTER
        labels.append(label)
    return labels


def snippet_labels(lines: Sequence[str], with_snippets: Sequence[str], without_snippets: Sequence[str]) -> list[str | None]:
    """Label of each line against trafilatura-style snippets (None when no snippet touches it)."""
    wanted = [normalize(s) for s in with_snippets if s.strip()]
    unwanted = [normalize(s) for s in without_snippets if s.strip()]

    def touches(line: str, snippets: list[str]) -> bool:
        return any(s in line or (len(line) >= MIN_SNIPPET_PART and line in s) for s in snippets)

    labels: list[str | None] = []
    for line in lines:
        text = normalize(line)
        if not text:
            labels.append(None)
        elif touches(text, unwanted):
            labels.append(CLUTTER)
        elif touches(text, wanted):
            labels.append(KEEP)
        else:
            labels.append(None)
    return labels


def page_line_labels(lines: Sequence[str], source: str, truth: dict) -> list[str | None]:
    """Labels for the lines of one page from its ground-truth record of `source` (trafilatura,
    magic_html or scrapinghub, as in the shared data's extraction/ground-truth.json)."""
    if source == "trafilatura":
        return snippet_labels(lines, truth.get("with", []), truth.get("without", []))
    if source == "magic_html":
        return content_labels(lines, truth.get("content", ""))
    if source == "scrapinghub":
        return content_labels(lines, truth.get("articleBody", ""))
    raise ValueError(f"unknown ground-truth source {source!r} (known: trafilatura, magic_html, scrapinghub)")
