import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from stage_rows import stage_stats_json

from thresher.jobs.stage_job import add_common_arguments, config_from_args
from thresher.pipeline.config import Config, ConfigError
from thresher.pipeline.stagedir import (
    COMMITTED_MARKER,
    CRASH_ENV,
    CRASH_MODE_ENV,
    LOCK_FILE,
    SimulatedCrash,
    StageOutput,
    require_committed,
)
from thresher.pipeline.stagedir.lock import DirectoryLock
from thresher.schemas.errors import InputError
from thresher.schemas.stats import read_stats

STATS = stage_stats_json("test", 1, 1)

def test_commit_moves_parts_into_place_and_writes_marker_last(tmp_path):
    out = StageOutput(tmp_path / "stage")
    out.begin()
    (tmp_path / "stage" / "_staging" / "documents").mkdir()
    with open(out.staged("documents") + "/part-0.parquet", "w") as f:
        f.write("x")
    assert not out.committed
    with pytest.raises(InputError, match="no committed"):
        require_committed(tmp_path / "stage")
    stats = out.commit_stats("rules", Config(), ["in"], 2, 1, {"gopher": 1}, {"lines_removed": 0})
    assert out.committed
    assert (tmp_path / "stage" / "documents" / "part-0.parquet").read_text() == "x"
    assert not (tmp_path / "stage" / "_staging").exists()
    assert read_stats(require_committed(tmp_path / "stage")) == stats
    assert (stats["stage"], stats["config_digest"], stats["inputs"]) == ("rules", Config().digest(), ["in"])
    assert (stats["documents_in"], stats["documents_out"], stats["details"]) == (2, 1, {"lines_removed": 0})
    assert stats["seconds"]["total"] >= 0 and stats["started"] <= stats["finished"]
    assert json.loads((tmp_path / "stage" / COMMITTED_MARKER).read_text())["committed_at"] > 0


def test_begin_discards_an_interrupted_attempt_and_refuses_committed_output(tmp_path, monkeypatch):
    out = StageOutput(tmp_path / "stage")
    out.begin()
    leftover = tmp_path / "stage" / "_staging" / "half-written"
    leftover.write_text("partial")
    (tmp_path / "stage" / "_staging" / "documents").mkdir()
    finished_unit = out.work / "file-1.parquet"
    finished_unit.write_text("kept for resume")
    monkeypatch.setenv(CRASH_MODE_ENV, "raise")
    monkeypatch.setenv(CRASH_ENV, "commit:part_moved")
    with pytest.raises(SimulatedCrash):
        out.commit(STATS)
    monkeypatch.delenv(CRASH_ENV)
    moved_before_crash = tmp_path / "stage" / "documents"
    assert moved_before_crash.is_dir() and not out.committed
    out.begin()
    assert not leftover.exists() and not moved_before_crash.exists()
    assert finished_unit.read_text() == "kept for resume"
    out.commit(STATS)
    assert not (tmp_path / "stage" / "_work").exists()
    with pytest.raises(RuntimeError, match="already committed"):
        out.begin()


def test_begin_refuses_a_directory_holding_files_thresher_did_not_write(tmp_path):
    stage = tmp_path / "prepare"
    stage.mkdir()
    (stage / "my-notes.txt").write_text("mine")
    (stage / "documents").mkdir()  # a name thresher uses, but no commit of thresher's moved it here
    (stage / "documents" / "keep.parquet").write_text("mine too")
    (stage / "_staging").mkdir()  # thresher's own: would be cleared
    with pytest.raises(ConfigError, match=r"prepare holds files thresher did not write \(documents, my-notes.txt\)") as error:
        StageOutput(stage).begin()
    assert "\n" not in str(error.value)
    assert (stage / "my-notes.txt").read_text() == "mine" and (stage / "documents" / "keep.parquet").is_file()
    assert (stage / "_staging").is_dir()
    (stage / "my-notes.txt").unlink()
    shutil.rmtree(stage / "documents")
    StageOutput(stage).begin()  # only thresher's names left: cleared and begun
    assert sorted(p.name for p in stage.iterdir()) == ["_staging"]


def test_require_committed_names_a_missing_directory(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        require_committed(tmp_path / "nope")


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


def test_a_crash_mid_commit_leaves_no_committed_output_and_a_rerun_recovers(tmp_path):
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        from thresher.pipeline.stagedir import StageOutput
        from thresher.pipeline.config import Config
        out = StageOutput({str(tmp_path / "stage")!r})
        out.begin()
        for name in ("documents", "rejects"):
            with open(out.staged(name), "w") as f:
                f.write(name)
        out.commit_stats("test", Config(), [], 1, 1, {{}}, {{}})
        """
    )
    # This checkout's code in both processes, whatever the working directory (the venv installs another).
    clean_env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env = {"THRESHER_CRASH_AT": "commit:part_moved", **clean_env}
    crashed = subprocess.run([sys.executable, "-c", script], env=env, cwd=str(tmp_path.parent))
    assert crashed.returncode == -9
    out = StageOutput(tmp_path / "stage")
    assert not out.committed
    with pytest.raises(InputError, match="no committed"):
        require_committed(tmp_path / "stage")
    rerun = subprocess.run([sys.executable, "-c", script], env=clean_env)
    assert rerun.returncode == 0 and out.committed
    assert sorted(p.name for p in (tmp_path / "stage").iterdir()) == [COMMITTED_MARKER, "documents", "rejects", "stats.json"]


def test_crash_point_fires_only_where_named(monkeypatch):
    from thresher.pipeline.stagedir import SimulatedCrash, crash_point

    monkeypatch.setenv("THRESHER_CRASH_MODE", "raise")
    monkeypatch.setenv("THRESHER_CRASH_AT", "rules:after_line_dedup")
    crash_point("prepare:after_records")
    with pytest.raises(SimulatedCrash, match="rules:after_line_dedup"):
        crash_point("rules:after_line_dedup")


def hold_lock(directory, then="wait"):
    """A subprocess that takes DirectoryLock(directory), then waits for stdin to close or kills itself."""
    action = "sys.stdin.read()" if then == "wait" else "os.kill(os.getpid(), signal.SIGKILL)"
    script = textwrap.dedent(f"""
        import os, signal, sys
        from thresher.pipeline.stagedir.lock import DirectoryLock
        with DirectoryLock({str(directory)!r}):
            print("held", flush=True)
            {action}
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    holder = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=env)
    if then == "wait":
        assert holder.stdout.readline() == "held\n"
    else:
        holder.wait(timeout=60)
    return holder


@pytest.mark.timeout(120)
def test_a_held_lock_is_refused_naming_its_holder_and_released_on_exit(tmp_path):
    holder = hold_lock(tmp_path / "run")
    try:
        with pytest.raises(ConfigError, match=rf"run is in use by another thresher run \(host {socket.gethostname()}, "
                                               rf"pid {holder.pid}, started 20\d\d-.*\): wait for it") as error:
            with DirectoryLock(tmp_path / "run"):
                pass
        assert "\n" not in str(error.value)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert not (tmp_path / "run" / LOCK_FILE).exists()  # removed by its holder on release
    with DirectoryLock(tmp_path / "run"), DirectoryLock(tmp_path / "run"):  # free again; re-entered by its holder
        assert json.loads((tmp_path / "run" / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / "run").exists()  # the directory the lock created, left empty, is removed


@pytest.mark.timeout(120)
def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = hold_lock(tmp_path / "run", then="die")
    assert dead.returncode == -signal.SIGKILL
    stale = json.loads((tmp_path / "run" / LOCK_FILE).read_text())
    assert stale["pid"] == dead.pid and stale["host"] == socket.gethostname()
    with DirectoryLock(tmp_path / "run"):
        assert json.loads((tmp_path / "run" / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / "run" / LOCK_FILE).exists()


def test_gpu_scheduling_settings_come_from_the_spark_section(tmp_path):
    from thresher.jobs.session import spark_settings
    from thresher.pipeline.config import load_config

    plain = spark_settings(load_config().spark)
    assert not any("resource.gpu" in key for key in plain)  # no GPU asked for: none scheduled
    gpu = spark_settings(load_config(None, {"spark.executor_gpu_amount": 2, "spark.task_gpu_amount": 0.5}).spark)
    assert gpu["spark.executor.resource.gpu.amount"] == "2"
    assert gpu["spark.task.resource.gpu.amount"] == "0.5"
    script = Path(gpu["spark.executor.resource.gpu.discoveryScript"])
    assert script.is_file() and script.name == "gpu_discovery.sh"
    # The shipped script prints Spark's resource JSON (no GPU here: an empty address list).
    found = json.loads(subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True).stdout)
    assert found["name"] == "gpu" and isinstance(found["addresses"], list)
    # spark.conf still wins over what thresher derives.
    override = load_config(None, {"spark.executor_gpu_amount": 1, "spark.task_gpu_amount": 1, "spark.conf": {"spark.task.resource.gpu.amount": "0.25"}})
    assert spark_settings(override.spark)["spark.task.resource.gpu.amount"] == "0.25"


def test_gpu_scheduling_without_a_task_amount_or_script_is_a_config_error(tmp_path):
    from thresher.jobs.session import spark_settings
    from thresher.pipeline.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="spark.task_gpu_amount"):
        spark_settings(load_config(None, {"spark.executor_gpu_amount": 1}).spark)
    missing = load_config(None, {"spark.executor_gpu_amount": 1, "spark.task_gpu_amount": 1, "spark.gpu_discovery_script": str(tmp_path / "nope.sh")})
    with pytest.raises(ConfigError, match="gpu_discovery_script"):
        spark_settings(missing.spark)


def test_stage_summary_says_lines_removed_apart_from_documents_rejected():
    from thresher.jobs.stage_job import stage_summary

    stats = {"documents_in": 243, "documents_out": 217,
             "rejects_by_rule": {"page_type:label_in": 26, "clutter_line": 690, "line_dedup": 6}}
    assert stage_summary("select", stats, 2.04) == "[thresher] select: 243 in, 217 out, 26 rejected, 696 lines removed, 2.0s"
    assert stage_summary("tag", {"documents_in": 3, "documents_out": 3, "rejects_by_rule": {}}, 1) == (
        "[thresher] tag: 3 in, 3 out, 0 rejected, 1.0s")


def test_a_reopened_stage_begins_again_clearing_its_own_committed_parts_only(tmp_path):
    out = StageOutput(tmp_path / "stage")
    out.begin()
    (tmp_path / "stage" / "_staging" / "documents").mkdir()
    out.commit(STATS)
    out.reopen()  # its settings changed: rerun it
    assert not out.committed
    out.begin()
    assert sorted(p.name for p in (tmp_path / "stage").iterdir()) == ["_staging"]
    out.commit(STATS)
    (tmp_path / "stage" / "_COMMITTED").unlink()  # not reopened by thresher: a user's file is still refused
    (tmp_path / "stage" / "mine.txt").write_text("mine")
    with pytest.raises(ConfigError, match="did not write"):
        out.begin()
    assert (tmp_path / "stage" / "mine.txt").read_text() == "mine"


def test_a_stage_job_checks_before_spark_and_the_lock_then_runs_under_the_lock(tmp_path, monkeypatch, capsys):
    import thresher.jobs.stage_job as common

    calls = []
    monkeypatch.setattr(common, "spark_session", lambda name, spark_config, master: calls.append(("spark", name)) or "S")

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
