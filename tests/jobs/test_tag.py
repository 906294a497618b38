"""The tag job in Spark local mode: every tagger's columns, nothing dropped or changed, models traced."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.classifiers.base import ModelNotFoundError, model_digest, read_manifest
from thresher.jobs.tag import run_tag
from thresher.pipeline.config import ConfigError, load_config
from thresher.pipeline.pii import find_pii
from thresher.schemas.documents import RULES
from thresher.schemas.stats import read_stats
from thresher.schemas.tags import read_taggers, tagged_schema

TAGGERS = ("page_type", "clutter", "topic", "quality", "pii")


@pytest.fixture(scope="module")
def tagged_four(spark, stage2_dir, models_dir, quality_model, tmp_path_factory):
    """The same tagging through the `thresher tag` command on 4 partitions."""
    from thresher.jobs.cli import main

    out = tmp_path_factory.mktemp("tagged4")
    argv = ["tag", str(stage2_dir), "--output", str(out), "--models-dir", str(models_dir), "--partitions", "4",
            "--set", f"tag.taggers.quality.model_dir={quality_model}"]
    assert main(argv) == 0
    return out


def test_every_tagger_writes_its_columns_and_nothing_else_changes(tagged_dir, stage2_dir, models_dir, quality_model):
    tagged = pq.read_table(tagged_dir / "documents")
    assert tagged.schema.names == [*RULES.names,
                                   "page_type_label", "page_type_score", "page_type_top", "clutter_line_scores",
                                   "topic_label", "topic_score", "topic_top",
                                   "quality_label", "quality_score", "quality_top", "pii_spans"]
    original = {r["doc_id"]: r for r in pq.read_table(stage2_dir / "documents").to_pylist()}
    rows = tagged.to_pylist()
    assert sorted(r["doc_id"] for r in rows) == sorted(original) and [r["doc_id"] for r in rows] == sorted(original)
    labels = {name: read_manifest(models_dir / name)["labels"] for name in ("page_type", "topic")}
    labels["quality"] = read_manifest(quality_model)["labels"]
    for row in rows:
        assert {k: row[k] for k in RULES.names} == original[row["doc_id"]]  # text and every stage 2 column as they were
        lines = row["text"].split("\n")
        assert len(row["clutter_line_scores"]) == len(lines)
        assert all((score is None) == (not line.strip()) for line, score in zip(lines, row["clutter_line_scores"], strict=True))
        for name in ("page_type", "topic", "quality"):
            top = row[f"{name}_top"]
            assert len(top) == min(5, len(labels[name])) and {e["label"] for e in top} <= set(labels[name])
            assert [e["score"] for e in top] == sorted((e["score"] for e in top), reverse=True)
            assert (top[0]["label"], top[0]["score"]) == (row[f"{name}_label"], row[f"{name}_score"])
        assert row["pii_spans"] == [span._asdict() for span in find_pii(row["text"])]
    assert {tuple(sorted(e["label"] for e in r["quality_top"])) for r in rows} == {("0", "1")}  # both labels' scores
    # The real DCLM and ChineseWebText pages hold e-mail addresses, + numbers and Chinese mobiles (test_selection reads them).
    assert {span["kind"] for r in rows for span in r["pii_spans"]} == {"email", "phone"}


def test_stats_trace_each_tagger_to_its_model_files(tagged_dir, models_dir, quality_model):
    stats = read_stats(tagged_dir)
    assert stats["documents_in"] == stats["documents_out"] == 200 and stats["rejects_by_rule"] == {}
    assert [entry["name"] for entry in stats["details"]["taggers"]] == list(TAGGERS)
    taggers = {entry["name"]: entry for entry in stats["details"]["taggers"]}
    for name, directory in (("page_type", models_dir / "page_type"), ("quality", quality_model)):
        entry = taggers[name]
        assert entry["model_dir"] == str(directory.resolve()) and entry["model_hash"] == model_digest(directory)
        assert entry["heldout"] == json.loads((directory / "metrics.json").read_text())["heldout"]
    assert taggers["page_type"]["weak_labels"] and not taggers["quality"]["weak_labels"]
    assert sum(stats["details"]["score_histograms"]["quality"]) == 200 and sum(stats["details"]["labels"]["topic"].values()) == 200
    scored_lines = sum(1 for r in pq.read_table(tagged_dir / "documents").column("clutter_line_scores").to_pylist()
                       for s in r if s is not None)
    assert sum(stats["details"]["score_histograms"]["clutter"]) == scored_lines


def test_the_declared_taggers_are_the_columns_and_models_written(tagged_dir, models_dir, quality_model):
    declared = read_taggers(tagged_dir)
    assert [t.name for t in declared] == list(TAGGERS)
    assert tagged_schema(declared).names == pq.read_table(tagged_dir / "documents").schema.names
    stats = {entry["name"]: entry for entry in read_stats(tagged_dir)["details"]["taggers"]}
    for tagger in declared:
        assert (tagger.kind, tagger.top_k, list(tagger.labels)) == (stats[tagger.name]["kind"], 5, stats[tagger.name]["labels"])
        assert (tagger.model_dir, tagger.model_hash, tagger.heldout) == (
            stats[tagger.name]["model_dir"], stats[tagger.name]["model_hash"], stats[tagger.name]["heldout"])
    assert list(next(t for t in declared if t.name == "quality").labels) == read_manifest(quality_model)["labels"]
    assert next(t for t in declared if t.name == "clutter").kind == "lines"


def test_model_digest_changes_with_the_model_files(models_dir, tmp_path):
    import shutil

    copy = shutil.copytree(models_dir / "clutter", tmp_path / "clutter")
    assert model_digest(copy) == model_digest(models_dir / "clutter")
    (copy / "metrics.json").write_text("{}")  # re-measuring a model does not change it
    assert model_digest(copy) == model_digest(models_dir / "clutter")
    with (copy / "classifier.json").open("a") as handle:
        handle.write("\n")
    assert model_digest(copy) != model_digest(models_dir / "clutter")


def test_same_tags_whatever_the_partitioning(tagged_dir, tagged_four):
    one, four = (pq.read_table(d / "documents").to_pylist() for d in (tagged_dir, tagged_four))
    assert one == four
    strip = {"started", "finished", "seconds", "inputs", "config_digest"}  # the command names the models by --models-dir
    assert {k: v for k, v in read_stats(tagged_dir).items() if k not in strip} == {
        k: v for k, v in read_stats(tagged_four).items() if k not in strip}


def test_missing_model_or_bad_tagger_fails_before_any_work(spark, stage2_dir, models_dir, tmp_path):
    with pytest.raises(ModelNotFoundError, match="tag.taggers.quality: no model at"):
        run_tag(spark, str(stage2_dir), str(tmp_path / "out"),
                load_config(None, {"tag.model_dir": str(models_dir), "tag.taggers.quality.model_dir": str(tmp_path / "none")}))
    with pytest.raises(ConfigError, match="tag.taggers.topic.kind: 'page' is not one of 'document', 'lines'"):
        run_tag(spark, str(stage2_dir), str(tmp_path / "out"), load_config(None, {"tag.model_dir": str(models_dir), "tag.taggers.topic.kind": "page"}))
    assert not (tmp_path / "out").exists()


def test_the_pii_tagger_needs_no_model_and_turns_off_by_enabled(spark, stage2_dir, models_dir, tmp_path):
    from thresher.jobs.tag import configured_taggers

    config = load_config(None, {"tag.model_dir": str(models_dir)})
    pii = next(t for t in configured_taggers(config) if t.name == "pii")
    assert (pii.kind, pii.model_dir, pii.labels, pii.model_hash) == ("pii", "", (), None)
    off = load_config(None, {"tag.model_dir": str(models_dir), "tag.taggers.pii.enabled": False})
    assert "pii" not in [t.name for t in configured_taggers(off)]
    with pytest.raises(ConfigError, match="tag.taggers.pii.model_dir: a pii tagger runs rules, not a model"):
        run_tag(spark, str(stage2_dir), str(tmp_path / "out"),
                load_config(None, {"tag.model_dir": str(models_dir), "tag.taggers.pii.model_dir": "pii"}))
    assert not (tmp_path / "out").exists()


def test_cli_reports_a_missing_model_in_one_line(stage2_dir, tmp_path, capsys):
    from thresher.jobs.cli import main

    assert main(["tag", str(stage2_dir), "--output", str(tmp_path / "out"), "--models-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tag.taggers.page_type: no model at" in err[0] and "classifiers bootstrap" in err[0]


def test_a_truncated_tagger_model_is_one_line_before_spark_starts(stage2_dir, models_dir, tmp_path, capsys):
    import shutil

    from thresher.jobs.cli import main

    broken = shutil.copytree(models_dir / "topic", tmp_path / "topic")
    model_file = max((p for p in broken.iterdir() if p.suffix in (".ftz", ".bin")), key=lambda p: p.stat().st_size)
    model_file.write_bytes(model_file.read_bytes()[:1000])
    argv = ["tag", str(stage2_dir), "--output", str(tmp_path / "out"), "--models-dir", str(models_dir),
            "--set", f"tag.taggers.topic.model_dir={broken}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"thresher tag: error: {broken}: its fasttext model cannot be loaded"), err
    assert not (tmp_path / "out").exists()


def test_committed_output_is_refused(spark, stage2_dir, models_dir, quality_model, tagged_dir):
    # Imported here: Spark workers import this module (for _model_loads) without tests/ on their path.
    from stage_rows import stage3_config

    with pytest.raises(RuntimeError, match="already committed"):
        run_tag(spark, str(stage2_dir), str(tagged_dir), stage3_config(models_dir, quality_model))


def _model_loads(batches, model_dir):
    """mapInArrow body: which worker process ran the task, and whether it had the model already."""
    import os

    from thresher.classifiers import base

    already = str(Path(model_dir).resolve()) in base._LOADED
    base.cached_classifier(model_dir)
    rows = sum(batch.num_rows for batch in batches)
    yield pa.RecordBatch.from_pylist([{"pid": os.getpid(), "already_loaded": already, "rows": rows}])


def test_each_worker_process_loads_a_model_once(spark, models_dir):
    import functools

    tasks = (
        spark.range(0, 800, numPartitions=8)
        .mapInArrow(functools.partial(_model_loads, model_dir=str(models_dir / "topic")), "pid long, already_loaded boolean, rows long")
        .collect()
    )
    assert len(tasks) == 8 and sum(t.rows for t in tasks) == 800
    loads = sum(not t.already_loaded for t in tasks)
    assert loads <= len({t.pid for t in tasks}) < 8  # Python workers are reused; each loads at most once


def test_a_users_jsonl_of_the_same_documents_gets_the_same_tags_and_a_broken_line_is_a_counted_reject(
        spark, stage2_dir, models_dir, quality_model, tagged_dir, tmp_path, capsys):
    from thresher.jobs.cli import main

    rows = pq.read_table(stage2_dir / "documents").to_pylist()
    lines = [json.dumps({"uid": r["doc_id"], "body": r["text"], "link": r["url"]}, ensure_ascii=False) for r in rows]
    lines.insert(3, '{"uid": "cut-off", "body": "a record cut off in the mid')  # a broken record: the job goes on
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["tag", str(path), "--output", str(out), "--models-dir", str(models_dir),
                 "--text-field", "body", "--id-field", "uid", "--url-field", "link",
                 "--set", f"tag.taggers.quality.model_dir={quality_model}"]) == 0
    columns = ["doc_id", "text", "page_type_label", "page_type_score", "topic_label", "quality_score",
               "clutter_line_scores"]
    assert pq.read_table(out / "documents", columns=columns) == pq.read_table(tagged_dir / "documents", columns=columns)
    stats = read_stats(out)
    assert stats["documents_in"] == len(rows) + 1 and stats["documents_out"] == len(rows)
    assert stats["rejects_by_rule"] == {"input_parse_error": 1} and "warc_path" in stats["details"]["missing_input_columns"]
    (reject,) = pq.read_table(out / "rejects").to_pylist()
    assert reject["rule"] == "input_parse_error" and reject["stage"] == "tag" and reject["warc_path"] == str(path)
    assert reject["detail"].startswith(f"{path} line 4 is not JSON") and reject["content"].startswith('{"uid": "cut-off"')
    notes = [line for line in capsys.readouterr().err.splitlines() if "JSON" in line]
    assert notes == [f"[thresher] tag: skipped 1 input record that could not be read, counted as input_parse_error rejects; "
                     f"the first: {reject['detail']}"]


def test_the_clutter_tagger_uses_the_shipped_model_unless_the_config_names_another(models_dir):
    from thresher.classifiers.clutter import shipped_model_dir
    from thresher.jobs.tag import resolve_taggers

    by_name = {t.name: t for t in resolve_taggers(load_config(), str(models_dir))}
    assert by_name["clutter"].model_dir == str(shipped_model_dir())
    bootstrapped = {t.name: t for t in resolve_taggers(load_config(None, {"tag.taggers.clutter.model_dir": "clutter"}),
                                                       str(models_dir))}
    assert Path(bootstrapped["clutter"].model_dir).resolve() == (models_dir / "clutter").resolve()


@pytest.fixture(scope="module")
def transformers_tagger(stage2_dir, tmp_path_factory) -> Path:
    """A tiny Qwen2 sequence classifier (random weights, a BPE trained on the stage 2 texts), saved
    as a classifier directory with its own max_length of 96 tokens."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from thresher.classifiers.transformers_backend import InferenceSettings, TransformersClassifier, build_scratch_qwen2

    texts = pq.read_table(stage2_dir / "documents", columns=["text"]).column("text").to_pylist()
    base = build_scratch_qwen2(texts[::4], tmp_path_factory.mktemp("qwen"), vocab_size=400)
    model = AutoModelForSequenceClassification.from_pretrained(base, attn_implementation="sdpa")
    classifier = TransformersClassifier(model, AutoTokenizer.from_pretrained(base), ["low", "high"], InferenceSettings(max_length=96))
    return classifier.save(tmp_path_factory.mktemp("transformers") / "tagger")


def test_a_transformers_tagger_beside_the_fasttext_ones_with_the_configured_settings(
    spark, stage2_dir, models_dir, transformers_tagger, tmp_path
):
    from thresher.classifiers.base import load_classifier
    from thresher.classifiers.tasks import model_input
    from thresher.classifiers.transformers_backend import TransformersClassifier

    stage2 = pq.read_table(stage2_dir / "documents").to_pylist()
    in_process = load_classifier(transformers_tagger)
    assert isinstance(in_process, TransformersClassifier) and in_process.settings.max_length == 96
    inputs = [model_input("plain", row) for row in stage2]
    own_settings = in_process.predict_proba(inputs)
    tagged = {}
    for budget in (32, 4096):
        config = load_config(None, {
            "tag.model_dir": str(models_dir), "tag.taggers.neural.model_dir": str(transformers_tagger),
            "transformers.max_length": 32, "transformers.token_budget": budget, "transformers.device": "cpu",
        })
        out = tmp_path / f"budget{budget}"
        stats = run_tag(spark, str(stage2_dir), str(out), config, partitions=2)
        taggers = {entry["name"]: entry for entry in stats["details"]["taggers"]}
        assert list(taggers) == ["page_type", "clutter", "topic", "pii", "neural"]
        assert taggers["neural"]["backend"] == "transformers" and taggers["page_type"]["backend"] == "fasttext"
        assert taggers["neural"]["inference"] == {"max_length": 32, "token_budget": budget, "device": "cpu"}
        assert taggers["topic"]["inference"] == {}  # config `transformers` is for transformers models only
        table = pq.read_table(out / "documents")
        assert {"page_type_label", "clutter_line_scores", "topic_top", "neural_label", "neural_score", "neural_top"} <= set(table.schema.names)
        tagged[budget] = {r["doc_id"]: r for r in table.to_pylist()}

    # The workers' scores are the in-process model's under the configured settings, exactly (CPU),
    # whatever the token budget; the configured max_length reached them (the model's own 96 scores differ).
    expected = in_process.with_settings({"max_length": 32, "token_budget": 32, "device": "cpu"}).predict_proba(inputs)
    assert not np.array_equal(expected, own_settings)
    for budget, rows in tagged.items():
        for row, probs in zip(stage2, expected, strict=True):
            got = rows[row["doc_id"]]
            best = int(np.argmax(probs))
            assert (got["neural_label"], got["neural_score"]) == (in_process.labels[best], float(probs[best])), budget
            assert {e["label"]: e["score"] for e in got["neural_top"]} == {"low": float(probs[0]), "high": float(probs[1])}
            assert got["page_type_label"] == tagged[32][row["doc_id"]]["page_type_label"]
    assert tagged[32] == tagged[4096]


def test_a_bad_transformers_setting_is_a_config_error_before_any_work(spark, stage2_dir, models_dir, transformers_tagger, tmp_path):
    config = load_config(None, {"tag.model_dir": str(models_dir), "tag.taggers.neural.model_dir": str(transformers_tagger),
                                "transformers.token_budget": 50})  # under the model's own max_length of 96
    with pytest.raises(ConfigError, match=r"transformers: token_budget \(50\) must be at least max_length \(96\)"):
        run_tag(spark, str(stage2_dir), str(tmp_path / "out"), config)
    assert not (tmp_path / "out").exists()


def test_tag_from_s3_to_s3_with_models_on_s3_commits_what_local_disk_commits(
        spark_s3, stage2_dir, models_dir, quality_model, tagged_dir, s3_url, copies_and_renames):
    """The stage 2 input, the models and the output all on S3: the same committed tables, byte for byte,
    the same declaration and stats (but the models' locations) as the local run, and no copy or rename."""
    from stage_rows import committed_names, stage3_config, upload_tree, without_timings

    from thresher.pipeline.stagedir import read_commit
    from thresher.pipeline.stagedir.parts import read_parts

    upload_tree(stage2_dir, f"{s3_url}/rules")
    models = {"models": upload_tree(models_dir, f"{s3_url}/models"), "quality": upload_tree(quality_model, f"{s3_url}/quality")}
    stats = run_tag(spark_s3, f"{s3_url}/rules", f"{s3_url}/tag", stage3_config(models["models"], models["quality"]),
                    partitions=1)
    on_s3, on_disk = read_commit(f"{s3_url}/tag"), read_commit(tagged_dir)
    assert on_s3.stats == stats
    for table in ("documents", "rejects"):
        assert (read_parts(spark_s3, f"{s3_url}/tag", table).collect()
                == read_parts(spark_s3, str(tagged_dir), table).collect())  # row-identical, in the same order
        assert [on_s3.fs.cat_file(on_s3.path(part.name)) for part in on_s3.parts(table)] == [
            on_disk.fs.cat_file(on_disk.path(part.name)) for part in on_disk.parts(table)]  # byte-identical parts
    local_dirs = {str(models_dir / name): f"{models['models']}/{name}" for name in ("page_type", "topic")}
    local_dirs[str(quality_model)] = models["quality"]

    def at_s3(tagger):  # a local tagger entry as the S3 run records it: its model at its URL
        return {**tagger, "model_dir": local_dirs.get(tagger["model_dir"], tagger["model_dir"])}

    local_stats = read_stats(tagged_dir)
    assert without_timings(stats, "config_digest", "details") == without_timings(local_stats, "config_digest", "details")
    assert stats["details"] == {**local_stats["details"], "taggers": [at_s3(t) for t in local_stats["details"]["taggers"]]}
    assert [t.__dict__ for t in read_taggers(f"{s3_url}/tag")] == [
        at_s3(t.__dict__) for t in read_taggers(tagged_dir)]  # the same models' hashes, their URLs
    assert committed_names(f"{s3_url}/tag") == sorted(
        ["_COMMITTED", "stats.json", "taggers.json", *(part.name for table in ("documents", "rejects") for part in on_s3.parts(table))])
    assert copies_and_renames == []


def test_a_model_url_that_holds_nothing_is_one_line_before_spark_starts(stage2_dir, models_dir, s3_url, tmp_path, capsys):
    from thresher.jobs.cli import main

    argv = ["tag", str(stage2_dir), "--output", str(tmp_path / "out"), "--models-dir", str(models_dir),
            "--set", f"tag.taggers.topic.model_dir={s3_url}/no-model"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"tag.taggers.topic: no model at {s3_url}/no-model" in err[0], err
    assert not (tmp_path / "out").exists()


def test_a_truncated_model_at_a_url_is_one_line_naming_the_url(stage2_dir, models_dir, s3_url, tmp_path, capsys):
    from stage_rows import upload_tree

    from thresher.jobs.cli import main
    from thresher.pipeline.stagedir import storage

    url = upload_tree(models_dir / "topic", f"{s3_url}/topic")
    model_file = max((p for p in (models_dir / "topic").iterdir() if p.suffix in (".ftz", ".bin")), key=lambda p: p.stat().st_size)
    fs, root = storage(url)
    fs.pipe_file(f"{root}/{model_file.name}", model_file.read_bytes()[:1000])
    argv = ["tag", str(stage2_dir), "--output", str(tmp_path / "out"), "--models-dir", str(models_dir),
            "--set", f"tag.taggers.topic.model_dir={url}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"thresher tag: error: {url}: its fasttext model cannot be loaded"), err
    assert not (tmp_path / "out").exists()


def test_the_decontam_tagger_finds_the_planted_items_and_only_them(decontaminated):
    out, planted = decontaminated["dir"], decontaminated["planted"]
    documents = {row["doc_id"]: row for row in pq.read_table(out / "documents").to_pylist()}
    hit = {doc_id: row for doc_id, row in documents.items() if row["decontam_hits"]}
    assert set(hit) == {doc_id for doc_id, _, _ in planted.values()}
    for benchmark, (doc_id, item_id, piece) in planted.items():
        (found,) = hit[doc_id]["decontam_hits"]
        assert (found["benchmark"], found["item_ids"], found["ngrams"] > 0) == (benchmark, [item_id], True)
        spans = hit[doc_id]["decontam_spans"]
        assert {s["benchmark"] for s in spans} == {benchmark}
        text = hit[doc_id]["text"]
        covered = "".join(text[s["start"]:s["end"]] for s in spans)
        assert len(covered) >= 0.9 * len(piece.strip(".\n")) and covered in piece.strip()
    assert all(row["decontam_spans"] == [] for doc_id, row in documents.items() if doc_id not in hit)
    declared = {t.name: t for t in read_taggers(out)}
    assert declared["decontam"].kind == "decontam" and declared["decontam"].labels == ("gsm8k", "humaneval", "cmmlu")
    assert len(declared["decontam"].model_hash) == 16
    details = read_stats(out)["details"]["decontam"]
    assert {name: (b["documents_hit"], b["items_hit"]) for name, b in details["benchmarks"].items()} == {
        "gsm8k": (1, 1), "humaneval": (1, 1), "cmmlu": (1, 1)}
    assert details["benchmarks"]["gsm8k"]["items"] == 1319 and details["index"]["ngrams"] > 100_000


def test_a_missing_benchmark_file_or_field_is_one_line_before_spark_starts(stage2_dir, models_dir, shared_data, tmp_path, capsys):
    from thresher.jobs.cli import main

    gsm8k = shared_data / "benchmarks/gsm8k/test.jsonl"
    for setting, message in ((f"decontam.benchmarks={{gsm8k: {{path: {tmp_path}/none.jsonl, fields: [question]}}}}",
                              f"decontam.benchmarks.gsm8k.path: no such file or directory: {tmp_path}/none.jsonl"),
                             (f"decontam.benchmarks={{gsm8k: {{path: {gsm8k}, fields: [question, solution]}}}}",
                              "decontam.benchmarks.gsm8k: " + str(gsm8k) + " has no field solution (its fields: question, answer)")):
        argv = ["tag", str(stage2_dir), "--output", str(tmp_path / "out"), "--models-dir", str(models_dir), "--set", setting]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"thresher tag: error: {message}"], err
    assert not (tmp_path / "out").exists()


def test_an_added_or_removed_tagger_tags_with_that_tagger_only_and_equals_a_full_run(
        spark, stage2_dir, models_dir, quality_model, tagged_dir, tmp_path):
    from stage_rows import stage3_config

    from thresher.classifiers.base import LOAD_LOG_ENV
    from thresher.jobs.tag import earlier_tags
    from thresher.pipeline.stagedir import StageOutput, read_commit

    out, logs = tmp_path / "tag", tmp_path / "logs"
    logs.mkdir()
    run_tag(spark, str(stage2_dir), str(out), load_config(None, {"tag.model_dir": str(models_dir)}), partitions=1)
    full = pq.read_table(tagged_dir / "documents")
    environment = spark.sparkContext.environment

    def rerun(config, retag: set[str], log: str) -> pa.Table:
        earlier = earlier_tags(str(out), retag)
        StageOutput(str(out)).reopen()
        environment[LOAD_LOG_ENV] = str(logs / log)
        try:
            run_tag(spark, str(stage2_dir), str(out), config, earlier=earlier)
        finally:
            environment.pop(LOAD_LOG_ENV, None)
        listed = {part.name for part in read_commit(out).parts("documents")}
        assert {str(p.relative_to(out)) for p in (out / "documents").rglob("*.parquet")} == listed  # the old parts gone
        return pq.read_table(out / "documents")

    added = rerun(stage3_config(models_dir, quality_model), {"quality"}, "added.log")
    assert added.schema == full.schema and added.to_pylist() == full.to_pylist()
    assert read_taggers(out) == read_taggers(tagged_dir)
    assert read_stats(out)["details"]["score_histograms"] == read_stats(tagged_dir)["details"]["score_histograms"]
    loaded = {Path(line.split(" ", 1)[1]).name for line in (logs / "added.log").read_text().splitlines()}
    assert loaded == {"model"}  # the quality tagger's model alone

    removed = rerun(stage3_config(models_dir, quality_model, **{"tag.taggers.topic.enabled": False}), {"topic"}, "removed.log")
    assert not (logs / "removed.log").exists()  # no model loaded
    assert removed.to_pylist() == full.drop_columns([n for n in full.schema.names if n.startswith("topic_")]).to_pylist()
