"""The whole pipeline on the bundled sample crawl: commits, reruns, crashes at every kill point."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from stage_rows import SAMPLE_RUN_OVERRIDES

import thresher.jobs.run as run_module
from thresher.jobs.run import STAGES, run_pipeline
from thresher.pipeline.config import ConfigError, load_config
from thresher.pipeline.prepare.sample_crawl import write_sample_crawl
from thresher.pipeline.stagedir import COMMITTED_MARKER, CRASH_ENV, CRASH_MODE_ENV, SimulatedCrash, read_commit, storage
from thresher.schemas.stats import read_stats

OVERRIDES = SAMPLE_RUN_OVERRIDES

# In pipeline order; each attempt crashes at the next one, then one clean rerun finishes the run.
KILL_POINTS = [
    "prepare:files_partly_done",  # stage 1: two input files finished, the others not started
    "commit:stats_written",  # inside stage 1's commit: parts and stats.json written, marker not yet
    "run:after_prepare",
    "run:after_rules",
    "run:after_classifiers",
    "tag:scored",
    "tag:before_commit",
    "run:after_tag",
    "select:filtered",
    "select:copied",
    "select:before_commit",
    "select:before_marker",  # inside select's commit: parts and stats.json written, marker not yet
    "run:after_select",
    "run:after_tokenizer",
    "export:shards_written",  # every shard written at its name, the manifest and marker not yet
    "export:before_marker",
    "run:after_export",  # every stage committed, the report not yet written
]


@pytest.fixture(scope="module")
def config():
    return load_config(None, OVERRIDES)


@pytest.fixture(scope="module")
def sample_inputs(sample_run):
    return sample_run[0]


@pytest.fixture(scope="module")
def reference_run(sample_run):
    return sample_run[1]


def rows(commit, table: str, sort_keys: tuple[str, ...], inputs_at: str = "") -> list[dict]:
    """`table` of a committed stage as its marker lists it; `warc_path` relative to the inputs' folder."""
    parts = [pq.read_table(commit.fs.open(commit.path(part.name), "rb")) for part in commit.parts(table)]
    found = pa.concat_tables(parts).to_pylist() if parts else []
    for row in found:
        if inputs_at and row.get("warc_path"):
            row["warc_path"] = row["warc_path"].removeprefix(inputs_at)
    return sorted(found, key=lambda row: tuple(str(row.get(k)) for k in sort_keys))


def snapshot(run_dir, inputs_at: str = "") -> dict:
    """Everything a user consumes from a run (a local path or a URL), in a comparable form."""
    result = {}
    for stage in ("prepare", "rules", "tag", "select"):
        commit = read_commit(f"{run_dir}/{stage}")
        result[f"{stage}/documents"] = rows(commit, "documents", ("doc_id",), inputs_at)
        if stage != "tag":  # tag drops nothing
            result[f"{stage}/rejects"] = rows(commit, "rejects", ("doc_id", "rule", "content", "detail"), inputs_at)
    export = read_commit(f"{run_dir}/export")
    manifest = json.loads(export.fs.cat_file(export.path("manifest.json")))
    result["export/splits"] = manifest["splits"]
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            result[f"export/{shard['path']}"] = pq.read_table(export.fs.open(export.path(shard["path"]), "rb")).to_pylist()
    return result


def test_run_commits_every_stage_and_reports(reference_run):
    for stage in STAGES:
        assert (reference_run / stage / COMMITTED_MARKER).is_file(), stage
    prepare = json.loads((reference_run / "prepare" / "stats.json").read_text())
    assert prepare["documents_in"] == prepare["documents_out"] + sum(prepare["rejects_by_rule"].values())
    rules = json.loads((reference_run / "rules" / "stats.json").read_text())
    assert rules["documents_in"] == prepare["documents_out"]
    report = json.loads((reference_run / "report.json").read_text())
    funnel = {row["stage"]: row["documents_out"] for row in report["funnel"]}
    assert list(funnel) == ["prepare", "rules", "tag", "select", "export"]  # pipeline order
    assert report["funnel"][0]["documents_in"] == prepare["documents_in"]
    assert funnel["select"] == len(snapshot(reference_run)["select/documents"])
    assert funnel["tag"] == funnel["rules"]
    assert funnel["select"] <= funnel["rules"] <= funnel["prepare"] < prepare["documents_in"]
    select = json.loads((reference_run / "select" / "stats.json").read_text())
    assert select["documents_out"] == funnel["select"] and select["documents_in"] == funnel["tag"]
    # The bootstrapped page-type and topic models (a few dozen held-out pages) neither drop nor rebalance;
    # the clutter model removes no line at the default threshold 0 (tags only). The report says which acted and why.
    gate = select["details"]["model_gate"]
    assert {name: decision["acts"] for name, decision in gate.items()} == {"page_type": False, "clutter": False, "topic": False}
    assert gate["clutter"]["steps"] == [] and gate["clutter"]["reason"].startswith("tags only: select.line_thresholds.clutter is 0")
    assert "page_type:label_in" not in select["rejects_by_rule"] and select["details"]["rebalance"]["skipped"]
    assert report["model_gate"] == gate and "Model steps: acted or not" in (reference_run / "report.html").read_text()
    tag = json.loads((reference_run / "tag" / "stats.json").read_text())
    assert all("interval" in t["heldout"] for t in tag["details"]["taggers"] if t["kind"] != "pii")  # pii: rules, no model
    assert [t["name"] for t in tag["details"]["taggers"] if t["kind"] == "pii"] == ["pii"] and select["details"]["pii"]["tagger"] == "pii"
    assert list(report["seconds_per_stage"]) == list(STAGES)
    assert (reference_run / "report.html").read_text(encoding="utf-8").count("<svg") >= 3
    # The effective config beside the report, as `thresher config show` prints it; the report links it.
    assert (reference_run / "config.yaml").read_text().startswith(f"# effective thresher config, digest {prepare['config_digest']}\n")
    assert report["header"]["config_file"] == "config.yaml" and report["header"]["config_digest"] == prepare["config_digest"]


def test_every_stage_of_a_run_writes_stats_the_schema_reads(reference_run):
    for stage in STAGES:
        stats = read_stats(reference_run / stage)  # StatsError if a stage wrote anything but the envelope
        assert stats["stage"] == stage and stats["seconds"]["total"] >= 0, stage
    prepare = read_stats(reference_run / "prepare")
    assert {read_stats(reference_run / stage)["config_digest"] for stage in STAGES} == {prepare["config_digest"]}


def test_every_stage_s_documents_and_the_shards_read_as_they_are_in_pandas_duckdb_datasets_and_pyarrow(
    reference_run, tmp_path, monkeypatch
):
    import datasets
    import duckdb
    import pandas as pd

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # read when datasets was first imported
    manifest = json.loads((reference_run / "export" / "manifest.json").read_text())
    tables = {reference_run / stage / "documents": read_stats(reference_run / stage)["documents_out"]
              for stage in ("prepare", "rules", "tag", "select")}
    tables |= {reference_run / "export" / split: figures["sequences"] for split, figures in manifest["splits"].items()}
    tables[reference_run / "export" / manifest["document_index"]["path"]] = manifest["document_index"]["rows"]
    for directory, rows in tables.items():
        columns = ds.dataset(directory).schema.names
        assert ds.dataset(directory).count_rows() == rows > 0, directory
        frame = pd.read_parquet(directory)
        assert (len(frame), list(frame.columns)) == (rows, columns), directory
        assert duckdb.sql(f"select count(*) from read_parquet('{directory}/*.parquet')").fetchall() == [(rows,)], directory
        assert duckdb.sql(f"select count(*) from '{directory}/**/*.parquet'").fetchall() == [(rows,)], directory
        loaded = datasets.load_dataset("parquet", data_dir=str(directory), split="train", cache_dir=str(tmp_path / "hf"))
        assert (len(loaded), loaded.column_names) == (rows, columns), directory


def test_rerunning_a_finished_run_does_nothing(spark, reference_run, sample_inputs, config):
    markers = {stage: (reference_run / stage / COMMITTED_MARKER).stat().st_mtime_ns for stage in STAGES}
    before = snapshot(reference_run)
    assert run_pipeline(spark, sample_inputs, str(reference_run), config)["stages_run"] == []
    assert {stage: (reference_run / stage / COMMITTED_MARKER).stat().st_mtime_ns for stage in STAGES} == markers
    assert snapshot(reference_run) == before


def test_a_run_directory_refuses_other_inputs_naming_them(spark, reference_run, sample_inputs, config):
    with pytest.raises(ConfigError, match="holds a run with other inputs"):
        run_pipeline(spark, sample_inputs[:1], str(reference_run), config)


def fake_run(directory: Path, settings: dict) -> None:
    """A run directory whose every stage is committed, recorded with `settings`."""
    for stage in STAGES:
        (directory / stage).mkdir(parents=True)
        (directory / stage / COMMITTED_MARKER).write_text("{}\n")
    (directory / "run.json").write_text(json.dumps(
        {"format": run_module.RUN_FORMAT, "inputs": ["a.warc.gz"], "settings": settings,
         "seconds_per_stage": {stage: 1.0 for stage in STAGES}}))


@pytest.mark.parametrize(
    ("changed", "from_stage", "rerun"),
    [
        ({}, None, []),
        ({"spark.driver_memory": "8g"}, None, []),  # no stage reads it: the output cannot change
        ({"tag.batch_size": 64}, None, []),  # speed only: the scores are the same
        ({"select.line_thresholds.clutter": 0.7}, None, ["select", "export"]),  # the tokenizer reads rules/
        ({"export.seq_len": 128}, None, ["export"]),
        ({"export.vocab_size": 1024}, None, ["tokenizer", "export"]),
        ({"tag.taggers.quality.model_dir": "/q"}, None, ["tag", "select", "export"]),
        ({"tag.topics_file": "other.yaml"}, None, ["classifiers", "tag", "select", "export"]),
        # every stage reading a changed one; the classifiers read prepare/ only
        ({"rules.minhash_seed": 2, "export.seq_len": 128}, None, ["rules", "tag", "select", "tokenizer", "export"]),
        ({}, "tag", ["tag", "select", "export"]),
    ],
)
def test_a_rerun_reruns_the_stages_whose_settings_changed_and_those_reading_them(
    tmp_path, capsys, changed, from_stage, rerun
):
    settings = {"spark.driver_memory": "2g", "rules.minhash_seed": 1, "select.line_thresholds.clutter": 0.5,
                "export.seq_len": 64, "export.vocab_size": 512, "tag.taggers.quality.model_dir": "",
                "tag.topics_file": "topics.yaml", "tag.batch_size": 256}
    fake_run(tmp_path, settings)
    info = run_module._start_run_info(run_module.RunDirectory(str(tmp_path)), ["a.warc.gz"], {**settings, **changed}, from_stage)
    assert [stage for stage in STAGES if not (tmp_path / stage / COMMITTED_MARKER).exists()] == rerun
    assert info["settings"] == {**settings, **changed}
    assert set(info["seconds_per_stage"]) == set(STAGES) - set(rerun)
    err = capsys.readouterr().err
    assert all(key in err for key in changed)
    assert ("rerunning from" in err) == bool(rerun) and (not rerun or f"rerunning from {rerun[0]}" in err)
    for stage in STAGES:  # each stage says why it reruns, or that it is reused
        assert (f"{stage}: reruns (" in err) == (stage in rerun) and (f"{stage}: reused" in err) == (stage not in rerun)
    named = {key for keys in re.findall(r"reruns \(changed: ([^)]*)\)", err) for key in keys.split(", ")}
    assert named == set(changed) - {"tag.batch_size", "spark.driver_memory"}  # the keys that change a result


def test_a_speed_only_change_says_so_and_a_retrained_tokenizer_reruns_export_too(tmp_path, capsys):
    settings = {"tag.batch_size": 256, "export.vocab_size": 512}
    fake_run(tmp_path, settings)
    run_module._start_run_info(run_module.RunDirectory(str(tmp_path)), ["a.warc.gz"], {**settings, "tag.batch_size": 64},
                               None, frozenset({"tokenizer"}))
    assert [stage for stage in STAGES if not (tmp_path / stage / COMMITTED_MARKER).exists()] == ["tokenizer", "export"]
    err = capsys.readouterr().err
    assert "speed-only settings (no stage reruns for them): tag.batch_size" in err
    assert "tokenizer: reruns (asked for)" in err and "export: reruns (it reads tokenizer, which reruns)" in err
    assert "tag: reused" in err


@pytest.mark.parametrize(
    ("changed", "forced", "retag"),
    [
        (["tag.taggers.quality.model_dir"], set(), {"quality"}),
        (["tag.taggers.quality.model_dir", "tag.taggers.topic.enabled", "select.keep.quality.top_percent"], set(),
         {"quality", "topic"}),
        (["run.model_hash.topic", "tag.batch_size"], set(), {"topic"}),  # the batch size changes no column
        (["tag.taggers.quality.model_dir", "tag.topics_file"], set(), None),  # the topic file: classifiers rerun
        (["tag.taggers.quality.model_dir", "rules.minhash_seed"], set(), None),  # new stage 2 documents
        (["tag.custom_taggers"], set(), None),
        (["tag.taggers.quality.model_dir"], {"tag"}, None),  # --from-stage tag: every tagger
        (["select.keep.quality.top_percent"], set(), None),  # tag does not rerun at all
    ],
)
def test_only_changes_to_some_taggers_settings_retag_with_those_taggers_alone(changed, forced, retag):
    reasons = run_module.rerun_reasons(changed, forced)
    assert run_module.retagged_taggers(changed, reasons, forced) == retag


def test_a_run_rerun_with_one_tagger_off_tags_with_no_model_and_drops_its_columns(spark, reference_run, sample_inputs,
                                                                                  tmp_path, capsys):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(reference_run, out)
    info = json.loads((out / "run.json").read_text())
    for key, stage in (("run.models_dir", "classifiers"), ("run.tokenizer", "tokenizer")):  # the copy's own
        info["settings"][key] = str(out / stage)
    (out / "run.json").write_text(json.dumps(info))
    tokenizer = file_states(out / "tokenizer")
    capsys.readouterr()
    pii_off = {**OVERRIDES, "tag.taggers.pii.enabled": False, "select.pii.tagger": ""}
    rerun = run_pipeline(spark, sample_inputs, str(out), load_config(None, pii_off))
    assert rerun["stages_run"] == ["tag", "select", "export"]
    err = capsys.readouterr().err
    assert "tag: reruns (changed: tag.taggers.pii.enabled)" in err and "tag: tagging with no tagger;" in err
    assert "tagger page_type" not in err  # no model described, none loaded
    before = pq.read_table(reference_run / "tag" / "documents")
    after = pq.read_table(out / "tag" / "documents")
    assert after.to_pylist() == before.drop_columns([name for name in before.schema.names if name.startswith("pii_")]).to_pylist()
    assert file_states(out / "tokenizer") == tokenizer


def test_every_speed_only_setting_is_a_config_key():
    flat = run_module._flatten(dataclasses.asdict(load_config(None)))
    assert set(run_module.SPEED_SETTINGS) <= set(flat)
    assert all(run_module.stages_reading(key) == [] for key in run_module.SPEED_SETTINGS)


def test_a_sweep_point_rerunning_a_shared_stage_leaves_the_shared_output_alone(tmp_path, capsys):
    """A stage directory linked to another run's (as `thresher sweep` shares them) reruns into its own."""
    settings = {"rules.minhash_seed": 1}
    fake_run(tmp_path / "first", settings)
    point = tmp_path / "point"
    point.mkdir()
    for stage in STAGES:
        (point / stage).symlink_to(tmp_path / "first" / stage)
    (point / "run.json").write_text((tmp_path / "first" / "run.json").read_text())
    run_module._start_run_info(run_module.RunDirectory(str(point)), ["a.warc.gz"], {"rules.minhash_seed": 2}, None)
    assert all((tmp_path / "first" / stage / COMMITTED_MARKER).is_file() for stage in STAGES)
    assert [stage for stage in STAGES if (point / stage).is_symlink()] == ["prepare", "classifiers"]


def test_transformers_settings_that_change_scores_rerun_tag_and_the_token_budget_does_not():
    for key in ("transformers.max_length", "transformers.truncation", "transformers.device"):
        assert run_module.stages_reading(key) == ["tag"], key
    assert run_module.stages_reading("transformers.token_budget") == []  # scores do not depend on batching


def test_a_run_json_of_an_older_format_is_refused(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"inputs": ["a.warc.gz"], "config_digest": "x", "seconds_per_stage": {}}))
    with pytest.raises(ConfigError, match="older thresher"):
        run_module._start_run_info(run_module.RunDirectory(str(tmp_path)), ["a.warc.gz"], {}, None)


def test_crash_at_every_kill_point_then_rerun_equals_an_uninterrupted_run(
    spark, reference_run, sample_inputs, config, tmp_path, monkeypatch
):
    monkeypatch.setenv(CRASH_MODE_ENV, "raise")
    for point in KILL_POINTS:
        monkeypatch.setenv(CRASH_ENV, point)
        with pytest.raises(SimulatedCrash, match=point):
            run_pipeline(spark, sample_inputs, str(tmp_path), config)
    monkeypatch.delenv(CRASH_ENV)
    run_pipeline(spark, sample_inputs, str(tmp_path), config)
    assert snapshot(tmp_path) == snapshot(reference_run)


def test_run_on_a_jsonl_corpus_starts_at_rules_and_writes_the_same_report(spark, reference_run, tmp_path, capsys):
    from report_page import check_renders_in_chromium

    from thresher.jobs.cli import main

    documents = pq.read_table(reference_run / "prepare" / "documents", columns=["doc_id", "url", "text"]).to_pylist()
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in documents), encoding="utf-8")
    out = tmp_path / "run"
    sets = [item for key, value in OVERRIDES.items() if not key.startswith("prepare.") for item in ("--set", f"{key}={value}")]
    assert main(["run", str(corpus), "--output", str(out), *sets]) == 0
    assert "exported" in capsys.readouterr().err
    assert not (out / "prepare").exists()
    for stage in STAGES[1:]:
        assert (out / stage / COMMITTED_MARKER).is_file(), stage
    report = json.loads((out / "report.json").read_text())
    assert [row["stage"] for row in report["funnel"]] == ["rules", "tag", "select", "export"]
    assert report["funnel"][0]["documents_in"] == len(documents)
    # The same documents as stage 1 wrote them give what the run from the crawl gave after stage 1.
    ours, theirs = snapshot_after_prepare(out), snapshot_after_prepare(reference_run)
    assert ours == theirs
    check_renders_in_chromium(out / "report.html", tmp_path / "report.png", tmp_path / "profile")


def snapshot_after_prepare(run_dir: Path) -> dict:
    """The kept doc_ids of rules and select, and the exported splits' figures."""
    kept = {stage: sorted(pq.read_table(run_dir / stage / "documents", columns=["doc_id"]).column("doc_id").to_pylist())
            for stage in ("rules", "select")}
    return {**kept, "export": json.loads((run_dir / "export" / "manifest.json").read_text())["splits"]}


# ---------------------------------------------------------------- object storage

# One kill point in each stage, the driver's state at each as a SIGKILL there leaves it.
S3_KILL_POINTS = ["prepare:files_partly_done", "rules:before_marker", "classifiers:before_marker", "tag:scored",
                  "select:copied", "tokenizer:before_marker", "export:before_marker", "run:after_export"]


def upload_inputs(paths: list[str], url: str) -> list[str]:
    fs, root = storage(url)
    for path in paths:
        fs.put_file(path, f"{root}/{Path(path).name}")
    return [f"{url}/{Path(path).name}" for path in paths]


def test_a_run_on_s3_equals_the_run_on_local_disk_and_recovers_from_a_kill_in_every_stage(
    spark_s3, reference_run, sample_inputs, config, s3_url, monkeypatch, copies_and_renames
):
    inputs = upload_inputs(sample_inputs, f"{s3_url}/crawl")
    out = f"{s3_url}/out"
    monkeypatch.setenv(CRASH_MODE_ENV, "raise")
    for point in S3_KILL_POINTS:
        monkeypatch.setenv(CRASH_ENV, point)
        with pytest.raises(SimulatedCrash, match=point):
            run_pipeline(spark_s3, inputs, out, config)
        for stage in STAGES:  # what a reader finds now: a whole committed stage, or none
            fs, root = storage(f"{out}/{stage}")
            if fs.isfile(f"{root}/{COMMITTED_MARKER}"):
                commit = read_commit(f"{out}/{stage}")
                for table in (commit.marker.get("tables") or {}):
                    commit.parts(table)  # every listed part present, of its listed size
    monkeypatch.delenv(CRASH_ENV)
    run_pipeline(spark_s3, inputs, out, config)
    assert snapshot(out, f"{s3_url}/crawl/") == snapshot(reference_run, str(Path(sample_inputs[0]).parent) + "/")
    for stage in STAGES:
        on_s3, on_disk = read_commit(f"{out}/{stage}").stats, read_stats(reference_run / stage)
        for stats in (on_s3, on_disk):
            for volatile in ("started", "finished", "seconds", "inputs", "phases"):
                stats.pop(volatile, None)
            # What measures the machine or the attempt, not the data: time, memory, files resumed after the kill.
            for volatile in [key for key in stats.get("details", {}) if key.endswith("_rss_mb")]:
                del stats["details"][volatile]
            for volatile in ("timings", "files_resumed"):
                stats.get("details", {}).pop(volatile, None)
            for figures in (stats.get("rules") or {}).values():
                figures.pop("seconds", None)
        # Paths named in the stats (the run's models, inputs), relative to the run and the inputs' folder.
        where = ((out, "RUN"), (f"{s3_url}/crawl", "INPUTS"), (str(reference_run), "RUN"),
                 (str(Path(sample_inputs[0]).parent), "INPUTS"))
        on_s3, on_disk = (json.loads(functools.reduce(lambda text, pair: text.replace(*pair), where, json.dumps(stats)))
                          for stats in (on_s3, on_disk))
        assert on_s3 == on_disk, stage
    fs, root = storage(out)
    assert fs.isfile(f"{root}/report.html") and not fs.exists(f"{root}/_LOCK")
    assert copies_and_renames == []  # nothing renamed or copied on the store, crashes and reruns included


# ---------------------------------------------------------------- a real standalone cluster


def test_cluster_mode_survives_a_killed_worker_and_driver_and_matches_local_mode(
    reference_run, sample_inputs, standalone_cluster, tmp_path
):
    url, workers, env, spark_home = (standalone_cluster.url, standalone_cluster.workers, standalone_cluster.env,
                                     standalone_cluster.spark_home)
    out = tmp_path / "cluster-run"
    command = [str(spark_home / "bin" / "spark-submit"), "--master", url, "--conf", "spark.executor.memory=1g",
               "--conf", "spark.ui.enabled=false", str(Path(run_module.__file__)), *sample_inputs, "--output", str(out),
               "--set", "spark.shared_local_paths=[/]"]  # the workers run on this machine: they share its disk
    for key, value in OVERRIDES.items():
        command += ["--set", f"{key}={value}"]

    # Attempt 1: a worker is killed while stage 1 runs, and the driver is killed after stage 2.
    def kill_a_worker_once_stage_1_starts():
        deadline = time.time() + 300
        while time.time() < deadline and not (out / "prepare" / "_LOCK").exists():  # the run locks it as it starts it
            time.sleep(0.2)
        time.sleep(2.0)
        os.killpg(workers[0].pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_a_worker_once_stage_1_starts, daemon=True)
    killer.start()
    crashed = subprocess.run(command, env={**env, CRASH_ENV: "run:after_rules"}, capture_output=True, text=True, timeout=900)
    killer.join()
    assert workers[0].poll() is not None, "the worker was not killed"
    assert crashed.returncode != 0, crashed.stderr[-3000:]
    assert (out / "rules" / COMMITTED_MARKER).is_file() and not (out / "tag" / COMMITTED_MARKER).exists()

    # Attempt 2, on the one surviving worker: goes on from stage 3 and finishes.
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stderr[-3000:]
    # On the cluster, not under the config's local[*] (spark-submit joins the driver's stderr to its stdout).
    assert re.search(rf"^\[thresher\] run: Spark master {re.escape(url)}, application app-[\d-]+$", finished.stdout, re.M)
    assert "[thresher] prepare" not in finished.stderr  # committed stages were not rerun
    assert snapshot(out) == snapshot(reference_run)


# ---------------------------------------------------------------- two runs on one OUTPUT


@pytest.mark.timeout(300)
def test_a_second_run_on_the_same_output_refuses_and_touches_nothing(tmp_path):
    out = tmp_path / "run"
    repo = Path(run_module.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    # The first run, at work in stage 1: it holds the lock on OUTPUT and has written a part in prepare/.
    first = subprocess.Popen([sys.executable, "-c", (
        "import pathlib, sys\n"
        "from thresher.pipeline.stagedir.lock import DirectoryLock\n"
        f"out = pathlib.Path({str(out)!r})\n"
        "with DirectoryLock(out):\n"
        "    (out / 'prepare' / 'documents').mkdir(parents=True)\n"
        "    (out / 'prepare' / 'documents' / 'part-0.parquet').write_text('the first run')\n"
        "    print('running', flush=True)\n"
        "    sys.stdin.read()\n"
    )], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert first.stdout.readline() == "running\n"
        part = out / "prepare" / "documents" / "part-0.parquet"
        before = part.stat().st_mtime_ns
        # As `thresher run`, and as `spark-submit jobs/run.py` runs it.
        for command in (["-c", "from thresher.jobs.cli import main; raise SystemExit(main())", "run"], [run_module.__file__]):
            second = subprocess.run([sys.executable, *command, "--sample", "--output", str(out)],
                                    capture_output=True, text=True, env=env, timeout=240)
            assert second.returncode == 2
            lines = second.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"thresher run: error: {out} is in use by another thresher run (host "), lines
            assert f"pid {first.pid}, started " in lines[0]
        assert part.read_text() == "the first run" and part.stat().st_mtime_ns == before
        assert sorted(p.name for p in out.iterdir()) == ["_LOCK", "prepare"]  # no sample crawl written, nothing else
    finally:
        first.stdin.close()
        first.wait(timeout=60)
    assert first.returncode == 0 and not (out / "_LOCK").exists()


def test_under_a_cluster_master_a_run_names_the_first_file_its_tasks_could_not_open(tmp_path):
    """The crawl and OUTPUT are on a declared shared mount, thresher's shipped lists are not: refused,
    naming the list, before Spark starts (spark://127.0.0.1:1 has no master behind it)."""
    crawl = write_sample_crawl(str(tmp_path / "crawl"))
    repo = Path(run_module.__file__).resolve().parents[1]
    command = [sys.executable, "-c", "from thresher.jobs.cli import main; raise SystemExit(main())", "run", *crawl,
               "--output", str(tmp_path / "run"), "--master", "spark://127.0.0.1:1", "--set", f"spark.shared_local_paths=[{tmp_path}]"]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        f"thresher run: error: prepare.domain_blocklists.gambling {repo}/configs/blocklists/gambling/domains is on this "
        "machine's disk, which the executors under spark://127.0.0.1:1 do not see: put it on s3://, hdfs:// or other "
        "storage every node reads, or on a mount listed in spark.shared_local_paths"]
    assert not (tmp_path / "run").exists()


def test_a_value_out_of_range_fails_before_any_output(tmp_path, capsys):
    from thresher.jobs import cli

    out = tmp_path / "run"
    code = cli.main(["run", "--sample", "--output", str(out), "--set", "select.model_gate.floors.topic.floor=7"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == ["thresher run: error: select.model_gate.floors.topic.floor: 7.0 is out of range, must be in [0, 1]"]
    assert not out.exists()  # no run.json, no sample crawl written


def test_a_bad_export_format_fails_before_any_output(tmp_path, capsys):
    from thresher.jobs import cli

    out = tmp_path / "run"
    code = cli.main(["run", "--sample", "--output", str(out), "--set", "export.format=arrow"])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "thresher run: error: export.format (--format): 'arrow' is not one of parquet, megatron, both"]
    assert not out.exists()


def test_ctrl_c_prints_one_line_and_exits_130_and_spark_stays_quiet(tmp_path):
    """A real `thresher run` in its own process group, sent SIGINT as a terminal's Ctrl-C would be."""
    command = [sys.executable, "-c", "from thresher.jobs.cli import main; raise SystemExit(main())",
               "run", "--sample", "--output", str(tmp_path / "run"), "--master", "local[2]"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True,
                               env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: process.stderr.read(1), b"")))
    reader.start()
    deadline = time.time() + 300
    # Interrupt once stage 1 has started and Spark is running its tasks.
    while b"[Stage " not in b"".join(chunks).partition(b"prepare: starting")[2] and time.time() < deadline:
        assert process.poll() is None, b"".join(chunks).decode(errors="replace")
        time.sleep(0.2)
    time.sleep(2)
    os.killpg(process.pid, signal.SIGINT)
    code = process.wait(timeout=60)
    reader.join(timeout=60)
    err = b"".join(chunks).decode(errors="replace")
    lines = [line.strip() for line in err.replace("\r", "\n").splitlines()
             if line.strip() and not line.strip().startswith("[Stage ")]  # Spark's progress bar stays
    assert code == 130
    assert lines[-1] == "[thresher] interrupted; run the same command again to resume"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "Exception" not in err
    # Spark's start-up warnings (loopback address, native Hadoop, log4j profile) are quiet by default;
    # the JVM's own notice about the vector module is not a log and cannot be turned off.
    lines = [line for line in lines if not line.startswith("WARNING: Using incubator modules")]
    assert re.fullmatch(r"\[thresher\] run: Spark master local\[2\], application local-\d+", lines[0])
    assert lines[1:] == ["[thresher] prepare: starting", "[thresher] interrupted; run the same command again to resume"]


# ---------------------------------------------------------------- the real crawl, rerun by stage

QUALITY_CUT = {"select.line_thresholds.clutter": 0.8, "select.keep.quality.score_label": "1", "select.keep.quality.top_percent": 50}


def file_states(directory: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(directory)): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def crawl_runs(spark, shared_data, quality_model, tmp_path_factory):
    """The real crawl through `thresher run` with a quality tagger, then the same run directory rerun
    with only select.* changed. Model loads are logged by every Python worker (base.LOAD_LOG_ENV,
    passed to the workers through the SparkContext's executor environment)."""
    import contextlib
    import io

    from thresher.classifiers.base import LOAD_LOG_ENV

    inputs = sorted(str(p) for p in (shared_data / "crawl").glob("*.warc.gz"))
    out = tmp_path_factory.mktemp("crawl-run")
    logs = tmp_path_factory.mktemp("load-logs")
    base = {**OVERRIDES, "prepare.files_per_batch": 0, "tag.taggers.quality.model_dir": str(quality_model)}
    environment = spark.sparkContext.environment
    try:
        environment[LOAD_LOG_ENV] = str(logs / "first.log")
        first = run_pipeline(spark, inputs, str(out), load_config(None, base))
        tag_files = file_states(out / "tag")
        first_select = rows(read_commit(out / "select"), "documents", ("doc_id",))
        environment[LOAD_LOG_ENV] = str(logs / "second.log")
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            second = run_pipeline(spark, inputs, str(out), load_config(None, {**base, **QUALITY_CUT}))
    finally:
        environment.pop(LOAD_LOG_ENV, None)
    return {"out": out, "inputs": inputs, "base": base, "first": first, "second": second, "logs": logs,
            "tag_files": tag_files, "first_select": first_select, "second_err": err.getvalue()}


def test_the_crawl_is_tagged_by_every_tagger(crawl_runs):
    out = crawl_runs["out"]
    tagged = ds.dataset(str(out / "tag" / "documents")).to_table()
    for name in ("page_type", "topic", "quality"):
        assert {f"{name}_label", f"{name}_score", f"{name}_top"} <= set(tagged.schema.names)
        assert tagged.column(f"{name}_label").null_count == 0
    assert "clutter_line_scores" in tagged.schema.names
    found = [span["kind"] for spans in tagged.column("pii_spans").to_pylist() for span in spans]
    pii = json.loads((out / "select" / "stats.json").read_text())["details"]["pii"]
    assert found and {kind: counts["spans"] for kind, counts in pii["kinds"].items() if counts["spans"]} == Counter(found)
    assert tagged.num_rows == json.loads((out / "rules" / "stats.json").read_text())["documents_out"] > 50
    loaded = {Path(line.split(" ", 1)[1]).name for line in (crawl_runs["logs"] / "first.log").read_text().splitlines()}
    assert loaded == {"page_type", "clutter", "topic", "model"}  # model: the quality tagger's directory


def test_changing_select_reruns_select_and_after_without_loading_a_model(crawl_runs):
    out = crawl_runs["out"]
    assert crawl_runs["first"]["stages_run"] == list(STAGES)
    assert crawl_runs["second"]["stages_run"] == ["select", "export"]  # the tokenizer reads rules/
    assert not (crawl_runs["logs"] / "second.log").exists()  # no worker loaded any model
    assert file_states(out / "tag") == crawl_runs["tag_files"]  # not one tag file rewritten
    err = crawl_runs["second_err"]
    assert all(key in err for key in QUALITY_CUT) and "rerunning from select: select, export" in err
    assert "tag: reused" in err and "tokenizer: reused" in err
    assert "tag.taggers" not in err.split("settings changed since the last run:")[1].split("\n")[0]


def test_the_rerun_texts_follow_the_new_thresholds(crawl_runs):
    out = crawl_runs["out"]
    tagged = {r["doc_id"]: r for r in rows(read_commit(out / "tag"), "documents", ("doc_id",))}
    first = {r["doc_id"]: r for r in crawl_runs["first_select"]}
    second = rows(read_commit(out / "select"), "documents", ("doc_id",))
    stats = json.loads((out / "select" / "stats.json").read_text())
    assert stats["rejects_by_rule"]["quality:top_percent"] > 0
    assert {step["rule"] for step in stats["details"]["rules"]} >= {"quality:top_percent", "line_removal"}
    from thresher.pipeline.pii import PLACEHOLDERS, redact
    from thresher.pipeline.select.batches import LineGuards, remove_lines

    shorter = 0
    for doc in second:  # the lines under the new threshold are gone, but for those the default guards keep
        source = tagged[doc["doc_id"]]
        text = redact(source["text"], [tuple(span.values()) for span in source["pii_spans"]], PLACEHOLDERS)  # PII first
        assert doc["text"] == remove_lines(text, source["clutter_line_scores"], 0.8, LineGuards()).text
        if doc["doc_id"] in first and len(doc["text"]) < len(first[doc["doc_id"]]["text"]):
            shorter += 1
    assert shorter > 0  # the higher clutter threshold took more lines out of documents both runs kept
    assert len(second) < len(first)  # and the quality cut dropped documents


def test_rerunning_the_finished_run_says_already_complete(crawl_runs, capsys):
    from thresher.jobs.cli import main

    argv = ["run", *crawl_runs["inputs"], "--output", str(crawl_runs["out"])]
    for key, value in {**crawl_runs["base"], **QUALITY_CUT}.items():
        argv += ["--set", f"{key}={json.dumps(value)}"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "already complete" in err and "run finished" not in err


def test_a_16_page_crawl_finishes_the_default_pipeline(spark, shared_data, tmp_path, capsys):
    """One real Common Crawl WARC of 16 pages: too few for a page-type model to know `article`."""
    out = tmp_path / "run"
    run_pipeline(spark, [str(shared_data / "warc" / "cc-main-2020-34-sample.warc.gz")], str(out), load_config(None, OVERRIDES))
    for stage in STAGES:
        assert (out / stage / COMMITTED_MARKER).is_file(), stage
    labels = json.loads((out / "classifiers" / "page_type" / "classifier.json").read_text())["labels"]
    err = capsys.readouterr().err
    if "article" not in labels:
        assert "the page_type model has no label ['article']" in err and "documents kept" in err
    select = json.loads((out / "select" / "stats.json").read_text())
    assert select["documents_out"] > 0 and (out / "export" / "manifest.json").is_file()


def test_the_crawl_s_cluster_table_is_empty_and_the_report_says_so_in_chromium(crawl_runs, tmp_path):
    """The shared crawl holds no near-duplicate pages (no cluster at 128 bands x 16 rows): the table is
    there, empty, and the report's section says so (planted clusters: tests/jobs/test_rules.py)."""
    from report_page import Page, chromium

    out = crawl_runs["out"]
    stats = json.loads((out / "rules" / "stats.json").read_text())
    assert read_commit(out / "rules").parts("clusters")  # an empty table is one part with its schema
    assert ds.dataset(str(out / "rules" / "clusters")).count_rows() == 0
    assert stats["details"]["minhash_cluster_sizes"] == {} and "minhash_duplicate" not in stats["rejects_by_rule"]
    sizes = ds.dataset(str(out / "rules" / "documents")).to_table(columns=["minhash_cluster_size"]).column(0).to_pylist()
    assert set(sizes) == {1}
    report = json.loads((out / "report.json").read_text())["duplicate_clusters"]
    assert report["clusters"] == 0 and report["largest"] == []
    dom = Page(chromium((out / "report.html").as_uri(), tmp_path / "profile", "--dump-dom"))  # the document Chromium built
    assert "Duplicate clusters" in dom.sections
    assert "No MinHash cluster of more than one document: rules/clusters is empty." in "".join(dom.text)


def test_a_reference_that_is_no_rules_stage_fails_before_spark(tmp_path, shared_data, capsys):
    from thresher.jobs import cli

    (tmp_path / "earlier").mkdir()
    code = cli.main(["run", str(shared_data / "crawl" / "pages-00000.warc.gz"), "--output", str(tmp_path / "run"),
                     "--set", f"rules.dedup.references=[{tmp_path / 'earlier'}]"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("thresher run: error: rules.dedup.references[0]: ") and "no committed stage output" in err[0]
    assert not (tmp_path / "run" / "prepare").exists()
