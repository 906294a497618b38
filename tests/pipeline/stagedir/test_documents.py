"""Documents a user brings: finding and checking the files, conforming their rows, and reading them without Spark."""

from __future__ import annotations

import gzip
import json
import re

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.pipeline.stagedir.documents import (
    COMMITTED_MARKER,
    PARTS,
    FieldMapping,
    derived_doc_id,
    document_batches,
    kept_fields,
    read_documents,
    read_source_parts,
    resolve_source,
    source_parts,
)
from thresher.schemas import extend
from thresher.schemas.documents import PREPARED
from thresher.schemas.errors import InputError

ENGLISH = "The committee met on Tuesday to discuss the budget for the new library and the park."
CHINESE = "今天天气很好，我们一起去公园散步，然后在湖边的茶馆喝茶聊天。"


def rows(n=6):
    return [{"content": ENGLISH if i % 2 == 0 else CHINESE, "link": f"https://www.example.org/{i}", "n": i}
            for i in range(n)]


def read_all(source, schema=PREPARED, part_rows=100_000, lid=None):
    parts = pa.RecordBatch.from_pylist([dict(zip(PARTS.names, p, strict=True)) for p in source_parts(source, part_rows)],
                                       schema=PARTS)
    return pa.Table.from_batches(list(read_source_parts(iter([parts]), source.fields, schema, lid, batch_rows=4)),
                                 schema=schema)


def write_jsonl(path, records):
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def test_a_parquet_file_jsonl_file_and_datasets_directory_are_found(tmp_path):
    pq.write_table(pa.Table.from_pylist(rows()), tmp_path / "docs.parquet")
    write_jsonl(tmp_path / "docs.jsonl.gz", rows())
    datasets.Dataset.from_list(rows()).save_to_disk(str(tmp_path / "hf"))
    fields = FieldMapping(text="content", url="link")
    for path, kind in [("docs.parquet", "parquet"), ("docs.jsonl.gz", "jsonl"), ("hf", "arrow")]:
        source = resolve_source(str(tmp_path / path), fields)
        assert source.kind == kind and not source.committed_stage
        assert {"content", "link", "n"} <= set(source.columns)
        table = read_all(source)
        assert table.column("text").to_pylist() == [r["content"] for r in rows()]
        assert table.column("url").to_pylist() == [r["link"] for r in rows()]
        assert set(table.column("domain").to_pylist()) == {"example.org"}
        assert table.column("lang").to_pylist() == [None] * 6  # computed only when asked


def test_the_field_mapping_picks_id_text_and_url(tmp_path):
    records = [{"body": ENGLISH, "uid": 100 + i, "id": f"other-{i}", "where": f"https://a.example/{i}"} for i in range(3)]
    source = resolve_source(str(write_jsonl(tmp_path / "d.jsonl", records)), FieldMapping("body", "uid", "where"))
    table = read_all(source)
    assert table.column("doc_id").to_pylist() == ["100", "101", "102"]
    assert table.column("url").to_pylist() == [r["where"] for r in records]
    # Without --id-field: id (doc_id would win over it); a null or empty id is derived.
    records[1]["id"] = None
    records[2]["id"] = ""
    source = resolve_source(str(write_jsonl(tmp_path / "e.jsonl", records)), FieldMapping("body"))
    assert read_all(source).column("doc_id").to_pylist() == ["other-0", derived_doc_id("e.jsonl", 1),
                                                            derived_doc_id("e.jsonl", 2)]
    assert read_all(source).column("url").to_pylist() == [None] * 3


def test_derived_ids_depend_on_file_name_and_row_not_on_the_split_into_parts(tmp_path):
    directory = tmp_path / "corpus"
    (directory / "sub").mkdir(parents=True)
    table = pa.Table.from_pylist(rows(8))
    pq.write_table(table, directory / "sub" / "a.parquet", row_group_size=2)
    pq.write_table(table, directory / "b.parquet", row_group_size=8)
    source = resolve_source(str(directory), FieldMapping(text="content"))
    assert len(source_parts(source, part_rows=100)) == 2 and len(source_parts(source, part_rows=1)) == 5
    whole, split = read_all(source, part_rows=100), read_all(source, part_rows=1)
    assert whole.equals(split)
    ids = whole.column("doc_id").to_pylist()
    assert ids[:8] == [derived_doc_id("b.parquet", i) for i in range(8)]
    assert ids[8:] == [derived_doc_id("sub/a.parquet", i) for i in range(8)]
    assert len(set(ids)) == 16


def test_lang_is_computed_with_lid176_when_asked(tmp_path):
    pq.write_table(pa.Table.from_pylist(rows(4)), tmp_path / "docs.parquet")
    table = read_all(resolve_source(str(tmp_path / "docs.parquet"), FieldMapping(text="content")), lid="")
    assert table.column("lang").to_pylist() == ["en", "zh", "en", "zh"]
    assert all(score > 0.5 for score in table.column("lang_score").to_pylist())


def test_export_documents_take_sample_copies_or_one(tmp_path):
    pq.write_table(pa.Table.from_pylist([{"text": "a", "sample_copies": 3}, {"text": "b", "sample_copies": None}]),
                   tmp_path / "x.parquet")
    source = resolve_source(str(tmp_path / "x.parquet"))
    parts = pa.RecordBatch.from_pylist([dict(zip(PARTS.names, p, strict=True)) for p in source_parts(source)],
                                       schema=PARTS)
    (batch,) = document_batches(iter([parts]), 10, source.fields)
    assert batch.column("copies").to_pylist() == [3, 1]
    assert batch.column("doc_id").to_pylist() == [derived_doc_id("x.parquet", 0), derived_doc_id("x.parquet", 1)]


def test_a_stage_directory_is_committed_or_refused_in_one_line(tmp_path):
    stage = tmp_path / "stage"
    (stage / "documents").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"doc_id": "x", "text": ENGLISH}]), stage / "documents" / "part-0.parquet")
    # A user's folder with documents/ and nothing of a stage's: just read.
    assert resolve_source(str(stage)).kind == "parquet"
    (stage / "stats.json").write_text("{}")
    with pytest.raises(InputError, match=f"not committed \\(no {COMMITTED_MARKER}\\): rerun that stage"):
        resolve_source(str(stage))
    crashed = tmp_path / "crashed"
    (crashed / "_staging").mkdir(parents=True)  # a stage that died before moving anything into place
    with pytest.raises(InputError, match="not committed"):
        resolve_source(str(crashed))
    cut = tmp_path / "cut"  # a commit cut short: its _PARTS list left beside parts written at fixed names
    (cut / "train").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"doc_id": "x", "text": ENGLISH}]), cut / "train" / "shard-00000.parquet")
    (cut / "_PARTS").write_text('["train/shard-00000.parquet"]')
    with pytest.raises(InputError, match="not committed"):
        resolve_source(str(cut))
    (stage / COMMITTED_MARKER).write_text("{}")
    source = resolve_source(str(stage))
    assert source.committed_stage and source.root == str(stage / "documents")
    assert source.has_columns(["doc_id", "text"]) and not source.has_columns(["doc_id", "text", "url"])


def test_unusable_inputs_are_one_line_naming_the_file(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"body": ENGLISH}])
    with pytest.raises(InputError, match=r"a.jsonl has no column 'text' \(columns: body\); name the text column with --text-field"):
        resolve_source(str(tmp_path / "a.jsonl"))
    with pytest.raises(InputError, match="does not exist"):
        resolve_source(str(tmp_path / "missing.parquet"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="not a Parquet"):
        resolve_source(str(tmp_path / "notes.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no documents"):
        resolve_source(str(tmp_path / "empty"))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        resolve_source(str(tmp_path / "bad.parquet"))
    write_jsonl(tmp_path / "b.jsonl", [{"text": ENGLISH}])
    with pytest.raises(InputError, match="--id-field"):
        resolve_source(str(tmp_path / "b.jsonl"), FieldMapping(id="uid"))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows(2))}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(InputError, match="DatasetDict: give one split's directory \\(train\\)"):
        resolve_source(str(tmp_path / "dd"))


def test_a_bad_jsonl_line_is_a_reject_row_where_the_stage_collects_them_else_one_line(tmp_path):
    from thresher.pipeline.stagedir.documents import INPUT_PARSE_ERROR

    path = write_jsonl(tmp_path / "docs.jsonl", rows(4))
    with path.open("a") as handle:
        handle.write('[1, 2]\n{"content": "unterminated\n')
        handle.write(json.dumps(rows(1)[0]) + "\n")
    source = resolve_source(str(path), FieldMapping(text="content", url="link"))
    with pytest.raises(InputError, match=r"docs.jsonl line 5 is a JSON list, not an object"):
        read_all(source)
    parts = pa.RecordBatch.from_pylist([dict(zip(PARTS.names, p, strict=True)) for p in source_parts(source)], schema=PARTS)
    rejects_dir = tmp_path / "rejects"
    documents = pa.Table.from_batches(list(read_source_parts(iter([parts]), source.fields, PREPARED, batch_rows=4,
                                                             rejects_dir=str(rejects_dir), stage="rules")), schema=PREPARED)
    assert documents.num_rows == 5
    rejects = pq.read_table(rejects_dir).to_pylist()
    assert [(r["rule"], r["stage"]) for r in rejects] == [(INPUT_PARSE_ERROR, "rules")] * 2
    assert rejects[0]["detail"] == f"{path} line 5 is a JSON list, not an object"
    assert rejects[1]["detail"].startswith(f"{path} line 6 is not JSON: ")
    assert [r["content"] for r in rejects] == ["[1, 2]", '{"content": "unterminated']
    assert not list(rejects_dir.glob(".*.tmp"))


def test_the_one_reader_reads_every_kind_of_input_with_the_field_mapping(tmp_path):
    pq.write_table(pa.Table.from_pylist(rows()), tmp_path / "docs.parquet", row_group_size=4)
    write_jsonl(tmp_path / "docs.jsonl.gz", rows())
    datasets.Dataset.from_list(rows()).save_to_disk(str(tmp_path / "hf"))
    stage = tmp_path / "stage"
    (stage / "documents").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"doc_id": f"d{r['n']}", "text": r["content"], "url": r["link"], "lang": "en"}
                                         for r in rows()]), stage / "documents" / "part-0.parquet")
    (stage / "stats.json").write_text("{}")
    (stage / COMMITTED_MARKER).write_text("{}")
    fields = FieldMapping(text="content", url="link")
    inputs = {"docs.parquet": "docs.parquet", "docs.jsonl.gz": "docs.jsonl.gz", "hf": "data-00000-of-00001.arrow"}
    for path, name in inputs.items():
        documents = list(read_documents(tmp_path / path, fields))
        assert documents == [{"doc_id": derived_doc_id(name, r["n"]), "url": r["link"], "text": r["content"], "lang": None}
                             for r in rows()], path
    assert list(read_documents(stage)) == [{"doc_id": f"d{r['n']}", "url": r["link"], "text": r["content"], "lang": "en"}
                                           for r in rows()]
    # Only the columns asked for; the ids are derived the same without the text.
    assert list(read_documents(tmp_path / "docs.parquet", fields, columns=("doc_id", "n"))) == [
        {"doc_id": derived_doc_id("docs.parquet", r["n"]), "n": str(r["n"])} for r in rows()]


def test_the_one_reader_derives_the_ids_the_spark_reader_gives(spark, tmp_path):
    from thresher.jobs.documents_input import documents_frame

    directory = tmp_path / "corpus"
    (directory / "sub").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows(8)), directory / "sub" / "a.parquet", row_group_size=2)
    pq.write_table(pa.Table.from_pylist(rows(5)), directory / "b.parquet", row_group_size=3)
    jsonl = write_jsonl(tmp_path / "docs.jsonl", [{**r, "doc_id": "given" if r["n"] == 2 else None} for r in rows(5)])
    fields = FieldMapping(text="content", url="link")
    for path in (directory, jsonl):
        source = resolve_source(str(path), fields)
        spark_ids = sorted((row.doc_id, row.text) for row in
                           documents_frame(spark, source, PREPARED, part_rows=1).select("doc_id", "text").collect())
        assert sorted((row["doc_id"], row["text"]) for row in read_documents(path, fields)) == spark_ids
        assert len({doc_id for doc_id, _ in spark_ids}) == len(spark_ids)
    assert [row["doc_id"] for row in read_documents(jsonl, fields)][1:3] == [derived_doc_id("docs.jsonl", 1), "given"]


def test_the_one_reader_refuses_an_uncommitted_stage_directory_at_once(tmp_path):
    stage = tmp_path / "stage"
    (stage / "documents").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"doc_id": "x", "text": ENGLISH}]), stage / "documents" / "part-0.parquet")
    (stage / "stats.json").write_text("{}")
    with pytest.raises(InputError, match=f"^{stage} is a thresher stage output that was not committed "
                                         f"\\(no {COMMITTED_MARKER}\\): rerun that stage$"):
        read_documents(stage)  # on the call, before any row is asked for


def test_the_one_reader_raises_on_a_bad_jsonl_line_or_sets_it_aside(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", rows(2))
    with path.open("a") as handle:
        handle.write('"just a string"\n')
        handle.write(json.dumps(rows(3)[2]) + "\n")
    fields = FieldMapping(text="content")
    with pytest.raises(InputError, match=r"docs.jsonl line 3 is a JSON str, not an object"):
        list(read_documents(path, fields))
    bad_lines = []
    documents = list(read_documents(path, fields, bad_lines=bad_lines))
    assert [d["text"] for d in documents] == [r["content"] for r in rows(3)]
    assert [d["doc_id"] for d in documents] == [derived_doc_id("docs.jsonl", i) for i in range(3)]
    assert bad_lines == [{"error": f"{path} line 3 is a JSON str, not an object", "content": '"just a string"'}]


def _good(i: int) -> bytes:
    return json.dumps({"id": f"d{i}", "text": f"document {i} of a user's corpus"}).encode() + b"\n"


@pytest.mark.parametrize("case, bad, error", [
    ("lone surrogate", b'{"id": "x", "text": "an emoji cut in half \\ud83d here"}\n',
     r"line 3 holds a lone surrogate"),
    ("invalid UTF-8", b'{"id": "x", "text": "caf\xe9 latin-1"}\n', r"line 3 is not UTF-8 \(invalid continuation byte"),
    ("deep JSON in an unused field", b'{"id": "x", "text": "t", "meta": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
     r"line 3 is not JSON thresher reads: a value nested too deeply"),
    ("a 5,000-digit number", b'{"id": "x", "text": "t", "n": ' + b"7" * 5000 + b"}\n",
     r"line 3 is not JSON thresher reads: Exceeds the limit \(4300 digits\)"),
    ("text a list", b'{"id": "x", "text": ["a", "b"]}\n', r"line 3: field 'text' is a list, not text"),
    ("text an object", b'{"id": "x", "text": {"body": "b"}}\n', r"line 3: field 'text' is an object, not text"),
])
def test_one_bad_jsonl_line_is_a_counted_reject_and_the_other_lines_are_read(tmp_path, case, bad, error):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(_good(1) + _good(2) + bad + _good(4))
    bad_lines: list[dict] = []
    rows = list(read_documents(str(path), bad_lines=bad_lines))
    assert [row["doc_id"] for row in rows] == ["d1", "d2", "d4"]
    assert len(bad_lines) == 1 and re.search(rf"^{path} {error}", bad_lines[0]["error"]), bad_lines
    with pytest.raises(InputError, match=error):  # where no stage collects rejects: one line naming the line
        list(read_documents(str(path)))


def test_lists_objects_and_huge_numbers_in_other_fields_become_their_json_text(tmp_path):
    path = tmp_path / "corpus.jsonl"
    rows = [{"id": "a", "text": "one", "lang": ["en", "de"]}, {"id": "b", "text": "two", "lang": {"code": "en"}},
            {"id": "c", "text": "three", "lang": "en", "big": 2 ** 80}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    found = list(read_documents(str(path), columns=("doc_id", "text", "lang")))
    assert found == [{"doc_id": "a", "text": "one", "lang": '["en", "de"]'},
                     {"doc_id": "b", "text": "two", "lang": '{"code": "en"}'}, {"doc_id": "c", "text": "three", "lang": "en"}]


def test_a_truncated_jsonl_gz_keeps_the_lines_before_the_cut(tmp_path):
    whole = gzip.compress(b"".join(_good(i) for i in range(200)))
    path = tmp_path / "corpus.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    bad_lines: list[dict] = []
    rows = list(read_documents(str(path), bad_lines=bad_lines))
    assert 0 < len(rows) < 200 and [row["doc_id"] for row in rows] == [f"d{i}" for i in range(len(rows))]
    assert len(bad_lines) == 1
    assert re.fullmatch(rf"{path} is cut short after line \d+ \(.*\): the lines before the cut are read", bad_lines[0]["error"])


def test_a_parquet_text_value_that_is_not_utf8_is_a_reject_naming_its_row(tmp_path):
    texts = [b"first document", b"caf\xe9 in latin-1", b"third document"]
    pq.write_table(pa.table({"text": pa.array(texts, pa.binary())}), tmp_path / "docs.parquet")
    bad_lines: list[dict] = []
    rows = list(read_documents(str(tmp_path / "docs.parquet"), bad_lines=bad_lines))
    assert [row["text"] for row in rows] == ["first document", "third document"]
    assert [row["doc_id"] for row in rows] == [derived_doc_id("docs.parquet", 0), derived_doc_id("docs.parquet", 2)]
    assert [bad["error"] for bad in bad_lines] == [
        f"{tmp_path}/docs.parquet row 1: 'text' is not UTF-8 (invalid continuation byte at byte 3)"]


def test_a_document_over_the_size_bound_is_a_reject_and_is_never_read_whole(tmp_path):
    fields = FieldMapping(max_document_bytes=1000)
    path = tmp_path / "corpus.jsonl"
    huge = json.dumps({"id": "huge", "text": "word " * 50_000}).encode() + b"\n"
    path.write_bytes(_good(1) + huge + _good(3))
    bad_lines: list[dict] = []
    assert [row["doc_id"] for row in read_documents(str(path), fields, bad_lines=bad_lines)] == ["d1", "d3"]
    assert [bad["error"] for bad in bad_lines] == [f"{path} line 2 is longer than 1,000 bytes (input.max_document_bytes)"]
    assert len(bad_lines[0]["content"]) <= 200
    pq.write_table(pa.table({"text": ["short", "x" * 1001, "short too"]}), tmp_path / "docs.parquet")
    bad_lines = []
    rows = list(read_documents(str(tmp_path / "docs.parquet"), fields, bad_lines=bad_lines))
    assert [row["text"] for row in rows] == ["short", "short too"]
    assert [bad["error"] for bad in bad_lines] == [
        f"{tmp_path}/docs.parquet row 1: 'text' is longer than 1,000 bytes (input.max_document_bytes)"]


def test_sample_copies_that_are_no_count_are_rejects_naming_the_row(tmp_path):
    path = tmp_path / "mix.jsonl"
    rows = [{"doc_id": "a", "text": "one", "sample_copies": 2}, {"doc_id": "b", "text": "two", "sample_copies": -7},
            {"doc_id": "c", "text": "three", "sample_copies": "many"}, {"doc_id": "d", "text": "four"},
            {"doc_id": "e", "text": "five", "sample_copies": 3.0}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    source = resolve_source(str(path))
    parts = pa.RecordBatch.from_pylist([dict(zip(PARTS.names, p, strict=True)) for p in source_parts(source)],
                                       schema=PARTS)
    batches = list(document_batches(iter([parts]), 16, source.fields, rejects_dir=str(tmp_path / "rejects"),
                                    stage="export"))
    found = pa.Table.from_batches(batches).to_pylist()
    assert [(row["doc_id"], row["copies"]) for row in found] == [("a", 2), ("d", 1), ("e", 3)]
    (rejects,) = (tmp_path / "rejects").glob("*.parquet")
    assert [(row["rule"], row["detail"]) for row in pq.read_table(rejects).to_pylist()] == [
        ("input_parse_error", f"{path} row 1: sample_copies -7 is not a whole number of copies from 0 to 1,000"),
        ("input_parse_error", f"{path} row 2: sample_copies 'many' is not a whole number of copies from 0 to 1,000")]
    with pytest.raises(InputError, match="row 1: sample_copies -7 is not a whole number"):
        list(document_batches(iter([parts]), 16, source.fields))


def test_the_inputs_own_columns_keep_their_types_and_a_jsonl_ones_come_from_its_first_records(tmp_path):
    rows = [{"body": "a page", "url": "https://a.example/", "licence": "cc-by", "views": 3, "score": 0.5,
             "source": {"crawl": "CC-1", "hops": [1]}, "topics": ["x"], "empty": None}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "docs.parquet")
    (tmp_path / "docs.jsonl").write_text(json.dumps(rows[0]) + "\n")
    fields = FieldMapping(text="body")
    parquet = {f.name: f.type for f in kept_fields(resolve_source(str(tmp_path / "docs.parquet"), fields), PREPARED)}
    assert parquet == {"empty": pa.null(), "licence": pa.string(), "score": pa.float64(),
                       "source": pa.struct([("crawl", pa.string()), ("hops", pa.list_(pa.int64()))]),
                       "topics": pa.list_(pa.string()), "views": pa.int64()}
    jsonl = {f.name: f.type for f in kept_fields(resolve_source(str(tmp_path / "docs.jsonl"), fields), PREPARED)}
    assert jsonl == {"empty": pa.string(), "licence": pa.string(), "score": pa.float64(), "source": pa.string(),
                     "topics": pa.string(), "views": pa.int64()}  # lists and objects as JSON text, nulls as text


def test_a_column_of_two_types_or_one_spark_cannot_hold_is_one_line(tmp_path):
    pq.write_table(pa.table({"text": ["a"], "views": pa.array([1], pa.int64())}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"text": ["b"], "views": pa.array(["many"])}), tmp_path / "b.parquet")
    with pytest.raises(InputError, match=r"b.parquet: column 'views' is string there but int64 in .*a.parquet"):
        kept_fields(resolve_source(str(tmp_path)), PREPARED)
    (tmp_path / "b.parquet").unlink()
    pq.write_table(pa.table({"text": ["a"], "big": pa.array([2**63], pa.uint64())}), tmp_path / "a.parquet")
    with pytest.raises(InputError, match="column 'big' is uint64, a type Spark cannot carry"):
        kept_fields(resolve_source(str(tmp_path)), PREPARED)


def test_a_jsonl_column_whose_later_values_change_type_is_one_line_naming_it(tmp_path, monkeypatch):
    from thresher.pipeline.stagedir import documents

    monkeypatch.setattr(documents, "JSONL_TYPE_SAMPLE", 2)  # the types come from the first two records
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": f"page {i}", "views": i if i < 3 else "lots"}) + "\n" for i in range(5)))
    source = resolve_source(str(path))
    schema = extend(PREPARED, *kept_fields(source, PREPARED))
    part = pa.RecordBatch.from_pylist([dict(zip(PARTS.names, row, strict=True)) for row in source_parts(source)],
                                      schema=PARTS)
    with pytest.raises(InputError, match="docs.jsonl rows from 2: column 'views' holds string values that are no int64"):
        list(read_source_parts(iter([part]), source.fields, schema, batch_rows=2))
