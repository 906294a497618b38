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
sys.path.insert(0, str(REPO))
CRAWL = REPO.parent / "shared" / "data" / "crawl"
LIMIT = 0.05


def crawl_pages() -> list[tuple[bytes, str, str]]:
    from pipeline.extract import binary_kind
    from pipeline.warc import WarcRecord, iter_records

    pages = []
    for path in sorted(CRAWL.glob("*.warc.gz")):
        with open(path, "rb") as handle:
            for event in iter_records(handle, 5_000_000):
                if (isinstance(event, WarcRecord) and event.kind == "response" and event.http_status == 200
                        and event.is_html and not event.payload_truncated and not binary_kind(event.payload, event.charset)):
                    pages.append((event.payload, event.charset, event.url))
    return pages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each way (default 2)")
    args = parser.parse_args()

    from pipeline.extract import PageExtractor, decode_html, extract_page, parse_hazard

    pages = crawl_pages()
    htmls = [decode_html(payload, charset).html for payload, charset, _ in pages]
    extractor = PageExtractor(timeout_s=30, min_chars=1)
    in_process, guarded, screen, outputs = [], [], [], {}
    for _ in range(args.rounds):
        start = time.process_time()
        plain = [extract_page(payload, charset, url, 30) for payload, charset, url in pages]
        in_process.append(time.process_time() - start)
        start, child = time.process_time(), 0.0
        via_child = []
        for payload, charset, url in pages:
            text, drop, cpu = extractor(payload, charset, url)
            via_child.append((text, drop))
            child += cpu
        guarded.append(time.process_time() - start + child)
        start = time.process_time()
        hazards = [parse_hazard(html) for html in htmls]
        screen.append(time.process_time() - start)
        outputs = {"same": plain == via_child, "screened": sum(bool(h) for h in hazards)}
    extractor.close()
    # extract_page screens too; without the screen it is extraction as before the guards.
    screened = min(screen)
    base, with_guard = min(in_process) - screened, min(guarded)
    print(f"{len(pages)} pages; identical text and rejects both ways: {outputs['same']}; "
          f"pages the screen rejects: {outputs['screened']}")
    print(f"extraction CPU, in process without the screen (before): {base:.2f}s; with both guards, through the extraction process (after, parent + "
          f"child): {with_guard:.2f}s (best of {args.rounds}; rounds {[round(x, 2) for x in in_process]} / "
          f"{[round(x, 2) for x in guarded]})")
    print(f"guard cost: {with_guard - base:+.2f}s = {(with_guard - base) / base:+.1%} of extraction CPU "
          f"(limit {LIMIT:.0%} of stage 1 task CPU); of it the attribute screen alone {screened:.3f}s = "
          f"{screened / base:.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
