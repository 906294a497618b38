"""Stage 3 job: page-type filter, line-clutter removal, topic classification and rebalancing.

Reads a committed stage 2 output (documents/ Parquet), scores documents in batches inside Spark tasks
(mapInArrow; each Python worker loads each model once), and writes:
OUTPUT/documents/ (schemas.documents.MODELS, sorted by doc_id), OUTPUT/rejects/ (schemas.rejects.REJECT:
`page_type:<type>`, `clutter_emptied` and `rebalance_downsampled` documents, and one `clutter_line` row
per removed line), OUTPUT/stats.json.

Models: config `models.model_dir` (or --models-dir) holding page_type/, clutter/, topic/; make them with
`thresher classifiers bootstrap --input CRAWL_OR_STAGE_DIR --output MODELS_DIR`. The clutter model
defaults to the one shipped with thresher (`models.clutter_model: shipped`, trained on real labels).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

from classifiers.base import ModelNotFoundError, read_manifest
from classifiers.clutter import SHIPPED_MODEL, shipped_model_dir
from classifiers.scoring import RULE_CLUTTER_LINE, SCORED, STATUS_KEPT, ScoringSettings, score_batches
from classifiers.topic import load_taxonomy
from jobs.common import (
    StageOutput,
    add_common_arguments,
    config_from_args,
    crash_point,
    print_stage_summary,
    require_committed,
    script_main,
    spark_session,
)
from pipeline.config import Config, ConfigError
from schemas import to_spark_schema
from schemas.documents import MODELS, RULES
from schemas.rejects import CONTENT_SNIPPET_CHARS, REJECT

STAGE = "models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT_DIR", help="committed stage 2 (rules) output directory")
    parser.add_argument("--output", required=True, help="output directory (documents/, rejects/, stats.json)")
    parser.add_argument(
        "--models-dir",
        help="directory holding page_type/, clutter/, topic/ (default: config models.model_dir); "
        "make one with `thresher classifiers bootstrap`",
    )
    parser.add_argument("--partitions", type=int, help="repartition the input into this many tasks (default: as read)")
    add_common_arguments(parser)


def scoring_settings(config: Config, models_dir: str | None = None) -> ScoringSettings:
    """Resolved model paths, checked thresholds and the taxonomy's weights; errors before any work starts."""
    section = config.models
    base = (Path(models_dir) if models_dir else Path(config.resolve_path(section.model_dir))).resolve()
    paths = {}
    for key in ("page_type_model", "clutter_model", "topic_model"):
        path = Path(getattr(section, key))
        if key == "clutter_model" and getattr(section, key) == SHIPPED_MODEL:
            path = shipped_model_dir()
        path = (path if path.is_absolute() else base / path).resolve()
        try:
            manifest = read_manifest(path)
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(
                f"models.{key}: no model at {path}. Make the default models with "
                f"`thresher classifiers bootstrap --input CRAWL_OR_STAGE_DIR --output {base}` "
                f"(or pass --models-dir / --set models.model_dir=DIR)"
            ) from exc
        paths[key] = (str(path), manifest)
    for key in ("page_type_drop_min_score", "clutter_threshold", "topic_min_score"):
        if not 0.0 <= getattr(section, key) <= 1.0:
            raise ConfigError(f"models.{key}: must be in [0, 1], got {getattr(section, key)}")
    if section.batch_size < 1:
        raise ConfigError(f"models.batch_size: must be at least 1, got {section.batch_size}")
    page_labels = paths["page_type_model"][1]["labels"]
    if not set(section.page_type_keep) & set(page_labels):
        raise ConfigError(f"models.page_type_keep: none of {section.page_type_keep} is a label of the page-type model ({page_labels})")
    taxonomy = load_taxonomy(config.resolve_path(section.topics_file) or None)
    return ScoringSettings(
        page_type_model=paths["page_type_model"][0],
        clutter_model=paths["clutter_model"][0],
        topic_model=paths["topic_model"][0],
        page_type_keep=tuple(section.page_type_keep),
        page_type_drop_min_score=section.page_type_drop_min_score,
        clutter_threshold=section.clutter_threshold,
        topic_min_score=section.topic_min_score,
        rebalance_seed=section.rebalance_seed,
        batch_size=section.batch_size,
        topic_weights=taxonomy.weights(),
    )


def _rules_shaped(spark, input_dir: Path):
    """The input documents with exactly the RULES columns; a column stage 2 did not write is null."""
    from pyspark.sql import functions as F

    frame = spark.read.parquet(str(input_dir / "documents"))
    missing = [name for name in ("doc_id", "text") if name not in frame.columns]
    if missing:
        raise ValueError(f"{input_dir}/documents lacks required column(s) {missing}")
    spark_types = {f.name: f.dataType for f in to_spark_schema(RULES).fields}
    columns = [
        F.col(name).cast(spark_types[name]) if name in frame.columns else F.lit(None).cast(spark_types[name]).alias(name)
        for name in RULES.names
    ]
    return frame.select(*columns), [n for n in RULES.names if n not in frame.columns]


def run_models(
    spark, input_dir: str, output_dir: str, config: Config, models_dir: str | None = None, partitions: int | None = None
) -> dict:
    from pyspark.sql import functions as F

    started = time.perf_counter()
    settings = scoring_settings(config, models_dir)
    input_path = require_committed(input_dir)
    out = StageOutput(output_dir)
    out.begin()
    documents, missing_columns = _rules_shaped(spark, input_path)
    if partitions:
        documents = documents.repartition(partitions, "doc_id")
    scored_path = str(out.work / "scored")
    documents.mapInArrow(functools.partial(score_batches, settings=settings), to_spark_schema(SCORED)).write.mode(
        "overwrite"
    ).parquet(scored_path)
    scored_seconds = time.perf_counter() - started
    crash_point("models:scored")

    scored = spark.read.parquet(scored_path)
    scored.filter(F.col("status") == STATUS_KEPT).select(*MODELS.names).orderBy("doc_id").write.parquet(
        out.staged("documents")
    )
    doc_rejects = scored.filter(F.col("status") != STATUS_KEPT).select(
        "doc_id",
        "url",
        "warc_path",
        F.lit(STAGE).alias("stage"),
        F.col("status").alias("rule"),
        F.col("reject_detail").alias("detail"),
        F.substring("text", 1, CONTENT_SNIPPET_CHARS).alias("content"),
    )
    line_rejects = scored.select("doc_id", "url", "warc_path", F.explode("removed_lines").alias("removed")).select(
        "doc_id",
        "url",
        "warc_path",
        F.lit(STAGE).alias("stage"),
        F.lit(RULE_CLUTTER_LINE).alias("rule"),
        F.format_string("score=%.4f", F.col("removed.score")).alias("detail"),
        F.col("removed.line").alias("content"),
    )
    reject_schema = to_spark_schema(REJECT)
    rejects = doc_rejects.unionByName(line_rejects).select(*[F.col(f.name).cast(f.dataType) for f in reject_schema.fields])
    rejects.orderBy("doc_id", "rule", "content", "detail").write.parquet(out.staged("rejects"))

    stats = _stats(scored)
    stats.update(
        {
            "stage": STAGE,
            "input": str(input_path),
            "missing_input_columns": missing_columns,
            "models": {
                key: {"path": getattr(settings, key), "backend": read_manifest(getattr(settings, key))["backend"]}
                for key in ("page_type_model", "clutter_model", "topic_model")
            },
            "config_digest": config.digest(),
            "seconds": {"scoring": round(scored_seconds, 3), "total": round(time.perf_counter() - started, 3)},
        }
    )
    crash_point("models:before_commit")
    out.commit(stats)
    return stats


def _stats(scored) -> dict:
    """Counts from the written scored rows (never accumulators), in one aggregation: the funnel,
    rejects per rule, and the page-type and topic distributions before and after rebalancing."""
    from pyspark.sql import functions as F

    groups = (
        scored.groupBy("status", "page_type", "topic")
        .agg(
            F.count("*").alias("documents"),
            F.sum("sample_copies").alias("copies"),
            F.sum(F.coalesce(F.size("removed_lines"), F.lit(0))).alias("lines_removed"),
        )
        .collect()
    )
    rejects_by_rule: dict[str, int] = {}
    page_types: dict[str, int] = {}
    topics_before: dict[str, int] = {}
    topics_after: dict[str, int] = {}
    documents_in = documents_out = copies = lines_removed = 0
    for group in groups:
        documents_in += group["documents"]
        lines_removed += group["lines_removed"]
        page_types[group["page_type"]] = page_types.get(group["page_type"], 0) + group["documents"]
        if group["status"] == STATUS_KEPT:
            documents_out += group["documents"]
            copies += group["copies"]
            topics_after[group["topic"]] = topics_after.get(group["topic"], 0) + group["copies"]
        else:
            rejects_by_rule[group["status"]] = rejects_by_rule.get(group["status"], 0) + group["documents"]
        if group["topic"] is not None:
            topics_before[group["topic"]] = topics_before.get(group["topic"], 0) + group["documents"]
    if lines_removed:
        rejects_by_rule[RULE_CLUTTER_LINE] = lines_removed
    return {
        "documents_in": documents_in,
        "documents_out": documents_out,
        "documents_rejected": documents_in - documents_out,
        "lines_removed_clutter": lines_removed,
        "rejects_by_rule": dict(sorted(rejects_by_rule.items())),
        "page_type_distribution": dict(sorted(page_types.items())),
        "topic_distribution_before": dict(sorted(topics_before.items())),
        "topic_distribution_after": dict(sorted(topics_after.items())),
        "sample_copies_total": copies,
    }


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    config = config_from_args(args)
    scoring_settings(config, args.models_dir)  # models and thresholds checked before Spark starts
    spark = spark_session("thresher-models", config.spark, args.master)
    stats = run_models(spark, args.input, args.output, config, args.models_dir, args.partitions)
    print_stage_summary(STAGE, stats, time.perf_counter() - started)
    return 0


def main(argv: list[str] | None = None) -> int:
    return script_main("thresher models", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
