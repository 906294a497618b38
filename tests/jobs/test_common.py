import argparse
import json
import subprocess
from pathlib import Path

import pytest

from jobs.common import (
    COMMITTED_MARKER,
    StageOutput,
    add_common_arguments,
    config_from_args,
    read_stats,
    require_committed,
)
from pipeline.config import ConfigError


def test_commit_moves_parts_into_place_and_writes_marker_last(tmp_path):
    out = StageOutput(tmp_path / "stage")
    out.begin()
    (tmp_path / "stage" / "_staging" / "documents").mkdir()
    with open(out.staged("documents") + "/part-0.parquet", "w") as f:
        f.write("x")
    assert not out.committed
    with pytest.raises(RuntimeError, match="no committed"):
        require_committed(tmp_path / "stage")
    out.commit({"documents_out": 1})
    assert out.committed
    assert (tmp_path / "stage" / "documents" / "part-0.parquet").read_text() == "x"
    assert not (tmp_path / "stage" / "_staging").exists()
    assert read_stats(require_committed(tmp_path / "stage")) == {"documents_out": 1}
    assert json.loads((tmp_path / "stage" / COMMITTED_MARKER).read_text())["committed_at"] > 0


def test_begin_discards_an_interrupted_attempt_and_refuses_committed_output(tmp_path):
    out = StageOutput(tmp_path / "stage")
    out.begin()
    leftover = tmp_path / "stage" / "_staging" / "half-written"
    leftover.write_text("partial")
    moved_before_crash = tmp_path / "stage" / "documents"
    moved_before_crash.mkdir()
    finished_unit = out.work / "file-1.parquet"
    finished_unit.write_text("kept for resume")
    out.begin()
    assert not leftover.exists() and not moved_before_crash.exists()
    assert finished_unit.read_text() == "kept for resume"
    out.commit({})
    assert not (tmp_path / "stage" / "_work").exists()
    with pytest.raises(RuntimeError, match="already committed"):
        out.begin()


def test_require_committed_names_a_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
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
        from jobs.common import StageOutput
        out = StageOutput({str(tmp_path / "stage")!r})
        out.begin()
        for name in ("documents", "rejects"):
            with open(out.staged(name), "w") as f:
                f.write(name)
        out.commit({{"documents_out": 1}})
        """
    )
    env = {"THRESHER_CRASH_AT": "commit:part_moved", "PATH": "/usr/bin:/bin"}
    crashed = subprocess.run([sys.executable, "-c", script], env=env, cwd=str(tmp_path.parent))
    assert crashed.returncode == -9
    out = StageOutput(tmp_path / "stage")
    assert not out.committed
    with pytest.raises(RuntimeError, match="no committed"):
        require_committed(tmp_path / "stage")
    rerun = subprocess.run([sys.executable, "-c", script], env={"PATH": "/usr/bin:/bin"})
    assert rerun.returncode == 0 and out.committed
    assert sorted(p.name for p in (tmp_path / "stage").iterdir()) == [COMMITTED_MARKER, "documents", "rejects", "stats.json"]


def test_crash_point_fires_only_where_named(monkeypatch):
    from jobs.common import SimulatedCrash, crash_point

    monkeypatch.setenv("THRESHER_CRASH_MODE", "raise")
    monkeypatch.setenv("THRESHER_CRASH_AT", "rules:after_line_dedup")
    crash_point("prepare:after_records")
    with pytest.raises(SimulatedCrash, match="rules:after_line_dedup"):
        crash_point("rules:after_line_dedup")


def test_gpu_scheduling_settings_come_from_the_spark_section(tmp_path):
    from jobs.common import spark_settings
    from pipeline.config import load_config

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
    from jobs.common import spark_settings
    from pipeline.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="spark.task_gpu_amount"):
        spark_settings(load_config(None, {"spark.executor_gpu_amount": 1}).spark)
    missing = load_config(None, {"spark.executor_gpu_amount": 1, "spark.task_gpu_amount": 1, "spark.gpu_discovery_script": str(tmp_path / "nope.sh")})
    with pytest.raises(ConfigError, match="gpu_discovery_script"):
        spark_settings(missing.spark)
