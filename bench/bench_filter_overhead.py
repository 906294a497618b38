"""Cost of the filter contract's counting and timing (issue 18 item 3), on real documents.

Each document goes through the same rules twice over: with `DocumentFilter.__call__` as shipped
(count seen / dropped, read `perf_counter_ns` twice) and with it replaced by a bare `judge` call.
Rounds alternate the two and the fastest round of each is kept, in CPU time of this process (a busy
shared machine moves wall-clock A/B figures by several percent either way). For stage 1 that CPU time
leaves out the extraction child's, so its percentage is an upper bound. A second figure, free of
that noise: the per-call cost of the counting and timing (a rule that does nothing, called both
ways) times the rule calls per document. Stage 2: the heuristic families of `configs/default.yaml` on DCLM and ChineseWebText
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
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, tiny_data  # noqa: E402
from bench._stage2_documents import stage2_documents  # noqa: E402

DATA = REPO.parent / "shared" / "data"
LIMIT_PERCENT = 2.0


def _bare_call(self, doc):
    return self.judge(doc)


def _timed(run, rounds: int) -> tuple[float, float]:
    """Fastest round with the contract and without it, in CPU seconds of this process (other
    processes on a shared machine do not count), rounds interleaved."""
    from thresher.pipeline.filters import DocumentFilter

    shipped = DocumentFilter.__call__
    with_contract, without = [], []
    for _ in range(rounds):
        for variant, times in ((shipped, with_contract), (_bare_call, without)):
            DocumentFilter.__call__ = variant
            try:
                started = time.process_time()
                run()
                times.append(time.process_time() - started)
            finally:
                DocumentFilter.__call__ = shipped
    return min(with_contract), min(without)


def _line(what: str, units: int, unit: str, with_contract: float, without: float, calls_per_unit: float) -> None:
    extra = 100 * (with_contract - without) / without
    print(f"{what}: {1e6 * with_contract / units:,.1f} us per {unit} with counting and timing, "
          f"{1e6 * without / units:,.1f} us without: {extra:+.2f}% (limit +{LIMIT_PERCENT:.0f}%)")
    # The A/B difference drowns in noise on a busy machine; the per-call cost times the calls is the floor-free figure.
    per_call = _per_call_overhead_s()
    estimate = 100 * per_call * calls_per_unit / (without / units)
    print(f"{what}: the contract costs {1e9 * per_call:.0f} ns per rule call x {calls_per_unit:.1f} calls per {unit} "
          f"= {estimate:.3f}% of the {unit}'s time (limit +{LIMIT_PERCENT:.0f}%)")


def _per_call_overhead_s(calls: int = 200_000, rounds: int = 5) -> float:
    """Seconds the counting and timing add to one call: a rule that does nothing, called both ways."""
    from thresher.pipeline.filters import DocumentFilter

    class Nothing(DocumentFilter):
        def judge(self, doc):
            return None

    class BareNothing(Nothing):
        __call__ = _bare_call

    doc, best = {}, {}
    for _ in range(rounds):
        for name, rule in (("contract", Nothing()), ("bare", BareNothing())):
            started = time.process_time()
            for _ in range(calls):
                rule(doc)
            best[name] = min(best.get(name, float("inf")), time.process_time() - started)
    return max(0.0, (best["contract"] - best["bare"]) / calls)


def stage2(rounds: int, data: Path = DATA) -> None:
    from thresher.pipeline.config import load_config
    from thresher.pipeline.rules.heuristics import build_filters, judge_documents, load_resources

    config = load_config()
    filters = build_filters(config.rules, load_resources(config.rules, config.resolve_path))
    documents = stage2_documents(data)
    _, stats = judge_documents(filters, documents)  # warm: jieba's dictionary, regex caches
    calls = sum(s.seen for s in stats.values())
    with_contract, without = _timed(lambda: judge_documents(filters, documents), rounds)
    print(f"stage 2 heuristics: {len(documents)} real documents ({calls / len(documents):.1f} rule calls each), "
          f"best of {rounds} rounds")
    _line("stage 2", len(documents), "document", with_contract, without, calls / len(documents))
    share = {rule: f"{100 * s.nanoseconds / sum(x.nanoseconds for x in stats.values()):.1f}%" for rule, s in stats.items()}
    print(f"stage 2 time per family (warm-up pass): {share}")


def stage1(rounds: int, data: Path = DATA) -> None:
    from thresher.jobs.prepare import resolved_prepare_config
    from thresher.pipeline.config import load_config
    from thresher.pipeline.prepare.records import ROW_FILE, ROW_SCHEMA, process_warc

    prepare = resolved_prepare_config(load_config())
    files = sorted(str(path) for path in (data / "crawl").glob("*.warc.gz"))
    detail = ROW_SCHEMA.names.index("detail")

    def run() -> int:
        """Every row of every file; the pages that reached the per-page steps."""
        return sum(json.loads(row[detail])["rules"]["url_parse"]["seen"]
                   for path in files for row in process_warc(path, prepare) if row[0] == ROW_FILE)

    pages = run()  # warm: lid.176, the extraction child, the URL lists
    calls = sum(json.loads(row[detail])["rules"][rule]["seen"] for path in files
                for row in process_warc(path, prepare) if row[0] == ROW_FILE
                for rule in json.loads(row[detail])["rules"] if rule != "read")
    with_contract, without = _timed(run, rounds)
    print(f"stage 1 per-page steps: {pages} pages of {len(files)} crawl files, best of {rounds} rounds")
    _line("stage 1", pages, "page", with_contract, without, calls / pages)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="stage 2 rounds per variant (default 7)")
    parser.add_argument("--stage1-rounds", type=int, default=3, help="stage 1 rounds per variant (default 3; 0 skips)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    data = DATA
    if args.smoke:
        announce()
        data, args.rounds, args.stage1_rounds = tiny_data(), 1, 1
    print(f"machine: {os.cpu_count()} cores, load average before {os.getloadavg()[0]:.1f}")
    stage2(args.rounds, data)
    if args.stage1_rounds:
        stage1(args.stage1_rounds, data)
    print(f"load average after {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
