"""Stage 3 on a batch of documents, without Spark: page type, clutter removal, topic, rebalancing.

`score_table` takes RULES-shaped rows and returns SCORED rows: the MODELS columns plus the row's
fate (`status`: "kept" or the reject rule), a detail for rejects, and the removed lines. The job
splits that into documents and rejects. Models come from the per-process cache, so a Spark worker
loads each model once however many batches it scores.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from classifiers.base import cached_classifier
from classifiers.clutter import remove_clutter
from classifiers.page_type import page_type_input
from classifiers.tasks import topic_input
from classifiers.topic import sample_copies
from schemas import extend
from schemas.documents import MODELS

STATUS_KEPT = "kept"
RULE_CLUTTER_LINE = "clutter_line"
RULE_CLUTTER_EMPTIED = "clutter_emptied"  # every non-blank line was clutter
RULE_DOWNSAMPLED = "rebalance_downsampled"

REMOVED_LINE = pa.struct([pa.field("line", pa.string()), pa.field("score", pa.float64())])
SCORED = extend(
    MODELS,
    pa.field("status", pa.string(), nullable=False),
    pa.field("reject_detail", pa.string()),
    pa.field("removed_lines", pa.list_(REMOVED_LINE)),
)


@dataclass(frozen=True)
class ScoringSettings:
    """Everything a Spark task needs: absolute model paths, thresholds, class weights. Small and picklable."""

    page_type_model: str
    clutter_model: str
    topic_model: str
    page_type_keep: tuple[str, ...]
    page_type_drop_min_score: float
    clutter_threshold: float
    topic_min_score: float
    rebalance_seed: int
    batch_size: int
    topic_weights: dict[str, float] = field(default_factory=dict)


def score_table(table: pa.Table, settings: ScoringSettings) -> pa.Table:
    rows = table.to_pylist()
    page_model = cached_classifier(settings.page_type_model)
    page_types, page_scores = page_model.predict_batch([page_type_input(r.get("url") or "", r.get("text") or "") for r in rows])
    out = []
    for row, page_type, score in zip(rows, page_types, page_scores, strict=True):
        dropped = page_type not in settings.page_type_keep and score >= settings.page_type_drop_min_score
        out.append(
            {
                **row,
                "page_type": page_type,
                "page_type_score": float(score),
                "status": f"page_type:{page_type}" if dropped else STATUS_KEPT,
                "reject_detail": f"score={score:.4f}" if dropped else None,
            }
        )
    survivors = [r for r in out if r["status"] == STATUS_KEPT]
    cleaned = remove_clutter([r.get("text") or "" for r in survivors], cached_classifier(settings.clutter_model), settings.clutter_threshold)
    for row, result in zip(survivors, cleaned, strict=True):
        row["text"] = result.text
        row["lines_removed_clutter"] = len(result.removed)
        row["removed_lines"] = [{"line": line, "score": s} for line, s in result.removed]
        if not result.text.strip():
            row["status"] = RULE_CLUTTER_EMPTIED
            row["reject_detail"] = f"lines_removed={len(result.removed)}"
    survivors = [r for r in survivors if r["status"] == STATUS_KEPT]
    topics, topic_scores = cached_classifier(settings.topic_model).predict_batch([topic_input(r["text"]) for r in survivors])
    for row, topic, score in zip(survivors, topics, topic_scores, strict=True):
        weight = settings.topic_weights.get(topic, 1.0) if score >= settings.topic_min_score else 1.0
        row["topic"] = topic
        row["topic_score"] = float(score)
        row["sample_copies"] = sample_copies(row["doc_id"], weight, settings.rebalance_seed)
        if row["sample_copies"] == 0:
            row["status"] = RULE_DOWNSAMPLED
            row["reject_detail"] = f"topic={topic} weight={weight:g}"
    return pa.Table.from_pylist(out, schema=SCORED)


def score_batches(batches: Iterator[pa.RecordBatch], settings: ScoringSettings) -> Iterator[pa.RecordBatch]:
    """The mapInArrow body: RULES-shaped record batches in, SCORED batches out, `batch_size` rows per model call."""
    for batch in batches:
        for start in range(0, batch.num_rows, settings.batch_size):
            yield from score_table(pa.Table.from_batches([batch.slice(start, settings.batch_size)]), settings).to_batches()
