"""Export peak memory at 1x and 4x input: shards are written streaming, so memory must stay flat.

    .venv/bin/python bench/bench_export_memory.py [--mb 6] [--scales 1 4]

Each scale runs the export job in a fresh process (Spark local[2], --driver-memory heap) on the real
documents of bench_export.py replicated to scale x --mb megabytes, with a fixed shard size
(`--shard-tokens`) so larger input means more shards, not larger ones. A sampler thread reads the
resident memory of the driver, the JVM and every Python worker every 0.1 s; the peaks are printed.
The JVM's figure is bounded by -Xmx (Spark spills its sorts to disk); the Python workers are where
a non-streaming writer would hold a whole shard.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench import bench_export  # noqa: E402
from bench._smoke import add_smoke_flag, announce, scratch_directory, tiny_data  # noqa: E402


class PeakSampler(threading.Thread):
    """Peak RSS (bytes) of this process, its JVM and its Python workers, sampled until stopped."""

    def __init__(self, interval: float = 0.1):
        super().__init__(daemon=True)
        import psutil

        self.me = psutil.Process()
        self.interval = interval
        self.peaks = {"driver": 0, "jvm": 0, "python_worker_max": 0, "python_workers_sum": 0, "total": 0}
        self._stop_event = threading.Event()

    def run(self) -> None:
        import psutil

        while not self._stop_event.is_set():
            sample = {"driver": self.me.memory_info().rss, "jvm": 0, "python_worker_max": 0, "python_workers_sum": 0}
            for child in self.me.children(recursive=True):
                try:
                    rss, name = child.memory_info().rss, " ".join(child.cmdline()[:3])
                except psutil.Error:
                    continue
                if "java" in name:
                    sample["jvm"] += rss
                elif "pyspark" in name:
                    sample["python_worker_max"] = max(sample["python_worker_max"], rss)
                    sample["python_workers_sum"] += rss
            sample["total"] = sample["driver"] + sample["jvm"] + sample["python_workers_sum"]
            for key, value in sample.items():
                self.peaks[key] = max(self.peaks[key], value)
            time.sleep(self.interval)

    def stop(self) -> dict[str, int]:
        self._stop_event.set()
        self.join()
        return self.peaks


def child(stage: Path, tokenizer: Path, out: Path, shard_tokens: int, driver_memory: str) -> None:
    """One export in this process, printing the peaks and counts as JSON on the last line."""
    from thresher.jobs.export import run_export
    from thresher.pipeline.config import load_config

    sampler = PeakSampler()
    sampler.start()
    spark = bench_export.spark_session(2, driver_memory)
    config = load_config(None, {"export.shard_tokens": shard_tokens, "export.validation_fraction": 0.01})
    started = time.perf_counter()
    stats = run_export(spark, str(stage), str(out), str(tokenizer), config)
    seconds = time.perf_counter() - started
    spark.stop()
    peaks = sampler.stop()
    print(json.dumps({"peaks": peaks, "tokens": stats["details"]["tokens"], "shards": stats["details"]["shards"], "seconds": seconds}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=6, help="megabytes of text at scale 1")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--shard-tokens", type=int, default=1_000_000)
    parser.add_argument("--driver-memory", default="2g", help="JVM heap (local mode: driver and executors)")
    parser.add_argument("--work", default=str(REPO / "bench/work/export-memory"))
    parser.add_argument("--child", nargs=3, metavar=("STAGE", "TOKENIZER", "OUT"), help=argparse.SUPPRESS)
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.child:
        child(*(Path(p) for p in args.child), args.shard_tokens, args.driver_memory)
        return 0
    data, vocab_size = bench_export.DATA, 32768
    if args.smoke:
        announce()
        data, args.work, args.mb, args.scales, vocab_size = tiny_data(), str(scratch_directory()), 0.05, [1], 300
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    tokenizer = bench_export.bench_tokenizer(work, vocab_size, data)
    texts = bench_export.real_texts(data)
    mib = 2**20
    print("| input | tokens | shards | seconds | driver | JVM | largest Python worker | all Python workers | total |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for scale in args.scales:
        stage = bench_export.write_stage(work / f"stage-{scale}x", bench_export.replicated(texts, args.mb * scale))
        out = work / f"out-{scale}x"
        if out.exists():
            shutil.rmtree(out)
        run = subprocess.run(
            [sys.executable, __file__, "--shard-tokens", str(args.shard_tokens), "--driver-memory", args.driver_memory,
             "--child", str(stage), str(tokenizer), str(out)],
            capture_output=True, text=True, check=True,
        )
        result = json.loads(run.stdout.strip().splitlines()[-1])
        peaks = result["peaks"]
        print(f"| {scale}x ({args.mb * scale:g} MB) | {result['tokens']:,} | {result['shards']} | {result['seconds']:.0f} | "
              + " | ".join(f"{peaks[k] / mib:.0f} MiB" for k in ("driver", "jvm", "python_worker_max",
                                                                  "python_workers_sum", "total")) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
