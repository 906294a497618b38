"""Tagger throughput: a transformers classifier in a Spark job (mapInArrow, as stage 3 runs it) beside
a plain single-process loop of the same model over the same texts (the limit).

    python bench/bench_tagger.py                  # CPU: a small Qwen2 tagger, 128 tokens per document
    python bench/bench_tagger.py --gpu            # a Qwen2-1.5B-shaped tagger, 512 tokens per document

The model is a Qwen2ForSequenceClassification built from its config with random weights (no
downloads) and a byte-level BPE tokenizer trained here on real web documents (DCLM, ChineseWebText
in ../shared/data), joined into documents long enough to fill `--max-length` tokens. The Spark side
is `thresher tag`'s own: its session from config `spark` (log level included), its tagger resolved
from config `tag` and `transformers` (the token budget arrives as a `transformers` override, which
the plain loop gets too), the job's input reader and mapInArrow body; --config and --set change them
as for the job. Targets: the Spark job at >= 0.9x the plain loop; on one H200 >= 130k tokens/s, half of the bf16 limit
(~790 TFLOP/s / (2 x 1.5e9 FLOP per token) ~ 260k tokens/s).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, tiny_data  # noqa: E402
from thresher.jobs.session import spark_session  # noqa: E402
from thresher.jobs.stage_job import add_common_arguments  # noqa: E402
from thresher.jobs.tag import configured_taggers  # noqa: E402

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


def real_texts(quality: Path = SHARED) -> list[str]:
    texts = []
    for path, field in ((quality / "dclm" / "majority_data.jsonl", "text"), (quality / "chinesewebtext" / "cleared1.jsonl", "raw_content")):
        with open(path, encoding="utf-8") as lines:
            texts += [json.loads(line)[field] for line in lines if line.strip()]
    return [t for t in texts if t]


def documents(count: int, min_chars: int, quality: Path = SHARED) -> list[str]:
    """`count` documents of at least `min_chars` characters, each a run of real texts (cycled)."""
    texts, out, i = real_texts(quality), [], 0
    while len(out) < count:
        parts, size = [], 0
        while size < min_chars:
            parts.append(texts[i % len(texts)])
            size += len(parts[-1])
            i += 1
        out.append("\n".join(parts))
        i += 7 * len(out)  # a different mix for each document
    return out


def build_tagger(directory: Path, shape: dict, texts: list[str], max_length: int, gpu: bool) -> Path:
    """A tagger saved with its model's own settings; the token budget comes from the config, as in `thresher tag`."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForSequenceClassification

    from thresher.classifiers.transformers_backend import InferenceSettings, TransformersClassifier, build_scratch_qwen2

    base = build_scratch_qwen2(texts[:400], directory / "base", vocab_size=8000, layers=1, hidden_size=32, heads=2, kv_heads=1)
    tokenizer = AutoTokenizer.from_pretrained(base)
    config = Qwen2Config(**{"vocab_size": len(tokenizer), **shape, "pad_token_id": tokenizer.pad_token_id, "num_labels": 8})
    torch.manual_seed(0)
    with torch.device("cuda" if gpu else "cpu"):
        model = Qwen2ForSequenceClassification(config).to(torch.bfloat16 if gpu else torch.float32)
    settings = InferenceSettings(max_length=max_length)
    classifier = TransformersClassifier(model, tokenizer, [f"label{i}" for i in range(8)], settings)
    path = classifier.save(directory / "tagger")
    del classifier, model
    if gpu:
        torch.cuda.empty_cache()
    return path


def timed_tag_batches(batches, taggers, batch_size: int, load_seconds, model_seconds):
    """The tag job's mapInArrow body (classifiers.tagging.tag_batches), one input batch at a time, with
    the time spent loading the model and tagging going to two accumulators."""
    from thresher.classifiers.base import cached_classifier
    from thresher.classifiers.tagging import tag_batches

    started = time.perf_counter()
    for tagger in taggers:
        cached_classifier(tagger.model_dir)
    load_seconds.add(time.perf_counter() - started)
    for batch in batches:
        started = time.perf_counter()
        tagged = list(tag_batches(iter([batch]), taggers, batch_size))
        model_seconds.add(time.perf_counter() - started)
        yield from tagged


def plain_run(classifier, texts: list[str], chunk: int) -> float:
    """Seconds for one pass of the plain loop: predict_proba over the texts, `chunk` at a time."""
    _sync()
    started = time.perf_counter()
    for start in range(0, len(texts), chunk):
        classifier.predict_proba(texts[start : start + chunk])
    _sync()
    return time.perf_counter() - started


def bench_config(args: argparse.Namespace, model_dir: Path):
    """The Config `thresher tag` would run with: configs/default.yaml (or --config), the bench's own
    settings (one task on local[1], the plain loop's chunk and threads, its tagger alone, the token
    budget as config `transformers`), then --set (which wins)."""
    from thresher.jobs.stage_job import config_from_args
    from thresher.pipeline.config import load_config

    # --set merges a mapping as a config file does: the shipped taggers are turned off by name.
    alone = {name: {"enabled": False} for name in load_config().tag.taggers}
    bench = {
        "spark.master": "local[1]",
        "spark.driver_memory": "4g",
        "spark.conf": {
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.executorEnv.OMP_NUM_THREADS": str(args.threads),  # as the plain loop's torch threads
            "spark.sql.execution.arrow.maxRecordsPerBatch": str(args.chunk),  # = the plain loop's chunk
            "spark.sql.files.maxPartitionBytes": str(1 << 40),  # one task (one GPU or core), like the loop
        },
        "tag.batch_size": args.chunk,
        "tag.taggers": {**alone, "bench": {"model_dir": str(model_dir), "kind": "document", "input": "plain"}},
        "transformers.token_budget": args.token_budget,
    }
    user = args.overrides
    args.overrides = [f"{key}={json.dumps(value)}" for key, value in bench.items()] + user
    try:
        return config_from_args(args)
    finally:
        args.overrides = user


def write_stage_input(directory: Path, texts: list[str]) -> str:
    """The texts as a committed stage 2 output (every RULES column, the rest null), which the tag job
    reads as it is."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from thresher.pipeline.stagedir import COMMITTED_MARKER
    from thresher.schemas.documents import RULES

    columns = {"doc_id": pa.array([f"{i:08d}" for i in range(len(texts))]), "text": pa.array(texts)}
    table = pa.table({f.name: columns.get(f.name, pa.nulls(len(texts), f.type)) for f in RULES}, schema=RULES)
    (directory / "documents").mkdir(parents=True)
    pq.write_table(table, directory / "documents" / "part-0.parquet")
    (directory / COMMITTED_MARKER).write_text("")
    return str(directory)


def spark_run(spark, stage_dir: str, taggers, batch_size: int) -> tuple[float, float, float]:
    """(seconds, seconds tagging, seconds loading the model) of one Spark tag job: the job's input
    reader and mapInArrow body over the job's taggers, written nowhere (the plain loop writes nothing)."""
    from thresher.jobs.documents_input import documents_frame
    from thresher.pipeline.stagedir.documents import resolve_source
    from thresher.schemas import to_spark_schema
    from thresher.schemas.documents import RULES
    from thresher.schemas.tags import tagged_schema

    load_seconds, model_seconds = spark.sparkContext.accumulator(0.0), spark.sparkContext.accumulator(0.0)
    tag = functools.partial(timed_tag_batches, taggers=taggers, batch_size=batch_size, load_seconds=load_seconds, model_seconds=model_seconds)
    started = time.perf_counter()
    documents = documents_frame(spark, resolve_source(stage_dir), RULES)
    documents.mapInArrow(tag, to_spark_schema(tagged_schema(taggers))).write.format("noop").mode("overwrite").save()
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
    parser.add_argument("--documents", type=int, help="documents to tag (default: 2400 CPU, 8192 GPU: enough that the job's fixed cost of about 0.3 s is amortised)")
    parser.add_argument("--max-length", type=int, help="tokens per document (default: 128 CPU, 512 GPU)")
    parser.add_argument("--token-budget", type=int, default=32768, help="padded tokens per forward pass (default: 32768)")
    parser.add_argument("--chunk", type=int, default=1024, help="documents per predict_proba call / Arrow batch (default: 1024)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads in both runs (default: 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each; the best counts (default: 3)")
    parser.add_argument("--skip-spark", action="store_true", help="plain loop only")
    add_common_arguments(parser, "spark.log_level=WARN")
    add_smoke_flag(parser)
    args = parser.parse_args()
    quality = SHARED
    if args.smoke:
        announce()
        quality, args.documents, args.max_length, args.chunk, args.repeats = tiny_data() / "quality", 16, 32, 8, 1

    import torch

    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu: no CUDA device visible")
    torch.set_num_threads(args.threads)
    count = args.documents or (8192 if args.gpu else 2400)
    max_length = args.max_length or (512 if args.gpu else 128)
    shape = QWEN2_1_5B if args.gpu else SMALL
    texts = documents(count, min_chars=max_length * 8, quality=quality)
    with tempfile.TemporaryDirectory(prefix="bench-tagger-") as work:
        work = Path(work)
        model_dir = build_tagger(work, shape, texts, max_length, args.gpu)
        stage_dir = write_stage_input(work / "stage2", texts)
        config = bench_config(args, model_dir)
        taggers = configured_taggers(config)  # as `thresher tag` resolves them: config `transformers` applied
        from thresher.classifiers.base import load_classifier

        classifier = load_classifier(model_dir).with_settings(dict(taggers[0].inference))  # the same settings in the loop
        tokens = sum(len(ids) for ids in classifier._token_ids(texts))
        params = sum(_param_counts(shape).values())
        print(f"tagger: Qwen2 {shape['num_hidden_layers']} layers x {shape['hidden_size']} ({params / 1e9:.3f}B non-embedding params), "
              f"{count} documents, {tokens} tokens ({tokens / count:.0f} per document), token budget {classifier.settings.token_budget}, "
              f"device {classifier.device}")
        # The session `thresher tag` starts: config `spark` (master, memory, conf, log level).
        spark = None if args.skip_spark else spark_session("bench-tagger", config.spark, args.master)
        # Warm-up (not timed): kernels and allocator in the driver, the model loaded into the Spark worker.
        plain_run(classifier, texts[: args.chunk], args.chunk)
        if spark is not None:
            print(f"             spark warm-up: {spark_run(spark, stage_dir, taggers, config.tag.batch_size)[2]:.2f} s loading the model in the worker")
        # Plain and Spark runs alternate, so a change in the machine's load hits both alike.
        loop_runs, spark_runs = [], []
        for run in range(1, args.repeats + 1):
            loop_runs.append(plain_run(classifier, texts, args.chunk))
            if spark is not None:
                seconds, in_model, loading = spark_run(spark, stage_dir, taggers, config.tag.batch_size)
                spark_runs.append(seconds)
                print(f"             run {run}: plain {loop_runs[-1]:.2f} s; spark {seconds:.2f} s, of which {in_model:.2f} s in "
                      f"tag_batches, {loading:.2f} s loading the model")
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
