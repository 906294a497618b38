"""thresher sweep on the bundled sample crawl: the stages a setting does not change run once, and every
value's shards decode with the one tokenizer."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest
from stage_rows import SAMPLE_RUN_OVERRIDES

from thresher.jobs.run import STAGES
from thresher.jobs.sweep import first_copy_tokens, link_shared, parse_set_values, run_sweep, shared_stages, sweep_table
from thresher.pipeline.config import ConfigError, load_config
from thresher.pipeline.export.tokenize import load_tokenizer
from thresher.pipeline.stagedir import COMMITTED_MARKER
from thresher.schemas.stats import read_stats

KEY = "select.line_thresholds.clutter"


@pytest.fixture(scope="module")
def sweep(spark, sample_run, tmp_path_factory):
    """Values 0 (the sample run's own: its stages linked in, so that none is computed twice in the suite) and 0.9."""
    inputs, reference = sample_run
    out = tmp_path_factory.mktemp("sweep")
    assert link_shared(reference, out / f"{KEY}=0", list(STAGES)) == list(STAGES)
    points = [(text, load_config(None, {**SAMPLE_RUN_OVERRIDES, KEY: float(text)})) for text in ("0", "0.9")]
    return out, run_sweep(spark, inputs, str(out), KEY, points)


def test_the_later_value_runs_only_the_stages_the_setting_changes(sweep):
    out, summary = sweep
    first, second = summary["points"]
    assert first["stages_run"] == []  # the sample run's, committed with these settings
    assert second["stages_run"] == ["select", "export"]  # tag and the tokenizer ran once, for the first value
    assert summary["shared_stages"] == ["prepare", "rules", "classifiers", "tag", "tokenizer"]
    for stage in summary["shared_stages"]:
        assert os.path.realpath(out / second["directory"] / stage) == str((out / first["directory"] / stage).resolve())
    assert all((out / point["directory"] / "report.html").is_file() for point in summary["points"])


def test_every_value_s_shards_decode_with_the_one_tokenizer_to_its_own_selected_texts(sweep):
    out, summary = sweep
    first, second = summary["points"]
    assert first["tokenizer_sha256"] == second["tokenizer_sha256"]
    manifests = [json.loads((out / p["directory"] / "export" / "manifest.json").read_text()) for p in summary["points"]]
    assert len({m["tokenizer"]["sha256"] for m in manifests}) == 1
    tokenizer = load_tokenizer(str(out / first["directory"] / "tokenizer"))
    texts = []
    for point in summary["points"]:
        selected = {row["doc_id"]: row["text"] for row in pq.read_table(out / point["directory"] / "select" / "documents").to_pylist()}
        decoded = {doc_id: tokenizer.decode(ids[:-1]) for doc_id, ids in first_copy_tokens(out / point["directory"] / "export").items()}
        assert decoded and decoded == {doc_id: selected[doc_id] for doc_id in decoded}
        texts.append(decoded)
    assert sum(len(text) for text in texts[1].values()) < sum(len(text) for text in texts[0].values())  # 0.9 cut lines


def test_the_table_compares_documents_tokens_and_rejects_and_is_written(sweep):
    out, summary = sweep
    assert json.loads((out / "sweep.json").read_text()) == summary
    table = (out / "sweep.md").read_text()
    assert table == sweep_table(summary)
    first, second = summary["points"]
    assert second["rejects_by_rule"]["clutter_line"] > first["rejects_by_rule"].get("clutter_line", 0)
    assert second["tokens"] < first["tokens"]
    export = read_stats(out / second["directory"] / "export")["details"]
    assert second["tokens"] == export["tokens"] - export["padding_tokens"] > 0  # the documents' tokens, not the padding
    assert "| value | documents | tokens (no padding) |" in table and "clutter_line (lines)" in table
    assert f"| 0.9 | {second['documents']:,} | {second['tokens']:,} |" in table


def test_a_sweep_rerun_runs_nothing_and_a_new_value_shares_the_first_s_stages(spark, sweep):
    out, summary = sweep
    inputs = json.loads((out / summary["points"][0]["directory"] / "run.json").read_text())["inputs"]
    points = [(text, load_config(None, {**SAMPLE_RUN_OVERRIDES, KEY: float(text)})) for text in ("0", "0.9", "0.5")]
    again = run_sweep(spark, inputs, str(out), KEY, points)
    assert [point["stages_run"] for point in again["points"]] == [[], [], ["select", "export"]]


def test_link_shared_links_only_committed_stages_and_never_replaces_a_directory(tmp_path):
    first, point = tmp_path / "first", tmp_path / "point"
    for stage in ("prepare", "rules", "tag"):
        (first / stage).mkdir(parents=True)
    (first / "prepare" / COMMITTED_MARKER).write_text("{}\n")
    (first / "rules" / COMMITTED_MARKER).write_text("{}\n")
    (point / "rules").mkdir(parents=True)  # this point's own
    assert link_shared(first, point, ["prepare", "rules", "tag"]) == ["prepare"]
    assert (point / "prepare").is_symlink() and not (point / "rules").is_symlink() and not (point / "tag").exists()


def test_set_values_and_keys_that_change_nothing_are_one_line_errors():
    assert parse_set_values("select.line_thresholds.clutter=0, 0.3,0.5") == (KEY, ["0", "0.3", "0.5"])
    for bad in ("select.line_thresholds.clutter", "x=", "x=1,1", "x=a/b", "x=..", "=1,2"):
        with pytest.raises(ConfigError, match="--set-values"):
            parse_set_values(bad)
    with pytest.raises(ConfigError, match="speed-only"):
        shared_stages("tag.batch_size")
    assert shared_stages("export.vocab_size") == ["prepare", "rules", "classifiers", "tag", "select"]
    assert shared_stages("rules.minhash_seed") == ["prepare", "classifiers"]


def test_the_command_refuses_a_speed_only_key_or_an_object_store_in_one_line_before_spark(tmp_path, capsys):
    from thresher.jobs.cli import main

    assert main(["sweep", "--sample", "--output", str(tmp_path / "a"), "--set-values", "tag.batch_size=64,128"]) == 2
    assert main(["sweep", "--sample", "--output", "s3://bucket/sweep", "--set-values", f"{KEY}=0,0.5"]) == 2
    assert main(["sweep", "--sample", "--output", str(tmp_path / "b"), "--set-values", "select.no_such_key=0,0.5"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("thresher sweep: error: ") for line in lines)
    assert "speed-only" in lines[0] and "local directory" in lines[1] and "select.no_such_key" in lines[2]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
