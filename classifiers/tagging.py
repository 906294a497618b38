"""Stage 3 tag step on a batch of documents, without Spark: every tagger's scores as columns.

Each tagger adds the columns it declares (schemas.tags: `<name>_label`, `<name>_score`, `<name>_top`
for a document tagger; `<name>_line_scores` for a lines tagger, null for blank lines, which are
never scored; `<name>_spans` for a pii tagger, the findings of pipeline.pii, no model); the
decontam tagger (pipeline.decontam) adds `decontam_hits` and `decontam_spans`. No row is dropped and
`text` is never changed, so no tag depends on a select setting. Models come from the per-process
cache: a Spark worker loads each model once. A tagger's model directory may be a URL (s3://...): the
worker reads it from this node's local copy (pipeline.locations.local_copy), fetched once per node.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa

from thresher.classifiers.base import cached_classifier
from thresher.classifiers.clutter import line_scores
from thresher.classifiers.tasks import model_input
from thresher.pipeline.config import ConfigError, PluginConfig
from thresher.pipeline.decontam import DecontamIndex, find
from thresher.pipeline.locations import local_copy
from thresher.pipeline.pii import find_pii
from thresher.pipeline.plugins import load_plugin
from thresher.pipeline.process_cache import ProcessCache
from thresher.schemas.documents import RULES
from thresher.schemas.tags import (
    MODEL_FREE_KINDS,
    DeclaredTagger,
    hits_column,
    label_column,
    line_scores_column,
    score_column,
    spans_column,
    tagged_schema,
    top_column,
)


@dataclass(frozen=True)
class Tagger(DeclaredTagger):
    """One resolved tagger: what it declares (name, an absolute model path, kind, top_k; the model's
    labels and trace once read) and how to feed its model. Small and picklable."""

    input: str = "plain"  # a classifiers.tasks task; lines taggers use "clutter" (line plus position markers)
    line_label: str = "keep"
    # transformers models only: config `transformers` settings over the model's own (InferenceSettings
    # names and values), applied in the worker to its cached model; empty for fastText.
    inference: tuple[tuple[str, Any], ...] = ()


def check_tagger(tagger: Tagger) -> None:
    """What the config's declarations cannot say: a lines tagger's model reads lines."""
    if tagger.kind == "lines" and tagger.input != "clutter":
        raise ValueError("a lines tagger scores lines as the clutter task does: input must be clutter")


def top_labels(probs: np.ndarray, labels: Sequence[str], k: int) -> list[list[dict]]:
    """The k best labels of each row with their probabilities, best first (ties: label order)."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[{"label": labels[j], "score": float(row[j])} for j in best] for row, best in zip(probs, order, strict=True)]


@dataclass(frozen=True)
class DecontamStep:
    """The decontam tagger as tasks run it: its declaration and the benchmark index (pipeline.decontam),
    pickled with the task (Spark broadcasts a large one)."""

    tagger: DeclaredTagger
    index: DecontamIndex


def decontam_columns(text: str, step: DecontamStep) -> dict[str, list[dict]]:
    """The decontam tagger's columns for one text: per benchmark hit its item ids and n-gram count, and its spans."""
    hits = find(text, step.index)
    return {
        hits_column(step.tagger.name): [{"benchmark": h.benchmark, "item_ids": list(h.item_ids), "ngrams": h.ngrams} for h in hits],
        spans_column(step.tagger.name): [{"benchmark": h.benchmark, "start": start, "end": end} for h in hits for start, end in h.spans],
    }


class ColumnTagger:
    """A user's own tagger (config tag.custom_taggers; README "Your own filters and taggers"). `columns`
    declares what it writes (name -> Arrow type), `tag` scores one batch of documents: a pyarrow Table of
    every column tag reads (doc_id, text, url, lang, ..., the input's own columns), one row per document,
    in; each declared column's values, one per row (a list or an Arrow array), out."""

    def columns(self) -> dict[str, pa.DataType]:
        raise NotImplementedError

    def tag(self, documents: pa.Table) -> dict[str, Any]:
        raise NotImplementedError


_CUSTOM = ProcessCache()


def custom_tagger(spec: PluginConfig, key: str) -> ColumnTagger:
    """The custom tagger `spec` names, made once per process; ConfigError (one line naming `key`) for a
    class that cannot be made or declares no columns Arrow can hold."""
    def make() -> ColumnTagger:
        tagger = load_plugin(spec, ColumnTagger, "tag", ("documents",), key)
        declared = tagger.columns()
        if not isinstance(declared, dict) or not declared or not all(
                isinstance(name, str) and name.isidentifier() and isinstance(kind, pa.DataType) for name, kind in declared.items()):
            raise ConfigError(f"{key}: {spec.class_path}.columns() must return a non-empty dict of column name -> "
                              f"pyarrow type, not {declared!r}")
        return tagger

    return _CUSTOM.get((spec.class_path, repr(sorted(spec.args.items()))), make)


def custom_columns(tagger: ColumnTagger) -> list[pa.Field]:
    return [pa.field(name, kind) for name, kind in tagger.columns().items()]


def _custom_values(tagger: ColumnTagger, table: pa.Table) -> list[pa.Array]:
    """`tagger`'s declared columns for `table`; a result that is not one value per row of each is one line
    naming the class (raised in the task)."""
    values = tagger.tag(table)
    fields = custom_columns(tagger)
    name = type(tagger).__qualname__
    if not isinstance(values, dict) or set(values) != {field.name for field in fields}:
        raise ConfigError(f"custom tagger {name}.tag returned {sorted(values) if isinstance(values, dict) else type(values)}, "
                          f"not its declared columns {[field.name for field in fields]}")
    arrays = []
    for field in fields:
        column = values[field.name]
        array = column.cast(field.type) if isinstance(column, (pa.Array, pa.ChunkedArray)) else pa.array(column, field.type)
        if len(array) != table.num_rows:
            raise ConfigError(f"custom tagger {name}.tag returned {len(array)} values of {field.name} for {table.num_rows} "
                              "documents")
        arrays.append(array)
    return arrays


def tag_table(table: pa.Table, taggers: Sequence[Tagger], custom: Sequence[tuple[PluginConfig, str]] = (),
              decontam: DecontamStep | None = None) -> pa.Table:
    """RULES-shaped rows in, the same rows with every tagger's columns out, the decontam tagger's next,
    then the custom taggers' (`custom`: their config entries and keys), then the input's own columns as
    they came."""
    own = [name for name in table.column_names if name not in RULES.names]
    rows = table.select([name for name in table.column_names if name in RULES.names]).to_pylist()
    if decontam is not None:
        for row in rows:
            row.update(decontam_columns(row.get("text") or "", decontam))
    for tagger in taggers:
        if tagger.kind == "pii":
            for row in rows:
                row[spans_column(tagger.name)] = [span._asdict() for span in find_pii(row.get("text") or "")]
            continue
        model = cached_classifier(tagger.model_dir)
        if tagger.inference:
            model = model.with_settings(dict(tagger.inference))
        if tagger.kind == "lines":
            scores = line_scores([r.get("text") or "" for r in rows], model, tagger.line_label)
            for row, line_score in zip(rows, scores, strict=True):
                row[line_scores_column(tagger.name)] = line_score
            continue
        probs = model.predict_proba([model_input(tagger.input, row) for row in rows])
        for row, top in zip(rows, top_labels(probs, model.labels, tagger.top_k), strict=True):
            row[label_column(tagger.name)] = top[0]["label"]
            row[score_column(tagger.name)] = top[0]["score"]
            row[top_column(tagger.name)] = top
    tagged = pa.Table.from_pylist(rows, schema=tagged_schema([*taggers, *([decontam.tagger] if decontam else [])]))
    for spec, key in custom:
        tagger = custom_tagger(spec, key)
        for field, array in zip(custom_columns(tagger), _custom_values(tagger, table), strict=True):
            tagged = tagged.append_column(field, array)
    for name in own:
        tagged = tagged.append_column(table.schema.field(name), table.column(name))
    return tagged


def tag_batches(batches: Iterator[pa.RecordBatch], taggers: Sequence[Tagger], batch_size: int,
                custom: Sequence[tuple[PluginConfig, str]] = (), decontam: DecontamStep | None = None) -> Iterator[pa.RecordBatch]:
    """The mapInArrow body: RULES-shaped record batches in, tagged batches out, `batch_size` rows per model call.
    Models at a URL are read from this node's copy, fetched when the task has its first batch."""
    local = None
    for batch in batches:
        if local is None:
            local = [tagger if tagger.kind in MODEL_FREE_KINDS else replace(tagger, model_dir=local_copy(tagger.model_dir))
                     for tagger in taggers]
        for start in range(0, batch.num_rows, batch_size):
            yield from tag_table(pa.Table.from_batches([batch.slice(start, batch_size)]), local, custom, decontam).to_batches()
