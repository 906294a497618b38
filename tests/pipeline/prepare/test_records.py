import dataclasses
import json
import re
from collections import Counter

import pytest
from hostile_inputs import chunked, http_response

from thresher.pipeline.config import load_config
from thresher.pipeline.prepare.records import (
    ROW_DOCUMENT,
    ROW_FILE,
    ROW_REJECT,
    ROW_SCHEMA,
    file_output_name,
    make_doc_id,
    process_warc,
    write_warc_rows,
)

MOJIBAKE = re.compile("[ÃÂâ][\u0080-\u00ff]|Ã©|â€")


@pytest.fixture(scope="module")
def config():
    # The full path on every page: these tests read what extraction makes of it (test_precheck.py
    # holds the pre-check's own tests, and its sameness with this path on the shared crawl).
    return load_config(None, {"prepare.domain_blocklists": {}, "prepare.url_regex_lists": {},
                              "prepare.banned_words_file": "", "prepare.banned_subwords_file": "",
                              "prepare.soft_banned_words_file": "", "prepare.precheck.enabled": False}).prepare


def rows(path, config):
    return [dict(zip(ROW_SCHEMA.names, row, strict=True)) for row in process_warc(str(path), config)]


def test_chinese_gbk_and_gb2312_pages_are_readable_chinese(shared_data, config):
    out = rows(shared_data / "warc/cc-main-2020-34-sample.warc.gz", config)
    docs = [r for r in out if r["row_kind"] == ROW_DOCUMENT]
    # The legacy-charset Chinese pages of this sample: declared gbk/gb2312 in HTTP or <meta>.
    legacy = {"http://041696.com/15477/list_6_4.html", "http://0755krk.com/76104/list_4_1.html",
              "http://0760.jxtdw.com/area/sanxiang/"}
    found = [d for d in docs if d["url"] in legacy]
    assert len(found) == 3
    for doc in found:
        text = doc["text"]
        cjk = sum("\u4e00" <= ch <= "\u9fff" for ch in text)
        letters = sum(ch.isalpha() for ch in text)
        assert doc["lang"] == "zh" and doc["lang_score"] >= 0.65, doc["url"]
        assert "\ufffd" not in text and not MOJIBAKE.search(text), doc["url"]
        assert cjk / letters > 0.5, doc["url"]
    # No document of the sample, whatever its charset, carries decoding damage.
    assert not any("\ufffd" in d["text"] or MOJIBAKE.search(d["text"]) for d in docs)
    russian = [r for r in out if r["url"] == "http://01spb.ru/company/"]
    assert russian[0]["rule"] == "lang_not_kept:ru" and "компании" in russian[0]["content"]


def test_every_content_record_is_one_row_and_file_stats_add_up(shared_data, config):
    out = rows(shared_data / "warc/wget-sample-0000.warc.gz", config)
    (file_row,) = [r for r in out if r["row_kind"] == ROW_FILE]
    stats = json.loads(file_row["detail"])
    kinds = stats["records_by_kind"]
    assert kinds["response"] == 22 and kinds["resource"] == 2 and kinds["request"] == 22
    units = [r for r in out if r["row_kind"] in (ROW_DOCUMENT, ROW_REJECT)]
    assert len(units) == kinds["response"] + kinds["resource"]
    rules = Counter(r["rule"] for r in units if r["row_kind"] == ROW_REJECT)
    assert rules["not_html"] == 2  # wget's log and argument resource records
    assert stats["worker_max_rss_kb"] > 0 and stats["rules"]["extract"]["nanoseconds"] > 0
    assert len({r["doc_id"] for r in units}) == len(units)


def test_doc_ids_depend_on_file_name_and_offset_only(shared_data, config, tmp_path):
    source = shared_data / "warc/cc-main-2024-22-one-page.warc.gz"
    copy = tmp_path / "elsewhere" / source.name
    copy.parent.mkdir()
    copy.write_bytes(source.read_bytes())
    first = [r for r in rows(source, config) if r["row_kind"] != ROW_FILE]
    second = [r for r in rows(copy, config) if r["row_kind"] != ROW_FILE]
    assert [d["doc_id"] for d in first] == [d["doc_id"] for d in second]
    # warcinfo at 0, request at 807, the response at 1551 (decompressed offsets).
    assert [d["doc_id"] for d in first] == [make_doc_id(source.name, 1551)]


def test_wet_conversion_text_is_used_as_extracted(shared_data, config):
    out = rows(shared_data / "warc/cc-main-2024-22-one-page.warc.wet.gz", config)
    (doc,) = [r for r in out if r["row_kind"] in (ROW_DOCUMENT, ROW_REJECT)]
    # An Aragonese Wikipedia page: read as text, identified, and not kept as zh/en.
    assert doc["row_kind"] == ROW_REJECT and doc["rule"].startswith(("lang_not_kept:", "lang_low_score"))
    assert "Escopete" in doc["content"]


def test_truncated_file_gives_one_read_error(shared_data, config):
    out = rows(shared_data / "warc/truncated.warc.gz", config)
    assert [r["rule"] for r in out if r["row_kind"] == ROW_REJECT] == ["warc_read_error"]
    assert json.loads(out[-1]["detail"])["records_by_kind"] == {"read_error": 1}


def test_unreadable_file_is_a_reject(config):
    out = rows("memory://nowhere/missing.warc.gz", config)
    assert [(r["row_kind"], r["rule"]) for r in out] == [(ROW_REJECT, "warc_unreadable"), (ROW_FILE, None)]


def test_oversized_pages_are_rejected_unparsed(shared_data, config):
    small = dataclasses.replace(config, max_html_bytes=20_000)
    out = rows(shared_data / "warc/cc-main-2020-34-sample.warc.gz", small)
    assert Counter(r["rule"] for r in out)["html_too_large"] >= 5


def test_per_file_rows_are_written_under_a_hashed_name_inside_the_directory(shared_data, config, tmp_path):
    import pyarrow.parquet as pq

    source = shared_data / "warc/cc-main-2024-22-one-page.warc.gz"
    hostile_name = tmp_path / "..%2F..%2Fescape..warc.gz"
    hostile_name.write_bytes(source.read_bytes())
    directory = tmp_path / "files"
    directory.mkdir()
    for path in (str(hostile_name), "memory://x/../../../escape.warc.gz", str(tmp_path / "..")):
        count = write_warc_rows(path, config, str(directory))
        target = directory / file_output_name(path)
        assert target.parent == directory and re.fullmatch(r"[0-9a-f]{40}\.parquet", target.name)
        table = pq.read_table(target)
        assert table.schema.equals(ROW_SCHEMA) and table.num_rows == count
    assert sorted(p.name for p in tmp_path.iterdir()) == ["..%2F..%2Fescape..warc.gz", "files"]
    assert len(list(directory.iterdir())) == 3  # no temporary file left behind
    rows_read = pq.read_table(directory / file_output_name(str(hostile_name))).to_pylist()
    assert len(rows_read) == 2 and rows_read[-1]["row_kind"] == ROW_FILE and rows_read[0]["doc_id"]


def warc_file(path, records):
    """Write `records` ((url, payload, content_type), ...) as a gzip WARC of HTTP responses."""
    import io

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as handle:
        writer = WARCWriter(handle, gzip=True)
        for url, payload, content_type in records:
            http = StatusAndHeaders("200 OK", [("Content-Type", content_type)], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(payload), http_headers=http))
    return path


NOT_TEXT_CODECS = ["base64", "hex", "rot13", "zlib", "uu", "idna", "punycode", "undefined"]
WESTERN = ("Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e and the menu of the day, with every dish the kitchen makes. " * 12)


def test_pages_declaring_codecs_that_are_no_charset_end_as_rows_not_a_failed_task(config, tmp_path):
    records = []
    for name in NOT_TEXT_CODECS:
        html = f"<html><head><meta charset='{name}'></head><body><article><p>{WESTERN}</p></article></body></html>"
        # Not valid UTF-8 (cp1252 bytes), declared in the HTTP header, in <meta>, or both.
        records.append((f"https://codec.example/{name}/http", html.replace(name, "x-none").encode("cp1252"),
                        f"text/html; charset={name}"))
        records.append((f"https://codec.example/{name}/meta", html.encode("cp1252"), "text/html"))
        records.append((f"https://codec.example/{name}/both", html.encode("cp1252"), f"text/html; charset={name}"))
    out = rows(warc_file(tmp_path / "codecs.warc.gz", records), config)
    units = [r for r in out if r["row_kind"] in (ROW_DOCUMENT, ROW_REJECT)]
    assert len(units) == len(records)
    documents = [r for r in units if r["row_kind"] == ROW_DOCUMENT]
    assert len(documents) == len(records) and all("menu of the day" in d["text"] for d in documents)


def test_a_failing_step_is_a_reject_naming_the_step_and_the_next_page_is_a_document(config, tmp_path, monkeypatch):
    import thresher.pipeline.prepare.records as records

    path = warc_file(tmp_path / "two.warc.gz", [
        ("https://boom.example/first", f"<html><body><article><p>{WESTERN}</p></article></body></html>".encode(),
         "text/html"),
        ("https://fine.example/second", f"<html><body><article><p>{WESTERN} Fine.</p></article></body></html>".encode(),
         "text/html"),
    ])
    real = records.top_language

    def fails_on_the_first(text, model_path=""):
        if "Fine." not in text:
            raise MemoryError("fastText could not allocate")
        return real(text, model_path)

    monkeypatch.setattr(records, "top_language", fails_on_the_first)
    out = rows(path, config)
    first, second = (r for r in out if r["row_kind"] != ROW_FILE)
    assert first["row_kind"] == ROW_REJECT and first["rule"] == "langid_error"
    assert first["detail"] == "MemoryError: fastText could not allocate" and first["url"] == "https://boom.example/first"
    assert second["row_kind"] == ROW_DOCUMENT and second["lang"] == "en"


def _file_stats(out):
    (file_row,) = [r for r in out if r["row_kind"] == ROW_FILE]
    return json.loads(file_row["detail"])


def _counts(rules):
    return {rule: (s["seen"], s["dropped"]) for rule, s in rules.items()}


@pytest.mark.parametrize("name, dropping_step", [("cc-main-2020-34-sample.warc.gz", "langid"),
                                                  ("wget-sample-0000.warc.gz", "http_response")])
def test_the_stats_row_holds_each_step_s_pages_seen_dropped_and_time_in_pipeline_order(shared_data, config, name,
                                                                                      dropping_step):
    out = rows(shared_data / "warc" / name, config)
    stats = _file_stats(out)
    rules, kinds = stats["rules"], stats["records_by_kind"]
    assert list(rules) == ["read", "url_parse", "http_response", "binary_check", "extract", "langid", "md5"]
    assert rules["read"]["seen"] == sum(kinds.values()) and rules["read"]["dropped"] == kinds.get("read_error", 0)
    assert not stats["failures_by_step"]
    # Each step sees what the one before kept: the content records first, the documents last.
    steps = list(rules)[1:]
    assert rules["url_parse"]["seen"] == sum(kinds.get(kind, 0) for kind in ("response", "resource", "conversion"))
    for before, after in zip(steps, steps[1:], strict=False):
        assert rules[after]["seen"] == rules[before]["seen"] - rules[before]["dropped"], after
    documents = [r for r in out if r["row_kind"] == ROW_DOCUMENT]
    assert (rules["md5"]["seen"], rules["md5"]["dropped"]) == (len(documents), 0)
    # Each step's drops are its rejects, by reason.
    by_step = Counter()
    for reject in (r for r in out if r["row_kind"] == ROW_REJECT):
        rule = reject["rule"]
        by_step["http_response" if rule.startswith("http_status:") or rule in ("not_html", "html_too_large")
                else "langid" if rule.startswith("lang_")
                else "binary_check" if rule in ("binary_payload", "chunked_encoding_error", "content_encoding_not_decoded")
                else "url_parse" if rule == "no_target_uri" else "read" if rule == "warc_read_error" else "extract"] += 1
    assert by_step[dropping_step] > 0
    assert {step: s["dropped"] for step, s in rules.items() if s["dropped"]} == dict(by_step)
    assert rules["extract"]["nanoseconds"] > 0 and rules["langid"]["nanoseconds"] > 0


def test_a_file_s_step_stats_are_its_own_after_an_abandoned_file_in_the_same_process(shared_data, config):
    path = shared_data / "warc/cc-main-2020-34-sample.warc.gz"
    first = _counts(_file_stats(rows(path, config))["rules"])
    abandoned = process_warc(str(path), config)  # a task that failed part-way, in this worker process
    for _ in range(5):
        next(abandoned)
    abandoned.close()
    assert _counts(_file_stats(rows(path, config))["rules"]) == first


def test_records_naming_no_url_and_bodies_not_as_their_headers_frame_them_are_named_rejects(config, tmp_path):
    import brotli

    page = f"<html><body><article><p>{WESTERN}</p></article></body></html>".encode()
    html = [("Content-Type", "text/html")]
    no_uri = http_response("https://gone.example/", page).replace(b"WARC-Target-URI: https://gone.example/\r\n", b"")
    records = [
        http_response("", page), http_response("<>", page), no_uri,
        http_response("https://chunks.example/", b"40\r\n" + page[:64] + b"\r\nzz\r\n" + page[64:] + b"\r\n0\r\n\r\n",
                      [*html, ("Transfer-Encoding", "chunked")]),
        http_response("https://compress.example/", b"\x1f\x9d\x90" + bytes(range(256)) * 8, [*html, ("Content-Encoding", "compress")]),
        http_response("https://br.example/", chunked(brotli.compress(page), 100),
                      [*html, ("Content-Encoding", "br"), ("Transfer-Encoding", "chunked")]),
        http_response("https://utf16.example/", page.decode().encode("utf-16-le"), html),
    ]
    path = tmp_path / "named.warc"
    path.write_bytes(b"".join(records))
    out = rows(path, config)
    units = [r for r in out if r["row_kind"] in (ROW_DOCUMENT, ROW_REJECT)]
    assert len(units) == len(records)
    rejects = [(r["url"], r["rule"]) for r in units if r["row_kind"] == ROW_REJECT]
    assert rejects == [("", "no_target_uri")] * 3 + [("https://chunks.example/", "chunked_encoding_error"),
                                                     ("https://compress.example/", "content_encoding_not_decoded")]
    details = {r["rule"]: r["detail"] for r in units if r["row_kind"] == ROW_REJECT}
    assert "b'zz" in details["chunked_encoding_error"] and "'compress'" in details["content_encoding_not_decoded"]
    documents = {r["url"]: r["text"] for r in units if r["row_kind"] == ROW_DOCUMENT}
    assert set(documents) == {"https://br.example/", "https://utf16.example/"}
    assert all("menu of the day" in text for text in documents.values())
    assert not any("zz" in r["content"] for r in units if r["row_kind"] == ROW_REJECT and r["content"])
    rules = _file_stats(out)["rules"]
    assert (rules["url_parse"]["seen"], rules["url_parse"]["dropped"]) == (len(records), 3)
    assert rules["binary_check"]["dropped"] == 2


def test_http_status_rejects_name_the_status():
    from types import SimpleNamespace

    from thresher.pipeline.prepare.records import _HttpResponse

    step = _HttpResponse(1000)
    drop = step({"record": SimpleNamespace(kind="response", http_status=404)})
    assert (drop.rule, drop.detail) == ("http_status:404", "HTTP status 404; only 200 is extracted")
    drop = step({"record": SimpleNamespace(kind="response", http_status=None)})
    assert (drop.rule, drop.detail) == ("http_status:unparsed", "the HTTP status line has no status code")
