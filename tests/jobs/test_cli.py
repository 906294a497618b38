import argparse
import subprocess
import sys

import pytest

from thresher.jobs.cli import SUBCOMMANDS, build_parser, main


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
    result = subprocess.run([sys.executable, "-c", "from thresher.jobs.cli import main; raise SystemExit(main())", "--help"],
                            capture_output=True, text=True, check=True)
    for command in SUBCOMMANDS:
        assert command in result.stdout


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


def test_version_is_the_installed_package_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"thresher {version('thresher')}"


def test_config_show_prints_a_config_that_loads_back_the_same(tmp_path, capsys):
    from thresher.pipeline.config import load_config

    layer = tmp_path / "mine.yaml"
    layer.write_text("rules:\n  minhash_seed: 9\n")
    assert main(["config", "show", "--config", str(layer), "--set", "select.rebalance.max_copies=3"]) == 0
    shown = capsys.readouterr().out
    expected = load_config(layer, {"select.rebalance.max_copies": 3})
    assert f"digest {expected.digest()}" in shown.splitlines()[0]
    assert "max_copies: 3" in shown and "minhash_seed: 9" in shown
    (tmp_path / "shown.yaml").write_text(shown)
    assert load_config(tmp_path / "shown.yaml") == load_config(tmp_path / "shown.yaml")
    assert load_config(tmp_path / "shown.yaml").digest() == expected.digest()
    assert main(["config", "show", "--set", "select.rebalance.min_model_accuracy=7"]) == 2
    assert "select.rebalance.min_model_accuracy: 7" in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_set_examples_name_a_real_key_of_the_subcommands_own_section(command):
    import yaml

    from thresher.pipeline.config import load_config

    sections = {"rules": "rules", "tag": "tag", "select": "select", "models": "select", "export": "export",
                "prepare": "prepare", "tokenizer": "export", "classifiers": "tag"}
    for sub in all_parsers(build_parser(command)):
        for action in sub._actions:
            if action.dest != "overrides" or "--set" not in action.option_strings:
                continue
            example = action.help.split("--set ", 1)[1].split()[0]
            key, _, value = example.partition("=")
            load_config(None, {key: yaml.safe_load(value)})  # a real key, a valid value
            if command in sections:
                assert key.startswith(sections[command] + "."), f"{sub.prog}: --set example {example}"


def test_classifiers_subcommands_have_descriptions():
    parser = build_parser("classifiers")
    subs = [sub for sub in all_parsers(parser) if sub.prog.startswith("thresher classifiers ")]
    assert {sub.prog.split()[-1] for sub in subs} == {"train", "eval", "bootstrap"}
    for sub in subs:
        assert sub.description and len(sub.description) > 20, sub.prog


def test_ctrl_c_before_spark_starts_is_one_line_and_130(monkeypatch, capsys):
    import thresher.jobs.config_show

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(thresher.jobs.config_show, "run", interrupted)
    assert main(["config", "show"]) == 130
    assert capsys.readouterr().err == "[thresher] interrupted; run the same command again to resume\n"


def test_no_job_module_shadows_the_standard_library():
    """`spark-submit jobs/<job>.py` puts jobs/ first on sys.path: a jobs/select.py would be imported
    by the standard library's own `import select` (socket, subprocess) and break the job."""
    import sys
    from pathlib import Path

    jobs_dir = Path(__file__).resolve().parents[2] / "jobs"
    assert not {p.stem for p in jobs_dir.glob("*.py")} & set(sys.stdlib_module_names)


def test_train_help_says_how_to_launch_it_under_torchrun(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "torchrun --nproc_per_node" in capsys.readouterr().out


def test_a_users_error_raised_in_a_spark_task_is_one_line(spark, tmp_path, capsys):
    """A malformed JSONL line past the first, met by a stage that takes no input rejects (the reader's
    InputError raised in a Python worker), is one line naming the file and line, not a Java stack."""
    from thresher.jobs.documents_input import documents_frame
    from thresher.jobs.errors import run_with_one_line_errors
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
