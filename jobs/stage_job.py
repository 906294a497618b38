"""A stage as a command: common options, the config, console lines, reject rows and `StageJob`."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from thresher.jobs.documents_input import source_from_args
from thresher.jobs.errors import run_with_one_line_errors
from thresher.jobs.session import spark_session
from thresher.pipeline.config import Config, ConfigError, load_config, load_yaml
from thresher.pipeline.locations import resolve_location
from thresher.pipeline.stagedir import StageOutput
from thresher.pipeline.stagedir.lock import DirectoryLock
from thresher.schemas.rejects import CONTENT_SNIPPET_CHARS, REJECT, is_line_rule


def add_common_arguments(parser: argparse.ArgumentParser, set_example: str = "prepare.lang_threshold=0.7") -> None:
    """--config, --master and --set, the options every Spark job takes; `set_example` fits the job."""
    parser.add_argument("--config", help="YAML config file (default: configs/default.yaml)")
    parser.add_argument("--master", help="Spark master URL, e.g. local[4] or spark://host:7077 (default: from config)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override one config value, e.g. --set {set_example} (VALUE is parsed as YAML; repeatable)",
    )


# The options that name paths (a job has some of them): made absolute (pipeline.locations) before anything
# reads them, so that no task resolves a path against a working directory of its own.
PATH_OPTIONS = ("input", "input_dir", "inputs", "output", "models_dir", "tokenizer")
# Of those, the ones every stage's tasks read or write, by the name a user's error gives them; prepare
# names its INPUT files itself (a listing's entries, not the listing), in its `executor_paths`.
_TASK_PATH_OPTIONS = {"input": "INPUT", "input_dir": "INPUT", "output": "--output"}


def resolve_path_options(args: argparse.Namespace) -> None:
    """Every path option of `args` (PATH_OPTIONS) as an absolute location, in place."""
    for name in PATH_OPTIONS:
        value = getattr(args, name, None)
        if isinstance(value, str):
            setattr(args, name, resolve_location(value))
        elif isinstance(value, list):
            setattr(args, name, [resolve_location(item) for item in value])


def script_main(prog: str, doc: str, add_arguments, run, argv: list[str] | None = None) -> int:
    """What `spark-submit jobs/<job>.py ...` runs: the job's own parser and run, as `thresher <job>`."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    add_arguments(parser)
    return run_with_one_line_errors(prog, run, parser.parse_args(argv))


def config_from_args(args: argparse.Namespace) -> Config:
    """The checked Config named by --config and --set; raises ConfigError before any work starts."""
    overrides = {}
    for item in args.overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = load_yaml(value)
    return load_config(args.config, overrides)


def print_stage_start(stage: str, detail: str = "") -> None:
    """The line printed as each stage starts, before Spark's progress bar for it."""
    print(f"[thresher] {stage}: starting{' (' + detail + ')' if detail else ''}", file=sys.stderr, flush=True)


def print_stage_summary(stage: str, stats: dict[str, Any], seconds: float) -> None:
    """The one-line summary printed as each stage finishes."""
    print(stage_summary(stage, stats, seconds), file=sys.stderr)


def stage_summary(stage: str, stats: dict[str, Any], seconds: float) -> str:
    """`[thresher] rules: 54 in, 48 out, 6 rejected, 12 lines removed, 16.6s`: lines removed from
    kept documents are said apart, never added to the documents rejected."""
    by_rule = stats["rejects_by_rule"]
    lines = sum(n for rule, n in by_rule.items() if is_line_rule(rule))
    return (
        f"[thresher] {stage}: {stats['documents_in']} in, "
        f"{stats['documents_out']} out, {sum(by_rule.values()) - lines} rejected, "
        + (f"{lines} lines removed, " if lines else "")
        + f"{seconds:.1f}s"
    )


def reject_rows(frame, stage: str, rule, detail, content=None):
    """`frame`'s rows as reject rows (schemas.rejects.REJECT, its column order and types): doc_id, url
    and warc_path from `frame`; `rule` a rule name or a Column; `detail` a Column; `content` a
    Column, by default the start of `text` (CONTENT_SNIPPET_CHARS)."""
    from pyspark.sql import Column
    from pyspark.sql import functions as F

    from thresher.schemas import to_spark_schema

    values = {
        "doc_id": F.col("doc_id"),
        "url": F.col("url"),
        "warc_path": F.col("warc_path"),
        "stage": F.lit(stage),
        "rule": rule if isinstance(rule, Column) else F.lit(rule),
        "detail": detail,
        "content": F.substring("text", 1, CONTENT_SNIPPET_CHARS) if content is None else content,
    }
    return frame.select(*[values[f.name].cast(f.dataType).alias(f.name) for f in to_spark_schema(REJECT).fields])


@dataclass(frozen=True)
class StageJob:
    """A stage as a command, `thresher <stage>` and `spark-submit jobs/<job>.py` alike.

    The stage brings its own options, its checks and its work; the rest every stage does the same
    way: --config/--master/--set, the config (its ranges checked as it is built), the checks before
    Spark starts, the start line, the session, the lock on --output, the summary line, and a user's
    error as one line (jobs.errors.run_with_one_line_errors).
    """

    stage: str  # names the start and summary lines and the Spark application
    prog: str  # e.g. "thresher rules"
    doc: str  # the job module's docstring; its first line describes the command in --help
    arguments: Callable[[argparse.ArgumentParser], argparse.ArgumentParser | None]  # INPUT, --output, ...; a
    # subcommand's parser when the common options go there (`tokenizer train`)
    set_example: str  # the --set example in --help
    # The stage under the lock on --output: its stats, or None where it printed its own summaries.
    work: Callable[[Any, argparse.Namespace, Config], dict[str, Any] | None]
    # What else is knowable before Spark starts (models, settings, a stage's own inputs): raises the
    # one-line errors; returns the start line's detail, or None.
    check: Callable[[argparse.Namespace, Config], str | None] = lambda args, config: None
    # The option holding a documents INPUT (jobs.documents_input), checked after `check`, before
    # Spark starts; it is the start line's detail when `check` gives none.
    documents_input: str = ""
    # --set items an option of the stage implies (`--seq-len N`): applied after --set, so they win.
    implied_overrides: Callable[[argparse.Namespace], list[str]] = lambda args: []
    # The paths the stage's tasks open besides INPUT and --output (input files, the config's lists,
    # models) as (option or config key, resolved path) pairs; run after `check`. Under a master whose
    # executors run elsewhere, each must be on storage every node sees (jobs.session).
    executor_paths: Callable[[argparse.Namespace, Config], list[tuple[str, str]]] = lambda args, config: []

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_common_arguments(self.arguments(parser) or parser, self.set_example)

    def run(self, args: argparse.Namespace) -> int:
        args.overrides = [*(args.overrides or []), *self.implied_overrides(args)]
        config = config_from_args(args)
        resolve_path_options(args)
        detail = self.check(args, config)
        if self.documents_input:
            source_from_args(args, getattr(args, self.documents_input))
            detail = detail or getattr(args, self.documents_input)
        if StageOutput(args.output).committed:  # before the lock and Spark: nothing would be written
            raise ConfigError(f"--output {args.output} holds a committed {self.stage} output already: "
                              "choose another --output, or delete that directory to run the stage again")
        task_paths = [(label, getattr(args, name)) for name, label in _TASK_PATH_OPTIONS.items() if hasattr(args, name)]
        task_paths += self.executor_paths(args, config)
        started = time.perf_counter()
        with DirectoryLock(args.output):  # before Spark's start-up: a second run on --output is refused at once
            print_stage_start(self.stage, detail or "")
            spark = spark_session(f"thresher-{self.stage.split()[0]}", config.spark, args.master,
                                  executor_paths=task_paths)
            stats = self.work(spark, args, config)
        if stats is not None:
            print_stage_summary(self.stage, stats, time.perf_counter() - started)
        return 0

    def main(self, argv: list[str] | None = None) -> int:
        return script_main(self.prog, self.doc, self.add_arguments, self.run, argv)
