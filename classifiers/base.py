"""The one classifier interface every model in stage 3 goes through, whatever its backend.

A model directory holds the backend's own files plus `classifier.json`, which names the backend and
the label set; `load_classifier(dir)` dispatches on it. Backends are imported only when used, so a
fastText-only run never imports torch.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from thresher.pipeline.process_cache import ProcessCache
from thresher.schemas.errors import UserError

MANIFEST_NAME = "classifier.json"
METRICS_NAME = "metrics.json"
# Beside the model: a digest of every text it trained on (sorted unique little-endian uint64, the first
# 8 bytes of each text's BLAKE2b), so evaluation can say how much of its data the model has seen.
TRAIN_DIGESTS_NAME = "train_digests.bin"
FORMAT_VERSION = 1

# backend name -> "module:class"
BACKENDS = {
    "fasttext": "thresher.classifiers.fasttext_backend:FastTextClassifier",
    "transformers": "thresher.classifiers.transformers_backend:TransformersClassifier",
    "line_sequence": "thresher.classifiers.line_sequence:LineSequenceClassifier",
}


class ModelNotFoundError(UserError):
    """A model directory that is missing or holds no classifier.json."""


class UnusableModelError(UserError):
    """A model directory whose classifier.json or model files cannot be read or loaded."""


class TextClassifier(ABC):
    """Maps texts to a probability per label. Subclasses implement training, scoring and storage.

    `labels` is the fixed order of the columns `predict_proba` returns.
    """

    backend = ""

    def __init__(self, labels: Sequence[str]):
        self.labels = [str(label) for label in labels]

    @abstractmethod
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Array of shape (len(texts), len(labels)), rows summing to about 1."""

    def predict_batch(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """Top label of each text and its probability."""
        probs = self.predict_proba(texts)
        if len(texts) == 0:
            return [], np.zeros(0, dtype=np.float64)
        best = probs.argmax(axis=1)
        return [self.labels[i] for i in best], probs[np.arange(len(texts)), best].astype(np.float64)

    def label_scores(self, texts: Sequence[str], label: str) -> np.ndarray:
        """Probability of one label for each text (e.g. P(keep) for a line)."""
        return self.predict_proba(texts)[:, self.labels.index(label)].astype(np.float64)

    @classmethod
    @abstractmethod
    def train(cls, texts: Sequence[str], labels: Sequence[str], params: dict[str, Any], seed: int = 0) -> TextClassifier:
        """A new classifier fitted on `texts` and their `labels`; `params` are backend options."""

    @abstractmethod
    def _save_model(self, directory: Path) -> dict[str, Any]:
        """Write the backend's files into `directory`; return extra keys for classifier.json."""

    @classmethod
    def _check_files(cls, directory: Path, manifest: dict[str, Any]) -> None:
        """Raise when the model's files cannot be loaded; by default by loading it (small models)."""
        cls._load_model(directory, manifest)

    @classmethod
    @abstractmethod
    def _load_model(cls, directory: Path, manifest: dict[str, Any]) -> TextClassifier:
        """The classifier stored in `directory` by `_save_model`."""

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        extra = self._save_model(directory)
        manifest = {"backend": self.backend, "labels": self.labels, "format_version": FORMAT_VERSION, **extra}
        (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        return directory


def backend_class(name: str) -> type[TextClassifier]:
    if name not in BACKENDS:
        raise UnusableModelError(f"unknown classifier backend {name!r} (known: {', '.join(sorted(BACKENDS))})")
    module_name, class_name = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise ModelNotFoundError(
            f"no classifier at {directory} (missing {MANIFEST_NAME}); train one with `thresher classifiers train` "
            "or make the default models with `thresher classifiers bootstrap --input CRAWL_OR_STAGE_DIR --output MODELS_DIR`"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UnusableModelError(f"{path}: not JSON ({exc}); train the model again or copy it whole") from None
    missing = [key for key in ("backend", "labels") if not isinstance(manifest, dict) or key not in manifest]
    if missing:
        raise UnusableModelError(f"{path}: no {' or '.join(missing)} (not a thresher classifier.json); "
                                 "train the model again or copy it whole")
    return manifest


def check_model(directory: str | Path) -> None:
    """Load (or, for large backends, read the headers of) the model in `directory` once in this process, so
    that a broken model is one line naming it on the driver, never a failure inside Spark tasks."""
    _CHECKED.by_path(directory, _check_model_files)


def _check_model_files(directory: str) -> bool:
    manifest = read_manifest(directory)
    backend = backend_class(manifest["backend"])
    try:
        backend._check_files(Path(directory), manifest)
    except UserError:
        raise
    except Exception as exc:  # whatever the backend's library raises for files it cannot read
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UnusableModelError(f"{directory}: its {manifest['backend']} model cannot be loaded "
                                 f"({type(exc).__name__}: {reason}); train it again or copy it whole") from None
    return True


def load_classifier(directory: str | Path) -> TextClassifier:
    """The classifier saved in `directory`, whatever its backend."""
    manifest = read_manifest(directory)
    return backend_class(manifest["backend"])._load_model(Path(directory), manifest)


# One loaded model per path per process: Spark executors reuse their Python workers across tasks,
# so each worker loads a model once, not once per partition or batch.
_LOADED = ProcessCache()
_CHECKED = ProcessCache()  # model directories check_model has passed in this process
# When set, every model load appends "<pid> <model dir>" to this file: an audit of which steps load
# models (select must load none), readable across Spark's Python worker processes.
LOAD_LOG_ENV = "THRESHER_MODEL_LOAD_LOG"


def _load_and_log(directory: str) -> TextClassifier:
    classifier = load_classifier(directory)
    log = os.environ.get(LOAD_LOG_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()} {directory}\n")
    return classifier


def cached_classifier(directory: str | Path) -> TextClassifier:
    return _LOADED.by_path(directory, _load_and_log)


def model_digest(directory: str | Path) -> str:
    """A content hash of the model's files (names and bytes; not metrics.json, which evaluation may
    rewrite, nor the training texts' digests, which are no part of the model), to trace tags to the exact model."""
    directory = Path(directory)
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name not in (METRICS_NAME, TRAIN_DIGESTS_NAME)):
        digest.update(str(path.relative_to(directory)).encode() + b"\0")
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def read_metrics(directory: str | Path) -> dict[str, Any]:
    """The model's metrics.json (training record with held-out figures), or {} when it has none."""
    path = Path(directory) / METRICS_NAME
    return json.loads(path.read_text()) if path.is_file() else {}
