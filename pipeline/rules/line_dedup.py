"""Per-document side of cross-document line dedup (dots.llm1 stage 2, step 1).

The job counts each edge line's key over the whole dataset; this module decides which lines of a
document are candidates and deletes the ones the count condemned. Boilerplate (cookie banners,
"Share this article", site footers) lives at the edges of a page, so only the first and last few
content lines are counted.
"""

from __future__ import annotations

from collections.abc import Iterable


def line_key(line: str) -> str | None:
    """What identical lines share (the line without surrounding whitespace); None for lines that are
    empty or only whitespace and symbols, which are never counted or removed."""
    stripped = line.strip()
    if not any(ch.isalnum() for ch in stripped):
        return None
    return stripped


def edge_lines(text: str, edge: int) -> list[tuple[int, str, str]]:
    """(line index, key, line) of the first `edge` and last `edge` content lines of `text`.

    Indices count every line of ``text.split("\\n")``; blank and symbol-only lines are skipped and
    do not use up the budget. A line in both the head and the tail is listed once.
    """
    if edge <= 0 or not text:
        return []
    content = []
    for index, line in enumerate(text.split("\n")):
        key = line_key(line)
        if key is not None:
            content.append((index, key, line))
    if len(content) <= 2 * edge:
        return content
    return content[:edge] + content[-edge:]


def remove_lines(text: str, line_indices: Iterable[int]) -> tuple[str, list[str]]:
    """`text` without the lines at `line_indices` (indices into ``text.split("\\n")``), and the removed lines."""
    doomed = set(line_indices)
    if not doomed:
        return text, []
    kept, removed = [], []
    for index, line in enumerate(text.split("\n")):
        (removed if index in doomed else kept).append(line)
    return "\n".join(kept), removed
