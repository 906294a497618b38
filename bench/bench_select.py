"""Select cost per document beside tag cost per document (target: select < 5% of tag).

Select, on --documents generated tagged documents (default 10^5: a topic label drawn from the 200
classes with crawl-like skew, a quality score, a token count): the pure pieces of the step in the
order it runs them, one process, timed separately: the global top-50% quality cut
(`classifiers.mix.top_fraction_cut`) and its per-document test, counting the survivors' tokens per
class and solving the mix (`solve_mix`, the seed's knowledge-at-60% target), and
`classifiers.topic.sample_copies` per document. Not in the figure: reading and writing Arrow
batches, the keep-rule and line-removal code of the select job itself.

Tag, on --tag-documents real texts (DCLM English and ChineseWebText Chinese, repeated): fastText
predict of the three default models (bootstrapped from those texts, real model size) on the inputs
the tagger gives them: page type on URL + text, clutter on every line, topic on the first 5,000
characters. Model loading is not counted (a Spark worker loads once).

    .venv/bin/python bench/bench_select.py [--documents 100000] [--tag-documents 3000]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_models import source_texts, write_stage2  # noqa: E402

from classifiers.mix import expand_groups, solve_mix, top_fraction_cut  # noqa: E402
from classifiers.topic import load_taxonomy, sample_copies  # noqa: E402

WORK = REPO / "bench" / "work" / "select"
TARGET_RATIO = 0.05


def tagged_documents(count: int, labels: list[str], seed: int) -> list[tuple[str, str, float, int]]:
    """(doc_id, topic label, quality score, tokens): label popularity and lengths heavy-tailed."""
    rng = random.Random(seed)
    popularity = [rng.lognormvariate(0, 1.2) for _ in labels]
    chosen = rng.choices(labels, popularity, k=count)
    return [
        (hashlib.sha1(f"bench:{i}".encode()).hexdigest()[:32], label, round(rng.random(), 4), int(rng.lognormvariate(6, 1)) + 1)
        for i, label in enumerate(chosen)
    ]


def time_select(documents: list[tuple[str, str, float, int]], taxonomy) -> dict[str, float]:
    """The quality cut first, then the mix over what it keeps, then copies, as the select step runs them."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    cut = top_fraction_cut([d[2] for d in documents], [d[0] for d in documents], 0.5, seed=0)
    seconds["top_fraction_cut"] = time.perf_counter() - started
    started = time.perf_counter()
    kept = [d for d in documents if cut.keeps(d[2], d[0])]
    seconds["cut.keeps per doc"] = time.perf_counter() - started

    started = time.perf_counter()
    amounts: dict[str, float] = {}
    for _, label, _, tokens in kept:
        amounts[label] = amounts.get(label, 0.0) + tokens
    solution = solve_mix(amounts, expand_groups(taxonomy, {"knowledge": 0.6}), max_copies=4.0)
    seconds["count + solve_mix"] = time.perf_counter() - started

    started = time.perf_counter()
    emitted = {"knowledge": 0, "all": 0}
    knowledge = set(solution.weights) & set(expand_groups(taxonomy, {"knowledge": 0.6})[0].classes)
    for doc_id, label, _, tokens in kept:
        copies = sample_copies(doc_id, solution.weight(label), 0)
        emitted["all"] += copies * tokens
        emitted["knowledge"] += copies * tokens if label in knowledge else 0
    seconds["sample_copies per doc"] = time.perf_counter() - started
    print(
        f"select: {len(documents)} docs, {len(kept)} pass the top-50% cut; knowledge {solution.shares_before['knowledge']:.3f} "
        f"of their tokens, solved {solution.shares_after['knowledge']:.3f}, emitted {emitted['knowledge'] / emitted['all']:.3f}"
    )
    return seconds


def time_tag(count: int) -> float:
    from classifiers.base import cached_classifier
    from classifiers.bootstrap import bootstrap
    from classifiers.clutter import line_input
    from classifiers.page_type import page_type_input
    from classifiers.tasks import topic_input

    if WORK.exists():
        shutil.rmtree(WORK)
    table = write_stage2(WORK / "stage2", count)
    models = WORK / "models"
    bootstrap([str(WORK / "stage2")], models, load_taxonomy(), max_documents=len(source_texts()))
    page_type, clutter, topic = (cached_classifier(models / name) for name in ("page_type", "clutter", "topic"))
    rows = table.select(["url", "text"]).to_pylist()
    started = time.perf_counter()
    for start in range(0, len(rows), 256):  # the tagger's batch size
        batch = rows[start : start + 256]
        page_type.predict_proba([page_type_input(r["url"], r["text"]) for r in batch])
        lines = []
        for r in batch:
            split = r["text"].split("\n")
            lines.extend(line_input(line, i, len(split)) for i, line in enumerate(split))
        clutter.predict_proba(lines)
        topic.predict_proba([topic_input(r["text"]) for r in batch])
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=100_000, help="generated tagged documents for select (default: 100000)")
    parser.add_argument("--tag-documents", type=int, default=3000, help="real documents tagged to time tag (default: 3000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated documents (default: 0)")
    args = parser.parse_args()
    taxonomy = load_taxonomy()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    documents = tagged_documents(args.documents, taxonomy.labels, args.seed)
    parts = time_select(documents, taxonomy)
    select_per_doc = sum(parts.values()) / args.documents
    for name, seconds in parts.items():
        print(f"  {name}: {seconds:.3f}s ({seconds / args.documents * 1e6:.2f} us/doc)")
    tag_seconds = time_tag(args.tag_documents)
    tag_per_doc = tag_seconds / args.tag_documents
    print(f"tag: {args.tag_documents} docs in {tag_seconds:.1f}s = {tag_per_doc * 1e6:.0f} us/doc (3 fastText models)")
    ratio = select_per_doc / tag_per_doc
    print(
        f"select {select_per_doc * 1e6:.2f} us/doc = {ratio:.2%} of tag (limit {TARGET_RATIO:.0%}); "
        f"load average after {os.getloadavg()[0]:.1f}"
    )
    return 0 if ratio < TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
