"""The lock on an output directory while one process writes it: flock on local disk, an exclusively created
object on an object store."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
from pathlib import Path

from thresher.pipeline.config import ConfigError
from thresher.pipeline.stagedir import LOCK_FILE, is_local, storage


class DirectoryLock:
    """An exclusive lock on an output directory for as long as one job writes it (a `with` block).

    The lock is `DIRECTORY/_LOCK`, created with O_EXCL and held with flock, and it names its holder
    (host, pid, start time). flock is released by the kernel when the holder dies however it dies,
    so a lock file left by a dead process is stale and is taken over; a live holder's is refused
    with a ConfigError naming it, before anything in the directory is touched. A process already
    holding the lock may enter it again (the CLI locks before Spark starts, the job itself again).

    On an object store (any fsspec URL but a local path) the lock is the object `_LOCK`, created only if
    absent (S3's PutObject with If-None-Match: *; fsspec's exclusive "xb" mode): of two runs, one
    creates it and the other is refused, naming the holder. No kernel releases it when its holder is
    killed, so a lock whose holder was on this host and is dead is taken over (deleted only if it is
    still the object read, If-Match on S3); one left by a dead holder elsewhere stays until the
    refusal's advice is followed: delete DIRECTORY/_LOCK by hand.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self._fd: int | None = None
        self._created_directory = False
        self._url = str(directory)
        self._fs, root = storage(directory)
        self._object = None if is_local(self._fs) else f"{root}/{LOCK_FILE}"  # the lock object, on an object store
        self._holds_object = False

    def __enter__(self) -> DirectoryLock:
        if self._object is not None:
            return self._enter_object_store()
        _refuse_if_a_run_above_holds(self.directory)
        self._created_directory = not self.directory.exists()
        self.directory.mkdir(parents=True, exist_ok=True)
        while self._fd is None:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            except FileExistsError:
                try:
                    fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW)
                except FileNotFoundError:  # released meanwhile: try again
                    continue
                except OSError:  # a symbolic link (ELOOP) or a directory: not a lock thresher made
                    raise _not_ours(self.path, "it is a symbolic link or a directory") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                if holder.get("host") == socket.gethostname() and holder.get("pid") == os.getpid():
                    self._created_directory = False
                    return self  # held by this process already: the outer `with` releases it
                raise _in_use(self.directory, holder, "") from None
            found = os.pread(fd, 4096, 0)
            stale = _read_holder(fd)
            if found and not _is_holder(stale):  # someone else's file under our name: never overwritten
                os.close(fd)
                raise _not_ours(self.path, f"it holds {found[:60].decode('utf-8', 'replace').strip()!r}")
            if _is_holder(stale) and stale["host"] != socket.gethostname():
                os.close(fd)  # flock cannot see a holder on another host (a shared filesystem): ask
                raise _in_use(self.directory, stale, f"; if that run is dead, delete {self.path}")
            try:
                same_file = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same_file = False
            if not same_file:  # the file was released and removed between our open and flock
                os.close(fd)
                continue
            holder = _holder()
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode() + b"\n", 0)
            os.fsync(fd)
            self._fd = fd
        return self

    def _enter_object_store(self) -> DirectoryLock:
        holder = _holder()
        while True:
            try:
                with self._fs.open(self._object, "xb") as lock:
                    lock.write(json.dumps(holder).encode() + b"\n")
                self._holds_object = True
                return self
            except FileExistsError:
                pass
            self._fs.invalidate_cache(self._object)
            try:
                info = self._fs.info(self._object)
                found = json.loads(self._fs.cat_file(self._object))
            except FileNotFoundError:  # released meanwhile: try again
                continue
            except ValueError:
                found = {}
            if found.get("host") == socket.gethostname() and found.get("pid") == os.getpid():
                return self  # held by this process already: the outer `with` releases it
            if found.get("host") == socket.gethostname() and not _alive(found.get("pid")):
                _delete_if_unchanged(self._fs, self._object, info.get("ETag"))
                continue
            raise _in_use(self._url, found, f"; if that run is dead, delete {self._url.rstrip('/')}/{LOCK_FILE}")

    def __exit__(self, *exc_info) -> None:
        if self._holds_object:
            self._fs.rm_file(self._object)
            self._holds_object = False
            return
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still holding it, so no one takes a file being removed
        os.close(self._fd)
        self._fd = None
        if self._created_directory:
            with contextlib.suppress(OSError):  # left in place once it holds anything
                self.directory.rmdir()


def _refuse_if_a_run_above_holds(directory: Path) -> None:
    """A stage directory inside a run's directory that another live process has locked (`thresher tag
    --output RUN/tag` while `thresher run` writes RUN) is refused, naming that run."""
    for parent in directory.resolve().parents:
        path = parent / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            if not (holder.get("host") == socket.gethostname() and holder.get("pid") == os.getpid()):
                raise ConfigError(f"{directory} is inside {parent}, which another thresher run is writing "
                                  f"({_describe(holder)}): wait for it to finish, or use another --output") from None
        finally:
            os.close(fd)  # a shared lock taken here goes with the descriptor


def _not_ours(path: Path, why: str) -> ConfigError:
    return ConfigError(f"{path} is not a lock thresher wrote ({why}): move it away, or use another --output")


def _is_holder(found: dict) -> bool:
    return {"host", "pid", "started"} <= found.keys()


def _holder() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def _in_use(directory, holder: dict, advice: str) -> ConfigError:
    return ConfigError(f"{directory} is in use by another thresher run ({_describe(holder)}): "
                       f"wait for it to finish, or use another --output{advice}")


def _alive(pid) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError):  # another user's process; no pid recorded
        return True
    return True


def _delete_if_unchanged(fs, path: str, etag: str | None) -> None:
    """Delete a stale lock object only if it is still the one read, so two runs taking it over at once
    cannot delete the lock the faster one just created (S3's If-Match; a plain delete elsewhere)."""
    try:
        if etag and hasattr(fs, "call_s3"):
            bucket, key, _ = fs.split_path(path)
            fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=etag)
        else:
            fs.rm_file(path)
    except OSError:  # gone already, or replaced (a failed If-Match): the next attempt sees which
        pass
    fs.invalidate_cache(path)


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
