"""Reading a user's documents into Spark: the same rows and ids whatever the number of partitions."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.jobs.documents_input import documents_frame, fresh_rejects_dir, parse_rejects, parts_frame
from thresher.pipeline.stagedir import COMMITTED_MARKER, StageOutput
from thresher.pipeline.stagedir.documents import FieldMapping, derived_doc_id, resolve_source
from thresher.schemas.documents import PREPARED, RULES


def test_derived_ids_are_the_same_with_1_and_4_partitions(spark, tmp_path):
    texts = [f"document number {i} about the weather in spring" for i in range(40)]
    pq.write_table(pa.table({"body": texts}), tmp_path / "docs.parquet", row_group_size=10)
    source = resolve_source(str(tmp_path / "docs.parquet"), FieldMapping(text="body"))
    frames = {}
    for partitions, part_rows in ((1, 100), (4, 10)):
        assert parts_frame(spark, source, part_rows).rdd.getNumPartitions() == partitions
        output = StageOutput(tmp_path / f"out{partitions}")
        output.begin()
        frame = documents_frame(spark, source, PREPARED, part_rows=part_rows, scratch=(output, "input"))
        frames[partitions] = sorted((row.doc_id, row.text) for row in frame.select("doc_id", "text").collect())
    assert frames[1] == frames[4] == sorted((derived_doc_id("docs.parquet", i), t) for i, t in enumerate(texts))


def test_a_complete_committed_stage_is_read_as_it_is(spark, tmp_path):
    (tmp_path / "documents").mkdir()
    row = {name: None for name in RULES.names} | {"doc_id": "a", "text": "hello", "lines_removed_dedup": 2}
    pq.write_table(pa.Table.from_pylist([row], schema=RULES), tmp_path / "documents" / "part-0.parquet")
    (tmp_path / COMMITTED_MARKER).write_text("{}")
    frame = documents_frame(spark, resolve_source(str(tmp_path)), RULES)
    assert "read_source_parts" not in frame._jdf.queryExecution().toString()  # its parts as they are, no conversion
    assert [r.asDict() for r in frame.collect()] == [row]


def test_documents_on_s3_read_as_the_same_documents_on_local_disk(spark_s3, s3_url, tmp_path):
    import fsspec

    texts = [f"document {i} on a shared store" for i in range(30)]
    pq.write_table(pa.table({"text": texts, "id": [f"d{i}" for i in range(30)]}), tmp_path / "a.parquet",
                   row_group_size=7)
    (tmp_path / "b.jsonl").write_text("".join(f'{{"text": "jsonl {i}"}}\n' for i in range(5)) + "not json\n")
    fsspec.filesystem("s3").put(str(tmp_path / "a.parquet"), f"{s3_url}/parquet/a.parquet")
    fsspec.filesystem("s3").put(str(tmp_path / "b.jsonl"), f"{s3_url}/jsonl/b.jsonl")
    for local, remote in ((tmp_path / "a.parquet", f"{s3_url}/parquet"), (tmp_path / "b.jsonl", f"{s3_url}/jsonl/b.jsonl")):
        rows = {}
        for where, path in (("local", str(local)), ("s3", remote)):
            output = StageOutput(tmp_path / f"out-{where}" if where == "local" else f"{s3_url}/out")
            output.begin()
            rejects = fresh_rejects_dir(output)
            frame = documents_frame(spark_s3, resolve_source(path), RULES, part_rows=10, rejects_dir=rejects, stage="rules")
            rows[where] = (sorted(tuple(row) for row in frame.select("doc_id", "text").collect()),
                           [row.detail.replace(path, "INPUT") for row in parse_rejects(spark_s3, rejects).collect()])
        assert rows["s3"] == rows["local"]
        assert len(rows["s3"][0]) == (30 if "parquet" in remote else 5)
    assert rows["s3"][1] == ["INPUT line 6 is not JSON: Expecting value: line 1 column 1 (char 0)"]  # the JSONL line that is no object, counted on s3 too


def test_ids_unique_only_per_file_are_refused_in_one_line_or_scoped_by_file(spark, tmp_path):
    """Each file of a sharded corpus numbering its ids from 0 gave 43 documents 23 ids, merged without a word."""
    from thresher.schemas.errors import InputError

    (tmp_path / "corpus").mkdir()
    for shard, count in (("a", 23), ("b", 20)):
        (tmp_path / "corpus" / f"{shard}.jsonl").write_text(
            "".join(f'{{"id": {i}, "text": "shard {shard} document {i}"}}\n' for i in range(count)))
    output = StageOutput(tmp_path / "out")
    output.begin()
    with pytest.raises(InputError, match=rf"^{tmp_path}/corpus: 20 ids of column 'id' are on more than one document "
                                         r"\(e.g. '0', 2 times\): pass --ids-per-file when each file numbers its own"):
        documents_frame(spark, resolve_source(str(tmp_path / "corpus")), PREPARED, scratch=(output, "input"))
    scoped = resolve_source(str(tmp_path / "corpus"), FieldMapping(ids_per_file=True))
    frame = documents_frame(spark, scoped, PREPARED, scratch=(output, "input"))
    ids = [row.doc_id for row in frame.collect()]
    assert len(ids) == len(set(ids)) == 43 and {"a.jsonl:0", "b.jsonl:0", "a.jsonl:22"} <= set(ids)


def own_columns_corpus(shared_data) -> list[dict]:
    """Real English pages with columns of a user's own: strings, numbers, a struct holding a list, a list,
    a boolean and a column that is null in some rows."""
    import json

    texts = [json.loads(line)["text"] for line in (shared_data / "quality/dclm/agreement_data.jsonl").open()][:40]
    return [{"text": text, "url": f"https://www.example.org/page/{i}", "label": ["news", "blog", "wiki"][i % 3],
             "licence": "cc-by-4.0" if i % 2 else None, "score": i / 7, "views": 10**12 + i, "reviewed": i % 5 == 0,
             "provenance": {"crawl": f"CC-2024-{i % 4}", "hops": [i, i + 1][: i % 3]}, "topics": ["a", "b", "c"][: i % 4]}
            for i, text in enumerate(texts)]


OWN = ("label", "licence", "score", "views", "reviewed", "provenance", "topics")


def own_values(path, key="doc_id") -> dict:
    """doc_id -> the user's own columns of each row of a Parquet table (a stage's documents, the index)."""
    return {row[key]: {name: row[name] for name in OWN} for row in pq.read_table(path).to_pylist()}


def test_a_users_own_columns_pass_rules_tag_select_and_reach_the_export_index_unchanged(
        spark, shared_data, models_dir, quality_model, tmp_path):
    from stage_rows import stage3_config

    from thresher.jobs import cli
    from thresher.jobs.export import run_export
    from thresher.jobs.selection import run_select
    from thresher.jobs.tag import run_tag
    from thresher.pipeline.export.tokenize import save_tokenizer, train_byte_level_bpe

    records = own_columns_corpus(shared_data)
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "corpus.parquet")
    given = {derived_doc_id("corpus.parquet", i): {name: r[name] for name in OWN} for i, r in enumerate(records)}
    assert cli.main(["rules", str(tmp_path / "corpus.parquet"), "--output", str(tmp_path / "rules")]) == 0
    rules = own_values(tmp_path / "rules" / "documents")
    assert 0 < len(rules) < len(given) and all(rules[doc_id] == given[doc_id] for doc_id in rules)  # some dropped
    schema = pq.read_schema(tmp_path / "rules" / "documents" / next(p.name for p in (tmp_path / "rules" / "documents").iterdir()))
    assert schema.field("provenance").type == pa.struct([("crawl", pa.string()), ("hops", pa.list_(pa.int64()))])
    config = stage3_config(models_dir, quality_model, **{"export.seq_len": 63, "export.validation_fraction": 0.0})
    run_tag(spark, str(tmp_path / "rules"), str(tmp_path / "tag"), config)
    assert own_values(tmp_path / "tag" / "documents") == rules
    run_select(spark, str(tmp_path / "tag"), str(tmp_path / "select"), config)
    selected = own_values(tmp_path / "select" / "documents")
    assert selected and all(selected[doc_id] == given[doc_id] for doc_id in selected)
    tokenizer = tmp_path / "tokenizer"
    save_tokenizer(train_byte_level_bpe([r["text"] for r in records], 600, ["<|endoftext|>", "<|pad|>"]), tokenizer,
                   "<|endoftext|>", "<|pad|>")
    run_export(spark, str(tmp_path / "select"), str(tmp_path / "export"), str(tokenizer), config)
    index = pq.read_table(tmp_path / "export" / "index").to_pylist()
    copies = {row["doc_id"]: row["sample_copies"] for row in pq.read_table(tmp_path / "select" / "documents").to_pylist()}
    assert {(row["doc_id"], row["copy"]) for row in index} == {(d, c) for d, n in copies.items() for c in range(n)}
    assert all({name: row[name] for name in OWN} == given[row["doc_id"]] for row in index)


def test_a_jsonl_corpus_keeps_its_columns_with_lists_and_objects_as_their_json_text(spark, shared_data, tmp_path):
    import json

    from thresher.jobs import cli

    records = own_columns_corpus(shared_data)
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert cli.main(["rules", str(tmp_path / "corpus.jsonl"), "--output", str(tmp_path / "rules")]) == 0
    kept = own_values(tmp_path / "rules" / "documents")
    assert kept
    for doc_id, values in kept.items():
        record = records[next(i for i in range(len(records)) if derived_doc_id("corpus.jsonl", i) == doc_id)]
        nested = {"provenance", "topics"}
        assert {k: v for k, v in values.items() if k not in nested} == {k: record[k] for k in OWN if k not in nested}
        assert {k: json.loads(values[k]) for k in nested} == {k: record[k] for k in nested}


@pytest.mark.parametrize(("column", "command"), [("minhash_cluster", "rules"), ("status", "rules"), ("shard", "export")])
def test_an_input_column_named_as_one_thresher_writes_is_one_line_before_spark(tmp_path, capsys, column, command):
    from thresher.jobs import cli

    pq.write_table(pa.table({"text": ["some text"], column: ["mine"]}), tmp_path / "docs.parquet")
    extra = ["--tokenizer", str(tmp_path)] if command == "export" else []
    code = cli.main([command, str(tmp_path / "docs.parquet"), "--output", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"column {column!r} is a column thresher writes" in err[0] and "rename it" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_run_starts_at_rules_on_one_documents_input_and_at_prepare_on_web_archives(tmp_path):
    from thresher.jobs.documents_input import run_documents_input

    (tmp_path / "corpus.jsonl").write_text('{"text": "a"}\n')
    (tmp_path / "crawl").mkdir()
    (tmp_path / "crawl" / "a.warc.gz").write_bytes(b"")
    (tmp_path / "stage" / "documents").mkdir(parents=True)
    (tmp_path / "stage" / COMMITTED_MARKER).write_text("{}\n")
    (tmp_path / "parquet").mkdir()
    pq.write_table(pa.table({"text": ["a"]}), tmp_path / "parquet" / "part-0.parquet")
    for documents in ("corpus.jsonl", "stage", "parquet"):
        assert run_documents_input([str(tmp_path / documents)]) == str(tmp_path / documents), documents
    for archives in (["crawl"], ["crawl/a.warc.gz"], ["corpus.jsonl", "crawl/a.warc.gz"], ["crawl/*"]):
        assert run_documents_input([str(tmp_path / name) for name in archives]) is None, archives


def test_run_on_documents_without_their_text_column_is_one_line_before_spark(tmp_path, capsys):
    from thresher.jobs import cli

    (tmp_path / "corpus.jsonl").write_text('{"body": "some text"}\n')
    code = cli.main(["run", str(tmp_path / "corpus.jsonl"), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("thresher run: error: ") and "has no column 'text'" in err[0] and "--text-field" in err[0]
    assert not (tmp_path / "out" / "run.json").exists()
