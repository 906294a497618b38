import dataclasses
import time

import pytest

from thresher.pipeline.config import load_config
from thresher.pipeline.prepare.extract import extract_page
from thresher.pipeline.prepare.precheck import Precheck, cheap_look
from thresher.pipeline.prepare.records import ROW_DOCUMENT, ROW_REJECT, ROW_SCHEMA, process_warc

GERMAN = ("Die Geschichte der kleinen Stadt am Fluss reicht viele Jahrhunderte zurück. Im Mittelalter war sie ein "
          "wichtiger Handelsplatz, und noch heute erinnern die alten Speicherhäuser am Hafen an diese Zeit. ") * 4
ENGLISH = ("The history of the small town by the river goes back many centuries. In the Middle Ages it was an "
           "important trading post, and the old warehouses at the harbour still recall that time today. ") * 4


def page(text: str, lang: str = "", nav: str = "Startseite | Nachrichten | Kontakt") -> str:
    attribute = f' lang="{lang}"' if lang else ""
    return (f"<html{attribute}><head><title>Titel</title><script>var tracking = 1;</script></head><body>"
            f"<nav>{nav}</nav><article><h1>Stadt</h1><p>{text}</p></article><footer>© 2024</footer></body></html>")


KEEP_ZH_EN = Precheck(frozenset({"zh", "en"}), min_lang_score=0.9, min_chars=1)


def test_a_confidently_german_page_is_dropped_with_the_named_reject_and_its_score():
    look, drop = KEEP_ZH_EN.judge(page(GERMAN))
    assert drop.rule == "lang_not_kept_precheck:de"
    score = float(drop.detail.split()[0])
    assert 0.9 <= score <= 1 and "no <html lang>" in drop.detail
    assert "Handelsplatz" in look.text and "tracking" not in look.text  # the page's text, not its scripts


def test_a_page_in_a_kept_language_or_mixed_or_uncertain_goes_on_to_extraction():
    assert KEEP_ZH_EN.judge(page(ENGLISH))[1] is None
    assert KEEP_ZH_EN.judge(page(ENGLISH[:300] + GERMAN[:300]))[1] is None  # mixed: lid.176 is not confident
    assert KEEP_ZH_EN.judge(page("Berlin, Paris, London, Tokyo 2024", nav="Menu"))[1] is None  # lid.176: de 0.61


def test_html_lang_is_used_as_stated():
    # A page that says it is in a kept language is left to extraction, whatever its text looks like ...
    assert KEEP_ZH_EN.judge(page(GERMAN, lang="en-US"))[1] is None
    assert KEEP_ZH_EN.judge(page(GERMAN, lang="zh_CN"))[1] is None
    # ... one stating another language is judged on its text, and the detail quotes what it stated.
    _, drop = KEEP_ZH_EN.judge(page(GERMAN, lang="de-DE"))
    assert drop.rule == "lang_not_kept_precheck:de" and '<html lang="de-DE">' in drop.detail
    assert KEEP_ZH_EN.judge(page(ENGLISH, lang="de-DE"))[1] is None  # a wrong template attribute drops nothing


def test_a_page_stating_a_kept_language_is_not_parsed_at_the_shipped_floor():
    look, drop = KEEP_ZH_EN.judge(page(GERMAN, lang="en-US"))
    assert look is None and drop is None
    # With a floor above one character, the page is still looked at, for its length.
    floor = dataclasses.replace(KEEP_ZH_EN, min_chars=5000)
    look, drop = floor.judge(page(GERMAN, lang="en-US"))
    assert "Handelsplatz" in look.text and drop.rule == "too_short_precheck"


@pytest.mark.parametrize("stated, language", [("de-DE", "de"), ("zh_CN", "zh"), ("EN", "en"), ("yue", "yue"),
                                              ("", ""), ("x-klingon", ""), ("english", "")])
def test_html_lang_s_primary_subtag(stated, language):
    assert cheap_look(f'<html lang="{stated}"><body>x</body></html>').html_language == language


def test_an_empty_language_list_keeps_every_language_and_no_language_look_runs():
    assert dataclasses.replace(KEEP_ZH_EN, languages=frozenset()).judge(page(GERMAN))[1] is None


def test_a_page_whose_whole_text_is_under_the_length_floor_is_dropped_as_too_short():
    floor = Precheck(frozenset({"zh", "en"}), 0.9, min_chars=2000)
    look, drop = floor.judge(page(ENGLISH))
    assert drop.rule == "too_short_precheck" and f"{len(look.text)} chars" in drop.detail
    assert floor.judge(page(ENGLISH * 3))[1] is None


def test_extract_page_skips_trafilatura_for_a_dropped_page_and_extracts_a_kept_one_as_before():
    german, english = page(GERMAN).encode(), page(ENGLISH).encode()
    text, drop = extract_page(german, "utf-8", "https://de.example/", 0, precheck=KEEP_ZH_EN)
    assert drop.rule == "lang_not_kept_precheck:de" and text.startswith("Startseite")  # the reject's snippet
    assert extract_page(english, "utf-8", "https://en.example/", 0, precheck=KEEP_ZH_EN) == \
        extract_page(english, "utf-8", "https://en.example/", 0)
    # A page without any text keeps the full path's reject, whatever the floor.
    no_text = b"<html><body><script>render()</script></body></html>"
    floor = dataclasses.replace(KEEP_ZH_EN, min_chars=50)
    assert extract_page(no_text, "", "https://empty.example/", 0, 50, precheck=floor)[1].rule == "empty_extraction"


def test_the_cheap_look_is_linear_on_a_page_nested_100_000_deep():
    html = "<html><body>" + "<div>" * 100_000 + "<p>deep text</p>" + "</div>" * 100_000 + "</body></html>"
    started = time.perf_counter()
    assert cheap_look(html).text == "deep text"
    assert time.perf_counter() - started < 5  # lexbor through selectolax took 24.6 s here


# Documents the full path keeps that the pre-check drops on the shared crawl (doc_id: why): none measured.
LISTED_DIFFERENCE: dict[str, str] = {}


def test_on_the_shared_crawl_the_kept_documents_are_the_same_with_the_pre_check_on_and_off(shared_data):
    overrides = {"prepare.domain_blocklists": {}, "prepare.url_regex_lists": {}, "prepare.banned_words_file": "",
                 "prepare.banned_subwords_file": "", "prepare.soft_banned_words_file": ""}
    kept, rejects = {}, {}
    for enabled in (True, False):
        config = load_config(None, {**overrides, "prepare.precheck.enabled": enabled}).prepare
        rows = [dict(zip(ROW_SCHEMA.names, row, strict=True))
                for path in sorted((shared_data / "crawl").glob("*.warc.gz")) for row in process_warc(str(path), config)]
        kept[enabled] = {row["doc_id"]: row["md5"] for row in rows if row["row_kind"] == ROW_DOCUMENT}
        rejects[enabled] = {row["doc_id"]: row["rule"] for row in rows if row["row_kind"] == ROW_REJECT}
    prechecked = {doc: rule for doc, rule in rejects[True].items() if "_precheck" in rule}
    assert len(prechecked) >= 10  # the crawl's German, French, Spanish and Polish pages
    assert all(rejects[False][doc].startswith(("lang_", "empty_extraction")) for doc in prechecked)
    difference = set(kept[True].items()) ^ set(kept[False].items())
    assert {doc for doc, _ in difference} == set(LISTED_DIFFERENCE)
    assert len(LISTED_DIFFERENCE) <= 0.001 * len(kept[False])
