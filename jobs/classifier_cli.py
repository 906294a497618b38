"""`thresher classifiers train|eval|bootstrap`: fit a classifier on labelled data, re-measure a saved
one, or make the three default stage 3 models from a crawl with weak labels.

The driver of the library in classifiers/ (which imports nothing from jobs/). Not named
classifiers.py: `python jobs/<job>.py` puts jobs/ first on sys.path, where it would shadow the
classifiers package.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import yaml

from thresher.classifiers.base import BACKENDS, METRICS_NAME
from thresher.classifiers.tasks import TASKS
from thresher.jobs.stage_job import add_common_arguments, config_from_args, script_main


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    train = _action(actions, "train", "train a classifier on labelled JSONL/Parquet (text, label)")
    train.add_argument("--data", nargs="+", required=True, help="labelled JSONL or Parquet files/directories")
    train.add_argument("--output", required=True, help="model directory to write (model, classifier.json, metrics.json)")
    train.add_argument("--backend", choices=sorted(BACKENDS), default="fasttext", help="classifier backend (default: fasttext)")
    train.add_argument(
        "--task",
        choices=TASKS,
        default="plain",
        help="how rows become model inputs: page_type uses `url` too, clutter takes one line per row (default: plain)",
    )
    train.add_argument("--text-field", default="text", help="field holding the text (default: text)")
    train.add_argument("--label-field", default="label", help="field holding the label (default: label)")
    train.add_argument("--holdout", type=float, default=0.1, help="fraction held out for evaluation (default: 0.1)")
    train.add_argument("--seed", type=int, default=0, help="seed for the split and training (default: 0)")
    train.add_argument("--base-model", help="transformers: local directory of the checkpoint to fine-tune")
    train.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="backend option, e.g. epoch=10 or lr=3e-5 (YAML value)"
    )

    evaluate = _action(actions, "eval", "measure a saved classifier (reproduces metrics.json by default)")
    evaluate.add_argument("model", metavar="MODEL_DIR", help="model directory written by train or bootstrap")
    evaluate.add_argument("--data", nargs="*", help="labelled data (default: the data the model was trained on)")
    evaluate.add_argument("--split", choices=("heldout", "all"), default="heldout", help="rows to measure on (default: heldout)")

    boot = _action(actions, "bootstrap", "weak-label a crawl with transparent rules and train the default fastText models")
    boot.add_argument("--input", nargs="+", required=True, help="stage output dirs, Parquet, JSONL or WARC files")
    boot.add_argument("--output", required=True, help="models directory to write (page_type/, clutter/, topic/, weak_labels/)")
    boot.add_argument("--max-documents", type=int, default=50_000, help="documents sampled from the input (default: 50000)")
    boot.add_argument("--max-lines-per-label", type=int, default=200_000, help="clutter lines kept per label (default: 200000)")
    boot.add_argument("--holdout", type=float, default=0.1, help="fraction held out for evaluation (default: 0.1)")
    boot.add_argument("--seed", type=int, default=0, help="seed for sampling, split and training (default: 0)")
    boot.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="fastText option for all three models, e.g. dim=64"
    )
    add_common_arguments(boot, "tag.topics_file=my_topics.yaml")


def _action(actions, name: str, text: str) -> argparse.ArgumentParser:
    """A subcommand whose one-line help is also its --help description."""
    return actions.add_parser(name, help=text, description=text)


def _params(items: list[str]) -> dict:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--param expects KEY=VALUE, got {item!r}")
        params[key.strip()] = yaml.safe_load(value)
    return params


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _say_figures(what: str, metrics: dict) -> None:
    """The figures with their intervals, and each warning, one line each on the console."""
    from thresher.pipeline.figures import figure_text

    print(f"[thresher] {what} {figure_text(metrics)}", file=sys.stderr)
    for warning in metrics.get("warnings", []):
        print(f"[thresher] warning: {warning}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from thresher.classifiers.base import backend_class
    from thresher.classifiers.training import (
        evaluate_saved,
        read_labelled,
        read_line_documents,
        train_and_save,
        train_and_save_documents,
    )
    from thresher.pipeline.config import ConfigError

    if args.action == "train":
        params = _params(args.param)
        if args.base_model:
            params["base_model"] = str(Path(args.base_model).resolve())
        if getattr(backend_class(args.backend), "scores_documents", False):
            if args.task != "clutter":
                raise ConfigError(f"the {args.backend} backend scores the lines of documents: use it with --task clutter")
            documents = read_line_documents(args.data, args.text_field, args.label_field)
            record = train_and_save_documents(
                args.backend, documents, args.output, params, args.holdout, args.seed, args.data, args.text_field, args.label_field
            )
            print(json.dumps(record["heldout"], indent=2))
            _say_figures("classifiers train: held-out", record["heldout"])
            return 0
        data = read_labelled(args.data, args.text_field, args.label_field, args.task)
        if data.skipped:
            reasons = ", ".join(f"{count:,} with {reason}" for reason, count in data.skipped.items())
            print(f"[thresher] classifiers train: {len(data):,} labelled rows; skipped {reasons}", file=sys.stderr)
        record = train_and_save(
            args.backend, data, args.output, params, args.holdout, args.seed, args.data, None, args.text_field, args.label_field, args.task
        )
        print(json.dumps(record["heldout"], indent=2))
        _say_figures("classifiers train: held-out", record["heldout"])
        return 0
    if args.action == "eval":
        metrics = evaluate_saved(args.model, args.data, args.split)
        print(json.dumps(metrics, indent=2))
        _say_figures(f"classifiers eval: {'held-out' if args.split == 'heldout' else 'all rows'}"
                     f"{' of ' + ', '.join(args.data) if args.data else ''}", metrics)
        if args.split == "heldout" and not args.data:
            recorded = json.loads((Path(args.model) / METRICS_NAME).read_text())["heldout"]
            matches = all(_same(metrics.get(k), v) for k, v in recorded.items())
            print(f"{'reproduces' if matches else 'DIFFERS FROM'} {Path(args.model) / METRICS_NAME}", file=sys.stderr)
            return 0 if matches else 1
        return 0
    return _bootstrap(args)


def _bootstrap(args: argparse.Namespace) -> int:
    from thresher.classifiers.bootstrap import bootstrap
    from thresher.classifiers.topic import load_taxonomy

    config = config_from_args(args)
    taxonomy = load_taxonomy(config.resolve_path(config.tag.topics_file) or None)
    prepare_config = None
    if any(".warc" in Path(p).name.lower() or Path(p).name.lower().endswith((".arc", ".arc.gz")) for p in args.input):
        from thresher.jobs.prepare import resolved_prepare_config

        prepare_config = resolved_prepare_config(config)
    summary = bootstrap(
        args.input,
        args.output,
        taxonomy,
        prepare_config,
        args.max_documents,
        args.max_lines_per_label,
        args.holdout,
        args.seed,
        _params(args.param),
    )
    from thresher.pipeline.figures import figure_text

    for name, model in summary["models"].items():
        heldout = model["heldout"]
        print(
            f"[thresher] {name}: {sum(model['weak_label_counts'].values())} weak labels in {len(model['weak_label_counts'])} classes, "
            f"held-out {figure_text(heldout)}",
            file=sys.stderr,
        )
        for warning in heldout.get("warnings", []):
            print(f"[thresher] warning: {name}: {warning}", file=sys.stderr)
    print(f"[thresher] models written to {Path(args.output).resolve()}; point tag.model_dir there", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return script_main("thresher classifiers", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
