"""Is a local input a web archive? Its first bytes (after gzip) say, before stage 1 reads it.

Stage 1 reads WARC, ARC and WET files; a document file (JSONL, Parquet) handed to it would be one
read error, counted, and an exit 0. A look at the first bytes catches that before any work starts.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from thresher.pipeline.locations import is_url
from thresher.schemas.errors import InputError

_SNIFF_BYTES = 64
_ARCHIVE_STARTS = (b"WARC/", b"filedesc://")  # a WARC (and WET) record; an ARC file's version block
_GZIP_MAGIC = b"\x1f\x8b"


def first_bytes(path: str, size: int = _SNIFF_BYTES) -> bytes | None:
    """The first `size` bytes of the file, gunzipped when it is gzip; None when they cannot be read
    (stage 1 then counts the file as unreadable, with its reason)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(size)
            if not head.startswith(_GZIP_MAGIC):
                return head
            handle.seek(0)
            with gzip.GzipFile(fileobj=handle) as unzipped:
                return unzipped.read(size)
    except (OSError, EOFError, zlib.error):
        return None


def looks_like_archive(head: bytes) -> bool:
    """Whether `head`, a file's first bytes, can start a WARC, WET or ARC file (blank lines allowed)."""
    stripped = head.lstrip(b"\r\n")
    return not stripped or any(stripped.startswith(start) for start in _ARCHIVE_STARTS)


def looks_like_documents(head: bytes) -> bool:
    """Whether `head` starts a JSON(L), Parquet or Arrow file: documents, which stage 2 reads."""
    return head.lstrip().startswith((b"{", b"[")) or head.startswith((b"PAR1", b"ARROW1", b"\xff\xff\xff\xff"))


def check_archive_inputs(paths: list[str]) -> None:
    """InputError naming a local file that is documents, not a web archive, or the first input when
    none is an archive. Other broken files among archives are left to stage 1, which counts them as
    rejects with a reason; URLs are not read here."""
    heads, unread = {}, 0
    for path in paths:
        local = path.removeprefix("file://")
        if is_url(path) or not Path(local).is_file():
            unread += 1  # a remote or vanished input may be an archive: stage 1 finds out
            continue
        heads[path] = first_bytes(local)
    documents = [path for path, head in heads.items() if head is not None and looks_like_documents(head)]
    archives = [path for path, head in heads.items() if head is None or looks_like_archive(head)]
    if documents or (heads and not archives and not unread):
        path = (documents or list(heads))[0]
        shown = heads[path][:16].decode("utf-8", "replace").encode("unicode_escape").decode("ascii")
        raise InputError(
            f"{path} is not a WARC, WET or ARC file (it starts {shown!r}); for documents "
            f"(Parquet, JSONL, datasets directories) use `thresher rules {path} --output DIR`"
        )
