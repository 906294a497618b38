import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.pipeline.report.data import _reject_samples, build_report
from thresher.schemas.rejects import REJECT


def test_funnel_in_pipeline_order_with_percentages_that_add_up(run_dir):
    report = build_report(run_dir)
    funnel = report["funnel"]
    assert [row["stage"] for row in funnel] == ["prepare", "rules", "export"]
    prepare, rules, export = funnel
    assert (prepare["documents_in"], prepare["documents_removed"], prepare["documents_out"]) == (13, 8, 5)
    assert prepare["bytes_out"] == 2 * len("héllo world".encode()) + 3 * len("你好".encode())
    assert prepare["removed_percent"] == pytest.approx(100 * 8 / 13)
    # Each stage reads the one before: the removed shares and what is left make the first input.
    assert sum(row["removed_percent_of_first"] for row in funnel) + export["out_percent_of_first"] == pytest.approx(100)
    assert export["tokens_out"] == 170 and export["copies_out"] == 4  # 3 distinct documents, one rebalancing copy
    assert report["languages"]["after prepare"] == {"en": 2, "zh": 3}
    assert sum(report["lengths"]["after prepare"].values()) == 5 and report["lengths"]["after prepare"]["< 100"] == 5
    assert report["dedup"] == {"ran": True, "documents_hashed": 5, "clusters": 1, "documents_in_clusters": 2,
                               "duplicates_removed": 1, "giant_buckets": 0, "cluster_sizes": {"1": 2, "2": 1}}
    assert list(report["seconds_per_stage"]) == ["prepare", "rules", "tokenizer", "export"]  # pipeline order


def test_rejects_are_counted_per_rule_with_three_stable_samples(run_dir):
    rejects = build_report(run_dir)["rejects"]
    by_rule = {r["rule"]: r for r in rejects}
    blocklist = by_rule["url_domain_blocklist:gambling"]
    assert blocklist["count"] == 7 and len(blocklist["samples"]) == 3
    assert all(len(s["snippet"]) <= 201 for s in blocklist["samples"])
    assert by_rule["empty_extraction"]["count"] == 1
    assert by_rule["minhash_duplicate"]["samples"][0]["detail"] == "d1"
    assert rejects == build_report(run_dir)["rejects"]
    assert [r["rule"] for r in rejects][0] == "url_domain_blocklist:gambling"


def test_reject_samples_come_from_distinct_documents_whatever_the_batches(tmp_path):
    # Line rejects: many per document, adjacent, as the stages write them.
    rejects = [{"doc_id": f"doc{d}", "url": f"http://site{d}.example/", "stage": "rules", "rule": rule,
                "content": f"line {line} of doc{d}"}
               for d in range(40) for rule in ("line_dedup", "clutter_line") for line in range(5)]
    rows = [{field: r.get(field) for field in REJECT.names} for r in rejects]
    table = pa.Table.from_pylist(rows, schema=REJECT)
    for name, row_group_size in (("one", len(rows)), ("many", 7)):
        (tmp_path / name).mkdir()
        pq.write_table(table, tmp_path / name / "part-0.parquet", row_group_size=row_group_size)
    one = _reject_samples(tmp_path / "one", "rules")
    assert one == _reject_samples(tmp_path / "many", "rules")  # batch boundaries do not matter
    assert {r["rule"]: r["count"] for r in one} == {"line_dedup": 200, "clutter_line": 200}
    for entry in one:
        urls = [s["url"] for s in entry["samples"]]
        assert len(set(urls)) == 3  # three documents, not three lines of one
        assert all(s["snippet"].startswith("line 0 ") for s in entry["samples"])  # each document's first reject
    # Both rules hit every document: the same three (smallest doc_id hash) are sampled for each.
    assert [s["url"] for s in one[0]["samples"]] == [s["url"] for s in one[1]["samples"]]


def _parquet_bytes(rows, schema):
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist([{field: row.get(field) for field in schema.names} for row in rows],
                                        schema=schema), sink)
    return sink.getvalue().to_pybytes()


def test_committed_stages_are_read_as_their_marker_lists_them_on_any_store(tmp_path, s3_url):
    import uuid

    from stage_rows import stage_stats_json

    from thresher.pipeline.stagedir import PARTS_LIST, StageOutput, storage
    from thresher.schemas.documents import PREPARED

    docs = [{"doc_id": f"d{i}", "text": "x" * (50 * i), "lang": "en"} for i in range(4)]
    rejects = [{"doc_id": "r0", "stage": "prepare", "rule": "empty_extraction"}]
    reports = {}
    for run in (str(tmp_path / "run"), s3_url):
        output = StageOutput(f"{run}/prepare")
        output.begin()
        output.put_file("documents/part-0.parquet", _parquet_bytes(docs, PREPARED))
        output.put_file("rejects/part-0.parquet", _parquet_bytes(rejects, REJECT))
        output.commit(stage_stats_json("prepare", 5, 4, {"empty_extraction": 1}))
        fs, root = storage(run)
        # A part no commit lists (a task attempt's leftover) is not the stage's: the report never reads it.
        fs.pipe_file(f"{root}/prepare/documents/part-00001-{uuid.uuid4().hex}.parquet", _parquet_bytes(docs, PREPARED))
        # A stage cut short before its marker (stats.json written, _PARTS still there) is not reported.
        fs.makedirs(f"{root}/rules", exist_ok=True)
        fs.pipe_file(f"{root}/rules/stats.json", json.dumps(stage_stats_json("rules", 4, 1)).encode())
        fs.pipe_file(f"{root}/rules/{PARTS_LIST}", b'["stats.json"]')
        reports[run] = build_report(run)
    local, on_s3 = reports.values()
    for report in (local, on_s3):
        assert [row["stage"] for row in report["funnel"]] == ["prepare"]
        assert report["funnel"][0]["bytes_out"] == 50 * (1 + 2 + 3)
        assert report["languages"]["after prepare"] == {"en": 4}
        assert [(r["rule"], r["count"]) for r in report["rejects"]] == [("empty_extraction", 1)]
    assert on_s3["stats"] == local["stats"] and on_s3["funnel"] == local["funnel"]


def test_duplicate_clusters_are_counted_by_size_with_the_largest_and_a_sample(run_dir):
    from stage_rows import write_clusters

    from thresher.pipeline.report.data import LARGEST_CLUSTERS, MEMBERS_SHOWN, SAMPLE_CLUSTERS
    from thresher.pipeline.seeded_hash import hash64

    clusters = {f"k{i:02d}": [f"k{i:02d}m{j}" for j in range(1 + i % 4)] for i in range(12)}  # sizes 2 to 5
    clusters["k99"] = [f"k99m{j:02d}" for j in range(20)]  # the largest: 21 documents
    write_clusters(run_dir, clusters)
    report = build_report(run_dir)["duplicate_clusters"]
    assert report["clusters"] == 13 and report["documents"] == sum(len(m) + 1 for m in clusters.values())
    assert report["sizes"] == {"2": 3, "3": 3, "4": 3, "5": 3, "21": 1} and report["kept_by"] == ["smallest doc_id"]
    largest = report["largest"]
    assert [c["cluster_id"] for c in largest] == ["k99", "k03", "k07", "k11", "k02"][:LARGEST_CLUSTERS]
    assert largest[0]["size"] == 21 and len(largest[0]["members"]) == MEMBERS_SHOWN
    assert largest[0]["members"][0] == {"doc_id": "k99", "url": "http://k99.example/", "run": "/runs/one/prepare", "kept": True,
                                        "jaccard": 1.0, "diff": None}  # the kept one first, then by doc_id
    assert [m["doc_id"] for m in largest[0]["members"][1:]] == ["k99m00", "k99m01", "k99m02", "k99m03"]
    sample = report["sample"]
    assert [c["cluster_id"] for c in sample] == sorted(clusters, key=hash64)[:SAMPLE_CLUSTERS]
    assert all(m["diff"].endswith(m["doc_id"]) for c in sample for m in c["members"] if not m["kept"])
    assert build_report(run_dir)["duplicate_clusters"] == report  # the same clusters every time


def test_a_run_without_a_cluster_table_has_no_cluster_section_data(run_dir):
    assert build_report(run_dir)["duplicate_clusters"] == {}
