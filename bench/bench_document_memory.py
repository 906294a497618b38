"""Peak memory of `tag`, `tokenizer train` and `export` on a corpus with one document at the configured
maximum size (input.max_document_bytes), beside the same corpus without it, and with one document past
the maximum (a counted reject, never read whole): memory must stay flat.

    .venv/bin/python bench/bench_document_memory.py [--documents 400]

The corpus is real text (bench_export's documents) as JSONL. Each stage on each corpus runs in a fresh
process (Spark local[2], 2 GB heap); a sampler reads the resident memory of the driver, the JVM and every
Python worker every 0.1 s (bench_export_memory.PeakSampler). tag runs the shipped clutter tagger alone;
export uses a tokenizer trained on the ordinary corpus.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench import bench_export  # noqa: E402
from bench._smoke import add_smoke_flag, announce, scratch_directory, tiny_data  # noqa: E402
from bench.bench_export_memory import PeakSampler  # noqa: E402

# The shipped clutter tagger alone: the page-type and topic models are trained per run, not shipped.
TAG_ONLY_CLUTTER = {"tag.taggers.page_type.model_dir": "", "tag.taggers.topic.model_dir": ""}


def write_corpus(path: Path, texts: list[str], extra_bytes: int) -> Path:
    """`texts` as JSONL, plus, when `extra_bytes`, one document of about that many bytes of the same real text."""
    with path.open("w", encoding="utf-8") as out:
        for i, text in enumerate(texts):
            out.write(json.dumps({"id": f"doc-{i}", "text": text}, ensure_ascii=False) + "\n")
        if extra_bytes:
            pieces, size = [], 0
            while size < extra_bytes:
                piece = texts[len(pieces) % len(texts)]
                pieces.append(piece)
                size += len(piece.encode("utf-8")) + 1
            huge = "\n".join(pieces)
            line = json.dumps({"id": "huge", "text": huge}, ensure_ascii=False)
            while len(line.encode("utf-8")) > extra_bytes:  # the line, escapes included, is what the bound measures
                huge = huge[: len(huge) - (len(line.encode("utf-8")) - extra_bytes) // 2 - 1]
                line = json.dumps({"id": "huge", "text": huge}, ensure_ascii=False)
            out.write(line + "\n")
    return path


def child(stage: str, corpus: Path, out: Path, tokenizer: Path, max_bytes: int) -> None:
    """One stage in this process; prints the peaks and the stage's counts as JSON on the last line."""
    from thresher.pipeline.config import load_config

    sampler = PeakSampler()
    sampler.start()
    spark = bench_export.spark_session(2, "2g")
    config = load_config(None, {"input.max_document_bytes": max_bytes, "export.vocab_size": 4096,
                                "export.validation_fraction": 0.01, **TAG_ONLY_CLUTTER})
    started = time.perf_counter()
    if stage == "tag":
        from thresher.jobs.tag import run_tag

        stats = run_tag(spark, str(corpus), str(out), config)
    elif stage == "tokenizer":
        from thresher.jobs.tokenizer import run_tokenizer_train

        stats = run_tokenizer_train(spark, str(corpus), str(out), config)
    else:
        from thresher.jobs.export import run_export

        stats = run_export(spark, str(corpus), str(out), str(tokenizer), config)
    seconds = time.perf_counter() - started
    spark.stop()
    print(json.dumps({"peaks": sampler.stop(), "in": stats["documents_in"], "out": stats["documents_out"],
                      "rejected": sum(stats["rejects_by_rule"].values()), "seconds": seconds}))


def run_child(stage: str, corpus: Path, out: Path, tokenizer: Path, max_bytes: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--max-bytes", str(max_bytes), "--child", stage, str(corpus),
                           str(out), str(tokenizer)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{stage} on {corpus.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=400, help="ordinary documents in the corpus (default 400)")
    parser.add_argument("--max-bytes", type=int, default=10_000_000, help="input.max_document_bytes (default 10 MB)")
    parser.add_argument("--child", nargs=4, metavar=("STAGE", "CORPUS", "OUT", "TOKENIZER"), help=argparse.SUPPRESS)
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], *(Path(p) for p in args.child[1:]), max_bytes=args.max_bytes)
        return 0
    data, work = bench_export.DATA, Path(REPO / "bench/work/document-memory")
    if args.smoke:
        announce()
        data, work, args.documents, args.max_bytes = tiny_data(), scratch_directory(), 40, 200_000
    work.mkdir(parents=True, exist_ok=True)
    texts = bench_export.real_texts(data)[: args.documents]
    corpora = {
        "ordinary": write_corpus(work / "ordinary.jsonl", texts, 0),
        "one at the maximum": write_corpus(work / "at-maximum.jsonl", texts, args.max_bytes),
        "one past it (rejected)": write_corpus(work / "past-maximum.jsonl", texts, 5 * args.max_bytes),
    }
    tokenizer = work / "tokenizer"
    mib = 2**20
    print(f"{len(texts)} ordinary documents; input.max_document_bytes {args.max_bytes:,}")
    print("| stage | corpus | documents in / out / rejected | seconds | driver | JVM | largest Python worker | total |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    # A smoke run checks one corpus per stage beside the ordinary tokenizer (which export needs): 4 of the 9 runs.
    smoke = {("tokenizer", "ordinary"), ("tokenizer", "one past it (rejected)"), ("tag", "one at the maximum"),
             ("export", "ordinary")}
    for stage in ("tokenizer", "tag", "export"):  # the tokenizer first: export uses the one it trains
        for name, corpus in corpora.items():
            if args.smoke and (stage, name) not in smoke:
                continue
            out = work / f"{stage}-{corpus.stem}"
            shutil.rmtree(out, ignore_errors=True)
            result = run_child(stage, corpus, out, tokenizer, args.max_bytes)
            if stage == "tokenizer" and name == "ordinary":
                shutil.rmtree(tokenizer, ignore_errors=True)
                out.rename(tokenizer)
            peaks = result["peaks"]
            print(f"| {stage} | {name} | {result['in']} / {result['out']} / {result['rejected']} | {result['seconds']:.0f} | "
                  + " | ".join(f"{peaks[k] / mib:.0f} MiB" for k in ("driver", "jvm", "python_worker_max", "total")) + " |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
