"""Text normalization shared by exact dedup (MD5, stage 1) and fuzzy dedup (MinHash, stage 2).

dots.llm1 normalizes before hashing: all punctuation removed, Unicode NFD, lowercase, whitespace
collapsed. Two pages that differ only in those respects hash the same.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sys
import unicodedata

_WHITESPACE = re.compile(r"\s+")


@functools.cache
def _punctuation_table() -> dict[int, None]:
    """Every code point whose Unicode category is P* (Pc Pd Pe Pf Pi Po Ps), mapped to deletion.

    Built on first use (about 0.2 s), not at import.
    """
    return dict.fromkeys(i for i in range(sys.maxunicode + 1) if unicodedata.category(chr(i)).startswith("P"))


@functools.cache
def jieba_segmenter():
    """jieba, initialised once per process and quiet: its "Building prefix dict" chatter would go to
    every executor's log."""
    import jieba

    jieba.setLogLevel(60)
    jieba.initialize()
    return jieba


def normalize_text(text: str) -> str:
    """`text` without punctuation, in NFD, lowercased, with runs of whitespace turned into one space."""
    text = unicodedata.normalize("NFD", text)
    text = text.translate(_punctuation_table())
    text = text.lower()
    return _WHITESPACE.sub(" ", text).strip()


def text_md5(text: str) -> str:
    """Hex MD5 of `normalize_text(text)`: the exact-dedup key."""
    return hashlib.md5(normalize_text(text).encode("utf-8")).hexdigest()
