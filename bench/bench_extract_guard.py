"""Cost of the extraction guards on the real crawl: the attribute screen and the killable extraction process.

Every page of ../shared/data/crawl that stage 1 would extract is extracted three ways, in rounds
that alternate (so a busy machine slows all of them alike): in this process as before the guards
(`extract_page`, SIGALRM bound only), through `PageExtractor` (a forked child per worker, killed past
the bound; CPU of this process plus what the child reports), and the pre-parse screen alone
(`parse_hazard` on the decoded page). CPU time, not wall: the machine is shared. The limit is 5% of
stage 1 task CPU, of which extraction is ~91% (bench/RESULTS.md, stage 1).

    .venv/bin/python bench/bench_extract_guard.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, tiny_data  # noqa: E402

CRAWL = REPO.parent / "shared" / "data" / "crawl"
LIMIT = 0.05


def crawl_pages(crawl: Path = CRAWL) -> list[tuple[bytes, str, str]]:
    from thresher.pipeline.prepare.extract import binary_kind
    from thresher.pipeline.prepare.warc import WarcRecord, iter_records

    pages = []
    for path in sorted(crawl.glob("*.warc.gz")):
        with open(path, "rb") as handle:
            for event in iter_records(handle, 5_000_000):
                if (isinstance(event, WarcRecord) and event.kind == "response" and event.http_status == 200
                        and event.is_html and not event.payload_truncated and not binary_kind(event.payload, event.charset)):
                    pages.append((event.payload, event.charset, event.url))
    return pages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each way (default 2)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    crawl = CRAWL
    if args.smoke:
        announce()
        crawl, args.rounds = tiny_data() / "crawl", 1

    from thresher.pipeline.prepare.extract import PageExtractor, decode_html, extract_page, parse_hazard

    pages = crawl_pages(crawl)
    htmls = [decode_html(payload, charset).html for payload, charset, _ in pages]
    in_process, guarded, screen, plumbing, same = [], [], [], [], True
    for _ in range(args.rounds):
        start = time.process_time()
        plain = [extract_page(payload, charset, url, 30) for payload, charset, url in pages]
        in_process.append(time.process_time() - start)
        extractor = PageExtractor(timeout_s=30, min_chars=1)
        start, child = time.process_time(), 0.0
        via_child = []
        for payload, charset, url in pages:
            text, drop, cpu = extractor(payload, charset, url)
            via_child.append((text, drop))
            child += cpu
        parent = time.process_time() - start  # this process only: pickling, pipe, waiting
        unreported = extractor.close()  # the child's CPU outside extract_page: unpickling, pickling, fork
        guarded.append(parent + child + unreported)
        plumbing.append((parent + unreported, parent, unreported))
        start = time.process_time()
        hazards = [parse_hazard(html) for html in htmls]
        screen.append(time.process_time() - start)
        same = same and plain == via_child
    # extract_page screens too; without the screen it is extraction as before the guards.
    screened, (moved, parent, unreported) = min(screen), min(plumbing)
    base = min(in_process) - screened
    print(f"{len(pages)} pages; identical text and rejects both ways: {same}; "
          f"pages the screen rejects: {sum(bool(h) for h in hazards)}")
    print(f"extraction CPU in process, without the screen (before): {base:.2f}s; through the extraction process with "
          f"the screen (after, both processes): {min(guarded):.2f}s (best of {args.rounds}; rounds "
          f"{[round(x, 2) for x in in_process]} / {[round(x, 2) for x in guarded]}: their spread is the machine's noise)")
    cost = screened + moved
    print(f"guard cost, measured directly: attribute screen {screened:.3f}s + the process's plumbing (this "
          f"process's CPU around the calls {parent:.3f}s, and the child's beyond extract_page {unreported:.3f}s) = {cost:.3f}s = "
          f"{cost / base:.2%} of extraction CPU (limit {LIMIT:.0%} of stage 1 task CPU, of which extraction is ~91%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
