"""Token spill files: the export's token data between its Spark stages, outside Spark.

Tokens are the bulk of the export (4 bytes each, about as many bytes as the text). Sending them
through Spark (Arrow into the JVM, shuffle, sort, Arrow back) cost more than tokenizing them, so
the stages move small pointer rows instead: a task appends its tokens to its own spill file, flat
little-endian int32, and emits (file, start, length) for each document or packed row. Later tasks
read those ranges back with positioned reads.

A spill file is written by one task attempt (its name carries a random id, so a retried or
speculative attempt never writes into another's file) and never changed after that attempt ends.
Spill files live under the export's staging directory, which, like the shards, must be on a
filesystem that every executor sees; they are deleted before the export commits.
"""

from __future__ import annotations

import os
import uuid
from collections import OrderedDict
from pathlib import Path

import numpy as np

TOKEN_ITEMSIZE = 4  # int32, little-endian
SUFFIX = ".i32"


class SpillWriter:
    """Appends int32 token arrays to one new file in `directory`; each append returns its start (in tokens).

    The file is created at the first append, so a task with nothing to spill leaves no file.
    """

    def __init__(self, directory: str | os.PathLike, prefix: str):
        self.directory = Path(directory)
        self.name = f"{prefix}-{uuid.uuid4().hex}{SUFFIX}"  # relative to the spill directory
        self._file = None
        self.tokens = 0

    def append(self, values: np.ndarray) -> int:
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._file = open(self.directory / self.name, "xb")  # noqa: SIM115 - closed in close()
        start = self.tokens
        self._file.write(np.ascontiguousarray(values, dtype="<i4").data)
        self.tokens += len(values)
        return start

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class SpillReader:
    """Positioned reads of token ranges from the spill files in `directory`, keeping a few files open."""

    def __init__(self, directory: str | os.PathLike, max_open: int = 64):
        self.directory = Path(directory)
        self.max_open = max_open
        self._open: OrderedDict[str, int] = OrderedDict()  # name -> file descriptor, least recent first

    def _fd(self, name: str) -> int:
        fd = self._open.pop(name, None)
        if fd is None:
            if "/" in name or name.startswith("."):
                raise ValueError(f"bad spill file name {name!r}")
            fd = os.open(self.directory / name, os.O_RDONLY)
            if len(self._open) >= self.max_open:
                os.close(self._open.popitem(last=False)[1])
        self._open[name] = fd
        return fd

    def gather(self, names: list[str], starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ranges (names[i], starts[i], lengths[i]) read into one flat int32 array, with int64 offsets."""
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.empty(int(offsets[-1]), dtype="<i4")
        view = memoryview(values).cast("B")
        for name, start, begin, end in zip(names, starts.tolist(), offsets[:-1].tolist(), offsets[1:].tolist(),
                                           strict=True):
            self._read_into(name, start, view[begin * TOKEN_ITEMSIZE : end * TOKEN_ITEMSIZE])
        return values, offsets

    def _read_into(self, name: str, start: int, target: memoryview) -> None:
        fd, position, done = self._fd(name), start * TOKEN_ITEMSIZE, 0
        while done < len(target):
            got = os.preadv(fd, [target[done:]], position + done)
            if got == 0:
                raise RuntimeError(f"spill file {self.directory / name}: ends before token "
                                   f"{start + len(target) // TOKEN_ITEMSIZE} (truncated or replaced?)")
            done += got

    def close(self) -> None:
        while self._open:
            os.close(self._open.popitem()[1])
