"""The contract between tag and select: which taggers tagged a stage 2 output, and the columns each added.

Per tagger, its name, kind (`document`, `lines` or `pii`), top_k, its model's labels, and the model that made
the columns (directory, content hash, held-out metrics, whether it learned from weak labels). A
document tagger adds `<name>_label` (its top label), `<name>_score` (that label's probability) and
`<name>_top` (the `top_k` best labels with their probabilities); a lines tagger adds
`<name>_line_scores`, one score per line aligned with text.split("\\n") (null for blank lines); a pii
tagger (no model: pipeline.pii) adds `<name>_spans`, the personal information found as (kind, start,
end) in Python string offsets of `text`, sorted and never overlapping; the `decontam` tagger (kind
`decontam`, labels: the benchmarks, model_hash: the benchmark files' and settings' hash) adds
`decontam_hits` and `decontam_spans` (pipeline.decontam).

tag writes the declaration to OUTPUT/taggers.json, committed with the stage; select reads it (and
never tag's stats details) for the checks of its rules against the kinds and labels, for the tag
columns it passes on, and for the held-out accuracy it gates rebalancing on:

    {"format": 1, "taggers": [{"name": "page_type", "kind": "document", "top_k": 5,
      "labels": ["article", ...], "columns": ["page_type_label", "page_type_score", "page_type_top"],
      "model_dir": "/models/page_type", "model_hash": "9c1f...", "heldout": {"accuracy": 0.91, ...},
      "weak_labels": true}, ...]}

A JSON file rather than Parquet schema metadata: select checks its settings before Spark starts, and
Spark's Parquet writer does not keep an Arrow schema's metadata.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from thresher.schemas import extend
from thresher.schemas.documents import RULES
from thresher.schemas.stats import StatsError, file_in

TAGGERS_FILE = "taggers.json"
FORMAT = 1
KINDS = ("document", "lines", "pii")  # what a configured tagger may be
DECONTAM = "decontam"  # the benchmark decontamination tagger's kind and name (pipeline.decontam); its labels are the benchmarks
MODEL_FREE_KINDS = ("pii", DECONTAM)  # taggers of these kinds run rules, not a model: no model_dir, labels or held-out figures
LABEL_SCORE = pa.struct([pa.field("label", pa.string()), pa.field("score", pa.float64())])
PII_SPAN = pa.struct([pa.field("kind", pa.string()), pa.field("start", pa.int64()), pa.field("end", pa.int64())])
DECONTAM_HIT = pa.struct([pa.field("benchmark", pa.string()), pa.field("item_ids", pa.list_(pa.string())),
                          pa.field("ngrams", pa.int64())])
DECONTAM_SPAN = pa.struct([pa.field("benchmark", pa.string()), pa.field("start", pa.int64()), pa.field("end", pa.int64())])


class TaggersFileError(StatsError):
    """A tag output's taggers.json missing or not the declaration: like a bad stats.json, rerun the stage."""


@dataclass(frozen=True)
class DeclaredTagger:
    """One tagger as tag declares it to select; `labels` and the model's trace stay empty until its model is read."""

    name: str
    model_dir: str = ""  # the model that made the columns (absolute)
    kind: str = "document"
    top_k: int = 5  # labels in <name>_top (document taggers)
    labels: tuple[str, ...] = ()  # the model's labels, in its order
    model_hash: str | None = None  # content hash of the model files (classifiers.base.model_digest)
    heldout: dict[str, Any] = field(default_factory=dict)  # the model's held-out metrics (its metrics.json)
    weak_labels: bool = False  # the model learned from weak (bootstrapped) labels

    def columns(self) -> list[pa.Field]:
        if self.kind == DECONTAM:
            return [pa.field(hits_column(self.name), pa.list_(DECONTAM_HIT)), pa.field(spans_column(self.name), pa.list_(DECONTAM_SPAN))]
        if self.kind == "lines":
            return [pa.field(line_scores_column(self.name), pa.list_(pa.float64()))]
        if self.kind == "pii":
            return [pa.field(spans_column(self.name), pa.list_(PII_SPAN))]
        return [
            pa.field(label_column(self.name), pa.string()),
            pa.field(score_column(self.name), pa.float64()),
            pa.field(top_column(self.name), pa.list_(LABEL_SCORE)),
        ]


def label_column(tagger: str) -> str:
    return f"{tagger}_label"


def score_column(tagger: str) -> str:
    return f"{tagger}_score"


def top_column(tagger: str) -> str:
    return f"{tagger}_top"


def line_scores_column(tagger: str) -> str:
    return f"{tagger}_line_scores"


def hits_column(tagger: str) -> str:
    """Per document, each benchmark it holds items of: the item ids and the matched n-grams."""
    return f"{tagger}_hits"


def spans_column(tagger: str) -> str:
    """Per document, character spans [start, end) a span tagger found: a pii tagger's findings, the decontam
    tagger's merged matched n-grams per benchmark."""
    return f"{tagger}_spans"


def tagged_schema(taggers: Sequence[DeclaredTagger]) -> pa.Schema:
    """The tag output: the stage 2 columns, then each tagger's, in tagger order (the one place it is derived)."""
    return extend(RULES, *[column for tagger in taggers for column in tagger.columns()])


# Each declared entry's fields and their JSON types; `columns` is derived, written for readers of the file.
_ENTRY_TYPES = {"name": str, "kind": str, "top_k": int, "labels": list, "columns": list, "model_dir": str,
                "model_hash": (str, type(None)), "heldout": dict, "weak_labels": bool}
_DECLARED = [f.name for f in dataclasses.fields(DeclaredTagger)]


def taggers_json(taggers: Sequence[DeclaredTagger]) -> bytes:
    """The declaration of `taggers` (in column order): a taggers.json's content."""
    entries = [{**{name: getattr(t, name) for name in _DECLARED}, "labels": list(t.labels),
                "columns": [c.name for c in t.columns()]} for t in taggers]
    return (json.dumps({"format": FORMAT, "taggers": entries}, indent=2) + "\n").encode()


def write_taggers(path: str | os.PathLike, taggers: Sequence[DeclaredTagger]) -> None:
    """The declaration of `taggers` (in column order) as a taggers.json at `path` (local disk)."""
    Path(path).write_bytes(taggers_json(taggers))


def read_taggers(directory: str | os.PathLike) -> tuple[DeclaredTagger, ...]:
    """The taggers a committed tag output declares, in column order; TaggersFileError naming the file
    when it is missing (a tag output of an older thresher) or not the declaration. `directory` is a local
    path or any fsspec URL."""
    path, read = file_in(directory, TAGGERS_FILE)

    def fail(what: str) -> TaggersFileError:
        return TaggersFileError(f"{path}: {what} (not a thresher {TAGGERS_FILE} of format {FORMAT}; rerun tag)")

    try:
        declared = json.loads(read())
    except FileNotFoundError:
        raise TaggersFileError(f"{path}: no such file (a tag output from a thresher that did not declare its "
                               "taggers; rerun tag to write one)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise fail(f"not valid JSON ({exc})") from None
    if not isinstance(declared, dict) or declared.get("format") != FORMAT or not isinstance(declared.get("taggers"), list):
        raise fail("expected an object with format and a taggers list")
    taggers = []
    for i, entry in enumerate(declared["taggers"]):
        where = f"taggers[{i}]"
        if not isinstance(entry, dict) or set(entry) != set(_ENTRY_TYPES):
            raise fail(f"{where} should have the fields {', '.join(_ENTRY_TYPES)}")
        for key, kind in _ENTRY_TYPES.items():
            if not _has_type(entry[key], kind):
                raise fail(f"{where}.{key} has the wrong type ({type(entry[key]).__name__})")
        if entry["kind"] not in (*KINDS, DECONTAM):
            raise fail(f"{where}.kind {entry['kind']!r} is not one of {', '.join((*KINDS, DECONTAM))}")
        if entry["top_k"] < 1 or not all(isinstance(label, str) for label in entry["labels"]):
            raise fail(f"{where}: top_k must be at least 1 and labels strings")
        tagger = DeclaredTagger(**{name: entry[name] for name in _DECLARED if name != "labels"}, labels=tuple(entry["labels"]))
        if entry["columns"] != [c.name for c in tagger.columns()]:
            raise fail(f"{where}.columns {entry['columns']} are not the columns of a {tagger.kind} tagger {tagger.name!r}")
        taggers.append(tagger)
    return tuple(taggers)


def _has_type(value: Any, kind: type | tuple[type, ...]) -> bool:
    """isinstance, where a JSON true/false is no number (Python's bool is an int)."""
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
