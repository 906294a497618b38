"""thresher run: the whole pipeline, stage 1, 2, 3 and export in turn, resumable, with a report.

Layout of OUTPUT:
    prepare/      stage 1 documents, rejects, stats.json
    rules/        stage 2
    classifiers/  the default fastText models, bootstrapped from prepare/ when the config names none
    models/       stage 3
    tokenizer/    a byte-level BPE trained on models/ (unless --tokenizer names one)
    export/       token shards and manifest.json
    run.json      inputs, config digest, seconds per stage
    report.json, report.html

Each stage commits its output (a `_COMMITTED` marker) before the next starts. A rerun skips every
committed stage, so rerunning a finished run does nothing and a rerun after a crash goes on from
the last committed stage.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from jobs.common import (
    DirectoryLock,
    StageOutput,
    add_common_arguments,
    config_from_args,
    crash_point,
    print_stage_start,
    print_stage_summary,
    read_stats,
    script_main,
    spark_session,
)
from pipeline.config import Config, ConfigError

STAGES = ("prepare", "rules", "classifiers", "models", "tokenizer", "export")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="*", metavar="INPUT",
        help="WARC/ARC/WET files, globs, path lists or warc.paths.gz (default with --sample: the bundled sample crawl)",
    )
    parser.add_argument("--output", required=True, help="run directory (one subdirectory per stage, report.html)")
    parser.add_argument("--sample", action="store_true", help="run on the bundled sample crawl, written to OUTPUT/input/")
    parser.add_argument(
        "--models-dir",
        help="classifier models (page_type/, clutter/, topic/); default: config models.model_dir if it holds "
        "models, else bootstrapped from this run's stage 1 output into OUTPUT/classifiers",
    )
    parser.add_argument("--tokenizer", help="Hugging Face tokenizer directory; default: train one into OUTPUT/tokenizer")
    add_common_arguments(parser, "models.clutter_threshold=0.4")


def run_pipeline(
    spark, inputs: list[str], output_dir: str, config: Config,
    models_dir: str | None = None, tokenizer_dir: str | None = None,
) -> dict[str, Any]:
    """Run every stage not yet committed under `output_dir`; returns run.json's content.

    A second run on the same `output_dir` while this one runs is refused (ConfigError naming this one).
    """
    with DirectoryLock(output_dir):
        return _run_stages(spark, inputs, output_dir, config, models_dir, tokenizer_dir)


def _run_stages(
    spark, inputs: list[str], output_dir: str, config: Config, models_dir: str | None, tokenizer_dir: str | None
) -> dict[str, Any]:
    from jobs.export import run_export
    from jobs.models import run_models
    from jobs.prepare import run_prepare
    from jobs.rules import run_rules
    from jobs.tokenizer import run_tokenizer_train
    from pipeline.report import write_report

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    run_info = _start_run_info(out, inputs, config)
    dirs = {stage: str(out / stage) for stage in STAGES}
    models_dir = models_dir or _configured_models_dir(config) or dirs["classifiers"]
    tokenizer_dir = tokenizer_dir or dirs["tokenizer"]

    steps = {
        "prepare": lambda: run_prepare(spark, inputs, dirs["prepare"], config),
        "rules": lambda: run_rules(spark, dirs["prepare"], dirs["rules"], config),
        "classifiers": lambda: _bootstrap_classifiers(dirs["prepare"], dirs["classifiers"], config),
        "models": lambda: run_models(spark, dirs["rules"], dirs["models"], config, models_dir=models_dir),
        "tokenizer": lambda: run_tokenizer_train(spark, dirs["models"], dirs["tokenizer"], config),
        "export": lambda: run_export(spark, dirs["models"], dirs["export"], tokenizer_dir, config),
    }
    skipped = {
        "classifiers": models_dir != dirs["classifiers"],
        "tokenizer": tokenizer_dir != dirs["tokenizer"],
    }
    for stage in STAGES:
        if skipped.get(stage) or StageOutput(dirs[stage]).committed:
            continue
        print_stage_start(stage)
        started = time.time()
        stats = steps[stage]()
        seconds = time.time() - started
        run_info["seconds_per_stage"][stage] = round(seconds, 3)
        _write_run_info(out, run_info)
        print_stage_summary(stage, stats, seconds)
        crash_point(f"run:after_{stage}")
    write_report(out)
    return run_info


def _start_run_info(out: Path, inputs: list[str], config: Config) -> dict[str, Any]:
    """run.json of an earlier attempt, checked to be the same run; a fresh one otherwise."""
    path = out / "run.json"
    fresh = {"inputs": list(inputs), "config_digest": config.digest(), "seconds_per_stage": {}}
    if not path.is_file():
        _write_run_info(out, fresh)
        return fresh
    earlier = json.loads(path.read_text())
    for key in ("inputs", "config_digest"):
        if earlier.get(key) != fresh[key]:
            raise ConfigError(
                f"{out} holds a run with other {key.replace('_', ' ')} ({earlier.get(key)!r}); "
                "use a new --output directory or delete the old run"
            )
    return earlier


def _write_run_info(out: Path, run_info: dict[str, Any]) -> None:
    tmp = out / "run.json.tmp"
    tmp.write_text(json.dumps(run_info, indent=2, sort_keys=True) + "\n")
    tmp.replace(out / "run.json")


def _configured_models_dir(config: Config) -> str | None:
    """config models.model_dir when it holds a page-type model, else None (bootstrap one)."""
    path = Path(config.resolve_path(config.models.model_dir))
    return str(path) if (path / config.models.page_type_model).is_dir() else None


def _bootstrap_classifiers(prepare_dir: str, output_dir: str, config: Config) -> dict[str, Any]:
    """The default fastText models, weak-labelled on this run's stage 1 documents, committed like a stage."""
    from classifiers.bootstrap import bootstrap
    from classifiers.topic import load_taxonomy

    output = StageOutput(output_dir)
    output.begin()
    taxonomy = load_taxonomy(config.resolve_path(config.models.topics_file) or None)
    summary = bootstrap([prepare_dir], output.staging, taxonomy, seed=config.models.rebalance_seed)
    stats = {
        "documents_in": summary["documents"],
        "documents_out": summary["documents"],  # every sampled document was weak-labelled
        "rejects_by_rule": {},
        "models": summary["models"],
    }
    output.commit(stats)
    return stats


def run(args: argparse.Namespace) -> int:
    with DirectoryLock(args.output):  # before anything is written or Spark starts: a second run refuses at once
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    inputs = list(args.inputs)
    if args.sample:
        if inputs:
            raise ConfigError("give INPUT files or --sample, not both")
        from pipeline.sample_crawl import write_sample_crawl

        inputs = write_sample_crawl(str(Path(args.output) / "input"))
    if not inputs:
        raise ConfigError("no INPUT given (or pass --sample for the bundled sample crawl)")
    from pipeline.archive_sniff import check_archive_inputs
    from pipeline.inputs import expand_inputs

    # A missing or non-WARC local input fails here, before Spark starts.
    check_archive_inputs(expand_inputs(inputs, config.prepare.path_prefix))
    spark = spark_session("thresher-run", config.spark, args.master)
    run_info = run_pipeline(spark, inputs, args.output, config, args.models_dir, args.tokenizer)
    total = sum(run_info["seconds_per_stage"].values())
    export_stats = read_stats(Path(args.output) / "export")
    print(
        f"[thresher] run finished in {total:.1f}s; report: {Path(args.output).resolve() / 'report.html'}; "
        f"exported {export_stats.get('tokens', export_stats.get('documents_out', '?'))} tokens",
        file=sys.stderr,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return script_main("thresher run", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
