"""Stage 3a job, tag: every configured tagger scores every stage 2 document; scores become columns.

Reads a committed stage 2 output (documents/ Parquet), runs the taggers of config `tag.taggers` in
batches inside Spark tasks (mapInArrow; each Python worker loads each model once), and writes
OUTPUT/documents/ (the stage 2 columns plus each tagger's, see classifiers.tagging; sorted by
doc_id), OUTPUT/rejects/ (the lines of a user's JSONL input that are no JSON object; rule
input_parse_error), OUTPUT/taggers.json (schemas.tags: per tagger its kind, top_k, labels, columns
and model; what select reads) and OUTPUT/stats.json, which records per tagger its model directory,
a content hash of the model files, its labels and held-out metrics, and score histograms. No
document is dropped and `text` is unchanged: thresholds live in `thresher select`. A pii tagger
(kind pii) runs no model: it writes the personal information pipeline.pii finds as spans, which
select replaces. With benchmarks named in config `decontam`, the decontam tagger (pipeline.decontam)
adds `decontam_hits` and `decontam_spans`; the benchmarks are read and indexed on the driver (a
missing file or field is one line before Spark starts) and the index travels with the tasks;
stats.json's details.decontam counts the documents and items hit per benchmark.

INPUT and OUTPUT may be local paths every node sees or any object store URL (s3://...): the input is
read and every table, the scored intermediate included, written as parts from the Python workers
(pipeline.stagedir.parts), so the JVM needs no connector for the store, and nothing is renamed.

Models: each tagger's `model_dir` (absolute, or relative to config `tag.model_dir` / --models-dir),
a local path or a URL. The driver checks each model from a local copy (pipeline.locations.local_copy)
before Spark starts, so a model that cannot be read is one line; the tasks are handed the URL and
each node fetches it once into its cache. Make the defaults with
`thresher classifiers bootstrap --input CRAWL_OR_STAGE_DIR --output MODELS_DIR`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

import pyarrow as pa

from thresher.classifiers.base import (
    ModelNotFoundError,
    UnusableModelError,
    check_model,
    model_digest,
    read_manifest,
    read_metrics,
)
from thresher.classifiers.clutter import SHIPPED_MODEL, shipped_model_dir
from thresher.classifiers.tagging import DecontamStep, Tagger, check_tagger, custom_columns, custom_tagger, tag_batches
from thresher.jobs.documents_input import (
    INPUT_HELP,
    add_field_arguments,
    count_skipped_lines,
    documents_frame,
    fields_from_args,
    fresh_rejects_dir,
    parse_rejects,
    stage_kept_fields,
    with_limits,
)
from thresher.jobs.stage_job import StageJob
from thresher.pipeline.config import Config, ConfigError, PluginConfig
from thresher.pipeline.decontam import Benchmark, benchmarks_digest, load_index, read_items
from thresher.pipeline.decontam import Settings as DecontamSettings
from thresher.pipeline.locations import is_url, local_copy, resolve_location
from thresher.pipeline.stagedir import StageOutput, crash_point, read_commit
from thresher.pipeline.stagedir.documents import DEFAULT_FIELDS, INPUT_PARSE_ERROR, FieldMapping, resolve_source
from thresher.pipeline.stagedir.parts import read_parquet_urls, write_parts, write_scratch
from thresher.schemas import extend, to_spark_schema
from thresher.schemas.documents import RULES
from thresher.schemas.tags import (
    DECONTAM,
    MODEL_FREE_KINDS,
    TAGGERS_FILE,
    DeclaredTagger,
    hits_column,
    label_column,
    line_scores_column,
    score_column,
    tagged_schema,
    taggers_json,
)

STAGE = "tag"
HISTOGRAM_BINS = 10  # score histograms in the stats and the report: [0, 0.1), ..., [0.9, 1.0]


def add_stage3_arguments(parser: argparse.ArgumentParser, output_help: str) -> None:
    """INPUT, --output, the field mapping, --models-dir and --partitions: what `tag` and `models` share."""
    parser.add_argument("input", metavar="INPUT", help=f"{INPUT_HELP}; usually stage 2 (rules) output")
    parser.add_argument("--output", required=True, help=output_help)
    add_field_arguments(parser)
    parser.add_argument(
        "--models-dir",
        help="base directory of relative tagger model_dirs (default: config tag.model_dir); "
        "make one with `thresher classifiers bootstrap`",
    )
    parser.add_argument("--partitions", type=int, help="repartition the input into this many tasks (default: as read)")


def models_base(config: Config, models_dir: str | None = None) -> str:
    """The base of relative tagger model_dirs: an absolute local path or a URL."""
    return resolve_location(models_dir) if models_dir else config.resolve_path(config.tag.model_dir)


def _model_location(base: str, model_dir: str) -> str:
    """`model_dir` as the tasks are handed it: a URL or absolute path as given, a relative one below `base`."""
    if is_url(model_dir) or os.path.isabs(model_dir.removeprefix("file://")):
        return resolve_location(model_dir)
    if is_url(base):
        return f"{base.rstrip('/')}/{model_dir.removeprefix('./')}"
    return os.path.normpath(os.path.join(base, model_dir))


def local_model(tagger: Tagger) -> str:
    """A local path holding `tagger`'s model (its directory, or a copy of the one at a URL, fetched once per
    version into this machine's cache); a URL that holds nothing is the tagger's ModelNotFoundError."""
    try:
        return local_copy(tagger.model_dir)
    except FileNotFoundError as exc:
        raise ModelNotFoundError(f"no classifier at {tagger.model_dir} ({exc})") from None


def executor_paths(config: Config, models_dir: str | None = None) -> list[tuple[str, str]]:
    """What tag's tasks open besides INPUT and --output: every enabled tagger's model directory."""
    return [(f"tag.taggers.{tagger.name}.model_dir", tagger.model_dir) for tagger in resolve_taggers(config, models_dir)
            if tagger.kind not in MODEL_FREE_KINDS]


def resolve_taggers(config: Config, models_dir: str | None = None) -> list[Tagger]:
    """The enabled taggers (a non-empty model_dir, or a model-free kind) with absolute model paths, checked;
    no model is read."""
    base = models_base(config, models_dir)
    taggers = []
    for name, spec in config.tag.taggers.items():
        if not spec.enabled or not (spec.model_dir or spec.kind in MODEL_FREE_KINDS):
            continue
        if not name.isidentifier():
            raise ConfigError(f"tag.taggers.{name}: a tagger name must be a plain identifier (it names columns)")
        if spec.kind in MODEL_FREE_KINDS:
            if spec.model_dir:
                raise ConfigError(f"tag.taggers.{name}.model_dir: a {spec.kind} tagger runs rules, not a model; leave it empty")
            taggers.append(Tagger(name, kind=spec.kind))
            continue
        path = str(shipped_model_dir()) if spec.model_dir == SHIPPED_MODEL else _model_location(base, spec.model_dir)
        tagger = Tagger(name, path, kind=spec.kind, top_k=spec.top_k, input=spec.input, line_label=spec.line_label)
        try:
            check_tagger(tagger)
        except ValueError as exc:
            raise ConfigError(f"tag.taggers.{name}: {exc}") from exc
        taggers.append(tagger)
    if not taggers and not config.decontam.benchmarks and not config.tag.custom_taggers:
        raise ConfigError("tag.taggers: no tagger has a model_dir; name at least one model (or a decontam benchmark, "
                          "or a tag.custom_taggers entry)")
    if config.decontam.benchmarks and DECONTAM in {t.name for t in taggers}:
        raise ConfigError(f"tag.taggers.{DECONTAM}: the name of the benchmark decontamination tagger; rename the tagger")
    clash = {c.name for t in taggers for c in t.columns()} & set(RULES.names)
    if clash:
        raise ConfigError(f"tag.taggers: tagger columns {sorted(clash)} clash with stage 2 columns; rename the tagger")
    return taggers


def custom_taggers(config: Config, taggers: Sequence[DeclaredTagger]) -> tuple[list[tuple[PluginConfig, str]], list[pa.Field]]:
    """The config's own taggers (tag.custom_taggers) as the tasks make them, (entry, key) each, and the
    columns they declare, in order; each made once here, so one that cannot be made, or a column named as
    another tagger's or a stage 2 column, is one line before Spark starts."""
    custom = [(spec, f"tag.custom_taggers[{index}]") for index, spec in enumerate(config.tag.custom_taggers)]
    taken = set(tagged_schema(taggers).names)
    fields = []
    for spec, key in custom:
        for field in custom_columns(custom_tagger(spec, key)):
            if field.name in taken:
                raise ConfigError(f"{key}: {spec.class_path} declares column {field.name!r}, a column of stage 2 or "
                                  "another tagger: name it otherwise")
            taken.add(field.name)
            fields.append(field)
    return custom, fields


def configured_taggers(config: Config, models_dir: str | None = None, digests: bool = True) -> list[Tagger]:
    """The taggers as tasks run them, each declaring its model's labels, content hash (with `digests`),
    held-out metrics and whether its labels were weak (bootstrapped). A missing model is one clear line;
    a transformers tagger carries config `transformers` (its inference settings over the model's own),
    checked here against the model's stored settings."""
    declared = []
    for tagger in resolve_taggers(config, models_dir):
        if tagger.kind in MODEL_FREE_KINDS:
            declared.append((tagger, {"backend": "rules"}))
            continue
        try:
            local = local_model(tagger)
            with _named_as_given(tagger, local):
                manifest = read_manifest(local)
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(
                f"tag.taggers.{tagger.name}: no model at {tagger.model_dir}. Make the default models with "
                f"`thresher classifiers bootstrap --input CRAWL_OR_STAGE_DIR --output {models_base(config, models_dir)}` "
                f"(or pass --models-dir / --set tag.taggers.{tagger.name}.model_dir=DIR)"
            ) from exc
        if tagger.kind == "lines" and tagger.line_label not in manifest["labels"]:
            raise ConfigError(
                f"tag.taggers.{tagger.name}.line_label: {tagger.line_label!r} is not a label of {tagger.model_dir} "
                f"({manifest['labels']})"
            )
        metrics = read_metrics(local)
        declared.append((replace(
            tagger,
            labels=tuple(manifest["labels"]),
            model_hash=model_digest(local) if digests else None,
            heldout=metrics.get("heldout", {}),
            weak_labels=any("weak_labels" in str(source) for source in metrics.get("data", [])),
        ), manifest))
    overrides = tuple(sorted(config.transformers.overrides().items()))
    taggers = []
    for tagger, manifest in declared:  # after every tagger's missing-model check above
        if manifest["backend"] == "transformers" and overrides:
            from thresher.classifiers.transformers_backend import stored_settings

            try:
                stored_settings(manifest).replace(dict(overrides))
            except ValueError as exc:
                raise ConfigError(f"transformers: {exc} (tagger {tagger.name}, model {tagger.model_dir})") from exc
            tagger = replace(tagger, inference=overrides)
        taggers.append(tagger)
    return taggers


def configured_benchmarks(config: Config) -> list[Benchmark]:
    """The benchmarks of config `decontam.benchmarks`, their paths resolved (local paths, read on the driver)."""
    benchmarks = []
    for name, spec in config.decontam.benchmarks.items():
        key = f"decontam.benchmarks.{name}"
        if not spec.path or not spec.fields:
            raise ConfigError(f"{key}: name its path and the fields holding an item's text")
        path = config.resolve_path(spec.path)
        if is_url(path):
            raise ConfigError(f"{key}.path: {path}: benchmarks are read on the driver; give a local path")
        benchmarks.append(Benchmark(name, path, tuple(spec.fields), spec.id_field))
    return benchmarks


def decontam_settings(config: Config) -> DecontamSettings:
    return DecontamSettings(**{f.name: getattr(config.decontam, f.name) for f in dataclasses.fields(DecontamSettings)})


def check_benchmarks(config: Config) -> None:
    """Every configured benchmark file read through (a missing file or field is one line, before Spark starts)."""
    for benchmark in configured_benchmarks(config):
        for _ in read_items(benchmark):
            pass


def decontam_step(config: Config) -> DecontamStep | None:
    """The decontam tagger with its benchmark index, or None when no benchmark is configured."""
    benchmarks = configured_benchmarks(config)
    if not benchmarks:
        return None
    settings = decontam_settings(config)
    tagger = DeclaredTagger(DECONTAM, kind=DECONTAM, top_k=1, labels=tuple(b.name for b in benchmarks),
                            model_hash=benchmarks_digest(benchmarks, settings))
    return DecontamStep(tagger, load_index(benchmarks, settings))


def _decontam_details(tagged, step: DecontamStep) -> dict[str, Any]:
    """What tag's stats keep of the decontam tagger: its benchmarks and settings, the index, and per benchmark
    the documents and items hit."""
    from pyspark.sql import functions as F

    hits = tagged.select(F.explode(hits_column(step.tagger.name)).alias("hit"))
    rows = hits.groupBy("hit.benchmark").agg(F.count("*").alias("documents"),
                                             F.size(F.array_distinct(F.flatten(F.collect_list("hit.item_ids")))).alias("items")).collect()
    found = {row["benchmark"]: row for row in rows}
    index = step.index
    return {
        "settings": dataclasses.asdict(index.settings),
        "index": {"ngrams": len(index.keys), "bytes": index.nbytes, "boilerplate_ngrams_dropped": index.dropped_common,
                  "short_lengths": [list(pair) for pair in index.short_lengths]},
        "benchmarks": {name: {"items": index.counts[name],
                              "documents_hit": found[name]["documents"] if name in found else 0,
                              "items_hit": found[name]["items"] if name in found else 0} for name in index.benchmarks},
    }


def tagger_record(tagger: Tagger) -> dict[str, Any]:
    """What tag's stats keep of a tagger (the report shows it): its declaration, how it ran, its model's backend
    (`rules` for a model-free kind)."""
    backend = "rules" if tagger.kind in MODEL_FREE_KINDS else read_manifest(local_model(tagger))["backend"]
    return {**asdict(tagger), "labels": list(tagger.labels), "inference": dict(tagger.inference), "backend": backend}


def describe_models(taggers: list[Tagger]) -> list[str]:
    """One console line per tagger: its model and held-out figures, flagging bootstrapped (weak) models."""
    from thresher.pipeline.figures import figure_text

    lines = []
    for tagger in taggers:
        if tagger.kind in MODEL_FREE_KINDS:
            lines.append(f"[thresher] tagger {tagger.name}: {tagger.kind} rules, no model")
            continue
        heldout = tagger.heldout
        weak = " (bootstrapped from weak labels: a rough default; train your own with `thresher classifiers train`)" if tagger.weak_labels else ""
        lines.append(f"[thresher] tagger {tagger.name}: {tagger.model_dir} held-out {figure_text(heldout)}{weak}")
        lines.extend(f"[thresher] warning: tagger {tagger.name}: {warning}" for warning in heldout.get("warnings", []))
    return lines


@dataclasses.dataclass(frozen=True)
class EarlierTags:
    """A committed tag output whose columns a rerun keeps for every tagger but those in `retag` (added,
    changed or removed), joined to the retagged columns by doc_id: the same table a full run writes."""

    retag: frozenset[str]
    parts: tuple[str, ...]  # its documents parts, relative to the stage directory
    schema: dict[str, Any]  # their Spark schema (jsonValue)


def earlier_tags(output_dir: str, retag: set[str]) -> EarlierTags | None:
    """The committed tag output at `output_dir` as an EarlierTags (read before it is reopened); None where its
    marker recorded no schema."""
    commit = read_commit(output_dir)
    schema = commit.schema("documents")
    return EarlierTags(frozenset(retag), tuple(part.name for part in commit.parts("documents")), schema) if schema else None


def run_tag(
    spark, input_dir: str, output_dir: str, config: Config, models_dir: str | None = None, partitions: int | None = None,
    fields: FieldMapping = DEFAULT_FIELDS, earlier: EarlierTags | None = None,
) -> dict:
    """Tag `input_dir` into `output_dir`; with `earlier` (the same directory's last commit), only the taggers it
    names run and every other column comes from it."""
    taggers = configured_taggers(config, models_dir)
    decontam = decontam_step(config)
    declared = [*taggers, *([decontam.tagger] if decontam else [])]
    custom, custom_fields = custom_taggers(config, declared)
    source = resolve_source(input_dir, with_limits(fields, config))
    schema = extend(tagged_schema(declared), *custom_fields)
    own = stage_kept_fields(source, RULES, config, STAGE, set(schema.names))  # the input's own columns, passed on
    schema = extend(schema, *own)
    retagged = [t for t in taggers if earlier is None or t.name in earlier.retag]
    if earlier is not None:
        run_schema = extend(tagged_schema(retagged), *own)
        kept = [name for name in schema.names if name not in run_schema.names]
        earlier_names = {field["name"] for field in earlier.schema["fields"]}
        if not set(kept) <= earlier_names:  # not a column set a full run would leave: tag with every tagger
            earlier, retagged = None, taggers
        else:
            print(f"[thresher] tag: tagging with {', '.join(t.name for t in retagged) or 'no tagger'}; the other "
                  f"taggers' columns kept from the last commit ({len(kept)} columns)", file=sys.stderr)
    check_models(retagged)
    for line in describe_models(retagged):
        print(line, file=sys.stderr)
    out = StageOutput(output_dir)
    out.begin(keep=earlier.parts if earlier else ())
    started = time.perf_counter()
    # Columns stage 2 did not write (or a user's input lacks) are null.
    rejects_dir = fresh_rejects_dir(out)
    documents = documents_frame(spark, source, extend(RULES, *own), rejects_dir=rejects_dir, stage=STAGE)
    missing_columns = [name for name in RULES.names if name not in source.columns]
    if partitions:
        documents = documents.repartition(partitions, "doc_id")
    if earlier is None:
        scored = documents.mapInArrow(
            functools.partial(tag_batches, taggers=taggers, batch_size=config.tag.batch_size, custom=custom, decontam=decontam),
            to_spark_schema(schema))
    else:
        from pyspark.sql.types import StructType

        fresh = documents.mapInArrow(functools.partial(tag_batches, taggers=retagged, batch_size=config.tag.batch_size),
                                     to_spark_schema(run_schema))
        kept_columns = read_parquet_urls(spark, [out.location(name) for name in earlier.parts],
                                         StructType.fromJson(earlier.schema)).select("doc_id", *kept)
        scored = fresh.join(kept_columns, "doc_id").select(*schema.names)
    tagged = write_scratch(scored, out, "tagged")  # the models run once, whatever reads the scores
    tag_seconds = time.perf_counter() - started
    crash_point("tag:scored")
    written = write_parts(tagged.orderBy("doc_id"), out, "documents")
    write_parts(parse_rejects(spark, rejects_dir).orderBy("warc_path", "detail"), out, "rejects")
    out.put_file(TAGGERS_FILE, taggers_json(declared))
    skipped = count_skipped_lines(rejects_dir, STAGE)
    documents_out = sum(part.rows for part in written)
    details = {
        "missing_input_columns": missing_columns,
        "taggers": [tagger_record(t) for t in taggers],  # a list: tagger order is column order
        "custom_taggers": [{"class_path": spec.class_path, "args": spec.args,
                            "columns": [field.name for field in custom_columns(custom_tagger(spec, key))]}
                           for spec, key in custom],
        "own_columns": [field.name for field in own],  # the input's own, passed on unchanged
        "labels": {t.name: _label_counts(tagged, t) for t in taggers if t.kind == "document"},
        "score_histograms": {t.name: _histogram(tagged, t) for t in taggers if t.kind not in MODEL_FREE_KINDS},
    }
    if decontam:
        details[DECONTAM] = _decontam_details(tagged, decontam)
    crash_point("tag:before_commit")
    rejects_by_rule = {INPUT_PARSE_ERROR: skipped} if skipped else {}
    # unparsable lines are input records too
    return out.commit_stats(STAGE, config, [resolve_location(input_dir)], documents_out + skipped, documents_out,
                            rejects_by_rule, details,
                            phases={"tagging": tag_seconds})


def _label_counts(tagged, tagger: Tagger) -> dict[str, int]:
    rows = tagged.groupBy(label_column(tagger.name)).count().collect()
    return dict(sorted((str(row[0]), row["count"]) for row in rows))


def _histogram(tagged, tagger: Tagger) -> list[int]:
    """Documents (lines, for a lines tagger) per score bin of width 1/HISTOGRAM_BINS."""
    from pyspark.sql import functions as F

    if tagger.kind == "lines":
        scores = tagged.select(F.explode(line_scores_column(tagger.name)).alias("score")).filter(F.col("score").isNotNull())
    else:
        scores = tagged.select(F.col(score_column(tagger.name)).alias("score"))
    bins = F.least(F.floor(F.col("score") * HISTOGRAM_BINS), F.lit(HISTOGRAM_BINS - 1)).cast("int")
    counts = dict(scores.groupBy(bins.alias("bin")).count().collect())
    return [counts.get(i, 0) for i in range(HISTOGRAM_BINS)]


def check_models(taggers: list[Tagger]) -> None:
    """Every tagger's model loaded (or its files read) once on the driver, from a local copy where it is at a
    URL: a broken model is one line here, not an error in every Spark task."""
    for tagger in taggers:
        if tagger.kind in MODEL_FREE_KINDS:
            continue
        local = local_model(tagger)
        with _named_as_given(tagger, local):
            check_model(local)


@contextlib.contextmanager
def _named_as_given(tagger: Tagger, local: str):
    """A model error about the local copy of a model at a URL names the URL instead."""
    try:
        yield
    except UnusableModelError as exc:
        if local == tagger.model_dir:
            raise
        raise UnusableModelError(str(exc).replace(local, tagger.model_dir)) from None


def check_tag(args: argparse.Namespace, config: Config) -> list[Tagger]:
    """Before Spark starts: the models, the custom taggers and the input's own columns; the taggers."""
    taggers = configured_taggers(config, args.models_dir, digests=False)
    check_models(taggers)
    check_benchmarks(config)
    written = set(tagged_schema(taggers).names) | {field.name for field in custom_taggers(config, taggers)[1]}
    if config.decontam.benchmarks:
        written |= {field.name for field in DeclaredTagger(DECONTAM, kind=DECONTAM).columns()}
    stage_kept_fields(resolve_source(args.input, with_limits(fields_from_args(args), config)), RULES, config, STAGE, written)
    return taggers


def _check(args: argparse.Namespace, config: Config) -> None:
    check_tag(args, config)


def _work(spark, args: argparse.Namespace, config: Config) -> dict:
    return run_tag(spark, args.input, args.output, config, args.models_dir, args.partitions, fields_from_args(args))


JOB = StageJob(STAGE, "thresher tag", __doc__,
               lambda parser: add_stage3_arguments(parser, "output directory (documents/, rejects/, stats.json)"),
               "tag.batch_size=128", _work, _check, "input",
               executor_paths=lambda args, config: executor_paths(config, args.models_dir))


if __name__ == "__main__":
    sys.exit(JOB.main())
