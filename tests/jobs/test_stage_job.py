"""jobs.stage_job: the common options, the console lines, StageJob's order of work, reject rows."""

import argparse
import re

import pytest
from lock_holder import hold_lock
from stage_rows import stage_stats_json

from thresher.jobs.stage_job import add_common_arguments, config_from_args
from thresher.pipeline.config import ConfigError
from thresher.pipeline.stagedir import COMMITTED_MARKER, LOCK_FILE

STATS = stage_stats_json("test", 1, 1)


def parse(argv):
    parser = argparse.ArgumentParser()
    add_common_arguments(parser)
    return parser.parse_args(argv)


def test_set_overrides_are_parsed_as_yaml_and_checked():
    config = config_from_args(parse(["--set", "prepare.lang_threshold=0.5", "--set", "prepare.languages=[en]"]))
    assert config.prepare.lang_threshold == 0.5 and config.prepare.languages == ["en"]
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        config_from_args(parse(["--set", "prepare.lang_threshold"]))
    with pytest.raises(ConfigError, match="prepare.lang_threshold"):
        config_from_args(parse(["--set", "prepare.lang_threshold=high"]))


def test_stage_summary_says_lines_removed_apart_from_documents_rejected():
    from thresher.jobs.stage_job import stage_summary

    stats = {"documents_in": 243, "documents_out": 217,
             "rejects_by_rule": {"page_type:label_in": 26, "clutter_line": 690, "line_dedup": 6}}
    assert stage_summary("select", stats, 2.04) == "[thresher] select: 243 in, 217 out, 26 rejected, 696 lines removed, 2.0s"
    assert stage_summary("tag", {"documents_in": 3, "documents_out": 3, "rejects_by_rule": {}}, 1) == (
        "[thresher] tag: 3 in, 3 out, 0 rejected, 1.0s")


def test_a_stage_job_checks_before_spark_and_the_lock_then_runs_under_the_lock(tmp_path, monkeypatch, capsys):
    import thresher.jobs.stage_job as common

    calls = []
    monkeypatch.setattr(common, "spark_session",
                        lambda name, spark_config, master, executor_paths: calls.append(("spark", name)) or "S")

    def check(args, config):
        calls.append(("check", config.export.seq_len))
        if args.refuse:
            raise ConfigError("refused before any work")
        return "detail"

    def work(spark, args, config):
        calls.append(("work", spark, (tmp_path / "out" / LOCK_FILE).is_file()))
        return STATS

    def arguments(parser):
        parser.add_argument("--output", required=True)
        parser.add_argument("--refuse", action="store_true")
        parser.add_argument("--seq-len", type=int)

    job = common.StageJob("demo", "thresher demo", "A demo stage.\n", arguments, "export.seq_len=64", work, check,
                          implied_overrides=lambda args: [f"export.seq_len={args.seq_len}"] if args.seq_len else [])
    with pytest.raises(ConfigError, match="refused"):
        job.run(parse_job(job, ["--output", str(tmp_path / "out"), "--refuse"]))
    assert calls == [("check", 2048)] and not (tmp_path / "out").exists()
    calls.clear()
    assert job.run(parse_job(job, ["--output", str(tmp_path / "out"), "--set", "export.seq_len=8", "--seq-len", "16"])) == 0
    assert calls == [("check", 16), ("spark", "thresher-demo"), ("work", "S", True)]  # --seq-len wins over --set
    start, summary = capsys.readouterr().err.splitlines()
    assert start == "[thresher] demo: starting (detail)"
    assert re.fullmatch(r"\[thresher\] demo: 1 in, 1 out, 0 rejected, \d+\.\ds", summary)
    calls.clear()
    holder = hold_lock(tmp_path / "out")  # another run holds --output: refused before Spark starts
    try:
        with pytest.raises(ConfigError, match="in use by another thresher run"):
            job.run(parse_job(job, ["--output", str(tmp_path / "out")]))
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert calls == [("check", 2048)]
    calls.clear()
    (tmp_path / "out").mkdir(exist_ok=True)
    (tmp_path / "out" / COMMITTED_MARKER).write_text("{}")  # a finished stage, run again by hand
    with pytest.raises(ConfigError, match=rf"^--output {tmp_path}/out holds a committed demo output already: choose "
                                          "another --output, or delete that directory to run the stage again$"):
        job.run(parse_job(job, ["--output", str(tmp_path / "out")]))
    assert calls == [("check", 2048)]  # before Spark starts


def test_a_stage_job_resolves_its_paths_before_its_check_and_names_what_the_tasks_open(tmp_path, monkeypatch):
    """Relative paths are taken from the working directory once, on the driver; the session gets every
    path the tasks open (INPUT, --output and the stage's own) to check against the master."""
    import thresher.jobs.stage_job as common

    monkeypatch.chdir(tmp_path)
    seen = {}
    monkeypatch.setattr(common, "spark_session",
                        lambda name, spark_config, master, executor_paths: seen.update(session=executor_paths) or "S")

    def arguments(parser):
        parser.add_argument("input")
        parser.add_argument("--output", required=True)
        parser.add_argument("--tokenizer")
        parser.add_argument("--models-dir")

    def check(args, config):
        seen["check"] = (args.input, args.output, args.tokenizer, args.models_dir)

    job = common.StageJob("demo", "thresher demo", "A demo stage.\n", arguments, "export.seq_len=64",
                          lambda spark, args, config: STATS, check,
                          executor_paths=lambda args, config: [("demo.list_file", "/srv/lists/a.txt")])
    job.run(parse_job(job, ["docs", "--output", "runs/../out", "--tokenizer", "s3://bucket/tok", "--models-dir", "file:///srv/m"]))
    assert seen["check"] == (str(tmp_path / "docs"), str(tmp_path / "out"), "s3://bucket/tok", "/srv/m")
    assert seen["session"] == [("INPUT", str(tmp_path / "docs")), ("--output", str(tmp_path / "out")),
                               ("demo.list_file", "/srv/lists/a.txt")]


def parse_job(job, argv):
    parser = argparse.ArgumentParser()
    job.add_arguments(parser)
    return parser.parse_args(argv)


def test_reject_rows_are_the_reject_schema_with_a_named_or_computed_rule(spark):
    from pyspark.sql import functions as F

    from thresher.jobs.stage_job import reject_rows
    from thresher.schemas import to_spark_schema
    from thresher.schemas.rejects import CONTENT_SNIPPET_CHARS, REJECT

    frame = spark.createDataFrame([("d1", "http://a/", None, "x" * 600, "why", 3)],
                                  "doc_id string, url string, warc_path string, text string, reason string, n int")
    named = reject_rows(frame, "rules", "gopher", F.col("n"))
    assert [(f.name, f.dataType) for f in named.schema] == [(f.name, f.dataType) for f in to_spark_schema(REJECT)]
    row = named.first()
    assert (row.doc_id, row.stage, row.rule, row.detail, row.content) == ("d1", "rules", "gopher", "3", "x" * CONTENT_SNIPPET_CHARS)
    computed = reject_rows(frame, "select", F.col("reason"), F.lit(None), F.col("url")).first()
    assert (computed.rule, computed.detail, computed.content) == ("why", None, "http://a/")
