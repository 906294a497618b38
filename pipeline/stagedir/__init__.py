"""A stage directory: its markers, its staged output and the commit that publishes it.

Every reader and writer of a stage's output goes through this package: the marker names, the commit
(`StageOutput`), the lock on the directory (`lock`), and the documents a stage reads (`documents`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from thresher.pipeline.config import Config, ConfigError
from thresher.schemas.stats import STATS_FILE, stage_stats, thresher_version, write_stats

# The pipeline's stages in the order `thresher run` runs them, each writing the stage directory of its name.
STAGES = ("prepare", "rules", "classifiers", "tag", "select", "tokenizer", "export")


COMMITTED_MARKER = "_COMMITTED"


STAGING_DIR = "_staging"


WORK_DIR = "_work"  # finished units of work (e.g. per WARC file) that survive a crash, for resuming


CHECKPOINT_DIR = "_checkpoints"  # Spark checkpoints of a running stage


PARTS_LIST = "_PARTS"  # the parts a commit is moving into place: thresher's, should the commit be cut short


LOCK_FILE = "_LOCK"  # held by the process writing the directory (DirectoryLock)


# Every name thresher itself writes in a stage directory besides the committed parts.
_OWN_NAMES = frozenset({STAGING_DIR, WORK_DIR, CHECKPOINT_DIR, PARTS_LIST, PARTS_LIST + ".tmp", LOCK_FILE,
                        COMMITTED_MARKER, COMMITTED_MARKER + ".tmp"})


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
    """A stage's output directory, written in `_staging/` and committed with a marker file.

    Readers only trust a directory with the marker, so they never see half-written output; a rerun
    of a committed stage is a no-op, and a rerun after a crash starts from clean staging.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.staging = self.directory / STAGING_DIR

    @property
    def committed(self) -> bool:
        return (self.directory / COMMITTED_MARKER).is_file()

    def reopen(self) -> None:
        """Make a committed stage rerunnable (its settings changed): its parts are listed as a commit
        lists what it moves, so `begin` clears them as thresher's own, then the marker goes, so from
        here on readers and reruns treat the old output as not there."""
        if not self.committed:
            return
        self._list_parts(sorted(c.name for c in self.directory.iterdir() if c.name not in _OWN_NAMES))
        (self.directory / COMMITTED_MARKER).unlink()

    def _list_parts(self, names: list[str]) -> None:
        parts_tmp = self.directory / (PARTS_LIST + ".tmp")
        parts_tmp.write_text(json.dumps(names) + "\n")
        os.replace(parts_tmp, self.directory / PARTS_LIST)

    def begin(self) -> None:
        """Clear what an interrupted attempt left (staging and any parts its commit moved).

        Only what thresher wrote is removed: a directory that holds anything else is refused
        (ConfigError naming it), so no user file is ever deleted.
        """
        if self.committed:
            raise RuntimeError(f"{self.directory} is already committed; refusing to overwrite it")
        if self.directory.exists():
            parts_list = self.directory / PARTS_LIST
            moved = set(json.loads(parts_list.read_text())) if parts_list.is_file() else set()
            foreign = sorted(c.name for c in self.directory.iterdir() if c.name not in _OWN_NAMES | moved)
            if foreign:
                shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
                raise ConfigError(
                    f"output directory {self.directory} holds files thresher did not write ({shown}): "
                    "move them away or choose another --output"
                )
            for child in self.directory.iterdir():
                if child.name in (WORK_DIR, LOCK_FILE):
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        self.staging.mkdir(parents=True)
        self.started = time.time()

    @property
    def work(self) -> Path:
        """A directory for finished units of work that a rerun after a crash may reuse."""
        path = self.directory / WORK_DIR
        path.mkdir(parents=True, exist_ok=True)
        return path

    def staged(self, name: str) -> str:
        """Where to write part `name` (a Parquet directory or a file) before the commit."""
        return str(self.staging / name)

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
        """Write stats (the envelope, checked), move every staged part into place, then write the marker last."""
        write_stats(self.staging / STATS_FILE, stats)
        parts = sorted(self.staging.iterdir())
        self._list_parts([part.name for part in parts])
        for part in parts:
            target = self.directory / part.name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            os.replace(part, target)
            crash_point("commit:part_moved")
        self.staging.rmdir()
        if (self.directory / WORK_DIR).exists():
            shutil.rmtree(self.directory / WORK_DIR)
        marker_tmp = self.directory / (COMMITTED_MARKER + ".tmp")
        marker_tmp.write_text(json.dumps({"committed_at": time.time()}) + "\n")
        os.replace(marker_tmp, self.directory / COMMITTED_MARKER)
        (self.directory / PARTS_LIST).unlink()


def require_committed(directory: str | os.PathLike) -> Path:
    """`directory` as a Path if it holds a committed stage output; a clear error otherwise."""
    from thresher.schemas.errors import InputError

    path = Path(directory)
    if not path.is_dir():
        raise InputError(f"input directory {path} does not exist")
    if not (path / COMMITTED_MARKER).is_file():
        raise InputError(f"{path} holds no committed stage output (no {COMMITTED_MARKER} marker): rerun that stage")
    return path
