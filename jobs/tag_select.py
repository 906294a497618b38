"""Stage 3 in one command: `thresher tag` then `thresher select` (`thresher models`, its old name, still works).

Writes OUTPUT/tag/ (every tagger's scores as columns) and OUTPUT/select/ (the selected documents
that the tokenizer and export read, rejects, stats.json). A committed step is kept, so rerunning
with changed select settings reruns select only if you first remove OUTPUT/select (or use
`thresher run`, which does that by itself). OUTPUT may be a local path or any object store URL
(s3://...), as for each step.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from thresher.jobs.documents_input import fields_from_args
from thresher.jobs.selection import check_select_config, run_select
from thresher.jobs.stage_job import StageJob, print_stage_summary
from thresher.jobs.tag import add_stage3_arguments, check_tag, configured_taggers, executor_paths, run_tag
from thresher.pipeline.config import Config
from thresher.pipeline.locations import is_url
from thresher.pipeline.stagedir import StageOutput
from thresher.pipeline.stagedir.documents import DEFAULT_FIELDS, FieldMapping


def step_location(output_dir: str, step: str) -> str:
    """The directory of `step` below `output_dir`, a local path or a URL."""
    if is_url(output_dir):
        return f"{output_dir.rstrip('/')}/{step}"
    return os.path.join(output_dir, step)


def run_tag_select(
    spark, input_dir: str, output_dir: str, config: Config, models_dir: str | None = None, partitions: int | None = None,
    fields: FieldMapping = DEFAULT_FIELDS,
) -> dict[str, dict]:
    """Tag then select; returns both steps' stats."""
    check_select_config(config, configured_taggers(config, models_dir, digests=False))
    dirs = {step: step_location(output_dir, step) for step in ("tag", "select")}
    stats = {}
    for step, run_step in (
        ("tag", lambda: run_tag(spark, input_dir, dirs["tag"], config, models_dir, partitions, fields)),
        ("select", lambda: run_select(spark, dirs["tag"], dirs["select"], config, partitions)),
    ):
        started = time.perf_counter()
        if StageOutput(dirs[step]).committed:
            print(f"[thresher] {step}: {dirs[step]} is committed; kept", file=sys.stderr)
            continue
        stats[step] = run_step()
        print_stage_summary(step, stats[step], time.perf_counter() - started)
    return stats


def _check(args: argparse.Namespace, config: Config) -> None:
    check_select_config(config, check_tag(args, config))  # before Spark starts


def _work(spark, args: argparse.Namespace, config: Config) -> None:
    """Both steps; each prints its own summary."""
    run_tag_select(spark, args.input, args.output, config, args.models_dir, args.partitions, fields_from_args(args))


JOB = StageJob("tag-select", "thresher tag-select", __doc__,
               lambda parser: add_stage3_arguments(parser, "output directory (tag/ and select/)"),
               "select.line_thresholds.clutter=0.4", _work, _check, "input",
               executor_paths=lambda args, config: executor_paths(config, args.models_dir))


if __name__ == "__main__":
    sys.exit(JOB.main())
