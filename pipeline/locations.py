"""Where a path is. Every path a job names (inputs, outputs, models, tokenizers, the config's lists) is
resolved once, on the driver, to the one form that every process reads alike: a local path made
absolute, or a URL (s3://, hdfs://, https://, any fsspec URL) kept as it is.
"""

from __future__ import annotations

import os
from collections.abc import Sequence


def is_url(path: str) -> bool:
    """A location some filesystem other than this machine's names (a `file://` URL is a local path)."""
    return "://" in path and not path.startswith("file://")


def resolve_location(path: str, base_dir: str | None = None) -> str:
    """`path` as every process reads it: a URL unchanged; a local path (or `file://` URL) absolute and
    normalized, a relative one taken from `base_dir` (default: the working directory). Symbolic links
    are kept, so that a path under a declared shared mount stays under it. Empty stays empty (off)."""
    if not path or is_url(path):
        return path
    return os.path.normpath(os.path.join(base_dir or os.getcwd(), path.removeprefix("file://")))


def is_local_master(master: str) -> bool:
    """Whether every executor under Spark `master` runs on this machine: local, local[N], local-cluster[...]."""
    return master.startswith("local")


def under_any(path: str, prefixes: Sequence[str]) -> bool:
    """Whether absolute local `path` is one of the absolute `prefixes` or inside one (whole path components)."""
    path = os.path.normpath(path)
    return any(os.path.commonpath([path, os.path.normpath(prefix)]) == os.path.normpath(prefix) for prefix in prefixes)
