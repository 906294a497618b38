"""Stage 2 (rules): URL dedup, cross-document line dedup, heuristic filters, MinHash-LSH fuzzy dedup, each
also against earlier runs' outputs (rules.dedup.references).

    thresher rules INPUT --output DIR [--config FILE] [--master URL] [--text-field NAME ...]

Reads stage 1's committed documents (or a user's Parquet, JSONL or datasets directory, see
jobs.documents_input; a missing lang is computed with lid.176), writes DIR/documents (schemas.documents.RULES), DIR/rejects
(schemas.rejects.REJECT, stage "rules"), DIR/clusters (schemas.clusters.CLUSTERS: every member of every MinHash
cluster, the kept one and why) and DIR/stats.json. Only 128 band keys per document travel
through the MinHash shuffles; connected components are found with alternating large-star /
small-star joins (Kiveris et al. 2014), each round's edges written out to cut the lineage. Each
heuristics task writes its families' counts and seconds as a small JSON file into DIR's work directory
(summed into stats.json's `rules`). DIR may be a local path every node sees or any object store URL
(s3://...): every table, intermediates included, is written as parts from the Python workers
(pipeline.stagedir.parts), so the JVM needs no connector for the store. Beside the documents it commits
the keys a later run dedups against (schemas.dedup_keys: MD5 and URL key, band keys, edge-line counts of
the documents kept), so a reference is read, never hashed again: a run with references adds a scan of their
keys and joins on MD5, URL key, (band, key) and line key hash, no pairwise comparison.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
import time
from collections.abc import Iterator

import pandas as pd

from thresher.jobs.documents_input import (
    INPUT_HELP,
    add_field_arguments,
    documents_frame,
    fields_from_args,
    fresh_rejects_dir,
    parse_rejects,
    stage_kept_fields,
    with_limits,
)
from thresher.jobs.stage_job import StageJob, reject_rows
from thresher.pipeline.config import Config, ConfigError, RulesConfig
from thresher.pipeline.filters import SKIPPED, rule_stats_report
from thresher.pipeline.process_cache import ProcessCache
from thresher.pipeline.rules.references import DEDUP_KEYS_DETAIL, Reference, dedup_key_settings, resolve_references
from thresher.pipeline.stagedir import StageOutput, storage, write_whole
from thresher.pipeline.stagedir.documents import DEFAULT_FIELDS, INPUT_PARSE_ERROR, FieldMapping, resolve_source
from thresher.pipeline.stagedir.parts import read_parts, read_written, write_parts, write_scratch
from thresher.schemas import extend, to_spark_schema
from thresher.schemas.clusters import CLUSTERS
from thresher.schemas.dedup_keys import (
    DEDUP_BANDS,
    DEDUP_BANDS_TABLE,
    DEDUP_DOCS,
    DEDUP_DOCS_TABLE,
    DEDUP_LINES,
    DEDUP_LINES_TABLE,
)
from thresher.schemas.documents import PREPARED, RULES
from thresher.schemas.rejects import LINE_DUPLICATE_OF_REFERENCE, REJECT, is_line_rule

STAGE = "rules"
LINE_DEDUP_RULE = "line_dedup"
MINHASH_RULE = "minhash_duplicate"
URL_RULE = "url_duplicate"  # another fetch of the same normalised URL is kept (newer, or a reference's)
EXACT_REFERENCE_RULE = "exact_duplicate_of_reference"  # a reference keeps a document of the same MD5
FUZZY_REFERENCE_RULE = "fuzzy_duplicate_of_reference"  # shares an LSH band key with a reference's document
LINE_REFERENCE_RULE = LINE_DUPLICATE_OF_REFERENCE  # a line this run alone would keep, over the limit with the references'
_WORK_DIR = "_work"  # intermediate Parquet inside the output directory, removed before the commit
_MAX_COMPONENT_ROUNDS = 50

# Per-executor caches: built on first use in each Python worker, never at import.
_JUDGES = ProcessCache()
_HASHERS = ProcessCache()


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help=f"{INPUT_HELP}; usually stage 1 (prepare) output")
    parser.add_argument("--output", required=True, metavar="DIR", help="output directory for this stage")
    add_field_arguments(parser)


# --- per-partition functions (run on executors) -------------------------------------------------


def _edge_lines_udf(edge: int):
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from thresher.pipeline.rules.line_dedup import edge_lines

    item = T.StructType(
        [
            T.StructField("line_no", T.IntegerType()),
            T.StructField("key", T.StringType()),
            T.StructField("line", T.StringType()),
        ]
    )
    return F.udf(lambda text: edge_lines(text or "", edge), T.ArrayType(item))


def _remove_lines_udf():
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from thresher.pipeline.rules.line_dedup import remove_lines

    def apply(text, line_numbers):
        if not line_numbers:
            return (text, 0)
        new_text, removed = remove_lines(text, line_numbers)
        return (new_text, len(removed))

    result = T.StructType([T.StructField("text", T.StringType()), T.StructField("removed", T.IntegerType())])
    return F.udf(apply, result)


class _HeuristicJudge:
    """mapInPandas function: adds drop_rule / drop_detail columns; the filters load once per worker.

    Each task writes its rules' stats (seen, dropped, time) to `stats_dir/part-<partition>.json`
    when its partition is done, replacing the file atomically: a retried or speculative attempt
    rewrites its partition's whole count, so the driver reads each partition once, never twice.
    """

    def __init__(self, rules: RulesConfig, stats_dir: str):
        self.rules = rules  # its files resolved on the driver (resolved_rules_config)
        self.stats_dir = stats_dir
        self.key = json.dumps(dataclasses.asdict(rules), sort_keys=True, default=str)

    def _filters(self):
        from thresher.pipeline.rules.heuristics import load_resources

        # The paths are absolute already: `str` resolves nothing.
        return _JUDGES.get(self.key, lambda: stage_filters(self.rules, load_resources(self.rules, str)))

    def __call__(self, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from pyspark import TaskContext

        from thresher.pipeline.filters import merge_rule_stats, take_stats
        from thresher.pipeline.rules.heuristics import judge_documents

        filters = self._filters()
        partition_stats = take_stats(filters)  # zeros, every rule, in pipeline order (and no leftovers)
        for batch in batches:
            verdicts, stats = judge_documents(filters, zip(batch["text"], batch["lang"], batch["url"], strict=True))
            partition_stats = merge_rule_stats([partition_stats, stats])
            yield batch.assign(drop_rule=[v.rule if v else None for v in verdicts],
                               drop_detail=[v.detail if v else None for v in verdicts])
        _write_partition_stats(self.stats_dir, TaskContext.get().partitionId(), partition_stats)


def _write_partition_stats(directory: str, partition: int, stats) -> None:
    from thresher.pipeline.filters import rule_stats_to_json

    fs, path = storage(directory)
    fs.makedirs(path, exist_ok=True)
    write_whole(fs, f"{path}/part-{partition:05d}.json", json.dumps(rule_stats_to_json(stats)).encode())


def stage_filters(rules: RulesConfig, resources) -> list:
    """The built-in filters in the order they run, then the config's own (rules.custom_filters), each a
    DocumentFilter whose `judge(doc)` gets the view the built-in rules share (text, lang, url, words,
    lines: pipeline.rules.heuristics.DocumentView); ConfigError (one line) for one that cannot be made."""
    from thresher.pipeline.filters import DocumentFilter
    from thresher.pipeline.plugins import load_plugin
    from thresher.pipeline.rules.heuristics import build_filters

    filters = build_filters(rules, resources)
    for index, spec in enumerate(rules.custom_filters):
        key = f"rules.custom_filters[{index}]"
        custom = load_plugin(spec, DocumentFilter, "judge", ("doc",), key)
        taken = {doc_filter.rule_name for doc_filter in filters}
        if custom.rule_name in taken or custom.rule_name == DocumentFilter.name:
            raise ConfigError(f"{key}: {spec.class_path} is named {custom.rule_name!r}, as "
                              f"{'the base class' if custom.rule_name == DocumentFilter.name else 'another filter'} is: "
                              "give it a `name` of its own (its stats and rejects go by it)")
        filters.append(custom)
    return filters


def _read_rule_stats(directory: str, rules: RulesConfig, resources) -> dict:
    """The partitions' rule stats merged, every rule listed in pipeline order (an empty input too)."""
    from thresher.pipeline.filters import merge_rule_stats, rule_stats_from_json, take_stats

    fs, path = storage(directory)
    fs.invalidate_cache(path)
    paths = sorted(fs.glob(f"{path}/part-*.json")) if fs.exists(path) else []
    parts = [rule_stats_from_json(json.loads(fs.cat_file(name))) for name in paths]
    return merge_rule_stats([take_stats(stage_filters(rules, resources)), *parts])


class _BandKeys:
    """mapInPandas function: (doc_id, text, lang) -> one (doc_id, band, key) row per band."""

    def __init__(self, rules: RulesConfig):
        self.num_perm, self.seed, self.ngram = rules.minhash_num_perm, rules.minhash_seed, rules.minhash_ngram
        self.bands, self.rows = rules.minhash_bands, rules.minhash_rows

    def __call__(self, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import numpy as np

        from thresher.pipeline.rules.minhash import MinHasher, band_keys, tokenize

        setting = (self.num_perm, self.seed, self.ngram)
        hasher = _HASHERS.get(setting, lambda: MinHasher(*setting))
        band_ids = np.arange(self.bands, dtype=np.int32)
        for batch in batches:
            ids, keys = [], []
            for doc_id, text, lang in zip(batch["doc_id"], batch["text"], batch["lang"], strict=True):
                tokens = tokenize(text or "", lang)
                if not tokens:  # nothing to compare: an empty signature would collide with every other
                    continue
                ids.append(doc_id)
                keys.append(band_keys(hasher.signature(tokens), self.bands, self.rows))
            if not ids:
                continue
            yield pd.DataFrame(
                {
                    "doc_id": np.repeat(np.array(ids, dtype=object), self.bands),
                    "band": np.tile(band_ids, len(ids)),
                    "key": np.concatenate(keys),
                }
            )


class _ClusterMembers:
    """mapInPandas function: cluster members with their and the kept document's text -> CLUSTERS rows
    (each member's estimated Jaccard with the kept one, from signatures of the texts MinHash hashed)."""

    def __init__(self, rules: RulesConfig, run: str):
        self.setting = (rules.minhash_num_perm, rules.minhash_seed, rules.minhash_ngram)
        self.run = run

    def __call__(self, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from thresher.pipeline.rules.clusters import KEPT_RULE, estimated_jaccard, line_diff
        from thresher.pipeline.rules.minhash import MinHasher

        hasher = _HASHERS.get(self.setting, lambda: MinHasher(*self.setting))
        for batch in batches:
            kept = batch["doc_id"] == batch["cluster"]
            jaccard, diff = [], []
            for is_kept, text, kept_text, lang in zip(kept, batch["text"], batch["kept_text"], batch["lang"], strict=True):
                if is_kept:
                    jaccard.append(1.0)
                    diff.append(None)
                    continue
                jaccard.append(estimated_jaccard(hasher.signature_of_text(text or "", lang),
                                                 hasher.signature_of_text(kept_text or "", lang)))
                diff.append(line_diff(kept_text or "", text or ""))
            yield pd.DataFrame({"cluster_id": batch["cluster"], "cluster_size": batch["cluster_size"],
                                "doc_id": batch["doc_id"], "kept": kept, "kept_by": KEPT_RULE, "url": batch["url"],
                                "warc_path": batch["warc_path"], "run": self.run, "jaccard": jaccard, "diff": diff})


# --- DataFrame stages ---------------------------------------------------------------------------


def _url_key_udf():
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from thresher.pipeline.urls import normalized_url

    return F.udf(lambda url: normalized_url(url) if url and url.strip() else None, T.StringType())


@dataclasses.dataclass(frozen=True)
class _ReferenceKeys:
    """The references' committed keys as frames, each row with the `run` (Reference.run) it comes from."""

    docs: object  # doc_id, md5, url_key, fetch_time, run
    bands: object  # doc_id, band, key, run
    lines: object  # key_hash, prior: the references' kept occurrences of each edge line key, summed


def _reference_keys(spark, references: list[Reference]) -> _ReferenceKeys | None:
    from pyspark.sql import functions as F

    if not references:
        return None

    def union(table):
        return functools.reduce(lambda a, b: a.unionByName(b), [read_parts(spark, reference.stage_dir, table)
                                                      .withColumn("run", F.lit(reference.run)) for reference in references])

    lines = union(DEDUP_LINES_TABLE).groupBy("key_hash").agg(F.sum("count").cast("long").alias("prior"))
    return _ReferenceKeys(union(DEDUP_DOCS_TABLE), union(DEDUP_BANDS_TABLE), lines)


def _url_and_exact_dedup(docs, url_dedup: bool, references: _ReferenceKeys | None, output: StageOutput):
    """(the documents that no earlier copy displaces, with a url_key column; their keys: doc_id, md5, url_key,
    fetch_time; rejects). In this order: a reference keeps a document of the same MD5
    (exact_duplicate_of_reference), or of the same normalised URL (url_duplicate); then, among the rest,
    one document per normalised URL, the newest fetch (WARC-Date; a date that does not parse is older than any
    that does; ties: the smallest doc_id) kept (url_duplicate).
    A reference's copy is kept whatever its date: it is published already."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keyed = docs.withColumn("url_key", _url_key_udf()("url"))
    keys = write_scratch(keyed.select("doc_id", "md5", "url_key", "fetch_time"), output, "keys")
    verdicts = []  # (doc_id, rule, detail) frames, each of documents no earlier one names
    if references is not None:
        def kept_by_reference(column, rule):
            kept = references.docs.filter(F.col(column).isNotNull()).groupBy(column).agg(
                F.min(F.struct("doc_id", "run")).alias("kept"))
            return keys.join(kept, column).select(
                "doc_id", F.lit(rule).alias("rule"), F.format_string("kept %s in %s", "kept.doc_id", "kept.run").alias("detail"))

        verdicts.append(kept_by_reference("md5", EXACT_REFERENCE_RULE))
        if url_dedup:
            verdicts.append(kept_by_reference("url_key", URL_RULE).join(verdicts[0].select("doc_id"), "doc_id", "left_anti"))
    if url_dedup:
        rest = keys.filter(F.col("url_key").isNotNull())
        for earlier in verdicts:
            rest = rest.join(earlier.select("doc_id"), "doc_id", "left_anti")
        newest_first = Window.partitionBy("url_key").orderBy(
            F.try_to_timestamp(F.col("fetch_time")).desc_nulls_last(), F.col("fetch_time").desc_nulls_last(), "doc_id")
        ranked = rest.withColumn("rank", F.row_number().over(newest_first)).withColumn("kept", F.first("doc_id").over(newest_first))
        verdicts.append(ranked.filter(F.col("rank") > 1).select(
            "doc_id", F.lit(URL_RULE).alias("rule"), F.format_string("kept %s in this run", "kept").alias("detail")))
    if not verdicts:
        return keyed, keys, None
    dropped = write_scratch(functools.reduce(lambda a, b: a.unionByName(b), verdicts), output, "displaced")
    rejects = reject_rows(keyed.join(dropped, "doc_id"), STAGE, F.col("rule"), F.col("detail"))
    return keyed.join(dropped.select("doc_id"), "doc_id", "left_anti"), keys, rejects


def _line_dedup(docs, rules: RulesConfig, output: StageOutput, reference_lines=None):
    """(docs with trimmed text and lines_removed_dedup, line reject rows, the edge lines kept: doc_id, key_hash).

    `reference_lines` (key_hash, prior): occurrences the references kept, counted as earlier than any of
    this run's: a key's occurrence ranked r here (by doc_id, line_no) is removed when prior + r exceeds the limit.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    edges = write_scratch(docs.select(
        "doc_id", "url", "warc_path", F.explode(_edge_lines_udf(rules.line_dedup_edge_lines)("text")).alias("e")
    ).select("doc_id", "url", "warc_path", "e.line_no", "e.key", "e.line", F.xxhash64("e.key").alias("key_hash")),
        output, "edges")
    limit = rules.line_dedup_max_occurrences
    counts = edges.groupBy("key", "key_hash").count()
    if reference_lines is None:
        counts = counts.withColumn("prior", F.lit(0).cast("long"))
    else:
        counts = counts.join(reference_lines, "key_hash", "left").fillna(0, ["prior"])
    frequent = counts.filter(F.col("count") + F.col("prior") > limit).drop("key_hash")
    # Only lines over the limit are ranked; "first" = smallest (doc_id, line_no), whatever the partitioning.
    ranked = edges.join(frequent, "key").withColumn(
        "occurrence", F.row_number().over(Window.partitionBy("key").orderBy("doc_id", "line_no"))
    )
    removed = ranked.filter(F.col("occurrence") + F.col("prior") > limit)
    seen = F.format_string("line %d; seen %d times in edge lines", "line_no", "count")
    line_rejects = reject_rows(
        removed, STAGE, F.when(F.col("occurrence") > limit, LINE_DEDUP_RULE).otherwise(LINE_REFERENCE_RULE),
        F.when(F.col("prior") == 0, seen).otherwise(F.concat(seen, F.format_string(", %d more in references", "prior"))),
        F.col("line"))
    kept_lines = edges.join(removed.select("doc_id", "line_no"), ["doc_id", "line_no"], "left_anti").select("doc_id", "key_hash")
    per_doc = removed.groupBy("doc_id").agg(F.collect_list("line_no").alias("removed_lines"))
    trimmed = (
        docs.join(per_doc, "doc_id", "left")
        .withColumn("trim", _remove_lines_udf()("text", "removed_lines"))
        .withColumn("text", F.col("trim.text"))
        .withColumn("lines_removed_dedup", F.col("trim.removed"))
        .drop("trim", "removed_lines")
    )
    return trimmed, line_rejects, kept_lines


def _large_star(edges):
    from pyspark.sql import functions as F

    both = edges.select(F.col("a").alias("u"), F.col("b").alias("v")).unionByName(
        edges.select(F.col("b").alias("u"), F.col("a").alias("v"))
    )
    smallest = both.groupBy("u").agg(F.min("v").alias("m")).withColumn("m", F.least("u", "m"))
    linked = both.join(smallest, "u").filter(F.col("v") > F.col("u"))
    return _normalized(linked.select(F.col("v").alias("x"), F.col("m").alias("y")))


def _small_star(edges):
    from pyspark.sql import functions as F

    # Edges are stored with a < b, so each node b's smaller neighbours are the a's.
    lower = edges.select(F.col("b").alias("u"), F.col("a").alias("v"))
    smallest = lower.groupBy("u").agg(F.min("v").alias("m"))
    linked = lower.join(smallest, "u")
    return _normalized(
        linked.select(F.col("v").alias("x"), F.col("m").alias("y")).unionByName(
            smallest.select(F.col("u").alias("x"), F.col("m").alias("y"))
        )
    )


def _normalized(pairs):
    from pyspark.sql import functions as F

    return (
        pairs.filter(F.col("x") != F.col("y"))
        .select(F.least("x", "y").alias("a"), F.greatest("x", "y").alias("b"))
        .distinct()
    )


def _connected_components(edges, output: StageOutput) -> tuple[object, int]:
    """(doc_id, cluster) for every document in a component of more than one, cluster = its smallest
    doc_id; and the number of rounds. At convergence the graph is a set of stars around the minima.
    Each round's edges are written to the work directory, which cuts the lineage as a checkpoint would."""
    rounds = 0
    while True:
        rounds += 1
        updated = write_scratch(_small_star(_large_star(edges)), output, f"components-{rounds % 2}")
        if updated.exceptAll(edges).isEmpty() and edges.exceptAll(updated).isEmpty():
            edges = updated
            break
        edges = updated
        if rounds >= _MAX_COMPONENT_ROUNDS:
            raise RuntimeError(f"connected components did not converge in {rounds} rounds")
    return edges.selectExpr("b AS doc_id", "a AS cluster"), rounds


def _reference_duplicates(bands, reference_bands, rules: RulesConfig):
    """(doc_id, kept_doc_id, kept_run): the documents of `bands` sharing a band key with a reference document,
    each naming the smallest (doc_id, run) it shares one with. A bucket that holds more than
    rules.minhash_max_bucket documents, references' and this run's together, links nothing (as in one run).
    One scan of the references' band keys and a join on (band, key): no pair is compared."""
    from pyspark.sql import functions as F

    reference_buckets = reference_bands.groupBy("band", "key").agg(
        F.count("*").alias("reference_size"), F.min(F.struct("doc_id", "run")).alias("kept"))
    here = bands.groupBy("band", "key").agg(F.count("*").alias("size"))
    linked = (bands.join(reference_buckets, ["band", "key"]).join(here, ["band", "key"])
              .filter(F.col("reference_size") + F.col("size") <= rules.minhash_max_bucket))
    return linked.groupBy("doc_id").agg(F.min("kept").alias("kept")).select(
        "doc_id", F.col("kept.doc_id").alias("kept_doc_id"), F.col("kept.run").alias("kept_run"))


def _minhash(docs, rules: RulesConfig, output: StageOutput, reference_bands=None):
    """(cluster labels of duplicates: doc_id, cluster; statistics dict; duplicates of the references' documents:
    doc_id, kept_doc_id, kept_run, or None without references; the band keys of the documents neither drops).

    A document that duplicates a reference's is dropped before the run's own documents are clustered, so it
    links none of them together."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    band_schema = T.StructType(
        [
            T.StructField("doc_id", T.StringType(), False),
            T.StructField("band", T.IntegerType(), False),
            T.StructField("key", T.LongType(), False),
        ]
    )
    all_bands = write_scratch(docs.select("doc_id", "text", "lang").mapInPandas(_BandKeys(rules), band_schema), output, "bands")
    bands, reference_dups = all_bands, None
    if reference_bands is not None:
        reference_dups = write_scratch(_reference_duplicates(all_bands, reference_bands, rules), output, "reference_dups")
        bands = all_bands.join(reference_dups.select("doc_id"), "doc_id", "left_anti")
    buckets = bands.groupBy("band", "key").agg(F.count("*").alias("size"), F.min("doc_id").alias("root"))
    giant = buckets.filter(F.col("size") > rules.minhash_max_bucket)
    shared = buckets.filter((F.col("size") > 1) & (F.col("size") <= rules.minhash_max_bucket))
    edges = (
        bands.join(shared, ["band", "key"])
        .filter(F.col("doc_id") != F.col("root"))
        .select(F.col("root").alias("a"), F.col("doc_id").alias("b"))
        .distinct()
    )
    labels, rounds = _connected_components(edges, output)
    labels = write_scratch(labels, output, "labels")
    sizes = labels.groupBy("cluster").count().groupBy((F.col("count") + 1).alias("size")).count().collect()
    giant_docs = bands.join(giant.select("band", "key"), ["band", "key"]).select("doc_id").distinct().count()
    stats = {
        "minhash_documents_hashed": all_bands.select("doc_id").distinct().count(),
        "minhash_component_rounds": rounds,
        "minhash_giant_buckets": giant.count(),
        "minhash_documents_in_giant_buckets": giant_docs,
        "minhash_cluster_sizes": {str(row["size"]): row["count"] for row in sorted(sizes, key=lambda r: r["size"])},
    }
    kept_bands = bands.join(labels.select("doc_id"), "doc_id", "left_anti")
    return labels, stats, reference_dups, kept_bands


def _cluster_sizes(labels):
    """(cluster, cluster_size) per cluster of more than one document; labels name its other members."""
    from pyspark.sql import functions as F

    return labels.groupBy("cluster").agg((F.count("*") + 1).cast("int").alias("cluster_size"))


def _cluster_table(kept, labels, rules: RulesConfig, run: str):
    """CLUSTERS rows: every member of every cluster of more than one document, the kept one included."""
    from pyspark.sql import functions as F

    members = labels.unionByName(labels.select(F.col("cluster").alias("doc_id"), "cluster").distinct())
    texts = kept.select("doc_id", "url", "warc_path", "text", "lang")
    kept_texts = kept.select(F.col("doc_id").alias("cluster"), F.col("text").alias("kept_text"))
    rows = members.join(_cluster_sizes(labels), "cluster").join(texts, "doc_id").join(kept_texts, "cluster")
    return rows.mapInPandas(_ClusterMembers(rules, run), to_spark_schema(CLUSTERS))


def _conform(frame, arrow_schema):
    from pyspark.sql import functions as F

    spark_schema = to_spark_schema(arrow_schema)
    return frame.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in spark_schema.fields])


# The files the heuristics' tasks open, as (section, field) of RulesConfig.
_FILES = (("zh", "stop_words_file"), ("spam", "terms_file"), ("spam", "patterns_file"),
          ("spam", "prompt_lines_file"), ("c4", "policy_lines_file"))


def resolved_rules_config(config: Config) -> RulesConfig:
    """The rules section with every file path absolute (Config.resolve_path), as the tasks open them."""
    sections = {name: getattr(config.rules, name) for name, _ in _FILES}
    for name, field in _FILES:
        sections[name] = dataclasses.replace(sections[name], **{field: config.resolve_path(getattr(sections[name], field))})
    return dataclasses.replace(config.rules, **sections)


def executor_paths(config: Config) -> list[tuple[str, str]]:
    """What stage 2's tasks open besides INPUT and --output: the rules' files and the lid model."""
    rules = resolved_rules_config(config)
    files = [(f"rules.{name}.{field}", getattr(getattr(rules, name), field)) for name, field in _FILES]
    files += [(f"rules.dedup.references[{index}]", config.resolve_path(location))
              for index, location in enumerate(config.rules.dedup.references)]
    return [*files, ("prepare.lid_model_path", config.resolve_path(config.prepare.lid_model_path))]


def run_rules(spark, input_dir: str, output_dir: str, config: Config, fields: FieldMapping = DEFAULT_FIELDS) -> dict:
    """Run stage 2 on `input_dir` (stage 1 output or any documents input) into `output_dir`; returns the stats written."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from thresher.pipeline.rules.heuristics import load_resources

    rules = resolved_rules_config(config)
    if rules.minhash_bands * rules.minhash_rows > rules.minhash_num_perm:
        raise ValueError(
            f"rules.minhash_bands x rules.minhash_rows = {rules.minhash_bands * rules.minhash_rows} "
            f"exceeds rules.minhash_num_perm = {rules.minhash_num_perm}"
        )
    resources = load_resources(rules, str)  # resolved already; missing word lists fail here, before any Spark work
    stage_filters(rules, resources)  # a custom filter that cannot be made: one line here
    source = resolve_source(input_dir, with_limits(fields, config))
    references = reference_stages(config)
    output = StageOutput(output_dir)
    output.begin()
    timings = {}

    lid_model = config.resolve_path(config.prepare.lid_model_path)  # the Chinese rules and MinHash need lang
    rejects_dir = fresh_rejects_dir(output)
    own = stage_kept_fields(source, PREPARED, config, STAGE)  # the input's own columns, passed on unchanged
    own_columns = [field.name for field in own]
    read = documents_frame(spark, source, extend(PREPARED, *own), lid_model_path=lid_model, scratch=(output, "input"),
                           rejects_dir=rejects_dir, stage=STAGE)
    docs = read.select(*PREPARED.names)  # the input's own columns join the survivors again at the end
    input_rejects = parse_rejects(spark, rejects_dir)  # JSONL lines that are no document
    reference_keys = _reference_keys(spark, references)
    phase = time.perf_counter()
    fresh, keys, displaced_rejects = _url_and_exact_dedup(docs, rules.dedup.url, reference_keys, output)
    timings["url_and_reference_exact_dedup_s"] = round(time.perf_counter() - phase, 3)
    phase = time.perf_counter()
    trimmed, line_rejects, kept_lines = _line_dedup(fresh, rules, output,
                                                    None if reference_keys is None else reference_keys.lines)
    rule_stats_dir = output.work_location("rule_stats")
    judge = _HeuristicJudge(rules, rule_stats_dir)
    judged_schema = T.StructType(
        [*trimmed.schema.fields, T.StructField("drop_rule", T.StringType()), T.StructField("drop_detail", T.StringType())]
    )
    judged = write_scratch(trimmed.mapInPandas(judge, judged_schema), output, "judged")
    line_rejects = write_scratch(line_rejects, output, "line_rejects")
    timings["line_dedup_and_heuristics_s"] = round(time.perf_counter() - phase, 3)
    rule_stats = _read_rule_stats(rule_stats_dir, rules, resources)
    for rule, counted in rule_stats.items():  # a check some documents did not get: say so, not only in stats.json
        if SKIPPED in rule:
            print(f"rules: warning: {rule}: {counted.seen} documents not checked", file=sys.stderr)
    kept = judged.filter(F.col("drop_rule").isNull())

    phase = time.perf_counter()
    labels, minhash_stats, reference_dups, kept_bands = _minhash(
        kept, rules, output, None if reference_keys is None else reference_keys.bands)
    timings["minhash_s"] = round(time.perf_counter() - phase, 3)

    phase = time.perf_counter()
    clustered = kept.join(labels, "doc_id", "left")
    if reference_dups is None:
        clustered = clustered.withColumn("kept_doc_id", F.lit(None).cast("string"))
    else:
        clustered = clustered.join(reference_dups, "doc_id", "left")
    sizes = _cluster_sizes(labels).withColumnRenamed("cluster", "doc_id")
    survivors = (clustered.filter(F.col("cluster").isNull() & F.col("kept_doc_id").isNull())
                 .withColumn("minhash_cluster", F.col("doc_id"))
                 .join(sizes, "doc_id", "left").withColumn("minhash_cluster_size", F.coalesce("cluster_size", F.lit(1))))
    documents = _conform(survivors, RULES)
    if own_columns:  # each doc_id is one document (documents_frame refuses repeated ids)
        documents = documents.join(read.select("doc_id", *own_columns), "doc_id").select(*RULES.names, *own_columns)
    documents_written = write_parts(documents.orderBy("doc_id"), output, "documents")

    heuristic_rejects = reject_rows(judged.filter(F.col("drop_rule").isNotNull()), STAGE, F.col("drop_rule"),
                                    F.col("drop_detail"))
    duplicate_rejects = reject_rows(clustered.filter(F.col("cluster").isNotNull()), STAGE, MINHASH_RULE,
                                    F.concat(F.lit("kept "), F.col("cluster")))
    rejects = (heuristic_rejects.unionByName(duplicate_rejects).unionByName(line_rejects)
               .unionByName(_conform(input_rejects, REJECT)))
    if reference_dups is not None:
        rejects = rejects.unionByName(reject_rows(
            clustered.filter(F.col("kept_doc_id").isNotNull()), STAGE, FUZZY_REFERENCE_RULE,
            F.format_string("kept %s in %s", "kept_doc_id", "kept_run")))
    if displaced_rejects is not None:
        rejects = rejects.unionByName(displaced_rejects)
    write_parts(rejects.orderBy("doc_id", "rule", "detail"), output, "rejects")
    write_parts(_cluster_table(kept, labels, rules, input_dir).orderBy("cluster_id", "doc_id"), output, "clusters")
    timings["write_s"] = round(time.perf_counter() - phase, 3)

    written_docs = read_written(spark, output, "documents")
    phase = time.perf_counter()
    # The output's ids read once (a read of documents/ brings their texts too), for the three tables' semi-joins.
    output_ids = write_scratch(written_docs.select("doc_id"), output, "output_ids")
    _write_dedup_keys(output_ids, keys, kept_bands, kept_lines, output)
    timings["dedup_keys_s"] = round(time.perf_counter() - phase, 3)
    written_rejects = read_written(spark, output, "rejects")
    by_rule = {row["rule"]: row["count"] for row in written_rejects.groupBy("rule").count().collect()}
    # Line-dedup removals in the documents that survive (lines_removed also counts dropped documents').
    lines_removed_in_documents_out = written_docs.agg(F.sum("lines_removed_dedup")).first()[0] or 0
    details = {
        "documents_rejected": sum(n for rule, n in by_rule.items() if not is_line_rule(rule)),
        "lines_removed": sum(n for rule, n in by_rule.items() if is_line_rule(rule)),
        "lines_removed_in_documents_out": lines_removed_in_documents_out,
        "documents_with_lines_removed": judged.filter(F.col("lines_removed_dedup") > 0).count(),
        **minhash_stats,
        "references": [reference.run for reference in references],
        DEDUP_KEYS_DETAIL: dedup_key_settings(rules),
        "timings": timings,
    }
    documents_read = docs.count()
    judged_count = next(iter(rule_stats.values())).seen  # the first rule sees every document no earlier copy displaced
    displaced = by_rule.get(URL_RULE, 0) + by_rule.get(EXACT_REFERENCE_RULE, 0)
    if judged_count + displaced != documents_read:
        raise RuntimeError(f"stage 2 lost track of the heuristics' counts: {judged_count} documents judged and "
                           f"{displaced} displaced by earlier copies of {documents_read}; output left uncommitted in {output_dir}")
    documents_in = documents_read + by_rule.get(INPUT_PARSE_ERROR, 0)  # unparsable lines are input records too
    stats = output.commit_stats(STAGE, config, [input_dir], documents_in, sum(part.rows for part in documents_written),
                                dict(sorted(by_rule.items())), details,
                                # Per heuristic family, in the order they run: documents seen, dropped, seconds.
                                rules=rule_stats_report(rule_stats))
    return stats


def _write_dedup_keys(output_ids, keys, kept_bands, kept_lines, output: StageOutput) -> None:
    """Commit what a later run reads to dedup against this one's documents (schemas.dedup_keys), so they
    are never hashed again: their MD5s and URL keys, their band keys, and their edge lines' counts."""
    from pyspark.sql import functions as F

    docs = keys.join(output_ids, "doc_id", "left_semi")
    write_parts(_conform(docs, DEDUP_DOCS).orderBy("doc_id"), output, DEDUP_DOCS_TABLE)
    write_parts(_conform(kept_bands.join(output_ids, "doc_id", "left_semi"), DEDUP_BANDS).orderBy("doc_id", "band"),
                output, DEDUP_BANDS_TABLE)
    lines = kept_lines.join(output_ids, "doc_id", "left_semi").groupBy("key_hash").agg(F.count("*").alias("count"))
    write_parts(_conform(lines, DEDUP_LINES).orderBy("key_hash"), output, DEDUP_LINES_TABLE)


def reference_stages(config: Config) -> list[Reference]:
    """The configured references (rules.dedup.references, relative to the config file's directory), each a
    committed rules stage whose keys match this run's settings; ConfigError (one line) naming the one that is not."""
    return resolve_references([config.resolve_path(location) for location in config.rules.dedup.references], config.rules)


def _check(args: argparse.Namespace, config: Config) -> None:
    """Before Spark starts: the custom filters made, the input's own columns against thresher's, the references."""
    from thresher.pipeline.rules.heuristics import load_resources

    rules = resolved_rules_config(config)
    stage_filters(rules, load_resources(rules, str))
    reference_stages(config)
    stage_kept_fields(resolve_source(args.input, with_limits(fields_from_args(args), config)), PREPARED, config, STAGE)


def _work(spark, args: argparse.Namespace, config: Config) -> dict:
    return run_rules(spark, args.input, args.output, config, fields_from_args(args))


JOB = StageJob(STAGE, "thresher rules", __doc__, _arguments, "rules.gopher_quality.min_words=30", _work, _check,
               documents_input="input", executor_paths=lambda args, config: executor_paths(config))


if __name__ == "__main__":
    sys.exit(JOB.main())
