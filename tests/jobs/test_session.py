"""jobs.session: the Spark settings of a job's session."""

import json
import os
import re
import subprocess
import sys
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


# ---------------------------------------------------------------- where a job runs

# A driver that starts its session as every job does, with the config's master local[3] and
# executor memory 3g, and prints what the session runs with.
SESSION_PROBE = (
    "import json, sys\n"
    "from thresher.jobs.session import spark_session\n"
    "from thresher.pipeline.config import load_config\n"
    "config = load_config(None, {'spark.master': 'local[3]', 'spark.executor_memory': '3g', 'spark.conf': {'spark.ui.enabled': 'false'}})\n"
    "spark = spark_session('thresher-probe', config.spark, sys.argv[1] or None)\n"
    "print(json.dumps({'master': spark.sparkContext.master, 'executor_memory': spark.conf.get('spark.executor.memory')}))\n"
)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any master or submit arguments of its own, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER", "PYSPARK_SUBMIT_ARGS", "SPARK_CONF_DIR")}
    return {**env, **extra}


# (what names the master, its environment, thresher's --master, the session's master and executor memory)
MASTER_CASES = [
    ("nothing else: the config's", {}, "", "local[3]", "3g"),
    ("the environment", {"MASTER": "local[2]"}, "", "local[2]", "3g"),
    ("--conf in PYSPARK_SUBMIT_ARGS", {"PYSPARK_SUBMIT_ARGS": "--conf spark.master=local[2] --conf spark.executor.memory=1g pyspark-shell"},
     "", "local[2]", "1g"),
    ("spark-defaults.conf", {"SPARK_CONF_DIR": "{conf_dir}"}, "", "local[2]", "3g"),
    ("thresher's --master, over all of them", {"MASTER": "local[2]", "PYSPARK_SUBMIT_ARGS": "--master local[2] pyspark-shell",
                                                "SPARK_CONF_DIR": "{conf_dir}"}, "local[1]", "local[1]", "3g"),
]


def test_the_master_comes_from_the_option_then_spark_submit_and_the_environment_then_the_config(tmp_path):
    (tmp_path / "spark-defaults.conf").write_text("spark.master local[2]\n")
    probes = []
    for _, env, option, *_ in MASTER_CASES:  # one driver (and JVM) per case, all at once
        env = clean_env(**{key: value.format(conf_dir=tmp_path) for key, value in env.items()})
        probes.append(subprocess.Popen([sys.executable, "-c", SESSION_PROBE, option], env=env, text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for (case, _, _, master, executor_memory), probe in zip(MASTER_CASES, probes, strict=True):
        out, err = probe.communicate(timeout=300)
        assert probe.returncode == 0, err[-3000:]
        assert json.loads(out) == {"master": master, "executor_memory": executor_memory}, case
        line = next(line for line in err.splitlines() if line.startswith("[thresher] probe:"))
        assert re.fullmatch(rf"\[thresher\] probe: Spark master {re.escape(master)}, application local-\d+", line), case


def test_spark_submit_runs_a_job_under_its_master_not_the_configs_with_paths_from_its_working_directory(tmp_path):
    """`spark-submit --master local[1] jobs/rules.py INPUT --output OUT` once ran under the config's local[*]
    (the job set spark.master over spark-submit's); relative paths are taken from the working directory."""
    import pyspark

    import thresher.jobs.rules as rules_module

    spark_home = Path(pyspark.__file__).parent
    with open(tmp_path / "docs.jsonl", "w") as handle:
        for i in range(4):
            handle.write(json.dumps({"text": f"Document {i} says something about the weather today. " * 12,
                                     "url": f"https://example.com/{i}"}) + "\n")
    command = [str(spark_home / "bin" / "spark-submit"), "--master", "local[1]", "--conf", "spark.ui.enabled=false",
               rules_module.__file__, "docs.jsonl", "--output", "out",
               "--set", "spark.shuffle_partitions=1", "--set", "rules.minhash_num_perm=64", "--set", "rules.minhash_bands=4"]
    env = clean_env(SPARK_HOME=str(spark_home), PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    submitted = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    # spark-submit runs the driver with its stderr joined to its stdout
    lines = [line for line in submitted.stdout.splitlines() if line.startswith("[thresher] rules: Spark")]
    assert len(lines) == 1 and re.fullmatch(r"\[thresher\] rules: Spark master local\[1\], application local-\d+", lines[0])
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["inputs"] == [str(tmp_path / "docs.jsonl")]  # resolved on the driver, before any task ran
    assert stats["documents_in"] == 4


# ---------------------------------------------------------------- what the executors see


def test_under_a_local_master_every_path_is_seen():
    from thresher.jobs.session import check_executors_see

    check_executors_see("local[2]", [("INPUT", "/home/me/crawl"), ("--output", "/tmp/out")], [])
    check_executors_see("local-cluster[2,1,1024]", [("INPUT", "/home/me/crawl")], [])


def test_under_a_cluster_master_a_local_path_outside_the_shared_mounts_is_one_error_naming_it():
    from thresher.jobs.session import check_executors_see
    from thresher.pipeline.config import ConfigError

    shared = ["/mnt/shared", "/srv/thresher"]
    check_executors_see("spark://head:7077", [("INPUT", "s3://bucket/crawl"), ("--output", "hdfs:///out"),
                                              ("INPUT", "/mnt/shared/crawl/a.warc.gz"), ("prepare.lid_model_path", "")], shared)
    with pytest.raises(ConfigError) as refused:
        check_executors_see("yarn", [("--output", "/mnt/shared/out"), ("rules.spam.terms_file", "/home/me/terms.txt")], shared)
    assert str(refused.value) == (
        "rules.spam.terms_file /home/me/terms.txt is on this machine's disk, which the executors under yarn do not see: "
        "put it on s3://, hdfs:// or other storage every node reads, or on a mount listed in spark.shared_local_paths")
    with pytest.raises(ConfigError, match="spark.shared_local_paths: 'shared' is not an absolute local path"):
        check_executors_see("local[2]", [], ["shared"])


def test_a_job_under_a_cluster_master_refuses_a_local_input_before_connecting(tmp_path):
    """spark://127.0.0.1:1 has no master behind it: a connection attempt would fail otherwise, and later."""
    (tmp_path / "docs.jsonl").write_text(json.dumps({"text": "a document"}) + "\n")
    command = [sys.executable, "-c", "from thresher.jobs.cli import main; raise SystemExit(main())",
               "rules", "docs.jsonl", "--output", "out", "--master", "spark://127.0.0.1:1"]
    refused = subprocess.run(command, cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    errors = [line for line in refused.stderr.splitlines() if "error" in line.lower() or "exception" in line.lower()]
    assert errors == [
        f"thresher rules: error: INPUT {tmp_path / 'docs.jsonl'} is on this machine's disk, which the executors under "
        "spark://127.0.0.1:1 do not see: put it on s3://, hdfs:// or other storage every node reads, or on a mount "
        "listed in spark.shared_local_paths"]
    assert refused.stderr.splitlines()[-1] == errors[0] and "Spark master" not in refused.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.timeout(180)
def test_a_failed_task_prints_no_java_stack_at_the_default_log_level(tmp_path):
    """A disk-full error in a task reached the console under the executor's 18-frame Java stack."""
    script = tmp_path / "failing_task.py"
    script.write_text(
        "import sys\n"
        "from thresher.jobs.session import spark_session\n"
        "from thresher.pipeline.config import load_config\n"
        "spark = spark_session('failing-task', load_config().spark, 'local[1]')\n"
        "def fill_the_disk(rows):\n"
        "    raise OSError(28, 'No space left on device', '/data/out/part-0')\n"
        "    yield\n"
        "try:\n"
        "    spark.sparkContext.parallelize([1]).mapPartitions(fill_the_disk).collect()\n"
        "except Exception as exc:\n"
        "    print('the driver saw', 'No space left on device' in str(exc), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=170)
    assert "the driver saw True" in done.stderr
    assert not re.search(r"^\s+at (org|java|scala)\.", done.stderr, re.M), done.stderr[-2000:]
    assert "ERROR Executor" not in done.stderr
