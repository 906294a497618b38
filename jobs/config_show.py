"""`thresher config show`: the effective config (defaults, then --config, then --set) as YAML, every key
with the comments configs/default.yaml gives it (its meaning, its valid values, the source of its number).

The output is itself a config file: `--config` on it gives the same settings and the same digest.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from typing import Any

from thresher.jobs.stage_job import config_from_args

# A mapping key at the start of a line of default.yaml: its indentation and name.
_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[^\s#:'\"{}\[\],][^:#]*?|'[^']*'|\"[^\"]*\"):(?:\s|$)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    text = ("print the effective config as YAML (every key, with the --config file and --set overrides applied, "
            "and the comments of configs/default.yaml: what each key means, its valid values, where its number comes from)")
    show = actions.add_parser("show", help=text, description=text)
    show.add_argument("--config", help="YAML config file layered over configs/default.yaml")
    show.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one config value, e.g. --set select.line_thresholds.clutter=0.4 (VALUE is parsed as YAML; repeatable)",
    )


@dataclasses.dataclass(frozen=True)
class KeyComments:
    """The comments of one key of default.yaml: whole comment lines above it (as written, indentation
    included) and the comment at the end of its own line (without its `#`)."""

    above: tuple[str, ...] = ()
    inline: str = ""


def default_comments(text: str) -> tuple[tuple[str, ...], dict[str, KeyComments]]:
    """default.yaml's comments: the file's opening comment lines, and each key's by its dotted name."""
    comments: dict[str, KeyComments] = {}
    header: list[str] = []
    pending: list[str] = []
    path: list[tuple[int, str]] = []  # (indentation, key) of the open mappings, outermost first
    seen_key = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(line.rstrip())
            continue
        match = _KEY_LINE.match(line)
        if not stripped or not match:
            if not stripped and not seen_key:  # the opening comment ends at the first blank line
                header, pending = header + pending, []
            continue
        seen_key = True
        indent, key = len(match["indent"]), match["key"].strip("'\"")
        while path and path[-1][0] >= indent:
            path.pop()
        path.append((indent, key))
        comments[".".join(name for _, name in path)] = KeyComments(tuple(pending), _inline_comment(line[match.end():]))
        pending = []
    return tuple(header), comments


def _inline_comment(rest: str) -> str:
    """The comment at the end of a value (`value  # comment`), outside quotes; '' when there is none."""
    quote = ""
    for i, char in enumerate(rest):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or rest[i - 1].isspace()):
            return rest[i + 1:].strip()
    return ""


def _flow(value: Any) -> str:
    """`value` as one line of YAML (a scalar, or a list or mapping in flow style) that load_yaml reads back."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=float("inf"))
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _lines(settings: dict[str, Any], comments: dict[str, KeyComments], prefix: str = "", depth: int = 0) -> list[str]:
    lines = []
    for key, value in settings.items():
        dotted = f"{prefix}{key}"
        comment = comments.get(dotted, KeyComments())
        if not depth and lines:
            lines.append("")  # a blank line between sections, as in default.yaml
        lines += comment.above
        inline = f"  # {comment.inline}" if comment.inline else ""
        if isinstance(value, dict) and value:
            lines.append(f"{'  ' * depth}{_flow(key)}:{inline}")
            lines += _lines(value, comments, dotted + ".", depth + 1)
        else:
            lines.append(f"{'  ' * depth}{_flow(key)}: {_flow(value)}{inline}")
    return lines


def config_yaml(config) -> str:
    from thresher.pipeline.config import default_config_path

    settings = dataclasses.asdict(config)
    del settings["base_dir"]  # set by the loader, not a key
    header, comments = default_comments(default_config_path().read_text(encoding="utf-8"))
    return "\n".join([*header, "", *_lines(settings, comments)]) + "\n"


def effective_config_text(config) -> str:
    """What `config show` prints and `thresher run` writes beside its report: a digest line, then the YAML."""
    return f"# effective thresher config, digest {config.digest()}\n{config_yaml(config)}"


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(effective_config_text(config_from_args(args)))
    return 0
