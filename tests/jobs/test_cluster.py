"""The README's standalone recipe, as a user runs it: `make dist`, then spark-submit of a job to a
standalone cluster of two workers with thresher.zip (--py-files) and the packed virtualenv
(--archives); the same output as the same job in local mode, and tasks on both workers."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from thresher.pipeline.stagedir import COMMITTED_MARKER

# The job's own config values, the same in both runs (so the config digests match too); executors
# of 1 GB fit the fixture's workers.
# The workers share this machine's disk (the corpus, the output and thresher's shipped lists are on it):
# spark.shared_local_paths says so, in both runs, so that their config digests agree.
SETTINGS = ["--set", "spark.executor_memory=1g", "--set", "spark.shuffle_partitions=2", "--set", "spark.shared_local_paths=[/]"]
FOOTER = "Share this story with your friends and family on social media"


@pytest.fixture(scope="module")
def corpus(shared_data, tmp_path_factory) -> Path:
    """A JSONL corpus that exercises stage 2 whole: English and Chinese pages (lid.176 tags them), pages
    the heuristics drop, exact copies for MinHash, a footer for line dedup, and a line that is no JSON."""
    quality = shared_data / "quality"
    english = [json.loads(line)["text"] for line in (quality / "dclm" / "agreement_data.jsonl").open()][:48]
    chinese = [json.loads(line)["raw_content"] for line in (quality / "chinesewebtext" / "cleared1.jsonl").open()][:8]
    texts = english + chinese
    texts = [text + "\n" + FOOTER if i % 6 == 0 else text for i, text in enumerate(texts)] + texts[1:5]
    lines = [json.dumps({"text": text, "url": f"https://site{i % 7}.example.org/page-{i}"}, ensure_ascii=False) + "\n"
             for i, text in enumerate(texts)]
    lines.insert(20, '{"text": "cut off\n')
    path = tmp_path_factory.mktemp("corpus") / "pages.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def local_rules(spark, corpus, tmp_path_factory) -> Path:
    """The same rules job in local mode: what both cluster runs must equal."""
    from thresher.jobs import cli

    local = tmp_path_factory.mktemp("local") / "rules"
    assert cli.main(["rules", str(corpus), "--output", str(local), *SETTINGS]) == 0
    return local


def rows(path: Path, sort_keys: tuple[str, ...]) -> list[dict]:
    table = ds.dataset(str(path), format="parquet").to_table()
    return sorted(table.to_pylist(), key=lambda row: tuple(str(row[k]) for k in sort_keys))


def without_timings(stats: dict) -> dict:
    """stats.json less what measures time: when it ran, seconds per phase and per rule."""
    kept = {k: v for k, v in stats.items() if k not in ("started", "finished", "seconds")}
    kept["details"] = {k: v for k, v in stats["details"].items() if k != "timings"}
    kept["rules"] = {rule: {k: v for k, v in figures.items() if k != "seconds"} for rule, figures in stats["rules"].items()}
    return kept


def output(directory: Path) -> dict:
    return {
        "documents": rows(directory / "documents", ("doc_id",)),
        "rejects": rows(directory / "rejects", ("doc_id", "rule", "content", "detail")),
        "stats": without_timings(json.loads((directory / "stats.json").read_text())),
    }


def master_status(cluster) -> dict:
    with urllib.request.urlopen(f"{cluster.web_ui}/json", timeout=10) as response:
        return json.load(response)


def test_rules_submitted_to_two_workers_with_the_built_artifacts_equals_local_mode(
    dist, corpus, local_rules, standalone_cluster, tmp_path
):
    from thresher.jobs import cli

    cluster = standalone_cluster
    out = tmp_path / "cluster"
    jobs_dir = Path(cli.__file__).resolve().parent
    # The driver runs this interpreter (it has pyspark); thresher comes from the zip, first on its path.
    # Executors run the archive's Python. The master is spark-submit's alone: it wins over the config's.
    env = {k: v for k, v in cluster.env.items() if k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    events = tmp_path / "events"
    events.mkdir()
    command = [
        str(cluster.spark_home / "bin" / "spark-submit"), "--master", cluster.url,
        "--py-files", str(dist / "thresher.zip"), "--archives", f"{dist / 'thresher-venv.tar.gz'}#venv",
        "--conf", "spark.pyspark.python=./venv/bin/python", "--conf", f"spark.pyspark.driver.python={sys.executable}",
        "--conf", "spark.ui.enabled=false", "--conf", "spark.eventLog.enabled=true", "--conf", "spark.eventLog.compress=false",
        "--conf", "spark.eventLog.rolling.enabled=false", "--conf", f"spark.eventLog.dir={events}",  # where each task ran
        str(jobs_dir / "rules.py"), str(corpus), "--output", str(out), *SETTINGS,
    ]
    submitted = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert submitted.returncode == 0, submitted.stderr[-5000:]
    assert (out / COMMITTED_MARKER).is_file()
    assert f"[thresher] rules: Spark master {cluster.url}, application app-" in submitted.stdout

    [app] = [a for a in master_status(cluster)["completedapps"] if a["name"] == "thresher-rules"]
    assert app["state"] == "FINISHED"
    log = [json.loads(line) for line in (events / app["id"]).read_text().splitlines()]
    ran_tasks = {event["Task Info"]["Executor ID"] for event in log
                 if event["Event"] == "SparkListenerTaskEnd" and event["Task End Reason"]["Reason"] == "Success"}
    for work_dir in cluster.work_dirs:  # each worker ran an executor of the application, and tasks in it
        [executor] = [path for path in (work_dir / app["id"]).iterdir() if path.is_dir()]
        assert (executor / "venv" / "bin" / "python").exists()  # the archive, unpacked for the executor
        assert executor.name in ran_tasks

    assert output(out) == output(local_rules)


def test_rules_on_the_cluster_commits_to_s3_without_a_jvm_connector_and_equals_local_mode(
    dist, corpus, local_rules, standalone_cluster, s3_server, s3_url
):
    """Every table and intermediate goes through the Python workers (s3fs): the JVM has no S3 connector."""
    from thresher.jobs import cli
    from thresher.pipeline.stagedir import read_commit

    cluster = standalone_cluster
    env = {k: v for k, v in cluster.env.items() if k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    env.update(s3_server.environment)  # the driver's credentials and endpoint; the executors get theirs below
    executor_env = [arg for name, value in s3_server.environment.items()
                    for arg in ("--conf", f"spark.executorEnv.{name}={value}")]
    command = [
        str(cluster.spark_home / "bin" / "spark-submit"), "--master", cluster.url,
        "--py-files", str(dist / "thresher.zip"), "--archives", f"{dist / 'thresher-venv.tar.gz'}#venv",
        "--conf", "spark.pyspark.python=./venv/bin/python", "--conf", f"spark.pyspark.driver.python={sys.executable}",
        "--conf", "spark.ui.enabled=false", *executor_env,
        str(Path(cli.__file__).resolve().parent / "rules.py"), str(corpus), "--output", f"{s3_url}/rules", *SETTINGS,
    ]
    submitted = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert submitted.returncode == 0, submitted.stderr[-5000:]
    on_s3, on_disk = read_commit(f"{s3_url}/rules"), read_commit(local_rules)
    for table, keys in (("documents", ("doc_id",)), ("rejects", ("doc_id", "rule", "content", "detail"))):
        found = []
        for commit in (on_s3, on_disk):
            tables = [pq.read_table(commit.fs.open(commit.path(part.name), "rb")) for part in commit.parts(table)]
            found.append(sorted(pa.concat_tables(tables).to_pylist(), key=lambda row: tuple(str(row[k]) for k in keys)))
        assert found[0] == found[1], table
    assert without_timings(on_s3.stats) == without_timings(on_disk.stats)
