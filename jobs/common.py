"""What every Spark job shares: the session, common options, and the staged, committed output."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.documents_input import source_from_args
from pipeline.config import Config, ConfigError, SparkConfig, load_config
from schemas.stats import STATS_FILE, stage_stats, thresher_version, write_stats

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
INTERRUPTED_EXIT = 130  # 128 + SIGINT, as a shell reports a Ctrl-C
# Committed stages (and stage 1's finished files) stay: the same command goes on from them.
INTERRUPTED_MESSAGE = "[thresher] interrupted; run the same command again to resume"
LOG4J_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "log4j2-console.properties"


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


def add_common_arguments(parser: argparse.ArgumentParser, set_example: str = "prepare.lang_threshold=0.7") -> None:
    """--config, --master and --set, the options every Spark job takes; `set_example` fits the job."""
    parser.add_argument("--config", help="YAML config file (default: configs/default.yaml)")
    parser.add_argument("--master", help="Spark master URL, e.g. local[4] or spark://host:7077 (default: from config)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override one config value, e.g. --set {set_example} (VALUE is parsed as YAML; repeatable)",
    )


def script_main(prog: str, doc: str, add_arguments, run, argv: list[str] | None = None) -> int:
    """What `spark-submit jobs/<job>.py ...` runs: the job's own parser and run, as `thresher <job>`."""
    from jobs.cli import run_with_one_line_errors

    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    add_arguments(parser)
    return run_with_one_line_errors(prog, run, parser.parse_args(argv))


def config_from_args(args: argparse.Namespace) -> Config:
    """The checked Config named by --config and --set; raises ConfigError before any work starts."""
    import yaml

    overrides = {}
    for item in args.overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    return load_config(args.config, overrides)


def spark_settings(spark_config: SparkConfig) -> dict[str, str]:
    """The spark.* settings of a session: thresher's defaults, GPU scheduling, then `conf` (which wins)."""
    settings = {
        "spark.sql.shuffle.partitions": str(spark_config.shuffle_partitions),
        "spark.driver.memory": spark_config.driver_memory,
        "spark.executor.memory": spark_config.executor_memory,
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "true",
    }
    if spark_config.executor_gpu_amount < 0 or spark_config.task_gpu_amount < 0:
        raise ConfigError("spark.executor_gpu_amount and spark.task_gpu_amount must be >= 0")
    if spark_config.executor_gpu_amount > 0:
        if not spark_config.task_gpu_amount > 0:
            raise ConfigError("spark.task_gpu_amount: must be > 0 when spark.executor_gpu_amount is set (e.g. 1: a GPU per task)")
        script = Path(spark_config.gpu_discovery_script)
        if not script.is_absolute():  # relative to the checkout, where the shipped script lives
            script = Path(__file__).resolve().parent.parent / script
        if not script.is_file():
            raise ConfigError(f"spark.gpu_discovery_script: {script} does not exist (thresher ships jobs/gpu_discovery.sh)")
        settings["spark.executor.resource.gpu.amount"] = str(spark_config.executor_gpu_amount)
        settings["spark.task.resource.gpu.amount"] = str(spark_config.task_gpu_amount)
        settings["spark.executor.resource.gpu.discoveryScript"] = str(script)
    settings.update(spark_config.conf)
    return settings


def spark_session(app_name: str, spark_config: SparkConfig, master: str | None = None):
    """A SparkSession for a job; reuses the active one (tests, `thresher run`) when there is one."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # Executors must run the same interpreter as the driver, with the same packages.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    options = {
        "spark.master": master or spark_config.master,
        "spark.app.name": app_name,
        **spark_settings(spark_config),
    }
    if spark_config.log_level:
        # Read when the driver JVM starts (local executors share it), so Spark's start-up warnings obey it too.
        options["spark.driver.extraJavaOptions"] = (
            f"-Dlog4j2.configurationFile=file:{LOG4J_CONFIG} -Dthresher.log.level={spark_config.log_level} "
            + options.get("spark.driver.extraJavaOptions", "")).strip()
    _start_jvm_in_own_session(options)
    builder = SparkSession.builder
    for key, value in options.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    if spark_config.log_level:  # a JVM started by spark-submit read its own log4j config: set the level now
        session.sparkContext.setLogLevel(spark_config.log_level)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _exit_on_interrupt)
    return session


def _start_jvm_in_own_session(options: dict[str, str]) -> None:
    """Launch Spark's JVM (unless there is one) as pyspark would, but in a session of its own:
    a process group that the driver can kill on Ctrl-C (`_exit_on_interrupt`) and that a terminal's
    Ctrl-C does not reach. The JVM still exits with the driver, whose end closes its stdin.
    """
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    if SparkContext._gateway is not None or "PYSPARK_GATEWAY_PORT" in os.environ:
        return  # started already, or by spark-submit
    conf = SparkConf()
    for key, value in options.items():
        conf.set(key, value)
    SparkContext._ensure_initialized(gateway=launch_gateway(conf, popen_kwargs={"start_new_session": True}))


def _exit_on_interrupt(signum, frame) -> None:
    """SIGINT (Ctrl-C) while Spark runs: one line, exit 130 at once.

    pyspark's own handler cancels the jobs through py4j and raises KeyboardInterrupt inside the
    py4j call the driver is waiting in, which logs tracebacks; a JVM left to shut down by itself
    logs a crash for every Python worker its exit stops. So the JVM is killed first (its Python
    daemon and workers end when its pipes close). That is safe: committed stages and stage 1's
    finished files survive a kill.
    """
    print(INTERRUPTED_MESSAGE, file=sys.stderr, flush=True)
    from pyspark import SparkContext

    jvm = getattr(SparkContext._gateway, "proc", None)
    try:
        if jvm is not None and os.getpgid(jvm.pid) == jvm.pid:  # its own group: the one we started
            os.killpg(jvm.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # gone already
    os._exit(INTERRUPTED_EXIT)


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


def require_committed(directory: str | os.PathLike) -> Path:
    """`directory` as a Path if it holds a committed stage output; a clear error otherwise."""
    from pipeline.inputs import InputError

    path = Path(directory)
    if not path.is_dir():
        raise InputError(f"input directory {path} does not exist")
    if not (path / COMMITTED_MARKER).is_file():
        raise InputError(f"{path} holds no committed stage output (no {COMMITTED_MARKER} marker): rerun that stage")
    return path


def print_stage_start(stage: str, detail: str = "") -> None:
    """The line printed as each stage starts, before Spark's progress bar for it."""
    print(f"[thresher] {stage}: starting{' (' + detail + ')' if detail else ''}", file=sys.stderr, flush=True)


def print_stage_summary(stage: str, stats: dict[str, Any], seconds: float) -> None:
    """The one-line summary printed as each stage finishes."""
    print(stage_summary(stage, stats, seconds), file=sys.stderr)


def stage_summary(stage: str, stats: dict[str, Any], seconds: float) -> str:
    """`[thresher] rules: 54 in, 48 out, 6 rejected, 12 lines removed, 16.6s`: lines removed from
    kept documents are said apart, never added to the documents rejected."""
    from pipeline.report import is_line_rule

    by_rule = stats["rejects_by_rule"]
    lines = sum(n for rule, n in by_rule.items() if is_line_rule(rule))
    return (
        f"[thresher] {stage}: {stats['documents_in']} in, "
        f"{stats['documents_out']} out, {sum(by_rule.values()) - lines} rejected, "
        + (f"{lines} lines removed, " if lines else "")
        + f"{seconds:.1f}s"
    )


def reject_rows(frame, stage: str, rule, detail, content=None):
    """`frame`'s rows as reject rows (schemas.rejects.REJECT, its column order and types): doc_id, url
    and warc_path from `frame`; `rule` a rule name or a Column; `detail` a Column; `content` a
    Column, by default the start of `text` (CONTENT_SNIPPET_CHARS)."""
    from pyspark.sql import Column
    from pyspark.sql import functions as F

    from schemas import to_spark_schema
    from schemas.rejects import CONTENT_SNIPPET_CHARS, REJECT

    values = {
        "doc_id": F.col("doc_id"),
        "url": F.col("url"),
        "warc_path": F.col("warc_path"),
        "stage": F.lit(stage),
        "rule": rule if isinstance(rule, Column) else F.lit(rule),
        "detail": detail,
        "content": F.substring("text", 1, CONTENT_SNIPPET_CHARS) if content is None else content,
    }
    return frame.select(*[values[f.name].cast(f.dataType).alias(f.name) for f in to_spark_schema(REJECT).fields])


@dataclass(frozen=True)
class StageJob:
    """A stage as a command, `thresher <stage>` and `spark-submit jobs/<job>.py` alike.

    The stage brings its own options, its checks and its work; the rest every stage does the same
    way: --config/--master/--set, the config (its ranges checked as it is built), the checks before
    Spark starts, the start line, the session, the lock on --output, the summary line, and a user's
    error as one line (jobs.cli.run_with_one_line_errors).
    """

    stage: str  # names the start and summary lines and the Spark application
    prog: str  # e.g. "thresher rules"
    doc: str  # the job module's docstring; its first line describes the command in --help
    arguments: Callable[[argparse.ArgumentParser], argparse.ArgumentParser | None]  # INPUT, --output, ...; a
    # subcommand's parser when the common options go there (`tokenizer train`)
    set_example: str  # the --set example in --help
    # The stage under the lock on --output: its stats, or None where it printed its own summaries.
    work: Callable[[Any, argparse.Namespace, Config], dict[str, Any] | None]
    # What else is knowable before Spark starts (models, settings, a stage's own inputs): raises the
    # one-line errors; returns the start line's detail, or None.
    check: Callable[[argparse.Namespace, Config], str | None] = lambda args, config: None
    # The option holding a documents INPUT (jobs.documents_input), checked after `check`, before
    # Spark starts; it is the start line's detail when `check` gives none.
    documents_input: str = ""
    # --set items an option of the stage implies (`--seq-len N`): applied after --set, so they win.
    implied_overrides: Callable[[argparse.Namespace], list[str]] = lambda args: []

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_common_arguments(self.arguments(parser) or parser, self.set_example)

    def run(self, args: argparse.Namespace) -> int:
        args.overrides = [*(args.overrides or []), *self.implied_overrides(args)]
        config = config_from_args(args)
        detail = self.check(args, config)
        if self.documents_input:
            source_from_args(args, getattr(args, self.documents_input))
            detail = detail or getattr(args, self.documents_input)
        started = time.perf_counter()
        with DirectoryLock(args.output):  # before Spark's start-up: a second run on --output is refused at once
            print_stage_start(self.stage, detail or "")
            spark = spark_session(f"thresher-{self.stage.split()[0]}", config.spark, args.master)
            stats = self.work(spark, args, config)
        if stats is not None:
            print_stage_summary(self.stage, stats, time.perf_counter() - started)
        return 0

    def main(self, argv: list[str] | None = None) -> int:
        return script_main(self.prog, self.doc, self.add_arguments, self.run, argv)
