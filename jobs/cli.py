"""The `thresher` command: one subcommand per job, each module imported only when chosen."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import re
import sys

from schemas.stats import StatsError, thresher_version

# name -> (module, one-line help). Each module has add_arguments(parser) and run(args) -> int, or is a
# stage job (jobs.common.StageJob) named JOB that has them.
SUBCOMMANDS = {
    "run": ("jobs.run", "the whole pipeline: stage 1, 2, 3 (tag, select) and export in turn, rerunning only changed stages, with report.html"),
    "prepare": ("jobs.prepare", "stage 1: WARC records -> extracted, language-identified, exact-deduplicated documents"),
    "sample-crawl": ("pipeline.sample_crawl", "write the bundled sample crawl (WARC files whose pages exercise every rule)"),
    "rules": ("jobs.rules", "stage 2: cross-document line dedup, heuristic filters, MinHash-LSH fuzzy dedup"),
    "tag": ("jobs.tag", "stage 3a: run every tagger (page type, line clutter, topic, quality ...) and keep its scores as columns"),
    "select": ("jobs.selection", "stage 3b: keep rules, line removal and target-mix rebalancing on the tag columns (no model runs)"),
    "models": ("jobs.models", "stage 3 in one command: tag, then select"),
    "classifiers": ("jobs.classifier_cli", "stage 3 models: `train` on labelled data, `eval` a saved model, `bootstrap` defaults from a crawl"),
    "annotate": ("classifiers.annotate", "labels for a stage 3 classifier from a local LLM, by scoring each allowed label"),
    "tokenizer": ("jobs.tokenizer", "tokenizer: `train` a byte-level BPE on a sample of a stage's documents"),
    "export": ("jobs.export", "export: documents -> tokenized, packed, shuffled Parquet shards and manifest.json"),
    "train": ("trainer.cli", "train the bundled dots.llm1-style MoE model on exported token shards: one process, "
              "or one per GPU under torchrun (torchrun --nproc_per_node N \"$(which thresher)\" train ...)"),
    "train-export": ("trainer.export_hf", "convert a training checkpoint to the Hugging Face Dots1 format"),
    "config": ("jobs.config_show", "`show` the effective config (defaults, --config file, --set overrides) as YAML"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thresher", description="Web-scale pretraining data pipeline on Spark.")
    parser.add_argument("--version", action="version", version=f"thresher {thresher_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            _command(importlib.import_module(module_name)).add_arguments(sub_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    return run_with_one_line_errors(f"thresher {args.command}", _command(module).run, args)


def _command(module):
    """What runs a subcommand's module: its stage job, or the module itself."""
    return getattr(module, "JOB", module)


def run_with_one_line_errors(prog: str, run, args: argparse.Namespace) -> int:
    """`run(args)`, with a user's error or a full disk printed as one line (exit 2 and 1) instead of a traceback."""
    try:
        return run(args)
    except _user_errors() as exc:
        # Bad config, inputs or model paths: the message says what to fix; a traceback would bury it.
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before Spark started (then jobs.common handles Ctrl-C)
        from jobs.common import INTERRUPTED_EXIT, INTERRUPTED_MESSAGE

        print(INTERRUPTED_MESSAGE, file=sys.stderr, flush=True)
        return INTERRUPTED_EXIT
    except Exception as exc:
        if (message := _task_user_error(exc)) is not None:
            print(f"{prog}: error: {message}", file=sys.stderr)
            return 2
        full = _full_directory(exc, getattr(args, "output", None))
        if full is None:
            raise
        # Committed stages stay committed and stage 1 keeps its finished files, so a rerun goes on.
        print(f"{prog}: error: no space left on the device holding {full}: free space there "
              "and rerun the same command; it goes on from where this one stopped", file=sys.stderr)
        return 1


# A user's error raised in a Spark task (a bad JSONL line met while reading) reaches the driver as
# the text of the worker's traceback, whose last line is "pipeline.inputs.InputError: <message>".
_TASK_USER_ERROR = re.compile(r"^(?:pipeline\.inputs\.InputError|pipeline\.config\.ConfigError): (.+)$", re.MULTILINE)


def _task_user_error(exc: Exception) -> str | None:
    """The message of a user's error that a Spark task raised, else None."""
    match = _TASK_USER_ERROR.search(str(exc))
    return match.group(1).strip() if match else None


_NO_SPACE = re.compile(r"No space left on device(?:: '([^']+)')?|Disk quota exceeded(?:: '([^']+)')?")


def _full_directory(exc: Exception, output: str | None) -> str | None:
    """The directory a disk-full failure was writing (else `output`, else "the output directory"); None if
    `exc` is no disk-full failure. Spark reports one from an executor or the JVM as text, not as an OSError."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        path = exc.filename
    elif match := _NO_SPACE.search(str(exc)):
        path = match.group(1) or match.group(2)
    else:
        return None
    if path:
        return os.path.dirname(os.path.abspath(path)) if not os.path.isdir(path) else os.path.abspath(path)
    return os.path.abspath(output) if output else "the output directory"


def _user_errors() -> tuple[type[Exception], ...]:
    from classifiers.base import ModelNotFoundError
    from classifiers.topic import TaxonomyError
    from pipeline.config import ConfigError
    from pipeline.inputs import InputError

    return ConfigError, InputError, ModelNotFoundError, TaxonomyError, StatsError
