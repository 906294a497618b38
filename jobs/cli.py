"""The `thresher` command: one subcommand per job, each module imported only when chosen."""

from __future__ import annotations

import argparse
import importlib
import sys

from thresher.jobs.errors import run_with_one_line_errors
from thresher.schemas.stats import thresher_version

# name -> (module, one-line help). Each module has add_arguments(parser) and run(args) -> int, or is a
# stage job (jobs.stage_job.StageJob) named JOB that has them.
SUBCOMMANDS = {
    "run": ("thresher.jobs.run", "the whole pipeline: stage 1, 2, 3 (tag, select) and export in turn, rerunning only changed stages, with report.html"),
    "sweep": ("thresher.jobs.sweep", "one setting at several values, each a run sharing the stages it does not change, "
              "with a table comparing the outputs"),
    "prepare": ("thresher.jobs.prepare", "stage 1: WARC records -> extracted, language-identified, exact-deduplicated documents"),
    "sample-crawl": ("thresher.pipeline.prepare.sample_crawl", "write the bundled sample crawl (WARC files whose pages exercise every rule)"),
    "rules": ("thresher.jobs.rules", "stage 2: cross-document line dedup, heuristic filters, MinHash-LSH fuzzy dedup"),
    "tag": ("thresher.jobs.tag", "stage 3a: run every tagger (page type, line clutter, topic, quality ...) and keep its scores as columns"),
    "select": ("thresher.jobs.selection", "stage 3b: keep rules, line removal and target-mix rebalancing on the tag columns (no model runs)"),
    "tag-select": ("thresher.jobs.tag_select", "stage 3 in one command: tag, then select"),
    "classifiers": ("thresher.jobs.classifier_cli", "stage 3 models: `train` on labelled data, `eval` a saved model, `bootstrap` defaults from a crawl"),
    "annotate": ("thresher.classifiers.annotate", "labels for a stage 3 classifier from a local LLM, by scoring each allowed label"),
    "tokenizer": ("thresher.jobs.tokenizer", "tokenizer: `train` a byte-level BPE on a sample of a stage's documents"),
    "export": ("thresher.jobs.export", "export: documents -> tokenized, packed, shuffled Parquet shards and manifest.json"),
    "train": ("thresher.trainer.cli", "train the bundled dots.llm1-style MoE model on exported token shards: one process, "
              "or one per GPU under torchrun (torchrun --nproc_per_node N \"$(which thresher)\" train ...)"),
    "train-export": ("thresher.trainer.export_hf", "convert a training checkpoint to the Hugging Face Dots1 format"),
    "config": ("thresher.jobs.config_show", "`show` the effective config (defaults, --config file, --set overrides) as YAML"),
}
# Commands renamed because the old name misled: old name -> new name. The old name still runs the command,
# with one line saying so.
RENAMED = {"models": "tag-select"}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thresher", description="Web-scale pretraining data pipeline on Spark.")
    parser.add_argument("--version", action="version", version=f"thresher {thresher_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            _command(importlib.import_module(module_name)).add_arguments(sub_parser)
    for old, new in RENAMED.items():
        help_text = f"the old name of `thresher {new}` (still works)"
        sub_parser = sub.add_parser(old, help=help_text, description=help_text)
        if old == command:
            _command(importlib.import_module(SUBCOMMANDS[new][0])).add_arguments(sub_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in SUBCOMMANDS or command in RENAMED else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command in RENAMED:
        print(f"[thresher] `thresher {args.command}` is now `thresher {RENAMED[args.command]}`; "
              "the old name still works", file=sys.stderr)
        args.command = RENAMED[args.command]
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    return run_with_one_line_errors(f"thresher {args.command}", _command(module).run, args)


def _command(module):
    """What runs a subcommand's module: its stage job, or the module itself."""
    return getattr(module, "JOB", module)
