"""Peak memory of the rules job (Spark local mode) at 1x, 2x and 4x input: per-document cost stays flat.

    .venv/bin/python bench/bench_rules_memory.py [--base-docs N] [--master local[2]]

Input: the DCLM documents repeated with word-level edits (so MinHash sees near-duplicate clusters and
line dedup sees repeated edge lines), written as a stage-1 output. Each scale runs in a fresh child
process (a fresh JVM); the parent polls the RSS of the whole process tree (driver JVM, which hosts
the local-mode executor, plus the Python workers) every 0.2 s with psutil.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, tiny_data  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "quality" / "dclm"

CHILD = """
import sys, json
from pyspark.sql import SparkSession
from thresher.jobs.rules import run_rules
from thresher.pipeline.config import load_config
spark = (SparkSession.builder.master(sys.argv[3]).config("spark.ui.enabled", "false")
         .config("spark.sql.shuffle.partitions", "8").config("spark.driver.memory", sys.argv[4]).getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
stats = run_rules(spark, sys.argv[1], sys.argv[2], load_config())
print("STATS " + json.dumps(stats))
"""


def write_input(directory: Path, count: int, dclm: Path = DATA) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from thresher.pipeline.stagedir import COMMITTED_MARKER
    from thresher.schemas.documents import PREPARED

    texts = [
        json.loads(line)["text"] for name in ("agreement", "majority") for line in (dclm / f"{name}_data.jsonl").open()
    ]
    rng = random.Random(0)
    rows = []
    for index in range(count):
        words = texts[index % len(texts)].split(" ")
        for position in rng.sample(range(len(words)), max(1, len(words) // 20)):
            words[position] = rng.choice(words)
        text = " ".join(words)
        doc_id = hashlib.sha1(f"doc-{index}".encode()).hexdigest()[:16]
        rows.append(
            {
                "doc_id": doc_id,
                "url": f"https://example.org/{index}",
                "domain": "example.org",
                "warc_path": "bench",
                "warc_record_id": str(index),
                "fetch_time": "2024-01-01T00:00:00Z",
                "text": text,
                "lang": "en",
                "lang_score": 0.99,
                "md5": hashlib.md5(text.encode()).hexdigest(),
            }
        )
    (directory / "documents").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=PREPARED), directory / "documents" / "part-0.parquet")
    (directory / COMMITTED_MARKER).write_text("{}")


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-docs", type=int, default=2000, help="documents at scale 1x")
    parser.add_argument("--master", default="local[2]", help="Spark master for the child runs")
    parser.add_argument(
        "--driver-memory", default="2g",
        help="JVM heap of the child (hosts the executor in local mode); cap it to tell data from lazy heap growth",
    )
    parser.add_argument("--scales", default="1,2,4", help="input multiples of --base-docs to run")
    add_smoke_flag(parser)
    args = parser.parse_args()
    dclm = DATA
    if args.smoke:
        announce()
        dclm, args.base_docs, args.master, args.scales = tiny_data() / "quality" / "dclm", 20, "local[1]", "1"
    print(f"{'scale':>5} {'docs':>6} {'out':>6} {'seconds':>8} {'peak RSS MiB':>12} {'KiB/doc over 1x':>16}")
    baseline = None
    for scale in (int(x) for x in args.scales.split(",")):
        count = args.base_docs * scale
        with tempfile.TemporaryDirectory() as tmp:
            write_input(Path(tmp) / "in", count, dclm)
            start = time.perf_counter()
            child = subprocess.Popen(
                [sys.executable, "-c", CHILD, f"{tmp}/in", f"{tmp}/out", args.master, args.driver_memory],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                env={**os.environ, "PYTHONPATH": str(REPO), "PYSPARK_PYTHON": sys.executable},
            )
            watched, peak = psutil.Process(child.pid), 0
            while child.poll() is None:
                peak = max(peak, tree_rss(watched))
                time.sleep(0.2)
            output = child.stdout.read()
            seconds = time.perf_counter() - start
        stats = json.loads(next(line[6:] for line in output.splitlines() if line.startswith("STATS ")))
        if baseline is None:
            baseline = (count, peak)
            marginal = "-"
        else:
            marginal = f"{(peak - baseline[1]) / (count - baseline[0]) / 1024:.1f}"
        print(f"{scale:>5} {count:>6} {stats['documents_out']:>6} {seconds:8.1f} {peak / 2**20:12.0f} {marginal:>16}")
        print(f"      peak/doc {peak / count / 1024:.1f} KiB; minhash clusters {stats['details']['minhash_cluster_sizes']}")


if __name__ == "__main__":
    main()
