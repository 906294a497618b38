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
    assert main(["config", "show", "--set", "select.model_gate.floors.topic.floor=7"]) == 2
    assert "select.model_gate.floors.topic.floor: 7" in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_set_examples_name_a_real_key_of_the_subcommands_own_section(command):
    import yaml

    from thresher.pipeline.config import load_config

    sections = {"rules": "rules", "tag": "tag", "select": "select", "tag-select": "select", "export": "export",
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
