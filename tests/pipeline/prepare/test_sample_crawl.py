import re
from collections import Counter

import pytest

from thresher.jobs.prepare import resolved_prepare_config
from thresher.pipeline.config import load_config
from thresher.pipeline.prepare.records import ROW_DOCUMENT, ROW_REJECT, ROW_SCHEMA, process_warc
from thresher.pipeline.prepare.sample_crawl import (
    CHINESE_BOILERPLATE,
    ENGLISH_BOILERPLATE,
    chinese_articles,
    english_articles,
    write_sample_crawl,
)
from thresher.pipeline.prepare.warc import WarcRecord, iter_records
from thresher.pipeline.text import normalize_text


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    return write_sample_crawl(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def rows(crawl):
    config = resolved_prepare_config(load_config())  # the default config, with its shipped lists
    return [dict(zip(ROW_SCHEMA.names, row, strict=True)) for path in crawl for row in process_warc(path, config)]


def shingles(text, n=5):
    words = normalize_text(text).split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a, b):
    a, b = shingles(a), shingles(b)
    return len(a & b) / len(a | b)


def test_files_are_byte_identical_on_every_run(crawl, tmp_path):
    again = write_sample_crawl(tmp_path)
    assert [p.rsplit("/", 1)[1] for p in again] == [p.rsplit("/", 1)[1] for p in crawl]
    for first, second in zip(crawl, again, strict=True):
        assert open(first, "rb").read() == open(second, "rb").read()


def test_every_stage1_rule_fires_with_the_default_config(rows):
    rules = Counter(r["rule"] for r in rows if r["row_kind"] == ROW_REJECT)
    expected = {
        "http_status:404", "http_status:301", "not_html", "url_domain_blocklist:gambling", "url_banned_word",
        "url_banned_subword", "url_soft_words", "url_regex:adult", "lang_not_kept_precheck:de", "lang_low_score",
        "empty_extraction", "warc_read_error",
    }
    assert set(rules) == expected  # the German page (<html lang="de">) goes before trafilatura, by the pre-check
    # Exact duplicates are decided across the job: here, documents that share an MD5.
    md5s = Counter(r["md5"] for r in rows if r["row_kind"] == ROW_DOCUMENT)
    assert sorted(n for n in md5s.values() if n > 1) == [2, 3]


def test_with_the_pre_check_off_the_german_page_is_the_full_path_s_reject_and_the_documents_are_the_same(crawl, rows):
    config = resolved_prepare_config(load_config(None, {"prepare.precheck.enabled": False}))
    full = [dict(zip(ROW_SCHEMA.names, row, strict=True)) for path in crawl for row in process_warc(path, config)]
    german = {r["doc_id"] for r in rows if r["rule"] == "lang_not_kept_precheck:de"}
    assert german and {r["rule"] for r in full if r["doc_id"] in german} == {"lang_not_kept:de"}
    documents = {(r["doc_id"], r["md5"]) for r in rows if r["row_kind"] == ROW_DOCUMENT}
    assert documents == {(r["doc_id"], r["md5"]) for r in full if r["row_kind"] == ROW_DOCUMENT}


def test_record_kinds(crawl):
    kinds = Counter()
    for path in crawl:
        with open(path, "rb") as handle:
            kinds.update(e.kind for e in iter_records(handle, 10**6) if isinstance(e, WarcRecord))
    assert kinds["request"] >= 5 and kinds["metadata"] >= 5 and kinds["warcinfo"] == 4


def test_forty_good_articles_in_english_and_chinese(rows):
    docs = {r["url"]: r for r in rows if r["row_kind"] == ROW_DOCUMENT}
    article_urls = [url for url, _, _ in english_articles() + chinese_articles()]
    kept = [docs[url] for url in article_urls if url in docs]
    assert len(kept) >= 40
    assert {d["lang"] for d in kept} == {"en", "zh"}
    assert min(d["lang_score"] for d in kept) > 0.9
    for doc in kept:
        boilerplate = ENGLISH_BOILERPLATE if doc["lang"] == "en" else CHINESE_BOILERPLATE
        assert doc["text"].rstrip().endswith(boilerplate)  # for stage 2 line dedup
        if doc["lang"] == "en":
            assert len(doc["text"].split()) >= 200


def test_articles_do_not_repeat_sentences_and_differ_from_each_other():
    articles = english_articles() + chinese_articles()
    for _, _, paragraphs in articles:
        sentences = [s for p in paragraphs[:-1] for s in re.split(r"(?<=[.。])\s*", p) if s]
        assert len(sentences) == len(set(sentences)) >= 15
    english = english_articles()
    assert max(jaccard(" ".join(a[2][:-1]), " ".join(b[2][:-1])) for a, b in zip(english, english[1:], strict=False)) < 0.3


def test_near_duplicates_for_minhash(rows):
    docs = {r["url"]: r["text"] for r in rows if r["row_kind"] == ROW_DOCUMENT}
    volcano = "https://geology.example.com/articles/volcano-science-1"
    assert jaccard(docs[volcano], docs["https://digest.example.com/weekly/volcanoes-revisited"]) >= 0.8
    chinese_source = "https://yangfeng.example.cn/wenzhang/04-1.html"
    zh_a, zh_b = docs[chinese_source], docs["https://wenzhai.example.cn/zhoukan/8.html"]
    char_shingles = [{t[i : i + 5] for i in range(len(t) - 4)} for t in (zh_a, zh_b)]
    assert len(char_shingles[0] & char_shingles[1]) / len(char_shingles[0] | char_shingles[1]) >= 0.8


def test_gbk_page_declares_its_charset_only_in_meta(crawl, rows):
    with open(crawl[1], "rb") as handle:
        first = next(e for e in iter_records(handle, 10**6) if isinstance(e, WarcRecord) and e.kind == "response")
    assert first.charset == "" and b"charset=gbk" in first.payload
    with pytest.raises(UnicodeDecodeError):
        first.payload.decode("utf-8")
    doc = next(r for r in rows if r["url"] == first.url)
    assert doc["lang"] == "zh" and "茶" in doc["text"] and "\ufffd" not in doc["text"]


def test_truncated_file_keeps_the_records_before_the_cut(rows, crawl):
    last = [r for r in rows if r["warc_path"] == crawl[3] and r["row_kind"] in (ROW_DOCUMENT, ROW_REJECT)]
    assert [r["row_kind"] for r in last] == [ROW_DOCUMENT, ROW_DOCUMENT, ROW_REJECT]
    assert last[-1]["rule"] == "warc_read_error"
