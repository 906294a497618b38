"""The whole pipeline on the bundled sample crawl: commits, reruns, crashes at every kill point."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from jobs.common import COMMITTED_MARKER, CRASH_ENV, CRASH_MODE_ENV, SimulatedCrash
from jobs.run import STAGES, run_pipeline
from pipeline.config import ConfigError, load_config
from pipeline.sample_crawl import write_sample_crawl

# Small enough to keep the test quick; the recipe's numbers (MinHash 2048 = 128 x 16, ...) stay.
OVERRIDES = {
    "export.seq_len": 64,
    "export.vocab_size": 512,
    "export.validation_fraction": 0.2,
    "export.pack_ranges": 2,
}

# In pipeline order; each attempt crashes at the next one, then one clean rerun finishes the run.
KILL_POINTS = [
    "commit:part_moved",  # inside stage 1's commit: documents moved, marker not yet written
    "run:after_prepare",
    "run:after_rules",
    "run:after_classifiers",
    "models:scored",
    "models:before_commit",
    "run:after_tokenizer",
]


@pytest.fixture(scope="module")
def config():
    return load_config(None, OVERRIDES)


@pytest.fixture(scope="module")
def sample_inputs(tmp_path_factory):
    return write_sample_crawl(str(tmp_path_factory.mktemp("sample-crawl")))


@pytest.fixture(scope="module")
def reference_run(spark, sample_inputs, config, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    run_pipeline(spark, sample_inputs, str(out), config)
    return out


def rows(path: Path, sort_keys: tuple[str, ...]) -> list[dict]:
    table = ds.dataset(str(path), format="parquet").to_table()
    return sorted(table.to_pylist(), key=lambda row: tuple(str(row.get(k)) for k in sort_keys))


def snapshot(run_dir: Path) -> dict:
    """Everything a user consumes from a run, in a comparable form."""
    result = {}
    for stage in ("prepare", "rules", "models"):
        result[f"{stage}/documents"] = rows(run_dir / stage / "documents", ("doc_id",))
        result[f"{stage}/rejects"] = rows(run_dir / stage / "rejects", ("doc_id", "rule", "content", "detail"))
    manifest = json.loads((run_dir / "export" / "manifest.json").read_text())
    result["export/splits"] = manifest["splits"]
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            result[f"export/{shard['path']}"] = ds.dataset(str(run_dir / "export" / shard["path"])).to_table().to_pylist()
    return result


def test_run_commits_every_stage_and_reports(reference_run):
    for stage in STAGES:
        assert (reference_run / stage / COMMITTED_MARKER).is_file(), stage
    prepare = json.loads((reference_run / "prepare" / "stats.json").read_text())
    assert prepare["records_in"] == prepare["documents_out"] + sum(prepare["rejects_by_rule"].values())
    rules = json.loads((reference_run / "rules" / "stats.json").read_text())
    assert rules["documents_in"] == prepare["documents_out"]
    report = json.loads((reference_run / "report.json").read_text())
    funnel = {row["step"]: row["documents"] for row in report["funnel"]}
    assert funnel["records read"] == prepare["records_in"]
    assert funnel["after models"] == len(snapshot(reference_run)["models/documents"])
    assert funnel["after models"] < funnel["after rules"] <= funnel["after prepare"] < funnel["records read"]
    assert set(report["seconds_per_stage"]) == set(STAGES)
    assert (reference_run / "report.html").read_text(encoding="utf-8").count("<svg") >= 3


def test_rerunning_a_finished_run_does_nothing(spark, reference_run, sample_inputs, config):
    markers = {stage: (reference_run / stage / COMMITTED_MARKER).stat().st_mtime_ns for stage in STAGES}
    before = snapshot(reference_run)
    run_pipeline(spark, sample_inputs, str(reference_run), config)
    assert {stage: (reference_run / stage / COMMITTED_MARKER).stat().st_mtime_ns for stage in STAGES} == markers
    assert snapshot(reference_run) == before


def test_a_run_directory_refuses_other_inputs_or_config(spark, reference_run, sample_inputs, config):
    with pytest.raises(ConfigError, match="other inputs"):
        run_pipeline(spark, sample_inputs[:1], str(reference_run), config)
    with pytest.raises(ConfigError, match="other config digest"):
        run_pipeline(spark, sample_inputs, str(reference_run), load_config(None, {**OVERRIDES, "export.seed": 5}))


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
