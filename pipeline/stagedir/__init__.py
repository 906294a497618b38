"""A stage directory: its markers, its output and the commit that publishes it, on local disk or any
fsspec URL (s3://, gs://, ...).

Every reader and writer of a stage's output goes through this package: the marker names, the commit
(`StageOutput`), what a commit lists (`read_commit`), the Spark side of writing and reading parts
(`parts`), the lock on the directory (`lock`), and the documents a stage reads (`documents`).

The commit renames nothing on an object store: each task attempt writes its part under a name of its
own (`part_name`), and the stage commits by writing one object, `_COMMITTED`, that lists the committed
parts with their sizes, and the stats. Readers read only what that marker lists, so a part a failed or
duplicate task attempt left behind is never read; a rerun deletes only what a marker, the `_PARTS`
list or the attempt-name pattern says thresher wrote. Local disk takes the same path (only the marker
and `_PARTS` are written as a temporary file moved into place); a marker written before the marker
listed anything (no "format" in it) still reads: its directory's files are the committed ones.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from thresher.pipeline.config import Config, ConfigError
from thresher.schemas.stats import STATS_FILE, stage_stats, stats_json, thresher_version

# The pipeline's stages in the order `thresher run` runs them, each writing the stage directory of its name.
STAGES = ("prepare", "rules", "classifiers", "tag", "select", "tokenizer", "export")


COMMITTED_MARKER = "_COMMITTED"


STAGING_DIR = "_staging"  # where stages wrote their parts before the marker listed them: an old attempt's, cleared


WORK_DIR = "_work"  # finished units of work (e.g. per WARC file) that survive a crash, for resuming


CHECKPOINT_DIR = "_checkpoints"  # Spark checkpoints of a running stage


PARTS_LIST = "_PARTS"  # what an unfinished commit wrote or moved at fixed names: thresher's, should it be cut short


LOCK_FILE = "_LOCK"  # held by the process writing the directory (DirectoryLock)


# Every name thresher itself writes in a stage directory besides the committed parts.
_OWN_NAMES = frozenset({STAGING_DIR, WORK_DIR, CHECKPOINT_DIR, PARTS_LIST, PARTS_LIST + ".tmp", LOCK_FILE,
                        COMMITTED_MARKER, COMMITTED_MARKER + ".tmp"})


MARKER_FORMAT = 2  # a marker that lists its parts; one without "format" predates the list

# A part a task attempt writes: TABLE/part-INDEX-ATTEMPT.EXT, ATTEMPT a fresh uuid4 hex. Such a name in a
# stage directory is thresher's wherever it is found, so a rerun may delete it.
_ATTEMPT_PART = re.compile(r"(?:[\w.-]+/)+part-\d{5,}-[0-9a-f]{32}\.[a-z0-9.]+")


def part_name(table: str, index: int, extension: str = "parquet") -> str:
    """A new attempt's name for part `index` of `table`, relative to the stage directory."""
    return f"{table}/part-{index:05d}-{uuid.uuid4().hex}.{extension}"


def storage(url: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of `url` (a local path or any fsspec URL) and the path on it."""
    fs, path = fsspec.core.url_to_fs(str(url))
    return fs, path.rstrip("/")


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def write_whole(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write an object a reader must see whole or not at all: one PUT on an object store; on local disk a
    temporary file (PATH.tmp, a name of thresher's own) moved into place."""
    if is_local(fs):
        Path(path + ".tmp").write_bytes(data)
        os.replace(path + ".tmp", path)
    else:
        fs.pipe_file(path, data)


@dataclass(frozen=True)
class Part:
    """A committed object: its name relative to the stage directory, its size, and its rows where known."""

    name: str
    size: int
    rows: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size} | ({} if self.rows is None else {"rows": self.rows})


CRASH_ENV = "THRESHER_CRASH_AT"  # fault injection for crash-safety tests: a crash point's name


CRASH_MODE_ENV = "THRESHER_CRASH_MODE"  # "kill" (default): SIGKILL this process; "raise": SimulatedCrash


class SimulatedCrash(BaseException):
    """Raised at a crash point in "raise" mode: leaves the files exactly as a kill there would.

    A BaseException, so no `except Exception` in a job can swallow it and tidy up.
    """


def crash_point(name: str) -> None:
    """Die at once, as a killed driver would, when $THRESHER_CRASH_AT names this point.

    Jobs mark the moments where a crash is most likely to corrupt output (between writing and
    committing, between stages); the crash-safety tests kill the driver at each and rerun. Crash
    points sit between Spark actions, so in-process tests may raise instead of killing: the
    output directory is then in the same state a killed driver leaves.
    """
    if os.environ.get(CRASH_ENV) != name:
        return
    if os.environ.get(CRASH_MODE_ENV, "kill") == "raise":
        raise SimulatedCrash(name)
    os.kill(os.getpid(), signal.SIGKILL)


class StageOutput:
    """A stage's output directory, a local path or any fsspec URL, committed by its `_COMMITTED` marker.

    Readers only trust a directory with the marker, and only what it lists, so they never see
    half-written output; a rerun of a committed stage is a no-op, and a rerun after a crash starts clean.
    Parts are written by task attempts under names of their own (`parts.write_parts`, any URL).
    A file the driver writes (`put_file`), or files tasks write at fixed names (`expect_files`, then
    `add_files`), are named in `_PARTS` before they are written.
    """

    def __init__(self, directory: str | os.PathLike):
        self.url = str(directory)
        self.fs, self.root = storage(directory)
        self._tables: dict[str, dict[str, Any]] = {}
        self._files: dict[str, int] = {}  # what put_file wrote or the commit moved: name -> size
        self._pending: list[str] = []  # what _PARTS names

    @property
    def local(self) -> bool:
        return is_local(self.fs)

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    @property
    def committed(self) -> bool:
        self.fs.invalidate_cache(self.root)  # another process may have committed since this one last listed
        return self.fs.isfile(self._path(COMMITTED_MARKER))

    def reopen(self) -> None:
        """Make a committed stage rerunnable (its settings changed): what its marker lists goes to `_PARTS`
        (a marker from before the list: every name in the directory but thresher's own), so `begin` clears
        it as thresher's, then the marker goes, so from here on readers and reruns treat the old output
        as not there."""
        if not self.committed:
            return
        marker = _read_marker(self.fs, self.root)
        if "format" in marker:
            names = [entry["name"] for entry in marker["files"]]
            names += [part["name"] for table in marker["tables"].values() for part in table["parts"]]
        else:
            names = [name for name in self._children() if name not in _OWN_NAMES]
        self._note_pending(names)
        self.fs.rm_file(self._path(COMMITTED_MARKER))

    def _note_pending(self, names: list[str]) -> None:
        self._pending = sorted(set(names))
        write_whole(self.fs, self._path(PARTS_LIST), (json.dumps(self._pending) + "\n").encode())

    def _children(self) -> dict[str, bool]:
        """The directory's top-level names, each with whether it is a directory (a prefix, on an object store)."""
        self.fs.invalidate_cache(self.root)
        try:
            entries = self.fs.ls(self.root, detail=True)
        except FileNotFoundError:
            return {}
        return {entry["name"].rstrip("/").rsplit("/", 1)[-1]: entry["type"] == "directory" for entry in entries}

    def _files_below(self, name: str) -> dict[str, int]:
        """Every file below `name`, by its name relative to the stage directory, with its size."""
        found = self.fs.find(self._path(name), withdirs=False, detail=True)
        return {path[len(self.root) + 1:]: info["size"] for path, info in found.items()}

    def _thresher_wrote(self, name: str, is_dir: bool, pending: list[str]) -> bool:
        if name in _OWN_NAMES or _covered(name, pending):
            return True
        # A directory of attempts' parts (or of nothing: an empty directory holds no one's file).
        return is_dir and all(_covered(file, pending) or _ATTEMPT_PART.fullmatch(file) for file in self._files_below(name))

    def begin(self, keep: tuple[str, ...] | list[str] = ()) -> None:
        """Clear what an interrupted attempt left (parts written, files named in `_PARTS`, intermediates).

        Only what thresher wrote is removed: a directory that holds anything else is refused
        (ConfigError naming it), so no user file is ever deleted. `keep`: parts of the last commit (reopened)
        that this attempt reads (a rerun that keeps some of its columns); the commit drops them as it drops
        any part it does not list, and a rerun after a crash clears them.
        """
        if self.committed:
            raise RuntimeError(f"{self.url} is already committed; refusing to overwrite it")
        children = self._children()
        pending = self._read_pending()
        foreign = sorted(name for name, is_dir in children.items() if not self._thresher_wrote(name, is_dir, pending))
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise ConfigError(
                f"output directory {self.url} holds files thresher did not write ({shown}): "
                "move them away or choose another --output"
            )
        for name in children:
            kept = {part for part in keep if part.startswith(name + "/")}
            if kept:
                for file in self._files_below(name):
                    if file not in kept:
                        self.fs.rm_file(self._path(file))
            elif name not in (WORK_DIR, LOCK_FILE, PARTS_LIST):
                self._remove(name)
        if PARTS_LIST in children:  # last: until now it accounts for what is left
            self._remove(PARTS_LIST)
        if self.local:
            os.makedirs(self.root, exist_ok=True)  # an object store has no directories to make
        self.started = time.time()
        self._tables, self._files, self._pending = {}, {}, []

    def _read_pending(self) -> list[str]:
        try:
            return list(json.loads(self.fs.cat_file(self._path(PARTS_LIST))))
        except FileNotFoundError:
            return []

    def _remove(self, name: str) -> None:
        if not self.local:
            self.fs.rm(self._path(name), recursive=True)
            return
        child = Path(self._path(name))
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()

    def work_location(self, name: str) -> str:
        """The URL of `name` below the work directory (any store), emptied of what an earlier attempt left
        there: intermediates a stage writes and reads back, removed with the work directory by the commit."""
        path = self._path(f"{WORK_DIR}/{name}")
        self.fs.invalidate_cache(path)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)
        return self.fs.unstrip_protocol(path)

    def put_file(self, name: str, data: bytes) -> None:
        """Write `name` (relative to the directory, e.g. taggers.json) as part of this commit."""
        if name.split("/", 1)[0] in _OWN_NAMES:
            raise ValueError(f"{name} is one of thresher's own names in a stage directory")
        self._note_pending([*self._pending, name])
        if self.local:
            self.fs.makedirs(self._path(name).rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(self._path(name), data)
        self._files[name] = len(data)

    def expect_files(self, names: list[str]) -> None:
        """Name in `_PARTS` the files that tasks are about to write at fixed names (relative to the directory,
        e.g. train/shard-00000.parquet), before any is written: should the commit be cut short, a rerun
        clears them as thresher's. `add_files` then has the commit list those written."""
        for name in names:
            if name.split("/", 1)[0] in _OWN_NAMES:
                raise ValueError(f"{name} is one of thresher's own names in a stage directory")
        self._note_pending([*self._pending, *names])

    def add_files(self, files: dict[str, int]) -> None:
        """Have the commit list `files` (name -> size), written by tasks at names `expect_files` gave."""
        unnamed = sorted(name for name in files if not _covered(name, self._pending))
        if unnamed:
            raise ValueError(f"{unnamed[0]} was not named by expect_files before it was written")
        self._files.update(files)

    def add_parts(self, table: str, parts: list[Part], schema: dict[str, Any] | None = None) -> None:
        """Have the commit list `parts`, written by task attempts for `table` (names from `part_name`);
        `schema` (a Spark StructType's jsonValue()) lets readers read a table that has no part."""
        if table in self._tables:
            raise ValueError(f"table {table} of {self.url} is already written in this attempt")
        for part in parts:
            if not (part.name.startswith(table + "/") and _ATTEMPT_PART.fullmatch(part.name)):
                raise ValueError(f"{part.name} is not an attempt's part of table {table}")
        self._tables[table] = {"schema": schema, "parts": sorted(parts, key=lambda part: part.name)}

    def written(self, table: str) -> tuple[list[Part], dict[str, Any] | None]:
        """The parts this attempt wrote for `table` so far, in order, and the schema recorded with them."""
        entry = self._tables[table]
        return entry["parts"], entry["schema"]

    def location(self, name: str) -> str:
        """The full URL of `name` in the directory (file:// on local disk), for a task to open."""
        return self.fs.unstrip_protocol(self._path(name))

    def commit_stats(
        self, stage: str, config: Config, inputs: list[str], documents_in: int, documents_out: int,
        rejects_by_rule: dict[str, int], details: dict[str, Any], phases: dict[str, float] | None = None,
        rules: dict[str, dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Commit with stats.json as the envelope (schemas.stats), timed from `begin`; returns the stats."""
        stats = stage_stats(
            stage, thresher_version=thresher_version(), config_digest=config.digest(), started=self.started,
            finished=time.time(), phases=phases or {}, inputs=inputs, documents_in=documents_in,
            documents_out=documents_out, rejects_by_rule=rejects_by_rule, details=details, rules=rules,
        )
        self.commit(stats)
        return stats

    def commit(self, stats: dict[str, Any]) -> None:
        """Write stats.json (the envelope, checked), drop parts of attempts that did not finish and the work
        directory, then write the marker last: it lists every committed object."""
        self.put_file(STATS_FILE, stats_json(stats, f"{self.url}/{STATS_FILE}"))
        crash_point("commit:stats_written")
        if self._children().get(WORK_DIR) is not None:
            self._remove(WORK_DIR)
        self._drop_unlisted_attempts()
        crash_point("commit:before_marker")
        crash_point(f"{stats.get('stage')}:before_marker")  # the same moment, in one stage
        marker = {
            "format": MARKER_FORMAT,
            "committed_at": time.time(),
            "files": [Part(name, size).to_json() for name, size in sorted(self._files.items())],
            "tables": {table: {"schema": entry["schema"], "parts": [part.to_json() for part in entry["parts"]]}
                       for table, entry in sorted(self._tables.items())},
            "stats": stats,
        }
        write_whole(self.fs, self._path(COMMITTED_MARKER), (json.dumps(marker, indent=1) + "\n").encode())
        self.fs.rm_file(self._path(PARTS_LIST))

    def _drop_unlisted_attempts(self) -> None:
        """Delete the parts of task attempts that failed or lost to a duplicate: no commit lists them."""
        for table, entry in self._tables.items():
            listed = {part.name for part in entry["parts"]}
            for name in self._files_below(table):
                if name not in listed and _ATTEMPT_PART.fullmatch(name):
                    self.fs.rm_file(self._path(name))


def _covered(name: str, pending: list[str]) -> bool:
    return any(name == listed or name.startswith(listed + "/") for listed in pending)


def _read_marker(fs: fsspec.AbstractFileSystem, root: str) -> dict[str, Any]:
    """The marker's content; {} for an early marker with none (or an empty file, as hand-made ones are)."""
    try:
        marker = json.loads(fs.cat_file(f"{root}/{COMMITTED_MARKER}") or b"{}")
    except ValueError:
        return {}
    return marker if isinstance(marker, dict) else {}


@dataclass(frozen=True)
class Commit:
    """A committed stage directory as its marker lists it (`read_commit`)."""

    url: str
    fs: fsspec.AbstractFileSystem
    root: str
    marker: dict[str, Any]

    def path(self, name: str) -> str:
        """Where the object `name` (relative, as the marker lists it) is on `fs`."""
        return f"{self.root}/{name}"

    @property
    def stats(self) -> dict[str, Any] | None:
        """The stats the marker holds (None in a marker from before the list: read stats.json)."""
        return self.marker.get("stats")

    def schema(self, table: str) -> dict[str, Any] | None:
        """The Spark schema (jsonValue) that `table` was written with, where its writer recorded one."""
        return self.marker.get("tables", {}).get(table, {}).get("schema")

    def parts(self, table: str) -> list[Part]:
        """The Parquet parts of `table`, in order, each checked against the store: a listed part that is gone
        or not of its listed size is an InputError telling to rerun the stage. A marker from before the
        list (local disk): every Parquet file below TABLE/ that Spark's reader would read."""
        if "format" not in self.marker:
            found = self.fs.find(self.path(table), withdirs=False, detail=True)
            names = {path[len(self.root) + 1:]: info["size"] for path, info in found.items()}
            return [Part(name, size) for name, size in sorted(names.items()) if _spark_reads(name)]
        if table in self.marker["tables"]:
            parts = [Part(**part) for part in self.marker["tables"][table]["parts"]]
        else:  # parts a local commit moved into place from _staging/
            parts = [Part(**entry) for entry in self.marker["files"]
                     if entry["name"].startswith(table + "/") and _spark_reads(entry["name"])]
        self.fs.invalidate_cache(self.path(table))
        found = {path: info["size"] for path, info in self.fs.find(self.path(table), withdirs=False, detail=True).items()}
        for part in parts:
            if found.get(self.path(part.name)) != part.size:
                from thresher.schemas.errors import InputError

                raise InputError(f"{self.url}: {part.name}, listed by its {COMMITTED_MARKER} marker, is gone or not "
                                 f"of its listed size ({part.size} bytes): rerun that stage")
        return parts


def _spark_reads(name: str) -> bool:
    # As Spark's reader does: a Parquet file, under no name starting with . or _ below the table.
    return name.endswith(".parquet") and not any(step.startswith((".", "_")) for step in name.split("/")[1:])


def read_commit(directory: str | os.PathLike) -> Commit:
    """The committed stage at `directory` (a local path or any fsspec URL); InputError when there is none."""
    require_committed(directory)
    fs, root = storage(directory)
    return Commit(str(directory), fs, root, _read_marker(fs, root))


def require_committed(directory: str | os.PathLike) -> Path | str:
    """`directory` (a Path on local disk, the URL as given elsewhere) if it holds a committed stage output;
    a clear error otherwise."""
    from thresher.schemas.errors import InputError

    fs, root = storage(directory)
    fs.invalidate_cache(root)
    shown = Path(directory) if is_local(fs) else str(directory)
    if not fs.isdir(root):
        raise InputError(f"input directory {shown} does not exist")
    if not fs.isfile(f"{root}/{COMMITTED_MARKER}"):
        raise InputError(f"{shown} holds no committed stage output (no {COMMITTED_MARKER} marker): rerun that stage")
    return shown
