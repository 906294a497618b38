"""The filter contract: one method looks at one document and keeps it or names why it goes.

Subclasses implement `judge`; the base class counts and times every call, so a stage can report
per-rule drops and cost without each rule doing its own bookkeeping.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Drop:
    """Why a document was removed: `rule` is a stable name (stats key), `detail` the value seen."""

    rule: str
    detail: str = ""


@dataclass
class FilterStats:
    seen: int = 0
    dropped: Counter = field(default_factory=Counter)  # rule -> count
    seconds: float = 0.0

    def merge(self, other: FilterStats) -> None:
        self.seen += other.seen
        self.dropped.update(other.dropped)
        self.seconds += other.seconds


class DocumentFilter:
    """Base class. `name` prefixes the rules a filter reports (``name`` or ``name:detail_rule``)."""

    name = "filter"

    def __init__(self) -> None:
        self.stats = FilterStats()

    def judge(self, doc: Mapping[str, Any]) -> Drop | None:
        """None to keep `doc`, or a Drop naming the rule that removes it."""
        raise NotImplementedError

    def __call__(self, doc: Mapping[str, Any]) -> Drop | None:
        start = time.perf_counter()
        try:
            verdict = self.judge(doc)
        finally:
            self.stats.seconds += time.perf_counter() - start
            self.stats.seen += 1
        if verdict is not None:
            self.stats.dropped[verdict.rule] += 1
        return verdict


def first_drop(filters: Iterable[DocumentFilter], doc: Mapping[str, Any]) -> Drop | None:
    """Run `filters` in order and stop at the first that drops `doc`."""
    for doc_filter in filters:
        verdict = doc_filter(doc)
        if verdict is not None:
            return verdict
    return None
