"""The lock on an output directory while one process writes it."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
from pathlib import Path

from thresher.pipeline.config import ConfigError
from thresher.pipeline.stagedir import LOCK_FILE


class DirectoryLock:
    """An exclusive lock on an output directory for as long as one job writes it (a `with` block).

    The lock is `DIRECTORY/_LOCK`, created with O_EXCL and held with flock, and it names its holder
    (host, pid, start time). flock is released by the kernel when the holder dies however it dies,
    so a lock file left by a dead process is stale and is taken over; a live holder's is refused
    with a ConfigError naming it, before anything in the directory is touched. A process already
    holding the lock may enter it again (the CLI locks before Spark starts, the job itself again).
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self._fd: int | None = None
        self._created_directory = False

    def __enter__(self) -> DirectoryLock:
        self._created_directory = not self.directory.exists()
        self.directory.mkdir(parents=True, exist_ok=True)
        while self._fd is None:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                try:
                    fd = os.open(self.path, os.O_RDWR)
                except FileNotFoundError:  # released meanwhile: try again
                    continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                if holder.get("host") == socket.gethostname() and holder.get("pid") == os.getpid():
                    self._created_directory = False
                    return self  # held by this process already: the outer `with` releases it
                raise ConfigError(
                    f"{self.directory} is in use by another thresher run ({_describe(holder)}): "
                    "wait for it to finish, or use another --output"
                ) from None
            try:
                same_file = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same_file = False
            if not same_file:  # the file was released and removed between our open and flock
                os.close(fd)
                continue
            holder = {"host": socket.gethostname(), "pid": os.getpid(),
                      "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode() + b"\n", 0)
            os.fsync(fd)
            self._fd = fd
        return self

    def __exit__(self, *exc_info) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still holding it, so no one takes a file being removed
        os.close(self._fd)
        self._fd = None
        if self._created_directory:
            with contextlib.suppress(OSError):  # left in place once it holds anything
                self.directory.rmdir()


def _read_holder(fd: int) -> dict:
    try:
        holder = json.loads(os.pread(fd, 4096, 0))
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict) -> str:
    if not {"host", "pid", "started"} <= holder.keys():
        return "its holder is still writing the lock"
    return f"host {holder['host']}, pid {holder['pid']}, started {holder['started']}"
