"""The export job on real English and Chinese documents, in Spark local mode.

Every check decodes the shards back: rows are put back in packing order with the manifest's seed
(the permutation is public), pads are dropped, the stream is cut at EOS, and the pieces must be
exactly the input texts, copy for copy, in each split.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.jobs import cli
from thresher.jobs.export import _input_parts, parts_frame, run_export
from thresher.pipeline.config import ConfigError, load_config
from thresher.pipeline.export.plan import SPLITS, document_key, is_validation, permute, shuffle_seed
from thresher.pipeline.export.tokenize import load_tokenizer, save_tokenizer, tokenizer_sha256, train_byte_level_bpe
from thresher.pipeline.stagedir import COMMITTED_MARKER
from thresher.pipeline.stagedir.documents import resolve_source
from thresher.schemas.errors import InputError
from thresher.schemas.stats import read_stats, stage_stats

SETTINGS = {
    "export.seq_len": 255,
    "export.seed": 11,
    "export.validation_fraction": 0.2,
    "export.pack_ranges": 3,
    "export.shard_tokens": 100_000,
    "export.row_group_sequences": 64,
}
UPSTREAM_STATS = stage_stats("select", thresher_version="test", config_digest="0123456789abcdef", started=1.7e9,
                             finished=1.7e9 + 1, phases={}, inputs=[], documents_in=400, documents_out=385,
                             rejects_by_rule={"gopher": 15}, details={})


def stage_rows(shared_data):
    dclm = [json.loads(line)["text"] for line in (shared_data / "quality/dclm/agreement_data.jsonl").open()][:160]
    chinese = shared_data / "quality/chinesewebtext/cleared1.jsonl"
    texts = dclm + [json.loads(line)["raw_content"] for line in chinese.open()][:60]
    texts += ["", "a literal <|endoftext|> must stay text", "  spaces\tand\nnewlines  "]
    rows = []
    for i, text in enumerate(texts):
        doc_id = hashlib.sha1(f"doc/{i}".encode()).hexdigest()
        rows.append({"doc_id": doc_id, "url": f"https://example.com/{i}", "text": text, "sample_copies": i % 4})
    rows[-1]["sample_copies"] = None  # not rebalanced: exported once
    return rows


def write_stage(directory, rows, files):
    (directory / "documents").mkdir(parents=True)
    table = pa.Table.from_pylist(rows, schema=pa.schema([("doc_id", pa.string()), ("url", pa.string()),
                                                         ("text", pa.string()), ("sample_copies", pa.int32())]))
    for part, indices in enumerate(np.array_split(np.arange(len(rows)), files)):
        pq.write_table(table.take(indices), directory / f"documents/part-{part:05d}.parquet")
    (directory / "stats.json").write_text(json.dumps(UPSTREAM_STATS))
    (directory / COMMITTED_MARKER).write_text("{}")
    return directory


@pytest.fixture(scope="module")
def rows(shared_data):
    return stage_rows(shared_data)


@pytest.fixture(scope="module")
def stages(rows, tmp_path_factory):
    base = tmp_path_factory.mktemp("stages")
    return {files: write_stage(base / f"in{files}", rows, files) for files in (1, 4)}


@pytest.fixture(scope="module")
def tokenizer_dir(rows, tmp_path_factory):
    directory = tmp_path_factory.mktemp("tokenizer")
    texts = [r["text"] for r in rows if r["text"]]
    save_tokenizer(train_byte_level_bpe(texts, 1000, ["<|endoftext|>", "<|pad|>"]), directory,
                   "<|endoftext|>", "<|pad|>")
    return directory


@pytest.fixture(scope="module")
def config():
    return load_config(None, SETTINGS)


@pytest.fixture(scope="module")
def concat_run(spark, stages, tokenizer_dir, config, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "concat"
    assert parts_frame(spark, _input_parts(resolve_source(str(stages[1])))).rdd.getNumPartitions() == 1
    stats = run_export(spark, str(stages[1]), str(out), str(tokenizer_dir), config)
    return out, stats


def expected_documents(rows, seed, fraction, ranges):
    """Per split, the texts of every copy in packing order: ranges in order, each sorted by key."""
    copies = {name: [] for name in SPLITS}
    for row in rows:
        n = 1 if row["sample_copies"] is None else row["sample_copies"]
        if not row["text"]:
            continue
        split = SPLITS[int(is_validation(row["doc_id"], seed, fraction))]
        for copy_index in range(n):
            key = document_key(row["doc_id"], copy_index, seed)
            copies[split].append((key % ranges, key, row["text"]))
    return {name: [text for _, _, text in sorted(items)] for name, items in copies.items()}


def split_rows(out, manifest, split):
    """(tokens [n, seq_len + 1], doc_offsets) of a split, in packing order."""
    shards = manifest["splits"][split]["shards"]
    if not shards:
        return np.zeros((0, manifest["seq_len"] + 1), np.int32), []
    table = pa.concat_tables([pq.read_table(out / shard["path"]) for shard in shards])
    tokens = np.asarray(table.column("tokens").combine_chunks().flatten()).reshape(len(table), -1)
    offsets = table.column("doc_offsets").to_pylist()
    order = permute(np.arange(len(table)), len(table), shuffle_seed(manifest["seed"], split))
    return tokens[order], [offsets[i] for i in order]


def decode_documents(tokens, manifest, tokenizer):
    stream = tokens.reshape(-1)
    stream = stream[stream != manifest["pad_token_id"]]
    ends = np.flatnonzero(stream == manifest["eos_token_id"])
    assert len(ends) == 0 or ends[-1] == len(stream) - 1, "tokens after the last EOS"
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [tokenizer.decode(stream[s:e]) for s, e in zip(starts, ends, strict=True)]


def check_round_trip(out, rows, tokenizer_dir, config):
    manifest = json.loads((out / "manifest.json").read_text())
    tokenizer = load_tokenizer(tokenizer_dir)
    expected = expected_documents(rows, config.export.seed, config.export.validation_fraction,
                                  config.export.pack_ranges)
    for split in SPLITS:
        tokens, _ = split_rows(out, manifest, split)
        assert tokens.shape[1] == config.export.seq_len + 1
        assert decode_documents(tokens, manifest, tokenizer) == expected[split]
    return manifest, expected


def test_round_trip_gives_back_every_text_exactly_in_its_split(concat_run, rows, tokenizer_dir, config):
    out, _ = concat_run
    _, expected = check_round_trip(out, rows, tokenizer_dir, config)
    assert expected["validation"] and expected["train"]  # both splits exercised
    train_texts, validation_texts = set(expected["train"]), set(expected["validation"])
    ids_by_text = {}
    for row in rows:
        ids_by_text.setdefault(row["text"], set()).add(row["doc_id"])
    # a text in both splits can only come from distinct documents that share it
    assert all(len(ids_by_text[t]) > 1 for t in train_texts & validation_texts)


def test_manifest_counts_match_the_shards_and_the_input(concat_run, rows, tokenizer_dir, config):
    out, stats = concat_run
    manifest = json.loads((out / "manifest.json").read_text())
    capacity = config.export.seq_len + 1
    expected = expected_documents(rows, config.export.seed, config.export.validation_fraction,
                                  config.export.pack_ranges)
    assert manifest["format"] == "thresher-tokens/1" and manifest["token_dtype"] == "int32"
    assert manifest["seq_len"] == 255 and manifest["seed"] == 11 and manifest["pack_mode"] == "concat"
    assert manifest["config_hash"] == config.digest()
    assert manifest["tokenizer"] == {"name": tokenizer_dir.name, "path": str(tokenizer_dir.resolve()),
                                     "sha256": tokenizer_sha256(tokenizer_dir)}
    assert manifest["columns"]["tokens"].startswith("seq_len + 1 token ids (int32): input_ids = tokens[:-1]")
    loaded = load_tokenizer(tokenizer_dir)
    assert (manifest["vocab_size"], manifest["eos_token_id"], manifest["pad_token_id"]) == (1000, loaded.eos_id,
                                                                                            loaded.pad_id)
    assert manifest["upstream_stats"] == UPSTREAM_STATS
    for split in SPLITS:
        entry = manifest["splits"][split]
        per_shard = [pq.ParquetFile(out / s["path"]).metadata.num_rows for s in entry["shards"]]
        assert per_shard == [s["sequences"] for s in entry["shards"]]
        assert sum(per_shard) == entry["sequences"] and entry["tokens"] == entry["sequences"] * capacity
        assert all(s["tokens"] == s["sequences"] * capacity for s in entry["shards"])
        assert all(s["tokens"] <= 100_000 for s in entry["shards"])
        assert entry["documents"] == len(expected[split])
        tokens, _ = split_rows(out, manifest, split)
        assert entry["padding_tokens"] == int((tokens == manifest["pad_token_id"]).sum())
        assert entry["padding_tokens"] < config.export.pack_ranges * capacity  # only range tails are padded
        assert entry["dropped_tokens"] == 0
    assert len(manifest["splits"]["train"]["shards"]) > 1
    with_text = [r for r in rows if r["text"]]
    assert stats["documents_in"] == len(rows)
    assert stats["rejects_by_rule"] == {"empty_text": 1}
    assert stats["details"]["documents_sampled_out"] == sum(1 for r in with_text if r["sample_copies"] == 0)
    assert stats["documents_out"] == sum(1 for r in with_text if r["sample_copies"] != 0)
    assert stats["details"]["document_copies_out"] == sum(len(v) for v in expected.values())
    assert sorted(p.name for p in out.iterdir()) == ["_COMMITTED", "index", "manifest.json", "stats.json", "train",
                                                     "validation"]


def test_shards_are_identical_with_four_input_partitions(spark, concat_run, stages, tokenizer_dir, config, tmp_path):
    out_one, _ = concat_run
    out_four = tmp_path / "four"
    assert parts_frame(spark, _input_parts(resolve_source(str(stages[4])))).rdd.getNumPartitions() == 4
    run_export(spark, str(stages[4]), str(out_four), str(tokenizer_dir), config)
    assert (out_four / "manifest.json").read_text() == (out_one / "manifest.json").read_text()
    manifest = json.loads((out_one / "manifest.json").read_text())
    for split in SPLITS:
        for shard in manifest["splits"][split]["shards"]:
            assert (out_four / shard["path"]).read_bytes() == (out_one / shard["path"]).read_bytes(), shard["path"]


def test_shards_stream_by_row_group_and_read_in_pandas(concat_run):
    out, _ = concat_run
    manifest = json.loads((out / "manifest.json").read_text())
    shard = out / manifest["splits"]["train"]["shards"][0]["path"]
    parquet = pq.ParquetFile(shard)
    assert parquet.metadata.num_row_groups > 1
    assert {parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups - 1)} == {64}
    assert parquet.schema_arrow.field("tokens").type == pa.list_(pa.int32())
    frame = pd.read_parquet(shard)
    assert len(frame) == parquet.metadata.num_rows and len(frame["tokens"][0]) == 256
    assert list(frame["doc_offsets"][0]) == [0]


def test_shards_read_in_duckdb_and_in_datasets(concat_run):
    import datasets
    import duckdb

    out, _ = concat_run
    manifest = json.loads((out / "manifest.json").read_text())
    shard = str(out / manifest["splits"]["train"]["shards"][0]["path"])
    rows = manifest["splits"]["train"]["shards"][0]["sequences"]
    assert duckdb.sql(f"select count(*), min(len(tokens)) from '{shard}'").fetchall() == [(rows, 256)]
    loaded = datasets.load_dataset("parquet", data_files=shard, split="train",
                                   cache_dir=str(out.parent / "datasets-cache"))
    assert len(loaded) == rows and len(loaded[0]["tokens"]) == 256
    first = pq.read_table(shard).column("tokens")[0].as_py()
    assert loaded[0]["tokens"] == first


def indexed_copies(out, tokenizer_dir) -> dict:
    """(doc_id, copy) -> (the text its index pieces point at, EOS left out; the last token; its url), read from
    the shards as a user of the index would."""
    manifest = json.loads((out / "manifest.json").read_text())
    tokenizer = load_tokenizer(tokenizer_dir)
    index = pq.read_table(out / manifest["document_index"]["path"])
    assert index.num_rows == manifest["document_index"]["rows"] > 0
    keys = [(r["doc_id"], r["copy"], r["piece"]) for r in index.select(["doc_id", "copy", "piece"]).to_pylist()]
    assert keys == sorted(keys)
    shards, tokens, urls = {}, {}, {}
    for row in index.to_pylist():
        shard = shards.setdefault(row["shard"], pq.read_table(out / row["shard"]).column("tokens").to_pylist())
        key = (row["doc_id"], row["copy"])
        assert len(tokens.setdefault(key, [])) == 0 or row["piece"] > 0
        tokens[key] += shard[row["sequence"]][row["token_start"]:row["token_end"]]
        urls[key] = row["url"]
    return {key: (tokenizer.decode(ids[:-1]), ids[-1], urls[key]) for key, ids in tokens.items()}


@pytest.mark.parametrize("mode", ["concat", "boundary"])
def test_the_document_index_points_at_every_copy_s_tokens_and_carries_the_input_s_columns(
        spark, concat_run, stages, rows, tokenizer_dir, tmp_path, mode):
    out = concat_run[0]
    if mode == "boundary":
        out = tmp_path / "boundary"
        run_export(spark, str(stages[4]), str(out), str(tokenizer_dir),
                   load_config(None, {**SETTINGS, "export.pack_mode": "boundary"}))
    eos = json.loads((out / "manifest.json").read_text())["eos_token_id"]
    expected = {(row["doc_id"], copy): (row["text"], eos, row["url"]) for row in rows if row["text"]
                for copy in range(1 if row["sample_copies"] is None else row["sample_copies"])}
    assert indexed_copies(out, tokenizer_dir) == expected


def test_boundary_mode_from_the_command_line(stages, rows, tokenizer_dir, config, tmp_path):
    out = tmp_path / "boundary"
    settings = [a for key, value in SETTINGS.items() if key != "export.seq_len" for a in ("--set", f"{key}={value}")]
    code = cli.main(["export", str(stages[1]), "--output", str(out), "--tokenizer", str(tokenizer_dir),
                     "--seq-len", "255", "--set", "export.pack_mode=boundary", *settings])
    assert code == 0
    manifest, _ = check_round_trip(out, rows, tokenizer_dir, config)
    assert manifest["pack_mode"] == "boundary"
    capacity = 256
    for split in SPLITS:
        tokens, offsets = split_rows(out, manifest, split)
        stream = tokens.reshape(-1)
        real = np.flatnonzero(stream != manifest["pad_token_id"])
        ends = real[stream[real] == manifest["eos_token_id"]]
        starts = np.concatenate([real[:1], real[np.searchsorted(real, ends[:-1]) + 1]])
        for start, end in zip(starts, ends, strict=True):
            if end - start + 1 <= capacity:
                assert start // capacity == end // capacity, "a document that fits a row straddles two"
        for row, row_offsets in enumerate(offsets):
            in_row = {int(s) % capacity for s in starts if s // capacity == row}
            assert row_offsets == sorted({0} | in_row)
        assert manifest["splits"][split]["padding_tokens"] == len(stream) - len(real)


def test_bad_settings_and_uncommitted_input_fail_before_any_work(spark, stages, tokenizer_dir, tmp_path):
    with pytest.raises(ConfigError, match="pack_mode"):
        run_export(spark, str(stages[1]), str(tmp_path / "a"), str(tokenizer_dir),
                   load_config(None, {"export.pack_mode": "zigzag"}))
    uncommitted = tmp_path / "uncommitted"
    (uncommitted / "documents").mkdir(parents=True)
    (uncommitted / "stats.json").write_text("{}")  # a stage that did not finish, not a user's folder
    with pytest.raises(InputError, match="not committed \\(no _COMMITTED\\): rerun that stage"):
        run_export(spark, str(uncommitted), str(tmp_path / "b"), str(tokenizer_dir), load_config(None, SETTINGS))
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        run_export(spark, str(stages[1]), str(tmp_path / "c"), str(tmp_path / "none"), load_config(None, SETTINGS))
    (uncommitted / COMMITTED_MARKER).write_text("{}")
    with pytest.raises(InputError, match="holds no Parquet files"):
        run_export(spark, str(uncommitted), str(tmp_path / "d"), str(tokenizer_dir), load_config(None, SETTINGS))
    pq.write_table(pa.table({"doc_id": ["x"], "body": ["no text column"]}), uncommitted / "documents/part-0.parquet")
    with pytest.raises(InputError, match=r"part-0.parquet has no column 'text' .*--text-field"):
        run_export(spark, str(uncommitted), str(tmp_path / "e"), str(tokenizer_dir), load_config(None, SETTINGS))
    assert not any((tmp_path / name).exists() for name in ("a", "b", "c", "d", "e"))


def write_user_documents(directory, rows, kind):
    """`rows` as a user's Parquet file, JSONL file or datasets directory, under their own column names."""
    import datasets

    records = [{"uid": r["doc_id"], "body": r["text"], "link": r["url"], "sample_copies": r["sample_copies"]}
               for r in rows]
    if kind == "parquet":
        path = directory / "docs.parquet"
        pq.write_table(pa.Table.from_pylist(records), path, row_group_size=50)
    elif kind == "jsonl":
        path = directory / "docs.jsonl.gz"
        import gzip

        lines = [json.dumps(r, ensure_ascii=False) for r in records]
        lines.insert(1, "not json")  # a broken record: a counted reject (the test below), not a failed job
        path.write_bytes(gzip.compress("".join(line + "\n" for line in lines).encode()))
    else:
        path = directory / "hf"
        datasets.Dataset.from_list(records).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("kind", ["parquet", "jsonl", "datasets"])
def test_user_documents_export_to_the_same_shards_as_a_stage(concat_run, rows, tokenizer_dir, tmp_path, kind):
    out_stage, _ = concat_run
    path = write_user_documents(tmp_path, rows, kind)
    out = tmp_path / "export"
    settings = [a for key, value in SETTINGS.items() for a in ("--set", f"{key}={value}")]
    code = cli.main(["export", str(path), "--output", str(out), "--tokenizer", str(tokenizer_dir),
                     "--text-field", "body", "--id-field", "uid", "--url-field", "link", *settings])
    assert code == 0
    stats = read_stats(out)
    assert stats["rejects_by_rule"].get("input_parse_error", 0) == (kind == "jsonl")
    assert stats["documents_in"] == read_stats(out_stage)["documents_in"] + (kind == "jsonl")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"] == json.loads((out_stage / "manifest.json").read_text())["splits"]
    for split in SPLITS:
        for shard in manifest["splits"][split]["shards"]:
            assert (out / shard["path"]).read_bytes() == (out_stage / shard["path"]).read_bytes(), shard["path"]


def test_user_documents_without_ids_export_under_derived_ids(spark, rows, tokenizer_dir, config, tmp_path):
    from thresher.pipeline.stagedir.documents import FieldMapping, derived_doc_id

    path = write_user_documents(tmp_path, [{**r, "doc_id": None} for r in rows], "parquet")
    stats = run_export(spark, str(path), str(tmp_path / "out"), str(tokenizer_dir), config, FieldMapping(text="body"))
    validation = [r for i, r in enumerate(rows) if r["text"] and r["sample_copies"] != 0
                  and is_validation(derived_doc_id("docs.parquet", i), 11, 0.2)]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert stats["documents_in"] == len(rows)
    assert manifest["splits"]["validation"]["source_documents"] == len(validation) > 0


def test_an_empty_split_is_said():
    from thresher.jobs.export import empty_split_notes

    def manifest(train, validation, fraction=0.005):
        return {"validation_fraction": fraction,
                "splits": {"train": {"sequences": train, "documents": 45 if train else 0},
                           "validation": {"sequences": validation, "documents": 3 if validation else 0}}}

    assert empty_split_notes(manifest(16, 0)) == [
        "export: warning: the validation split is empty (0 documents of 45): raise export.validation_fraction "
        "for a validation loss"]
    assert empty_split_notes(manifest(16, 2)) == [] and empty_split_notes(manifest(16, 0, fraction=0.0)) == []
    assert empty_split_notes(manifest(0, 2))[0].startswith("export: warning: the train split is empty")


def test_the_driver_refuses_a_range_packed_twice_or_a_document_count_that_does_not_add_up():
    from thresher.jobs.export import _input_counts, _split_summaries
    from thresher.pipeline.export.encode import InputTally

    def summary(range_id, sequences, documents):
        return {"split": 0, "range_id": range_id, "file": "packed-x.parquet", "sequences": sequences,
                "documents": documents, "padding": 0, "dropped_tokens": 0, "dropped_documents": 0}

    counts = _input_counts(InputTally(source_documents=[5, 0], copies=[6, 0]))
    splits = _split_summaries([summary(1, 4, 2), summary(0, 3, 4)], counts, capacity=8, shard_tokens=16)
    assert splits["train"]["range_starts"] == {0: 0, 1: 3} and splits["train"]["plan"].sequences == 7
    with pytest.raises(RuntimeError, match="range 0 was packed by more than one task"):
        _split_summaries([summary(0, 3, 4), summary(0, 4, 2)], counts, capacity=8, shard_tokens=16)
    with pytest.raises(RuntimeError, match="5 documents packed, 6 expected"):
        _split_summaries([summary(0, 3, 5)], counts, capacity=8, shard_tokens=16)


def _comparable_stats(stats):
    """Stats without what differs between two runs of the same export: times and the paths read."""
    return {key: value for key, value in stats.items() if key not in ("started", "finished", "seconds", "inputs")}


def _comparable_manifest(manifest):
    return {**manifest, "tokenizer": {**manifest["tokenizer"], "path": None}}


def _objects(url):
    """Every object below `url`, by its name relative to it, with its bytes."""
    from thresher.pipeline.stagedir import storage

    fs, root = storage(url)
    fs.invalidate_cache(root)
    return {path[len(root) + 1:]: fs.cat_file(path) for path in fs.find(root)}


@pytest.fixture(scope="module")
def s3_stage(stages, tokenizer_dir, s3_server):
    """The one-file stage and the tokenizer, uploaded to a fresh prefix of the test bucket."""
    import uuid

    from thresher.pipeline.stagedir import storage

    base = f"s3://{s3_server.bucket}/{uuid.uuid4().hex}"
    fs, root = storage(base)
    for local, name in ((stages[1], "in1"), (tokenizer_dir, tokenizer_dir.name)):
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            fs.pipe_file(f"{root}/{name}/{path.relative_to(local)}", path.read_bytes())
    return f"{base}/in1", f"{base}/{tokenizer_dir.name}"


def test_export_from_s3_to_s3_commits_the_same_shards_manifest_and_stats_as_local_to_local(
        spark_s3, concat_run, s3_stage, tokenizer_dir, config, s3_url, copies_and_renames):
    from thresher.pipeline.stagedir import read_commit

    local, local_stats = concat_run
    input_url, tokenizer_url = s3_stage
    stats = run_export(spark_s3, input_url, f"{s3_url}/export", tokenizer_url, config)
    assert _comparable_stats(stats) == _comparable_stats(local_stats)
    assert stats["inputs"] == [input_url, tokenizer_url]
    objects = _objects(f"{s3_url}/export")
    manifest = json.loads(objects["manifest.json"])
    local_manifest = json.loads((local / "manifest.json").read_text())
    assert _comparable_manifest(manifest) == _comparable_manifest(local_manifest)
    assert manifest["tokenizer"]["path"] == tokenizer_url  # the URL given; its sha256 is the local one's
    shards = [shard["path"] for split in SPLITS for shard in manifest["splits"][split]["shards"]]
    assert len(shards) > 2
    assert {name: objects[name] for name in shards} == {name: (local / name).read_bytes() for name in shards}
    commit = read_commit(f"{s3_url}/export")
    assert commit.stats == stats == json.loads(objects["stats.json"])
    index = {part.name: part.size for part in commit.parts("index")}  # the document index: a table of parts
    listed = {entry["name"]: entry["size"] for entry in commit.marker["files"]} | index
    assert listed == {name: len(data) for name, data in objects.items() if name != COMMITTED_MARKER}
    assert sorted(objects) == sorted([COMMITTED_MARKER, "manifest.json", "stats.json", *shards, *index])
    assert copies_and_renames == []


@pytest.mark.parametrize("point", ["export:shards_written", "commit:before_marker"])
def test_a_crash_mid_export_on_s3_is_never_read_and_a_rerun_commits_the_same_objects(
        spark_s3, concat_run, s3_stage, config, s3_url, copies_and_renames, monkeypatch, point):
    from thresher.pipeline.report.data import build_report
    from thresher.pipeline.stagedir import CRASH_ENV, CRASH_MODE_ENV, SimulatedCrash, read_commit

    local, _ = concat_run
    input_url, tokenizer_url = s3_stage
    out = f"{s3_url}/export"
    monkeypatch.setenv(CRASH_MODE_ENV, "raise")
    monkeypatch.setenv(CRASH_ENV, point)
    with pytest.raises(SimulatedCrash):
        run_export(spark_s3, input_url, out, tokenizer_url, config)
    crashed = _objects(out)
    assert any(name.startswith("train/shard-") for name in crashed)  # shards written, the export not committed
    assert COMMITTED_MARKER not in crashed
    with pytest.raises(InputError, match="no committed stage output"):
        read_commit(out)
    assert "export" not in build_report(s3_url)["stats"]  # the report does not read it either
    monkeypatch.delenv(CRASH_ENV)
    run_export(spark_s3, input_url, out, tokenizer_url, config)
    objects = _objects(out)
    manifest = json.loads(objects["manifest.json"])
    local_manifest = json.loads((local / "manifest.json").read_text())
    assert _comparable_manifest(manifest) == _comparable_manifest(local_manifest)
    shards = [shard["path"] for split in SPLITS for shard in manifest["splits"][split]["shards"]]
    index = [part.name for part in read_commit(out).parts("index")]  # the crashed attempt's index parts are gone
    assert sorted(objects) == sorted([COMMITTED_MARKER, "manifest.json", "stats.json", *shards, *index])
    assert {name: objects[name] for name in shards} == {name: (local / name).read_bytes() for name in shards}
    assert copies_and_renames == []


@pytest.fixture(scope="module")
def both_run(spark, stages, tokenizer_dir, tmp_path_factory):
    """Parquet and Megatron shards from the four-file stage."""
    out = tmp_path_factory.mktemp("export") / "both"
    stats = run_export(spark, str(stages[4]), str(out), str(tokenizer_dir),
                       load_config(None, {**SETTINGS, "export.format": "both"}))
    return out, stats


def parquet_documents(out, split) -> dict[int, list[tuple[tuple[str, int], np.ndarray]]]:
    """Per Parquet shard number: ((doc_id, copy), tokens) of each document copy whose first token it holds, its
    tokens joined from the pieces the document index lists, in the order of first tokens (row, offset)."""
    manifest = json.loads((out / "manifest.json").read_text())
    index = pq.read_table(out / manifest["document_index"]["path"]).to_pylist()
    rows, copies = {}, {}
    for piece in sorted(index, key=lambda r: (r["doc_id"], r["copy"], r["piece"])):
        if piece["shard"].startswith(f"{split}/"):
            if piece["shard"] not in rows:
                table = pq.read_table(out / piece["shard"])
                rows[piece["shard"]] = np.asarray(table.column("tokens").combine_chunks().flatten()).reshape(
                    table.num_rows, -1)
            entry = copies.setdefault((piece["doc_id"], piece["copy"]),
                                      {"first": (piece["shard"], piece["sequence"], piece["token_start"]), "pieces": []})
            entry["pieces"].append(rows[piece["shard"]][piece["sequence"], piece["token_start"]:piece["token_end"]])
    by_shard = {}
    for key, entry in sorted(copies.items(), key=lambda item: item[1]["first"]):
        shard = int(entry["first"][0].rsplit("-", 1)[1].split(".")[0])
        by_shard.setdefault(shard, []).append((key, np.concatenate(entry["pieces"])))
    return by_shard


def megatron_documents_by_shard(out, split) -> dict[int, list[np.ndarray]]:
    """Per Megatron shard number (from the manifest's --data-path prefixes): its documents' tokens, read with
    the reader written from Megatron's format description; each document is one sequence."""
    from megatron_reader import read_prefix

    manifest = json.loads((out / "manifest.json").read_text())
    by_shard = {}
    for prefix in manifest["megatron"]["splits"][split]["data_path"]:
        dataset = read_prefix(out / prefix)
        assert dataset.document_indices.tolist() == list(range(len(dataset.sequence_lengths) + 1))
        by_shard[int(prefix.rsplit("-", 1)[1])] = [dataset.sequence(i) for i in range(len(dataset.sequence_lengths))]
    return by_shard


@pytest.mark.parametrize("packing", ["concat, pad", "boundary, drop"])
def test_megatron_shards_hold_the_parquet_shards_documents_token_for_token_in_their_order(
        spark, both_run, stages, rows, tokenizer_dir, tmp_path, packing):
    out = both_run[0]
    if packing == "boundary, drop":
        out = tmp_path / "boundary"
        run_export(spark, str(stages[1]), str(out), str(tokenizer_dir), load_config(None, {
            **SETTINGS, "export.format": "both", "export.pack_mode": "boundary", "export.tail": "drop"}))
    manifest = json.loads((out / "manifest.json").read_text())
    tokenizer = load_tokenizer(tokenizer_dir)
    texts = {row["doc_id"]: row["text"] for row in rows}
    for split in SPLITS:
        expected, got = parquet_documents(out, split), megatron_documents_by_shard(out, split)
        assert expected and sorted(got) == sorted(expected)
        for shard, copies in expected.items():
            assert [len(tokens) for tokens in got[shard]] == [len(tokens) for _, tokens in copies]
            assert np.array_equal(np.concatenate(got[shard]), np.concatenate([tokens for _, tokens in copies]))
        whole = [(key, tokens) for copies in expected.values() for key, tokens in copies
                 if tokens[-1] == manifest["eos_token_id"]]
        assert all(tokenizer.decode(tokens[:-1]) == texts[doc_id] for (doc_id, _), tokens in whole)
        cut = sum(len(copies) for copies in expected.values()) - len(whole)  # a dropped tail took their ends
        assert cut == 0 if packing == "concat, pad" else cut <= SETTINGS["export.pack_ranges"]
    if packing == "boundary, drop":
        assert sum(manifest["splits"][split]["dropped_tokens"] for split in SPLITS) > 0


def test_megatron_manifest_lists_the_files_dtype_token_counts_and_tokenizer(both_run, concat_run):
    from thresher.pipeline.stagedir import read_commit

    out, stats = both_run
    manifest = json.loads((out / "manifest.json").read_text())
    megatron = manifest["megatron"]
    assert megatron["format"] == "megatron-mmap-indexed-dataset/1" and megatron["dtype"] == "uint16"  # 1000 ids
    assert megatron["tokenizer"] == manifest["tokenizer"] and megatron["eos_token_id"] == manifest["eos_token_id"]
    listed = {entry["name"]: entry["size"] for entry in read_commit(out).marker["files"]}
    for split in SPLITS:
        entry = megatron["splits"][split]
        assert entry["data_path"] == [shard["prefix"] for shard in entry["shards"]]
        assert entry["documents"] == manifest["splits"][split]["documents"]  # every copy, none dropped
        documents = megatron_documents_by_shard(out, split)
        assert entry["tokens"] == sum(len(d) for shard in documents.values() for d in shard)
        assert entry["tokens"] == manifest["splits"][split]["tokens"] - manifest["splits"][split]["padding_tokens"]
        for shard in entry["shards"]:
            assert shard["bin_bytes"] == listed[f"{shard['prefix']}.bin"] == 2 * shard["tokens"]
            assert shard["idx_bytes"] == listed[f"{shard['prefix']}.idx"] == (out / f"{shard['prefix']}.idx").stat().st_size
    assert len(megatron["splits"]["train"]["shards"]) > 1
    assert stats["details"]["megatron_shards"] == sum(len(megatron["splits"][s]["shards"]) for s in SPLITS)
    # The Parquet shards and what the manifest says of them are those of a Parquet-only export.
    concat_manifest = json.loads((concat_run[0] / "manifest.json").read_text())
    own = ("megatron", "shard_format", "config_hash")  # export.format is a setting of its own
    assert {k: v for k, v in manifest.items() if k not in own} == {
        k: v for k, v in concat_manifest.items() if k not in own}
    for split in SPLITS:
        for shard in manifest["splits"][split]["shards"]:
            assert (out / shard["path"]).read_bytes() == (concat_run[0] / shard["path"]).read_bytes()


def test_megatron_core_s_own_indexed_dataset_reads_the_shards_as_the_test_reader_does(both_run):
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    from megatron_reader import read_prefix

    out = both_run[0]
    megatron = json.loads((out / "manifest.json").read_text())["megatron"]
    prefixes = [prefix for split in SPLITS for prefix in megatron["splits"][split]["data_path"]]
    assert len(prefixes) > 2
    for prefix in prefixes:
        theirs, ours = IndexedDataset(str(out / prefix), mmap=True), read_prefix(out / prefix)
        assert theirs.index.dtype == np.uint16 and len(theirs) == len(ours.sequence_lengths) > 0
        assert np.array_equal(theirs.document_indices, ours.document_indices)
        assert all(np.array_equal(theirs[i], ours.sequence(i)) for i in range(len(theirs)))


def test_format_megatron_from_the_command_line_writes_the_same_megatron_shards_alone(both_run, stages, tokenizer_dir,
                                                                                      tmp_path):
    out = tmp_path / "megatron"
    settings = [a for key, value in SETTINGS.items() for a in ("--set", f"{key}={value}")]
    code = cli.main(["export", str(stages[1]), "--output", str(out), "--tokenizer", str(tokenizer_dir),
                     "--format", "megatron", *settings])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    both = json.loads((both_run[0] / "manifest.json").read_text())
    assert manifest["shard_format"] == "megatron" and manifest["document_index"] is None
    assert manifest["megatron"] == both["megatron"]  # one input file or four: the same shards
    assert all(manifest["splits"][split]["shards"] == [] for split in SPLITS)
    assert sorted(p.name for p in out.iterdir()) == ["_COMMITTED", "manifest.json", "megatron", "stats.json"]
    files = sorted(p.relative_to(out) for p in (out / "megatron").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(both_run[0]) for p in (both_run[0] / "megatron").rglob("*") if p.is_file())
    assert all((out / name).read_bytes() == (both_run[0] / name).read_bytes() for name in files)


def test_a_bad_format_is_one_line_before_spark(stages, tokenizer_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["export", str(stages[1]), "--output", str(out), "--tokenizer", str(tokenizer_dir),
                     "--format", "arrow"])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        "thresher export: error: export.format (--format): 'arrow' is not one of parquet, megatron, both"]
    assert not out.exists()


def test_megatron_shards_on_s3_are_the_local_ones(spark_s3, both_run, s3_stage, s3_url, copies_and_renames):
    input_url, tokenizer_url = s3_stage
    run_export(spark_s3, input_url, f"{s3_url}/export", tokenizer_url,
               load_config(None, {**SETTINGS, "export.format": "megatron"}))
    objects = _objects(f"{s3_url}/export")
    local = both_run[0]
    megatron = {name: data for name, data in objects.items() if name.startswith("megatron/")}
    assert len(megatron) > 4
    assert megatron == {str(p.relative_to(local)): p.read_bytes() for p in (local / "megatron").rglob("*") if p.is_file()}
    assert json.loads(objects["manifest.json"])["megatron"]["splits"] == json.loads(
        (local / "manifest.json").read_text())["megatron"]["splits"]
    assert copies_and_renames == []
