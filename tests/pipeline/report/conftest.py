import json

import pytest
from stage_rows import stage_stats_json, write_stage


@pytest.fixture
def run_dir(tmp_path):
    docs = [
        {"doc_id": f"d{i}", "text": "héllo world" if i % 2 else "你好", "lang": "en" if i % 2 else "zh"}
        for i in range(5)
    ]
    rejects = [
        {"doc_id": f"r{i}", "url": f"http://spam{i}.example/", "stage": "prepare", "rule": "url_domain_blocklist:gambling", "content": "x" * 500}
        for i in range(7)
    ] + [{"doc_id": "e0", "url": "http://e.example/", "stage": "prepare", "rule": "empty_extraction"}]
    write_stage(tmp_path, "prepare", stage_stats_json("prepare", 13, 5, {"url_domain_blocklist:gambling": 7, "empty_extraction": 1}),
                docs, rejects)
    write_stage(
        tmp_path,
        "rules",
        stage_stats_json("rules", 5, 3, {"minhash_duplicate": 1, "c4:too_few_sentences": 1, "line_dedup": 4},
                         minhash_cluster_sizes={"1": 2, "2": 1}, minhash_documents_hashed=5, lines_removed=4),
        docs[:3],
        [{"doc_id": "d3", "stage": "rules", "rule": "minhash_duplicate", "detail": "d1"},
         {"doc_id": "d4", "stage": "rules", "rule": "c4:too_few_sentences", "detail": "1"}]
        + [{"doc_id": "d0", "stage": "rules", "rule": "line_dedup", "content": f"menu line {i}"} for i in range(4)],
    )
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "manifest.json").write_text(
        json.dumps({"seq_len": 16, "splits": {"train": {"tokens": 170, "sequences": 10, "documents": 4, "source_documents": 3}}})
    )
    (tmp_path / "export" / "stats.json").write_text(json.dumps(stage_stats_json("export", 3, 3)))
    (tmp_path / "run.json").write_text(json.dumps({
        "inputs": ["/crawl/a.warc.gz", "/crawl/<b>.warc.gz"],
        "seconds_per_stage": {"tokenizer": 0.5, "export": 2.0, "prepare": 3.5, "rules": 1.25},
    }))
    return tmp_path
