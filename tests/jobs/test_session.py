"""jobs.session: the Spark settings of a job's session."""

import json
import subprocess
from pathlib import Path

import pytest


def test_gpu_scheduling_settings_come_from_the_spark_section(tmp_path):
    from thresher.jobs.session import spark_settings
    from thresher.pipeline.config import load_config

    plain = spark_settings(load_config().spark)
    assert not any("resource.gpu" in key for key in plain)  # no GPU asked for: none scheduled
    gpu = spark_settings(load_config(None, {"spark.executor_gpu_amount": 2, "spark.task_gpu_amount": 0.5}).spark)
    assert gpu["spark.executor.resource.gpu.amount"] == "2"
    assert gpu["spark.task.resource.gpu.amount"] == "0.5"
    script = Path(gpu["spark.executor.resource.gpu.discoveryScript"])
    assert script.is_file() and script.name == "gpu_discovery.sh"
    # The shipped script prints Spark's resource JSON (no GPU here: an empty address list).
    found = json.loads(subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True).stdout)
    assert found["name"] == "gpu" and isinstance(found["addresses"], list)
    # spark.conf still wins over what thresher derives.
    override = load_config(None, {"spark.executor_gpu_amount": 1, "spark.task_gpu_amount": 1, "spark.conf": {"spark.task.resource.gpu.amount": "0.25"}})
    assert spark_settings(override.spark)["spark.task.resource.gpu.amount"] == "0.25"


def test_gpu_scheduling_without_a_task_amount_or_script_is_a_config_error(tmp_path):
    from thresher.jobs.session import spark_settings
    from thresher.pipeline.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="spark.task_gpu_amount"):
        spark_settings(load_config(None, {"spark.executor_gpu_amount": 1}).spark)
    missing = load_config(None, {"spark.executor_gpu_amount": 1, "spark.task_gpu_amount": 1, "spark.gpu_discovery_script": str(tmp_path / "nope.sh")})
    with pytest.raises(ConfigError, match="gpu_discovery_script"):
        spark_settings(missing.spark)
