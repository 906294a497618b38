"""The stats.json envelope: what a stage writes reads back; anything else is one line naming the file."""

from __future__ import annotations

import json

import pytest

from thresher.schemas.stats import STATS_FILE, StatsError, read_stats, stage_stats, stats_json, validate_stats


def envelope(**overrides):
    fields = dict(thresher_version="1.0", config_digest="abc123", started=1_700_000_000.0, finished=1_700_000_016.6,
                  phases={"minhash": 4.2}, inputs=["/runs/demo/prepare"], documents_in=54, documents_out=48,
                  rejects_by_rule={"gopher": 6}, details={"lines_removed": 12})
    return stage_stats("rules", **{**fields, **overrides})


def test_the_envelope_carries_the_common_fields_and_the_stage_details():
    stats = envelope()
    assert list(stats) == ["schema_version", "stage", "thresher_version", "config_digest", "started", "finished",
                           "seconds", "inputs", "documents_in", "documents_out", "rejects_by_rule", "details"]
    assert stats["started"] == "2023-11-14T22:13:20Z" and stats["finished"] == "2023-11-14T22:13:36Z"
    assert stats["seconds"] == {"total": 16.6, "minhash": 4.2}
    assert stats["details"] == {"lines_removed": 12} and stats["schema_version"] == 1


def test_written_stats_read_back_equal_keeping_the_rules_in_pipeline_order(tmp_path):
    rules = {"url_filter": {"seen": 54, "dropped": 2, "seconds": 0.1}, "c4": {"seen": 52, "dropped": 1, "seconds": 0.4},
             "gopher_quality": {"seen": 51, "dropped": 3, "seconds": 0.3}}
    stats = envelope(rules=rules)
    (tmp_path / STATS_FILE).write_bytes(stats_json(stats, str(tmp_path / STATS_FILE)))
    read = read_stats(tmp_path)
    assert read == stats and list(read["rules"]) == ["url_filter", "c4", "gopher_quality"]


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("config_digest"), "no 'config_digest' field"),
    (lambda s: s.update(config_hash="abc"), "unknown field(s) config_hash"),
    (lambda s: s.update(documents_in="54"), "documents_in should be int, got str"),
    (lambda s: s.update(documents_out=-1), "documents_out is negative"),
    (lambda s: s.update(seconds={"minhash": 1.0}), "no 'seconds.total'"),
    (lambda s: s.update(seconds={"total": "fast"}), "seconds.total should be a number, got str"),
    (lambda s: s.update(started="yesterday"), "started 'yesterday' is not a UTC time"),
    (lambda s: s.update(schema_version=0), "schema_version 0"),
    (lambda s: s["rejects_by_rule"].update(gopher=True), "rejects_by_rule.gopher should be int, got bool"),
    (lambda s: s.update(rules={"c4": {"seen": 1, "dropped": 0}}), "rules.c4 has fields ['dropped', 'seen']"),
    (lambda s: s.update(rules={"c4": {"seen": 1, "dropped": 0, "seconds": "0"}}), "rules.c4.seconds should be a number"),
])
def test_a_malformed_stats_file_is_one_line_naming_the_file(tmp_path, change, message):
    stats = envelope()
    change(stats)
    (tmp_path / STATS_FILE).write_text(json.dumps(stats))
    with pytest.raises(StatsError) as error:
        read_stats(tmp_path)
    text = str(error.value)
    assert text.startswith(f"{tmp_path / STATS_FILE}: ") and message in text and "\n" not in text


def test_a_file_that_is_no_json_or_missing_is_one_line_naming_it(tmp_path):
    (tmp_path / STATS_FILE).write_text('{"stage": "rules",')  # cut short
    with pytest.raises(StatsError, match=rf"^{tmp_path / STATS_FILE}: not valid JSON"):
        read_stats(tmp_path)
    with pytest.raises(StatsError, match="no such file"):
        read_stats(tmp_path / "elsewhere")
    with pytest.raises(StatsError, match="expected a JSON object, got list"):
        validate_stats([], "x")


def test_a_stage_cannot_write_anything_but_the_envelope(tmp_path):
    with pytest.raises(StatsError, match=rf"^{tmp_path}/stats.json: no 'schema_version' field"):
        stats_json({"documents_out": 1}, f"{tmp_path}/stats.json")


def test_stats_on_an_object_store_read_as_on_local_disk(s3_url):
    import fsspec

    stats = envelope()
    fs, root = fsspec.core.url_to_fs(s3_url)
    fs.pipe_file(f"{root}/stage/{STATS_FILE}", json.dumps(stats).encode())
    assert read_stats(f"{s3_url}/stage") == stats
    with pytest.raises(StatsError, match=rf"^{s3_url}/elsewhere/{STATS_FILE}: no such file"):
        read_stats(f"{s3_url}/elsewhere")
