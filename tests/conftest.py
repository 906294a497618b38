"""Fixtures shared by all tests: one Spark session for the whole run, the shared real data, dist/ as
`make dist` builds it, and a local S3 server."""

from __future__ import annotations

import inspect
import logging
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, the real test data; tests that need it skip when it is absent (CI has it)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def dist() -> Path:
    """dist/ built by `make dist` (the wheel, thresher.zip, thresher-venv.tar.gz, Dockerfile), once per
    test run; make rebuilds only what a change made stale (about a minute), else nothing."""
    built = subprocess.run(["make", "dist", f"VENV={sys.prefix}"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return REPO_ROOT / "dist"


@pytest.fixture(scope="session")
def spark():
    """One Spark local-mode session for the whole test run: starting one costs about 12 s."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("thresher-tests")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", "3g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    environment: dict[str, str]  # the AWS variables a client (driver or executor) needs to reach it


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1 (a free port) with one bucket, for the whole run; clients find it through
    the usual AWS variables (AWS_ENDPOINT_URL included, which botocore and so s3fs honour)."""
    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    environment = {
        "AWS_ACCESS_KEY_ID": "thresher-test", "AWS_SECRET_ACCESS_KEY": "thresher-test",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_EC2_METADATA_DISABLED": "true",  # never ask the (absent) instance metadata service
    }
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    bucket = "thresher-test"
    s3fs.S3FileSystem(skip_instance_cache=True).mkdir(bucket)
    yield S3Server(endpoint=environment["AWS_ENDPOINT_URL"], bucket=bucket, environment=environment)
    server.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def s3_url(s3_server) -> str:
    """A fresh, empty prefix in the test bucket: s3://BUCKET/TEST-UNIQUE."""
    return f"s3://{s3_server.bucket}/{uuid.uuid4().hex}"


@pytest.fixture(scope="session")
def spark_s3(spark, s3_server):
    """The Spark session with its Python workers reaching the S3 server, whichever of the two started first:
    SparkContext.environment is what spark.executorEnv.* sets on a cluster."""
    spark.sparkContext.environment.update(s3_server.environment)
    return spark


@pytest.fixture
def copies_and_renames(monkeypatch) -> list[str]:
    """Every rename, move or copy asked of s3fs in this process, and every copy the S3 server carried out
    for any client (the server runs in this process: the Spark workers' requests reach it too)."""
    import s3fs
    from moto.s3.models import S3Backend

    calls: list[str] = []

    def recording(name, original):
        def record(*args, **kwargs):
            calls.append(name)
            return original(*args, **kwargs)

        async def record_async(*args, **kwargs):  # still a coroutine function, as fsspec's sync mirrors need
            calls.append(name)
            return await original(*args, **kwargs)
        return record_async if inspect.iscoroutinefunction(original) else record

    # The async methods s3fs's own sync ones call at call time (a patched sync method would lose s3fs's).
    for name in ("mv", "move", "rename", "_copy", "_cp_file", "_mv_file"):
        monkeypatch.setattr(s3fs.S3FileSystem, name, recording(name, getattr(s3fs.S3FileSystem, name)))
    for name in ("copy_object", "upload_part_copy"):
        monkeypatch.setattr(S3Backend, name, recording(f"server {name}", getattr(S3Backend, name)))
    return calls
