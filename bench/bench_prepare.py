"""Stage 1 throughput: pages/s per core of the prepare job, beside a plain warcio + trafilatura loop.

The job reads the shared crawl replicated to >= 1,000 pages (so Spark's start-up amortises) in
Spark local mode with one task slot per core. The baseline is the limit the stage can approach:
one process, warcio's ArchiveIterator and trafilatura.extract on the raw bytes, nothing else (no
charset handling, URL filter, language ID, dedup or output).

    .venv/bin/python bench/bench_prepare.py [--copies 3] [--cores N]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, scratch_directory, tiny_data  # noqa: E402

CRAWL = REPO.parent / "shared" / "data" / "crawl"
WORK = REPO / "bench" / "work"


def replicate(copies: int, crawl: Path = CRAWL, work: Path = WORK) -> list[str]:
    """`copies` links to each crawl file, under distinct names (doc ids hash the file name)."""
    directory = work / f"crawl-x{copies}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    files = []
    for copy in range(copies):
        for source in sorted(crawl.glob("*.warc.gz")):
            link = directory / f"copy{copy}-{source.name}"
            link.symlink_to(source)
            files.append(str(link))
    return files


def baseline(files: list[str]) -> tuple[int, float]:
    """Pages and CPU seconds of the plain loop over `files`."""
    import trafilatura
    from warcio.archiveiterator import ArchiveIterator

    pages = 0
    start = time.process_time()
    for path in files:
        with open(path, "rb") as handle:
            for record in ArchiveIterator(handle):
                if record.rec_type == "response":
                    trafilatura.extract(record.content_stream().read())
                    pages += 1
    return pages, time.process_time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=3, help="replicas of the 428-page crawl (default 3: 1,284 pages)")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="Spark local cores (default: all)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    crawl, work = CRAWL, WORK
    if args.smoke:
        announce()
        crawl, work, args.copies, args.cores = tiny_data() / "crawl", scratch_directory(), 1, 1

    from pyspark.sql import SparkSession

    from thresher.jobs.prepare import run_prepare
    from thresher.pipeline.config import load_config

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    files = replicate(args.copies, crawl, work)
    print(f"machine: {os.cpu_count()} cores, load average before {os.getloadavg()[0]:.1f}; Spark local[{args.cores}]")

    started = time.time()
    spark = (
        SparkSession.builder.master(f"local[{args.cores}]").appName("bench-prepare")
        .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", str(args.cores))
        .config("spark.driver.memory", "2g").getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    session_s = time.time() - started
    output = work / "bench-prepare-out"
    shutil.rmtree(output, ignore_errors=True)
    started = time.time()
    stats = run_prepare(spark, files, str(output), load_config())
    job_s = time.time() - started
    spark.stop()
    pages = stats["documents_in"]
    step_seconds = sum(rule["seconds"] for rule in stats["rules"].values())
    print(f"job: {pages} pages in {job_s:.1f}s wall (+{session_s:.1f}s session start) = "
          f"{pages / job_s:.1f} pages/s = {pages / job_s / args.cores:.1f} pages/s per core (wall); "
          f"{stats['documents_out']} documents")
    # Wall-clock inside the per-page steps, summed over tasks (stats.json `rules`; includes the extraction child).
    print(f"job tasks: {step_seconds:.1f}s in the steps = {pages / step_seconds:.1f} pages per step-second; "
          f"per step {json.dumps(stats['rules'])}")

    distinct = sorted(glob.glob(str(crawl / "*.warc.gz")))
    base_pages, base_cpu = baseline(distinct)
    print(f"baseline (1 process, warcio + trafilatura.extract): {base_pages} pages in {base_cpu:.1f}s CPU = "
          f"{base_pages / base_cpu:.1f} pages/s per core")
    print(f"load average after {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
