"""jobs.errors: a user's error, a full disk or a Ctrl-C as one line on the console, not a traceback or a
Java stack; a user's error raised in a Spark task included."""

import argparse
import subprocess
import sys
from functools import partial

import pytest

from thresher.jobs.cli import main
from thresher.jobs.errors import run_with_one_line_errors
from thresher.schemas.errors import InputError, UserError


def test_a_bad_config_is_a_clear_error_before_spark_starts(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("prepare:\n  lang_threshold: high\n")
    result = subprocess.run(
        [sys.executable, "-c", "from thresher.jobs.cli import main; raise SystemExit(main())", "prepare", "x.warc.gz",
         "--output", str(tmp_path / "out"), "--config", str(bad)],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "thresher prepare: error: prepare.lang_threshold" in result.stderr
    assert "Traceback" not in result.stderr
    assert "SparkContext" not in result.stderr and not (tmp_path / "out").exists()


def test_a_missing_input_is_a_clear_error(tmp_path, capsys):
    assert main(["prepare", str(tmp_path / "missing.warc.gz"), "--output", str(tmp_path / "out")]) == 2
    assert "missing.warc.gz" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def thresher_lines(text):
    return [line for line in text.splitlines() if line.startswith("thresher ")]


def test_a_full_disk_at_a_stage_boundary_is_one_line_naming_the_directory(spark, tmp_path, monkeypatch, capsys):
    import errno
    import pathlib

    from thresher.pipeline.prepare.sample_crawl import write_sample_crawl

    inputs = write_sample_crawl(tmp_path / "sample")
    out = tmp_path / "run"
    write_text = pathlib.Path.write_text

    def full_disk(self, *args, **kwargs):  # what the OS says when the device holding OUTPUT is full
        if str(self).startswith(str(out)):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", full_disk)
    write_bytes = pathlib.Path.write_bytes

    def full_disk_bytes(self, *args, **kwargs):  # run.json and the markers are written as bytes
        if str(self).startswith(str(out)):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return write_bytes(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_bytes", full_disk_bytes)
    assert main(["run", *inputs, "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert thresher_lines(err) == [
        f"thresher run: error: no space left on the device holding {out}: free space there and rerun the same "
        "command; it goes on from where this one stopped"
    ]


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs, nearly filled by one file; skipped where mounting is not permitted."""
    import os

    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        stats = os.statvfs(mount)
        filler = mount / "filler"
        filler.write_bytes(b"\0" * (stats.f_bavail * stats.f_frsize - 64 * 1024))
        yield mount, filler
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_during_stage_1_is_one_line_and_the_rerun_after_freeing_space_finishes(
    spark, small_disk, tmp_path, capsys
):
    from thresher.pipeline.prepare.sample_crawl import write_sample_crawl
    from thresher.pipeline.stagedir import COMMITTED_MARKER

    mount, filler = small_disk
    inputs = write_sample_crawl(tmp_path / "sample")
    out = mount / "prepare"
    assert main(["prepare", *inputs, "--output", str(out)]) == 1
    lines = thresher_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith(f"thresher prepare: error: no space left on the device holding {out}")
    assert "free space there and rerun the same command" in lines[0]
    assert not (out / COMMITTED_MARKER).exists()
    filler.unlink()
    assert main(["prepare", *inputs, "--output", str(out)]) == 0
    assert (out / COMMITTED_MARKER).is_file()


def test_ctrl_c_before_spark_starts_is_one_line_and_130(monkeypatch, capsys):
    import thresher.jobs.config_show

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(thresher.jobs.config_show, "run", interrupted)
    assert main(["config", "show"]) == 130
    assert capsys.readouterr().err == "[thresher] interrupted; run the same command again to resume\n"


def test_a_users_error_raised_in_a_spark_task_is_one_line(spark, tmp_path, capsys):
    """A malformed JSONL line past the first, met by a stage that takes no input rejects (the reader's
    InputError raised in a Python worker), is one line naming the file and line, not a Java stack."""
    from thresher.jobs.documents_input import documents_frame
    from thresher.pipeline.stagedir.documents import resolve_source
    from thresher.schemas.documents import PREPARED

    docs = tmp_path / "docs.jsonl"
    good = '{"text": "A first document with a sentence or two. It is fine.", "url": "http://a.example/"}\n'
    docs.write_text(good + good.replace("a.example", "b.example") + '{"text": "cut off in the mid\n' + good)

    def count_documents(args):
        return documents_frame(spark, resolve_source(str(docs)), PREPARED).count()

    assert run_with_one_line_errors("thresher export", count_documents, argparse.Namespace()) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "at org.apache" not in err
    [line] = thresher_lines(err)
    assert line.startswith(f"thresher export: error: {docs} line 3 is not JSON: "), line


def test_a_malformed_stats_file_of_the_input_is_one_line_naming_it(tmp_path, capsys):
    tagged = tmp_path / "tag"
    (tagged / "documents").mkdir(parents=True)
    (tagged / "stats.json").write_text('{"documents_out": 3, "taggers": []}')  # not the envelope
    (tagged / "_COMMITTED").write_text("{}")
    assert main(["select", str(tagged), "--output", str(tmp_path / "select")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"thresher select: error: {tagged / 'stats.json'}: no 'schema_version' field")
    assert err.count("\n") == 1 and not (tmp_path / "select").exists()


class UnlistedError(UserError):
    """A user's error that only this test module defines: no list of classes or module paths names it."""


def _raise_in_task(rows, error):
    """A Spark task's body (mapInArrow or mapPartitions) that raises `error` in the Python worker."""
    for row in rows:
        raise error
        yield row


def test_a_users_error_raised_in_an_arrow_task_is_one_line(spark, capsys):
    message = "shard-7.jsonl line 3 is not JSON: Expecting value"

    def count_in_tasks(args):
        return spark.range(4, numPartitions=2).mapInArrow(partial(_raise_in_task, error=InputError(message)), "id long").count()

    assert run_with_one_line_errors("thresher tag", count_in_tasks, argparse.Namespace()) == 2
    assert capsys.readouterr().err == f"thresher tag: error: {message}\n"


def test_a_user_error_class_defined_outside_thresher_is_one_line_from_a_task(spark, capsys):
    message = "weights.yaml: weight of topic x must be >= 0"

    def count_in_tasks(args):
        return spark.sparkContext.parallelize(range(4), 2).mapPartitions(partial(_raise_in_task, error=UnlistedError(message))).count()

    assert run_with_one_line_errors("thresher select", count_in_tasks, argparse.Namespace()) == 2
    assert capsys.readouterr().err == f"thresher select: error: {message}\n"


def test_any_other_error_raised_in_a_task_still_raises(spark, capsys):
    from pyspark.errors import PythonException

    def count_in_tasks(args):  # a ValueError, the base of UserError, is no user's error
        return spark.range(4, numPartitions=2).mapInArrow(partial(_raise_in_task, error=ValueError("a bug")), "id long").count()

    with pytest.raises(PythonException, match="ValueError: a bug"):
        run_with_one_line_errors("thresher tag", count_in_tasks, argparse.Namespace())
    assert "error:" not in capsys.readouterr().err
