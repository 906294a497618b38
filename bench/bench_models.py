"""Stage 3 tag throughput: documents/s per core inside the Spark job beside a plain Python loop.

Documents: DCLM (English) and ChineseWebText (Chinese) texts from ../shared/data, repeated to
--documents, in the stage 2 layout. Models: fastText defaults bootstrapped from the same texts
(real model size). The plain loop runs `classifiers.tagging.tag_table` (the three default
taggers) in batches of 256 on one core; the Spark job (`jobs.tag.run_tag`, local[N]) is timed twice: the first run includes
starting Python workers and loading models, the second is warm. Per core = documents / seconds / N.
The machine may be shared: the load average is printed with the figures.

    .venv/bin/python bench/bench_models.py [--documents 5000] [--cores 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from bench._smoke import add_smoke_flag, announce, scratch_directory, tiny_data  # noqa: E402
from thresher.pipeline.stagedir import COMMITTED_MARKER  # noqa: E402
from thresher.schemas.documents import RULES  # noqa: E402

QUALITY = REPO.parent / "shared" / "data" / "quality"
WORK = REPO / "bench" / "work" / "tag"


def source_texts(quality: Path = QUALITY) -> list[tuple[str, str, str]]:
    """(url, text, lang) of the real documents (under `quality`) the benchmark repeats."""
    texts = []
    for i, line in enumerate((quality / "dclm" / "majority_data.jsonl").read_text().splitlines()):
        texts.append((f"https://news{i}.example.com/2019/05/story-{i}.html", json.loads(line)["text"], "en"))
    for line in (quality / "chinesewebtext" / "cleared1.jsonl").read_text().splitlines():
        row = json.loads(line)
        texts.append((row["url"], row["raw_content"], "zh"))
    return texts


def write_stage2(directory: Path, count: int, quality: Path = QUALITY) -> pa.Table:
    base = source_texts(quality)
    rows = []
    for i in range(count):
        url, text, lang = base[i % len(base)]
        doc_id = hashlib.sha1(f"bench:{i}".encode()).hexdigest()[:32]
        rows.append(
            {"doc_id": doc_id, "url": url, "domain": url.split("/")[2], "warc_path": "bench", "warc_record_id": doc_id,
             "fetch_time": "2024-01-01T00:00:00Z", "text": text, "lang": lang, "lang_score": 0.9,
             "md5": hashlib.md5(text.encode()).hexdigest(), "lines_removed_dedup": 0, "minhash_cluster": doc_id}
        )
    table = pa.Table.from_pylist(rows, schema=RULES)
    (directory / "documents").mkdir(parents=True)
    pq.write_table(table, directory / "documents" / "part-0.parquet")
    (directory / COMMITTED_MARKER).write_text("{}\n")
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=5000, help="documents to score (default: 5000)")
    parser.add_argument("--cores", type=int, default=2, help="Spark local[N] cores (default: 2)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    quality, work, attempts = QUALITY, WORK, ("cold", "warm")
    if args.smoke:
        announce()
        quality, work, attempts, args.documents, args.cores = tiny_data() / "quality", scratch_directory(), ("cold",), 60, 1

    from thresher.classifiers.base import cached_classifier
    from thresher.classifiers.bootstrap import bootstrap
    from thresher.classifiers.tagging import tag_table
    from thresher.classifiers.topic import load_taxonomy
    from thresher.jobs.tag import resolve_taggers, run_tag
    from thresher.pipeline.config import load_config
    from thresher.schemas.tags import MODEL_FREE_KINDS

    if work.exists():
        shutil.rmtree(work)
    stage2 = work / "stage2"
    table = write_stage2(stage2, args.documents, quality)
    bootstrap([str(stage2)], work / "models", load_taxonomy(), max_documents=len(source_texts(quality)))
    config = load_config()
    taggers = resolve_taggers(config, str(work / "models"))
    batch_size = config.tag.batch_size
    lines = sum(len([x for x in t.split("\n") if x.strip()]) for t in table.column("text").to_pylist())
    print(f"{args.documents} documents, {lines} non-blank lines; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    for tagger in taggers:
        if tagger.kind not in MODEL_FREE_KINDS:  # the pii tagger runs rules: nothing to load
            cached_classifier(tagger.model_dir)  # loading is not scoring: a Spark worker also loads once
    started = time.perf_counter()
    for start in range(0, table.num_rows, batch_size):
        tag_table(table.slice(start, batch_size), taggers)
    loop_seconds = time.perf_counter() - started
    print(f"plain loop, 1 core: {loop_seconds:.1f}s, {args.documents / loop_seconds:.0f} docs/s per core")

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from thresher.jobs.session import spark_session

    spark = spark_session("bench-tag", config.spark, f"local[{args.cores}]")
    spark.sparkContext.setLogLevel("ERROR")
    for attempt in attempts:
        out = work / f"out_{attempt}"
        stats = run_tag(spark, str(stage2), str(out), config, models_dir=str(work / "models"), partitions=args.cores * 4)
        scoring, total = stats["seconds"]["tagging"], stats["seconds"]["total"]
        print(
            f"spark local[{args.cores}] {attempt}: tagging stage {scoring:.1f}s "
            f"({args.documents / scoring / args.cores:.0f} docs/s per core), whole job {total:.1f}s "
            f"({args.documents / total / args.cores:.0f} docs/s per core)"
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
