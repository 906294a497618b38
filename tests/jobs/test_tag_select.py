"""`thresher tag-select`: tag then select in one command, as the two jobs run one after the other."""

from __future__ import annotations

import pyarrow.parquet as pq
from stage_rows import stage3_config

from thresher.jobs.selection import run_select
from thresher.jobs.tag_select import run_tag_select
from thresher.pipeline.stagedir import COMMITTED_MARKER
from thresher.schemas.stats import read_stats


def test_tag_select_is_tag_then_select(spark, stage2_dir, models_dir, quality_model, tagged_dir, tmp_path, capsys):
    from thresher.jobs.cli import main

    out = tmp_path / "models"
    argv = ["tag-select", str(stage2_dir), "--output", str(out), "--models-dir", str(models_dir),
            "--set", f"tag.taggers.quality.model_dir={quality_model}"]
    assert main(argv) == 0
    assert (out / "tag" / COMMITTED_MARKER).is_file() and (out / "select" / COMMITTED_MARKER).is_file()
    assert pq.read_table(out / "tag" / "documents").to_pylist() == pq.read_table(tagged_dir / "documents").to_pylist()
    config = stage3_config(models_dir, quality_model)
    run_select(spark, str(tagged_dir), str(tmp_path / "select"), config)
    assert pq.read_table(out / "select" / "documents").to_pylist() == pq.read_table(tmp_path / "select" / "documents").to_pylist()
    assert read_stats(out / "select")["details"]["rules"] == read_stats(tmp_path / "select")["details"]["rules"]
    capsys.readouterr()
    assert run_tag_select(spark, str(stage2_dir), str(out), config) == {}  # both steps committed: kept
    assert "is committed; kept" in capsys.readouterr().err


def test_the_old_name_models_still_runs_tag_select_and_says_so(spark, stage2_dir, models_dir, quality_model, tmp_path, capsys):
    from thresher.jobs.cli import main

    out = tmp_path / "models"
    assert main(["models", str(stage2_dir), "--output", str(out), "--models-dir", str(models_dir),
                 "--set", f"tag.taggers.quality.model_dir={quality_model}"]) == 0
    assert (out / "select" / COMMITTED_MARKER).is_file()
    err = capsys.readouterr().err
    assert err.startswith("[thresher] `thresher models` is now `thresher tag-select`; the old name still works\n")
    assert "[thresher] select: " in err


def test_tag_select_from_s3_to_s3_is_what_tag_then_select_commit_on_local_disk(
        spark_s3, stage2_dir, models_dir, quality_model, tagged_dir, s3_url, tmp_path, copies_and_renames):
    from stage_rows import upload_tree, without_timings

    from thresher.pipeline.stagedir.parts import read_parts

    config = stage3_config(models_dir, quality_model)
    stats = run_tag_select(spark_s3, upload_tree(stage2_dir, f"{s3_url}/rules"), f"{s3_url}/out", config, partitions=1)
    assert read_parts(spark_s3, f"{s3_url}/out/tag", "documents").collect() == read_parts(
        spark_s3, str(tagged_dir), "documents").collect()
    local = run_select(spark_s3, str(tagged_dir), str(tmp_path / "select"), config, partitions=1)
    for table in ("documents", "rejects"):
        assert read_parts(spark_s3, f"{s3_url}/out/select", table).collect() == read_parts(
            spark_s3, str(tmp_path / "select"), table).collect()
    assert without_timings(stats["select"]) == without_timings(local)
    assert read_stats(f"{s3_url}/out/select") == stats["select"]
    assert copies_and_renames == []
    assert run_tag_select(spark_s3, f"{s3_url}/rules", f"{s3_url}/out", config) == {}  # both committed: kept


EXAMPLES = "thresher.tests.plugin_examples"
WORD = "game"


def test_a_custom_filter_and_tagger_run_rules_then_tag_select_through_config_alone(stage2_dir, models_dir, quality_model,
                                                                                    tmp_path):
    import yaml

    from thresher.jobs.cli import main
    from thresher.tests.plugin_examples.taggers import upper_share

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "rules": {"custom_filters": [{"class_path": f"{EXAMPLES}.filters:MentionFilter", "args": {"word": WORD}}]},
        "tag": {"model_dir": str(models_dir), "taggers": {"quality": {"model_dir": str(quality_model)}},
                "custom_taggers": [{"class_path": f"{EXAMPLES}.taggers:ShoutTagger", "args": {"prefix": "shout"}}]},
        "select": {"columns": {"shout_upper_share": {"max": 0.04}}}}))
    assert main(["rules", str(stage2_dir), "--output", str(tmp_path / "rules"), "--config", str(config)]) == 0
    assert main(["tag-select", str(tmp_path / "rules"), "--output", str(tmp_path / "out"), "--config", str(config)]) == 0

    rules = read_stats(tmp_path / "rules")
    families = list(rules["rules"])
    assert families[-1] == "mention" and families.index("mention") > families.index("gopher_repetition")
    mention = rules["rules"]["mention"]
    rejected = [r for r in pq.read_table(tmp_path / "rules" / "rejects").to_pylist() if r["rule"] == f"mention:{WORD}"]
    assert mention["dropped"] == len(rejected) == rules["rejects_by_rule"][f"mention:{WORD}"] > 0
    assert mention["seen"] > mention["dropped"] and mention["seconds"] >= 0
    survivors = pq.read_table(tmp_path / "rules" / "documents").to_pylist()
    assert not any(WORD in row["text"].lower() for row in survivors)

    tagged = pq.read_table(tmp_path / "out" / "tag" / "documents")
    assert tagged.schema.field("shout_upper_share").type == "double" and "quality_score" in tagged.column_names
    rows = tagged.to_pylist()
    assert [row["shout_upper_share"] for row in rows] == [upper_share(row["text"][:2000]) for row in rows]
    assert [row["shout_first_word"] for row in rows] == [(row["text"].split() or [None])[0] for row in rows]

    selected = read_stats(tmp_path / "out" / "select")
    loud = {row["doc_id"] for row in rows if row["shout_upper_share"] > 0.04}
    assert 0 < len(loud) < len(rows) and selected["rejects_by_rule"]["column:shout_upper_share"] <= len(loud)
    funnel = [rule["rule"] for rule in selected["details"]["rules"]]
    assert funnel.index("column:shout_upper_share") == funnel.index("line_removal") - 1
    kept = pq.read_table(tmp_path / "out" / "select" / "documents").to_pylist()
    first_words = {row["doc_id"]: row["shout_first_word"] for row in rows}
    assert kept and all(row["shout_upper_share"] <= 0.04 and row["doc_id"] not in loud for row in kept)
    assert all(row["shout_first_word"] == first_words[row["doc_id"]] for row in kept)
