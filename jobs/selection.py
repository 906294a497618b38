"""Stage 3b job, select: keep rules, line removal and rebalancing on the tag columns; no model runs.

Reads a committed tag output (documents/ with every tagger's columns; taggers.json declaring the
taggers, their kinds, labels and models: schemas.tags) and writes OUTPUT/documents/
(pipeline.select.batches.selected_schema: text with low-scoring lines removed, sample_copies;
sorted by doc_id), OUTPUT/rejects/ (`decontam:<benchmark>` for a document holding benchmark items,
dropped or, with select.decontam.action cut, one row per benchmark counting the characters cut; `<tagger>:<rule>`
document rejects with the failing value, one `<tagger>_line` row per removed line,
`<tagger>_emptied` and `rebalance_downsampled` documents) and OUTPUT/stats.json (documents and
tokens in and out per rule; the mix per group before and after, against the target; per PII kind
the documents and spans found and whether they were replaced).

TAGGED_DIR and OUTPUT may be local paths every node sees or any object store URL (s3://...): the tagged
documents are read, and every table, the `_work/filtered` and `_work/copied` intermediates included,
written as parts from the Python workers (pipeline.stagedir.parts), so the JVM needs no connector for
the store, and nothing is renamed.

The module is not named select.py: `spark-submit jobs/<job>.py` puts jobs/ first on sys.path, where
a select.py would shadow the standard library's `select`.

Settings: config `select` (keep rules per tagger, line thresholds per lines tagger, rebalancing to
target shares by pipeline.select.mix.solve_mix, or by the taxonomy's fixed weights, the PII kinds
replaced and their placeholders).
"""

from __future__ import annotations

import argparse
import difflib
import functools
import math
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pyarrow as pa

from thresher.classifiers.topic import Taxonomy, TaxonomyError, load_taxonomy
from thresher.jobs.stage_job import StageJob, reject_rows
from thresher.pipeline.config import Config, ConfigError
from thresher.pipeline.pii import KINDS as PII_KINDS
from thresher.pipeline.pii import PLACEHOLDERS
from thresher.pipeline.seeded_hash import unit_hash
from thresher.pipeline.select.batches import (
    CLUSTER_SIZE,
    REST_CLASS,
    RULE_DOWNSAMPLED,
    STATUS_KEPT,
    TIE_SEED,
    ColumnCheck,
    KeepCheck,
    LineGuards,
    SelectSettings,
    copy_batches,
    filter_batches,
    filtered_schema,
    selected_schema,
)
from thresher.pipeline.select.gate import GateDecision, decide
from thresher.pipeline.select.mix import MixTarget, TopFractionCut, expand_groups, solve_mix
from thresher.pipeline.select.rehydrate import parse_rehydrate
from thresher.pipeline.stagedir import StageOutput, crash_point, read_commit, require_committed
from thresher.pipeline.stagedir.parts import read_parts, write_parts, write_scratch
from thresher.schemas import to_spark_schema
from thresher.schemas.errors import InputError
from thresher.schemas.stats import read_stats
from thresher.schemas.tags import (
    DECONTAM,
    MODEL_FREE_KINDS,
    DeclaredTagger,
    read_taggers,
    score_column,
    spans_column,
    tagged_schema,
    top_column,
)

STAGE = "select"


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="TAGGED_DIR", help="committed `thresher tag` output directory")
    parser.add_argument("--output", required=True, help="output directory (documents/, rejects/, stats.json)")
    parser.add_argument("--partitions", type=int, help="repartition the input into this many tasks (default: as read)")


def taxonomy_of(config: Config) -> Taxonomy:
    try:
        return load_taxonomy(config.resolve_path(config.tag.topics_file) or None)
    except TaxonomyError as exc:
        raise ConfigError(f"tag.topics_file: {exc}") from exc


def check_select_config(config: Config, taggers: Sequence[DeclaredTagger] | None = None) -> SelectSettings:
    """The select settings checked against the taggers, before Spark starts (config.py checked each
    value on its own when the config was built). `taggers` (as a tag output declares them, or as
    their models give them) adds the checks against the models' labels; without it (the models do not
    exist yet) only the configured taggers' names and kinds are checked."""
    section = config.select
    configured = {name: spec for name, spec in config.tag.taggers.items()
                  if spec.enabled and (spec.model_dir or spec.kind in MODEL_FREE_KINDS)}
    if taggers is None:
        taggers = [DeclaredTagger(name, kind=spec.kind, top_k=spec.top_k) for name, spec in configured.items()]
    known = {tagger.name: tagger for tagger in taggers}

    def tagger_of_kind(name: str, key: str, kind: str, needs: str) -> DeclaredTagger:
        if name not in known:
            raise ConfigError(f"{key}: no tagger named {name!r} (taggers: {', '.join(known) or 'none'}; see tag.taggers)")
        if known[name].kind != kind:
            raise ConfigError(f"{key}: {name} is a {known[name].kind} tagger; {needs} a {kind} tagger")
        return known[name]

    checks: list[KeepCheck] = []
    for name, rule in section.keep.items():
        key = f"select.keep.{name}"
        labels = tagger_of_kind(name, key, "document", "keep rules need").labels  # empty: not known yet
        for rule_name in ("label_in", "label_not_in"):
            wanted = getattr(rule, rule_name)
            if not wanted:
                continue
            missing = [label for label in wanted if labels and label not in labels]
            if missing and rule.on_missing_label == "error":
                raise ConfigError(f"{key}.{rule_name}: {missing} not label(s) of the {name} model ({list(labels)})")
            typos = {label: close[0] for label in missing if (close := difflib.get_close_matches(label, labels, 1, 0.8))}
            if typos:  # `keep` is for a class a model lacks, not for a misspelled one, which would turn the rule off
                label, meant = next(iter(typos.items()))
                raise ConfigError(f"{key}.{rule_name}: {label!r} is not a label of the {name} model: did you mean "
                                  f"{meant!r}? (on_missing_label: keep is for a class the model lacks)")
            if missing and (rule_name == "label_not_in" or len(missing) == len(wanted)):
                # label_in with no known label would drop everything; label_not_in with an unknown one drops nothing
                print(f"[thresher] select.keep.{name}.{rule_name}: the {name} model has no label {missing} "
                      f"(its labels: {list(labels)}); rule off, documents kept (on_missing_label: keep)", file=sys.stderr)
                if rule_name == "label_in":
                    continue
            present = tuple(label for label in wanted if not labels or label in labels)
            if present:
                checks.append(KeepCheck(name, rule_name, labels=present, label_min_score=rule.label_min_score))
        if rule.score_label:
            if labels and rule.score_label not in labels:
                raise ConfigError(f"{key}.score_label: {rule.score_label!r} is not a label of the {name} model ({list(labels)})")
            if labels and known[name].top_k < len(labels):
                raise ConfigError(f"{key}.score_label needs every label's score: set tag.taggers.{name}.top_k to {len(labels)}")
        if rule.min_score is not None:
            checks.append(KeepCheck(name, "min_score", score_label=rule.score_label, threshold=rule.min_score))
        if rule.top_percent is not None:
            checks.append(KeepCheck(name, "top_percent", score_label=rule.score_label, threshold=rule.top_percent))

    line_thresholds = []
    for name, threshold in section.line_thresholds.items():
        tagger_of_kind(name, f"select.line_thresholds.{name}", "lines", "line thresholds need")
        line_thresholds.append((name, threshold))

    rebalance = section.rebalance
    class_tagger = ""
    if rebalance.mode != "off":
        class_tagger = tagger_of_kind(rebalance.tagger, "select.rebalance.tagger", "document", "rebalancing needs").name
        if rebalance.mode == "target":
            mix_targets(config)
    # a tag output acts on what its decontam tagger found; before tag has run, config says whether it will
    decontam = any(t.kind == DECONTAM for t in taggers) if taggers is not None else bool(config.decontam.benchmarks)
    pii_placeholders = _pii_placeholders(config, known)
    return SelectSettings(
        taggers=(),
        decontam_action=section.decontam.action if decontam else "",
        checks=tuple(checks),
        line_thresholds=tuple(line_thresholds),
        line_guards=LineGuards(**vars(section.line_guards)),
        class_tagger=class_tagger,
        class_min_score=rebalance.min_score,
        seed=rebalance.seed,
        pii_tagger=section.pii.tagger,
        pii_placeholders=pii_placeholders,
        rehydrate=parse_rehydrate(section.rehydrate),
    )


def _pii_placeholders(config: Config, known: dict[str, DeclaredTagger]) -> dict[str, str]:
    """The placeholder of each PII kind select replaces, checked: select.pii.tagger a pii tagger that ran,
    placeholders only for known kinds and on one line (the lines tagger's scores stay aligned)."""
    pii = config.select.pii
    unknown = sorted(set(pii.placeholders) - set(PII_KINDS))
    if unknown:
        raise ConfigError(f"select.pii.placeholders: {unknown} are not PII kinds ({', '.join(PII_KINDS)})")
    for kind, placeholder in pii.placeholders.items():
        if "\n" in placeholder:
            raise ConfigError(f"select.pii.placeholders.{kind}: a placeholder must not hold a line break")
    if not pii.tagger:
        return {}
    if pii.tagger not in known or known[pii.tagger].kind != "pii":
        pii_taggers = [name for name, tagger in known.items() if tagger.kind == "pii"]
        raise ConfigError(f"select.pii.tagger: {pii.tagger!r} is no pii tagger of the tag output (pii taggers: "
                          f"{', '.join(pii_taggers) or 'none'}); enable tag.taggers.{pii.tagger} (kind: pii) and tag "
                          'again, or set select.pii.tagger to "" to replace no personal information')
    return {kind: pii.placeholders.get(kind, PLACEHOLDERS[kind]) for kind in dict.fromkeys(pii.replace)}


def with_columns(settings: SelectSettings, config: Config, tagged_dir: str) -> SelectSettings:
    """`settings` with the tag output's other columns (custom taggers', the input's own: passed on as they
    are) and select.columns' rules on them, checked before Spark starts: a rule on a column the input lacks,
    min/max on one that holds no numbers, or an input column named as one select writes is one line."""
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StructType

    recorded = read_commit(tagged_dir).schema("documents")
    columns = to_arrow_schema(StructType.fromJson(recorded)) if recorded else pa.schema([])
    tagged = set(tagged_schema(settings.taggers).names)
    kept = tuple(field for field in columns if field.name not in tagged)
    written = set(filtered_schema(replace(settings, kept=())).names) - tagged
    clash = sorted({field.name for field in kept} & written)
    if clash:
        raise InputError(f"{tagged_dir}: column {clash[0]!r} is one select writes: rename it in the input of rules or "
                         "tag, or the custom tagger that writes it")
    checks = []
    for name, rule in config.select.columns.items():
        key = f"select.columns.{name}"
        if name not in columns.names:
            raise ConfigError(f"{key}: the input has no column {name!r} (columns: {', '.join(columns.names)})")
        kind = columns.field(name).type
        numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind)
        if (rule.min is not None or rule.max is not None) and not numeric:
            raise ConfigError(f"{key}: min and max need a column of numbers; {name} is {kind}")
        if rule.equals is not None and isinstance(rule.equals, (list, dict)):
            raise ConfigError(f"{key}.equals: a string, number or boolean, not {type(rule.equals).__name__}")
        if rule.min is None and rule.max is None and rule.equals is None:
            continue
        checks.append(ColumnCheck(name, rule.min, rule.max, rule.equals))
    return replace(settings, kept=kept, column_checks=tuple(checks))


def mix_targets(config: Config) -> tuple[MixTarget, ...]:
    """The configured target groups expanded to taxonomy labels (pipeline.select.mix.expand_groups checks
    shares, known classes and overlaps, naming the key)."""
    return expand_groups(taxonomy_of(config), config.select.rebalance.targets, "select.rebalance.targets")


def run_select(spark, input_dir: str, output_dir: str, config: Config, partitions: int | None = None) -> dict:
    from pyspark.sql import functions as F

    input_path = require_committed(input_dir)
    taggers = read_taggers(input_path)
    settings = with_columns(replace(check_select_config(config, taggers), taggers=taggers), config, input_dir)
    gate = model_gate(settings, config, taggers)
    gated_steps = {name: _steps_on(name, settings, config) for name in gate}
    settings = gated(settings, gate)
    out = StageOutput(output_dir)
    out.begin()
    tagged = read_parts(spark, input_dir, "documents")
    if partitions:
        tagged = tagged.repartition(partitions, "doc_id")
    documents_in = tagged.count()
    settings = replace(settings, checks=tuple(_with_cut(tagged, check, documents_in) for check in settings.checks))

    schema = to_spark_schema(filtered_schema(settings))
    filtered = write_scratch(tagged.mapInArrow(functools.partial(filter_batches, settings=settings), schema), out, "filtered")
    crash_point("select:filtered")

    rebalance = _rebalance(filtered, config, gate)
    settings = replace(settings, weights=rebalance.get("class_weights", {}))
    final = write_scratch(filtered.mapInArrow(functools.partial(copy_batches, settings=settings), schema), out, "copied")
    crash_point("select:copied")

    write_parts(final.filter(F.col("status") == STATUS_KEPT).select(*selected_schema(settings).names).orderBy("doc_id"),
                out, "documents")
    doc_rejects = reject_rows(final.filter(F.col("status") != STATUS_KEPT), STAGE, F.col("status"), F.col("reject_detail"))
    line_rejects = reject_rows(final.select("doc_id", "url", "warc_path", F.explode("removed_lines").alias("removed")),
                               STAGE, F.col("removed.rule"), F.format_string("score=%.4f", F.col("removed.score")),
                               F.col("removed.line"))
    # a cut document: one row per benchmark, with the characters removed (a dropped one is a document reject above)
    cut_rejects = reject_rows(
        final.filter(~F.col("status").startswith(f"{DECONTAM}:"))
        .select("doc_id", "url", "warc_path", "text", F.explode("decontam_removed").alias("removed")),
        STAGE, F.concat(F.lit(f"{DECONTAM}:"), F.col("removed.benchmark")),
        F.format_string("chars=%d items=%s", F.col("removed.chars"), F.array_join(F.slice("removed.item_ids", 1, 5), ",")))
    rejects = doc_rejects.unionByName(line_rejects).unionByName(cut_rejects)
    write_parts(rejects.orderBy("doc_id", "rule", "content", "detail"), out, "rejects")

    counts, details = _stats(final, settings, documents_in)
    if settings.decontam_action:
        details[DECONTAM] = _decontam_stats(final, settings, [t for t in taggers if t.kind == DECONTAM][0].labels)
    details["pii"] = _pii_counts(tagged, settings)
    if settings.rehydrate:
        details["rehydrate"] = _rehydrate_stats(final, settings)
    rebalance["achieved"] = _achieved_mix(final, config, rebalance)
    if config.select.rebalance.mode != "off" and not rebalance["skipped"]:
        rebalance["domains"] = _domain_mix(final, config.select.rebalance.unit)
    details.update({
        "taggers": {t.name: {"model_dir": t.model_dir, "model_hash": t.model_hash, "heldout": t.heldout,
                             "weak_labels": t.weak_labels} for t in taggers},
        "rebalance": rebalance,
        "model_gate": {name: {**decision.record(), "steps": gated_steps[name]} for name, decision in gate.items()},
    })
    crash_point("select:before_commit")
    return out.commit_stats(STAGE, config, [str(input_path)], **counts, details=details)


def _steps_on(tagger: str, settings: SelectSettings, config: Config) -> list[str]:
    """The model steps of `settings` that read `tagger`'s columns, named as the funnel names them."""
    steps = [check.name for check in settings.checks if check.tagger == tagger]
    # a threshold of 0 removes no line: not a step, whatever the model
    steps += ["line_removal" for name, threshold in settings.line_thresholds if name == tagger and threshold > 0]
    if config.select.rebalance.mode != "off" and settings.class_tagger == tagger:
        steps.append("rebalance")
    return steps


def model_gate(settings: SelectSettings, config: Config, taggers: Sequence[DeclaredTagger]) -> dict[str, GateDecision]:
    """Per model tagger, whether the steps reading it act (pipeline.select.gate), or that none does; each
    said on the console. Model-free taggers (rules, not models) are not gated."""
    declared = {t.name: t for t in taggers if t.kind not in MODEL_FREE_KINDS}
    decisions = {}
    for tagger in declared:
        steps = _steps_on(tagger, settings, config)
        if not steps:
            decision = decisions[tagger] = replace(decide(declared[tagger], config.select.model_gate), acts=False,
                                                   reason=_tags_only(tagger, settings))
            print(f"[thresher] select: {tagger}: {decision.reason}", file=sys.stderr)
            continue
        decision = decisions[tagger] = decide(declared[tagger], config.select.model_gate)
        what = "" if decision.acts else "warning: "
        print(f"[thresher] select: {what}{', '.join(steps)}: {decision.reason}"
              f"{'' if decision.acts else '; documents kept, columns written'}", file=sys.stderr)
    return decisions


def _tags_only(tagger: str, settings: SelectSettings) -> str:
    """Why no select step reads `tagger`'s columns, for the console and the report."""
    if any(name == tagger for name, _ in settings.line_thresholds):
        return f"tags only: select.line_thresholds.{tagger} is 0, so no line is removed (its scores are written)"
    return "tags only: no select step reads its columns (its scores are written)"


def gated(settings: SelectSettings, gate: dict[str, GateDecision]) -> SelectSettings:
    """`settings` with the keep rules of a tagger whose model does not act left out and its line
    threshold at 0 (no line removed, the column written); rebalancing asks the gate itself."""
    def acts(name: str) -> bool:
        return gate[name].acts if name in gate else True

    return replace(settings, checks=tuple(check for check in settings.checks if acts(check.tagger)),
                   line_thresholds=tuple((name, threshold if acts(name) else 0.0) for name, threshold in settings.line_thresholds))


def _score_column(check: KeepCheck):
    from pyspark.sql import functions as F

    if not check.score_label:
        return F.col(score_column(check.tagger))
    matching = F.filter(F.col(top_column(check.tagger)), lambda e: e["label"] == F.lit(check.score_label))
    return F.element_at(matching, 1)["score"]


def _with_cut(tagged, check: KeepCheck, documents_in: int) -> KeepCheck:
    """A top-percent rule with its global cut over the whole input, as pipeline.select.mix.top_fraction_cut
    defines it (floor(p% x N + 0.5) documents; ties at the cut score by (unit_hash(seed, doc_id),
    doc_id)), found with Spark: only the documents tied at the cut score come to the driver."""
    from pyspark.sql import functions as F

    if check.rule != "top_percent":
        return check
    keep = math.floor(check.threshold / 100.0 * documents_in + 0.5)
    scores = tagged.select(_score_column(check).alias("score"), "doc_id").filter(F.col("score").isNotNull() & ~F.isnan("score"))
    if keep == 0:
        return replace(check, cut=TopFractionCut(math.inf, 0.0, "", TIE_SEED, 0))
    cut_score = scores.orderBy(F.desc("score")).limit(keep).agg(F.min("score"), F.count("*")).first()
    if cut_score[1] < keep:  # fewer scored documents than the cut asks for: keep every scored one
        return replace(check, cut=TopFractionCut(-math.inf, 1.0, "", TIE_SEED, cut_score[1]))
    threshold = float(cut_score[0])
    above = scores.filter(F.col("score") > threshold).count()
    tied = sorted((unit_hash(TIE_SEED, row["doc_id"]), row["doc_id"]) for row in scores.filter(F.col("score") == threshold).collect())
    tie_hash, tie_key = tied[keep - above - 1]
    return replace(check, cut=TopFractionCut(threshold, tie_hash, tie_key, TIE_SEED, keep))


def _rebalance(filtered, config: Config, gate: dict[str, GateDecision]) -> dict[str, Any]:
    """Per-class weights for the kept documents (solved for the target mix, or the taxonomy's), with
    the mix before and (expected) after per group; skipped (said by model_gate) when the class model does not act."""
    from pyspark.sql import functions as F

    section = config.select.rebalance
    result: dict[str, Any] = {"mode": section.mode, "unit": section.unit, "tagger": section.tagger, "skipped": None}
    if section.mode == "off":
        return result
    decision = gate[section.tagger]
    if not decision.acts:
        result["skipped"] = f"{decision.reason}: not rebalancing on it"
        return result
    amount = F.sum("tokens") if section.unit == "tokens" else F.count("*")
    kept = filtered.filter(F.col("status") == STATUS_KEPT)
    class_amounts = {row["mix_class"]: float(row["amount"] or 0) for row in kept.groupBy("mix_class").agg(amount.alias("amount")).collect()}
    if section.mode == "weights":
        taxonomy = taxonomy_of(config)
        result["class_weights"] = {c: taxonomy.weight(c) for c in class_amounts if c != REST_CLASS}
        return result
    targets = mix_targets(config)
    solution = solve_mix(class_amounts, targets, section.max_copies, section.allow_downsampling)
    result.update({
        "max_copies": section.max_copies,
        "allow_downsampling": section.allow_downsampling,
        "targets": dict(solution.targets),
        "shares_before": dict(solution.shares_before),
        "shares_expected": dict(solution.shares_after),
        "shortfalls": dict(solution.shortfalls),
        "feasible": solution.feasible,
        "groups": {t.name: list(t.classes) for t in targets},
        "class_weights": {c: solution.weight(c) for c in class_amounts},
    })
    for group, short in solution.shortfalls.items():
        print(f"[thresher] select: target {group} {solution.targets.get(group, 0):.3f} is out of reach under "
              f"max_copies={section.max_copies}: short by {short:.3f}", file=sys.stderr)
    return result


def _domain_mix(final, unit: str) -> dict[str, dict[str, float]]:
    """Share of each topic domain among the documents that reached rebalancing, before (one copy
    each) and after (copies counted), in the rebalancing unit; "unclassified" for class-less ones."""
    from pyspark.sql import functions as F

    reached = final.filter(F.col("status").isin(STATUS_KEPT, RULE_DOWNSAMPLED))
    domain = F.when(F.col("mix_class") == REST_CLASS, F.lit("unclassified")).otherwise(F.split("mix_class", r"\.").getItem(0))
    before = F.col("tokens") if unit == "tokens" else F.lit(1)
    after = before * F.col("sample_copies")
    rows = reached.groupBy(domain.alias("domain")).agg(F.sum(before).alias("before"), F.sum(after).alias("after")).collect()
    totals = {key: float(sum(row[key] or 0 for row in rows)) or 1.0 for key in ("before", "after")}
    return {row["domain"]: {key: round(float(row[key] or 0) / totals[key], 6) for key in ("before", "after")}
            for row in sorted(rows, key=lambda r: r["domain"])}


def _achieved_mix(final, config: Config, rebalance: dict[str, Any]) -> dict[str, float]:
    """The mix per group of the written output (copies counted), in the rebalancing unit."""
    from pyspark.sql import functions as F

    groups = rebalance.get("groups")
    if not groups:
        return {}
    unit = F.col("tokens") * F.col("sample_copies") if rebalance["unit"] == "tokens" else F.col("sample_copies")
    kept = final.filter(F.col("status") == STATUS_KEPT)
    per_class = {row["mix_class"]: float(row["amount"] or 0) for row in kept.groupBy("mix_class").agg(F.sum(unit).alias("amount")).collect()}
    total = sum(per_class.values()) or 1.0
    group_of = {label: name for name, labels in groups.items() for label in labels}
    shares: dict[str, float] = {name: 0.0 for name in groups}
    shares["rest"] = 0.0
    for label, value in per_class.items():
        shares[group_of.get(label, "rest")] += value / total
    return {name: round(value, 6) for name, value in shares.items()}


def _decontam_stats(final, settings: SelectSettings, benchmarks: Sequence[str]) -> dict[str, Any]:
    """Per benchmark (every configured one, in order): the documents it was found in, the test items
    found (their ids), the documents dropped and the characters removed (a dropped document's all)."""
    from pyspark.sql import functions as F

    removed = final.select("status", F.explode("decontam_removed").alias("r"))
    rows = {row["benchmark"]: row for row in removed.groupBy("r.benchmark").agg(
        F.count("*").alias("documents"),
        F.sort_array(F.array_distinct(F.flatten(F.collect_list("r.item_ids")))).alias("items"),
        F.sum("r.chars").alias("chars"),
        F.sum(F.when(F.col("status").startswith(f"{DECONTAM}:"), 1).otherwise(0)).alias("dropped"),
    ).collect()}
    per_benchmark = {}
    for name in benchmarks:
        row = rows.get(name)
        per_benchmark[name] = {"documents_hit": row["documents"] if row else 0, "items_hit": list(row["items"]) if row else [],
                               "documents_dropped": row["dropped"] if row else 0, "chars_removed": row["chars"] or 0 if row else 0}
    return {"action": settings.decontam_action, "benchmarks": per_benchmark}


def _stats(final, settings: SelectSettings, documents_in: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The envelope's counts and the stage's details, from the written rows (never accumulators), in
    one aggregation: documents and tokens in and out of each rule in order (keep rules, then line
    removal, then rebalancing)."""
    from pyspark.sql import functions as F

    line_columns = [f"lines_removed_{name}" for name, _ in settings.line_thresholds]
    groups = final.groupBy("status").agg(
        F.count("*").alias("documents"),
        F.sum("tokens_in").alias("tokens_in"),
        F.sum("tokens").alias("tokens"),
        F.sum("sample_copies").alias("copies"),
        F.sum(F.col("tokens") * F.col("sample_copies")).alias("tokens_copied"),
        F.sum("tokens_cut").alias("tokens_cut"),
        *[F.sum(F.coalesce(F.col(c), F.lit(0))).alias(c) for c in line_columns],
    ).collect()
    by_status = {row["status"]: row.asDict() for row in groups}
    lines_rejected = final.select(F.explode("removed_lines.rule").alias("rule")).groupBy("rule").count().collect()
    guarded = final.select(F.explode("lines_guarded").alias("g")).groupBy("g.guard").agg(F.sum("g.lines").alias("lines")).collect()
    rejects_by_rule = {status: row["documents"] for status, row in by_status.items() if status != STATUS_KEPT}
    rejects_by_rule.update({row["rule"]: row["count"] for row in lines_rejected})
    cut = final.filter(~F.col("status").startswith(f"{DECONTAM}:")).select(F.explode("decontam_removed.benchmark").alias("b"))
    for row in cut.groupBy("b").count().collect():  # documents cut, per benchmark
        rule = f"{DECONTAM}:{row['b']}"
        rejects_by_rule[rule] = rejects_by_rule.get(rule, 0) + row["count"]

    funnel = []
    docs = documents_in
    tokens = sum(row["tokens_in"] or 0 for row in by_status.values())
    if settings.decontam_action:
        decontaminated = [row for status, row in by_status.items() if status.startswith(f"{DECONTAM}:")]
        out_docs = docs - sum(row["documents"] for row in decontaminated)
        out_tokens = tokens - sum(row["tokens_in"] or 0 for row in decontaminated) - sum(row["tokens_cut"] or 0 for row in by_status.values())
        funnel.append({"rule": DECONTAM, "documents_in": docs, "documents_out": out_docs, "tokens_in": tokens, "tokens_out": out_tokens})
        docs, tokens = out_docs, out_tokens
    for check in (*settings.checks, *settings.column_checks):
        dropped = by_status.get(check.name, {})
        out_docs = docs - dropped.get("documents", 0)
        out_tokens = tokens - (dropped.get("tokens_in") or 0) + (dropped.get("tokens_cut") or 0)
        funnel.append({"rule": check.name, "documents_in": docs, "documents_out": out_docs, "tokens_in": tokens, "tokens_out": out_tokens})
        docs, tokens = out_docs, out_tokens
    survivors = [row for status, row in by_status.items() if status == STATUS_KEPT or status.endswith("_emptied") or status == RULE_DOWNSAMPLED]
    if settings.line_thresholds:
        emptied = sum(row["documents"] for status, row in by_status.items() if status.endswith("_emptied"))
        after = sum(row["tokens"] or 0 for row in survivors if not row["status"].endswith("_emptied"))
        funnel.append({"rule": "line_removal", "documents_in": docs, "documents_out": docs - emptied, "tokens_in": tokens, "tokens_out": after})
        docs, tokens = docs - emptied, after
    kept = by_status.get(STATUS_KEPT, {})
    funnel.append({"rule": "rebalance", "documents_in": docs, "documents_out": kept.get("documents", 0),
                   "tokens_in": tokens, "tokens_out": kept.get("tokens_copied") or 0, "copies_out": kept.get("copies") or 0})
    counts = {
        "documents_in": documents_in,
        "documents_out": kept.get("documents", 0),
        "rejects_by_rule": dict(sorted(rejects_by_rule.items())),
    }
    return counts, {
        "documents_rejected": documents_in - kept.get("documents", 0),
        "tokens_in": sum(row["tokens_in"] or 0 for row in by_status.values()),
        "tokens_out": kept.get("tokens_copied") or 0,
        "sample_copies_total": kept.get("copies") or 0,
        "lines_removed": {c.removeprefix("lines_removed_"): sum(row.get(c) or 0 for row in by_status.values()) for c in line_columns},
        # lines under a threshold that a guard kept (pipeline.select.batches.GUARDS; removal_cap: lines of undone removals)
        "lines_kept_by_guard": {row["guard"]: int(row["lines"]) for row in sorted(guarded, key=lambda row: row["guard"])},
        "rules": funnel,
    }


def _rehydrate_stats(final, settings: SelectSettings) -> dict[str, Any]:
    """Per cluster-size range of select.rehydrate, in size order: its copies, the kept documents in it and
    the copies written of them (rebalancing's included)."""
    from pyspark.sql import functions as F

    size = F.coalesce(F.col(CLUSTER_SIZE), F.lit(1)) if CLUSTER_SIZE in final.columns else F.lit(1)
    name = F.lit(settings.rehydrate[-1].name)
    for size_range in reversed(settings.rehydrate[:-1]):  # the last range is open: everything above the others
        name = F.when(size <= size_range.high, F.lit(size_range.name)).otherwise(name)
    counted = (final.filter(F.col("status") == STATUS_KEPT).groupBy(name.alias("range"))
               .agg(F.count("*").alias("documents"), F.sum("sample_copies").alias("copies_out")).collect())
    found = {row["range"]: row for row in counted}
    return {"ranges": {r.name: {"copies": r.copies, "documents": found[r.name]["documents"] if r.name in found else 0,
                                "copies_out": int(found[r.name]["copies_out"]) if r.name in found else 0}
                       for r in settings.rehydrate}}


def _pii_counts(tagged, settings: SelectSettings) -> dict[str, Any]:
    """Per PII kind, the documents and spans the pii tagger found in the input, whether select replaced
    them (in every document, kept or not) and with what; empty when no pii tagger is named."""
    from pyspark.sql import functions as F

    if not settings.pii_tagger:
        return {}
    spans = tagged.select("doc_id", F.explode(spans_column(settings.pii_tagger)).alias("span"))
    found = {row["kind"]: row for row in spans.groupBy(F.col("span.kind").alias("kind"))
             .agg(F.countDistinct("doc_id").alias("documents"), F.count("*").alias("spans")).collect()}
    return {
        "tagger": settings.pii_tagger,
        "documents": spans.select("doc_id").distinct().count(),  # documents with any finding
        "kinds": {kind: {"documents": found[kind]["documents"] if kind in found else 0,
                         "spans": found[kind]["spans"] if kind in found else 0,
                         "replaced": kind in settings.pii_placeholders,
                         "placeholder": settings.pii_placeholders.get(kind)} for kind in PII_KINDS},
    }


def _check(args: argparse.Namespace, config: Config) -> str:
    tagged = require_committed(args.input)
    read_stats(tagged)  # the input's envelope first: a stats.json that is not thresher's is named as such
    taggers = read_taggers(tagged)
    with_columns(replace(check_select_config(config, taggers), taggers=taggers), config, args.input)  # before Spark starts
    return args.input


def _work(spark, args: argparse.Namespace, config: Config) -> dict:
    return run_select(spark, args.input, args.output, config, args.partitions)


JOB = StageJob(STAGE, "thresher select", __doc__, _arguments, "select.rebalance.max_copies=2", _work, _check)


if __name__ == "__main__":
    sys.exit(JOB.main())
