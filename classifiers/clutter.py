"""Web clutter: each line of a document scored 0..1 for informational value; lines under the
threshold (config `select.line_thresholds.clutter`) are removed by stage 3's select step.

The model is a two-label line classifier (`keep` / `clutter`); a line's score is P(keep). It sees
`line_input`: the line plus coarse length and position markers, since navigation and footers are
short and sit at the edges. `weak_clutter_label` is the transparent rule set (DCLM/C4-style line
heuristics) that labels lines for the bootstrap model; ambiguous lines get no label.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from classifiers.base import TextClassifier
from pipeline.lexicon import COLONS, clutter_phrases, ends_sentence, estimated_words

KEEP, CLUTTER = "keep", "clutter"
LINE_CHARS = 1000  # a line's prefix that the model sees; long lines are prose anyway

_LETTER = re.compile(r"[^\W\d_]")
_COUNTER = re.compile(r"^\s*[\d,.]+\s*(views?|comments?|likes?|shares?|replies|次|条|人|阅读|评论|点赞|收藏|浏览)", re.IGNORECASE)
_SEPARATORS = re.compile(r"[|·›»>/•]")


def _bucket(value: int, edges: Sequence[int]) -> int:
    return sum(value >= edge for edge in edges)


def line_input(line: str, index: int, count: int) -> str:
    """What the line model sees: length and position markers, then the line."""
    position = "first" if index < 3 else "last" if index >= count - 3 else "middle"
    return f"len{_bucket(estimated_words(line), (3, 8, 20, 50))} pos_{position} {line[:LINE_CHARS]}"


def weak_clutter_label(line: str) -> tuple[str, str] | None:
    """(keep | clutter, rule) for clear cases, None for lines the rules cannot call."""
    stripped = line.strip()
    if not stripped:
        return None
    words = estimated_words(stripped)
    boilerplate = clutter_phrases()
    ends_sentence_or_colon = ends_sentence(stripped, also=COLONS)
    letters = _LETTER.findall(stripped)
    if not letters:
        return CLUTTER, "no_letters"
    if _COUNTER.search(stripped):
        return CLUTTER, "counter"
    if words < 12 and boilerplate.search(stripped):
        return CLUTTER, "boilerplate_phrase"
    upper = sum(ch.isupper() for ch in letters)
    if len(letters) >= 4 and upper / len(letters) > 0.5 and words < 12:
        return CLUTTER, "mostly_uppercase"
    if len(_SEPARATORS.findall(stripped)) >= 3 and words < 20:
        return CLUTTER, "navigation_separators"
    if words < 3 and not ends_sentence_or_colon:
        return CLUTTER, "short_no_punctuation"
    if words >= 6 and ends_sentence_or_colon and not boilerplate.search(stripped):
        return KEEP, "sentence_line"
    return None


@dataclass
class CleanedText:
    text: str
    removed: list[tuple[str, float]]  # (line, score) of each removed line


def line_scores(texts: Sequence[str], model: TextClassifier, label: str = KEEP) -> list[list[float | None]]:
    """P(`label`) of each line of each text, aligned with text.split("\n"); blank lines are not scored
    (None). One model call for all lines of the batch."""
    inputs: list[str] = []
    where: list[tuple[int, int]] = []
    split = [(text or "").split("\n") for text in texts]
    for doc, lines in enumerate(split):
        for index, line in enumerate(lines):
            if line.strip():
                inputs.append(line_input(line, index, len(lines)))
                where.append((doc, index))
    scores = model.label_scores(inputs, label) if inputs else []
    result: list[list[float | None]] = [[None] * len(lines) for lines in split]
    for (doc, index), score in zip(where, scores, strict=True):
        result[doc][index] = float(score)
    return result


def remove_lines(text: str, scores: Sequence[float | None], threshold: float) -> CleanedText:
    """`text` without the lines whose score is below `threshold`; blank (unscored) lines stay, so
    paragraph breaks survive, and a text with nothing to remove comes back unchanged."""
    lines = (text or "").split("\n")
    if len(lines) != len(scores):
        raise ValueError(f"{len(scores)} line scores for a text of {len(lines)} lines")
    kept, removed = [], []
    for line, score in zip(lines, scores, strict=True):
        if score is not None and score < threshold:
            removed.append((line, score))
        else:
            kept.append(line)
    return CleanedText("\n".join(kept).strip() if removed else (text or ""), removed)


def remove_clutter(texts: Sequence[str], model: TextClassifier, threshold: float) -> list[CleanedText]:
    """Drop lines of each text scoring below `threshold` (scores from `line_scores`)."""
    return [remove_lines(text, scores, threshold) for text, scores in zip(texts, line_scores(texts, model), strict=True)]
