import json
import re
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from report_page import Page, check_renders_in_chromium
from stage_rows import stage_stats_json, write_stage

from thresher.jobs.config_show import effective_config_text
from thresher.pipeline.config import load_config
from thresher.pipeline.report import write_report
from thresher.pipeline.report.data import build_report
from thresher.pipeline.report.html import render_html


def test_line_rejects_are_kept_apart_from_document_counts(run_dir):
    report = build_report(run_dir)
    rules = report["funnel"][1]
    # 2 documents removed and 4 lines removed from kept documents: not "5 in, 3 out, 6 rejected".
    assert (rules["documents_in"], rules["documents_removed"], rules["documents_out"], rules["lines_removed"]) == (5, 2, 3, 4)
    assert report["stage_subtotals"]["rules"] == {"documents_in": 5, "document_rejects": 2, "document_rejects_percent": 40.0,
                                                  "line_rejects": 4, "rules": 3}
    page = Page(render_html(report))
    funnel = page.table_with("lines removed")
    row = next(r for r in funnel if r[0] == "rules")
    header = funnel[0]
    assert row[header.index("documents removed")] == "2" and row[header.index("lines removed")] == "4"
    rejects = page.table_with("samples (smallest doc_id hash)")
    subtotals = [r for r in rejects if r[0] == "rules subtotal"]
    assert subtotals == [["rules subtotal", "documents", "2", "40.0%", ""], ["rules subtotal", "lines", "4", "(lines)", ""]]
    line_row = next(r for r in rejects if r[0] == "line_dedup")
    assert line_row[1:4] == ["line", "4", "(lines)"]
    # Per-rule shares of a stage's input add up to its subtotal.
    document_rows = [r for r in rejects[1:] if len(r) == 5 and r[1] == "document" and r[0] in ("minhash_duplicate", "c4:too_few_sentences")]
    assert sum(float(r[3].rstrip("%")) for r in document_rows) == pytest.approx(40.0)


def test_report_sections_header_and_tables_in_the_dom(run_dir):
    write_stage3(run_dir)
    config = load_config()
    (run_dir / "config.yaml").write_text(effective_config_text(config))
    page = Page(render_html(build_report(run_dir)))
    for title in ("Run", "Funnel", "Reject reasons per stage", "Document length (characters)", "Languages",
                  "MinHash near-duplicates", "Stage 3 models", "Model steps: acted or not", "Tagger quality: score histogram",
                  "Select: kept and removed per rule", "Mix per group vs target", "Tokens exported", "Time per stage",
                  "Stage statistics (stats.json)"):
        assert title in page.sections, title
    header = {row[0]: row[1] for row in page.rows(page.tables[0])}
    assert header["inputs"].startswith("2 file(s)") and "/crawl/<b>.warc.gz" in header["inputs"]
    assert header["config digest"].startswith(config.digest()) and page.links == ["config.yaml"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", header["generated"])
    assert header["thresher"]
    assert ("page_type (weak labels, accuracy 0.430 [0.214, 0.714], macro_f1 0.210 [0.100, 0.450] on 14 held-out "
            "examples (95% intervals))") in header["models"]
    # Every table is a table: no JSON text in any cell.
    for table in page.tables:
        for row in page.rows(table):
            for cell in row:
                assert not cell.startswith(("{", "[")) and '": ' not in cell, cell
    # stats.json as tables: the envelope's fields, then the stage's details as a sub-table, in which
    # select's rules (a list of dicts) is a table with a column per key.
    select_stats = next(rows for rows in map(page.rows, page.tables) if rows[0] == ["key", "value"]
                        and ["stage", "select"] in rows)
    assert any(r[0] == "details" and "rebalance" in r[1] for r in select_stats)
    select_details = next(rows for rows in map(page.rows, page.tables)
                          if {"rebalance", "rules"} <= {r[0] for r in rows if r})
    assert any(r[0] == "rules" and r[1].startswith("ruledocuments_in") for r in select_details)  # a sub-table
    assert page.table_with("tokens_out")[0] == ["rule", "documents_in", "documents_out", "tokens_in", "tokens_out", "copies_out"]
    select = page.table_with("kept samples")
    row = next(r for r in select if r[0] == "quality:top_percent")
    kept, removed = row[select[0].index("kept samples")], row[select[0].index("removed samples")]
    assert "http://kept.example/" in kept and "http://low.example/" in removed
    assert next(r for r in select if r[0] == "rebalance")[2] == "1 documents written as 3 copies"
    text = "".join(page.text)
    assert "1 near-duplicate clusters holding 2 documents; 1 duplicates removed" in text
    assert "3 distinct documents were exported as 4 copies" in text


def test_no_near_duplicates_is_said_apart_from_a_stage_not_run(run_dir):
    stats = json.loads((run_dir / "rules" / "stats.json").read_text())
    stats["details"]["minhash_cluster_sizes"] = {"1": 5}
    (run_dir / "rules" / "stats.json").write_text(json.dumps(stats))
    assert "No near-duplicates found among 5 documents hashed" in render_html(build_report(run_dir))
    shutil.rmtree(run_dir / "rules")
    page = Page(render_html(build_report(run_dir)))
    assert "(this stage did not run)" in "".join(page.text)


def write_stage3(run_dir):
    """tag and select outputs as the jobs write them: a weak and a trained tagger, two select rules, a mix."""
    from thresher.pipeline.select.batches import SelectSettings, selected_schema
    from thresher.schemas.tags import DeclaredTagger

    taggers = [
        {"name": "page_type", "model_dir": "/m/page_type", "model_hash": "abc", "weak_labels": True,
         "heldout": {"accuracy": 0.43, "macro_f1": 0.21, "examples": 14,
                     "interval": {"level": 0.95, "accuracy": [0.214, 0.714], "macro_f1": [0.1, 0.45]}}},
        {"name": "quality", "model_dir": "/m/quality", "model_hash": "def", "weak_labels": False,
         "heldout": {"accuracy": 0.83, "examples": 42}},
    ]
    (run_dir / "tag").mkdir()
    (run_dir / "tag" / "stats.json").write_text(json.dumps(stage_stats_json(
        "tag", 3, 3, taggers=taggers, labels={"page_type": {"article": 2, "forum": 1}},
        score_histograms={"quality": [0, 1, 0, 0, 0, 0, 0, 0, 1, 1]},
    )))
    select_rules = [
        {"rule": "page_type:label_in", "documents_in": 3, "documents_out": 2, "tokens_in": 300, "tokens_out": 200},
        {"rule": "quality:top_percent", "documents_in": 2, "documents_out": 1, "tokens_in": 200, "tokens_out": 120},
        {"rule": "rebalance", "documents_in": 1, "documents_out": 1, "tokens_in": 120, "tokens_out": 360, "copies_out": 3},
    ]
    rebalance = {"mode": "target", "unit": "tokens", "skipped": None, "targets": {"knowledge": 0.6, "rest": 0.4},
                 "shares_before": {"knowledge": 0.2, "rest": 0.8}, "shares_expected": {"knowledge": 0.5, "rest": 0.5},
                 "achieved": {"knowledge": 0.48, "rest": 0.52}, "shortfalls": {"knowledge": 0.1},
                 "domains": {"science": {"before": 0.2, "after": 0.48}, "shopping": {"before": 0.8, "after": 0.52}}}
    settings = SelectSettings(taggers=(DeclaredTagger("page_type", "/m/page_type"), DeclaredTagger("quality", "/m/quality")))
    doc = {"doc_id": "k1", "url": "http://kept.example/", "text": "kept text", "page_type_label": "article",
           "page_type_score": 0.9, "quality_label": "1", "quality_score": 0.75, "sample_copies": 3}
    model_gate = {
        "page_type": {"acts": False, "figure": "macro_f1", "value": 0.21, "interval": [0.1, 0.45], "level": 0.95, "examples": 14,
                      "floor": 0.5, "bound": "lower", "steps": ["page_type:label_in"],
                      "reason": "the page_type model's held-out macro_f1 0.210 [0.100, 0.450] (95% interval) on 14 examples: "
                                "does not act (fewer than select.model_gate.min_examples=30 held-out examples)"},
        "quality": {"acts": True, "figure": "auc", "value": 0.88, "interval": [0.76, 0.97], "level": 0.95, "examples": 42,
                    "floor": 0.6, "bound": "lower", "steps": ["quality:top_percent"],
                    "reason": "the quality model's held-out auc 0.880 [0.760, 0.970] (95% interval) on 42 examples: acts"},
        "clutter": {"acts": False, "figure": "auc", "value": 0.9, "interval": [0.87, 0.93], "level": 0.95, "examples": 882,
                    "floor": 0.75, "bound": "lower", "steps": [],
                    "reason": "tags only: select.line_thresholds.clutter is 0, so no line is removed (its scores are written)"},
    }
    write_stage(run_dir, "select", stage_stats_json("select", 3, 1, rules=select_rules, rebalance=rebalance,
                                                    model_gate=model_gate), [], [
        {"doc_id": "f1", "url": "http://forum.example/", "stage": "select", "rule": "page_type:label_in", "detail": "label=forum score=0.8000"},
        {"doc_id": "q1", "url": "http://low.example/", "stage": "select", "rule": "quality:top_percent", "detail": "score=0.1 cut=0.5"},
    ])
    shutil.rmtree(run_dir / "select" / "documents")
    (run_dir / "select" / "documents").mkdir()
    schema = selected_schema(settings)
    pq.write_table(pa.Table.from_pylist([{f: doc.get(f) for f in schema.names}], schema=schema),
                   run_dir / "select" / "documents" / "part-0.parquet")


def test_stage_3_models_histograms_rules_samples_and_mix(run_dir):
    write_stage3(run_dir)
    report = build_report(run_dir)
    assert [(m["tagger"], m["weak_labels"]) for m in report["models"]] == [("page_type", True), ("quality", False)]
    assert report["score_histograms"] == {"quality": [0, 1, 0, 0, 0, 0, 0, 0, 1, 1]}
    assert [step["rule"] for step in report["select_rules"]] == ["page_type:label_in", "quality:top_percent", "rebalance"]
    kept = report["kept_samples"]
    assert set(kept) == {"page_type:label_in", "quality:top_percent"}
    assert kept["quality:top_percent"][0]["detail"] == "label=1 score=0.7500"
    assert report["mix"]["groups"]["knowledge"] == {"target": 0.6, "before": 0.2, "expected": 0.5, "after": 0.48, "short_by": 0.1}
    removed = {r["rule"]: r for r in report["rejects"] if r["stage"] == "select"}
    assert removed["quality:top_percent"]["samples"][0]["url"] == "http://low.example/"
    page = render_html(report)
    for text in ("bootstrapped from weak labels", "Tagger quality: score histogram", "quality:top_percent",
                 "Mix per group vs target", "60.0%", "48.0%", "http://kept.example/", "<td>shopping</td><td class=num>80.0%"):
        assert text in page, text


def test_the_report_says_whether_each_model_step_acted(run_dir):
    write_stage3(run_dir)
    report = build_report(run_dir)
    assert report["model_gate"]["page_type"]["acts"] is False
    page = render_html(report)
    assert "Model steps: acted or not" in page
    assert ("<tr class=warn><td>page_type</td><td>page_type:label_in</td><td>did not act: documents kept</td>"
            "<td>macro_f1 0.210 [0.100, 0.450] (95%) on 14 examples</td><td>lower bound &ge; 0.5</td>") in page
    assert "<tr><td>quality</td><td>quality:top_percent</td><td>acted</td><td>auc 0.880 [0.760, 0.970] (95%) on 42 examples</td>" in page
    assert "fewer than select.model_gate.min_examples=30" in page
    assert "<tr><td>clutter</td><td></td><td>no step: tags only</td><td>auc 0.900 [0.870, 0.930] (95%) on 882 examples</td>" in page


def test_the_contamination_table_per_benchmark(run_dir):
    write_stage3(run_dir)
    assert "(no benchmark configured: config decontam.benchmarks)" in render_html(build_report(run_dir))
    stats = json.loads((run_dir / "select" / "stats.json").read_text())
    stats["details"]["decontam"] = {"action": "cut", "benchmarks": {
        "gsm8k": {"documents_hit": 2, "items_hit": ["12", "7"], "documents_dropped": 0, "chars_removed": 1234},
        "cmmlu": {"documents_hit": 0, "items_hit": [], "documents_dropped": 0, "chars_removed": 0}}}
    (run_dir / "select" / "stats.json").write_text(json.dumps(stats))
    report = build_report(run_dir)
    assert report["decontam"]["benchmarks"]["gsm8k"]["items_hit"] == ["12", "7"]
    page = render_html(report)
    assert "<h2>Benchmark contamination</h2>" in page and "select.decontam.action: <b>cut</b>" in page
    assert ("<td>gsm8k</td><td class=num>2</td><td class=num>2</td><td class=sample>12, 7</td>"
            "<td class=num>0</td><td class=num>1,234</td>") in page
    assert "<td>cmmlu</td><td class=num>0</td><td class=num>0</td>" in page


def test_a_skipped_rebalancing_is_said(run_dir):
    write_stage3(run_dir)
    stats = json.loads((run_dir / "select" / "stats.json").read_text())
    stats["details"]["rebalance"] = {"mode": "target", "skipped": "the topic model's held-out accuracy is 0.1"}
    (run_dir / "select" / "stats.json").write_text(json.dumps(stats))
    assert "Rebalancing skipped:</b> the topic model&#x27;s held-out accuracy is 0.1" in render_html(build_report(run_dir))


def test_the_report_counts_personal_information_per_kind_and_lists_no_model_for_the_pii_tagger(run_dir):
    write_stage3(run_dir)
    tag = json.loads((run_dir / "tag" / "stats.json").read_text())
    tag["details"]["taggers"].append({"name": "pii", "kind": "pii", "model_dir": "", "model_hash": None, "heldout": {},
                                      "weak_labels": False, "backend": "rules"})
    (run_dir / "tag" / "stats.json").write_text(json.dumps(tag))
    stats = json.loads((run_dir / "select" / "stats.json").read_text())
    kinds = {"email": {"documents": 2, "spans": 3, "replaced": True, "placeholder": "<EMAIL>"},
             "phone": {"documents": 1, "spans": 1, "replaced": False, "placeholder": None}}
    stats["details"]["pii"] = {"tagger": "pii", "documents": 2, "kinds": kinds}
    (run_dir / "select" / "stats.json").write_text(json.dumps(stats))
    report = build_report(run_dir)
    assert report["pii"]["kinds"] == kinds and "pii" not in [m["tagger"] for m in report["models"]]
    page = render_html(report)
    assert "Personal information (select)" in page and "2 documents with personal information found by tagger pii" in page
    assert "<td>email</td><td class=num>2</td><td class=num>3</td><td>&lt;EMAIL&gt;</td>" in page
    assert "<td>phone</td><td class=num>1</td><td class=num>1</td><td>kept (not in select.pii.replace)</td>" in page


def test_html_is_self_contained_and_escapes_content(run_dir):
    report = build_report(run_dir)
    report["rejects"][0]["samples"][0]["snippet"] = "<script>alert(1)</script>"
    page = render_html(report)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "&lt;b&gt;.warc.gz" in page  # an input path is data too
    # No external asset: the only link is to the effective config written beside the report.
    assert "<svg" in page and "src=" not in page and "http-equiv" not in page
    assert set(re.findall(r'href="([^"]*)"', page)) <= {"config.yaml"} and "url(" not in page


def test_write_report_writes_both_files(run_dir):
    write_report(run_dir)
    written = json.loads((run_dir / "report.json").read_text())
    assert written["funnel"][0]["documents_in"] == 13
    assert list(written["seconds_per_stage"]) == ["prepare", "rules", "tokenizer", "export"]  # not alphabetical
    assert (run_dir / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_report_renders_in_headless_chromium(run_dir, tmp_path_factory):
    write_stage3(run_dir)
    write_report(run_dir)
    check_renders_in_chromium(run_dir / "report.html", tmp_path_factory.mktemp("shot") / "report.png",
                              tmp_path_factory.mktemp("profile"))


def test_each_stage_s_rule_costs_are_a_table_in_pipeline_order(tmp_path):
    rules = {"url_parse": {"seen": 200, "dropped": 0, "seconds": 0.5},
             "extract": {"seen": 200, "dropped": 50, "seconds": 6.0},
             "langid": {"seen": 150, "dropped": 30, "seconds": 1.5}}  # not alphabetical: the order they ran in
    write_stage(tmp_path, "prepare", stage_stats_json("prepare", 200, 120, rule_stats=rules), [], [])
    write_stage(tmp_path, "select", stage_stats_json("select", 120, 120, rules=[]), [], [])  # select's own list, in details
    report = build_report(tmp_path)
    assert [r["rule"] for r in report["rule_costs"]["prepare"]] == ["url_parse", "extract", "langid"]
    assert report["rule_costs"]["prepare"][1] == {"rule": "extract", "seen": 200, "dropped": 50, "dropped_percent": 25.0,
                                                   "seconds": 6.0, "seconds_percent": 75.0}
    assert set(report["rule_costs"]) == {"prepare"}
    page = Page(render_html(report))
    assert "prepare: cost per rule" in page.sections
    assert page.table_with("share of the stage's filter time") == [
        ["rule", "documents seen", "dropped", "% dropped", "seconds", "share of the stage's filter time"],
        ["url_parse", "200", "0", "0.0%", "0.500", "6.2%"],
        ["extract", "200", "50", "25.0%", "6.000", "75.0%"],
        ["langid", "150", "30", "20.0%", "1.500", "18.8%"],
        ["total", "200", "80", "40.0%", "8.000", "100.0%"],
    ]


def test_the_duplicate_clusters_section_shows_sizes_the_largest_and_escaped_diffs(run_dir):
    from stage_rows import write_clusters

    write_clusters(run_dir, {"k1": ["k1a", "k1b"], "k2": ["k2a"]})
    report = build_report(run_dir)
    report["rehydrate"] = {"ranges": {"1": {"copies": 1, "documents": 5, "copies_out": 5},
                                      "2+": {"copies": 2, "documents": 2, "copies_out": 4}}}
    page = Page(render_html(report))
    assert "Duplicate clusters" in page.sections
    assert page.table_with("clusters in rules/clusters")[1:] == [["2", "1"], ["3", "1"]]
    largest = page.table_with("members (kept first)")
    assert [row[:2] for row in largest[1:]] == [["k1", "3"], ["k2", "2"]]
    assert largest[1][2].startswith("kept: http://k1.example/ (Jaccard 1.000)")
    text = "".join(page.text)
    assert "The kept member of each is chosen by: smallest doc_id" in text
    assert "+<b>k2a" in text or "+<b>k1a" in text  # a member's diff, as text: escaped, not markup
    assert page.table_with("copies each")[1:] == [["1", "1", "5", "5"], ["2+", "2", "2", "4"]]
    without = Page(render_html(build_report(run_dir) | {"duplicate_clusters": {}}))
    assert "Duplicate clusters" in without.sections and "(this stage did not run)" in "".join(without.text)


def test_every_count_names_its_unit_estimated_words_apart_from_tokens(run_dir):
    write_stage3(run_dir)
    stats = json.loads((run_dir / "select" / "stats.json").read_text())
    stats["details"]["tokens_out"] = 360  # select's estimate, beside export's 170 real tokens
    (run_dir / "select" / "stats.json").write_text(json.dumps(stats))
    page = Page(render_html(build_report(run_dir)))
    funnel = page.table_with("lines removed")
    header = funnel[0]
    by_stage = {row[0]: dict(zip(header, row, strict=True)) for row in funnel[1:]}
    assert (by_stage["select"]["estimated words out"], by_stage["select"]["tokens out"]) == ("360", "")
    assert (by_stage["export"]["estimated words out"], by_stage["export"]["tokens out"]) == ("", "170")
    select = page.table_with("kept samples")[0]
    assert "estimated words in" in select and "estimated words change" in select and "tokens in" not in select
    text = "".join(page.text)
    assert "Shares of estimated words" in text and "one per CJK character" in text
    assert "select (its tokens_in and tokens_out are estimated words" in text
