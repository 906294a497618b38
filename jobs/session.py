"""The Spark session of a job: its settings, its JVM, and Ctrl-C while it runs."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

from thresher.pipeline.config import ConfigError, SparkConfig

INTERRUPTED_EXIT = 130  # 128 + SIGINT, as a shell reports a Ctrl-C


# Committed stages (and stage 1's finished files) stay: the same command goes on from them.
INTERRUPTED_MESSAGE = "[thresher] interrupted; run the same command again to resume"


LOG4J_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "log4j2-console.properties"


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
