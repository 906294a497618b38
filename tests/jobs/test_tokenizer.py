"""`thresher tokenizer train` on real documents, in Spark local mode."""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.jobs import cli
from thresher.jobs.tokenizer import run_tokenizer_train
from thresher.pipeline.config import ConfigError, load_config
from thresher.pipeline.export.tokenize import load_tokenizer, tokenizer_sha256
from thresher.pipeline.stagedir import COMMITTED_MARKER
from thresher.schemas.stats import read_stats


@pytest.fixture(scope="module")
def stage_dir(shared_data, tmp_path_factory):
    dclm = [json.loads(line)["text"] for line in (shared_data / "quality/dclm/majority_data.jsonl").open()][:120]
    chinese = shared_data / "quality/chinesewebtext/cleared1.jsonl"
    texts = dclm + [json.loads(line)["raw_content"] for line in chinese.open()][:40] + [""]
    ids = [hashlib.sha1(f"t/{i}".encode()).hexdigest() for i in range(len(texts))]
    directory = tmp_path_factory.mktemp("stage")
    (directory / "documents").mkdir()
    table = pa.table({"doc_id": ids, "text": texts})
    for part in range(2):
        pq.write_table(table.slice(part * 81, 81), directory / f"documents/part-{part}.parquet")
    (directory / COMMITTED_MARKER).write_text("{}")
    return directory


def test_train_writes_a_committed_tokenizer_directory_that_round_trips(spark, stage_dir, shared_data, tmp_path):
    from transformers import AutoTokenizer

    out = tmp_path / "tok"
    config = load_config(None, {"export.vocab_size": 700, "export.extra_special_tokens": ["<|im_start|>"]})
    stats = run_tokenizer_train(spark, str(stage_dir), str(out), config)
    assert (out / COMMITTED_MARKER).is_file()
    assert stats == read_stats(out)
    assert stats["documents_in"] == 160 and stats["documents_out"] == 160  # the empty text is not sampled
    assert stats["details"]["vocab_size"] == 700 and stats["details"]["sha256"] == tokenizer_sha256(out)
    hf = AutoTokenizer.from_pretrained(str(out))
    assert (hf.eos_token, hf.pad_token) == ("<|endoftext|>", "<|pad|>")
    assert hf.convert_tokens_to_ids("<|im_start|>") == 2
    loaded = load_tokenizer(out)
    unseen = [json.loads(line)["text"] for line in (shared_data / "quality/dclm/agreement_data.jsonl").open()][:30]
    values, offsets = loaded.encode(unseen)
    for i, text in enumerate(unseen):
        assert loaded.decode(values[offsets[i] : offsets[i + 1] - 1]) == text


def test_sample_is_seeded_and_sized_and_training_deterministic(spark, stage_dir, tmp_path):
    def train(name, **settings):
        config = load_config(None, {"export.vocab_size": 500, **settings})
        stats = run_tokenizer_train(spark, str(stage_dir), str(tmp_path / name), config)
        return stats, (tmp_path / name / "tokenizer.json").read_bytes()

    first, again = train("a", **{"export.tokenizer_sample_documents": 60}), train("b", **{
        "export.tokenizer_sample_documents": 60})
    assert first[1] == again[1] and first[0]["details"]["sample_chars"] == again[0]["details"]["sample_chars"]
    assert 30 <= first[0]["documents_out"] <= 90
    other_seed = train("c", **{"export.tokenizer_sample_documents": 60, "export.seed": 5})
    assert other_seed[0]["details"]["sample_chars"] != first[0]["details"]["sample_chars"]


def test_command_line_train_and_vocab_size_option(stage_dir, tmp_path):
    out = tmp_path / "cli"
    assert cli.main(["tokenizer", "train", str(stage_dir), "--output", str(out), "--vocab-size", "400"]) == 0
    assert load_tokenizer(out).vocab_size == 400


def test_too_small_vocabulary_is_a_config_error(spark, stage_dir, tmp_path):
    with pytest.raises(ConfigError, match="vocab_size"):
        run_tokenizer_train(spark, str(stage_dir), str(tmp_path / "x"), load_config(None, {"export.vocab_size": 100}))
    assert not (tmp_path / "x").exists()


def test_a_corpus_with_no_text_is_one_line_not_a_tokenizer_of_bytes(tmp_path, capsys):
    """A zero-row corpus committed a 258-token tokenizer with exit 0."""
    corpus = tmp_path / "empty.jsonl"
    corpus.write_text('{"text": ""}\n{"text": "", "id": 2}\nnot json\n')
    assert cli.main(["tokenizer", "train", str(corpus), "--output", str(tmp_path / "tok")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("thresher tokenizer: error")]
    assert err == [f"thresher tokenizer: error: {corpus} holds no document with text to train the tokenizer on "
                   "(1 unreadable, counted as input_parse_error): check INPUT and --text-field"]
    assert not (tmp_path / "tok" / COMMITTED_MARKER).exists()


def test_a_users_jsonl_trains_the_same_tokenizer_as_the_stage_and_a_broken_line_is_a_counted_reject(spark, stage_dir, tmp_path):
    rows = pq.read_table(stage_dir / "documents").to_pylist()
    lines = [json.dumps({"uid": r["doc_id"], "body": r["text"]}, ensure_ascii=False) for r in rows]
    lines.insert(10, "[1, 2, 3]")  # JSON, but no object: skipped and counted, the job goes on
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    config = load_config(None, {"export.vocab_size": 500, "export.tokenizer_sample_documents": 60})
    stage = run_tokenizer_train(spark, str(stage_dir), str(tmp_path / "from-stage"), config)
    assert cli.main(["tokenizer", "train", str(path), "--output", str(tmp_path / "from-jsonl"), "--text-field", "body",
                     "--id-field", "uid", "--set", "export.vocab_size=500",
                     "--set", "export.tokenizer_sample_documents=60"]) == 0
    user = read_stats(tmp_path / "from-jsonl")
    assert user["details"]["sha256"] == stage["details"]["sha256"] and user["documents_out"] == stage["documents_out"] < 160
    assert user["rejects_by_rule"] == {"input_parse_error": 1} and user["documents_in"] == stage["documents_in"] + 1
    assert not (tmp_path / "from-jsonl" / "_work").exists()


def test_a_vocabulary_short_of_the_configured_size_is_said(spark, stage_dir, tmp_path, capsys):
    # 160 documents run out of pairs to merge long before 200,000 tokens.
    config = load_config(None, {"export.vocab_size": 200_000})
    stats = run_tokenizer_train(spark, str(stage_dir), str(tmp_path / "big"), config)
    assert stats["details"]["vocab_size"] < 200_000
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("tokenizer:")]
    assert lines == [f"tokenizer: the vocabulary has {stats['details']['vocab_size']:,} tokens, fewer than export.vocab_size "
                     f"200,000: the sample ran out of pairs to merge (train on more documents for the full size); "
                     f"the model uses {stats['details']['vocab_size']:,}"]
    capsys.readouterr()
    run_tokenizer_train(spark, str(stage_dir), str(tmp_path / "full"), load_config(None, {"export.vocab_size": 500}))
    assert "tokenizer:" not in capsys.readouterr().err


def test_train_from_s3_to_s3_commits_what_local_disk_commits_and_loads_from_its_url(spark_s3, stage_dir, s3_url, tmp_path,
                                                                                   copies_and_renames):
    from stage_rows import committed_names, upload_tree, without_timings

    from thresher.pipeline.locations import local_copy
    from thresher.pipeline.stagedir import read_commit
    from thresher.trainer.export_hf import run_tokenizer

    config = load_config(None, {"export.vocab_size": 500, "export.tokenizer_sample_documents": 60})
    local = run_tokenizer_train(spark_s3, str(stage_dir), str(tmp_path / "tok"), config)
    url = f"{s3_url}/tok"
    stats = run_tokenizer_train(spark_s3, upload_tree(stage_dir, f"{s3_url}/stage"), url, config)
    assert without_timings(stats) == without_timings(local) and read_commit(url).stats == stats == read_stats(url)
    names = committed_names(url)
    saved = ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]
    assert names == committed_names(str(tmp_path / "tok")) == sorted([COMMITTED_MARKER, "stats.json", *saved])
    commit = read_commit(url)
    for name in saved:
        assert commit.fs.cat_file(commit.path(name)) == (tmp_path / "tok" / name).read_bytes()
    copy = local_copy(url)  # what a process that loads the tokenizer reads
    assert tokenizer_sha256(copy) == stats["details"]["sha256"] and load_tokenizer(copy).vocab_size == 500
    assert str(run_tokenizer({}, url)) == copy
    assert copies_and_renames == []
