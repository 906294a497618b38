"""Line sequence backend: clutter line scores from the whole page's line sequence, not one line alone.

Clutter comes in blocks (menus, related-link lists, footers, sign-up prompts), so a line's neighbours
and its place in the page say what its own words often do not. Each non-blank line of a document
becomes a vector: a learned mean of hashed word unigram and bigram embeddings (tokens as fastText
sees them, `fasttext_tokens`: CJK characters stand alone, so Chinese gets character bigrams) beside
the numeric features of `classifiers.clutter.line_features`. A one-layer bidirectional GRU runs over
the document's line vectors, and each line's output (with its own vector) gives P(keep).

Documents are scored one at a time, so a line's score depends on its document only, never on the
batch. Training is seeded and single-threaded (same data and seed, same model). The model is a few
MB of float32 in safetensors plus the manifest's settings.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from thresher.classifiers.base import TextClassifier, load_classifier
from thresher.classifiers.clutter import CLUTTER, KEEP, LINE_CHARS, LINE_FEATURES, line_features
from thresher.classifiers.fasttext_backend import fasttext_tokens

WEIGHTS_FILE = "line_sequence.safetensors"
LABELS = (CLUTTER, KEEP)
DEFAULT_PARAMS: dict[str, Any] = {
    "buckets": 32_768,  # hashed token rows: 32k x 16 float32 = 2 MB
    "embedding_dim": 16,
    "hidden": 32,
    "epochs": 6,
    "lr": 0.003,
    "weight_decay": 0.0,
    "dropout": 0.2,
    "clutter_weight": 1.0,  # loss weight of a clutter line relative to a keep line
    "length_weight": 0.5,  # a line's loss weight also grows as chars ** this: the benchmarks count characters and words, not lines
    "batch_documents": 8,  # documents per optimizer step (training only; scoring takes one at a time)
    # > 0: a fastText line model (the clutter task's line_input) is a first stage whose P(keep) is one
    # more line input; the network learns from its out-of-fold scores over this many folds of the
    # training documents, and the first stage kept is trained on all of them
    "first_stage_folds": 0,
    "first_stage": {"epoch": 25, "lr": 0.5, "dim": 16, "wordNgrams": 2, "bucket": 100_000, "minCount": 1, "quantize": True},
}
_NET_KEYS = ("buckets", "embedding_dim", "hidden", "dropout")
FIRST_STAGE_DIR = "first_stage"
_LOGIT_CLIP = 6.0


def token_ids(line: str, buckets: int) -> list[int]:
    """Hashed ids of the line's tokens and token bigrams (crc32: the same in every process)."""
    tokens = fasttext_tokens(line, LINE_CHARS).split()
    grams = tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)]
    return [zlib.crc32(gram.encode("utf-8")) % buckets for gram in grams]


def _network(settings: dict[str, Any]):
    import torch
    from torch import nn

    class LineSequenceNet(nn.Module):
        def __init__(self):
            super().__init__()
            hidden = int(settings["hidden"])
            # embedding_dim 0: no words at all, the line features and the sequence only
            words = int(settings["embedding_dim"])
            self.embedding = nn.EmbeddingBag(int(settings["buckets"]), words, mode="mean") if words else None
            inputs = int(settings["embedding_dim"]) + len(LINE_FEATURES) + int(bool(settings.get("first_stage")))
            self.project = nn.Linear(inputs, hidden)
            self.dropout = nn.Dropout(float(settings["dropout"]))
            self.context = nn.GRU(hidden, hidden, batch_first=True, bidirectional=True)
            self.out = nn.Linear(3 * hidden, 1)

        def forward(self, ids, offsets, features, lengths):
            """Logits of P(keep) of the lines of documents laid end to end: ids/offsets as
            EmbeddingBag takes them, features (lines, LINE_FEATURES), lengths the documents' line
            counts (the GRU runs over each document alone)."""
            lines = torch.cat([self.embedding(ids, offsets), features], dim=1) if self.embedding is not None else features
            own = self.dropout(torch.relu(self.project(lines)))
            if len(lengths) == 1:
                around = self.context(own.unsqueeze(0))[0].squeeze(0)
            else:
                packed = nn.utils.rnn.pack_sequence(torch.split(own, lengths), enforce_sorted=False)
                padded, _ = nn.utils.rnn.pad_packed_sequence(self.context(packed)[0], batch_first=True)
                around = torch.cat([padded[i, :n] for i, n in enumerate(lengths)])
            return self.out(torch.cat([own, around], dim=1)).squeeze(1)

    return LineSequenceNet()


def _document_inputs(
    lines: Sequence[str], buckets: int, first_stage: Sequence[float] | None = None
) -> tuple[list[list[int]], list[list[float]]]:
    """(token ids, features) of each of a document's lines (all non-blank); the first stage's P(keep)
    of each line, when there is one, is a last feature (as a clipped logit)."""
    features = line_features(lines)
    if first_stage is not None:
        for row, p in zip(features, first_stage, strict=True):
            p = min(max(p, 1e-6), 1 - 1e-6)
            row.append(max(-_LOGIT_CLIP, min(_LOGIT_CLIP, math.log(p / (1 - p)))) / _LOGIT_CLIP)
    return [token_ids(line, buckets) for line in lines], features


def _train_first_stage(documents: Sequence[tuple[Sequence[str], Sequence[str | None]]], params: dict[str, Any], seed: int):
    """The fastText line model on the labelled lines of `documents`, fed as the clutter tagger feeds it."""
    from thresher.classifiers.clutter import line_input
    from thresher.classifiers.fasttext_backend import FastTextClassifier

    texts, labels = [], []
    for lines, line_labels in documents:
        for index, (line, label) in enumerate(zip(lines, line_labels, strict=True)):
            if label is not None and line.strip():
                texts.append(line_input(line, index, len(lines)))
                labels.append(label)
    return FastTextClassifier.train(texts, labels, params, seed=seed)


def _first_stage_scores(model, texts: Sequence[str]) -> list[list[float | None]]:
    from thresher.classifiers.clutter import line_scores

    return line_scores(texts, model, KEEP)


def _out_of_fold_first_stage(documents, params: dict[str, Any], folds: int, seed: int) -> list[list[float | None]]:
    """Each document's first-stage scores from a model trained on the other folds' documents only
    (folds by a hash of the document's text), so the network learns how far to trust unseen scores."""
    from thresher.classifiers.training import fold_of

    texts = ["\n".join(lines) for lines, _ in documents]
    fold = fold_of(texts, folds, seed)
    scores: list[list[float | None]] = [[] for _ in documents]
    for k in range(folds):
        held = [i for i, f in enumerate(fold) if f == k]
        train = [documents[i] for i, f in enumerate(fold) if f != k]
        if not held or not {label for _, labels in train for label in labels if label is not None} >= {KEEP, CLUTTER}:
            raise ValueError(f"first_stage_folds {folds}: too few labelled documents for a first stage in every fold")
        for i, doc_scores in zip(held, _first_stage_scores(_train_first_stage(train, params, seed), [texts[i] for i in held]), strict=True):
            scores[i] = doc_scores
    return scores


def _batch_tensors(documents: Sequence[tuple[list[list[int]], list[list[float]]]]):
    """The network's inputs (ids, offsets, features, lengths) for documents laid end to end."""
    import torch

    ids: list[int] = []
    offsets: list[int] = []
    features: list[list[float]] = []
    for line_ids, line_features_ in documents:
        for one in line_ids:
            offsets.append(len(ids))
            ids.extend(one)
        features.extend(line_features_)
    return (
        torch.tensor(ids, dtype=torch.long),
        torch.tensor(offsets, dtype=torch.long),
        torch.tensor(features, dtype=torch.float32),
        [len(line_ids) for line_ids, _ in documents],
    )


@contextmanager
def _one_torch_thread():
    """Torch on one thread while scoring: the matrices are tiny, and more threads only spin (8.9 ms
    instead of 2.5 ms CPU per document measured with two), besides competing with Spark's workers."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _scored_lines(text: str) -> tuple[list[str], list[int]]:
    """A text's non-blank lines (the ones scored) and their indexes in text.split("\\n")."""
    lines = (text or "").split("\n")
    where = [i for i, line in enumerate(lines) if line.strip()]
    return [lines[i] for i in where], where


class LineSequenceClassifier(TextClassifier):
    backend = "line_sequence"
    scores_documents = True  # classifiers.clutter.line_scores hands it whole documents

    def __init__(self, net, settings: dict[str, Any], first_stage: TextClassifier | None = None):
        super().__init__(LABELS)
        self.net = net.eval()
        self.settings = dict(settings)
        self.first_stage = first_stage

    def _keep(self, lines: Sequence[str], prior: Sequence[float] | None) -> np.ndarray:
        """P(keep) of one document's lines (the network in inference mode, on the calling thread)."""
        import torch

        with torch.inference_mode():
            inputs = _batch_tensors([_document_inputs(lines, int(self.settings["buckets"]), prior)])
            return torch.sigmoid(self.net(*inputs)).double().numpy()

    def document_line_scores(self, texts: Sequence[str], label: str = KEEP) -> list[list[float | None]]:
        """P(`label`) of each line of each text, aligned with text.split("\\n"); None for blank lines."""
        if label not in self.labels:
            raise ValueError(f"unknown label {label!r} (labels: {', '.join(self.labels)})")
        first_stage = _first_stage_scores(self.first_stage, texts) if self.first_stage is not None else None
        result: list[list[float | None]] = []
        with _one_torch_thread():
            for number, text in enumerate(texts):
                lines, where = _scored_lines(text)
                scores: list[float | None] = [None] * len((text or "").split("\n"))
                if lines:
                    keep = self._keep(lines, [first_stage[number][i] for i in where] if first_stage is not None else None)
                    for index, p in zip(where, keep if label == KEEP else 1.0 - keep, strict=True):
                        scores[index] = float(p)
                result.append(scores)
        return result

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Each text scored as a document of one line (newlines read as spaces; no neighbours, and no
        first stage); columns in `labels` order."""
        if not len(texts):
            return np.zeros((0, len(self.labels)))
        if self.first_stage is not None:
            raise ValueError("a line_sequence model with a first stage scores whole documents only (document_line_scores)")
        with _one_torch_thread():
            keep = np.array([self._keep([" ".join((text or "").split())], None)[0] for text in texts], dtype=np.float64)
        return np.column_stack([1.0 - keep, keep])

    @classmethod
    def train(cls, texts, labels, params=None, seed=0):
        raise ValueError(
            "the line_sequence backend learns from whole documents, not single texts: "
            "train it with `thresher classifiers train --task clutter --backend line_sequence`"
        )

    @classmethod
    def train_documents(
        cls, documents: Sequence[tuple[Sequence[str], Sequence[str | None]]], params: dict[str, Any] | None = None, seed: int = 0
    ) -> LineSequenceClassifier:
        """Fit on documents given as (lines, label of each line: keep, clutter or None for unlabelled
        lines, which still serve as context). Blank lines are dropped first (they are never scored)."""
        import torch

        settings = {**DEFAULT_PARAMS, **(params or {})}
        unknown = sorted(set(settings) - set(DEFAULT_PARAMS))
        if unknown:
            raise ValueError(f"unknown line_sequence options {unknown} (known: {', '.join(DEFAULT_PARAMS)})")
        for lines, labels in documents:
            if len(lines) != len(labels):
                raise ValueError(f"{len(labels)} labels for a document of {len(lines)} lines")
            bad = {label for label in labels} - {KEEP, CLUTTER, None}
            if bad:
                raise ValueError(f"line labels must be {KEEP} or {CLUTTER} (or empty), got {sorted(map(str, bad))[:5]}")
        labelled = {label for _, labels in documents for label in labels if label is not None}
        if labelled != {KEEP, CLUTTER}:
            raise ValueError(f"training needs lines of both labels ({KEEP}, {CLUTTER}), got {sorted(labelled)}")
        folds = int(settings["first_stage_folds"])
        first_stage_params = dict(settings["first_stage"]) if folds else {}
        priors = _out_of_fold_first_stage(documents, first_stage_params, folds, seed) if folds else None
        prepared = []
        for number, (lines, labels) in enumerate(documents):
            kept = [i for i, line in enumerate(lines) if line.strip()]
            if any(labels[i] is not None for i in kept):
                target = [1.0 if labels[i] == KEEP else 0.0 for i in kept]
                weight = [
                    (0.0 if labels[i] is None else float(settings["clutter_weight"]) if labels[i] == CLUTTER else 1.0)
                    * len(lines[i].strip()) ** float(settings["length_weight"])
                    for i in kept
                ]
                prior = [priors[number][i] for i in kept] if priors is not None else None
                prepared.append((_document_inputs([lines[i] for i in kept], int(settings["buckets"]), prior), target, weight))

        # what the saved model needs to rebuild the network (and, under "train", how it was trained)
        kept = {key: settings[key] for key in _NET_KEYS} | {"first_stage": bool(folds), "train": settings}
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            torch.manual_seed(seed)
            net = _network(kept)
            optimizer = torch.optim.Adam(net.parameters(), lr=float(settings["lr"]), weight_decay=float(settings["weight_decay"]))
            order = random.Random(seed)
            net.train()
            size = int(settings["batch_documents"])
            for _epoch in range(int(settings["epochs"])):
                shuffled = order.sample(range(len(prepared)), len(prepared))
                for start in range(0, len(shuffled), size):
                    batch = [prepared[i] for i in shuffled[start : start + size]]
                    target = torch.tensor([t for _, targets, _ in batch for t in targets])
                    weight = torch.tensor([w for _, _, weights in batch for w in weights])
                    logits = net(*_batch_tensors([inputs for inputs, _, _ in batch]))
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum")
                    optimizer.zero_grad()
                    (loss / max(float(weight.sum()), 1.0)).backward()
                    optimizer.step()
        finally:
            torch.set_num_threads(threads)
        first_stage = _train_first_stage(documents, first_stage_params, seed) if folds else None
        return cls(net, kept, first_stage)

    def _save_model(self, directory: Path) -> dict[str, Any]:
        from safetensors.torch import save_file

        save_file({name: tensor.detach().contiguous() for name, tensor in self.net.state_dict().items()}, str(directory / WEIGHTS_FILE))
        if self.first_stage is not None:
            self.first_stage.save(directory / FIRST_STAGE_DIR)
        return {"weights_file": WEIGHTS_FILE, "settings": self.settings, "line_features": list(LINE_FEATURES)}

    @classmethod
    def _load_model(cls, directory, manifest):
        from safetensors.torch import load_file

        if manifest.get("line_features") != list(LINE_FEATURES):
            raise ValueError(
                f"the line_sequence model in {directory} was trained on other line features than this thresher computes: retrain it"
            )
        settings = manifest["settings"]
        net = _network(settings)
        net.load_state_dict(load_file(str(Path(directory) / manifest.get("weights_file", WEIGHTS_FILE))))
        first_stage = load_classifier(Path(directory) / FIRST_STAGE_DIR) if settings.get("first_stage") else None
        return cls(net, settings, first_stage)
