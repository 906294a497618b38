import argparse
import json

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
