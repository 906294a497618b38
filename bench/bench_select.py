"""Select cost per document beside tag cost per document (target: select < 5% of tag).

Select, on --documents generated tagged documents (default 10^5: the real texts below, repeated,
with every default tagger's columns plus a quality tagger: page type and topic labels drawn with
crawl-like skew, a clutter score per line, a quality score): the code the select job runs on the
workers, one process, in 10,000-row Arrow batches (Spark's arrow.maxRecordsPerBatch): the
mapInArrow bodies `pipeline.select.batches.filter_batches` (the default keep rule on page type, a
top-50% quality cut, clutter lines under 0.5 removed, token estimates, mix class) and
`copy_batches` (sample_copies from the solved class weights), and between them the driver's pieces
on the same data (`top_fraction_cut`, tokens per class + `solve_mix` for the seed's knowledge-at-60%
target). Not in the figure: Parquet reading and writing and Spark's own scheduling.

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
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, scratch_directory, tiny_data  # noqa: E402
from bench.bench_models import QUALITY, source_texts, write_stage2  # noqa: E402
from thresher.classifiers.page_type import PAGE_TYPES  # noqa: E402
from thresher.classifiers.tagging import Tagger  # noqa: E402
from thresher.classifiers.topic import load_taxonomy  # noqa: E402
from thresher.pipeline.select.batches import (  # noqa: E402
    STATUS_KEPT,
    TIE_SEED,
    KeepCheck,
    SelectSettings,
    copy_batches,
    filter_batches,
    filtered_schema,
)
from thresher.pipeline.select.mix import expand_groups, solve_mix, top_fraction_cut  # noqa: E402
from thresher.schemas.tags import tagged_schema  # noqa: E402

WORK = REPO / "bench" / "work" / "select"
TARGET_RATIO = 0.05


BATCH_ROWS = 10_000  # spark.sql.execution.arrow.maxRecordsPerBatch's default
TAGGERS = (
    Tagger("page_type", "page_type", input="page_type"),
    Tagger("clutter", "clutter", kind="lines", input="clutter"),
    Tagger("topic", "topic", input="topic"),
    Tagger("quality", "quality"),
)


def _top(rng: random.Random, label: str, others: list[str], k: int) -> tuple[float, list[dict]]:
    """A top label's probability and a top-k list headed by it, the rest sharing what is left."""
    score = round(rng.uniform(1.0 / len(others), 1.0), 4)
    rest = rng.sample([o for o in others if o != label], min(k, len(others)) - 1)
    shares = sorted((rng.random() * (1 - score) / k for _ in rest), reverse=True)
    return score, [{"label": label, "score": score}] + [{"label": o, "score": s} for o, s in zip(rest, shares, strict=True)]


def tagged_documents(count: int, labels: list[str], seed: int, quality: Path = QUALITY) -> pa.Table:
    """The tag output for `count` documents: real texts repeated, generated tag columns (label
    popularity heavy-tailed, a random P(keep) per non-blank line)."""
    rng = random.Random(seed)
    texts = [text for _, text, _ in source_texts(quality)]
    popularity = [rng.lognormvariate(0, 1.2) for _ in labels]
    topics = rng.choices(labels, popularity, k=count)
    page_types = rng.choices(PAGE_TYPES, [60, 10, 5, 3, 2, 2, 10, 8], k=count)
    rows = []
    for i in range(count):
        text = texts[i % len(texts)]
        doc_id = hashlib.sha1(f"bench:{i}".encode()).hexdigest()[:32]
        row = {"doc_id": doc_id, "url": f"https://example.com/{i}", "warc_path": "bench", "text": text, "lang": "en"}
        for name, label, classes in (("page_type", page_types[i], list(PAGE_TYPES)), ("topic", topics[i], labels)):
            row[f"{name}_score"], row[f"{name}_top"] = _top(rng, label, classes, 5)
            row[f"{name}_label"] = label
        quality = round(rng.random(), 4)
        row["quality_label"], row["quality_score"] = ("1", quality) if quality >= 0.5 else ("0", round(1 - quality, 4))
        row["quality_top"] = sorted([{"label": "1", "score": quality}, {"label": "0", "score": round(1 - quality, 4)}],
                                    key=lambda e: -e["score"])
        row["clutter_line_scores"] = [round(rng.random() ** 0.3, 4) if line.strip() else None for line in text.split("\n")]
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=tagged_schema(TAGGERS))


def time_select(tagged: pa.Table, taxonomy) -> dict[str, float]:
    """The select job's pieces in its order: the quality cut (driver), filter_batches (workers), the
    class amounts and solve_mix (driver), copy_batches (workers)."""
    seconds: dict[str, float] = {}
    quality = [next(e["score"] for e in top if e["label"] == "1") for top in tagged.column("quality_top").to_pylist()]
    doc_ids = tagged.column("doc_id").to_pylist()
    started = time.perf_counter()
    cut = top_fraction_cut(quality, doc_ids, 0.5, seed=TIE_SEED)
    seconds["top_fraction_cut (driver)"] = time.perf_counter() - started
    settings = SelectSettings(
        taggers=TAGGERS,
        checks=(KeepCheck("page_type", "label_in", labels=("article",), label_min_score=0.5),
                KeepCheck("quality", "top_percent", score_label="1", threshold=50.0, cut=cut)),
        line_thresholds=(("clutter", 0.5),),
        class_tagger="topic",
    )
    batches = tagged.to_batches(max_chunksize=BATCH_ROWS)

    started = time.perf_counter()
    filtered = pa.Table.from_batches(list(filter_batches(iter(batches), settings)), schema=filtered_schema(settings))
    seconds["filter_batches (workers)"] = time.perf_counter() - started

    started = time.perf_counter()
    kept = filtered.filter(pc.equal(filtered.column("status"), STATUS_KEPT))
    amounts = {row["mix_class"]: float(row["tokens_sum"]) for row in kept.group_by("mix_class").aggregate([("tokens", "sum")]).to_pylist()}
    targets = expand_groups(taxonomy, {"knowledge": 0.6})
    solution = solve_mix(amounts, targets, max_copies=4.0)
    seconds["tokens per class + solve_mix (driver)"] = time.perf_counter() - started
    settings = replace(settings, weights={c: solution.weight(c) for c in amounts})

    started = time.perf_counter()
    copied = pa.Table.from_batches(list(copy_batches(iter(filtered.to_batches(max_chunksize=BATCH_ROWS)), settings)),
                                   schema=filtered.schema)
    seconds["copy_batches (workers)"] = time.perf_counter() - started

    statuses = ", ".join(f"{s['values']} {s['counts']}" for s in sorted(pc.value_counts(copied.column("status")).to_pylist(), key=str))
    knowledge = set(targets[0].classes)
    out = copied.filter(pc.equal(copied.column("status"), STATUS_KEPT)).select(["mix_class", "tokens", "sample_copies"]).to_pylist()
    emitted = sum(r["tokens"] * r["sample_copies"] for r in out)
    emitted_knowledge = sum(r["tokens"] * r["sample_copies"] for r in out if r["mix_class"] in knowledge)
    print(f"select: {tagged.num_rows} docs -> {statuses}; "
          f"knowledge {solution.shares_before['knowledge']:.3f} of kept tokens, solved {solution.shares_after['knowledge']:.3f}, "
          f"emitted {emitted_knowledge / emitted:.3f}; output digest {_digest(copied)}")
    return seconds


def _digest(table: pa.Table) -> str:
    """A hash of every output value, to show a code change leaves the output identical."""
    digest = hashlib.sha256()
    for batch in table.to_batches(max_chunksize=BATCH_ROWS):
        digest.update(repr(batch.to_pylist()).encode())
    return digest.hexdigest()[:16]


def time_tag(count: int, quality: Path = QUALITY, work: Path = WORK) -> float:
    from thresher.classifiers.base import cached_classifier
    from thresher.classifiers.bootstrap import bootstrap
    from thresher.classifiers.clutter import line_input
    from thresher.classifiers.page_type import page_type_input
    from thresher.classifiers.tasks import topic_input

    if work.exists():
        shutil.rmtree(work)
    table = write_stage2(work / "stage2", count, quality)
    models = work / "models"
    bootstrap([str(work / "stage2")], models, load_taxonomy(), max_documents=len(source_texts(quality)))
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
    parser.add_argument("--select-only", action="store_true", help="time select only (no tag figure, no ratio)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated documents (default: 0)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    quality, work = QUALITY, WORK
    if args.smoke:
        announce()
        quality, work, args.documents, args.tag_documents = tiny_data() / "quality", scratch_directory(), 200, 60
    taxonomy = load_taxonomy()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    tagged = tagged_documents(args.documents, taxonomy.labels, args.seed, quality)
    parts = time_select(tagged, taxonomy)
    select_per_doc = sum(parts.values()) / args.documents
    for name, seconds in parts.items():
        print(f"  {name}: {seconds:.3f}s ({seconds / args.documents * 1e6:.2f} us/doc)")
    print(f"select: {select_per_doc * 1e6:.2f} us/doc")
    if args.select_only:
        return 0
    tag_seconds = time_tag(args.tag_documents, quality, work)
    tag_per_doc = tag_seconds / args.tag_documents
    print(f"tag: {args.tag_documents} docs in {tag_seconds:.1f}s = {tag_per_doc * 1e6:.0f} us/doc (3 fastText models)")
    ratio = select_per_doc / tag_per_doc
    print(
        f"select {select_per_doc * 1e6:.2f} us/doc = {ratio:.2%} of tag (limit {TARGET_RATIO:.0%}); "
        f"load average after {os.getloadavg()[0]:.1f}"
    )
    return 0 if ratio < TARGET_RATIO or args.smoke else 1  # tiny input's ratio is no verdict


if __name__ == "__main__":
    sys.exit(main())
