"""Bootstrap: weak labels from a crawl and three trained default models, with one call."""

from __future__ import annotations

import json

import pytest

from thresher.classifiers.base import load_classifier, read_manifest
from thresher.classifiers.bootstrap import MODEL_NAMES, bootstrap_texts, sample_documents, weak_label_rows
from thresher.classifiers.topic import load_taxonomy
from thresher.classifiers.training import evaluate_saved


def test_bootstrap_writes_three_models_with_metrics_and_their_labels(bootstrapped):
    models, summary = bootstrapped
    assert summary["documents"] == 619
    for name in MODEL_NAMES:
        manifest = read_manifest(models / name)
        assert manifest["backend"] == "fasttext"
        metrics = json.loads((models / name / "metrics.json").read_text())
        assert metrics["task"] == name and metrics["heldout"]["examples"] > 0
        assert evaluate_saved(models / name) == metrics["heldout"]  # the recorded figures reproduce
        rows = [json.loads(line) for line in (models / "weak_labels" / f"{name}.jsonl").read_text().splitlines()]
        assert {"text", "label", "rule"} <= set(rows[0])
    page = summary["models"]["page_type"]["weak_label_counts"]
    assert {"article", "forum", "product", "listing", "video"} <= set(page)
    assert set(summary["models"]["clutter"]["weak_label_counts"]) == {"clutter", "keep"}
    assert summary["models"]["clutter"]["heldout"]["auc"] > 0.9
    # All 200 classes exist in the topic model thanks to the seed examples, even those the crawl lacks.
    assert len(load_classifier(models / "topic").labels) == 200


def test_sampling_does_not_depend_on_input_order():
    docs = [(f"https://x.com/{i}", f"text {i}") for i in range(100)]
    assert sample_documents(iter(docs), 10, seed=0) == sample_documents(iter(docs[::-1]), 10, seed=0)
    assert len(sample_documents(iter(docs + [("u", "   ")]), 1000, seed=0)) == 100


def test_clutter_lines_are_capped_per_label():
    docs = [("https://x.com/a", "Sign in\nLog in\nRegister\nThe river floods every spring, and farmers plant after.")]
    rows = weak_label_rows(docs, load_taxonomy(), max_lines_per_label=2, seed=0)
    counts = {label: sum(r["label"] == label for r in rows["clutter"]) for label in ("clutter", "keep")}
    assert counts == {"clutter": 2, "keep": 1}


def test_reads_stage_dirs_jsonl_and_warcs(rules_dir, shared_data, tmp_path):
    assert sum(1 for _ in bootstrap_texts([str(rules_dir)])) == 619
    jsonl = shared_data / "quality" / "chinesewebtext" / "cleared1.jsonl"
    url, text = next(bootstrap_texts([str(jsonl)]))
    assert url.startswith("http") and text
    from thresher.jobs.prepare import resolved_prepare_config
    from thresher.pipeline.config import load_config

    warc = shared_data / "warc" / "cc-main-2020-34-sample.warc.gz"
    documents = list(bootstrap_texts([str(warc)], resolved_prepare_config(load_config())))
    assert documents and all(url.startswith("http") for url, _ in documents)
    with pytest.raises(ValueError, match="expected a stage directory"):
        list(bootstrap_texts([str(shared_data / "quality" / "chinesewebtext" / "train.txt")]))


def test_a_stage_directory_without_its_marker_is_refused_in_one_line(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from thresher.classifiers.bootstrap import bootstrap
    from thresher.pipeline.stagedir import COMMITTED_MARKER
    from thresher.schemas.errors import InputError

    stage = tmp_path / "rules"
    (stage / "documents").mkdir(parents=True)
    pq.write_table(pa.table({"doc_id": ["a"], "url": ["https://x.com/a"], "text": ["hello"]}),
                   stage / "documents" / "part-0.parquet")
    (stage / "stats.json").write_text("{}")
    refusal = f"^{stage} is a thresher stage output that was not committed \\(no {COMMITTED_MARKER}\\): rerun that stage$"
    with pytest.raises(InputError, match=refusal):
        list(bootstrap_texts([str(stage)]))
    with pytest.raises(InputError, match=refusal):
        bootstrap([str(stage)], tmp_path / "models", load_taxonomy())
    assert not (tmp_path / "models").exists()
    (stage / COMMITTED_MARKER).write_text("{}")
    assert list(bootstrap_texts([str(stage)])) == [("https://x.com/a", "hello")]


def test_too_few_labels_is_a_clear_error(tmp_path):
    from thresher.classifiers.bootstrap import bootstrap

    (tmp_path / "one.jsonl").write_text(json.dumps({"url": "https://x.com/a", "text": "hello"}) + "\n")
    with pytest.raises(ValueError, match="at least two labels"):
        bootstrap([str(tmp_path / "one.jsonl")], tmp_path / "models", load_taxonomy())


def test_a_moved_models_dir_still_reproduces_its_metrics(bootstrapped, tmp_path):
    import shutil

    models, _ = bootstrapped
    moved = tmp_path / "moved"
    shutil.copytree(models, moved)
    metrics = json.loads((moved / "clutter" / "metrics.json").read_text())
    assert metrics["data"] == ["../weak_labels/clutter.jsonl"]
    assert evaluate_saved(moved / "clutter") == metrics["heldout"]
