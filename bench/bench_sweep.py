"""A three-point sweep of select.line_thresholds.clutter (`thresher sweep`, jobs.sweep.run_sweep) against
three independent `thresher run`s of the same values, on the shared crawl (../shared/data/crawl/*.warc.gz).

One Spark session (local[*]) for both, started before either is timed. The sweep runs first, so any
warm-up benefits the independent runs. Checked, not only timed: the sweep ran tag and the tokenizer
once (the later values ran select and export only), every value's manifest names one tokenizer, and
every value's shards decode with it to exactly its own selected texts (the first copy of each
document, through the export's document index).

    .venv/bin/python bench/bench_sweep.py [--values 0,0.3,0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, scratch_directory, tiny_data  # noqa: E402

CRAWL = REPO.parent / "shared" / "data" / "crawl"
WORK = REPO / "bench" / "work" / "sweep"
KEY = "select.line_thresholds.clutter"
SMOKE_OVERRIDES = {"export.seq_len": 64, "export.vocab_size": 512, "export.pack_ranges": 2}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", default="0,0.3,0.5", help=f"the values of {KEY} (default 0,0.3,0.5)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    crawl, work, overrides = CRAWL, WORK, {}
    if args.smoke:  # two values: three runs' worth of stages in the smoke's time
        announce()
        crawl, work, overrides, args.values = tiny_data() / "crawl", scratch_directory(), SMOKE_OVERRIDES, "0,0.5"
    inputs = sorted(str(path) for path in crawl.glob("*.warc.gz"))
    if not inputs:
        print(f"no crawl at {crawl}/*.warc.gz", file=sys.stderr)
        return 1
    shutil.rmtree(work, ignore_errors=True)  # the bench's own scratch from an earlier run
    work.mkdir(parents=True)
    return _measure(inputs, work, args.values.split(","), overrides)


def _measure(inputs: list[str], work: Path, texts: list[str], overrides: dict) -> int:
    import yaml

    from thresher.jobs.run import run_pipeline
    from thresher.jobs.session import spark_session
    from thresher.jobs.sweep import TABLE_FILE, first_copy_tokens, run_sweep
    from thresher.pipeline.config import load_config
    from thresher.pipeline.export.tokenize import load_tokenizer

    points = [(text, load_config(None, {**overrides, KEY: yaml.safe_load(text)})) for text in texts]
    print(f"machine: {os.cpu_count()} cores, load average before {os.getloadavg()[0]:.1f}; {len(inputs)} WARC files "
          f"({sum(os.path.getsize(path) for path in inputs) / 2**20:.1f} MiB); {KEY} = {', '.join(texts)}", flush=True)
    spark = spark_session("bench-sweep", points[0][1].spark, f"local[{os.cpu_count()}]")

    started = time.perf_counter()
    summary = run_sweep(spark, inputs, str(work / "sweep"), KEY, points)
    sweep_seconds = time.perf_counter() - started
    independent = []
    started = time.perf_counter()
    for text, config in points:
        info = run_pipeline(spark, inputs, str(work / f"run-{text}"), config)
        independent.append(info)
    independent_seconds = time.perf_counter() - started
    spark.stop()

    rows = summary["points"]
    once = rows[0]["stages_run"] and all(row["stages_run"] == ["select", "export"] for row in rows[1:])
    manifests = [json.loads((work / "sweep" / row["directory"] / "export" / "manifest.json").read_text()) for row in rows]
    shas = {manifest["tokenizer"]["sha256"] for manifest in manifests}
    tokenizer = load_tokenizer(str(work / "sweep" / rows[0]["directory"] / "tokenizer"))
    decodes = True
    for row in rows:
        point = work / "sweep" / row["directory"]
        selected = {r["doc_id"]: r["text"] for r in pq.read_table(point / "select" / "documents", columns=["doc_id", "text"]).to_pylist()}
        decoded = {doc_id: tokenizer.decode(ids[:-1]) for doc_id, ids in first_copy_tokens(point / "export").items()}
        decodes = decodes and bool(decoded) and all(selected.get(doc_id) == text for doc_id, text in decoded.items())
    independent_shas = {json.loads((work / f"run-{text}" / "export" / "manifest.json").read_text())["tokenizer"]["sha256"]
                        for text in texts}
    print((work / "sweep" / TABLE_FILE).read_text(), end="")
    for row in rows:
        print(f"sweep {KEY}={row['value']}: {row['seconds']:.1f}s ({', '.join(row['stages_run'])})")
    for text, info in zip(texts, independent, strict=True):
        stages = ", ".join(f"{stage} {info['seconds_per_stage'][stage]:.1f}s" for stage in info["stages_run"])
        print(f"independent run {KEY}={text}: {stages}")
    print(f"sweep: {len(rows)} values in {sweep_seconds:.1f}s; tag and tokenizer run once: {bool(once)}; "
          f"one tokenizer for every value: {len(shas) == 1}; every value's shards decode to its selected texts: {decodes}")
    print(f"independent: {len(texts)} runs in {independent_seconds:.1f}s; their tokenizers identical (trained on rules/): "
          f"{independent_shas == shas}")
    print(f"sweep / independent: {sweep_seconds / independent_seconds:.2f}x the time")
    print(f"load average after {os.getloadavg()[0]:.1f}")
    return 0 if once and len(shas) == 1 and decodes else 1


if __name__ == "__main__":
    sys.exit(main())
