"""Stage 1 memory: peak RSS of the Python worker while the prepare job reads a ~1 GB WARC file.

Builds bench/work/crawl-1gb.warc.gz by concatenating the shared crawl files (gzip members
concatenate into a valid WARC), runs the job on it in Spark local mode (one file = one task), and
reports the Python workers' peak RSS two ways: psutil polling of every pyspark daemon/worker
process under this driver, and ru_maxrss measured inside the task (stats.json worker_max_rss_mb);
then the extraction child's peak (it runs the pre-check, which is on as shipped, and trafilatura).

    .venv/bin/python bench/bench_prepare_memory.py [--target-mb 1024]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, scratch_directory, tiny_data  # noqa: E402

CRAWL = REPO.parent / "shared" / "data" / "crawl"
WORK = REPO / "bench" / "work"


def build(target_bytes: int, crawl: Path = CRAWL, work: Path = WORK) -> Path:
    path = work / "crawl-1gb.warc.gz"
    if path.is_file() and path.stat().st_size >= target_bytes:
        return path
    work.mkdir(parents=True, exist_ok=True)
    sources = [p.read_bytes() for p in sorted(crawl.glob("*.warc.gz"))]
    written = 0
    with open(path, "wb") as out:
        while written < target_bytes:
            for data in sources:
                out.write(data)
                written += len(data)
    return path


class WorkerRssPoller(threading.Thread):
    """Polls the RSS of every Python process below this one that runs pyspark's daemon or worker,
    and how far the worker has read into `input_path` (its file offset, from /proc)."""

    def __init__(self, input_path: Path, interval_s: float = 0.5):
        super().__init__(daemon=True)
        self.input_path = input_path
        self.interval_s = interval_s
        self.peak_bytes = 0
        self.peak_pid = None
        self.read_bytes = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        last_report = time.time()
        while not self.stopped.wait(self.interval_s):
            for child in me.children(recursive=True):
                try:
                    # Python workers only: the JVM's command line mentions pyspark too (its classpath).
                    if "pyspark.daemon" not in " ".join(child.cmdline()):
                        continue
                    rss = child.memory_info().rss
                    self.read_bytes = max(self.read_bytes, self._input_offset(child.pid))
                except psutil.Error:
                    continue
                if rss > self.peak_bytes:
                    self.peak_bytes, self.peak_pid = rss, child.pid
            if time.time() - last_report > 60:
                done = self.read_bytes / self.input_path.stat().st_size
                print(f"\n  ... {done:.0%} of the input read; peak Python worker RSS so far "
                      f"{self.peak_bytes / 2**20:.0f} MiB", flush=True)
                last_report = time.time()

    def _input_offset(self, pid: int) -> int:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == str(self.input_path):
                    for line in Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text().splitlines():
                        if line.startswith("pos:"):
                            return int(line.split()[1])
            except OSError:
                continue
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-mb", type=int, default=1024, help="size of the WARC file to build (MiB)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    crawl, work, target_bytes = CRAWL, WORK, args.target_mb * 2**20
    if args.smoke:  # one copy of each crawl file
        announce()
        crawl, work, target_bytes = tiny_data() / "crawl", scratch_directory(), 1

    from pyspark.sql import SparkSession

    from thresher.jobs.prepare import run_prepare
    from thresher.pipeline.config import load_config

    path = build(target_bytes, crawl, work)
    print(f"input: {path} ({path.stat().st_size / 2**20:.0f} MiB)", flush=True)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master("local[1]").appName("bench-prepare-memory")
        .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "2g").config("spark.ui.showConsoleProgress", "false").getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    output = work / "bench-memory-out"
    shutil.rmtree(output, ignore_errors=True)
    poller = WorkerRssPoller(path)
    poller.start()
    started = time.time()
    stats = run_prepare(spark, [str(path)], str(output), load_config())
    poller.stopped.set()
    poller.join()
    spark.stop()
    print(f"pages: {stats['documents_in']} in {time.time() - started:.0f}s; documents {stats['documents_out']}")
    print(f"peak Python worker RSS (psutil polling): {poller.peak_bytes / 2**20:.0f} MiB")
    print(f"peak Python worker RSS (ru_maxrss in the task): {stats['details']['worker_max_rss_mb']:.0f} MiB")
    precheck_drops = sum(count for rule, count in stats["rejects_by_rule"].items() if "_precheck" in rule)
    print(f"peak extraction child RSS (ru_maxrss, mostly shared with the worker): "
          f"{stats['details']['extract_process_max_rss_mb']:.0f} MiB; pre-check on, {precheck_drops} pages dropped by it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
