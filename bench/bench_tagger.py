"""Tagger throughput: a transformers classifier in a Spark job (mapInArrow, as stage 3 runs it) beside
a plain single-process loop of the same model over the same texts (the limit).

    python bench/bench_tagger.py                  # CPU: a small Qwen2 tagger, 128 tokens per document
    python bench/bench_tagger.py --gpu            # a Qwen2-1.5B-shaped tagger, 512 tokens per document

The model is a Qwen2ForSequenceClassification built from its config with random weights (no
downloads) and a byte-level BPE tokenizer trained here on real web documents (DCLM, ChineseWebText
in ../shared/data), joined into documents long enough to fill `--max-length` tokens. Targets: the
Spark job at >= 0.9x the plain loop; on one H200 >= 130k tokens/s, half of the bf16 limit
(~790 TFLOP/s / (2 x 1.5e9 FLOP per token) ~ 260k tokens/s).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHARED = REPO.parent / "shared" / "data" / "quality"
# Qwen2-1.5B (config.json of Qwen/Qwen2-1.5B), as the seed's page-type classifier.
QWEN2_1_5B = {
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
    "rope_theta": 1_000_000.0,
    "rms_norm_eps": 1e-6,
}
SMALL = {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2}
H200_BF16_FLOPS = 790e12  # dense bf16 tensor-core peak the target is derived from


def real_texts() -> list[str]:
    texts = []
    for path, field in ((SHARED / "dclm" / "majority_data.jsonl", "text"), (SHARED / "chinesewebtext" / "cleared1.jsonl", "raw_content")):
        with open(path, encoding="utf-8") as lines:
            texts += [json.loads(line)[field] for line in lines if line.strip()]
    return [t for t in texts if t]


def documents(count: int, min_chars: int) -> list[str]:
    """`count` documents of at least `min_chars` characters, each a run of real texts (cycled)."""
    texts, out, i = real_texts(), [], 0
    while len(out) < count:
        parts, size = [], 0
        while size < min_chars:
            parts.append(texts[i % len(texts)])
            size += len(parts[-1])
            i += 1
        out.append("\n".join(parts))
        i += 7 * len(out)  # a different mix for each document
    return out


def build_tagger(directory: Path, shape: dict, texts: list[str], max_length: int, token_budget: int, gpu: bool) -> Path:
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForSequenceClassification

    from classifiers.transformers_backend import InferenceSettings, TransformersClassifier, build_scratch_qwen2

    base = build_scratch_qwen2(texts[:400], directory / "base", vocab_size=8000, layers=1, hidden_size=32, heads=2, kv_heads=1)
    tokenizer = AutoTokenizer.from_pretrained(base)
    config = Qwen2Config(**{"vocab_size": len(tokenizer), **shape, "pad_token_id": tokenizer.pad_token_id, "num_labels": 8})
    torch.manual_seed(0)
    with torch.device("cuda" if gpu else "cpu"):
        model = Qwen2ForSequenceClassification(config).to(torch.bfloat16 if gpu else torch.float32)
    settings = InferenceSettings(max_length=max_length, token_budget=token_budget)
    classifier = TransformersClassifier(model, tokenizer, [f"label{i}" for i in range(8)], settings)
    path = classifier.save(directory / "tagger")
    del classifier, model
    if gpu:
        torch.cuda.empty_cache()
    return path


def tag_batches(batches, model_dir: str, load_seconds, model_seconds):
    """The mapInArrow body: the worker's cached classifier scores each Arrow batch's texts; the time
    spent loading the model and inside predict_proba goes to two accumulators."""
    import pyarrow as pa

    from classifiers.base import cached_classifier

    started = time.perf_counter()
    classifier = cached_classifier(model_dir)
    load_seconds.add(time.perf_counter() - started)
    for batch in batches:
        started = time.perf_counter()
        probs = classifier.predict_proba(batch.column("text").to_pylist())
        model_seconds.add(time.perf_counter() - started)
        yield pa.RecordBatch.from_pydict({"doc_id": batch.column("doc_id"), "score": pa.array(probs[:, 0])})


def plain_run(classifier, texts: list[str], chunk: int) -> float:
    """Seconds for one pass of the plain loop: predict_proba over the texts, `chunk` at a time."""
    _sync()
    started = time.perf_counter()
    for start in range(0, len(texts), chunk):
        classifier.predict_proba(texts[start : start + chunk])
    _sync()
    return time.perf_counter() - started


def spark_session(chunk: int, threads: int):
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master("local[1]")
        .appName("bench-tagger")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "4g")
        .config("spark.executorEnv.OMP_NUM_THREADS", str(threads))  # as the plain loop's torch threads
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(chunk))  # = the plain loop's chunk
        .config("spark.sql.files.maxPartitionBytes", str(1 << 40))  # one task (one GPU or core), like the loop
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def spark_run(spark, parquet: str, model_dir: Path) -> tuple[float, float, float]:
    """(seconds, seconds inside predict_proba, seconds loading the model) of one Spark tag job."""
    load_seconds, model_seconds = spark.sparkContext.accumulator(0.0), spark.sparkContext.accumulator(0.0)
    tag = functools.partial(tag_batches, model_dir=str(model_dir), load_seconds=load_seconds, model_seconds=model_seconds)
    started = time.perf_counter()
    spark.read.parquet(parquet).mapInArrow(tag, "doc_id long, score double").write.format("noop").mode("overwrite").save()
    return time.perf_counter() - started, model_seconds.value, load_seconds.value


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _free() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="Qwen2-1.5B-shaped tagger on the GPU (default: small tagger on CPU)")
    parser.add_argument("--documents", type=int, help="documents to tag (default: 600 CPU, 8192 GPU)")
    parser.add_argument("--max-length", type=int, help="tokens per document (default: 128 CPU, 512 GPU)")
    parser.add_argument("--token-budget", type=int, default=32768, help="padded tokens per forward pass (default: 32768)")
    parser.add_argument("--chunk", type=int, default=1024, help="documents per predict_proba call / Arrow batch (default: 1024)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads in both runs (default: 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each; the best counts (default: 3)")
    parser.add_argument("--skip-spark", action="store_true", help="plain loop only")
    args = parser.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu: no CUDA device visible")
    torch.set_num_threads(args.threads)
    count = args.documents or (8192 if args.gpu else 600)
    max_length = args.max_length or (512 if args.gpu else 128)
    shape = QWEN2_1_5B if args.gpu else SMALL
    texts = documents(count, min_chars=max_length * 8)
    with tempfile.TemporaryDirectory(prefix="bench-tagger-") as work:
        work = Path(work)
        model_dir = build_tagger(work, shape, texts, max_length, args.token_budget, args.gpu)
        parquet = str(work / "docs.parquet")
        pq.write_table(pa.table({"doc_id": list(range(count)), "text": texts}), parquet)
        from classifiers.base import load_classifier

        classifier = load_classifier(model_dir)
        tokens = sum(len(ids) for ids in classifier._token_ids(texts))
        params = sum(_param_counts(shape).values())
        print(f"tagger: Qwen2 {shape['num_hidden_layers']} layers x {shape['hidden_size']} ({params / 1e9:.3f}B non-embedding params), "
              f"{count} documents, {tokens} tokens ({tokens / count:.0f} per document), token budget {args.token_budget}, "
              f"device {classifier.device}")
        spark = None if args.skip_spark else spark_session(args.chunk, args.threads)
        # Warm-up (not timed): kernels and allocator in the driver, the model loaded into the Spark worker.
        plain_run(classifier, texts[: args.chunk], args.chunk)
        if spark is not None:
            print(f"             spark warm-up: {spark_run(spark, parquet, model_dir)[2]:.2f} s loading the model in the worker")
        # Plain and Spark runs alternate, so a change in the machine's load hits both alike.
        loop_runs, spark_runs = [], []
        for run in range(1, args.repeats + 1):
            loop_runs.append(plain_run(classifier, texts, args.chunk))
            if spark is not None:
                seconds, in_model, loading = spark_run(spark, parquet, model_dir)
                spark_runs.append(seconds)
                print(f"             run {run}: plain {loop_runs[-1]:.2f} s; spark {seconds:.2f} s, of which {in_model:.2f} s in "
                      f"predict_proba, {loading:.2f} s loading the model")
        loop_seconds = min(loop_runs)
        print(f"plain loop : {loop_seconds:8.2f} s  {count / loop_seconds:9.1f} docs/s  {tokens / loop_seconds:10.0f} tokens/s  "
              f"(best of {_runs(loop_runs)})")
        if args.gpu:
            limit = H200_BF16_FLOPS / (2 * params)
            rate = tokens / loop_seconds
            print(f"             bf16 limit at 2 x {params / 1e9:.2f}e9 FLOP/token: {limit:,.0f} tokens/s; plain loop at "
                  f"{rate / limit:.2f} of it (target >= 130,000 tokens/s: {'met' if rate >= 130_000 else 'NOT met'})")
            print(f"             peak GPU memory (driver process) {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
        if spark is not None:
            spark_seconds = min(spark_runs)
            ratio = loop_seconds / spark_seconds
            print(f"spark job  : {spark_seconds:8.2f} s  {count / spark_seconds:9.1f} docs/s  {tokens / spark_seconds:10.0f} tokens/s  "
                  f"= {ratio:.2f}x the plain loop (target >= 0.9x: {'met' if ratio >= 0.9 else 'NOT met'}) (best of {_runs(spark_runs)})")
            if args.gpu:
                print(f"             spark at {tokens / spark_seconds / 130_000:.2f}x the 130,000 tokens/s target")
            spark.stop()
    return 0


def _runs(seconds: list[float]) -> str:
    return ", ".join(f"{s:.2f}" for s in seconds) + " s"


def _param_counts(shape: dict) -> dict[str, int]:
    """Non-embedding parameters per kind: attention (q, k, v, o) and MLP (gate, up, down) per layer."""
    hidden, inter, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    head_dim = hidden // shape["num_attention_heads"]
    kv = shape["num_key_value_heads"] * head_dim
    return {"attention": layers * (2 * hidden * hidden + 2 * hidden * kv), "mlp": layers * 3 * hidden * inter}


if __name__ == "__main__":
    sys.exit(main())
