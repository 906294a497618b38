"""The text vocabulary every step shares: which characters are CJK, which marks end a sentence, how
words are estimated without a tokenizer, and the phrase lists (files under configs/) that mark
boilerplate lines.

One definition each, so that a rule, a weak labeler and a model input agree on what "a Chinese
character" or "a sentence end" is.
"""

from __future__ import annotations

import re
from pathlib import Path

from thresher.pipeline.package_files import package_path
from thresher.pipeline.process_cache import ProcessCache

# Han ideographs: CJK Unified Ideographs Extension A, the URO block, Compatibility Ideographs.
HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
KANA = "\u3040-\u30ff"  # Hiragana and Katakana: no spaces between words either
HAN_CHAR = re.compile(f"[{HAN}]")
HAN_RUN = re.compile(f"[{HAN}]+")
CJK_CHAR = re.compile(f"[{KANA}{HAN}]")

# What closes a sentence, Western and CJK (DataTrove's TERMINAL_PUNCTUATION, abridged): the marks
# that end one, clause ends DataTrove counts too, and closing quotes and brackets after either.
SENTENCE_END_MARKS = ".!?。！？…"
CLAUSE_END_MARKS = ";；"
CLOSING_MARKS = '"”’\'」』)）'
TERMINAL_PUNCTUATION = tuple(SENTENCE_END_MARKS + CLAUSE_END_MARKS + CLOSING_MARKS)
COLONS = ":："  # a line ending in one introduces what follows (a list, a quote)
# Splitting a line into sentences: English after . ! ? and a space; Chinese after its full-width ends.
EN_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+")
ZH_SENTENCE_SPLIT = re.compile(r"(?<=[。！？!?])")

CLUTTER_PHRASES_FILE = "configs/boilerplate/clutter_lines.txt"  # in the package (pipeline.package_files)

_PATTERNS = ProcessCache()


def ends_sentence(line: str, also: str = "") -> bool:
    """Whether `line` ends (trailing white space aside) in terminal punctuation, or in one of `also`."""
    return line.rstrip().endswith(TERMINAL_PUNCTUATION + tuple(also))


def estimated_words(line: str) -> int:
    """Words for spaced scripts; Han characters count as half a word each (about two per word)."""
    return len(line.split()) + len(HAN_CHAR.findall(line)) // 2


def read_list(path: str | Path) -> list[str]:
    """Non-empty, non-comment lines of a list file (utf-8; undecodable bytes replaced)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        return [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]


def _compile_phrases(path: str | Path) -> re.Pattern:
    return re.compile("|".join(f"(?:{entry})" for entry in read_list(path)), re.IGNORECASE)


def phrase_pattern(path: str | Path) -> re.Pattern:
    """One case-insensitive regex matching any line of the phrase file `path` (each a regex), read
    and compiled once per process."""
    return _PATTERNS.by_path(path, _compile_phrases)


def clutter_phrases() -> re.Pattern:
    """The clutter weak labeler's boilerplate phrases (`CLUTTER_PHRASES_FILE`), once per process;
    called per line, so keyed by the constant rather than by a resolved path."""
    return _PATTERNS.get(CLUTTER_PHRASES_FILE, lambda: _compile_phrases(package_path(CLUTTER_PHRASES_FILE)))
