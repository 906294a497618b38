"""Cost of PII tagging and replacement per document beside stage 2's own cost, on the same real documents, in one run (issue 27).

The documents are those bench_filter_overhead.py times stage 2 on: DCLM (agreement_data,
majority_data; English) and ChineseWebText (cleared1, clean; Chinese). Per round, in CPU time of this
process (a busy shared machine moves wall-clock figures by several percent), each of:
stage 2's heuristic filters of configs/default.yaml (`judge_documents`, what every stage 2 task runs
per document), the pii tagger's work (`pipeline.pii.find_pii`) and select's replacement
(`pipeline.pii.redact` with every kind on, the default); the fastest round of each is kept. Stage 2's
line dedup and MinHash are left out of its cost, so PII's share is an upper bound. The budget
(issue 27): decontamination and PII together at most 15% of stage 2.

    .venv/bin/python bench/bench_pii.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, tiny_data  # noqa: E402
from bench._stage2_documents import stage2_documents  # noqa: E402

DATA = REPO.parent / "shared" / "data"
BUDGET_PERCENT = 15.0  # decontamination + PII, of stage 2's per-document cost


def fastest(run, rounds: int) -> float:
    """The fastest of `rounds` runs, in CPU seconds of this process."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per measurement, the fastest kept (default 5)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    data = DATA
    if args.smoke:
        announce()
        data, args.rounds = tiny_data(), 1

    from thresher.pipeline.config import load_config
    from thresher.pipeline.pii import PLACEHOLDERS, find_pii, redact
    from thresher.pipeline.rules.heuristics import build_filters, judge_documents, load_resources

    config = load_config()
    filters = build_filters(config.rules, load_resources(config.rules, config.resolve_path))
    documents = stage2_documents(data)
    texts = [text or "" for text, _, _ in documents]
    judge_documents(filters, documents)  # warm: jieba's dictionary, regex caches
    found = [find_pii(text) for text in texts]

    stage2 = fastest(lambda: judge_documents(filters, documents), args.rounds)
    tagging = fastest(lambda: [find_pii(text) for text in texts], args.rounds)
    replacing = fastest(lambda: [redact(text, spans, PLACEHOLDERS) for text, spans in zip(texts, found, strict=True)], args.rounds)

    n = len(documents)
    languages = Counter(lang for _, lang, _ in documents)
    kinds = Counter(span.kind for spans in found for span in spans)
    chars = sum(len(text) for text in texts)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; best of {args.rounds} rounds, CPU time")
    print(f"documents: {n} ({languages['en']} en DCLM, {languages['zh']} zh ChineseWebText), {chars / n:,.0f} characters each on average")
    print(f"PII found: {sum(1 for spans in found if spans)} documents, {sum(kinds.values())} spans "
          f"({', '.join(f'{kind} {count}' for kind, count in sorted(kinds.items())) or 'none'})")
    per_doc = {name: 1e6 * seconds / n for name, seconds in (("stage2", stage2), ("tag", tagging), ("replace", replacing))}
    share = 100 * (tagging + replacing) / stage2
    print(f"stage 2 heuristics: {per_doc['stage2']:,.1f} us per document")
    print(f"pii tag (find_pii): {per_doc['tag']:,.1f} us per document; select replacement (redact): {per_doc['replace']:,.2f} us per document")
    print(f"PII share of stage 2: {share:.1f}% (budget: decontamination + PII together at most {BUDGET_PERCENT:.0f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
