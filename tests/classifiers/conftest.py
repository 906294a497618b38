"""Fixtures for the classifier tests: real labelled text from the shared data, a stage-2-shaped
document set built from it, default models bootstrapped once per session, and a tiny causal LM
(random weights, a tokenizer trained on the documents and the prompt files) for `thresher annotate`."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from stage_rows import URL_SHAPES, read_jsonl, rules_row

from thresher.pipeline.stagedir import COMMITTED_MARKER
from thresher.schemas.documents import RULES

# Small fastText models for tests: same code path, a fraction of the default memory and time.
SMALL_FASTTEXT = {"bucket": 20_000, "dim": 16}


def rules_documents(shared_data: Path) -> list[dict]:
    """RULES rows from DCLM (English) and ChineseWebText (Chinese) documents."""
    quality = shared_data / "quality"
    rows = []

    def add(source: str, i: int, url: str, text: str, lang: str) -> None:
        rows.append(rules_row(source, i, url, text, lang))

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
    (directory / COMMITTED_MARKER).write_text("{}\n")
    return directory


@pytest.fixture(scope="session")
def rules_dir(shared_data, tmp_path_factory) -> Path:
    return write_stage_dir(rules_documents(shared_data), tmp_path_factory.mktemp("rules"))


@pytest.fixture(scope="session")
def bootstrapped(rules_dir, tmp_path_factory) -> tuple[Path, dict]:
    """(models dir, bootstrap summary) made from `rules_dir` with small fastText models."""
    from thresher.classifiers.bootstrap import bootstrap
    from thresher.classifiers.topic import load_taxonomy

    models = tmp_path_factory.mktemp("models")
    return models, bootstrap([str(rules_dir)], models, load_taxonomy(), params=SMALL_FASTTEXT)


@pytest.fixture(scope="session")
def lm_dir(rules_dir, tmp_path_factory) -> Path:
    """A tiny Qwen2ForCausalLM whose tokenizer also learned the prompt templates, label names and topic
    descriptions (so prompts stay short in tokens)."""
    from thresher.classifiers.annotate import shipped_prompts_dir
    from thresher.classifiers.topic import default_topics_file
    from thresher.classifiers.transformers_backend import build_scratch_qwen2
    from thresher.pipeline.stagedir.documents import read_documents

    texts = [row["text"][:1500] for row in read_documents(rules_dir)][:300]
    texts += [path.read_text(encoding="utf-8") for path in sorted(shipped_prompts_dir().glob("*.txt"))]
    texts += [(shipped_prompts_dir() / "labels.yaml").read_text(encoding="utf-8"), default_topics_file().read_text(encoding="utf-8")]
    return build_scratch_qwen2(texts, tmp_path_factory.mktemp("annotator"), head="causal_lm", vocab_size=800, init_std=0.3)


@pytest.fixture(scope="session")
def scorer(lm_dir):
    from thresher.classifiers.label_scoring import CausalLMScorer

    return CausalLMScorer(lm_dir, "cpu")
