"""Stage 1 on hostile input, generated here: every bad file or record ends as a counted reject.

One Spark run over all the files below; then one assertion per case. Config and path errors are
checked to fail before any work starts.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections import Counter

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from jobs.common import COMMITTED_MARKER
from jobs.prepare import run_prepare
from pipeline.config import ConfigError, load_config
from pipeline.inputs import InputError

TOPICS = ["tea", "rivers", "bridges", "bicycles", "lighthouses", "orchards", "glaciers", "libraries", "ferries"]
CHINESE = "茶叶的历史可以追溯到几千年前，人们在山间种植茶树，采摘嫩叶，再经过杀青、揉捻和干燥制成成品。" * 8
HUGE_PAGE_BYTES = 50 * 1024 * 1024
NESTING_DEPTH = 100_000


def article(topic: str) -> bytes:
    sentences = " ".join(
        f"The history of {topic} in this town goes back many years, and sentence {i} tells one more part of it."
        for i in range(12)
    )
    return (f"<html><head><title>About {topic}</title></head><body><article><h1>On {topic}</h1>"
            f"<p>{sentences}</p><p>{sentences.upper()}</p></article></body></html>").encode()


def record_bytes(url: str, payload: bytes, content_type: str = "text/html; charset=utf-8", gzipped: bool = False) -> bytes:
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=gzipped)
    http = StatusAndHeaders("200 OK", [("Content-Type", content_type)], protocol="HTTP/1.1")
    writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(payload), http_headers=http))
    return buffer.getvalue()


def write(directory, name: str, data: bytes) -> str:
    path = os.path.join(directory, name)
    with open(path, "wb") as handle:
        handle.write(data)
    return path


def huge_page_gz() -> bytes:
    """A gzip WARC record whose 50 MB page is compressed on the fly (it never sits in memory twice)."""
    head = b"<html><body><article><p>" + b"filler text " * 10 + b"</p>"
    filler = b"<p>" + b"more words about nothing in particular " * 25 + b"</p>\n"
    body_size = HUGE_PAGE_BYTES
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % body_size
    warc = (b"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: https://huge.example/page\r\n"
            b"WARC-Date: 2024-01-01T00:00:00Z\r\nWARC-Record-ID: <urn:uuid:huge>\r\n"
            b"Content-Type: application/http; msgtype=response\r\nContent-Length: %d\r\n\r\n" % (len(http) + body_size))
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    parts = [compressor.compress(warc + http + head)]
    written = len(head)
    while written + len(filler) <= body_size:
        parts.append(compressor.compress(filler))
        written += len(filler)
    parts.append(compressor.compress(b" " * (body_size - written) + b"\r\n\r\n"))
    parts.append(compressor.flush())
    return b"".join(parts)


@pytest.fixture(scope="module")
def hostile(spark, tmp_path_factory):
    """All hostile files, one Spark run over them; (output dir, stats, rejects by url, rules by file)."""
    root = tmp_path_factory.mktemp("hostile")
    inputs_dir = root / "inputs"
    inputs_dir.mkdir()
    d = str(inputs_dir)
    good = iter(TOPICS)
    paths = []

    # gzip cut in the middle of the third record
    data = b"".join(record_bytes(f"https://cut.example/{i}", article(next(good)), gzipped=True) for i in range(2))
    last = record_bytes("https://cut.example/2", article("cut"), gzipped=True)
    paths.append(write(d, "truncated.warc.gz", data + last[: len(last) // 2]))
    # garbage bytes between two records
    paths.append(write(d, "garbage-between.warc", record_bytes("https://garbage.example/before", article(next(good)))
                       + b"\x00\xff\xfegarbage that is no record\r\n\x07\x08" * 20
                       + record_bytes("https://garbage.example/after", article("garbage after"))))
    # a record whose Content-Length claims more than the file holds
    lying = record_bytes("https://lying.example/long", article("lying"))
    head, _, rest = lying.partition(b"\r\n\r\n")
    declared = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    lying = head.replace(b"Content-Length: %d" % declared, b"Content-Length: %d" % (declared * 10)) + b"\r\n\r\n" + rest
    paths.append(write(d, "lying-length.warc", record_bytes("https://lying.example/ok", article(next(good))) + lying))
    # binary payloads declared text/html, and a page with a wrong charset
    binaries = {
        "https://binary.example/doc.pdf": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n" * 50,
        "https://binary.example/img.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20,
        "https://binary.example/img.jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 20,
        "https://binary.example/blob.bin": bytes((i * 7919) % 256 for i in range(20_000)),
    }
    paths.append(write(d, "binary-as-html.warc.gz", b"".join(
        [record_bytes(url, payload, "text/html", gzipped=True) for url, payload in binaries.items()]
        + [record_bytes("https://charset.example/gbk-said-utf8",
                        f"<html><body><article><p>{CHINESE}</p></article></body></html>".encode("gbk"),
                        "text/html; charset=utf-8", gzipped=True),
           record_bytes("https://binary.example/fine", article(next(good)), gzipped=True)])))
    # a 50 MB page, and a page nested 100,000 deep, each followed by a good page
    paths.append(write(d, "huge-page.warc.gz", huge_page_gz()
                       + record_bytes("https://huge.example/after", article(next(good)), gzipped=True)))
    deep = b"<html><body>" + b"<div>" * NESTING_DEPTH + b"<p>deep text</p>" + b"</div>" * NESTING_DEPTH + b"</body></html>"
    paths.append(write(d, "deep-nesting.warc.gz", record_bytes("https://deep.example/page", deep, gzipped=True)
                       + record_bytes("https://deep.example/after", article(next(good)), gzipped=True)))
    # empty files, files that are not WARCs, a file gone by the time a task opens it
    paths.append(write(d, "empty.warc", b""))
    paths.append(write(d, "empty.warc.gz", gzip.compress(b"")))
    paths.append(write(d, "not-a-warc.warc.gz", gzip.compress(b"Just some notes, one per line.\n" * 100)))
    paths.append(write(d, "png-named.warc", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4))
    paths.append("memory://hostile/vanished.warc.gz")
    # a name full of `..`: the per-file work output must stay inside the output directory
    paths.append(write(d, "..%2F..%2Fescape...warc", record_bytes("https://dots.example/page", article(next(good)))))

    output = root / "out" / "prepare"
    before = set(root.rglob("*"))
    stats = run_prepare(spark, paths, str(output), load_config())
    created = set(root.rglob("*")) - before
    rejects = spark.read.parquet(str(output / "rejects")).select("url", "warc_path", "rule", "detail").collect()
    documents = spark.read.parquet(str(output / "documents")).select("url", "lang").collect()
    return {
        "output": output, "stats": stats, "created": created,
        "rule_by_url": {r.url: r.rule for r in rejects if r.url},
        "rules_by_file": {os.path.basename(p): Counter(r.rule for r in rejects if r.warc_path == p) for p in paths},
        "documents": {r.url: r.lang for r in documents},
    }


def test_the_job_finishes_and_its_stats_add_up(hostile):
    stats = hostile["stats"]
    assert (hostile["output"] / COMMITTED_MARKER).is_file()
    assert stats["records_in"] == stats["documents_out"] + sum(stats["rejects_by_rule"].values())
    # Every good page that follows a hostile one is still a document.
    assert {"https://cut.example/0", "https://cut.example/1", "https://garbage.example/before",
            "https://garbage.example/after", "https://lying.example/ok",
            "https://binary.example/fine", "https://huge.example/after", "https://deep.example/after",
            "https://dots.example/page"} <= set(hostile["documents"])


def test_truncated_gzip_and_lying_or_garbled_records_are_read_errors(hostile):
    for name in ("truncated.warc.gz", "lying-length.warc", "garbage-between.warc"):
        assert hostile["rules_by_file"][name]["warc_read_error"] == 1, name
    assert hostile["rule_by_url"]["https://lying.example/long"] == "warc_read_error"


def test_binary_payloads_declared_html_are_rejected_not_extracted(hostile):
    for url in ("https://binary.example/doc.pdf", "https://binary.example/img.png", "https://binary.example/img.jpg",
                "https://binary.example/blob.bin"):
        assert hostile["rule_by_url"][url] == "binary_payload", url


def test_a_wrong_declared_charset_still_gives_readable_text(hostile):
    assert hostile["documents"]["https://charset.example/gbk-said-utf8"] == "zh"


def test_a_50_mb_page_and_deep_nesting_are_bounded(hostile):
    assert hostile["rule_by_url"]["https://huge.example/page"] == "html_too_large"
    # lxml stops building the tree at its depth limit: trafilatura then finds no text, in well under a second.
    assert hostile["rule_by_url"]["https://deep.example/page"] in ("extract_error", "empty_extraction", "extract_timeout")


def test_empty_foreign_and_vanished_files(hostile):
    by_file = hostile["rules_by_file"]
    assert by_file["empty.warc"] == Counter() and by_file["empty.warc.gz"] == Counter()
    assert by_file["not-a-warc.warc.gz"] == Counter({"warc_read_error": 1})
    assert by_file["png-named.warc"] == Counter({"warc_read_error": 1})
    assert by_file["vanished.warc.gz"] == Counter({"warc_unreadable": 1})
    kinds = hostile["stats"]["records_by_kind"]
    assert kinds["unreadable"] == 1 and hostile["stats"]["files_in"] == 12


def test_input_names_never_become_paths_outside_the_output(hostile):
    output = hostile["output"]
    assert all(output in path.parents or path == output or path in output.parents for path in hostile["created"])


def test_config_and_path_errors_come_before_any_work(spark, tmp_path):
    good = write(str(tmp_path), "one.warc", record_bytes("https://one.example/", article("one")))
    bad_configs = {
        "prepare.max_html_bytes": 0, "prepare.lang_threshold": 1.5, "prepare.extract_timeout_s": -1,
        "prepare.files_per_batch": -2, "prepare.lid_model_path": "no/such/model.ftz",
    }
    for key, value in bad_configs.items():
        with pytest.raises(ConfigError, match=key):
            run_prepare(spark, [good], str(tmp_path / "out"), load_config(None, {key: value}))
    with pytest.raises(ConfigError, match="prepare.no_such_key"):
        load_config(None, {"prepare.no_such_key": 1})
    (tmp_path / "empty-dir").mkdir()
    errors = {str(tmp_path / "missing.warc.gz"): "does not exist", str(tmp_path / "empty-dir"): "holds no",
              str(tmp_path / "nothing-*.warc.gz"): "matches no file"}
    for path, message in errors.items():
        with pytest.raises(InputError, match=message):
            run_prepare(spark, [path], str(tmp_path / "out"), load_config())
    assert not (tmp_path / "out").exists()
