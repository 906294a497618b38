"""Fixtures for the classifier tests: real labelled text from the shared data, a stage-2-shaped
document set built from it, and default models bootstrapped once per session."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas.documents import RULES

# Small fastText models for tests: same code path, a fraction of the default memory and time.
SMALL_FASTTEXT = {"bucket": 20_000, "dim": 16}

# URL shapes given to the DCLM documents (which come without URLs), so page-type rules see variety.
URL_SHAPES = ["https://news{i}.example.com/2019/05/story-{i}.html"] * 6 + [
    "https://bbs.example{i}.com/thread-{i}-1-1.html",
    "https://shop{i}.example.com/products/item-{i}",
    "https://www.example{i}.org/tag/page-{i}/",
    "https://video{i}.example.com/videos/{i}",
]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def rules_documents(shared_data: Path) -> list[dict]:
    """RULES rows from DCLM (English) and ChineseWebText (Chinese) documents."""
    quality = shared_data / "quality"
    rows = []

    def add(source: str, i: int, url: str, text: str, lang: str) -> None:
        doc_id = hashlib.sha1(f"{source}:{i}".encode()).hexdigest()[:32]
        rows.append(
            {
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
        )

    for i, row in enumerate(read_jsonl(quality / "dclm" / "majority_data.jsonl")):
        add("dclm", i, URL_SHAPES[i % len(URL_SHAPES)].format(i=i), row["text"], "en")
    for i, row in enumerate(read_jsonl(quality / "chinesewebtext" / "cleared1.jsonl")):
        add("cwt", i, row["url"], row["raw_content"], "zh")
    for name in ("clean", "dirty"):
        for i, row in enumerate(read_jsonl(quality / "chinesewebtext" / f"{name}.jsonl")):
            add(name, i, f"https://zh{i}.example.cn/article/{name}-{i}.html", row["text"], "zh")
    return rows


def write_stage_dir(rows: list[dict], directory: Path) -> Path:
    """A committed stage-2-shaped output: documents/ Parquet and the _COMMITTED marker."""
    (directory / "documents").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=RULES), directory / "documents" / "part-0.parquet")
    (directory / "_COMMITTED").write_text("{}\n")
    return directory


@pytest.fixture(scope="session")
def rules_dir(shared_data, tmp_path_factory) -> Path:
    return write_stage_dir(rules_documents(shared_data), tmp_path_factory.mktemp("rules"))


@pytest.fixture(scope="session")
def bootstrapped(rules_dir, tmp_path_factory) -> tuple[Path, dict]:
    """(models dir, bootstrap summary) made from `rules_dir` with small fastText models."""
    from classifiers.bootstrap import bootstrap
    from classifiers.topic import load_taxonomy

    models = tmp_path_factory.mktemp("models")
    return models, bootstrap([str(rules_dir)], models, load_taxonomy(), params=SMALL_FASTTEXT)
