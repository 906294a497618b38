"""Stage 3 on one batch without Spark: every document's fate, and thresholds that act on scores."""

from __future__ import annotations

import dataclasses

import pyarrow.parquet as pq
import pytest

from classifiers.scoring import SCORED, STATUS_KEPT, ScoringSettings, score_batches, score_table
from classifiers.topic import load_taxonomy, sample_copies


@pytest.fixture(scope="module")
def table(rules_dir):
    return pq.read_table(rules_dir / "documents")


@pytest.fixture(scope="module")
def settings(bootstrapped):
    models, _ = bootstrapped
    return ScoringSettings(
        page_type_model=str(models / "page_type"),
        clutter_model=str(models / "clutter"),
        topic_model=str(models / "topic"),
        page_type_keep=("article",),
        page_type_drop_min_score=0.5,
        clutter_threshold=0.5,
        topic_min_score=0.0,
        rebalance_seed=0,
        batch_size=64,
        topic_weights=load_taxonomy().weights(),
    )


@pytest.fixture(scope="module")
def scored(table, settings):
    return score_table(table, settings).to_pylist()


def test_every_document_gets_a_fate(scored, table):
    assert len(scored) == table.num_rows
    statuses = {row["status"] for row in scored}
    assert STATUS_KEPT in statuses and any(s.startswith("page_type:") for s in statuses)
    for row in scored:
        assert row["page_type"] and 0 <= row["page_type_score"] <= 1
        if row["status"].startswith("page_type:"):
            assert row["page_type"] != "article" and row["page_type_score"] >= 0.5 and row["topic"] is None
        else:
            assert row["lines_removed_clutter"] == len(row["removed_lines"])


def test_kept_documents_carry_topic_and_copies_from_the_weights(scored, settings):
    rebalanced = [r for r in scored if r["topic"] is not None]
    assert rebalanced
    for row in rebalanced:
        weight = settings.topic_weights[row["topic"]]
        assert row["sample_copies"] == sample_copies(row["doc_id"], weight, settings.rebalance_seed)
        assert (row["status"] == "rebalance_downsampled") == (row["sample_copies"] == 0)


def test_removed_lines_are_gone_from_the_text(scored, table):
    original = {r["doc_id"]: r["text"] for r in table.to_pylist()}
    changed = [r for r in scored if r["removed_lines"]]
    assert changed
    for row in changed[:50]:
        kept = row["text"].split("\n")
        assert len(original[row["doc_id"]].split("\n")) - len(row["removed_lines"]) >= len(kept)
        assert all(removed["score"] < 0.5 for removed in row["removed_lines"])


def test_thresholds_change_outcomes_without_new_scores(scored, table, settings):
    loose = score_table(
        table, dataclasses.replace(settings, page_type_keep=tuple(["article", "forum", "tool", "video", "audio", "adult", "listing", "product"]), clutter_threshold=0.0)
    ).to_pylist()
    assert not any(r["status"].startswith("page_type:") for r in loose)
    assert all(r["lines_removed_clutter"] == 0 for r in loose)
    assert [r["page_type_score"] for r in loose] == [r["page_type_score"] for r in scored]


def test_batches_do_not_change_results(table, settings):
    import pyarrow as pa

    whole = score_table(table.slice(0, 100), settings)
    batched = pa.Table.from_batches(list(score_batches(table.slice(0, 100).to_batches(max_chunksize=37), settings)), schema=SCORED)
    assert batched.equals(whole)
