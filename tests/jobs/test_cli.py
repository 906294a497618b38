import argparse
import subprocess
import sys

import pytest

from jobs.cli import SUBCOMMANDS, build_parser, main


def all_parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from all_parsers(sub)


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_every_option_of_every_subcommand_has_help_text(command):
    parser = build_parser(command)
    for sub in all_parsers(parser):
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"{sub.prog}: option {action.dest} has no help text"


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_console_script_help_lists_every_subcommand():
    result = subprocess.run([sys.executable, "-c", "from jobs.cli import main; raise SystemExit(main())", "--help"],
                            capture_output=True, text=True, check=True)
    for command in SUBCOMMANDS:
        assert command in result.stdout


def test_a_bad_config_is_a_clear_error_before_spark_starts(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("prepare:\n  lang_threshold: high\n")
    result = subprocess.run(
        [sys.executable, "-c", "from jobs.cli import main; raise SystemExit(main())", "prepare", "x.warc.gz",
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

    from pipeline.sample_crawl import write_sample_crawl

    inputs = write_sample_crawl(tmp_path / "sample")
    out = tmp_path / "run"
    write_text = pathlib.Path.write_text

    def full_disk(self, *args, **kwargs):  # what the OS says when the device holding OUTPUT is full
        if str(self).startswith(str(out)):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", full_disk)
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
    from jobs.common import COMMITTED_MARKER
    from pipeline.sample_crawl import write_sample_crawl

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
