"""The `thresher` command: one subcommand per job, each module imported only when chosen."""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Each module has add_arguments(parser) and run(args) -> int.
SUBCOMMANDS = {
    "run": ("jobs.run", "the whole pipeline: stage 1, 2, 3 (tag, select) and export in turn, rerunning only changed stages, with report.html"),
    "prepare": ("jobs.prepare", "stage 1: WARC records -> extracted, language-identified, exact-deduplicated documents"),
    "sample-crawl": ("pipeline.sample_crawl", "write the bundled sample crawl (WARC files whose pages exercise every rule)"),
    "rules": ("jobs.rules", "stage 2: cross-document line dedup, heuristic filters, MinHash-LSH fuzzy dedup"),
    "tag": ("jobs.tag", "stage 3a: run every tagger (page type, line clutter, topic, quality ...) and keep its scores as columns"),
    "select": ("jobs.selection", "stage 3b: keep rules, line removal and target-mix rebalancing on the tag columns (no model runs)"),
    "models": ("jobs.models", "stage 3 in one command: tag, then select"),
    "classifiers": ("classifiers.cli", "stage 3 models: `train` on labelled data, `eval` a saved model, `bootstrap` defaults from a crawl"),
    "tokenizer": ("jobs.tokenizer", "tokenizer: `train` a byte-level BPE on a sample of a stage's documents"),
    "export": ("jobs.export", "export: documents -> tokenized, packed, shuffled Parquet shards and manifest.json"),
    "train": ("trainer.cli", "train the bundled dots.llm1-style MoE model on exported token shards"),
    "train-export": ("trainer.export_hf", "convert a training checkpoint to the Hugging Face Dots1 format"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thresher", description="Web-scale pretraining data pipeline on Spark.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module_name).add_arguments(sub_parser)
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
    try:
        return module.run(args)
    except _user_errors() as exc:
        # Bad config, inputs or model paths: the message says what to fix; a traceback would bury it.
        print(f"thresher {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _user_errors() -> tuple[type[Exception], ...]:
    from classifiers.base import ModelNotFoundError
    from classifiers.topic import TaxonomyError
    from pipeline.config import ConfigError
    from pipeline.inputs import InputError

    return ConfigError, InputError, ModelNotFoundError, TaxonomyError
