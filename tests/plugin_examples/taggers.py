"""A custom stage 3 tagger: the share of capital letters in a document, and its first word."""

import pyarrow as pa
import pyarrow.compute as pc

from thresher.classifiers.tagging import ColumnTagger


class ShoutTagger(ColumnTagger):
    """`<prefix>_upper_share` (float64): capitals among the letters of the first `chars` characters;
    `<prefix>_first_word` (string)."""

    def __init__(self, prefix: str = "shout", chars: int = 2000):
        self.prefix, self.chars = prefix, chars

    def columns(self) -> dict[str, pa.DataType]:
        return {f"{self.prefix}_upper_share": pa.float64(), f"{self.prefix}_first_word": pa.string()}

    def tag(self, documents: pa.Table) -> dict:
        texts = pc.fill_null(documents.column("text"), "").to_pylist()
        return {f"{self.prefix}_upper_share": [upper_share(text[: self.chars]) for text in texts],
                f"{self.prefix}_first_word": [(text.split() or [None])[0] for text in texts]}


def upper_share(text: str) -> float:
    letters = [c for c in text if c.isalpha()]
    return sum(c.isupper() for c in letters) / len(letters) if letters else 0.0


class UndeclaredColumns(ColumnTagger):
    """Wrong: declares no columns."""

    def columns(self):
        return {}

    def tag(self, documents):
        return {}
