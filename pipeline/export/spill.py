"""Token spill files: the export's token data between its Spark stages, outside Spark.

Tokens are the bulk of the export (4 bytes each, about as many bytes as the text). Sending them
through Spark (Arrow into the JVM, shuffle, sort, Arrow back) cost more than tokenizing them, so
the stages move small pointer rows instead: a task appends its tokens to its own spill file, flat
little-endian int32, and emits (file, start, length) for each document or packed row. Later tasks
read those ranges back with positioned reads.

A spill file is written by one task attempt (its name carries a random id, so a retried or
speculative attempt never writes into another's file) and never changed after that attempt ends.
Spill files live below the export's work directory (`StageOutput.work_location`), a local path or
any fsspec URL (s3://...) that every executor reaches, and go with it at the commit. They are written
and read through fsspec from the Python workers: on an object store each file is one object, written
whole by a streamed (multipart) upload, and a batch of ranges is fetched with concurrent ranged reads
(`cat_ranges`); on local disk, ranges are read from a few files kept open.
"""

from __future__ import annotations

import os
import uuid
from collections import OrderedDict, defaultdict

import numpy as np

from thresher.pipeline.stagedir import is_local, storage

TOKEN_ITEMSIZE = 4  # int32, little-endian
SUFFIX = ".i32"
WRITE_BLOCK_BYTES = 8 * 2**20  # an object store's upload buffer: the most a writer holds in memory
MERGE_GAP_BYTES = 256 * 2**10  # object store reads: ranges closer than this are one request (the gap read too)
MERGED_BYTES = 4 * 2**20  # ... of at most this many bytes


class SpillWriter:
    """Appends int32 token arrays to one new file in `directory` (a local path or any fsspec URL); each
    append returns its start (in tokens).

    The file is created at the first append, so a task with nothing to spill leaves no file.
    """

    def __init__(self, directory: str | os.PathLike, prefix: str):
        self.fs, self.root = storage(directory)
        self.name = f"{prefix}-{uuid.uuid4().hex}{SUFFIX}"  # relative to the spill directory
        self._file = None
        self.tokens = 0

    def append(self, values: np.ndarray) -> int:
        if self._file is None:
            self.fs.makedirs(self.root, exist_ok=True)  # a local directory; nothing on an object store
            self._file = self.fs.open(f"{self.root}/{self.name}", "wb", block_size=WRITE_BLOCK_BYTES)
        start = self.tokens
        self._file.write(np.ascontiguousarray(values, dtype="<i4").data)
        self.tokens += len(values)
        return start

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # on an object store: the upload completes, the object appears whole
            self._file = None


class SpillReader:
    """Positioned reads of token ranges from the spill files in `directory` (a local path or any fsspec URL)."""

    def __init__(self, directory: str | os.PathLike, max_open: int = 64):
        self.fs, self.root = storage(directory)
        self.directory = self.fs.unstrip_protocol(self.root)
        self.max_open = max_open
        self._open: OrderedDict[str, object] = OrderedDict()  # name -> open file (local disk), least recent first

    def _path(self, name: str) -> str:
        if "/" in name or name.startswith("."):
            raise ValueError(f"bad spill file name {name!r}")
        return f"{self.root}/{name}"

    def gather(self, names: list[str], starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ranges (names[i], starts[i], lengths[i]) read into one flat int32 array, with int64 offsets."""
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.empty(int(offsets[-1]), dtype="<i4")
        view = memoryview(values).cast("B")
        ranges = [(name, start, view[begin * TOKEN_ITEMSIZE : end * TOKEN_ITEMSIZE])
                  for name, start, begin, end in zip(names, starts.tolist(), offsets[:-1].tolist(),
                                                     offsets[1:].tolist(), strict=True)]
        if is_local(self.fs):
            for name, start, target in ranges:
                self._read_local(name, start, target)
        else:
            self._read_remote(ranges)
        return values, offsets

    def _short(self, name: str, start: int, target: memoryview) -> RuntimeError:
        return RuntimeError(f"spill file {self.directory}/{name}: ends before token "
                            f"{start + len(target) // TOKEN_ITEMSIZE} (truncated or replaced?)")

    def _file(self, name: str):
        file = self._open.pop(name, None)
        if file is None:
            file = self.fs.open(self._path(name), "rb")
            if len(self._open) >= self.max_open:
                self._open.popitem(last=False)[1].close()
        self._open[name] = file
        return file

    def _read_local(self, name: str, start: int, target: memoryview) -> None:
        if not len(target):
            self._path(name)  # the name is checked all the same
            return
        file = self._file(name)
        file.seek(start * TOKEN_ITEMSIZE)
        done = 0
        while done < len(target):
            got = file.readinto(target[done:])
            if not got:
                raise self._short(name, start, target)
            done += got

    def _read_remote(self, ranges: list[tuple[str, int, memoryview]]) -> None:
        """Every non-empty range of the batch in one concurrent request set; ranges of a file less than
        MERGE_GAP_BYTES apart merged into one request of at most MERGED_BYTES (a request costs more than
        reading the gap: packing asks for documents in shuffled order, mostly near one another)."""
        by_file: dict[str, list[tuple[int, memoryview]]] = defaultdict(list)
        for name, start, target in ranges:
            self._path(name)
            if len(target):
                by_file[name].append((start * TOKEN_ITEMSIZE, target))
        requests: list[tuple[str, int, int, list[tuple[int, memoryview]]]] = []  # path, begin, end, pieces
        for name, pieces in by_file.items():
            for position, target in sorted(pieces, key=lambda piece: piece[0]):
                last = requests[-1] if requests else None
                if (last and last[0] == name and position - last[2] <= MERGE_GAP_BYTES
                        and position + len(target) - last[1] <= MERGED_BYTES):
                    requests[-1] = (name, last[1], max(last[2], position + len(target)), [*last[3], (position, target)])
                else:
                    requests.append((name, position, position + len(target), [(position, target)]))
        if not requests:
            return
        data = self.fs.cat_ranges([self._path(name) for name, *_ in requests], [begin for _, begin, _, _ in requests],
                                  [end for _, _, end, _ in requests], on_error="return")
        for (name, begin, _end, pieces), got in zip(requests, data, strict=True):
            if isinstance(got, FileNotFoundError):
                raise FileNotFoundError(f"spill file {self.directory}/{name} is gone") from got
            if isinstance(got, BaseException):
                raise got
            for position, target in pieces:
                piece = got[position - begin : position - begin + len(target)]
                if len(piece) < len(target):
                    raise self._short(name, position // TOKEN_ITEMSIZE, target)
                target[:] = piece

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()
