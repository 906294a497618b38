"""Decontamination (issue 27): the decontam tagger's cost per document beside stage 2's own, in one
run, and (--sweep) the Han n-gram size chosen on CMMLU.

Cost: the stage 2 heuristics (`judge_documents`, the rules of configs/default.yaml) and the decontam
tagger (`decontam_columns`: tokenise, hash, look up, spans) on the same real documents (DCLM and
ChineseWebText), each timed in CPU seconds of this process, best of --rounds rounds interleaved. The
index holds the three shared benchmarks (GSM8K test, HumanEval, CMMLU test). The limit (issue 27):
decontamination and PII redaction together at most 15% of stage 2's time per document: the pii
tagger and select's replacement (every kind, the default) are timed in the same rounds, and the sum
is printed beside the limit.

Sweep: every GSM8K and HumanEval item planted into English pages (default settings); then for each
Han n-gram size, the false hits on the 428-page crawl (visible text of each page) and
the DCLM texts, and the recall of CMMLU items planted into real Chinese pages whole, as the question
alone, as the first 60% and reformatted (bench/_decontam_data.py); the smallest size with no false
hit and >= 99% recall in every way is the default (config decontam.han_ngram).

    .venv/bin/python bench/bench_decontam.py [--rounds 5] [--sweep [--sizes 8 10 11 12 13 16] [--per-benchmark N]
                                                              [--min-coverage 0.5]]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, not_run, scratch_directory, tiny_data  # noqa: E402
from bench._stage2_documents import stage2_documents  # noqa: E402

DATA = REPO.parent / "shared" / "data"
BUDGET_PERCENT = 15.0  # decontamination + PII, of stage 2's time per document


def smoke_benchmarks(data: Path, directory: Path):
    """Two tiny benchmarks made of the tiny data's own sentences (a smoke run has no real benchmark)."""
    from thresher.pipeline.decontam import Benchmark

    texts = [json.loads(line)["text"] for line in (data / "quality/dclm/majority_data.jsonl").open()]
    (directory / "toy.jsonl").write_text("".join(json.dumps({"question": t[:300], "answer": t[300:500]}) + "\n" for t in texts[:5]))
    return [Benchmark("toy", str(directory / "toy.jsonl"), ("question", "answer"))]


def cost(rounds: int, data: Path, benchmarks) -> None:
    from thresher.classifiers.tagging import DecontamStep, decontam_columns
    from thresher.pipeline.config import load_config
    from thresher.pipeline.decontam import Settings, load_index
    from thresher.pipeline.pii import PLACEHOLDERS, find_pii, redact
    from thresher.pipeline.rules.heuristics import build_filters, judge_documents, load_resources
    from thresher.schemas.tags import DECONTAM, DeclaredTagger

    config = load_config()
    filters = build_filters(config.rules, load_resources(config.rules, config.resolve_path))
    documents = stage2_documents(data)
    started = time.perf_counter()
    index = load_index(benchmarks, Settings())
    built = time.perf_counter() - started
    step = DecontamStep(DeclaredTagger(DECONTAM, kind=DECONTAM), index)
    per_million = index.nbytes / max(len(index.keys), 1) * 1e6 / 2**20
    print(f"index: {sum(index.counts.values()):,} items of {len(index.benchmarks)} benchmarks, {len(index.keys):,} n-grams, "
          f"{index.nbytes / 2**20:.1f} MiB ({per_million:.1f} MiB per million n-grams), built in {built:.1f} s; "
          f"false match per document n-gram {len(index.keys) / 2**64:.1e} (N / 2^64)")

    def decontaminate():
        return sum(bool(decontam_columns(text, step)["decontam_hits"]) for text, _, _ in documents)

    def pii():  # the pii tagger's work and select's replacement, every kind (the default)
        for text, _, _ in documents:
            redact(text or "", find_pii(text or ""), PLACEHOLDERS)

    judge_documents(filters, documents)  # warm: jieba's dictionary, regex caches
    hit = decontaminate()  # warm: the lookup tables
    best = {"stage 2": float("inf"), "decontam": float("inf"), "pii": float("inf")}
    for _ in range(rounds):
        for name, run in (("stage 2", lambda: judge_documents(filters, documents)), ("decontam", decontaminate), ("pii", pii)):
            started = time.process_time()
            run()
            best[name] = min(best[name], time.process_time() - started)
    chars = sum(len(text) for text, _, _ in documents) / len(documents)
    print(f"{len(documents)} real documents (DCLM, ChineseWebText; {chars:,.0f} characters on average), best of {rounds} rounds, "
          f"{hit} with a benchmark hit")
    stage2_us, decontam_us, pii_us = (1e6 * best[name] / len(documents) for name in ("stage 2", "decontam", "pii"))
    share, pii_share = 100 * decontam_us / stage2_us, 100 * pii_us / stage2_us
    print(f"stage 2 heuristics: {stage2_us:,.0f} us per document")
    print(f"decontam tagger: {decontam_us:,.0f} us per document = {share:.1f}% of stage 2")
    print(f"pii tagger + replacement: {pii_us:,.0f} us per document = {pii_share:.1f}% of stage 2")
    print(f"decontam + PII: {share + pii_share:.1f}% of stage 2 (limit {BUDGET_PERCENT:.0f}%)")


def sweep(data: Path, sizes: list[int], per_benchmark: int | None, min_coverage: float) -> None:
    from bench._decontam_data import WAYS, crawl_texts, dclm_texts, planted, recall_tally, shared_benchmarks
    from thresher.pipeline.decontam import Settings, build_index, find, read_items

    benchmarks = [b for b in shared_benchmarks(data) if b.name == "cmmlu"]
    items = [(b.name, item_id, fields) for b in benchmarks for item_id, fields in read_items(b)]
    clean = crawl_texts(data) + dclm_texts(data)
    print(f"CMMLU: {len(items):,} items; clean texts: {len(clean)} (428 crawl pages, DCLM); min_coverage {min_coverage}")
    print("| han_ngram | index n-grams | false hits (documents) | " + " | ".join(f"recall {w}" for w in WAYS) + " | not identifiable |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in WAYS) + " | --- |")
    chosen = None
    for size in sizes:
        settings = replace(Settings(), han_ngram=size, min_coverage=min_coverage)
        index = build_index(items, ["cmmlu"], settings)
        false = sum(bool(find(text, index)) for text in clean)
        counts, totals, unidentifiable = recall_tally(planted(data, benchmarks, settings, per_benchmark, seed=1), index)
        found, total = ({way: tally["cmmlu", way] for way in WAYS} for tally in (counts, totals))
        recall = {way: found[way] / total[way] for way in WAYS}
        print(f"| {size} | {len(index.keys):,} | {false} | " + " | ".join(f"{recall[w]:.2%} ({found[w]}/{total[w]})" for w in WAYS)
              + f" | {unidentifiable} |")
        if chosen is None and false == 0 and min(recall.values()) >= 0.99:
            chosen = size
    print(f"smallest size with no false hit and >= 99% recall: {chosen}")


def recall_english_and_code(data: Path) -> None:
    """Every GSM8K and HumanEval item planted the four ways into English news pages, default settings."""
    from bench._decontam_data import WAYS, planted, recall_tally, shared_benchmarks
    from thresher.pipeline.decontam import Settings, load_index

    benchmarks = shared_benchmarks(data)
    index = load_index(benchmarks, Settings())
    found, total, unidentifiable = recall_tally(planted(data, [b for b in benchmarks if b.name != "cmmlu"], index.settings, seed=3), index)
    print("| benchmark | " + " | ".join(f"recall {w}" for w in WAYS) + " |")
    print("| --- | " + " | ".join("---" for _ in WAYS) + " |")
    for name in ("gsm8k", "humaneval"):
        print(f"| {name} | " + " | ".join(f"{found[name, w] / total[name, w]:.2%} ({found[name, w]}/{total[name, w]})" for w in WAYS) + " |")
    print(f"not identifiable: {unidentifiable}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds per step (default 5)")
    parser.add_argument("--sweep", action="store_true", help="also choose the Han n-gram size on CMMLU")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 10, 11, 12, 13, 16], help="Han n-gram sizes to sweep")
    parser.add_argument("--per-benchmark", type=int, help="CMMLU items planted in the sweep (default: all)")
    parser.add_argument("--min-coverage", type=float, default=0.5, help="the hit rule's coverage in the sweep (default 0.5)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    data = DATA
    if args.smoke:
        announce()
        data, args.rounds = tiny_data(), 1
        benchmarks = smoke_benchmarks(data, scratch_directory())
    else:
        from bench._decontam_data import shared_benchmarks

        benchmarks = shared_benchmarks(data)
    print(f"machine: {os.cpu_count()} cores, load average before {os.getloadavg()[0]:.1f}")
    cost(args.rounds, data, benchmarks)
    if args.smoke:
        not_run("the CMMLU sweep", "no benchmark in the tiny data")
    elif args.sweep:
        recall_english_and_code(data)
        sweep(data, args.sizes, args.per_benchmark, args.min_coverage)
    print(f"load average after {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
