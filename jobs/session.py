"""The Spark session of a job: where it runs, its settings, its JVM, and Ctrl-C while it runs."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from thresher.pipeline.config import ConfigError, SparkConfig
from thresher.pipeline.locations import is_local_master, is_url, under_any
from thresher.pipeline.package_files import package_path

INTERRUPTED_EXIT = 130  # 128 + SIGINT, as a shell reports a Ctrl-C


# Committed stages (and stage 1's finished files) stay: the same command goes on from them.
INTERRUPTED_MESSAGE = "[thresher] interrupted; run the same command again to resume"




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
            script = package_path(str(script))
        if not script.is_file():
            raise ConfigError(f"spark.gpu_discovery_script: {script} does not exist (thresher ships jobs/gpu_discovery.sh)")
        settings["spark.executor.resource.gpu.amount"] = str(spark_config.executor_gpu_amount)
        settings["spark.task.resource.gpu.amount"] = str(spark_config.task_gpu_amount)
        settings["spark.executor.resource.gpu.discoveryScript"] = str(script)
    settings.update(spark_config.conf)
    return settings


def spark_session(app_name: str, spark_config: SparkConfig, master: str | None = None,
                  executor_paths: Sequence[tuple[str, str]] = ()):
    """A SparkSession for a job; reuses the active one (tests, `thresher run`) when there is one.

    The master, first found first: `master` (thresher's --master); the one the JVM was launched with:
    spark-submit's (--master, --conf spark.master, spark-defaults.conf, $MASTER, else its own default
    local[*]), or for a JVM that thresher launches, PYSPARK_SUBMIT_ARGS's, spark-defaults.conf's or
    $MASTER's; else the config's spark.master. Any other setting the JVM was launched with (spark-submit's
    --conf, --executor-memory, --deploy-mode ...) wins over the config's too; the application name is
    thresher's. Before the application starts, a path of `executor_paths` (what the tasks read or write:
    (option or config key, path) pairs) that the executors under the master cannot see is a
    ConfigError naming it. Prints the master and the application id once the session exists.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        check_executors_see(active.sparkContext.master, executor_paths, spark_config.shared_local_paths)
        _print_session_line(app_name, active)
        return active
    # Executors must run the same interpreter as the driver, with the same packages.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    options = spark_settings(spark_config)
    if spark_config.log_level:
        # Read when the driver JVM starts (local executors share it), so Spark's start-up warnings obey it too.
        options["spark.driver.extraJavaOptions"] = (
            f"-Dlog4j2.configurationFile=file:{package_path('configs/log4j2-console.properties')} -Dthresher.log.level={spark_config.log_level} "
            f"-Dthresher.task.log.level={_task_log_level(spark_config.log_level)} "
            + options.get("spark.driver.extraJavaOptions", "")).strip()
    if master:  # known before the JVM starts: a path the executors do not see is refused before it
        check_executors_see(master, executor_paths, spark_config.shared_local_paths)
        options["spark.master"] = master
    launched = _launched_settings(options, spark_config.master)
    if not master:
        master = launched["spark.master"]  # spark-submit always names one
        check_executors_see(master, executor_paths, spark_config.shared_local_paths)
    builder = SparkSession.builder.config("spark.app.name", app_name).config("spark.master", master)
    for key, value in options.items():
        if key not in launched:
            builder = builder.config(key, value)
    session = builder.getOrCreate()
    if spark_config.log_level:  # a JVM started by spark-submit read its own log4j config: set the level now
        session.sparkContext.setLogLevel(spark_config.log_level)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _exit_on_interrupt)
    _print_session_line(app_name, session)
    return session


def _task_log_level(level: str) -> str:
    """The level of the executor's and task scheduler's logs: none at ERROR (a failed task's stack reaches the
    driver's error anyway), else the level asked for."""
    return "off" if level.upper() == "ERROR" else level


def check_executors_see(master: str, paths: Sequence[tuple[str, str]], shared_local_paths: Sequence[str]) -> None:
    """Under a master whose executors run on other machines, every local path of `paths` ((name, path)
    pairs, resolved by pipeline.locations) must lie under a mount every node shares (spark.shared_local_paths)."""
    for prefix in shared_local_paths:
        if is_url(prefix) or not os.path.isabs(prefix.removeprefix("file://")):
            raise ConfigError(f"spark.shared_local_paths: {prefix!r} is not an absolute local path")
    if is_local_master(master):
        return
    shared = [prefix.removeprefix("file://") for prefix in shared_local_paths]
    for name, path in paths:
        if path and not is_url(path) and not under_any(path, shared):
            raise ConfigError(
                f"{name} {path} is on this machine's disk, which the executors under {master} do not see: "
                "put it on s3://, hdfs:// or other storage every node reads, or on a mount listed in "
                "spark.shared_local_paths"
            )


def _print_session_line(app_name: str, session) -> None:
    context = session.sparkContext
    print(f"[thresher] {app_name.removeprefix('thresher-')}: Spark master {context.master}, "
          f"application {context.applicationId}", file=sys.stderr, flush=True)


def _launched_settings(options: dict[str, str], config_master: str) -> dict[str, str]:
    """The spark.* settings of the JVM this driver runs with: spark-submit's, or those of one launched
    now with `options` (`config_master` as $MASTER, the last place spark-submit looks for a master)."""
    from pyspark import SparkConf, SparkContext

    if SparkContext._gateway is None and "PYSPARK_GATEWAY_PORT" not in os.environ:
        _start_jvm_in_own_session(options, config_master)
    else:
        SparkContext._ensure_initialized()  # attach to spark-submit's JVM (a no-op when attached already)
    return dict(SparkConf().getAll())


def _start_jvm_in_own_session(options: dict[str, str], config_master: str) -> None:
    """Launch Spark's JVM as pyspark would, but in a session of its own: a process group that the
    driver can kill on Ctrl-C (`_exit_on_interrupt`) and that a terminal's Ctrl-C does not reach. The
    JVM still exits with the driver, whose end closes its stdin. pyspark launches it with spark-submit,
    which takes the master from PYSPARK_SUBMIT_ARGS, spark-defaults.conf or $MASTER: the config's
    master is offered as $MASTER, so that it counts only where none of those names one.
    """
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    conf = SparkConf(loadDefaults=False)
    for key, value in options.items():
        conf.set(key, value)
    offered = "MASTER" not in os.environ
    if offered:
        os.environ["MASTER"] = config_master
    try:
        gateway = launch_gateway(conf, popen_kwargs={"start_new_session": True})
    finally:
        if offered:
            del os.environ["MASTER"]
    SparkContext._ensure_initialized(gateway=gateway)


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
