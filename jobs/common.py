"""What every Spark job shares: the session, common options, and the staged, committed output."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.config import Config, ConfigError, SparkConfig, load_config

COMMITTED_MARKER = "_COMMITTED"
STAGING_DIR = "_staging"
WORK_DIR = "_work"  # finished units of work (e.g. per WARC file) that survive a crash, for resuming
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


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """--config, --master and --set, the options every Spark job takes."""
    parser.add_argument("--config", help="YAML config file (default: configs/default.yaml)")
    parser.add_argument("--master", help="Spark master URL, e.g. local[4] or spark://host:7077 (default: from config)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set prepare.lang_threshold=0.7 (VALUE is parsed as YAML)",
    )


def script_main(prog: str, doc: str, add_arguments, run, argv: list[str] | None = None) -> int:
    """What `spark-submit jobs/<job>.py ...` runs: the job's own parser and run, as `thresher <job>`."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


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


def spark_session(app_name: str, spark_config: SparkConfig, master: str | None = None):
    """A SparkSession for a job; reuses the active one (tests, `thresher run`) when there is one."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # Executors must run the same interpreter as the driver, with the same packages.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.appName(app_name)
        .master(master or spark_config.master)
        .config("spark.sql.shuffle.partitions", str(spark_config.shuffle_partitions))
        .config("spark.driver.memory", spark_config.driver_memory)
        .config("spark.executor.memory", spark_config.executor_memory)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.showConsoleProgress", "true")
    )
    for key, value in spark_config.conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


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
        """Make a committed stage rerunnable (its settings changed): the marker goes first, so from here
        on readers and reruns treat the old output as not there; `begin` then clears it."""
        (self.directory / COMMITTED_MARKER).unlink(missing_ok=True)

    def begin(self) -> None:
        """Clear what an interrupted attempt left (staging and any uncommitted final parts)."""
        if self.committed:
            raise RuntimeError(f"{self.directory} is already committed; refusing to overwrite it")
        if self.directory.exists():
            for child in self.directory.iterdir():
                if child.name == WORK_DIR:
                    continue
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        self.staging.mkdir(parents=True)

    @property
    def work(self) -> Path:
        """A directory for finished units of work that a rerun after a crash may reuse."""
        path = self.directory / WORK_DIR
        path.mkdir(parents=True, exist_ok=True)
        return path

    def staged(self, name: str) -> str:
        """Where to write part `name` (a Parquet directory or a file) before the commit."""
        return str(self.staging / name)

    def commit(self, stats: dict[str, Any]) -> None:
        """Write stats, move every staged part into place, then write the marker last."""
        (self.staging / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
        for part in sorted(self.staging.iterdir()):
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


def require_committed(directory: str | os.PathLike) -> Path:
    """`directory` as a Path if it holds a committed stage output; a clear error otherwise."""
    path = Path(directory)
    if not path.is_dir():
        raise FileNotFoundError(f"input directory {path} does not exist")
    if not (path / COMMITTED_MARKER).is_file():
        raise RuntimeError(f"{path} holds no committed stage output (no {COMMITTED_MARKER} marker): rerun that stage")
    return path


def read_stats(directory: str | os.PathLike) -> dict[str, Any]:
    return json.loads((Path(directory) / "stats.json").read_text())


def print_stage_summary(stage: str, stats: dict[str, Any], seconds: float) -> None:
    """The one-line summary printed as each stage finishes."""
    print(
        f"[thresher] {stage}: {stats.get('documents_in', stats.get('records_in', '?'))} in, "
        f"{stats.get('documents_out', '?')} out, {sum(stats.get('rejects_by_rule', {}).values())} rejected, "
        f"{seconds:.1f}s",
        file=sys.stderr,
    )
