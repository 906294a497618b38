"""thresher run: the whole pipeline, stage 1, 2, 3 (tag, then select) and export in turn, resumable
by stage, with a report. On a documents input (JSONL, Parquet, a datasets directory, a committed stage)
it starts at rules.

Layout of OUTPUT:
    prepare/      stage 1 documents, rejects, stats.json (none on a documents input)
    rules/        stage 2
    classifiers/  the default fastText models, bootstrapped from prepare/ (or the documents input) when the
                  config names none
    tag/          stage 3a: every tagger's scores as columns (nothing dropped)
    select/       stage 3b: keep rules, line removal, rebalancing copies
    tokenizer/    a byte-level BPE trained on rules/ (unless --tokenizer names one): select changes keep it
    export/       token shards and manifest.json
    run.json      inputs, the settings each stage read, seconds per stage
    config.yaml   the effective config (as `thresher config show` prints it), linked from the report
    report.json, report.html

Each stage commits its output (a `_COMMITTED` marker) before the next starts. run.json records the
config keys each stage reads (STAGE_SETTINGS). A rerun keeps every committed stage none of whose
result-affecting settings changed (SPEED_SETTINGS, such as tag.batch_size, change only speed) and
reruns each stage whose settings changed (or `--from-stage`, `--retrain-tokenizer`), and every stage
that reads one of them (STAGE_INPUTS), saying for each stage why it reruns or is reused; a rerun after
a crash goes on from the last committed stage; rerunning a finished run does nothing ("already
complete"). The tokenizer reads rules/, so a select change reruns select and export only, and every
select setting's shards decode with one tokenizer.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from thresher.classifiers.clutter import SHIPPED_MODEL
from thresher.jobs.documents_input import (
    add_field_arguments,
    fields_from_args,
    run_documents_input,
    stage_kept_fields,
    with_limits,
)
from thresher.jobs.session import spark_session
from thresher.jobs.stage_job import (
    add_common_arguments,
    config_from_args,
    print_stage_start,
    print_stage_summary,
    resolve_path_options,
    script_main,
)
from thresher.pipeline.config import Config, ConfigError
from thresher.pipeline.locations import resolve_location
from thresher.pipeline.stagedir import STAGES, StageOutput, crash_point, is_local, storage, write_whole
from thresher.pipeline.stagedir.documents import DEFAULT_FIELDS, FieldMapping
from thresher.pipeline.stagedir.lock import DirectoryLock
from thresher.schemas.stats import read_stats

# The config keys (dotted prefixes) each stage's output depends on; `run.*` are this run's options.
STAGE_SETTINGS = {
    "prepare": ("prepare",),
    "rules": ("rules", "run.documents_fields"),
    "classifiers": ("tag.topics_file",),
    "tag": ("tag", "transformers.max_length", "transformers.truncation", "transformers.device", "run.models_dir", "run.model_hash"),
    "select": ("select", "tag.topics_file"),
    "tokenizer": (
        "export.vocab_size", "export.eos_token", "export.pad_token", "export.extra_special_tokens",
        "export.tokenizer_sample_documents", "export.tokenizer_min_frequency", "export.seed", "run.tokenizer",
    ),
    "export": ("export", "run.tokenizer"),
}
# Settings that change only how fast a stage runs or how much memory it holds, never what it writes: a
# change to one reruns nothing (spark.* is read by no stage at all). The rest is result-affecting.
SPEED_SETTINGS = ("tag.batch_size", "transformers.token_budget", "prepare.files_per_batch", "export.encode_batch_documents")
# The committed stages each stage reads: a stage that reruns reruns every stage that reads it, and no other.
# The tokenizer reads stage 2 (rules), not select, so that select changes share one vocabulary.
STAGE_INPUTS = {
    "prepare": (), "rules": ("prepare",), "classifiers": ("prepare",), "tag": ("rules", "classifiers"),
    "select": ("tag",), "tokenizer": ("rules",), "export": ("select", "tokenizer"),
}
EARLIER_TAGS = "earlier_tags"  # run info, not written to run.json: the tag output a rerun keeps columns of
RUN_FORMAT = 2  # run.json with per-key settings (format 1 held one digest of the whole config)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="*", metavar="INPUT",
        help="WARC/ARC/WET files, globs, path lists or warc.paths.gz (default with --sample: the bundled sample crawl); "
        "or one documents input (JSONL, Parquet, a datasets directory, a committed stage), which starts at rules",
    )
    parser.add_argument("--output", required=True, help="run directory (one subdirectory per stage, report.html)")
    parser.add_argument("--sample", action="store_true", help="run on the bundled sample crawl, written to OUTPUT/input/")
    parser.add_argument(
        "--models-dir",
        help="base directory of the taggers' models (page_type/, clutter/, topic/); default: config tag.model_dir "
        "if it holds them, else bootstrapped from this run's stage 1 output into OUTPUT/classifiers",
    )
    parser.add_argument("--tokenizer", help="Hugging Face tokenizer directory; default: train one into OUTPUT/tokenizer")
    parser.add_argument(
        "--from-stage", choices=STAGES,
        help="rerun this stage and every stage that reads its output, even if committed with unchanged settings",
    )
    parser.add_argument(
        "--retrain-tokenizer", action="store_true",
        help="train the tokenizer again (and export again), though its settings and stage 2 output are unchanged",
    )
    add_common_arguments(parser, "select.line_thresholds.clutter=0.4")
    add_field_arguments(parser)  # for a documents INPUT


def run_pipeline(
    spark, inputs: list[str], output_dir: str, config: Config,
    models_dir: str | None = None, tokenizer_dir: str | None = None, from_stage: str | None = None,
    documents_fields: FieldMapping | None = None, retrain_tokenizer: bool = False,
) -> dict[str, Any]:
    """Run every stage not committed with its current settings under `output_dir`; returns run.json's
    content, with `stages_run` naming the stages this call ran. With `documents_fields`, `inputs` is one
    documents input (jobs.documents_input) read with those fields: no prepare, rules reads it.

    A second run on the same `output_dir` while this one runs is refused (ConfigError naming this one).
    """
    with DirectoryLock(output_dir):
        return _run_stages(spark, inputs, output_dir, config, models_dir, tokenizer_dir, from_stage, documents_fields,
                           retrain_tokenizer)


def _run_stages(
    spark, inputs: list[str], output_dir: str, config: Config, models_dir: str | None, tokenizer_dir: str | None,
    from_stage: str | None, documents_fields: FieldMapping | None, retrain_tokenizer: bool = False,
) -> dict[str, Any]:
    from thresher.jobs.export import run_export
    from thresher.jobs.prepare import run_prepare
    from thresher.jobs.rules import run_rules
    from thresher.jobs.selection import check_select_config, run_select
    from thresher.jobs.tag import configured_taggers, run_tag
    from thresher.jobs.tokenizer import run_tokenizer_train
    from thresher.pipeline.report import write_report

    out = RunDirectory(output_dir)
    dirs = {stage: out.child(stage) for stage in STAGES}
    models_dir = models_dir or _configured_models_dir(config) or dirs["classifiers"]
    tokenizer_dir = tokenizer_dir or dirs["tokenizer"]
    skipped = {
        "prepare": documents_fields is not None,
        "classifiers": models_dir != dirs["classifiers"],
        "tokenizer": tokenizer_dir != dirs["tokenizer"],
    }
    # A documents input is read by rules, and the default models are bootstrapped from it, as from prepare/.
    rules_input, rules_fields = (inputs[0], documents_fields) if documents_fields else (dirs["prepare"], DEFAULT_FIELDS)
    settings = run_settings(config, models_dir, tokenizer_dir, dirs, documents_fields)
    run_info = _start_run_info(out, inputs, settings, from_stage, frozenset({"tokenizer"} if retrain_tokenizer else ()))
    _write_effective_config(out, config)

    def tag():
        check_select_config(config, configured_taggers(config, models_dir, digests=False))  # before any stage 3 work
        return run_tag(spark, dirs["rules"], dirs["tag"], config, models_dir=models_dir,
                       earlier=run_info.pop(EARLIER_TAGS, None))

    steps = {
        "prepare": lambda: run_prepare(spark, inputs, dirs["prepare"], config),
        "rules": lambda: run_rules(spark, rules_input, dirs["rules"], config, rules_fields),
        "classifiers": lambda: _bootstrap_classifiers(rules_input, dirs["classifiers"], config, documents_fields),
        "tag": tag,
        "select": lambda: run_select(spark, dirs["tag"], dirs["select"], config),
        "tokenizer": lambda: run_tokenizer_train(spark, dirs["rules"], dirs["tokenizer"], config),
        "export": lambda: run_export(spark, dirs["select"], dirs["export"], tokenizer_dir, config),
    }
    ran = []
    for stage in STAGES:
        if skipped.get(stage):
            continue
        if any(name in ran for name in STAGE_INPUTS[stage]):  # committed before a stage it reads reran
            detach_shared(dirs[stage])
            StageOutput(dirs[stage]).reopen()
        if StageOutput(dirs[stage]).committed:
            continue
        detach_shared(dirs[stage])  # another run's uncommitted directory is not this run's to write
        print_stage_start(stage)
        started = time.time()
        with DirectoryLock(dirs[stage]):  # a stage run by hand on this directory meanwhile is refused, and refuses
            stats = steps[stage]()
        seconds = time.time() - started
        run_info["seconds_per_stage"][stage] = round(seconds, 3)
        _write_run_info(out, run_info)
        print_stage_summary(stage, stats, seconds)
        ran.append(stage)
        crash_point(f"run:after_{stage}")
    if ran or not out.exists("report.html"):
        write_report(output_dir)
    return {**run_info, "stages_run": ran}


def run_settings(config: Config, models_dir: str, tokenizer_dir: str, dirs: dict[str, str],
                 documents_fields: FieldMapping | None = None) -> dict[str, Any]:
    """Every config value as a flat dotted key, plus the run's own inputs to stages (`run.*`): the
    models directory, for models this run did not bootstrap a content hash of each, and the fields a
    documents input is read with."""
    from thresher.jobs.tag import configured_taggers

    settings = dataclasses.asdict(config)
    del settings["base_dir"]
    flat = _flatten(settings)
    flat["run.models_dir"] = resolve_location(models_dir)
    flat["run.tokenizer"] = resolve_location(tokenizer_dir)
    if documents_fields is not None:
        flat["run.documents_fields"] = dataclasses.asdict(documents_fields)
    if models_dir != dirs["classifiers"]:
        for tagger in configured_taggers(config, models_dir):
            flat[f"run.model_hash.{tagger.name}"] = tagger.model_hash
    return json.loads(json.dumps(flat, default=str))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: value}


def stages_reading(key: str) -> list[str]:
    """The stages whose output `key` changes: none for a speed-only setting (SPEED_SETTINGS)."""
    if key in SPEED_SETTINGS:
        return []
    return [stage for stage, prefixes in STAGE_SETTINGS.items() if any(key == p or key.startswith(p + ".") for p in prefixes)]


def rerun_reasons(changed: list[str], forced: set[str] = frozenset()) -> dict[str, str]:
    """The stages a rerun must run again, in pipeline order, each with why: a setting it reads changed, it
    was asked for (`forced`), or a stage it reads (STAGE_INPUTS) reruns."""
    reasons: dict[str, str] = {}
    for stage in STAGES:
        keys = [key for key in changed if stage in stages_reading(key)]
        inputs = [name for name in STAGE_INPUTS[stage] if name in reasons]
        if keys:
            reasons[stage] = f"changed: {', '.join(keys)}"
        elif stage in forced:
            reasons[stage] = "asked for"
        elif inputs:
            reasons[stage] = f"it reads {', '.join(inputs)}, which reruns"
    return reasons


def retagged_taggers(changed: list[str], reasons: dict[str, str], forced: set[str]) -> set[str] | None:
    """The taggers whose settings alone made tag rerun (added, changed or removed: `tag.taggers.NAME.*`,
    `run.model_hash.NAME`), so that only they tag again; None where anything else tag reads changed, a
    stage it reads reruns, or it was asked for."""
    if "tag" not in reasons or "tag" in forced or any(stage in reasons for stage in STAGE_INPUTS["tag"]):
        return None
    names = set()
    for key in changed:
        if "tag" not in stages_reading(key):
            continue
        prefix = next((p for p in ("tag.taggers.", "run.model_hash.") if key.startswith(p)), None)
        if prefix is None:
            return None
        names.add(key[len(prefix):].split(".", 1)[0])
    return names


def detach_shared(stage_dir: str) -> None:
    """A stage directory that is a link to another run's (a sweep point shares it) stops being one, so
    that rerunning it here writes its own output and leaves the other run's as it is."""
    if os.path.islink(stage_dir):
        os.unlink(stage_dir)


class RunDirectory:
    """A run's directory, a local path or any fsspec URL: its stages' directories and its own files
    (run.json, config.yaml), each written whole (one PUT on an object store, a file moved into place on disk)."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.fs, self.root = storage(url)
        if is_local(self.fs):
            os.makedirs(self.root, exist_ok=True)

    def child(self, name: str) -> str:
        return str(Path(self.url) / name) if is_local(self.fs) else f"{self.url}/{name}"

    def exists(self, name: str) -> bool:
        self.fs.invalidate_cache(self.root)
        return self.fs.isfile(f"{self.root}/{name}")

    def read_text(self, name: str) -> str:
        return self.fs.cat_file(f"{self.root}/{name}").decode("utf-8")

    def write_text(self, name: str, text: str) -> None:
        write_whole(self.fs, f"{self.root}/{name}", text.encode("utf-8"))

    def __str__(self) -> str:
        return self.url


def _start_run_info(out: RunDirectory, inputs: list[str], settings: dict[str, Any], from_stage: str | None,
                    forced: frozenset[str] = frozenset()) -> dict[str, Any]:
    """run.json of an earlier attempt, checked to be the same inputs; the stages a result-affecting
    setting of changed, those in `forced` or `from_stage`, and every stage reading one of them, are
    uncommitted, so that they rerun. Says for each stage why it reruns or is reused."""
    fresh = {"format": RUN_FORMAT, "inputs": list(inputs), "settings": settings, "seconds_per_stage": {}}
    if not out.exists("run.json"):
        _write_run_info(out, fresh)
        return fresh
    earlier = json.loads(out.read_text("run.json"))
    if earlier.get("inputs") != fresh["inputs"]:
        raise ConfigError(
            f"{out} holds a run with other inputs ({earlier.get('inputs')!r}); "
            "use a new --output directory or delete the old run"
        )
    if earlier.get("format") != RUN_FORMAT:
        raise ConfigError(f"{out}/run.json was written by an older thresher (no per-stage settings); "
                          "use a new --output directory or delete the old run")
    old = earlier["settings"]
    changed = sorted(key for key in set(old) | set(settings) if old.get(key) != settings.get(key))
    forced = set(forced) | ({from_stage} if from_stage else set())
    reasons = rerun_reasons(changed, forced)
    if changed:
        print(f"[thresher] settings changed since the last run: {', '.join(changed)}", file=sys.stderr)
    speed_only = [key for key in changed if key in SPEED_SETTINGS]
    if speed_only:
        print(f"[thresher] speed-only settings (no stage reruns for them): {', '.join(speed_only)}", file=sys.stderr)
    if reasons:
        print(f"[thresher] rerunning from {next(iter(reasons))}: {', '.join(reasons)}", file=sys.stderr)
    retag = retagged_taggers(changed, reasons, forced)
    for stage in STAGES:
        stage_dir = out.child(stage)
        if stage in reasons:
            print(f"[thresher] {stage}: reruns ({reasons[stage]})", file=sys.stderr)
            earlier["seconds_per_stage"].pop(stage, None)
            if os.path.islink(stage_dir):
                detach_shared(stage_dir)
                continue
            if stage == "tag" and retag is not None and StageOutput(stage_dir).committed:
                from thresher.jobs.tag import earlier_tags

                # read before the reopen; held in memory only, so a crash before tag commits retags in full
                earlier[EARLIER_TAGS] = earlier_tags(stage_dir, retag)
            StageOutput(stage_dir).reopen()
        elif StageOutput(stage_dir).committed:
            print(f"[thresher] {stage}: reused (committed; no result-affecting setting it reads changed)", file=sys.stderr)
    earlier["settings"] = settings
    _write_run_info(out, earlier)
    return earlier


def _write_run_info(out: RunDirectory, run_info: dict[str, Any]) -> None:
    out.write_text("run.json", json.dumps({k: v for k, v in run_info.items() if k not in ("stages_run", EARLIER_TAGS)},
                                          indent=2, sort_keys=True) + "\n")


def _write_effective_config(out: RunDirectory, config: Config) -> None:
    """OUTPUT/config.yaml, the config this run used (as `thresher config show` prints it): the report links it."""
    from thresher.jobs.config_show import effective_config_text
    from thresher.pipeline.report.data import CONFIG_FILE

    out.write_text(CONFIG_FILE, effective_config_text(config))


def _configured_models_dir(config: Config) -> str | None:
    """config tag.model_dir when it holds every enabled tagger's model given by a relative path, else
    None (bootstrap the defaults)."""
    path = Path(config.resolve_path(config.tag.model_dir))
    relative = [spec.model_dir for spec in config.tag.taggers.values()
                if spec.model_dir and spec.model_dir != SHIPPED_MODEL and not Path(spec.model_dir).is_absolute()]
    return str(path) if relative and all((path / name).is_dir() for name in relative) else None


def _bootstrap_classifiers(prepare_dir: str, output_dir: str, config: Config, fields: FieldMapping | None = None,
                           ) -> dict[str, Any]:
    """The default fastText models, weak-labelled on this run's stage 1 documents (or its documents input, read
    with `fields`), committed like a stage."""
    from thresher.classifiers.bootstrap import bootstrap
    from thresher.classifiers.topic import load_taxonomy

    output = StageOutput(output_dir)
    output.begin()
    taxonomy = load_taxonomy(config.resolve_path(config.tag.topics_file) or None)
    with tempfile.TemporaryDirectory(prefix="thresher-classifiers-") as trained:
        summary = bootstrap([prepare_dir], trained, taxonomy, fields=fields)
        for path in sorted(Path(trained).rglob("*")):  # committed like any stage's files, on any store
            if path.is_file():
                output.put_file(str(path.relative_to(trained)), path.read_bytes())
    # every sampled document was weak-labelled
    return output.commit_stats("classifiers", config, [prepare_dir], summary["documents"], summary["documents"], {},
                               {"models": summary["models"]})


def run(args: argparse.Namespace) -> int:
    resolve_path_options(args)
    with DirectoryLock(args.output):  # before anything is written or Spark starts: a second run refuses at once
        return _run(args)


def checked_run_inputs(
    args: argparse.Namespace, config: Config,
) -> tuple[list[str], list[tuple[str, str]], FieldMapping | None]:
    """Before Spark starts: the run's inputs (the sample crawl written under --output with --sample) and
    every setting checked that can be; the inputs, the paths the tasks open, and the fields of a documents
    input (None for web archives)."""
    from thresher.jobs.export import check_export_config
    from thresher.jobs.prepare import executor_paths as prepare_paths
    from thresher.jobs.rules import executor_paths as rules_paths
    from thresher.jobs.rules import reference_stages, resolved_rules_config, stage_filters
    from thresher.jobs.selection import check_select_config
    from thresher.jobs.tag import check_benchmarks, configured_taggers, custom_taggers, resolve_taggers
    from thresher.jobs.tag import executor_paths as tag_paths
    from thresher.pipeline.rules.heuristics import load_resources
    from thresher.pipeline.stagedir.documents import resolve_source
    from thresher.schemas.documents import PREPARED

    check_export_config(config.export)  # export.format, pack_mode, tail: one line now, not after stage 3
    inputs = list(args.inputs)
    if args.sample:
        if inputs:
            raise ConfigError("give INPUT files or --sample, not both")
        from thresher.pipeline.prepare.sample_crawl import write_sample_crawl

        inputs = _sample_inputs(args.output, write_sample_crawl)
    if not inputs:
        raise ConfigError("no INPUT given (or pass --sample for the bundled sample crawl)")
    documents = run_documents_input(inputs)
    if documents is None:
        from thresher.pipeline.prepare.archive_sniff import check_archive_inputs
        from thresher.pipeline.prepare.inputs import expand_inputs

        # A missing or non-WARC local input fails here, before Spark starts.
        input_files = expand_inputs(inputs, config.prepare.path_prefix)
        check_archive_inputs(input_files)
        input_paths = prepare_paths(input_files, config)
    else:  # unreadable, or without its text column: one line here, before Spark starts
        stage_kept_fields(resolve_source(documents, with_limits(fields_from_args(args), config)), PREPARED, config, "rules")
        input_paths = [("INPUT", documents)]
    documents_fields = None if documents is None else fields_from_args(args)
    # Stage 3 settings checked before Spark starts: against the models when they exist already.
    custom_taggers(config, resolve_taggers(config, args.models_dir))
    check_benchmarks(config)
    stage_filters(resolved_rules_config(config), load_resources(resolved_rules_config(config), str))
    reference_stages(config)  # rules.dedup.references: committed rules stages with keys made as this run makes them
    models_dir = args.models_dir or _configured_models_dir(config)
    check_select_config(config, configured_taggers(config, models_dir, digests=False) if models_dir else None)
    task_paths = [("--output", args.output), *input_paths, *rules_paths(config),
                  *tag_paths(config, models_dir or RunDirectory(args.output).child("classifiers"))]
    return inputs, task_paths, documents_fields


def _run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    inputs, task_paths, documents_fields = checked_run_inputs(args, config)
    spark = spark_session("thresher-run", config.spark, args.master, executor_paths=task_paths)
    run_info = run_pipeline(spark, inputs, args.output, config, args.models_dir, args.tokenizer, args.from_stage,
                            documents_fields, args.retrain_tokenizer)
    report = RunDirectory(args.output).child("report.html")
    if not run_info["stages_run"]:
        print(f"[thresher] run already complete: nothing changed since the last run; report: {report}", file=sys.stderr)
        return 0
    seconds = sum(run_info["seconds_per_stage"].get(stage, 0.0) for stage in run_info["stages_run"])
    export_stats = read_stats(RunDirectory(args.output).child("export"))  # stats.json, on any store
    print(
        f"[thresher] run finished ({', '.join(run_info['stages_run'])}) in {seconds:.1f}s; report: {report}; "
        f"exported {export_stats['details']['tokens']} tokens",
        file=sys.stderr,
    )
    return 0


def _sample_inputs(output: str, write_sample_crawl) -> list[str]:
    """The bundled sample crawl written to OUTPUT/input/ (uploaded there, for a run on an object store)."""
    out = RunDirectory(output)
    if is_local(out.fs):
        return write_sample_crawl(out.child("input"))
    with tempfile.TemporaryDirectory(prefix="thresher-sample-") as local:
        inputs = []
        for path in write_sample_crawl(local):
            target = out.child(f"input/{Path(path).name}")
            out.fs.put_file(path, storage(target)[1])
            inputs.append(target)
    return inputs


def main(argv: list[str] | None = None) -> int:
    return script_main("thresher run", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
