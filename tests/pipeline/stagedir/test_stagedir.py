"""pipeline.stagedir: StageOutput's begin and commit (on local disk and on S3), what a marker lists, crash points,
require_committed."""

import json
import os
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
    Part,
    SimulatedCrash,
    StageOutput,
    part_name,
    read_commit,
    require_committed,
    storage,
)
from thresher.schemas.errors import InputError
from thresher.schemas.stats import read_stats

STATS = stage_stats_json("test", 1, 1)


def test_commit_writes_the_stats_then_the_marker_last(tmp_path):
    out = StageOutput(tmp_path / "stage")
    out.begin()
    part = _write_attempt(str(tmp_path / "stage"), "documents", 0, b"x")
    out.add_parts("documents", [part])
    assert not out.committed
    with pytest.raises(InputError, match="no committed"):
        require_committed(tmp_path / "stage")
    stats = out.commit_stats("rules", Config(), ["in"], 2, 1, {"gopher": 1}, {"lines_removed": 0})
    assert out.committed
    assert (tmp_path / "stage" / part.name).read_bytes() == b"x"
    assert read_stats(require_committed(tmp_path / "stage")) == stats == read_commit(tmp_path / "stage").stats
    assert (stats["stage"], stats["config_digest"], stats["inputs"]) == ("rules", Config().digest(), ["in"])
    assert (stats["documents_in"], stats["documents_out"], stats["details"]) == (2, 1, {"lines_removed": 0})
    assert stats["seconds"]["total"] >= 0 and stats["started"] <= stats["finished"]
    assert json.loads((tmp_path / "stage" / COMMITTED_MARKER).read_text())["committed_at"] > 0


def test_begin_discards_an_interrupted_attempt_keeps_its_finished_work_and_refuses_committed_output(
    tmp_path, monkeypatch
):
    out = StageOutput(tmp_path / "stage")
    out.begin()
    out.add_parts("documents", [_write_attempt(str(tmp_path / "stage"), "documents", 0, b"rows")])
    (tmp_path / "stage" / "_staging").mkdir()  # what an attempt of an older thresher left: thresher's too
    finished_unit = tmp_path / "stage" / "_work" / "files" / "file-1.parquet"
    finished_unit.parent.mkdir(parents=True)
    finished_unit.write_text("kept for resume")
    monkeypatch.setenv(CRASH_MODE_ENV, "raise")
    monkeypatch.setenv(CRASH_ENV, "commit:stats_written")
    with pytest.raises(SimulatedCrash):
        out.commit(STATS)
    monkeypatch.delenv(CRASH_ENV)
    assert (tmp_path / "stage" / "stats.json").is_file() and not out.committed
    out.begin()
    assert sorted(p.name for p in (tmp_path / "stage").iterdir()) == ["_work"]  # its parts, stats, _PARTS gone
    assert finished_unit.read_text() == "kept for resume"
    out.commit(STATS)
    assert not (tmp_path / "stage" / "_work").exists()
    with pytest.raises(RuntimeError, match="already committed"):
        out.begin()


def test_begin_refuses_a_directory_holding_files_thresher_did_not_write(tmp_path):
    stage = tmp_path / "prepare"
    stage.mkdir()
    (stage / "my-notes.txt").write_text("mine")
    (stage / "documents").mkdir()  # a name thresher uses, but no commit of thresher's wrote it
    (stage / "documents" / "keep.parquet").write_text("mine too")
    (stage / "_work").mkdir()  # thresher's own
    with pytest.raises(ConfigError, match=r"prepare holds files thresher did not write \(documents, my-notes.txt\)") as error:
        StageOutput(stage).begin()
    assert "\n" not in str(error.value)
    assert (stage / "my-notes.txt").read_text() == "mine" and (stage / "documents" / "keep.parquet").is_file()
    (stage / "my-notes.txt").unlink()
    shutil.rmtree(stage / "documents")
    StageOutput(stage).begin()  # only thresher's names left: begun, its work kept for a resume
    assert sorted(p.name for p in stage.iterdir()) == ["_work"]


def test_require_committed_names_a_missing_directory(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        require_committed(tmp_path / "nope")


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
    out.put_file("taggers.json", b"[]")
    out.commit(STATS)
    out.reopen()  # its settings changed: rerun it
    assert not out.committed
    out.begin()
    assert sorted(p.name for p in (tmp_path / "stage").iterdir()) == []
    out.commit(STATS)
    (tmp_path / "stage" / "_COMMITTED").unlink()  # not reopened by thresher: a user's file is still refused
    (tmp_path / "stage" / "mine.txt").write_text("mine")
    with pytest.raises(ConfigError, match="did not write"):
        out.begin()
    assert (tmp_path / "stage" / "mine.txt").read_text() == "mine"


# The commit protocol on any fsspec URL: each case runs on local disk and on the local S3 server.


def _write_attempt(url: str, table: str, index: int, data: bytes) -> Part:
    """What a task attempt does: its part under a name of its own, written whole."""
    fs, root = storage(url)
    name = part_name(table, index)
    fs.makedirs(f"{root}/{table}", exist_ok=True)
    fs.pipe_file(f"{root}/{name}", data)
    return Part(name, len(data), 1)


def _objects(url: str) -> dict[str, bytes]:
    fs, root = storage(url)
    fs.invalidate_cache(root)
    return {path[len(root) + 1:]: fs.cat_file(path) for path in fs.find(root, withdirs=False)}


def test_the_marker_lists_the_parts_and_stats_and_readers_trust_only_the_list(stage_url):
    out = StageOutput(stage_url)
    out.begin()
    parts = [_write_attempt(stage_url, "documents", index, b"part %d" % index) for index in (1, 0)]
    failed_attempt = _write_attempt(stage_url, "documents", 0, b"a task attempt that failed")
    out.add_parts("documents", parts, {"type": "struct", "fields": []})
    out.put_file("taggers.json", b"{}\n")
    out.commit(STATS)
    assert out.committed
    commit = read_commit(stage_url)
    assert commit.parts("documents") == sorted(parts, key=lambda part: part.name)
    assert [part.name.split("-")[1] for part in commit.parts("documents")] == ["00000", "00001"]
    assert commit.stats == STATS and commit.schema("documents") == {"type": "struct", "fields": []}
    assert {entry["name"] for entry in commit.marker["files"]} == {"stats.json", "taggers.json"}
    assert failed_attempt.name not in _objects(stage_url)  # never listed, so dropped before the marker
    assert sorted(_objects(stage_url)) == sorted([COMMITTED_MARKER, "stats.json", "taggers.json",
                                                  *(part.name for part in parts)])


def test_a_listed_part_that_changed_is_refused_in_one_line(stage_url):
    out = StageOutput(stage_url)
    out.begin()
    part = _write_attempt(stage_url, "documents", 0, b"as written")
    out.add_parts("documents", [part])
    out.commit(STATS)
    fs, root = storage(stage_url)
    fs.pipe_file(f"{root}/{part.name}", b"overwritten since")
    with pytest.raises(InputError, match=r"listed by its _COMMITTED marker, is gone or not of its listed size "
                                         r"\(10 bytes\): rerun that stage$"):
        read_commit(stage_url).parts("documents")


def test_a_crash_before_the_marker_commits_nothing_and_a_rerun_gives_the_same_objects(stage_url, monkeypatch):
    def attempt():
        out = StageOutput(stage_url)
        out.begin()
        out.add_parts("documents", [_write_attempt(stage_url, "documents", index, b"rows %d" % index) for index in range(3)])
        out.put_file("taggers.json", b"{}\n")
        out.commit(STATS)

    monkeypatch.setenv(CRASH_MODE_ENV, "raise")
    monkeypatch.setenv(CRASH_ENV, "commit:before_marker")
    with pytest.raises(SimulatedCrash):
        attempt()
    assert not StageOutput(stage_url).committed
    with pytest.raises(InputError, match="no committed"):
        read_commit(stage_url)
    left = _objects(stage_url)
    assert "stats.json" in left and sum(name.startswith("documents/part-") for name in left) == 3
    monkeypatch.delenv(CRASH_ENV)
    attempt()

    def by_content(objects):  # attempt names differ from run to run, what each holds may not; _NAMES are thresher's
        return sorted((name.split("/part-")[0] + name.split("-")[1] if "/part-" in name else name, data)
                      for name, data in objects.items() if not name.startswith("_"))

    rerun = _objects(stage_url)
    assert by_content(rerun) == by_content(left)
    listed = {part.name for part in read_commit(stage_url).parts("documents")}
    assert set(rerun) == {COMMITTED_MARKER, "stats.json", "taggers.json", *listed}


def test_begin_never_deletes_an_object_thresher_did_not_write(stage_url):
    fs, root = storage(stage_url)
    theirs = {"notes.txt": b"mine", "documents/mine.parquet": b"mine too",
              "documents/part-00000-notanattempt.parquet": b"looks like a part, is not one"}
    attempt = _write_attempt(stage_url, "documents", 0, b"an interrupted attempt's part")
    for name, data in theirs.items():
        fs.pipe_file(f"{root}/{name}", data)
    with pytest.raises(ConfigError, match=r"stage holds files thresher did not write \(documents, notes.txt\): "
                                          r"move them away or choose another --output$"):
        StageOutput(stage_url).begin()
    assert _objects(stage_url) == {**theirs, attempt.name: b"an interrupted attempt's part"}
    fs.rm([f"{root}/{name}" for name in theirs])
    StageOutput(stage_url).begin()  # only an attempt's part left: thresher's, so cleared
    assert attempt.name not in _objects(stage_url)


def test_a_rerun_keeping_earlier_parts_reads_them_until_its_commit_drops_them(stage_url):
    out = StageOutput(stage_url)
    out.begin()
    earlier = [_write_attempt(stage_url, "documents", index, b"old") for index in range(2)]
    out.add_parts("documents", earlier)
    out.add_parts("rejects", [_write_attempt(stage_url, "rejects", 0, b"old")])
    out.commit(STATS)
    out.reopen()
    out.begin(keep=[earlier[0].name])  # a rerun that reads the first part's columns
    assert [name for name in _objects(stage_url) if not name.startswith("_")] == [earlier[0].name]
    out.add_parts("documents", [_write_attempt(stage_url, "documents", 0, b"new")])
    out.commit(STATS)
    assert [part.name for part in read_commit(stage_url).parts("documents")] == [
        name for name in _objects(stage_url) if name.startswith("documents/")] != [earlier[0].name]


def test_reopening_clears_what_the_marker_listed_and_nothing_a_user_added_since(stage_url):
    out = StageOutput(stage_url)
    out.begin()
    out.add_parts("documents", [_write_attempt(stage_url, "documents", 0, b"rows")])
    out.commit(STATS)
    fs, root = storage(stage_url)
    fs.pipe_file(f"{root}/documents/added-later.parquet", b"a user's")
    out.reopen()
    assert not out.committed
    with pytest.raises(ConfigError, match=r"did not write \(documents\)"):
        out.begin()
    fs.rm_file(f"{root}/documents/added-later.parquet")
    out.begin()
    assert [name for name in _objects(stage_url) if not name.startswith("_")] == []


def test_a_marker_from_before_the_list_still_reads_as_its_directory(tmp_path):
    stage = tmp_path / "stage"
    (stage / "documents" / "_temporary").mkdir(parents=True)
    for name in ("part-00001-x.snappy.parquet", "part-00000-x.snappy.parquet", "_SUCCESS", ".part-00000-x.crc"):
        (stage / "documents" / name).write_bytes(b"spark's")
    (stage / "documents" / "_temporary" / "part-00002.parquet").write_bytes(b"a task's, unfinished")
    (stage / COMMITTED_MARKER).write_text(json.dumps({"committed_at": 1.7e9}) + "\n")
    commit = read_commit(stage)
    assert [part.name for part in commit.parts("documents")] == ["documents/part-00000-x.snappy.parquet",
                                                                "documents/part-00001-x.snappy.parquet"]
    assert commit.stats is None
    (stage / COMMITTED_MARKER).write_text("")  # hand-made markers are often empty
    assert len(read_commit(stage).parts("documents")) == 2


def test_a_stage_on_s3_is_committed_without_a_rename_or_copy(s3_url, copies_and_renames):
    out = StageOutput(s3_url)
    out.begin()
    out.add_parts("documents", [_write_attempt(s3_url, "documents", 0, b"rows")])
    out.commit(STATS)
    out.reopen()
    out.begin()
    assert copies_and_renames == []
    fs, root = storage(s3_url)
    fs.pipe_file(f"{root}/a", b"x")
    fs.mv(f"{root}/a", f"{root}/b")  # the record sees one when one happens
    assert copies_and_renames[0] == "mv" and copies_and_renames[-1] == "server copy_object"


def test_require_committed_on_s3(s3_url):
    with pytest.raises(InputError, match=rf"^input directory {s3_url} does not exist$"):
        require_committed(s3_url)
    fs, root = storage(s3_url)
    fs.pipe_file(f"{root}/documents/x.parquet", b"x")
    with pytest.raises(InputError, match=r"holds no committed stage output \(no _COMMITTED marker\): rerun that stage$"):
        require_committed(s3_url)


def test_a_driver_killed_before_the_marker_leaves_no_committed_stage_and_the_same_command_commits(stage_url):
    script = textwrap.dedent(
        f"""
        from thresher.pipeline.config import Config
        from thresher.pipeline.stagedir import Part, StageOutput, part_name, storage
        out = StageOutput({stage_url!r})
        out.begin()
        fs, root = storage({stage_url!r})
        name = part_name("documents", 0)
        fs.makedirs(f"{{root}}/documents", exist_ok=True)
        fs.pipe_file(f"{{root}}/{{name}}", b"rows")
        out.add_parts("documents", [Part(name, 4, 1)])
        out.commit_stats("test", Config(), [], 1, 1, {{}}, {{}})
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}  # the AWS variables included
    killed = subprocess.run([sys.executable, "-c", script], env={**env, CRASH_ENV: "commit:before_marker"})
    assert killed.returncode == -9
    assert not StageOutput(stage_url).committed and "_PARTS" in _objects(stage_url)
    assert subprocess.run([sys.executable, "-c", script], env=env).returncode == 0
    listed = [part.name for part in read_commit(stage_url).parts("documents")]
    assert sorted(_objects(stage_url)) == sorted([COMMITTED_MARKER, "stats.json", *listed])


def test_files_tasks_write_at_fixed_names_are_thresher_s_once_expected_and_listed_once_added(stage_url):
    fs, root = storage(stage_url)
    out = StageOutput(stage_url)
    out.begin()
    names = ["train/shard-00000.parquet", "train/shard-00001.parquet"]
    out.expect_files(names)
    fs.makedirs(f"{root}/train", exist_ok=True)
    fs.pipe_file(f"{root}/{names[0]}", b"half of the shards")  # then the driver dies
    with pytest.raises(ValueError, match="one of thresher's own names"):
        out.expect_files(["_work/x"])
    again = StageOutput(stage_url)
    again.begin()  # the shard an attempt wrote is thresher's: named in _PARTS before it was written
    assert not any(name.startswith("train/") for name in _objects(stage_url))
    again.expect_files(names)
    fs.makedirs(f"{root}/train", exist_ok=True)
    for name in names:
        fs.pipe_file(f"{root}/{name}", name.encode())
    with pytest.raises(ValueError, match="validation/shard-00000.parquet was not named by expect_files"):
        again.add_files({"validation/shard-00000.parquet": 3})
    again.add_files({name: len(name) for name in names})
    again.commit(STATS)
    marker = read_commit(stage_url).marker
    assert {entry["name"]: entry["size"] for entry in marker["files"]} == {
        **{name: len(name) for name in names}, "stats.json": len(_objects(stage_url)["stats.json"])}
    assert set(_objects(stage_url)) == {COMMITTED_MARKER, "stats.json", *names}
