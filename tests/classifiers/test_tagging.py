"""Tagging one batch without Spark, with real bootstrapped models: columns, alignment, top-k."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from thresher.classifiers.base import cached_classifier
from thresher.classifiers.tagging import Tagger, check_tagger, tag_batches, tag_table, top_labels
from thresher.schemas.tags import tagged_schema


@pytest.fixture(scope="module")
def taggers(bootstrapped):
    models, _ = bootstrapped
    return (
        Tagger("page_type", str(models / "page_type"), input="page_type", top_k=3),
        Tagger("clutter", str(models / "clutter"), kind="lines", input="clutter"),
        Tagger("topic", str(models / "topic"), input="topic"),
    )


@pytest.fixture(scope="module")
def batch(rules_dir):
    return pq.read_table(rules_dir / "documents").slice(0, 50)


def test_a_pii_tagger_writes_every_finding_of_each_text_and_needs_no_model(batch):
    from thresher.pipeline.pii import find_pii

    pii = Tagger("pii", kind="pii")
    planted = batch.slice(0, 2).set_column(batch.schema.get_field_index("text"), "text",
                                           [["Mail a.b@example.com", "手机13812345678，IP 8.8.8.8"]])
    tagged = tag_table(planted, [pii])
    assert tagged.schema == tagged_schema([pii])
    assert tagged.column("pii_spans").to_pylist() == [
        [{"kind": "email", "start": 5, "end": 20}], [{"kind": "phone", "start": 2, "end": 13}, {"kind": "ip_address", "start": 17, "end": 24}]]
    real = tag_table(batch, [pii]).to_pylist()  # real crawl text, through tag_batches' model-free path too
    assert [row["pii_spans"] for row in real] == [[s._asdict() for s in find_pii(row["text"])] for row in real]
    assert [b.to_pylist() for b in tag_batches(iter(batch.to_batches()), [pii], 16)] == [real[i:i + 16] for i in range(0, 50, 16)]


def test_top_labels_are_best_first_with_ties_in_label_order():
    probs = np.array([[0.2, 0.5, 0.3], [0.4, 0.2, 0.4]])
    assert top_labels(probs, ["a", "b", "c"], 2) == [
        [{"label": "b", "score": 0.5}, {"label": "c", "score": 0.3}],
        [{"label": "a", "score": 0.4}, {"label": "c", "score": 0.4}],
    ]


def test_each_tagger_adds_its_columns_and_changes_nothing_else(batch, taggers):
    tagged = tag_table(batch, taggers)
    assert tagged.schema == tagged_schema(taggers)
    assert tagged.select(batch.schema.names).to_pylist() == batch.to_pylist()
    page_model = cached_classifier(taggers[0].model_dir)
    for row in tagged.to_pylist():
        assert len(row["page_type_top"]) == min(3, len(page_model.labels))
        assert row["page_type_top"][0] == {"label": row["page_type_label"], "score": row["page_type_score"]}
        lines = row["text"].split("\n")
        assert len(row["clutter_line_scores"]) == len(lines)
        assert all((s is None) == (not line.strip()) for line, s in zip(lines, row["clutter_line_scores"], strict=True))
        assert all(s is None or 0.0 <= s <= 1.0 for s in row["clutter_line_scores"])


def test_batching_does_not_change_the_tags(batch, taggers):
    whole = tag_table(batch, taggers).to_pylist()
    pieces = [row for b in tag_batches(iter(batch.to_batches()), taggers, batch_size=7) for row in b.to_pylist()]
    assert pieces == whole


def test_a_lines_tagger_that_reads_no_lines_is_refused():
    # kind, input and top_k on their own are the config's declarations (tests/pipeline/test_config.py)
    with pytest.raises(ValueError, match="input must be clutter"):
        check_tagger(Tagger("x", "/m", kind="lines", input="plain"))
    check_tagger(Tagger("x", "/m", kind="lines", input="clutter"))
