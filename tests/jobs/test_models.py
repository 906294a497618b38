"""Stage 3 job in Spark local mode on stage-2-shaped input built from real DCLM and ChineseWebText text."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from classifiers.base import ModelNotFoundError
from jobs.common import read_stats
from jobs.models import run_models
from pipeline.config import load_config
from schemas.documents import MODELS, RULES
from schemas.rejects import REJECT

DOCUMENT_REJECT_RULES = {"clutter_emptied", "rebalance_downsampled"}


@pytest.fixture(scope="module")
def stage2_dir(shared_data, tmp_path_factory) -> Path:
    """A committed stage 2 output: 160 English (DCLM) and 40 Chinese (ChineseWebText) documents."""
    # Imported here: Spark workers import this module (for _model_loads) without tests/ on their path.
    from stage_rows import URL_SHAPES, read_jsonl, rules_row

    quality = shared_data / "quality"
    rows = [
        rules_row("dclm", i, URL_SHAPES[i % len(URL_SHAPES)].format(i=i), r["text"], "en")
        for i, r in enumerate(read_jsonl(quality / "dclm" / "majority_data.jsonl")[:160])
    ]
    rows += [rules_row("cwt", i, r["url"], r["raw_content"], "zh") for i, r in enumerate(read_jsonl(quality / "chinesewebtext" / "cleared1.jsonl")[:40])]
    directory = tmp_path_factory.mktemp("stage2")
    (directory / "documents").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=RULES), directory / "documents" / "part-0.parquet")
    (directory / "_COMMITTED").write_text("{}\n")
    return directory


@pytest.fixture(scope="module")
def models_dir(stage2_dir, tmp_path_factory) -> Path:
    from classifiers.bootstrap import bootstrap
    from classifiers.topic import load_taxonomy

    directory = tmp_path_factory.mktemp("models")
    bootstrap([str(stage2_dir)], directory, load_taxonomy(), params={"bucket": 20_000, "dim": 16})
    return directory


@pytest.fixture(scope="module")
def outputs(spark, stage2_dir, models_dir, tmp_path_factory) -> dict[int, Path]:
    """The job on 1 input partition (called directly) and on 4 (through the `thresher models` command)."""
    from jobs.cli import main

    drop_min_score = 0.3  # the bootstrapped test models are unsure; let more non-articles go
    one = tmp_path_factory.mktemp("models_out_1")
    config = load_config(overrides={"models.page_type_drop_min_score": drop_min_score})
    run_models(spark, str(stage2_dir), str(one), config, models_dir=str(models_dir), partitions=1)
    four = tmp_path_factory.mktemp("models_out_4")
    argv = ["models", str(stage2_dir), "--output", str(four), "--models-dir", str(models_dir), "--partitions", "4"]
    assert main([*argv, "--set", f"models.page_type_drop_min_score={drop_min_score}"]) == 0
    return {1: one, 4: four}


def _read(directory: Path, name: str) -> pa.Table:
    return pq.read_table(directory / name)


def test_output_layout_schemas_and_funnel(outputs):
    out = outputs[4]
    assert (out / "_COMMITTED").is_file() and not (out / "_work").exists()
    documents, rejects = _read(out, "documents"), _read(out, "rejects")
    assert documents.schema.names == MODELS.names and rejects.schema.names == REJECT.names
    stats = read_stats(out)
    assert stats["documents_in"] == 200
    assert stats["documents_out"] == documents.num_rows > 0
    assert stats["documents_out"] + stats["documents_rejected"] == stats["documents_in"]
    by_rule = stats["rejects_by_rule"]
    assert any(rule.startswith("page_type:") for rule in by_rule)
    assert set(by_rule) - {"clutter_line"} <= DOCUMENT_REJECT_RULES | {f"page_type:{t}" for t in stats["page_type_distribution"]}
    assert sum(stats["page_type_distribution"].values()) == 200
    assert set(rejects.column("stage").to_pylist()) == {"models"}


def test_documents_are_filtered_cleaned_and_weighted(outputs, stage2_dir):
    out = outputs[4]
    docs = _read(out, "documents").to_pylist()
    assert [d["doc_id"] for d in docs] == sorted(d["doc_id"] for d in docs)
    assert {d["page_type"] for d in docs if d["page_type_score"] >= 0.3} <= {"article"}
    assert all(d["sample_copies"] >= 1 and d["topic"] for d in docs)
    original = {r["doc_id"]: r["text"] for r in pq.read_table(stage2_dir / "documents").to_pylist()}
    for doc in docs:
        if doc["lines_removed_clutter"] == 0:
            assert doc["text"] == original[doc["doc_id"]]
        else:
            assert len(doc["text"]) < len(original[doc["doc_id"]])


def test_line_rejects_and_distributions_add_up(outputs):
    out = outputs[4]
    stats = read_stats(out)
    docs = _read(out, "documents").to_pylist()
    rejects = _read(out, "rejects").to_pylist()
    line_rejects = [r for r in rejects if r["rule"] == "clutter_line"]
    assert len(line_rejects) == stats["lines_removed_clutter"] > 0
    kept_ids = {d["doc_id"] for d in docs}
    removed_from_kept = sum(1 for r in line_rejects if r["doc_id"] in kept_ids)
    assert removed_from_kept == sum(d["lines_removed_clutter"] for d in docs)
    assert sum(stats["topic_distribution_after"].values()) == sum(d["sample_copies"] for d in docs) == stats["sample_copies_total"]
    downsampled = stats["rejects_by_rule"].get("rebalance_downsampled", 0)
    assert sum(stats["topic_distribution_before"].values()) == stats["documents_out"] + downsampled


def test_same_output_whatever_the_partitioning(outputs):
    for name, keys in (("documents", ["doc_id"]), ("rejects", ["doc_id", "rule", "content", "detail"])):
        one, four = (_read(outputs[p], name).to_pandas() for p in (1, 4))
        one, four = (frame.sort_values(keys).reset_index(drop=True) for frame in (one, four))
        assert one.equals(four), name
    stats_one, stats_four = read_stats(outputs[1]), read_stats(outputs[4])
    assert {k: v for k, v in stats_one.items() if k != "seconds"} == {k: v for k, v in stats_four.items() if k != "seconds"}


def test_missing_models_fail_before_any_work(spark, stage2_dir, tmp_path):
    with pytest.raises(ModelNotFoundError, match="thresher classifiers bootstrap"):
        run_models(spark, str(stage2_dir), str(tmp_path / "out"), load_config(), models_dir=str(tmp_path / "nothing"))
    assert not (tmp_path / "out").exists()


def test_uncommitted_input_and_committed_output_are_refused(spark, stage2_dir, models_dir, outputs, tmp_path):
    (tmp_path / "in" / "documents").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="no committed stage output"):
        run_models(spark, str(tmp_path / "in"), str(tmp_path / "out"), load_config(), models_dir=str(models_dir))
    with pytest.raises(RuntimeError, match="already committed"):
        run_models(spark, str(stage2_dir), str(outputs[1]), load_config(), models_dir=str(models_dir))


def _model_loads(batches, model_dir):
    """mapInArrow body: which worker process ran the task, and whether it had the model already."""
    import os

    from classifiers import base

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


def test_the_shipped_clutter_model_is_used_unless_the_config_names_another(models_dir):
    from classifiers.clutter import shipped_model_dir
    from jobs.models import scoring_settings

    assert scoring_settings(load_config(), str(models_dir)).clutter_model == str(shipped_model_dir())
    bootstrapped = scoring_settings(load_config(overrides={"models.clutter_model": "clutter"}), str(models_dir))
    assert bootstrapped.clutter_model == str((models_dir / "clutter").resolve())
