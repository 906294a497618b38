"""Where a path is. Every path a job names (inputs, outputs, models, tokenizers, the config's lists) is
resolved once, on the driver, to the one form that every process reads alike: a local path made
absolute, or a URL (s3://, hdfs://, https://, any fsspec URL) kept as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
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


def local_copy(location: str) -> str:
    """A local path holding what `location` names: the path itself when it is local; for a URL (a model or
    tokenizer directory, a word list on s3://...), a copy of that file or directory in this machine's cache,
    fetched once per version of its content (names, sizes and ETags or modification times), so that every
    process of a node, executors included, reads one copy, and a changed object is fetched again."""
    if not is_url(location):
        return location
    import fsspec

    fs, path = fsspec.core.url_to_fs(location)
    path = path.rstrip("/")
    fs.invalidate_cache(path)
    if fs.isfile(path):
        entries = {"": fs.info(path)}
    else:
        entries = {name[len(path) + 1:]: info for name, info in fs.find(path, withdirs=False, detail=True).items()}
        if not entries:
            raise FileNotFoundError(f"{location} does not exist or holds nothing")
    version = [(name, info.get("size"), str(info.get("ETag") or info.get("mtime") or "")) for name, info in sorted(entries.items())]
    digest = hashlib.sha256(json.dumps([fs.unstrip_protocol(path), version]).encode()).hexdigest()[:24]
    final = os.path.join(_cache_root(), digest, path.rsplit("/", 1)[-1] or "root")
    if os.path.exists(final):
        return final
    partial = os.path.join(_cache_root(), f".{digest}-{uuid.uuid4().hex}")  # a name of this attempt's own
    for name in entries:
        target = os.path.join(partial, name) if name else partial + ".file"
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fs.get_file(f"{path}/{name}" if name else path, target)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    try:
        os.replace(partial if entries.keys() != {""} else partial + ".file", final)  # whole, or not at all
    except OSError:  # another process of this node placed the same version first
        shutil.rmtree(partial, ignore_errors=True)
    return final


def _cache_root() -> str:
    root = os.environ.get("THRESHER_FETCH_CACHE") or os.path.join(tempfile.gettempdir(), f"thresher-fetched-{os.getuid()}")
    os.makedirs(root, exist_ok=True)
    return root
