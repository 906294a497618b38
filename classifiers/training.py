"""Training and evaluation on labelled data: read, hold out, fit, measure, and store metrics beside the model.

The held-out split is a function of each text and a seed (not of file order or row position), so
`evaluate_saved` can rebuild exactly the split a model was measured on and reproduce its metrics.
Every figure comes with its bootstrap interval (classifiers.metrics); the digests of the training
texts are stored beside the model (base.TRAIN_DIGESTS_NAME), so an evaluation says how many of its
texts the model trained on (`training_overlap`, and a warning when any).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from thresher.classifiers.base import METRICS_NAME, TRAIN_DIGESTS_NAME, TextClassifier, backend_class, load_classifier
from thresher.classifiers.metrics import classification_metrics
from thresher.classifiers.tasks import TASKS, model_input
from thresher.pipeline.seeded_hash import unit_hash
from thresher.pipeline.stagedir.documents import read_jsonl
from thresher.schemas.errors import InputError


@dataclass
class LabelledData:
    texts: list[str]
    labels: list[str]
    skipped: dict[str, int] = field(default_factory=dict)  # rows read but not used, by reason

    def subset(self, rows: Sequence[int]) -> LabelledData:
        return LabelledData([self.texts[i] for i in rows], [self.labels[i] for i in rows])

    def __len__(self) -> int:
        return len(self.texts)


def read_labelled(
    paths: Sequence[str | Path], text_field: str = "text", label_field: str = "label", task: str = "plain"
) -> LabelledData:
    """Rows with a text and a label from JSONL (.jsonl, .json, .jsonl.gz) or Parquet files or directories,
    turned into model inputs the way `task` scores them (see classifiers.tasks).

    Labels are read as strings (0/1 become "0"/"1"); rows with an empty text or a missing label are skipped
    and counted by reason (`skipped`, recorded in metrics.json and said on the console).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
    texts: list[str] = []
    labels: list[str] = []
    skipped = {"empty text": 0, "no label": 0}
    for path in paths:
        for row in _read_rows(Path(path)):
            text, label = row.get(text_field), row.get(label_field)
            if not text:
                skipped["empty text"] += 1
            elif label is None or not str(label).strip():
                skipped["no label"] += 1
            else:
                texts.append(model_input(task, {**row, "text": str(text)}))
                labels.append(str(label).strip())
    if not texts:
        raise InputError(f"no labelled rows (fields {text_field!r}, {label_field!r}) in {', '.join(map(str, paths))}: "
                         "give files with a text and a label per row, or name the fields with --text-field/--label-field")
    return LabelledData(texts, labels, {reason: count for reason, count in skipped.items() if count})


def _read_rows(path: Path):
    if not path.exists():
        raise InputError(f"labelled data {path} does not exist: check the path")
    if path.is_dir() or path.suffix == ".parquet":
        import pyarrow.dataset as ds

        yield from ds.dataset(str(path), format="parquet").to_table().to_pylist()
        return
    yield from read_jsonl(path)


@dataclass
class LineDocuments:
    """Documents as line sequences with a label (or None) per line: what a model over the whole
    page's lines (the line_sequence backend) trains on."""

    ids: list[str]
    lines: list[list[str]]
    labels: list[list[str | None]]

    def subset(self, rows: Sequence[int]) -> LineDocuments:
        return LineDocuments([self.ids[i] for i in rows], [self.lines[i] for i in rows], [self.labels[i] for i in rows])

    def __len__(self) -> int:
        return len(self.ids)


def read_line_documents(
    paths: Sequence[str | Path], text_field: str = "text", label_field: str = "label", document_field: str = "url"
) -> LineDocuments:
    """Clutter-task rows (one line each: `text`, `line_index`, `line_count`, the document's `url`, and a
    label or none) put back together into documents, in document order. A row without a label is a
    context line; an index no row names is a blank line."""
    grouped: dict[str, dict] = {}
    for path in paths:
        for number, row in enumerate(_read_rows(Path(path)), 1):
            document, index, count = row.get(document_field), row.get("line_index"), row.get("line_count")
            if document is None or index is None or count is None:
                raise InputError(
                    f"{path} row {number}: line_sequence training needs `{document_field}`, `line_index` and `line_count` in every row"
                )
            index, count = int(index), int(count)
            if not 0 <= index < count:
                raise InputError(f"{path} row {number}: line_index {index} is outside the document's {count} lines")
            doc = grouped.setdefault(str(document), {"count": count, "lines": {}})
            if doc["count"] != count:
                raise InputError(f"{path} row {number}: document {document} has line_count {count} here and {doc['count']} before")
            label = row.get(label_field)
            doc["lines"][index] = (str(row.get(text_field) or ""), str(label).strip() if label is not None and str(label).strip() else None)
    if not any(label is not None for doc in grouped.values() for _, label in doc["lines"].values()):
        raise InputError(f"no labelled lines (fields {text_field!r}, {label_field!r}) in {', '.join(map(str, paths))}")
    ids = sorted(grouped)
    lines = [[grouped[d]["lines"].get(i, ("", None))[0] for i in range(grouped[d]["count"])] for d in ids]
    labels = [[grouped[d]["lines"].get(i, ("", None))[1] for i in range(grouped[d]["count"])] for d in ids]
    return LineDocuments(ids, lines, labels)


def holdout_rows(texts: Sequence[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train rows, held-out rows): a text is held out when its hash falls under `fraction`.

    Identical texts land on the same side, so duplicates cannot leak from training into evaluation.
    """
    held = [unit_hash(seed, text) < fraction for text in texts]
    return [i for i, h in enumerate(held) if not h], [i for i, h in enumerate(held) if h]


def fold_of(texts: Sequence[str], folds: int, seed: int) -> list[int]:
    return [int(unit_hash(seed, text) * folds) for text in texts]


def evaluate(classifier: TextClassifier, data: LabelledData) -> dict[str, Any]:
    return classification_metrics(data.labels, classifier.labels, classifier.predict_proba(data.texts))


def text_digests(texts: Sequence[str]) -> np.ndarray:
    """The sorted unique 64-bit digests (first 8 bytes of BLAKE2b) of `texts`."""
    return np.unique(_digests(texts))


def _digests(texts: Sequence[str]) -> np.ndarray:
    return np.array([int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little") for text in texts],
                    dtype=np.uint64)


def write_train_digests(output_dir: str | Path, texts: Sequence[str]) -> None:
    """The digests of the texts a model trained on, beside it (base.TRAIN_DIGESTS_NAME)."""
    (Path(output_dir) / TRAIN_DIGESTS_NAME).write_bytes(text_digests(texts).astype("<u8").tobytes())


def read_train_digests(model_dir: str | Path) -> np.ndarray | None:
    """The training texts' digests stored beside a model; None for a model trained by an older thresher."""
    path = Path(model_dir) / TRAIN_DIGESTS_NAME
    return np.frombuffer(path.read_bytes(), dtype="<u8").astype(np.uint64) if path.is_file() else None


def with_overlap(metrics: dict[str, Any], texts: Sequence[str], train_digests: np.ndarray | None) -> dict[str, Any]:
    """`metrics` with `training_overlap` (how many of the evaluated `texts` the model trained on) and a
    warning when any did (or when the model stored no digests to compare with)."""
    if train_digests is None:
        metrics["training_overlap"] = None
        metrics.setdefault("warnings", []).append(
            f"no {TRAIN_DIGESTS_NAME} beside the model (trained by an older thresher): overlap of the evaluation data "
            "with the training data not checked")
        return metrics
    seen = int(np.isin(_digests(texts), train_digests).sum()) if texts else 0
    metrics["training_overlap"] = {"examples": seen, "fraction": round(seen / len(texts), 6) if texts else 0.0}
    if seen:
        metrics.setdefault("warnings", []).append(
            f"{seen} of {len(texts)} evaluation texts ({seen / len(texts):.0%}) are in the model's training data: "
            "these figures overstate how it does on unseen text")
    return metrics


def train_and_save(
    backend: str,
    data: LabelledData,
    output_dir: str | Path,
    params: dict[str, Any] | None = None,
    holdout: float = 0.1,
    seed: int = 0,
    sources: Sequence[str] = (),
    extra_train: LabelledData | None = None,
    text_field: str = "text",
    label_field: str = "label",
    task: str = "plain",
) -> dict[str, Any]:
    """Fit on the training split (plus `extra_train`, never evaluated), measure on the held-out split,
    save the model and `metrics.json` in `output_dir`, and return the metrics record."""
    train_rows, eval_rows = holdout_rows(data.texts, holdout, seed)
    train = data.subset(train_rows)
    if extra_train is not None:
        train = LabelledData(train.texts + extra_train.texts, train.labels + extra_train.labels)
    started = time.perf_counter()
    classifier = backend_class(backend).train(train.texts, train.labels, params or {}, seed=seed)
    train_seconds = time.perf_counter() - started
    classifier.save(output_dir)
    write_train_digests(output_dir, train.texts)
    digests = read_train_digests(output_dir)
    heldout = data.subset(eval_rows)
    record = {
        **_record_head(backend, task, sources, output_dir, text_field, label_field, holdout),
        "seed": seed,
        "params": params or {},
        "train_examples": len(train),
        "extra_train_examples": len(extra_train) if extra_train is not None else 0,
        "label_counts": dict(sorted(_count(data.labels).items())),
        "rows_skipped": data.skipped,
        "train_seconds": round(train_seconds, 3),
        "heldout": with_overlap(evaluate(classifier, heldout), heldout.texts, digests) if eval_rows else {"examples": 0},
    }
    return _write_record(output_dir, record)


def evaluate_documents(classifier: TextClassifier, data: LineDocuments) -> dict[str, Any]:
    """Line metrics of a document model on the labelled lines of `data`'s documents."""
    from thresher.classifiers.clutter import line_scores

    label = classifier.labels[-1]
    scores = line_scores(["\n".join(lines) for lines in data.lines], classifier, label)
    truth, positive = [], []
    for doc_labels, doc_scores in zip(data.labels, scores, strict=True):
        for truth_label, score in zip(doc_labels, doc_scores, strict=True):
            if truth_label is not None and score is not None:
                truth.append(truth_label)
                positive.append(score)
    if not truth:
        return {"examples": 0}
    probs = np.column_stack([1.0 - np.array(positive), np.array(positive)]) if len(classifier.labels) == 2 else None
    return classification_metrics(truth, classifier.labels, probs)


def _document_texts(data: LineDocuments) -> list[str]:
    """What a document model's training digests are of: each document's lines, joined."""
    return ["\n".join(lines) for lines in data.lines]


def holdout_documents(ids: Sequence[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train documents, held-out documents), by a hash of the document id: all of a document's lines
    are on one side."""
    return holdout_rows(ids, fraction, seed)


def train_and_save_documents(
    backend: str,
    data: LineDocuments,
    output_dir: str | Path,
    params: dict[str, Any] | None = None,
    holdout: float = 0.1,
    seed: int = 0,
    sources: Sequence[str] = (),
    text_field: str = "text",
    label_field: str = "label",
) -> dict[str, Any]:
    """`train_and_save` for a model over whole documents' lines: the held-out split is by document."""
    train_rows, eval_rows = holdout_documents(data.ids, holdout, seed)
    train = data.subset(train_rows)
    started = time.perf_counter()
    classifier = backend_class(backend).train_documents(list(zip(train.lines, train.labels, strict=True)), params or {}, seed=seed)
    train_seconds = time.perf_counter() - started
    classifier.save(output_dir)
    write_train_digests(output_dir, _document_texts(train))
    heldout = data.subset(eval_rows)
    line_labels = [label for labels in data.labels for label in labels if label is not None]
    record = {
        **_record_head(backend, "clutter", sources, output_dir, text_field, label_field, holdout),
        "holdout_by": "document",
        "seed": seed,
        "params": params or {},
        "train_documents": len(train),
        "train_examples": sum(label is not None for labels in train.labels for label in labels),
        "label_counts": dict(sorted(_count(line_labels).items())),
        "train_seconds": round(train_seconds, 3),
        "heldout": (with_overlap(evaluate_documents(classifier, heldout), _document_texts(heldout), read_train_digests(output_dir))
                    if eval_rows else {"examples": 0}),
    }
    return _write_record(output_dir, record)


def _record_head(backend: str, task: str, sources: Sequence[str], output_dir: str | Path, text_field: str,
                 label_field: str, holdout: float) -> dict[str, Any]:
    """The fields of metrics.json that say what was trained on what (every training path writes them first)."""
    return {
        "backend": backend,
        "task": task,
        "data": [_portable_path(source, Path(output_dir)) for source in sources],
        "text_field": text_field,
        "label_field": label_field,
        "holdout_fraction": holdout,
    }


def _write_record(output_dir: str | Path, record: dict[str, Any]) -> dict[str, Any]:
    (Path(output_dir) / METRICS_NAME).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return record


def evaluate_saved(model_dir: str | Path, data_paths: Sequence[str] | None = None, split: str = "heldout") -> dict[str, Any]:
    """Metrics of the model in `model_dir` on its recorded held-out split (`split="heldout"`) or on every
    row (`split="all"`) of `data_paths`, which default to the data it was trained on."""
    metrics_file = Path(model_dir) / METRICS_NAME
    if not metrics_file.is_file():
        raise InputError(f"{model_dir}: no {METRICS_NAME} (not a model directory thresher wrote): check the path")
    recorded = json.loads(metrics_file.read_text())
    paths = list(data_paths or [Path(model_dir) / path for path in recorded["data"]])
    if not paths:
        raise InputError(f"{metrics_file} names no training data: pass --data FILE to evaluate on")
    missing = [path for path in paths if not data_paths and not Path(path).exists()]
    if missing:
        raise InputError(f"{model_dir}: the data it was trained on ({os.path.normpath(missing[0])}) is not here: "
                         "pass --data FILE to evaluate on labelled data (or rebuild that data where the model was made)")
    if recorded.get("holdout_by") == "document":
        documents = read_line_documents(paths, recorded.get("text_field", "text"), recorded.get("label_field", "label"))
        if split == "heldout":
            _, rows = holdout_documents(documents.ids, recorded["holdout_fraction"], recorded["seed"])
            documents = documents.subset(rows)
        elif split != "all":
            raise ValueError(f"split must be 'heldout' or 'all', not {split!r}")
        return with_overlap(evaluate_documents(load_classifier(model_dir), documents), _document_texts(documents),
                            read_train_digests(model_dir))
    data = read_labelled(
        paths, recorded.get("text_field", "text"), recorded.get("label_field", "label"), recorded.get("task", "plain")
    )
    if split == "heldout":
        _, rows = holdout_rows(data.texts, recorded["holdout_fraction"], recorded["seed"])
        data = data.subset(rows)
    elif split != "all":
        raise ValueError(f"split must be 'heldout' or 'all', not {split!r}")
    return with_overlap(evaluate(load_classifier(model_dir), data), data.texts, read_train_digests(model_dir))


def cross_validate(
    backend: str, data: LabelledData, folds: int = 5, params: dict[str, Any] | None = None, seed: int = 0
) -> dict[str, Any]:
    """k-fold cross-validation: train on k-1 folds, measure on the remaining one, for each fold."""
    fold = fold_of(data.texts, folds, seed)
    per_fold = []
    for k in range(folds):
        train = data.subset([i for i, f in enumerate(fold) if f != k])
        test = data.subset([i for i, f in enumerate(fold) if f == k])
        classifier = backend_class(backend).train(train.texts, train.labels, params or {}, seed=seed)
        per_fold.append(evaluate(classifier, test))
    summary: dict[str, Any] = {"folds": folds, "per_fold": per_fold}
    for key in ("accuracy", "macro_f1", "auc"):
        values = [m[key] for m in per_fold if key in m]
        if values:
            summary[f"{key}_mean"] = float(np.mean(values))
            summary[f"{key}_std"] = float(np.std(values))
    return summary


def _portable_path(source: str | Path, model_dir: Path) -> str:
    """`source` relative to the model directory when it sits beside it (bootstrap's weak_labels/), so
    a models directory that is moved whole still finds its data; otherwise absolute."""
    source, model_dir = Path(source).resolve(), model_dir.resolve()
    if source.is_relative_to(model_dir.parent):
        return os.path.relpath(source, model_dir)
    return str(source)


def _count(values: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts
