"""stats.json: the one shape every stage's statistics take, written at its commit, read by the report.

    {
      "schema_version": 1,
      "stage": "rules",                          # the stage that wrote it
      "thresher_version": "0.1.0",
      "config_digest": "3f2a...",                # pipeline.config.Config.digest() of the config it ran with
      "started": "2026-01-01T12:00:00Z",         # UTC, to the second
      "finished": "2026-01-01T12:00:17Z",
      "seconds": {"total": 16.6, "<phase>": 4.2},  # wall-clock seconds, the whole stage and its named phases
      "inputs": ["/runs/demo/prepare"],          # what it read, as given
      "documents_in": 54,                        # input units: records for prepare, documents after
      "documents_out": 48,
      "rejects_by_rule": {"<rule>": 6},          # reject rows per rule (lines too, for line rules)
      "rules": {"<rule>": {"seen": 54, "dropped": 3, "seconds": 0.8}},  # optional: per filter, in pipeline order
      "details": {...}                           # whatever else the stage measures (its own keys)
    }

`rules` is the cost of each filter a stage runs (documents it judged, dropped, seconds spent);
stages without filters leave it out.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

from thresher.schemas.errors import UserError

STATS_FILE = "stats.json"
SCHEMA_VERSION = 1
RULE_FIELDS = {"seen": int, "dropped": int, "seconds": float}
_REQUIRED = {
    "schema_version": int,
    "stage": str,
    "thresher_version": str,
    "config_digest": str,
    "started": str,
    "finished": str,
    "seconds": dict,
    "inputs": list,
    "documents_in": int,
    "documents_out": int,
    "rejects_by_rule": dict,
    "details": dict,
}
_OPTIONAL = {"rules": dict}


class StatsError(UserError):
    """A stats.json that is not the envelope (hand-edited, cut short, or from an older thresher)."""


def thresher_version() -> str:
    """The installed thresher's version, as `thresher --version` prints it and the envelope records it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("thresher")
    except PackageNotFoundError:  # run from a checkout that was never pip-installed
        return "unknown (not installed)"


def utc_timestamp(seconds: float) -> str:
    """`seconds` since the epoch as the envelope writes times: ISO 8601, UTC, to the second."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def stage_stats(
    stage: str, *, thresher_version: str, config_digest: str, started: float, finished: float,
    phases: dict[str, float], inputs: list[str], documents_in: int, documents_out: int,
    rejects_by_rule: dict[str, int], details: dict[str, Any], rules: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The checked envelope: `started`/`finished` are epoch seconds, `phases` the named phases' seconds."""
    stats = {
        "schema_version": SCHEMA_VERSION,
        "stage": stage,
        "thresher_version": thresher_version,
        "config_digest": config_digest,
        "started": utc_timestamp(started),
        "finished": utc_timestamp(finished),
        "seconds": {"total": round(finished - started, 3), **{k: round(v, 3) for k, v in phases.items()}},
        "inputs": [str(i) for i in inputs],
        "documents_in": documents_in,
        "documents_out": documents_out,
        "rejects_by_rule": dict(rejects_by_rule),
        **({"rules": rules} if rules is not None else {}),
        "details": details,
    }
    return validate_stats(stats, f"{stage} stats")


def validate_stats(stats: Any, source: str) -> dict[str, Any]:
    """`stats` if it is the envelope; StatsError naming `source` and the first field that is wrong."""

    def fail(what: str) -> StatsError:
        return StatsError(f"{source}: {what} (not a thresher {STATS_FILE} of schema version {SCHEMA_VERSION}; "
                          "rerun the stage that wrote it)")

    if not isinstance(stats, dict):
        raise fail(f"expected a JSON object, got {type(stats).__name__}")
    for key, kind in _REQUIRED.items():
        if key not in stats:
            raise fail(f"no {key!r} field")
        _check_type(stats[key], kind, key, fail)
    unknown = sorted(set(stats) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise fail(f"unknown field(s) {', '.join(unknown)}")
    if stats["schema_version"] != SCHEMA_VERSION:
        raise fail(f"schema_version {stats['schema_version']}")
    if "total" not in stats["seconds"]:
        raise fail("no 'seconds.total'")
    for name, value in stats["seconds"].items():
        _check_type(value, float, f"seconds.{name}", fail)
    for name in ("started", "finished"):
        try:
            datetime.datetime.strptime(stats[name], "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            raise fail(f"{name} {stats[name]!r} is not a UTC time like 2026-01-01T12:00:00Z") from None
    for i, item in enumerate(stats["inputs"]):
        _check_type(item, str, f"inputs[{i}]", fail)
    for key in ("documents_in", "documents_out"):
        if stats[key] < 0:
            raise fail(f"{key} is negative")
    for rule, count in stats["rejects_by_rule"].items():
        _check_type(count, int, f"rejects_by_rule.{rule}", fail)
    if "rules" in stats:
        _check_type(stats["rules"], dict, "rules", fail)
        for rule, entry in stats["rules"].items():
            _check_type(entry, dict, f"rules.{rule}", fail)
            if set(entry) != set(RULE_FIELDS):
                raise fail(f"rules.{rule} has fields {sorted(entry)}, expected {sorted(RULE_FIELDS)}")
            for key, kind in RULE_FIELDS.items():
                _check_type(entry[key], kind, f"rules.{rule}.{key}", fail)
    return stats


def _check_type(value: Any, kind: type, key: str, fail) -> None:
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise fail(f"{key} should be {'a number' if kind is float else kind.__name__}, got {type(value).__name__}")


def file_in(directory: str | os.PathLike, name: str) -> tuple[str | Path, Any]:
    """`name` in `directory` (a local path or any fsspec URL): how to show it (a Path on local disk) and a
    function that reads its bytes (FileNotFoundError when it is not there)."""
    if "://" not in str(directory) or str(directory).startswith("file://"):
        path = Path(str(directory).removeprefix("file://")) / name
        return path, path.read_bytes
    import fsspec

    url = f"{str(directory).rstrip('/')}/{name}"

    def read() -> bytes:
        fs, located = fsspec.core.url_to_fs(url)
        fs.invalidate_cache(located)
        return fs.cat_file(located)
    return url, read


def stats_json(stats: dict[str, Any], where: str) -> bytes:
    """The text of stats.json for `where`, the envelope checked (keys in the order given: `rules` keeps the
    pipeline's order); StatsError naming `where` for anything but the envelope."""
    validate_stats(stats, where)
    return (json.dumps(stats, indent=2) + "\n").encode()


def read_stats(directory: str | os.PathLike) -> dict[str, Any]:
    """DIRECTORY/stats.json (DIRECTORY a local path or any fsspec URL), checked; StatsError naming the file
    when it is missing, not JSON or not the envelope."""
    path, read = file_in(directory, STATS_FILE)
    try:
        stats = json.loads(read())
    except FileNotFoundError:
        raise StatsError(f"{path}: no such file (the stage did not commit there)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise StatsError(f"{path}: not valid JSON ({exc})") from None
    return validate_stats(stats, str(path))
