"""Fixtures shared by all tests: one Spark session for the whole run, the shared real data, and dist/
as `make dist` builds it."""

from __future__ import annotations

import os
import subprocess
import sys
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
