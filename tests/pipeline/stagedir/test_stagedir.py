"""pipeline.stagedir: StageOutput's begin and commit, crash points, require_committed."""

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from stage_rows import stage_stats_json

from thresher.pipeline.config import Config, ConfigError
from thresher.pipeline.stagedir import (
    COMMITTED_MARKER,
    CRASH_ENV,
    CRASH_MODE_ENV,
    SimulatedCrash,
    StageOutput,
    require_committed,
)
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


def test_a_crash_mid_commit_leaves_no_committed_output_and_a_rerun_recovers(tmp_path):
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
    clean_env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
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
