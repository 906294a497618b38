"""Rehydration, as FineWeb-2 does it: MinHash dedup keeps one document per cluster, and select may
repeat that document by the size of the cluster it stood for (stage 2's `minhash_cluster_size`).

FineWeb-2 (github.com/huggingface/fineweb-2, README "Deduplication") keeps `minhash_cluster_size` on
each kept document and reports gains, mostly for high-resource languages, from these copies: a cluster
of 1: 1; of 2 or 3: 2 or 3; of 4: 3; of 5 to 99: 5; of 100 to 999: 8; of 1000 or more: 1 (very large
clusters being mostly boilerplate). Config `select.rehydrate` maps cluster-size ranges ("1", "5-99",
"1000+") to copies; empty (the default) is off. The copies multiply rebalancing's `sample_copies`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from thresher.pipeline.config import ConfigError

# FineWeb-2's weights in select.rehydrate's form: what README.md shows as the example setting.
FINEWEB2_REHYDRATE = {"1": 1, "2": 2, "3": 3, "4": 3, "5-99": 5, "100-999": 8, "1000+": 1}
_RANGE = re.compile(r"^\s*(\d+)\s*(?:(-)\s*(\d+)|(\+))?\s*$")


@dataclass(frozen=True)
class SizeRange:
    """Clusters of `low` to `high` documents (None: no upper bound) get `copies` copies of their kept document."""

    low: int
    high: int | None
    copies: int

    @property
    def name(self) -> str:
        if self.high is None:
            return f"{self.low}+"
        return str(self.low) if self.high == self.low else f"{self.low}-{self.high}"


def parse_rehydrate(mapping: Mapping[str, int], key: str = "select.rehydrate") -> tuple[SizeRange, ...]:
    """The ranges in size order; a ConfigError (one line) unless they cover every size from 1 up exactly
    once, the last open ("N+"), each with a whole number of copies of at least 1."""
    ranges = []
    for text, copies in mapping.items():
        match = _RANGE.match(str(text))
        if match is None:
            raise ConfigError(f"{key}: {text!r} is not a cluster-size range: write N, N-M or N+ (e.g. \"5-99\": 5)")
        low = int(match.group(1))
        high = None if match.group(4) else int(match.group(3)) if match.group(2) else low
        if low < 1 or (high is not None and high < low):
            raise ConfigError(f"{key}: {text!r} is an empty range of cluster sizes (sizes start at 1)")
        if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
            raise ConfigError(f"{key}.{text}: {copies!r} copies: give a whole number of at least 1")
        ranges.append(SizeRange(low, high, copies))
    ranges.sort(key=lambda size_range: size_range.low)
    expected = 1
    for size_range in ranges:
        if expected is None or size_range.low != expected:
            where = "after the open range" if expected is None else f"from {expected}"
            raise ConfigError(f"{key}: the ranges must cover every cluster size once, from 1 up; "
                              f"{size_range.name!r} does not follow on {where}")
        expected = None if size_range.high is None else size_range.high + 1
    if ranges and expected is not None:
        raise ConfigError(f"{key}: the last range must be open (\"{expected}+\"): clusters of {expected} or more "
                          "would get no copy count")
    return tuple(ranges)


def range_of(size: int | None, ranges: tuple[SizeRange, ...]) -> SizeRange:
    """The range a cluster size falls in; a size not known (a document that did not come through stage 2's
    MinHash) counts as a cluster of one."""
    size = 1 if size is None or size < 1 else size
    return next(r for r in ranges if r.low <= size and (r.high is None or size <= r.high))
