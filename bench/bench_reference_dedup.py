"""The cost of deduplicating a dump against an earlier run's output (rules.dedup.references): the second
dump's rules stage with the first run as reference, against the same stage without it (limit 1.3x).

    .venv/bin/python bench/bench_reference_dedup.py [--docs 4000] [--repeats 2] [--master local[2]]

Input: the DCLM documents (../shared/data/quality/dclm), each a few times with ~5% of its words changed,
split into two dumps of --docs documents. The second dump repeats a fifth of the first's pages: a third
as exact copies at new URLs, a third edited, a third refetched at the same URL. The first dump's rules
stage runs once (it commits the keys a reference is read from); then the second dump's, without and with
the reference, alternating, --repeats times each in one Spark session; the figure is the ratio of the
medians of wall time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, tiny_data  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "quality" / "dclm"
LIMIT = 1.3


def _edited(text: str, rng: random.Random, share: float) -> str:
    words = text.split(" ")
    for position in rng.sample(range(len(words)), max(1, int(len(words) * share))):
        words[position] = rng.choice(words)
    return " ".join(words)


def _row(name: str, url: str, fetched: str, text: str) -> dict:
    return {"doc_id": hashlib.sha1(name.encode()).hexdigest()[:16], "url": url, "domain": url.split("/")[2],
            "warc_path": name.split("-")[0], "warc_record_id": name, "fetch_time": fetched, "text": text, "lang": "en",
            "lang_score": 0.99, "md5": hashlib.md5(text.encode()).hexdigest()}


def two_dumps(count: int, dclm: Path) -> tuple[list[dict], list[dict]]:
    """(first, second): `count` PREPARED rows each, the second repeating a fifth of the first's pages."""
    texts = [json.loads(line)["text"] for name in ("agreement", "majority") for line in (dclm / f"{name}_data.jsonl").open()]
    rng = random.Random(0)
    pages = [(f"https://site{i % 97}.example.org/page-{i}", _edited(texts[i % len(texts)], rng, 0.05)) for i in range(2 * count)]
    first = [_row(f"one-{i}", url, "2024-01-10T00:00:00Z", text) for i, (url, text) in enumerate(pages[:count])]
    second = [_row(f"two-{i}", url, "2024-03-05T00:00:00Z", text) for i, (url, text) in enumerate(pages[count:])]
    for i in range(count // 5):
        url, text = pages[i]
        kind = i % 3
        second[i] = _row(f"two-repeat-{i}", url if kind == 2 else f"https://mirror.example.net/{i}", "2024-03-05T00:00:00Z",
                         text if kind == 0 else _edited(text, rng, 0.03))
    return first, second


def _write(rows: list[dict], directory: Path) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from thresher.pipeline.stagedir import COMMITTED_MARKER
    from thresher.schemas.documents import PREPARED

    (directory / "documents").mkdir(parents=True)
    table = pa.Table.from_pylist(rows, schema=PREPARED)
    step = -(-len(table) // 4)
    for part in range(4):
        pq.write_table(table.slice(part * step, step), directory / "documents" / f"part-{part}.parquet")
    (directory / COMMITTED_MARKER).write_text("{}")
    return str(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=4000, help="documents per dump")
    parser.add_argument("--repeats", type=int, default=2, help="runs of the second dump, each way")
    parser.add_argument("--master", default="local[2]")
    add_smoke_flag(parser)
    args = parser.parse_args()
    dclm = DATA
    if args.smoke:
        announce()
        dclm, args.docs, args.repeats, args.master = tiny_data() / "quality" / "dclm", 30, 1, "local[1]"

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers import thresher from this environment
    from thresher.jobs.rules import run_rules
    from thresher.jobs.session import spark_session
    from thresher.pipeline.config import load_config

    spark = spark_session("bench-reference-dedup", load_config().spark, args.master)
    first, second = two_dumps(args.docs, dclm)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        run_rules(spark, _write(first, work / "in-first"), str(work / "first"), load_config())
        print(f"dumps: {len(first)} + {len(second)} documents; first run (the reference) {time.perf_counter() - start:.1f}s")
        second_input = _write(second, work / "in-second")
        configs = {"without": load_config(), "with": load_config(overrides={"rules.dedup.references": [str(work / "first")]})}
        seconds: dict[str, list[float]] = {"without": [], "with": []}
        phases: dict[str, list[dict]] = {"without": [], "with": []}
        for attempt in range(args.repeats):
            for way, config in configs.items():
                start = time.perf_counter()
                stats = run_rules(spark, second_input, str(work / f"second-{way}-{attempt}"), config)
                seconds[way].append(time.perf_counter() - start)
                phases[way].append(stats["details"]["timings"])
                print(f"second run {way} reference, #{attempt + 1}: {seconds[way][-1]:.1f}s, {stats['documents_out']} kept, "
                      f"rejects {json.dumps(stats['rejects_by_rule'], sort_keys=True)}")
    for way, timings in phases.items():
        print(f"phases {way} reference, median s: " + ", ".join(
            f"{name.removesuffix('_s')} {statistics.median(run.get(name, 0.0) for run in timings):.1f}" for name in timings[0]))
    without, with_reference = statistics.median(seconds["without"]), statistics.median(seconds["with"])
    print(f"second run, median of {args.repeats}: without reference {without:.1f}s, with reference {with_reference:.1f}s: "
          f"{with_reference / without:.2f}x (limit {LIMIT}x)")
    spark.stop()


if __name__ == "__main__":
    main()
