"""Job fixtures: a stage-2-shaped input of real DCLM and ChineseWebText documents, and small default
models bootstrapped from it (shared by the tag, select and models job tests); `thresher run` on the
bundled sample crawl (the run and sweep tests); a standalone Spark
cluster of two workers (the cluster tests of run and of the built artifacts)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.schemas.documents import RULES


@pytest.fixture(scope="session")
def stage2_dir(shared_data, tmp_path_factory) -> Path:
    """A committed stage 2 output: 160 English (DCLM) and 40 Chinese (ChineseWebText) documents."""
    # Imported here: Spark workers import test modules without tests/ on their path.
    from stage_rows import URL_SHAPES, read_jsonl, rules_row

    quality = shared_data / "quality"
    rows = [
        rules_row("dclm", i, URL_SHAPES[i % len(URL_SHAPES)].format(i=i), r["text"], "en")
        for i, r in enumerate(read_jsonl(quality / "dclm" / "majority_data.jsonl")[:160])
    ]
    rows += [rules_row("cwt", i, r["url"], r["raw_content"], "zh") for i, r in enumerate(read_jsonl(quality / "chinesewebtext" / "cleared1.jsonl")[:40])]
    directory = tmp_path_factory.mktemp("stage2")
    (directory / "documents").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=RULES), directory / "documents" / "part-0.parquet")
    (directory / "_COMMITTED").write_text("{}\n")
    return directory


@pytest.fixture(scope="session")
def models_dir(stage2_dir, tmp_path_factory) -> Path:
    from thresher.classifiers.bootstrap import bootstrap
    from thresher.classifiers.topic import load_taxonomy

    directory = tmp_path_factory.mktemp("models")
    bootstrap([str(stage2_dir)], directory, load_taxonomy(), params={"bucket": 20_000, "dim": 16})
    return directory


@pytest.fixture(scope="session")
def quality_model(shared_data, tmp_path_factory) -> Path:
    """A 0/1 quality classifier trained as a user would, with `thresher classifiers train --task plain`
    on DCLM's majority-vote labels."""
    from thresher.jobs.cli import main

    directory = tmp_path_factory.mktemp("quality") / "model"
    argv = ["classifiers", "train", "--task", "plain", "--data", str(shared_data / "quality" / "dclm" / "majority_data.jsonl"),
            "--output", str(directory), "--param", "dim=16", "--param", "bucket=20000"]
    assert main(argv) == 0
    return directory


@pytest.fixture(scope="session")
def tagged_dir(spark, stage2_dir, models_dir, quality_model, tmp_path_factory) -> Path:
    """`thresher tag` on the stage 2 fixture with all four taggers, on one input partition."""
    from stage_rows import stage3_config

    from thresher.jobs.tag import run_tag

    directory = tmp_path_factory.mktemp("tagged")
    run_tag(spark, str(stage2_dir), str(directory), stage3_config(models_dir, quality_model), partitions=1)
    return directory


@pytest.fixture(scope="session")
def sample_run(spark, tmp_path_factory) -> tuple[list[str], Path]:
    """`thresher run` on the bundled sample crawl with stage_rows.SAMPLE_RUN_OVERRIDES: its inputs and run
    directory (the run and sweep tests read it and leave it as it is)."""
    from stage_rows import SAMPLE_RUN_OVERRIDES

    from thresher.jobs.run import run_pipeline
    from thresher.pipeline.config import load_config
    from thresher.pipeline.prepare.sample_crawl import write_sample_crawl

    inputs = write_sample_crawl(str(tmp_path_factory.mktemp("sample-crawl")))
    out = tmp_path_factory.mktemp("reference")
    run_pipeline(spark, inputs, str(out), load_config(None, SAMPLE_RUN_OVERRIDES))
    return inputs, out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_log(path: Path, needle: str, count: int = 1, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and path.read_text(errors="replace").count(needle) >= count:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{needle!r} x{count} not in {path} after {timeout}s:\n{path.read_text(errors='replace')[-3000:]}")


@dataclass(frozen=True)
class StandaloneCluster:
    url: str  # spark://127.0.0.1:PORT
    web_ui: str  # the master's, http://127.0.0.1:PORT (its status as JSON at /json)
    workers: list[subprocess.Popen]
    work_dirs: list[Path]  # each worker's --work-dir: an application's executor directories and logs
    env: dict[str, str]  # for spark-submit: SPARK_HOME, and this interpreter as the driver's and executors' Python
    spark_home: Path


@pytest.fixture(scope="module")
def standalone_cluster(tmp_path_factory):
    """A Spark standalone master and two one-core workers on 127.0.0.1, from the pyspark installation;
    every process is killed at the end, whatever happened."""
    import py4j
    import pyspark

    spark_home = Path(pyspark.__file__).parent
    logs = tmp_path_factory.mktemp("cluster-logs")
    # A Spark distribution gives executors its Python side from $SPARK_HOME/python/lib; the pip package
    # has no such folder, so the workers get pyspark and py4j here (Pythons without them, such as a
    # packed virtualenv shipped with --archives, need it).
    spark_python = logs / "spark-python"
    spark_python.mkdir()
    for package in (pyspark, py4j):
        (spark_python / package.__name__).symlink_to(Path(package.__file__).parent)
    env = {**os.environ, "SPARK_HOME": str(spark_home), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    port, web_port = free_port(), free_port()
    url = f"spark://127.0.0.1:{port}"
    spark_class = str(spark_home / "bin" / "spark-class")
    processes = []

    def start(name, *args, **extra_env):
        log = logs / f"{name}.log"
        with log.open("w") as handle:
            processes.append(subprocess.Popen([spark_class, *args], stdout=handle, stderr=subprocess.STDOUT,
                                              env={**env, **extra_env}, start_new_session=True))
        return log

    work_dirs = [logs / f"work-{i}" for i in range(2)]
    try:
        master_log = start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                           "--port", str(port), "--webui-port", str(web_port))
        wait_for_log(master_log, "I have been elected leader")
        for i, work_dir in enumerate(work_dirs):
            start(f"worker-{i}", "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1", "--cores", "1",
                  "--memory", "1500m", "--webui-port", str(free_port()), "--work-dir", str(work_dir),
                  PYTHONPATH=str(spark_python))
        wait_for_log(master_log, "Registering worker", count=2)
        yield StandaloneCluster(url, f"http://127.0.0.1:{web_port}", processes[1:], work_dirs, env, spark_home)
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


PLANTED_ITEMS = {"gsm8k": 0, "humaneval": 1, "cmmlu": 2}  # benchmark -> the stage 2 row its first item is pasted into


def decontam_overrides(shared_data: Path) -> dict:
    """Config naming the three shared benchmarks for the decontam tagger."""
    root = shared_data / "benchmarks"
    return {"decontam.benchmarks": {
        "gsm8k": {"path": str(root / "gsm8k/test.jsonl"), "fields": ["question", "answer"]},
        "humaneval": {"path": str(root / "humaneval/HumanEval.jsonl.gz"), "fields": ["prompt", "canonical_solution"], "id_field": "task_id"},
        "cmmlu": {"path": str(root / "cmmlu/test"), "fields": ["Question", "A", "B", "C", "D"]},
    }}


@pytest.fixture(scope="session")
def decontaminated(spark, stage2_dir, models_dir, quality_model, shared_data, tmp_path_factory) -> dict:
    """`thresher tag` with the decontam tagger on the stage 2 fixture where three documents hold a
    benchmark item each (GSM8K and HumanEval in English pages, CMMLU in a Chinese one)."""
    from stage_rows import stage3_config

    from thresher.jobs.tag import configured_benchmarks, run_tag
    from thresher.pipeline.decontam import read_items

    rows = pq.read_table(stage2_dir / "documents").to_pylist()
    config_args = {"models_dir": models_dir, "quality_model": quality_model, **decontam_overrides(shared_data)}
    config = stage3_config(**config_args)
    planted = {}
    for benchmark in configured_benchmarks(config):
        item_id, fields = next(iter(read_items(benchmark)))
        row = rows[PLANTED_ITEMS[benchmark.name] if benchmark.name != "cmmlu" else -1]
        piece = "\n".join(fields)
        row["text"] = row["text"][:400] + "\n" + piece + "\n" + row["text"][400:]
        planted[benchmark.name] = (row["doc_id"], item_id, piece)
    source = tmp_path_factory.mktemp("stage2-planted")
    (source / "documents").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=RULES), source / "documents" / "part-0.parquet")
    (source / "_COMMITTED").write_text("{}\n")
    out = tmp_path_factory.mktemp("decontaminated")
    run_tag(spark, str(source), str(out), config, partitions=2)
    return {"dir": out, "planted": planted, "config_args": config_args}
