"""`thresher config show`: the effective config (defaults, then --config, then --set) as YAML.

The output is itself a config file: `--config` on it gives the same settings and the same digest.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from thresher.jobs.stage_job import config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    text = "print the effective config as YAML (every key, with the --config file and --set overrides applied)"
    show = actions.add_parser("show", help=text, description=text)
    show.add_argument("--config", help="YAML config file layered over configs/default.yaml")
    show.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one config value, e.g. --set select.line_thresholds.clutter=0.4 (VALUE is parsed as YAML; repeatable)",
    )


def config_yaml(config) -> str:
    import yaml

    settings = dataclasses.asdict(config)
    del settings["base_dir"]  # set by the loader, not a key
    return yaml.safe_dump(settings, sort_keys=False, allow_unicode=True)


def effective_config_text(config) -> str:
    """What `config show` prints and `thresher run` writes beside its report: a digest line, then the YAML."""
    return f"# effective thresher config, digest {config.digest()}\n{config_yaml(config)}"


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(effective_config_text(config_from_args(args)))
    return 0
