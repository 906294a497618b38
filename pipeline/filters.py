"""The filter contract: one method looks at one document and keeps it or names why it goes.

Subclasses implement `judge`; the base class counts and times every call, so a stage reports
per-rule documents seen, dropped and seconds (stats.json's `rules`) without each rule doing its own
bookkeeping. Stage 1's steps (URL filters, extraction, language ID, ...) and stage 2's heuristic
families are all `DocumentFilter`s and run through `first_drop`.

Time is wall-clock, `time.perf_counter_ns`: it counts what a step waits on in another process (stage
1's extraction runs in a child, which CPU time of this process would miss) and its I/O, it is the
cheapest clock to read (vDSO, no system call, unlike `process_time`), and integer nanoseconds add up
exactly, so merging task stats gives the same figures in any order or grouping.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Drop:
    """Why a document was removed: `rule` is a stable name (stats key), `detail` the value seen."""

    rule: str
    detail: str = ""


@dataclass
class FilterStats:
    """What one rule did: documents it looked at, those it dropped, and the time its calls took."""

    seen: int = 0
    dropped: int = 0
    nanoseconds: int = 0

    def __add__(self, other: FilterStats) -> FilterStats:
        return FilterStats(self.seen + other.seen, self.dropped + other.dropped, self.nanoseconds + other.nanoseconds)

    @property
    def seconds(self) -> float:
        return self.nanoseconds / 1e9


# Rule name -> its stats, in pipeline order (the order the rules run in).
RuleStats = dict[str, FilterStats]

# A check a filter could not apply to a document is reported as its own entry of the rule stats,
# `<rule>:<check>:skipped:<reason>` (e.g. `gopher_quality:stop_words:skipped:no_list:ko`), right after
# its filter's entry: `seen` counts the documents it was skipped for, `dropped` and time are 0.
SKIPPED = ":skipped:"


def skipped_owner(key: str) -> str:
    """The filter a skip entry belongs to: `gopher_quality:stop_words:skipped:no_list:ko` -> `gopher_quality`."""
    return key.split(SKIPPED, 1)[0].rsplit(":", 1)[0]


class DocumentFilter:
    """Base class. `name` prefixes the rules a filter reports (``name`` or ``name:detail_rule``)."""

    name = "filter"

    def __init__(self) -> None:
        self.stats = FilterStats()
        self.skips: Counter[str] = Counter()  # "<check>:skipped:<reason>" -> documents

    def skip(self, check: str, reason: str) -> None:
        """Count a document `check` was not applied to, and why: never a silent pass."""
        self.skips[f"{check}{SKIPPED}{reason}"] += 1

    @property
    def rule_name(self) -> str:
        """This filter's key in a stage's rule stats; filters built once per list (a blocklist
        category) add what tells them apart."""
        return self.name

    def judge(self, doc: Mapping[str, Any]) -> Drop | None:
        """None to keep `doc`, or a Drop naming the rule that removes it."""
        raise NotImplementedError

    def __call__(self, doc: Mapping[str, Any]) -> Drop | None:
        start = time.perf_counter_ns()
        try:
            verdict = self.judge(doc)
        finally:
            self.stats.nanoseconds += time.perf_counter_ns() - start
            self.stats.seen += 1
        if verdict is not None:
            self.stats.dropped += 1
        return verdict


def first_drop(filters: Iterable[DocumentFilter], doc: Any) -> Drop | None:
    """Run `filters` in order and stop at the first that drops `doc`; None keeps it.

    Every filter sees the same `doc`: stage 2 passes one `DocumentView`, so each split of the text
    is made once for all the rules.
    """
    for doc_filter in filters:
        verdict = doc_filter(doc)
        if verdict is not None:
            return verdict
    return None


def take_stats(filters: Iterable[DocumentFilter]) -> RuleStats:
    """The filters' counts since the last take, in their order, and reset them.

    Filters are built once per worker process and reused by its tasks, so a task takes the counts
    when it starts (dropping what an abandoned earlier task left) and again when it ends: a retried
    task then reports its own documents only, never its failed attempt's too.
    """
    stats: RuleStats = {}
    for doc_filter in filters:
        stats[doc_filter.rule_name] = stats.get(doc_filter.rule_name, FilterStats()) + doc_filter.stats
        doc_filter.stats = FilterStats()
        for key, count in sorted(doc_filter.skips.items()):
            name = f"{doc_filter.rule_name}:{key}"
            stats[name] = stats.get(name, FilterStats()) + FilterStats(seen=count)
        doc_filter.skips = Counter()
    return stats


def merge_rule_stats(parts: Iterable[Mapping[str, FilterStats]]) -> RuleStats:
    """Per-rule sums of `parts` (one per task), rules in the order they first appear.

    Exact integer sums: associative and commutative in the figures. Each task lists every rule of
    its stage in pipeline order, so the order of the merged rules is that order too.
    """
    merged: RuleStats = {}
    for part in parts:
        for rule, stats in part.items():
            merged[rule] = merged.get(rule, FilterStats()) + stats
    # A skip entry first seen in a later part goes after its filter's entry (and that filter's other skips).
    ordered: RuleStats = {}
    skips = sorted(rule for rule in merged if SKIPPED in rule)
    for rule, stats in merged.items():
        if SKIPPED in rule and skipped_owner(rule) in merged:
            continue
        ordered[rule] = stats
        for skip in skips:
            if skipped_owner(skip) == rule:
                ordered[skip] = merged[skip]
    return ordered


def rule_stats_to_json(stats: Mapping[str, FilterStats]) -> dict[str, dict[str, int]]:
    """Exact form, for a task's stats on their way to the driver."""
    return {rule: {"seen": s.seen, "dropped": s.dropped, "nanoseconds": s.nanoseconds} for rule, s in stats.items()}


def rule_stats_from_json(data: Mapping[str, Mapping[str, int]]) -> RuleStats:
    return {rule: FilterStats(s["seen"], s["dropped"], s["nanoseconds"]) for rule, s in data.items()}


def rule_stats_report(stats: Mapping[str, FilterStats]) -> dict[str, dict[str, Any]]:
    """stats.json's `rules`: `{rule: {"seen", "dropped", "seconds"}}` in pipeline order."""
    return {rule: {"seen": s.seen, "dropped": s.dropped, "seconds": round(s.seconds, 6)} for rule, s in stats.items()}
