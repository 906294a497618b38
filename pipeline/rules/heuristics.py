"""Heuristic document filters of stage 2 (RefinedWeb / Gopher / C4 / FineWeb families).

Each rule family is a `DocumentFilter` returning None (keep) or `Drop("<family>:<reason>", value)`;
`judge_documents` runs them in order and returns each family's documents seen, dropped and seconds.
A document is looked at through one `DocumentView`, built once and shared by every rule: lines,
paragraphs and words are split (and, for Chinese, segmented with jieba) at most once per document.
Chinese documents use the character / jieba-word forms of the word rules, so text without spaces is
judged on its words, not dropped for having "one word".

The one rule that needs a language's own words, Gopher's stop words, uses English's (the config's)
for `en` and documents without lang, `rules.zh.stop_words_file` for `zh`, and for any other language
the list the `stopwordsiso` package has for it (curated lists for 50-odd ISO 639-1 languages, MIT);
where it has none, or the language is written without spaces between words (`ja`, `th`: whitespace
words are not words there), the check is skipped and counted as
`gopher_quality:stop_words:skipped:<why>:<lang>` in the rule stats (stats.json `rules`, the report).
Other word lists (spam terms, prompt and policy phrases, "lorem ipsum") only ever drop on a match,
so a language they do not cover is judged less strictly, never dropped for it.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from thresher.pipeline.config import RulesConfig
from thresher.pipeline.filters import DocumentFilter, Drop, RuleStats, first_drop, take_stats
from thresher.pipeline.lexicon import (
    EN_SENTENCE_SPLIT,
    TERMINAL_PUNCTUATION,
    ZH_SENTENCE_SPLIT,
    phrase_pattern,
    read_list,
)
from thresher.pipeline.text import jieba_segmenter

# Written without spaces between words: whitespace splitting yields phrases, not words, so a stop-word
# count over them means nothing (Chinese has jieba; these have no segmenter here).
UNSEGMENTED_LANGUAGES = frozenset({"ja", "th", "lo", "km", "my", "bo"})


@functools.cache
def stop_words_for(lang: str) -> frozenset[str] | None:
    """stopwordsiso's stop words for `lang` (ISO 639-1), lowercased, one-word entries only; None where
    the package has no list for it."""
    import stopwordsiso

    if not lang or not stopwordsiso.has_lang(lang):
        return None
    words = frozenset(w.lower() for w in stopwordsiso.stopwords(lang) if w.strip() and len(w.split()) == 1)
    return words or None

BULLETS = ("•", "-", "*", "·", "●", "◆", "■", "▪", "►", "–")
ELLIPSES = ("...", "…")
_PARAGRAPH_BREAK = re.compile(r"\n{2,}")
_LINE_BREAKS = re.compile(r"\n+")
_WIKI_DIFF_MARKERS = re.compile(
    r"Difference between revisions|Revision as of|\(diff\)|\(hist\)|← Older edit|Newer edit →|Line \d+: Line \d+:"
)
_CODE_DIFF_HUNK = re.compile(r"^@@ -\d+(,\d+)? \+\d+(,\d+)? @@", re.MULTILINE)
_CODE_DIFF_HEADER = re.compile(r"^(diff --git |\+\+\+ |--- a/|index [0-9a-f]{7,}\.\.)", re.MULTILINE)
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class RuleResources:
    """Word lists and patterns the rules need, read once per process from the config's files."""

    stop_words_en: frozenset[str]
    stop_words_zh: frozenset[str]
    spam_terms: tuple[str, ...]
    spam_patterns: tuple[re.Pattern, ...]
    prompt_line: re.Pattern  # any ad / sign-up / login prompt phrase
    policy_line: re.Pattern  # any cookie / terms notice phrase


def load_resources(rules: RulesConfig, resolve) -> RuleResources:
    """Read the files the rules name; `resolve` maps a config path to a real one (Config.resolve_path)."""
    return RuleResources(
        stop_words_en=frozenset(w.lower() for w in rules.gopher_quality.stop_words),
        stop_words_zh=frozenset(read_list(resolve(rules.zh.stop_words_file))),
        spam_terms=tuple(t.lower() for t in read_list(resolve(rules.spam.terms_file))),
        spam_patterns=tuple(re.compile(p, re.IGNORECASE) for p in read_list(resolve(rules.spam.patterns_file))),
        prompt_line=phrase_pattern(resolve(rules.spam.prompt_lines_file)),
        policy_line=phrase_pattern(resolve(rules.c4.policy_lines_file)),
    )


def _has_alnum(token: str) -> bool:
    return any(ch.isalnum() for ch in token)


class DocumentView:
    """One document split every way the rules need, each split made on first use and then kept."""

    def __init__(self, text: str, lang: str | None = None, url: str | None = None):
        self.text = text or ""
        self.lang = lang
        self.url = url or ""
        self.is_zh = lang == "zh"

    @classmethod
    def of(cls, doc: Mapping[str, Any] | DocumentView) -> DocumentView:
        if isinstance(doc, DocumentView):
            return doc
        return cls(doc.get("text") or "", doc.get("lang"), doc.get("url"))

    @functools.cached_property
    def lines(self) -> list[str]:
        """Non-blank lines, as written (not stripped)."""
        return [line for line in self.text.split("\n") if line.strip()]

    @functools.cached_property
    def lower(self) -> str:
        return self.text.lower()

    @functools.cached_property
    def words(self) -> list[str]:
        """Whitespace words; for Chinese, jieba words without whitespace and punctuation tokens."""
        if self.is_zh:
            return [t for t in jieba_segmenter().lcut(self.text) if _has_alnum(t)]
        return self.text.split()

    @functools.cached_property
    def content_words(self) -> list[str]:
        """Words with at least one letter or digit (Gopher's "non-symbol words")."""
        return self.words if self.is_zh else [w for w in self.words if _has_alnum(w)]

    def ngrams(self, n: int) -> list[str]:
        joiner = "" if self.is_zh else " "
        words = self.words
        return [joiner.join(words[i : i + n]) for i in range(len(words) - n + 1)]


def _duplicates(elements: Sequence[str]) -> tuple[int, int]:
    """(number of repeated elements, characters in them), first occurrences not counted (Gopher)."""
    seen: set[str] = set()
    count = chars = 0
    for element in elements:
        if element in seen:
            count += 1
            chars += len(element)
        else:
            seen.add(element)
    return count, chars


def _duplicated_ngram_chars(words: Sequence[str], n: int) -> int:
    """Characters covered by repeated n-grams, counting a repeat's span once (Gopher / DataTrove)."""
    seen: set[str] = set()
    repeated = index = 0
    while index < len(words) - n + 1:
        ngram = "".join(words[index : index + n])
        if ngram in seen:
            repeated += len(ngram)
            index += n
        else:
            seen.add(ngram)
            index += 1
    return repeated


def _snippet(line: str, at: int, width: int = 80) -> str:
    """Up to `width` characters of `line` around position `at`, stripped."""
    start = max(0, at - width // 2)
    return line[start : start + width].strip()


def _line_at(text: str, at: int) -> str:
    """'line N: <snippet>' for the character at `at` of `text` (lines counted from 1, blank ones too)."""
    number = text.count("\n", 0, at) + 1
    line_start = text.rfind("\n", 0, at) + 1
    line_end = text.find("\n", at)
    line = text[line_start : line_end if line_end >= 0 else len(text)]
    return f"line {number}: {_snippet(line, at - line_start)}"


class HeuristicFilter(DocumentFilter):
    """A rule family: `check(view)` returns None or (reason, value); the Drop is `name:reason`."""

    def judge(self, doc: Mapping[str, Any] | DocumentView) -> Drop | None:
        verdict = self.check(DocumentView.of(doc))
        if verdict is None:
            return None
        reason, value = verdict
        return Drop(f"{self.name}:{reason}", str(value))

    def check(self, view: DocumentView) -> tuple[str, Any] | None:
        raise NotImplementedError


class EmptyFilter(HeuristicFilter):
    name = "empty"

    def check(self, view):
        if not view.text.strip():
            return "no_text", f"{len(view.text)} characters, all whitespace" if view.text else "0 characters"
        if not view.content_words:
            return "no_words", view.text[:80]
        return None


class UrlMetaFilter(HeuristicFilter):
    """URL shapes of junk pages: overlong URLs, bare IP hosts, digit-heavy hosts of spam farms."""

    name = "url_meta"

    def __init__(self, rules: RulesConfig):
        super().__init__()
        self.max_url_length = rules.max_url_length
        self.max_host_digits = rules.max_host_digits

    def check(self, view):
        if not view.url:
            return None
        if len(view.url) > self.max_url_length:
            return "url_too_long", len(view.url)
        host = (urlsplit(view.url).hostname or "").rstrip(".")
        try:
            ipaddress.ip_address(host)
            return "ip_host", host
        except ValueError:
            pass
        digits = sum(ch.isdigit() for ch in host)
        if digits > self.max_host_digits:
            return "digit_host", host
        return None


class SpamFilter(HeuristicFilter):
    """Gambling / casino terms and patterns anywhere; pages made mostly of ad and sign-in prompts."""

    name = "spam"

    def __init__(self, rules: RulesConfig, resources: RuleResources):
        super().__init__()
        self.max_prompt_lines_ratio = rules.spam.max_prompt_lines_ratio
        self.terms = resources.spam_terms
        self.patterns = resources.spam_patterns
        self.prompt_line = resources.prompt_line

    def check(self, view):
        lower = view.lower
        for term in self.terms:
            if term in lower:
                return "gambling_term", term
        for pattern in self.patterns:
            match = pattern.search(view.text)
            if match:
                return "gambling_pattern", match.group(0)
        lines = view.lines
        if lines:
            prompts = sum(1 for line in lines if self.prompt_line.search(line))
            if prompts >= 2 and prompts / len(lines) > self.max_prompt_lines_ratio:
                return "prompt_lines", f"{prompts}/{len(lines)}"
        return None


class StructureFilter(HeuristicFilter):
    """Broken decodings, control-character junk, single enormous lines."""

    name = "structure"

    def __init__(self, rules: RulesConfig):
        super().__init__()
        self.config = rules.structure

    def check(self, view):
        length = len(view.text)
        if not length:  # nothing to judge: the empty filter names empty texts, when it runs
            return None
        replacement = view.text.count("\ufffd") / length
        if replacement > self.config.max_replacement_char_ratio:
            return "replacement_chars", f"{replacement:.3f}"
        control = len(_CONTROL_CHARS.findall(view.text)) / length
        if control > self.config.max_control_char_ratio:
            return "control_chars", f"{control:.3f}"
        longest = max((len(line) for line in view.lines), default=0)
        if longest > self.config.max_line_chars:
            return "long_line", longest
        return None


class DiffFilter(HeuristicFilter):
    """Wiki revision-diff pages and source-code diffs: markup of an edit, not prose."""

    name = "diff"

    def check(self, view):
        markers = {m.group(0) for m in _WIKI_DIFF_MARKERS.finditer(view.text)}
        if len(markers) >= 2:
            return "wiki_diff", ", ".join(sorted(markers))
        hunk = _CODE_DIFF_HUNK.search(view.text)
        header = _CODE_DIFF_HEADER.search(view.text) if hunk else None
        if hunk and header:
            return "code_diff", f"{_line_at(view.text, header.start())}; {_line_at(view.text, hunk.start())}"
        return None


class GopherRepetitionFilter(HeuristicFilter):
    name = "gopher_repetition"

    def __init__(self, rules: RulesConfig):
        super().__init__()
        self.config = rules.gopher_repetition

    def check(self, view):
        config, text = self.config, view.text
        length = len(text)
        paragraphs = _PARAGRAPH_BREAK.split(text.strip())
        dup_count, dup_chars = _duplicates(paragraphs)
        if dup_count / len(paragraphs) > config.max_dup_para_frac:
            return "dup_para_frac", f"{dup_count / len(paragraphs):.3f}"
        if dup_chars / length > config.max_dup_para_char_frac:
            return "dup_para_char_frac", f"{dup_chars / length:.3f}"
        lines = _LINE_BREAKS.split(text)
        dup_count, dup_chars = _duplicates(lines)
        if dup_count / len(lines) > config.max_dup_line_frac:
            return "dup_line_frac", f"{dup_count / len(lines):.3f}"
        if dup_chars / length > config.max_dup_line_char_frac:
            return "dup_line_char_frac", f"{dup_chars / length:.3f}"
        for n, limit in sorted(config.top_ngram_char_frac.items()):
            ngrams = view.ngrams(n)
            if not ngrams:
                continue
            top, count = Counter(ngrams).most_common(1)[0]
            share = len(top) * count / length
            if share > limit:
                return f"top_{n}_gram", f"{share:.3f}"
        for n, limit in sorted(config.dup_ngram_char_frac.items()):
            share = _duplicated_ngram_chars(view.words, n) / length
            if share > limit:
                return f"duplicated_{n}_gram", f"{share:.3f}"
        return None


class GopherQualityFilter(HeuristicFilter):
    name = "gopher_quality"

    def __init__(self, rules: RulesConfig, resources: RuleResources):
        super().__init__()
        self.config = rules.gopher_quality
        self.zh = rules.zh
        self.resources = resources

    def check(self, view):
        config = self.config
        words, content = view.words, view.content_words
        min_words = self.zh.min_words if view.is_zh else config.min_words
        if len(content) < min_words:
            return "short_doc", len(content)
        if len(content) > config.max_words:
            return "long_doc", len(content)
        low, high = (
            (self.zh.min_mean_word_length, self.zh.max_mean_word_length)
            if view.is_zh
            else (config.min_mean_word_length, config.max_mean_word_length)
        )
        mean_length = sum(len(w) for w in content) / len(content)
        if mean_length < low:
            return "mean_word_length_low", f"{mean_length:.2f}"
        if mean_length > high:
            return "mean_word_length_high", f"{mean_length:.2f}"
        text = view.text
        hashes = text.count("#") / len(words)
        if hashes > config.max_symbol_word_ratio:
            return "hash_ratio", f"{hashes:.3f}"
        ellipses = (text.count("...") + text.count("…")) / len(words)
        if ellipses > config.max_symbol_word_ratio:
            return "ellipsis_ratio", f"{ellipses:.3f}"
        lines = view.lines
        if view.is_zh and len(lines) < self.zh.min_lines_for_line_ratios:
            lines = []
        if lines:
            bullets = sum(1 for line in lines if line.lstrip().startswith(BULLETS)) / len(lines)
            if bullets > config.max_bullet_lines_ratio:
                return "bullet_lines", f"{bullets:.3f}"
            ellipsis_lines = sum(1 for line in lines if line.rstrip().endswith(ELLIPSES)) / len(lines)
            if ellipsis_lines > config.max_ellipsis_lines_ratio:
                return "ellipsis_lines", f"{ellipsis_lines:.3f}"
        alpha = sum(1 for w in words if any(ch.isalpha() for ch in w)) / len(words)
        if alpha < config.min_alpha_words_ratio:
            return "alpha_words", f"{alpha:.3f}"
        if view.is_zh:
            stop_words = self.resources.stop_words_zh
            hits = sum(1 for w in words if w in stop_words)
        else:
            stop_words = self._stop_words(view.lang)
            if stop_words is None:
                return None  # counted as skipped, with the reason
            hits = sum(1 for w in words if w.strip(".,;:!?\"'()[]«»„“”‚‘’¿¡").lower() in stop_words)
        if hits < config.min_stop_words:
            return "stop_words", f"{hits} of {config.min_stop_words} needed ({view.lang or 'en'} list)"
        return None

    def _stop_words(self, lang: str | None) -> frozenset[str] | None:
        """The stop words for a document in `lang`; None (and the skip counted) where there are none."""
        if not lang or lang == "en":
            return self.resources.stop_words_en
        if lang in UNSEGMENTED_LANGUAGES:
            self.skip("stop_words", f"unsegmented:{lang}")
            return None
        words = stop_words_for(lang)
        if words is None:
            self.skip("stop_words", f"no_list:{lang}")
        return words


class C4Filter(HeuristicFilter):
    """C4's document-level rules, with its line rules applied only to count sentences."""

    name = "c4"

    def __init__(self, rules: RulesConfig, resources: RuleResources):
        super().__init__()
        self.config = rules.c4
        self.zh = rules.zh
        self.policy_line = resources.policy_line

    def check(self, view):
        config = self.config
        if config.filter_lorem_ipsum and "lorem ipsum" in view.lower:
            return "lorem_ipsum", _line_at(view.text, view.lower.index("lorem ipsum"))
        if config.filter_curly_bracket and "{" in view.text:
            lines = view.lines
            braced = [number for number, line in enumerate(lines, 1) if "{" in line]
            if len(braced) / len(lines) > config.curly_bracket_max_line_ratio:
                first = lines[braced[0] - 1]
                return "curly_bracket", (f"{len(braced)}/{len(lines)} lines; line {braced[0]}, column "
                                         f"{first.index('{') + 1}: {_snippet(first, first.index('{'))}")
        min_sentences = self.zh.min_sentences if view.is_zh else config.min_sentences
        sentences = 0
        for line in view.lines:
            line = line.strip()
            lower = line.lower()
            if config.filter_no_terminal_punct and not line.endswith(TERMINAL_PUNCTUATION):
                continue
            if "javascript" in lower or self.policy_line.search(lower):
                continue
            if view.is_zh:
                if len(line) < self.zh.min_chars_per_line:
                    continue
                sentences += sum(1 for part in ZH_SENTENCE_SPLIT.split(line) if part.strip())
            else:
                words = line.split()
                if len(words) < config.min_words_per_line or max(map(len, words)) > config.max_word_length:
                    continue
                sentences += len(EN_SENTENCE_SPLIT.split(line))
            if sentences >= min_sentences:
                return None
        return "too_few_sentences", sentences


class FineWebFilter(HeuristicFilter):
    name = "fineweb"

    def __init__(self, rules: RulesConfig):
        super().__init__()
        self.config = rules.fineweb
        self.short_line_length = rules.zh.short_line_length
        self.min_lines_for_line_ratios = rules.zh.min_lines_for_line_ratios

    def check(self, view):
        config, lines = self.config, view.lines
        if not lines:
            return "no_lines", f"no non-blank line in {len(view.text)} characters"
        if not view.is_zh or len(lines) >= self.min_lines_for_line_ratios:
            punct = sum(1 for line in lines if line.rstrip().endswith(TERMINAL_PUNCTUATION)) / len(lines)
            if punct < config.min_line_punct_ratio:
                return "line_punct_ratio", f"{punct:.3f}"
        short_length = self.short_line_length if view.is_zh else config.short_line_length
        short = sum(1 for line in lines if len(line) <= short_length) / len(lines)
        if short > config.max_short_line_ratio:
            return "short_line_ratio", f"{short:.3f}"
        dup_chars = _duplicates(lines)[1] / max(1, len(view.text) - view.text.count("\n"))
        if dup_chars > config.max_char_dup_ratio:
            return "char_dup_ratio", f"{dup_chars:.3f}"
        newlines = view.text.count("\n") / max(1, len(view.words))
        if newlines > config.max_newline_word_ratio:
            return "list_ratio", f"{newlines:.3f}"
        return None


def build_filters(rules: RulesConfig, resources: RuleResources) -> list[HeuristicFilter]:
    """The rule families in the order they run: cheap and decisive first, n-gram statistics last."""
    return [
        EmptyFilter(),
        UrlMetaFilter(rules),
        SpamFilter(rules, resources),
        StructureFilter(rules),
        DiffFilter(),
        C4Filter(rules, resources),
        FineWebFilter(rules),
        GopherQualityFilter(rules, resources),
        GopherRepetitionFilter(rules),
    ]


HEURISTICS_ERROR = "heuristics_error"  # a rule raised on the document: dropped, naming the error


def judge_documents(
    filters: Sequence[HeuristicFilter], documents: Iterable[tuple[str | None, str | None, str | None]]
) -> tuple[list[Drop | None], RuleStats]:
    """For each (text, lang, url): the first rule that drops it (None keeps it), every rule sharing
    one view of the document; and what each rule did with these documents (seen, dropped, time).

    A rule that raises drops its document as `heuristics_error` naming the error: one pathological
    document must not fail the job.
    """
    take_stats(filters)  # what an abandoned earlier call in this process counted is not these documents'
    verdicts: list[Drop | None] = []
    for text, lang, url in documents:
        try:
            verdicts.append(first_drop(filters, DocumentView(text or "", lang, url)))
        except Exception as exc:  # noqa: BLE001 - counted as a reject naming the error
            verdicts.append(Drop(HEURISTICS_ERROR, f"{type(exc).__name__}: {exc}"[:200]))
    return verdicts, take_stats(filters)
