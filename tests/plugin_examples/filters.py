"""A custom stage 2 filter: drops documents that mention a word."""

from thresher.pipeline.filters import DocumentFilter, Drop


class MentionFilter(DocumentFilter):
    """Drops a document whose text holds `word` (any case) as `mention:<word>`."""

    name = "mention"

    def __init__(self, word: str):
        super().__init__()
        if not word.strip():
            raise ValueError("word must not be blank")
        self.word = word.lower()

    def judge(self, doc) -> Drop | None:
        return Drop(f"mention:{self.word}", doc.url) if self.word in doc.text.lower() else None


class NoJudge(DocumentFilter):
    """Wrong: defines no judge."""

    name = "no_judge"


class TwoArgumentJudge(DocumentFilter):
    """Wrong: judge takes two documents."""

    name = "two"

    def judge(self, doc, other):
        return None


class NotAFilter:
    """Wrong: no DocumentFilter."""

    def judge(self, doc):
        return None
