"""What the duplicate-cluster table says of each member: its estimated Jaccard with the kept document
and a bounded line diff from the kept text to its own (schemas.clusters)."""

from __future__ import annotations

import difflib
import os

import numpy as np

KEPT_RULE = "smallest doc_id"  # jobs.rules: a connected component's minimum doc_id stays, the others are rejects
DIFF_MAX_CHARS = 2_000  # of the whole diff: enough to see what changed, small enough to store per member
DIFF_LINE_CHARS = 300  # of one changed line: web text often holds a paragraph per line
DIFF_MAX_LINES = 2_000  # of each text compared: difflib is quadratic in the worst case


def estimated_jaccard(signature: np.ndarray, other: np.ndarray) -> float:
    """The share of equal MinHash values: an unbiased estimate of the two shingle sets' Jaccard."""
    return float(np.count_nonzero(signature == other)) / len(signature)


def line_diff(kept_text: str, member_text: str) -> str:
    """The lines that differ from `kept_text` to `member_text`: per changed block an `@@ kept line K, member
    line M` header, then each removed line (`-`) beside the one that replaced it (`+`), cut to DIFF_LINE_CHARS
    around where the pair first differs; the whole cut at DIFF_MAX_CHARS, saying so. "" when the lines are equal."""
    kept, member = kept_text.splitlines()[:DIFF_MAX_LINES], member_text.splitlines()[:DIFF_MAX_LINES]
    out: list[str] = []
    for tag, k1, k2, m1, m2 in difflib.SequenceMatcher(None, kept, member, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        out.append(f"@@ kept line {k1 + 1}, member line {m1 + 1}")
        removed, added = kept[k1:k2], member[m1:m2]
        for index in range(max(len(removed), len(added))):
            old = removed[index] if index < len(removed) else None
            new = added[index] if index < len(added) else None
            if old is not None:
                out.append("-" + _excerpt(old, new or ""))
            if new is not None:
                out.append("+" + _excerpt(new, old or ""))
    text = "\n".join(out)
    if len(text) <= DIFF_MAX_CHARS:
        return text
    return text[:DIFF_MAX_CHARS].rsplit("\n", 1)[0] + f"\n… (diff cut at {DIFF_MAX_CHARS:,} characters)"


def _excerpt(line: str, other: str) -> str:
    """`line` cut to DIFF_LINE_CHARS, starting a little before where it first differs from `other`."""
    if len(line) <= DIFF_LINE_CHARS:
        return line
    start = max(0, len(os.path.commonprefix([line, other])) - DIFF_LINE_CHARS // 4)
    piece = line[start:start + DIFF_LINE_CHARS]
    return ("…" if start else "") + piece + ("…" if start + DIFF_LINE_CHARS < len(line) else "")
