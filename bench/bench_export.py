"""Export throughput: tokens/s per core of the export job beside a plain `tokenizers` loop (the limit).

    .venv/bin/python bench/bench_export.py [--mb 24] [--cores 2] [--formats parquet,megatron]

The input is the real English (DCLM) and Chinese (ChineseWebText) documents of ../shared/data,
replicated under fresh doc_ids to about --mb megabytes of text, written as a committed stage.
A byte-level BPE (32,768 tokens) is trained on the originals. The limit is --cores processes, one core
each, running `encode_batch` over their share of the same texts in batches of 512
(TOKENIZERS_PARALLELISM=false, as in the executors, where Spark gives each task one core),
measured before and after the job and averaged (the machine may be shared). The job figure is the
wall time of run_export (every stage: input counts, tokenize, pack, shuffle, write shards and
manifest) on local[--cores], divided by the cores; the JVM's and the Python workers' start is
excluded, as a long job amortises it, and with --warm-up-mb so is the JVM's first compilation of
the job's code (an untimed export of a small input first, as when `thresher run` exports after
three other stages in the same session). Wall time on a shared machine swings with other people's
load, so CPU time is reported too: tokens per CPU second of the job (driver, JVM and Python
workers together) beside tokens per CPU second of the loops.

Each of --formats (export.format: parquet, megatron, both) is exported in turn from the same input in
the same session, each timed on its own, with its shards' bytes on disk (Parquet: train/ and
validation/; Megatron: the .bin and .idx files) and its tokens: the Parquet rows' (padding left out,
as it is not text) and the Megatron sequences'.
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

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core for the limit, as one Spark task has

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from bench._smoke import add_smoke_flag, announce, scratch_directory, tiny_data  # noqa: E402
from thresher.pipeline.export.tokenize import load_tokenizer, save_tokenizer, train_byte_level_bpe  # noqa: E402
from thresher.pipeline.stagedir import COMMITTED_MARKER  # noqa: E402
from thresher.schemas.stats import STATS_FILE, stage_stats, stats_json  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def real_texts(data: Path = DATA) -> list[str]:
    texts = []
    for name in ("agreement_data.jsonl", "majority_data.jsonl"):
        texts += [json.loads(line)["text"] for line in (data / "quality/dclm" / name).open()]
    for name in ("cleared1.jsonl", "clean.jsonl", "dirty.jsonl"):
        for line in (data / "quality/chinesewebtext" / name).open():
            record = json.loads(line)
            texts.append(record.get("raw_content") or record.get("text") or "")
    return [t for t in texts if t]


def replicated(texts: list[str], megabytes: float) -> list[str]:
    out, size, target = [], 0, megabytes * 1e6
    while size < target:
        for text in texts:
            out.append(text)
            size += len(text.encode())
            if size >= target:
                break
    return out


def write_stage(directory: Path, texts: list[str], files: int = 8) -> Path:
    """`texts` as a committed stage output (documents/ Parquet with doc_id and text)."""
    if directory.exists():
        shutil.rmtree(directory)
    (directory / "documents").mkdir(parents=True)
    ids = [hashlib.sha1(f"bench/{i}".encode()).hexdigest() for i in range(len(texts))]
    table = pa.table({"doc_id": ids, "text": texts})
    step = -(-len(texts) // files)
    for part in range(files):
        pq.write_table(table.slice(part * step, step), directory / f"documents/part-{part:05d}.parquet")
    (directory / STATS_FILE).write_bytes(stats_json(stage_stats(
        "bench", thresher_version="bench", config_digest="", started=0.0, finished=0.0, phases={}, inputs=[],
        documents_in=len(texts), documents_out=len(texts), rejects_by_rule={}, details={}), str(directory / STATS_FILE)))
    (directory / COMMITTED_MARKER).write_text("{}")
    return directory


def bench_tokenizer(work: Path, vocab_size: int, data: Path = DATA) -> Path:
    directory = work / "tokenizer"
    if not (directory / "tokenizer.json").is_file():
        save_tokenizer(train_byte_level_bpe(real_texts(data), vocab_size, ["<|endoftext|>", "<|pad|>"]), directory,
                       "<|endoftext|>", "<|pad|>")
    return directory


def _encode_share(args: tuple[str, list[str], int]) -> tuple[int, float]:
    tokenizer_dir, texts, batch = args
    backend = load_tokenizer(tokenizer_dir).backend
    cpu_started, tokens = time.process_time(), 0
    for start in range(0, len(texts), batch):
        tokens += sum(len(e) for e in backend.encode_batch(texts[start : start + batch], add_special_tokens=False))
    return tokens, time.process_time() - cpu_started


def limit_tokens_per_second(tokenizer_dir: Path, texts: list[str], cores: int, batch: int = 512):
    """`cores` processes, one core each, run `encode_batch` over their share of `texts`.

    Returns (tokens/s per core by wall time, tokens per CPU second, tokens); the tokenizer is
    loaded before the clock starts, whereas the job's figures include everything.
    """
    import multiprocessing

    shares = [(str(tokenizer_dir), texts[i::cores], batch) for i in range(cores)]
    with multiprocessing.get_context("fork").Pool(cores) as pool:
        pool.map(_encode_share, [(str(tokenizer_dir), texts[:8], batch)] * cores)  # imports and loads
        started = time.perf_counter()
        results = pool.map(_encode_share, shares)
        seconds = time.perf_counter() - started
    tokens = sum(r[0] for r in results)
    return tokens / seconds / cores, tokens / sum(r[1] for r in results), tokens


def tree_cpu_seconds() -> float:
    """CPU seconds used so far by this process and its descendants (JVM, Python workers), reaped ones included."""
    import psutil

    total = 0.0
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def spark_session(cores: int, driver_memory: str = "2g"):
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("bench-export")
        .config("spark.sql.shuffle.partitions", str(2 * cores))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.memory", driver_memory)
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def format_figures(out: Path) -> dict[str, tuple[int, int]]:
    """Per shard kind the export wrote: (tokens of text, bytes on disk), from its manifest and files."""
    manifest = json.loads((out / "manifest.json").read_text())
    figures = {}
    splits = manifest["splits"].values()
    if any(split["shards"] for split in splits):
        size = sum((out / shard["path"]).stat().st_size for split in splits for shard in split["shards"])
        figures["Parquet"] = (sum(split["tokens"] - split["padding_tokens"] for split in splits), size)
    if "megatron" in manifest:
        shards = [shard for split in manifest["megatron"]["splits"].values() for shard in split["shards"]]
        figures["Megatron"] = (sum(shard["tokens"] for shard in shards),
                               sum(shard["bin_bytes"] + shard["idx_bytes"] for shard in shards))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=24, help="megabytes of text to export")
    parser.add_argument("--cores", type=int, default=2, help="Spark local[N]")
    parser.add_argument("--vocab-size", type=int, default=32768)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--work", default=str(REPO / "bench/work/export"), help="scratch directory")
    parser.add_argument("--formats", default="parquet,megatron", help="export.format values to run, in turn")
    parser.add_argument("--warm-up-mb", type=float, default=0,
                        help="first export this many MB untimed, so the JVM has compiled the job's code (0: cold)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    data = DATA
    if args.smoke:
        announce()
        data, args.work = tiny_data(), str(scratch_directory())
        args.mb, args.vocab_size, args.seq_len, args.cores = 0.05, 300, 64, 1
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    texts = replicated(real_texts(data), args.mb)
    stage = write_stage(work / "stage", texts)
    tokenizer_dir = bench_tokenizer(work, args.vocab_size, data)
    limit_before, limit_cpu_before, limit_tokens = limit_tokens_per_second(tokenizer_dir, texts, args.cores)
    print(f"input: {len(texts)} documents, {sum(len(t.encode()) for t in texts) / 1e6:.1f} MB, "
          f"{limit_tokens} tokens (+{len(texts)} EOS)")
    print(f"limit before the job: encode_batch loops on {args.cores} cores: {limit_before:,.0f} tokens/s per core, "
          f"{limit_cpu_before:,.0f} tokens per CPU second")

    from thresher.jobs.export import run_export
    from thresher.pipeline.config import load_config

    started = time.perf_counter()
    spark = spark_session(args.cores)
    # Start the JVM and one Python worker per core before the clock: fixed costs a long job amortises.
    spark.range(args.cores, numPartitions=args.cores).mapInArrow(lambda batches: batches, "id long").count()
    print(f"spark and Python worker start: {time.perf_counter() - started:.1f} s (not counted)")
    settings = {"export.seq_len": args.seq_len, "export.shard_tokens": 4_000_000, "export.validation_fraction": 0.01}
    config = load_config(None, settings)
    if args.warm_up_mb:
        # As in `thresher run`, where the export follows three stages in the same Spark session.
        started = time.perf_counter()
        small = write_stage(work / "warm-up-stage", replicated(texts, args.warm_up_mb))
        run_export(spark, str(small), str(work / "warm-up-out"), str(tokenizer_dir), config)
        print(f"warm-up export of {args.warm_up_mb} MB (JIT, query code generation): "
              f"{time.perf_counter() - started:.1f} s (not counted)")
        shutil.rmtree(work / "warm-up-out")
    figures = {}
    for export_format in args.formats.split(","):
        out = work / f"out-{export_format}"
        if out.exists():
            shutil.rmtree(out)
        started, cpu_started = time.perf_counter(), tree_cpu_seconds()
        stats = run_export(spark, str(stage), str(out), str(tokenizer_dir),
                           load_config(None, {**settings, "export.format": export_format}))
        seconds, cpu_seconds = time.perf_counter() - started, tree_cpu_seconds() - cpu_started
        figures[export_format] = (seconds, cpu_seconds, format_figures(out))
        print(f"export job, format {export_format}, local[{args.cores}]: {seconds:.1f} s, "
              f"{stats['details']['sequences']} packed rows, {stats['details']['shards']} Parquet shards, "
              f"{stats['details'].get('megatron_shards', 0)} Megatron shards; phases {stats['seconds']}")
    spark.stop()
    limit_after, limit_cpu_after, _ = limit_tokens_per_second(tokenizer_dir, texts, args.cores)
    limit, limit_cpu = (limit_before + limit_after) / 2, (limit_cpu_before + limit_cpu_after) / 2
    print(f"limit after the job: {limit_after:,.0f} tokens/s per core, {limit_cpu_after:,.0f} per CPU second")
    for export_format, (seconds, cpu_seconds, shards) in figures.items():
        for name, (tokens, size) in shards.items():
            per_core = tokens / seconds / args.cores
            per_cpu = tokens / cpu_seconds
            print(f"{export_format} export, {name} shards: {tokens} tokens, {size / 1e6:.1f} MB on disk "
                  f"({size / tokens:.2f} bytes per token); by wall time {per_core:,.0f} tokens/s per core = "
                  f"{per_core / limit:.2f} of the limit (mean of before and after, {limit:,.0f}); by CPU time "
                  f"{cpu_seconds:.1f} CPU s (driver, JVM, Python workers), {per_cpu:,.0f} tokens per CPU second = "
                  f"{per_cpu / limit_cpu:.2f} of the limit ({limit_cpu:,.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
