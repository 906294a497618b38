"""Web clutter: each line of a document scored 0..1 for informational value; lines under the
threshold (config `select.line_thresholds.clutter`) are removed by stage 3's select step.

The model is a two-label line classifier (`keep` / `clutter`); a line's score is P(keep). It sees
`line_input`: the line's words after marker tokens for what the words do not say: its place in the
document and its length (navigation and footers are short and sit at the edges), its share of punctuation, digits and link-like tokens, and the kind of HTML element it
came from (stage 1's `line_origins`: list items and table cells are the usual clutter). The shipped
model (`default_models/clutter/`) learned these from lines labelled against real ground truth
(classifiers.line_labels, bench/build_clutter_model.py). `weak_clutter_label` is the transparent
rule set (DCLM/C4-style line heuristics) that labels lines for the bootstrap model when a user brings
neither labels nor the shipped model; ambiguous lines get no label.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from thresher.classifiers.base import TextClassifier
from thresher.pipeline.lexicon import CJK_CHAR, COLONS, clutter_phrases, ends_sentence, estimated_words
from thresher.pipeline.package_files import package_path
from thresher.pipeline.select.batches import NO_GUARDS, CleanedText, LineGuards, remove_lines

KEEP, CLUTTER = "keep", "clutter"
SHIPPED_MODEL = "shipped"  # a tagger model_dir naming the clutter model shipped in default_models/clutter
LINE_CHARS = 1000  # a line's prefix that the model sees; long lines are prose anyway

_LETTER = re.compile(r"[^\W\d_]")
_COUNTER = re.compile(r"^\s*[\d,.]+\s*(views?|comments?|likes?|shares?|replies|次|条|人|阅读|评论|点赞|收藏|浏览)", re.IGNORECASE)
_SEPARATORS = re.compile(r"[|·›»>/•]")


def shipped_model_dir() -> Path:
    """The clutter model shipped with thresher (rebuilt by bench/build_clutter_model.py)."""
    return package_path("classifiers/default_models/clutter")


def _bucket(value: int, edges: Sequence[int]) -> int:
    return sum(value >= edge for edge in edges)


_PUNCTUATION = re.compile(r"[^\w\s]")
_DIGIT = re.compile(r"\d")
_LINK_LIKE = re.compile(r"https?://|www\.|\.(com|org|net|cn|html?)\b|@\w|#\w|[|·›»>/•]")
_LENGTH_EDGES = (3, 8, 20, 50)


def _share_bucket(part: int, whole: int) -> int:
    return _bucket(round(100 * part / whole), (1, 5, 15, 30)) if whole else 0


def line_input(line: str, index: int, count: int, origin: str = "") -> str:
    """What the line model sees: marker tokens (position, length, punctuation, digit and link-like
    shares, sentence end, HTML origin; an empty origin is "none": text stored without origins), then
    the line."""
    position = "first" if index < 3 else "last" if index >= count - 3 else "middle"
    relative = _bucket(round(100 * index / max(count - 1, 1)), (20, 40, 60, 80))
    chars = len(line.strip()) or 1
    markers = (
        f"len{_bucket(estimated_words(line), _LENGTH_EDGES)}",
        f"pos_{position}",
        f"__rel{relative}__",
        f"__punct{_share_bucket(len(_PUNCTUATION.findall(line)), chars)}__",
        f"__digit{_share_bucket(len(_DIGIT.findall(line)), chars)}__",
        f"__link{_bucket(len(_LINK_LIKE.findall(line)), (1, 2, 4))}__",
        f"__end{int(bool(ends_sentence(line, also=COLONS)))}__",
        f"__tag_{origin or 'none'}__",
    )
    return f"{' '.join(markers)} {line[:LINE_CHARS]}"


LINE_FEATURES = (
    "log_chars",
    "log_words",
    "relative_position",
    "first_lines",
    "last_lines",
    "punctuation_share",
    "digit_share",
    "log_link_like",
    "ends_sentence",
    "uppercase_share",
    "cjk_share",
    "repeated_in_document",
    "document_char_share",
    "log_document_lines",
    "boilerplate_phrase",
)


def line_features(lines: Sequence[str]) -> list[list[float]]:
    """Numeric features (LINE_FEATURES, in that order) of each line of one document: the same
    measurements as `line_input`'s markers, unbucketed, plus what only the whole document tells
    (a line repeated in it, its share of the document's characters, the document's length)."""
    stripped = [line.strip() for line in lines]
    repeats = Counter(line for line in stripped if line)
    total_chars = sum(len(line) for line in stripped) or 1
    count = len(lines)
    boilerplate = clutter_phrases()
    rows = []
    for index, line in enumerate(stripped):
        chars = len(line) or 1
        letters = _LETTER.findall(line)
        words = estimated_words(line)
        rows.append(
            [
                math.log1p(len(line)) / 7,
                math.log1p(words) / 5,
                index / max(count - 1, 1),
                float(index < 3),
                float(index >= count - 3),
                len(_PUNCTUATION.findall(line)) / chars,
                len(_DIGIT.findall(line)) / chars,
                math.log1p(len(_LINK_LIKE.findall(line))),
                float(bool(line) and ends_sentence(line, also=COLONS)),
                sum(ch.isupper() for ch in letters) / len(letters) if letters else 0.0,
                len(CJK_CHAR.findall(line)) / chars,
                float(repeats[line] > 1),
                len(line) / total_chars,
                math.log1p(count) / 7,
                float(words < 12 and bool(boilerplate.search(line))),
            ]
        )
    return rows


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


def line_scores(
    texts: Sequence[str], model: TextClassifier, label: str = KEEP, origins: Sequence[Sequence[str] | None] | None = None
) -> list[list[float | None]]:
    """P(`label`) of each line of each text, aligned with text.split("\n"); blank lines are not scored
    (None). One model call for all lines of the batch. `origins` (optional, per text) are stage 1's
    line origins (pipeline.prepare.extract.extract_with_origins). A model that scores whole documents (the
    line_sequence backend: `scores_documents`) gets the texts themselves and no origins."""
    if getattr(model, "scores_documents", False):
        return model.document_line_scores(texts, label)
    split = [(text or "").split("\n") for text in texts]
    inputs: list[str] = []
    where: list[tuple[int, int]] = []
    for doc, lines in enumerate(split):
        doc_origins = origins[doc] if origins is not None and origins[doc] is not None else ()
        for index, line in enumerate(lines):
            if line.strip():
                inputs.append(line_input(line, index, len(lines), doc_origins[index] if index < len(doc_origins) else ""))
                where.append((doc, index))
    scores = model.label_scores(inputs, label) if inputs else []
    result: list[list[float | None]] = [[None] * len(lines) for lines in split]
    for (doc, index), score in zip(where, scores, strict=True):
        result[doc][index] = float(score)
    return result


def remove_clutter(
    texts: Sequence[str],
    model: TextClassifier,
    threshold: float,
    origins: Sequence[Sequence[str] | None] | None = None,
    guards: LineGuards = NO_GUARDS,
) -> list[CleanedText]:
    """Drop lines of each text scoring below `threshold` (scores from `line_scores`), except those
    `guards` keep (select applies `LineGuards()`, its configured defaults; here they are off unless given)."""
    scored = line_scores(texts, model, origins=origins)
    return [remove_lines(text, scores, threshold, guards) for text, scores in zip(texts, scored, strict=True)]
