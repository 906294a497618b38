import json
import random
import string
import time

import pytest

from thresher.pipeline.filters import first_drop
from thresher.pipeline.lexicon import read_list
from thresher.pipeline.prepare.urlfilter import (
    DomainBlocklistFilter,
    UrlBlocklistFilter,
    UrlRegexFilter,
    UrlWordFilter,
    build_url_filters,
    squash,
    trie_regex,
    word_starts,
)


@pytest.fixture(scope="module")
def lists(shared_data):
    return shared_data / "blocklists"


@pytest.fixture(scope="module")
def real_filters(lists):
    return build_url_filters(
        {"gambling": str(lists / "ut1/gambling/domains"), "dating": str(lists / "ut1/dating/domains")},
        {"adult": str(lists / "ut1/adult/urls")},
        {"adult": str(lists / "ut1/adult/very_restrictive_expression")},
        str(lists / "datatrove/banned_words.txt"),
        str(lists / "datatrove/banned_subwords.txt"),
        str(lists / "datatrove/soft_banned_words.txt"),
        2,
    )


def judge(filters, url):
    return first_drop(filters, {"url": url})


def test_ut1_domains_match_the_domain_and_its_subdomains(lists, real_filters):
    listed = read_list(str(lists / "ut1/gambling/domains"))[100]
    assert judge(real_filters, f"https://{listed}/").rule == "url_domain_blocklist:gambling"
    drop = judge(real_filters, f"http://promo.www.{listed}/page?x=1")
    assert drop.rule == "url_domain_blocklist:gambling" and drop.detail == listed
    # A listed name as a suffix of a different label is not a match.
    only = DomainBlocklistFilter("g", [listed])
    assert only({"url": f"https://not{listed}/"}) is None
    assert judge(real_filters, "https://en.wikipedia.org/wiki/Tea") is None


def test_ut1_url_prefixes_end_at_path_boundaries(lists):
    entry = "020sextoy.com/sk"
    assert entry in read_list(str(lists / "ut1/adult/urls"))
    prefixes = UrlBlocklistFilter("adult", [entry, "example.org"])
    assert prefixes({"url": "https://www.020sextoy.com/sk/item"}).rule == "url_blocklist:adult"
    assert prefixes({"url": "https://020sextoy.com/sk"}) is not None
    assert prefixes({"url": "https://020sextoy.com/skating"}) is None
    assert prefixes({"url": "https://a.example.org/anything"}) is not None


def test_ut1_expressions(real_filters):
    assert judge(real_filters, "https://cdn.example.com/hardcore-videos").rule == "url_regex:adult"
    assert judge(real_filters, "https://example.com/shop/xxx-large") is not None
    assert judge(real_filters, "https://example.com/essex-county-news") is None


def test_datatrove_word_lists(real_filters):
    assert judge(real_filters, "https://example.com/2-girls-1-cup/page").rule == "url_banned_subword"
    assert judge(real_filters, "https://example.com/gallery/anus-ass").rule == "url_soft_words"
    # One soft word is not enough.
    assert judge(real_filters, "https://example.com/gallery/ass-kicking-tips") is None


def test_word_filter_rules():
    words = UrlWordFilter(["xxx"], ["viagra", "2 girls 1 cup"], ["hot", "sexy", "babes"], soft_word_threshold=2)
    assert words({"url": "https://e.com/free-xxx"}).rule == "url_banned_word"
    assert words({"url": "https://e.com/xxxl-shirts"}) is None  # whole tokens only
    assert words({"url": "https://e.com/buy-viagranow"}).detail == "viagra in viagra"
    assert words({"url": "https://e.com/buyviagranow"}) is None  # inside a lowercase word: no word start
    assert words({"url": "https://e.com/2girls1cup"}).rule == "url_banned_subword"
    assert words({"url": "https://e.com/hot-sexy"}).detail == "hot,sexy"
    assert words({"url": "https://e.com/hot-tips"}) is None
    assert words.stats.seen == 7 and words.stats.dropped == 4


def test_regex_filter_combines_lines():
    regex = UrlRegexFilter("c", [r"casino\d+", r"^https://bad\."])
    assert regex({"url": "https://x.com/Casino777"}).detail == "casino777"
    assert regex({"url": "https://bad.example/"}) is not None
    assert regex({"url": "https://good.example/"}) is None


def test_trie_regex_agrees_with_plain_substring_search():
    rng = random.Random(7)
    words = ["".join(rng.choice("abcde") for _ in range(rng.randint(1, 6))) for _ in range(300)]
    pattern = trie_regex(words)
    for _ in range(500):
        text = "".join(rng.choice("abcdef") for _ in range(rng.randint(0, 12)))
        assert bool(pattern.search(text)) == any(w in text for w in words), text
    assert trie_regex([]) is None


def test_thirty_thousand_subwords_stay_fast():
    rng = random.Random(1)
    words = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(5, 12))) for _ in range(30_000)]
    pattern = trie_regex(words)
    url = squash("https://www.example.com/some/long/path/to/an-article-about-gardening?id=1234567&ref=home")
    start = time.perf_counter()
    for _ in range(1000):
        pattern.search(url)
    per_url = (time.perf_counter() - start) / 1000
    assert per_url < 0.002  # a plain alternation of 30k words takes tens of ms per URL
    assert pattern.search(squash("https://x.com/" + words[12345].upper())) is not None


def test_subwords_match_at_word_starts_only():
    """Issue 25: `cialis` dropped socialistworker.org, `porn` a tech-news path."""
    words = UrlWordFilter(banned_subwords=["cialis", "porn", "xvideos", "2 girls 1 cup", "gang bang"])
    kept = [
        "https://socialistworker.org/2024/05/01/may-day",
        "https://www.theverge.com/2023/tech/sporny-keyboards-reviewed",
        "https://news.example.com/tech/antiporn-filters-fail",
        "https://www.interracialism.org/history",
        "https://e.com/x/specialists",
    ]
    for url in kept:
        assert words({"url": url}) is None, url
    dropped = {
        "https://cialis-online.example/": "cialis in cialis",
        "https://e.com/buy-Cialis": "cialis in Cialis",
        "https://pornhub.example/": "porn in porn",
        "https://e.com/WatchPornFree": "porn in Porn",
        "https://e.com/free/porn/videos": "porn in porn",
        "https://e.com/v/2-girls-1-cup": "2girls1cup in 2-girls-1-cup",
        "https://e.com/2girls1cup": "2girls1cup in 2girls1cup",
        "https://e.com/x/XVideos24": "xvideos in XVideos",
        # A phrase is matched anywhere: its squashed form is what spam domains spell.
        "https://bestbrutalgangbang.example/en/": "gangbang in gangbang",
    }
    for url, detail in dropped.items():
        drop = words({"url": url})
        assert drop is not None and drop.rule == "url_banned_subword" and drop.detail == detail, url


def test_word_starts():
    squashed, starts, origin = word_starts("https://XMLHttp2go.example/WatchPornFree")
    assert squashed == "httpsxmlhttp2goexamplewatchpornfree"
    words = [squashed[a:b] for a, b in zip(starts, [*starts[1:], len(squashed)], strict=True)]
    assert words == ["https", "xml", "http", "2", "go", "example", "watch", "porn", "free"]
    assert origin[starts[1]] == 8  # the X of XMLHttp in the URL
    assert word_starts("socialistworker.org")[1] == [0, 15]
    assert word_starts("")[0] == ""


def test_real_subword_list_keeps_the_crawl_and_hits_blocked_domains(lists, shared_data):
    """The DataTrove subword list against the real crawl's URLs (none hit) and UT1's blocked
    domains (bench/bench_url_subwords.py counts them all)."""
    words = UrlWordFilter(banned_subwords=read_list(str(lists / "datatrove/banned_subwords.txt")))
    truth = json.loads((shared_data / "extraction/ground-truth.json").read_text(encoding="utf-8"))
    crawl = {url for source in truth.values() for url in source}
    assert len(crawl) > 400
    assert [url for url in crawl if words({"url": url})] == []
    blocked = [u for u in read_list(str(lists / "ut1/adult/urls")) if words({"url": f"https://{u}"})]
    assert len(blocked) == 48  # of 1,090 (anywhere in the squashed URL: 49)
