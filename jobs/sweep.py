"""thresher sweep: one setting at N values, each a `thresher run` of its own, sharing every stage the
setting does not change, with a table comparing the outputs.

    thresher sweep INPUT... --output DIR --set-values select.line_thresholds.clutter=0,0.3,0.5 [--set ...]

Layout of DIR:
    KEY=VALUE/    one run directory per value (as `thresher run` writes one, report.html included)
    sweep.json    per value: documents selected, tokens exported (padding left out), rejects by rule, the
                  stages it ran, seconds
    sweep.md      the same as a Markdown table (also printed)

The first value's run computes every stage. Each later value's run directory links (a symlink) each
stage the setting does not change (jobs.run: STAGE_SETTINGS, STAGE_INPUTS) to the first value's committed
one, and runs only the others: a select.* sweep tags once and trains one tokenizer, so every value's
shards decode with the same tokenizer. A value's run that later reruns a linked stage (another setting
changed) writes its own directory and leaves the first value's alone. Rerunning a sweep reruns nothing
that is committed with the same settings; a new value adds a directory. DIR must be a local directory
(links are a filesystem's). Values are YAML scalars, split at commas.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from thresher.jobs.documents_input import add_field_arguments
from thresher.jobs.run import STAGES, checked_run_inputs, rerun_reasons, run_pipeline
from thresher.jobs.session import spark_session
from thresher.jobs.stage_job import add_common_arguments, config_from_args, resolve_path_options, script_main
from thresher.pipeline.config import Config, ConfigError
from thresher.pipeline.stagedir import StageOutput, is_local, read_commit, storage
from thresher.pipeline.stagedir.documents import FieldMapping
from thresher.pipeline.stagedir.lock import DirectoryLock
from thresher.schemas.rejects import is_line_rule
from thresher.schemas.stats import read_stats

SWEEP_FILE = "sweep.json"
TABLE_FILE = "sweep.md"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="as `thresher run` takes them")
    parser.add_argument("--output", required=True, help="sweep directory: one run directory per value, sweep.json, sweep.md")
    parser.add_argument(
        "--set-values", required=True, metavar="KEY=V1,V2,...",
        help="the setting swept and its values, e.g. select.line_thresholds.clutter=0,0.3,0.5 (each parsed as YAML)",
    )
    parser.add_argument("--sample", action="store_true", help="sweep the bundled sample crawl, written to OUTPUT/input/")
    parser.add_argument("--models-dir", help="as `thresher run --models-dir`")
    parser.add_argument("--tokenizer", help="as `thresher run --tokenizer`")
    add_common_arguments(parser, "tag.batch_size=64")
    add_field_arguments(parser)  # for a documents INPUT


def parse_set_values(item: str) -> tuple[str, list[str]]:
    """`KEY=V1,V2,...` as the key and the values' texts, in order; a value twice, or one that cannot name a
    directory, is refused."""
    key, sep, values = item.partition("=")
    texts = [value.strip() for value in values.split(",")]
    if not sep or not key.strip() or not all(texts):
        raise ConfigError(f"--set-values expects KEY=V1,V2,..., got {item!r}")
    if len(set(texts)) != len(texts):
        raise ConfigError(f"--set-values: a value is given twice in {item!r}")
    if any("/" in text or text.startswith(".") for text in texts):
        raise ConfigError(f"--set-values: each value names a directory ({key.strip()}=VALUE): no '/' or leading '.'")
    return key.strip(), texts


def point_name(key: str, text: str) -> str:
    return f"{key}={text}"


def shared_stages(key: str) -> list[str]:
    """The stages whose output a change of `key` leaves as it is; ConfigError when that is every stage."""
    changed = rerun_reasons([key])
    if not changed:
        raise ConfigError(f"--set-values: {key} changes no stage's output (no stage reads it, or it is speed-only): "
                          "nothing to compare")
    return [stage for stage in STAGES if stage not in changed]


def link_shared(first: Path, point: Path, stages: list[str]) -> list[str]:
    """Link each of `stages` committed in `first` into `point`, where it is not there already; the stages linked."""
    point.mkdir(parents=True, exist_ok=True)
    linked = []
    for stage in stages:
        target = first / stage
        if StageOutput(str(target)).committed and not os.path.lexists(point / stage):
            (point / stage).symlink_to(os.path.relpath(target, point), target_is_directory=True)
            linked.append(stage)
    return linked


def run_sweep(
    spark, inputs: list[str], output_dir: str, key: str, points: list[tuple[str, Config]],
    models_dir: str | None = None, tokenizer_dir: str | None = None, documents_fields: FieldMapping | None = None,
) -> dict[str, Any]:
    """Run each (value text, config) of `points` into OUTPUT/KEY=VALUE, the later ones sharing the first's
    stages that `key` does not change; writes and returns sweep.json's content."""
    out = Path(output_dir)
    shared = shared_stages(key)
    first = out / point_name(key, points[0][0])
    rows = []
    for index, (text, config) in enumerate(points):
        point = out / point_name(key, text)
        linked = link_shared(first, point, shared) if index else []
        if linked:
            print(f"[thresher] sweep {key}={text}: sharing {', '.join(linked)} of {first.name}", file=sys.stderr)
        started = time.time()
        info = run_pipeline(spark, inputs, str(point), config, models_dir, tokenizer_dir, documents_fields=documents_fields)
        rows.append(_point_row(point, key, text, info["stages_run"], time.time() - started))
    summary = {"key": key, "shared_stages": shared, "points": rows}
    (out / SWEEP_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    table = sweep_table(summary)
    (out / TABLE_FILE).write_text(table, encoding="utf-8")
    print(table, end="")
    return summary


def _point_row(point: Path, key: str, text: str, stages_run: list[str], seconds: float) -> dict[str, Any]:
    select, export = (read_stats(str(point / stage)) for stage in ("select", "export"))
    tokenizer = read_stats(str(point / "tokenizer")) if (point / "tokenizer").exists() else None  # not with --tokenizer
    return {
        "value": text,
        "directory": point.name,
        "documents": select["documents_out"],
        "tokens": export["details"]["tokens"] - export["details"]["padding_tokens"],  # the documents' own, EOS included
        "rejects_by_rule": select["rejects_by_rule"],
        "tokenizer_sha256": tokenizer["details"]["sha256"] if tokenizer else None,
        "stages_run": stages_run,
        "seconds": round(seconds, 3),
    }


def sweep_table(summary: dict[str, Any]) -> str:
    """sweep.json as a Markdown table: one row per value, one column per select reject rule (documents
    dropped; `lines` for a rule that removes lines from kept documents)."""
    rules = sorted({rule for row in summary["points"] for rule in row["rejects_by_rule"]})
    header = ["value", "documents", "tokens (no padding)", *(f"{rule} ({'lines' if is_line_rule(rule) else 'documents'})" for rule in rules),
              "stages run", "seconds"]
    lines = [f"{summary['key']}: shared {', '.join(summary['shared_stages']) or 'nothing'}", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in summary["points"]:
        cells = [row["value"], f"{row['documents']:,}", f"{row['tokens']:,}",
                 *(f"{row['rejects_by_rule'].get(rule, 0):,}" for rule in rules),
                 ", ".join(row["stages_run"]) or "none", f"{row['seconds']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def first_copy_tokens(export_dir: str | os.PathLike) -> dict[str, list[int]]:
    """doc_id -> the token ids of its first exported copy, EOS included, put together from the shards as
    the export's document index places them: what the sweep's tests and bench decode with one tokenizer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    commit = read_commit(export_dir)
    manifest = json.loads(commit.fs.cat_file(commit.path("manifest.json")))
    columns = ["doc_id", "copy", "piece", "shard", "sequence", "token_start", "token_end"]
    index = []
    for part in commit.parts(manifest["document_index"]["path"]):
        with commit.fs.open(commit.path(part.name), "rb") as file:
            index.append(pq.read_table(file, columns=columns))
    shards: dict[str, list[list[int]]] = {}
    tokens: dict[str, list[int]] = {}
    for row in sorted(pa.concat_tables(index).to_pylist(), key=lambda r: (r["doc_id"], r["piece"])):
        if row["copy"]:
            continue
        if row["shard"] not in shards:
            with commit.fs.open(commit.path(row["shard"]), "rb") as file:
                shards[row["shard"]] = pq.read_table(file, columns=["tokens"]).column("tokens").to_pylist()
        tokens.setdefault(row["doc_id"], []).extend(shards[row["shard"]][row["sequence"]][row["token_start"]:row["token_end"]])
    return tokens


def run(args: argparse.Namespace) -> int:
    resolve_path_options(args)
    key, texts = parse_set_values(args.set_values)
    if not is_local(storage(args.output)[0]):
        raise ConfigError(f"--output {args.output}: a sweep shares stages by links on a local filesystem; give a local directory")
    shared_stages(key)
    base = list(args.overrides or [])
    points = []
    for text in texts:
        args.overrides = [*base, f"{key}={text}"]
        points.append((text, config_from_args(args)))
    with DirectoryLock(args.output):  # before anything is written or Spark starts: a second sweep refuses at once
        inputs, task_paths, documents_fields = checked_run_inputs(args, points[0][1])
        for _, config in points[1:]:  # every value's settings checked before Spark starts
            checked_run_inputs(argparse.Namespace(**{**vars(args), "inputs": inputs, "sample": False}), config)
        spark = spark_session("thresher-sweep", points[0][1].spark, args.master, executor_paths=task_paths)
        run_sweep(spark, inputs, args.output, key, points, args.models_dir, args.tokenizer, documents_fields)
    print(f"[thresher] sweep finished: {Path(args.output) / TABLE_FILE}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return script_main("thresher sweep", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
