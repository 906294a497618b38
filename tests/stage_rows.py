"""Stage-2-shaped document rows built from real text, shared by the stage 3 tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from thresher.schemas.documents import PREPARED
from thresher.schemas.rejects import REJECT

# `thresher run` on the bundled sample crawl (tests/jobs/conftest.py: sample_run), small enough to keep the
# tests quick; the recipe's numbers (MinHash 2048 = 128 x 16, ...) stay.
SAMPLE_RUN_OVERRIDES = {
    "export.seq_len": 64,
    "export.vocab_size": 512,
    "export.validation_fraction": 0.2,
    "export.pack_ranges": 2,
    "prepare.files_per_batch": 2,  # so that stage 1 has a crash point between its batches of files
}

# URL shapes the page-type weak labels tell apart: mostly articles, plus forum, shop, listing, video.
URL_SHAPES = ["https://news{i}.example.com/2019/05/story-{i}.html"] * 6 + [
    "https://bbs.example{i}.com/thread-{i}-1-1.html",
    "https://shop{i}.example.com/products/item-{i}",
    "https://www.example{i}.org/tag/page-{i}/",
    "https://video{i}.example.com/videos/{i}",
]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def rules_row(source: str, i: int, url: str, text: str, lang: str) -> dict:
    """One row of schemas.documents.RULES with a stable doc_id from (source, i)."""
    doc_id = hashlib.sha1(f"{source}:{i}".encode()).hexdigest()[:32]
    return {
        "doc_id": doc_id,
        "url": url,
        "domain": url.split("/")[2],
        "warc_path": f"test/{source}",
        "warc_record_id": f"<urn:test:{doc_id}>",
        "fetch_time": "2024-01-01T00:00:00Z",
        "text": text,
        "lang": lang,
        "lang_score": 0.9,
        "md5": hashlib.md5(text.encode()).hexdigest(),
        "lines_removed_dedup": 0,
        "minhash_cluster": doc_id,
    }


def stage3_config(models_dir: Path, quality_model: Path, **overrides):
    """The default config with the test models and the quality tagger switched on."""
    from thresher.pipeline.config import load_config

    return load_config(None, {"tag.model_dir": str(models_dir), "tag.taggers.quality.model_dir": str(quality_model), **overrides})


def stage_stats_json(stage: str, documents_in: int, documents_out: int, rejects_by_rule: dict | None = None,
                     config_digest: str = "0123456789abcdef", rule_stats: dict | None = None, **details) -> dict:
    """A stats.json envelope (schemas.stats) as a stage writes it, for a stage directory built by hand;
    `rule_stats` is the envelope's `rules` (per-rule costs), `details` the stage's own figures."""
    from thresher.schemas.stats import stage_stats

    return stage_stats(stage, thresher_version="test", config_digest=config_digest, started=1.7e9, finished=1.7e9 + 1,
                       phases={}, inputs=[], documents_in=documents_in, documents_out=documents_out,
                       rejects_by_rule=rejects_by_rule or {}, details=details, rules=rule_stats)


def write_stage(run_dir, name, stats, documents, rejects):
    """A committed-looking stage directory: stats.json, PREPARED documents and REJECT rows."""
    stage = run_dir / name
    (stage / "documents").mkdir(parents=True)
    (stage / "rejects").mkdir()
    (stage / "stats.json").write_text(json.dumps(stats))
    full = [{field: doc.get(field) for field in PREPARED.names} for doc in documents]
    pq.write_table(pa.Table.from_pylist(full, schema=PREPARED), stage / "documents" / "part-0.parquet")
    rows = [{field: r.get(field) for field in REJECT.names} for r in rejects]
    pq.write_table(pa.Table.from_pylist(rows, schema=REJECT), stage / "rejects" / "part-0.parquet")


def write_clusters(run_dir, clusters):
    """A rules stage's clusters table (schemas.clusters) built by hand: {kept doc_id: [the other members' doc_ids]};
    each member's diff ends with its doc_id."""
    from thresher.schemas.clusters import CLUSTERS

    rows = [{"cluster_id": kept, "cluster_size": len(others) + 1, "doc_id": doc_id, "kept": doc_id == kept,
             "kept_by": "smallest doc_id", "url": f"http://{doc_id}.example/", "warc_path": "a.warc.gz", "run": "/runs/one/prepare",
             "jaccard": 1.0 if doc_id == kept else 0.8, "diff": None if doc_id == kept else f"@@ kept line 1, member line 1\n-a\n+<b>{doc_id}"}
            for kept, others in clusters.items() for doc_id in [kept, *others]]
    (run_dir / "rules" / "clusters").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows[::-1], schema=CLUSTERS), run_dir / "rules" / "clusters" / "part-0.parquet")


def upload_tree(local: Path, url: str) -> str:
    """Every file below `local` put at the same relative name below `url` (one PUT each, no copy); returns `url`."""
    from thresher.pipeline.stagedir import storage

    fs, root = storage(url)
    for path in sorted(p for p in Path(local).rglob("*") if p.is_file()):
        fs.pipe_file(f"{root}/{path.relative_to(local).as_posix()}", path.read_bytes())
    return url


def committed_names(url: str) -> list[str]:
    """Every object below the stage directory at `url`, by its name relative to it, sorted."""
    from thresher.pipeline.stagedir import storage

    fs, root = storage(url)
    fs.invalidate_cache(root)
    return sorted(path[len(root) + 1:] for path in fs.find(root))


def without_timings(stats: dict, *also: str) -> dict:
    """A stage's stats without what depends on when and from where it ran (times, inputs) and `also`."""
    return {k: v for k, v in stats.items() if k not in {"started", "finished", "seconds", "inputs", *also}}
