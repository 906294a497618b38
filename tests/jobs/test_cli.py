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


def test_no_job_module_shadows_the_standard_library():
    """`spark-submit jobs/<job>.py` puts jobs/ first on sys.path: a jobs/select.py would be imported
    by the standard library's own `import select` (socket, subprocess) and break the job."""
    import sys
    from pathlib import Path

    jobs_dir = Path(__file__).resolve().parents[2] / "jobs"
    assert not {p.stem for p in jobs_dir.glob("*.py")} & set(sys.stdlib_module_names)
