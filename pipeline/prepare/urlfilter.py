"""URL filters (stage 1, step 2): blocklisted domains and URLs, URL regexes, banned words in the URL.

Formats follow the public lists: UT1 (`domains`: one domain per line, subdomains included; `urls`:
host/path prefixes; `expressions`: regexes) and DataTrove's URLFilter word lists (one word per
line). Every filter judges a mapping with a "url" key and names its rule:
`url_domain_blocklist:<category>`, `url_blocklist:<category>`, `url_regex:<category>`,
`url_banned_word`, `url_banned_subword`, `url_soft_words`.

Banned subwords match only at a word start of the URL (`word_starts`), so `cialis` still drops
`cialis-online.example` and `buy-cialis` but no longer `socialistworker.org`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from thresher.pipeline.filters import DocumentFilter, Drop
from thresher.pipeline.lexicon import read_list
from thresher.pipeline.urls import url_host

_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def host_suffixes(host: str) -> Iterable[str]:
    """a.b.example.com -> a.b.example.com, b.example.com, example.com, com."""
    labels = host.split(".")
    for i in range(len(labels)):
        yield ".".join(labels[i:])


def url_words(url: str) -> set[str]:
    """The URL's tokens: lowercased, split on every non-alphanumeric character."""
    return {word for word in _NON_ALNUM.split(url.lower()) if word}


def squash(text: str) -> str:
    """Lowercase and keep only [0-9a-z]: the form in which banned subwords are matched."""
    return _NON_ALNUM.sub("", text.lower())


def _kind(char: str) -> str:
    """'l' lowercase ASCII letter, 'u' uppercase, 'd' digit, '' anything else (a separator)."""
    if "a" <= char <= "z":
        return "l"
    if "A" <= char <= "Z":
        return "u"
    if "0" <= char <= "9":
        return "d"
    return ""


def _is_phrase(subword: str) -> bool:
    """A subword written as several words ("2 girls 1 cup", "call girl")."""
    return len(url_words(subword)) > 1


def word_starts(url: str) -> tuple[str, list[int], list[int]]:
    """The URL squashed to [0-9a-z], the squashed positions where a word starts, and for each squashed
    character its index in `url`.

    A word starts at an ASCII letter or digit that is the URL's first character or follows
    - a character that is not an ASCII letter or digit (`/`, `.`, `-`, `_`, `%`, `?`, a non-ASCII letter ...),
    - a letter when it is a digit, or a digit when it is a letter (`2girls1cup`: 2 | girls | 1 | cup),
    - a lowercase letter when it is uppercase (`WatchPornFree`: Watch | Porn | Free),
    - an uppercase letter when it is uppercase and followed by a lowercase one (`XXXVideos`: XXX | Videos).
    Within a run of lowercase letters there is no word start: `socialistworker` is one word.
    """
    squashed: list[str] = []
    starts: list[int] = []
    origin: list[int] = []
    previous = ""
    for index, char in enumerate(url):
        kind = _kind(char)
        if not kind:
            previous = ""
            continue
        following = _kind(url[index + 1]) if index + 1 < len(url) else ""
        if (
            not previous
            or (kind == "d") != (previous == "d")
            or (kind == "u" and previous == "l")
            or (kind == "u" and previous == "u" and following == "l")
        ):
            starts.append(len(squashed))
        squashed.append(char.lower())
        origin.append(index)
        previous = kind
    return "".join(squashed), starts, origin


def trie_regex(words: Iterable[str]) -> re.Pattern | None:
    """One regex matching any of `words` as a substring, built as a prefix trie.

    Python's `re` tries alternatives one by one; nesting them by shared prefix makes each
    position cost about one trie walk, so tens of thousands of words stay fast.
    """
    trie: dict = {}
    for word in words:
        if not word:
            continue
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}  # end-of-word marker
    if not trie:
        return None
    return re.compile(_trie_pattern(trie))


def _trie_pattern(node: dict) -> str:
    if "" in node:  # a word ends here: search() is satisfied, longer words add nothing
        return ""
    branches = [re.escape(char) + _trie_pattern(child) for char, child in sorted(node.items())]
    if len(branches) == 1:
        return branches[0]
    return "(?:" + "|".join(branches) + ")"


class _ListFilter(DocumentFilter):
    """A filter built from one list category: it drops as, and reports its stats as, `name:category`."""

    def __init__(self, category: str):
        super().__init__()
        self.rule = f"{self.name}:{category}"

    @property
    def rule_name(self) -> str:
        return self.rule


class DomainBlocklistFilter(_ListFilter):
    """UT1 `domains`: a URL is dropped if its host or any parent domain is listed."""

    name = "url_domain_blocklist"

    def __init__(self, category: str, domains: Iterable[str]):
        super().__init__(category)
        self.domains = frozenset(d.lower().strip(".") for d in domains)

    def judge(self, doc: Mapping[str, Any]) -> Drop | None:
        host = url_host(doc["url"])
        for suffix in host_suffixes(host) if host else ():
            if suffix in self.domains:
                return Drop(self.rule, suffix)
        return None


class UrlBlocklistFilter(_ListFilter):
    """UT1 `urls`: host/path prefixes; a URL is dropped if its host (or a parent domain) carries a
    listed path prefix that ends at a path boundary."""

    name = "url_blocklist"

    def __init__(self, category: str, entries: Iterable[str]):
        super().__init__(category)
        self.paths_by_host: dict[str, list[str]] = {}
        for entry in entries:
            host, _, path = entry.lower().partition("/")
            self.paths_by_host.setdefault(host.removeprefix("www."), []).append("/" + path.rstrip("/"))

    def judge(self, doc: Mapping[str, Any]) -> Drop | None:
        url = doc["url"]
        host = url_host(url)
        if not host:
            return None
        path = urlsplit(url).path.lower() or "/"
        for suffix in host_suffixes(host):
            for prefix in self.paths_by_host.get(suffix, ()):
                if prefix == "/" or path == prefix or path.startswith(prefix + "/"):
                    return Drop(self.rule, suffix + prefix)
        return None


class UrlRegexFilter(_ListFilter):
    """UT1 `expressions`: one regex per line, searched in the lowercased URL (all lines as one regex)."""

    name = "url_regex"

    def __init__(self, category: str, expressions: Iterable[str]):
        super().__init__(category)
        parts = [f"(?:{e})" for e in expressions]
        self.pattern = re.compile("|".join(parts)) if parts else None

    def judge(self, doc: Mapping[str, Any]) -> Drop | None:
        match = self.pattern.search(doc["url"].lower()) if self.pattern else None
        return Drop(self.rule, match.group(0)) if match else None


class UrlWordFilter(DocumentFilter):
    """DataTrove URLFilter words: banned whole words, banned subwords, and soft words (drop at
    `soft_word_threshold` or more distinct ones).

    DataTrove matches a subword anywhere in the squashed URL. Here a one-word subword (`cialis`,
    `porn`, `threesome`) must begin at a word start (`word_starts`) and may run on into the middle of a
    word: `porn` hits `pornhub.com` and `free-porn-videos`, but `cialis` misses `socialistworker.org`
    and `porn` misses `sporny`. A phrase (several words in the list: `gang bang`, `call girl`) is
    matched anywhere, as DataTrove does: its squashed form (`gangbang`, `callgirl`) is itself the
    evidence, and it is what concatenated spam domains spell (`bestbrutalgangbang.com`). The cost of
    word starts is one-word subwords inside a lowercase run (`findathreesome.com`, `buyviagranow`):
    bench/RESULTS.md "Issue 25: URL subwords" counts both sides.
    """

    name = "url_words"

    def __init__(
        self,
        banned_words: Iterable[str] = (),
        banned_subwords: Iterable[str] = (),
        soft_words: Iterable[str] = (),
        soft_word_threshold: int = 2,
    ):
        super().__init__()
        self.banned_words = frozenset(w.lower() for w in banned_words)
        self.soft_words = frozenset(w.lower() for w in soft_words)
        self.soft_word_threshold = soft_word_threshold
        # Subwords match in the squashed URL ("2 girls 1 cup" -> "2girls1cup"): one-word subwords from
        # a word start, phrases anywhere.
        banned_subwords = [w for w in banned_subwords if squash(w)]
        self.subwords = trie_regex(squash(w) for w in banned_subwords if not _is_phrase(w))
        self.phrases = trie_regex(squash(w) for w in banned_subwords if _is_phrase(w))

    def judge(self, doc: Mapping[str, Any]) -> Drop | None:
        url = doc["url"]
        words = url_words(url)
        banned = words & self.banned_words
        if banned:
            return Drop("url_banned_word", min(banned))
        soft = words & self.soft_words
        if len(soft) >= max(1, self.soft_word_threshold):
            return Drop("url_soft_words", ",".join(sorted(soft)))
        hit = self.banned_subword(url)
        if hit:
            return Drop("url_banned_subword", hit)
        return None

    def banned_subword(self, url: str) -> str:
        """'<squashed subword> in <the URL's characters it covers>' for the first phrase found anywhere or
        one-word subword found at a word start; '' when none is."""
        if self.subwords is None and self.phrases is None:
            return ""
        squashed, starts, origin = word_starts(url)
        match = self.phrases.search(squashed) if self.phrases is not None else None
        for start in starts if match is None and self.subwords is not None else ():
            match = self.subwords.match(squashed, start)
            if match:
                break
        if match is None:
            return ""
        return f"{match.group(0)} in {url[origin[match.start()] : origin[match.end() - 1] + 1]}"


def build_url_filters(
    domain_blocklists: Mapping[str, str],
    url_blocklists: Mapping[str, str],
    url_regex_lists: Mapping[str, str],
    banned_words_file: str,
    banned_subwords_file: str,
    soft_banned_words_file: str,
    soft_word_threshold: int,
) -> list[DocumentFilter]:
    """The URL filters named by resolved file paths, cheapest first; empty paths and maps add none."""
    filters: list[DocumentFilter] = []
    for category, path in sorted(domain_blocklists.items()):
        filters.append(DomainBlocklistFilter(category, read_list(path)))
    for category, path in sorted(url_blocklists.items()):
        filters.append(UrlBlocklistFilter(category, read_list(path)))
    word_lists = [read_list(p) if p else [] for p in (banned_words_file, banned_subwords_file, soft_banned_words_file)]
    if any(word_lists):
        filters.append(UrlWordFilter(*word_lists, soft_word_threshold=soft_word_threshold))
    for category, path in sorted(url_regex_lists.items()):
        filters.append(UrlRegexFilter(category, read_list(path)))
    return filters
