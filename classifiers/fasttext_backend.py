"""fastText backend: trains in seconds on CPUs, scores thousands of documents per second per core.

fastText splits words on whitespace only, so `fasttext_tokens` first puts spaces around every CJK
character and punctuation mark (with word bigrams, Chinese gets character bigrams) and lowercases.
fasttext 0.9.3's Python `predict()` calls `np.array(..., copy=False)`, which numpy 2 refuses, so
scoring calls the bound C++ `model.f.predict` directly.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from thresher.classifiers.base import TextClassifier
from thresher.pipeline.lexicon import CJK_CHAR
from thresher.schemas.errors import InputError

LABEL_PREFIX = "__label__"
MODEL_FILE = "model.bin"

_PUNCT = re.compile(r"([^\w\s])")
_SPACE = re.compile(r"\s+")

# Training options (fastText names). wordNgrams=2 also avoids the sporadic "Encountered NaN" that
# this fasttext 0.9.3 build raises with wordNgrams=1 (bucket 0), which we saw on the DCLM data.
DEFAULT_PARAMS: dict[str, Any] = {
    "epoch": 25,
    "lr": 0.5,
    "dim": 32,
    "wordNgrams": 2,
    "minCount": 1,
    "bucket": 200_000,  # hashed word-bigram rows: 200k x 32 floats keeps a model near 25 MB
    "loss": "softmax",
    "max_chars": 20_000,  # ours, not fastText's: the text prefix a model sees, bounding cost per page
    "quantize": False,  # ours: product-quantize the trained model (fastText .ftz: a fraction of the size)
}
QUANTIZED_MODEL_FILE = "model.ftz"


def fasttext_tokens(text: str, max_chars: int) -> str:
    """One line of space-separated, lowercased tokens; CJK characters and punctuation stand alone."""
    text = text[:max_chars].lower()
    text = CJK_CHAR.sub(r" \g<0> ", text)
    text = _PUNCT.sub(r" \1 ", text)
    return _SPACE.sub(" ", text).strip()


# The training call, run by a fresh interpreter that imports nothing but fasttext.
_TRAIN_SCRIPT = """
import json, sys
import fasttext
job = json.loads(sys.argv[1])
quantize = job["options"].pop("quantize", False)
model = fasttext.train_supervised(input=job["input"], **job["options"])
if quantize:
    model.quantize(input=job["input"], qnorm=True, retrain=False)
model.save_model(job["output"])
"""
TRAIN_ATTEMPTS = 3


def _train_in_fresh_process(train_path: str, options: dict[str, Any], seed: int) -> str:
    """Train in a new Python process and return the saved model's path.

    This fasttext 0.9.3 build raises a spurious "Encountered NaN" on some trainings after the first in
    a process (same data, seed and one thread succeed in a fresh one; lowering lr does not help), so
    each training gets its own process; a failure is retried, and one thread makes any successful
    attempt produce the same model (fastText's multi-threaded Hogwild updates are nondeterministic).
    """
    model_path = train_path + ".bin"
    job = {"input": train_path, "output": model_path, "options": {**options, "seed": seed, "thread": 1, "verbose": 0}}
    errors = []
    for _attempt in range(TRAIN_ATTEMPTS):
        done = subprocess.run([sys.executable, "-c", _TRAIN_SCRIPT, json.dumps(job)], capture_output=True, text=True)
        if done.returncode == 0:
            return model_path
        errors.append(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit code {done.returncode}")
    raise RuntimeError(f"fastText training failed {TRAIN_ATTEMPTS} times: {errors}")


class FastTextClassifier(TextClassifier):
    backend = "fasttext"

    def __init__(self, model, labels: Sequence[str], max_chars: int):
        super().__init__(labels)
        self.model = model
        self.max_chars = max_chars
        self._column = {LABEL_PREFIX + label: i for i, label in enumerate(self.labels)}

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        probs = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        for row, text in enumerate(texts):
            line = fasttext_tokens(text or "", self.max_chars) + "\n"
            for prob, label in self.model.f.predict(line, -1, 0.0, "replace"):
                probs[row, self._column[label]] = prob
        # fastText reports exp(log(p + 1e-5)), which can exceed 1 by that epsilon.
        return np.clip(probs, 0.0, 1.0)

    @classmethod
    def train(cls, texts, labels, params=None, seed=0):
        import fasttext

        options = {**DEFAULT_PARAMS, **(params or {})}
        max_chars = int(options.pop("max_chars"))
        if len(set(labels)) < 2:
            raise InputError(f"training needs at least two labels, got only {sorted(set(labels))}: "
                             "add examples of another label")
        bad = sorted({label for label in labels if not label or _SPACE.search(label)})
        if bad:
            raise InputError(f"fastText labels are single words, these hold whitespace: {bad[:5]}: "
                             f"rename them (e.g. {_SPACE.sub('_', bad[0].strip()) or 'a_label'!r})")
        handle, train_path = tempfile.mkstemp(prefix="thresher-fasttext-", suffix=".txt")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                for text, label in zip(texts, labels, strict=True):
                    out.write(f"{LABEL_PREFIX}{label} {fasttext_tokens(text or '', max_chars)}\n")
            model = fasttext.load_model(_train_in_fresh_process(train_path, options, seed))
        finally:
            for path in (train_path, train_path + ".bin"):
                if os.path.exists(path):
                    os.unlink(path)
        model_labels = [label[len(LABEL_PREFIX) :] for label in model.labels]
        return cls(model, sorted(model_labels), max_chars)

    def _save_model(self, directory: Path) -> dict[str, Any]:
        name = QUANTIZED_MODEL_FILE if self.model.is_quantized() else MODEL_FILE
        self.model.save_model(str(directory / name))
        return {"model_file": name, "max_chars": self.max_chars}

    @classmethod
    def _check_files(cls, directory, manifest):
        """Loaded in a child process whose address space is bounded: a damaged file's header can make
        fastText allocate (and fill) gigabytes before it fails, which the driver must not do."""
        path = Path(directory) / manifest.get("model_file", MODEL_FILE)
        limit = max(2 << 30, 8 * path.stat().st_size)
        probe = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]),) * 2); "
                 "import fasttext; fasttext.load_model(sys.argv[1])")
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, "-c", probe, str(path), str(limit)], capture_output=True, text=True,
                              env=env, timeout=300)
        if done.returncode != 0:
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            raise ValueError(lines[-1] if lines else f"the loading process ended with status {done.returncode}")

    @classmethod
    def _load_model(cls, directory, manifest):
        import fasttext

        model = fasttext.load_model(str(directory / manifest.get("model_file", MODEL_FILE)))
        return cls(model, manifest["labels"], int(manifest.get("max_chars", DEFAULT_PARAMS["max_chars"])))
