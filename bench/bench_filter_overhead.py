"""Cost of the filter contract's counting and timing (issue 18 item 3), on real documents.

Each document goes through the same rules twice over: with `DocumentFilter.__call__` as shipped
(count seen / dropped, read `perf_counter_ns` twice) and with it replaced by a bare `judge` call.
Rounds alternate the two and the fastest round of each is kept (the least disturbed by other
processes). Stage 2: the heuristic families of `configs/default.yaml` on DCLM and ChineseWebText
documents (`judge_documents`). Stage 1: `process_warc` on the shared crawl's WARC files, with the
shipped URL lists (every per-page step is a filter there). The limit: 2% extra time per document.

    .venv/bin/python bench/bench_filter_overhead.py [--rounds 7] [--stage1-rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"
LIMIT_PERCENT = 2.0


def _bare_call(self, doc):
    return self.judge(doc)


def _timed(run, rounds: int) -> tuple[float, float]:
    """Fastest round with the contract and without it, in seconds, rounds interleaved."""
    from pipeline.filters import DocumentFilter

    shipped = DocumentFilter.__call__
    with_contract, without = [], []
    for _ in range(rounds):
        for variant, times in ((shipped, with_contract), (_bare_call, without)):
            DocumentFilter.__call__ = variant
            try:
                started = time.perf_counter()
                run()
                times.append(time.perf_counter() - started)
            finally:
                DocumentFilter.__call__ = shipped
    return min(with_contract), min(without)


def _line(what: str, units: int, unit: str, with_contract: float, without: float) -> None:
    extra = 100 * (with_contract - without) / without
    print(f"{what}: {1e6 * with_contract / units:,.1f} us per {unit} with counting and timing, "
          f"{1e6 * without / units:,.1f} us without: {extra:+.2f}% (limit +{LIMIT_PERCENT:.0f}%)")


def stage2(rounds: int) -> None:
    from pipeline.config import load_config
    from pipeline.heuristics import build_filters, judge_documents, load_resources

    config = load_config()
    filters = build_filters(config.rules, load_resources(config.rules, config.resolve_path))
    documents = []
    for name in ("agreement_data", "majority_data"):
        documents += [(json.loads(line)["text"], "en", None) for line in (DATA / "quality/dclm" / f"{name}.jsonl").open()]
    for name in ("cleared1", "clean"):
        rows = [json.loads(line) for line in (DATA / "quality/chinesewebtext" / f"{name}.jsonl").open()]
        documents += [(r.get("raw_content") or r.get("text"), "zh", r.get("url")) for r in rows]
    _, stats = judge_documents(filters, documents)  # warm: jieba's dictionary, regex caches
    calls = sum(s.seen for s in stats.values())
    with_contract, without = _timed(lambda: judge_documents(filters, documents), rounds)
    print(f"stage 2 heuristics: {len(documents)} real documents ({calls / len(documents):.1f} rule calls each), "
          f"best of {rounds} rounds")
    _line("stage 2", len(documents), "document", with_contract, without)
    share = {rule: f"{100 * s.nanoseconds / sum(x.nanoseconds for x in stats.values()):.1f}%" for rule, s in stats.items()}
    print(f"stage 2 time per family (warm-up pass): {share}")


def stage1(rounds: int) -> None:
    from jobs.prepare import resolved_prepare_config
    from pipeline.config import load_config
    from pipeline.records import ROW_FILE, ROW_SCHEMA, process_warc

    prepare = resolved_prepare_config(load_config())
    files = sorted(str(path) for path in (DATA / "crawl").glob("*.warc.gz"))
    detail = ROW_SCHEMA.names.index("detail")

    def run() -> int:
        """Every row of every file; the pages that reached the per-page steps."""
        return sum(json.loads(row[detail])["rules"]["url_parse"]["seen"]
                   for path in files for row in process_warc(path, prepare) if row[0] == ROW_FILE)

    pages = run()  # warm: lid.176, the extraction child, the URL lists
    with_contract, without = _timed(run, rounds)
    print(f"stage 1 per-page steps: {pages} pages of {len(files)} crawl files, best of {rounds} rounds")
    _line("stage 1", pages, "page", with_contract, without)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="stage 2 rounds per variant (default 7)")
    parser.add_argument("--stage1-rounds", type=int, default=3, help="stage 1 rounds per variant (default 3; 0 skips)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average before {os.getloadavg()[0]:.1f}")
    stage2(args.rounds)
    if args.stage1_rounds:
        stage1(args.stage1_rounds)
    print(f"load average after {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
