"""Values built once per process and then reused: models, word lists, filters, hashers.

Spark executors keep their Python workers across tasks, so a worker that builds a model or reads a
list on first use pays for it once, not once per partition or batch. Nothing is built at import.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class ProcessCache:
    """One per-process table of built values, by key; `by_path` keys by the absolute path."""

    def __init__(self) -> None:
        self._values: dict[Hashable, Any] = {}

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        """The value under `key`, built by `build()` on first use in this process."""
        if key not in self._values:
            self._values[key] = build()
        return self._values[key]

    def by_path(self, path: str | os.PathLike, load: Callable[[str], T]) -> T:
        """`load(absolute path)`, once per process per file, however the path is spelled."""
        absolute = os.path.realpath(path)
        return self.get(absolute, lambda: load(absolute))

    def __contains__(self, key: Hashable) -> bool:
        return key in self._values
