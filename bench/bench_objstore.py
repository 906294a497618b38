"""Object storage against local disk: the same `thresher run`, once into a local directory and once from and
into a local S3 server (moto, loopback), in one Spark session, alternating, in one run of this script.

The input is the shared crawl (428 pages, `--copies` times under distinct names), uploaded to the server
before the clock starts. After one untimed round of both (it warms the JVM, the Python workers and the
S3 clients alike), each target runs `--rounds` times in alternating order (disk, s3, s3, disk, ...); the
figure is the median wall time of the whole pipeline per target and their ratio, printed beside the
limit issue 24 sets (1.15x), with each stage's medians.

    .venv/bin/python bench/bench_objstore.py [--copies 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, scratch_directory, tiny_data  # noqa: E402

CRAWL = REPO.parent / "shared" / "data" / "crawl"
WORK = REPO / "bench" / "work"
LIMIT = 1.15  # object storage at most 1.15x local disk (issue 24)
# The settings of the test suite's runs: a small tokenizer and short sequences, so the export is not the run.
OVERRIDES = {"export.seq_len": 256, "export.vocab_size": 4096}


def replicate(copies: int, crawl: Path, work: Path) -> list[str]:
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


def start_s3_server() -> tuple[subprocess.Popen, str]:
    """moto's S3 server in its own process on a free loopback port (not in this one: no GIL shared with the driver)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, endpoint
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the S3 server did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=1, help="replicas of the 428-page crawl (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs per target, alternating (default 3)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    crawl, work = CRAWL, WORK
    if args.smoke:
        announce()
        crawl, work, args.copies, args.rounds = tiny_data() / "crawl", scratch_directory(), 1, 1

    server, endpoint = start_s3_server()
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL": endpoint, "AWS_EC2_METADATA_DISABLED": "true"})
    try:
        return _measure(args, crawl, work)
    finally:
        server.kill()


def _measure(args, crawl: Path, work: Path) -> int:
    import fsspec

    from thresher.jobs.run import run_pipeline
    from thresher.jobs.session import spark_session
    from thresher.pipeline.config import load_config

    files = replicate(args.copies, crawl, work)
    s3 = fsspec.filesystem("s3")
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    s3.mkdir(bucket)
    remote = []
    for path in files:
        s3.put_file(path, f"{bucket}/crawl/{Path(path).name}")
        remote.append(f"s3://{bucket}/crawl/{Path(path).name}")
    config = load_config(None, OVERRIDES)
    print(f"machine: {os.cpu_count()} cores, load average before {os.getloadavg()[0]:.1f}; "
          f"{len(files)} WARC files; S3 server {os.environ['AWS_ENDPOINT_URL']} (moto, loopback)")
    spark = spark_session("bench-objstore", config.spark, f"local[{os.cpu_count()}]")
    spark.sparkContext.environment.update({name: os.environ[name] for name in (
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_EC2_METADATA_DISABLED")})
    seconds: dict[str, list[float]] = {"disk": [], "s3": []}
    per_stage: dict[str, dict[str, list[float]]] = {"disk": {}, "s3": {}}
    # A first, untimed round warms the JVM, the Python workers and the S3 clients for both targets alike.
    order = [("disk", "s3")] * (not args.smoke) + [("disk", "s3") if i % 2 == 0 else ("s3", "disk") for i in range(args.rounds)]
    for number, targets in enumerate(order):
        timed = args.smoke or number > 0
        for target in targets:
            if target == "disk":
                output = str(work / f"bench-objstore-{number}")
                shutil.rmtree(output, ignore_errors=True)
                inputs = files
            else:
                output, inputs = f"s3://{bucket}/out-{number}", remote
            started = time.perf_counter()
            run_info = run_pipeline(spark, inputs, output, config)
            took = time.perf_counter() - started
            stages = ", ".join(f"{stage} {run_info['seconds_per_stage'][stage]:.1f}s" for stage in run_info["stages_run"])
            print(f"{'round ' + str(number + args.smoke) if timed else 'warm-up'} {target:>4}: {took:.1f}s ({stages})",
                  flush=True)
            if timed:
                seconds[target].append(took)
                for stage in run_info["stages_run"]:
                    per_stage[target].setdefault(stage, []).append(run_info["seconds_per_stage"][stage])
            if target == "disk":
                shutil.rmtree(output, ignore_errors=True)
    spark.stop()
    disk, on_s3 = statistics.median(seconds["disk"]), statistics.median(seconds["s3"])
    ratio = on_s3 / disk
    print("per stage, median: " + ", ".join(
        f"{stage} {statistics.median(per_stage['disk'][stage]):.1f}s / {statistics.median(per_stage['s3'][stage]):.1f}s"
        for stage in per_stage["disk"]) + " (local disk / S3)")
    print(f"whole run, median of {args.rounds}: local disk {disk:.1f}s, S3 {on_s3:.1f}s: "
          f"{ratio:.2f}x (limit {LIMIT:.2f}x): {'within' if ratio <= LIMIT else 'OVER'}")
    print(f"load average after {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
