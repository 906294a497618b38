"""Per-case time and memory of the hostile-input suite (tests/jobs/test_prepare_hostile.py's CASES).

Writes every case's file to bench/work/hostile/, then runs stage 1's per-file function
(`pipeline.prepare.records.process_warc`, what each Spark task runs) on each in turn in this one process,
with the suite's extraction time bound. Prints, per case, what its hostile pages became, the file's
wall time beside the bound (time bound + kill grace + the suite's slack), and the process's peak RSS
(worker and extraction child) after the case, beside the suite's limit: a case that held a
decompressed bomb would show as a jump.

    .venv/bin/python bench/bench_hostile.py
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "jobs")]
WORK = REPO / "bench" / "work" / "hostile"

from bench._smoke import add_smoke_flag, announce, scratch_directory  # noqa: E402


def main() -> int:
    from test_prepare_hostile import CASES, SLACK_S, TIMEOUT_S

    from thresher.jobs.prepare import resolved_prepare_config
    from thresher.pipeline.config import load_config
    from thresher.pipeline.prepare.extract import KILL_GRACE_S
    from thresher.pipeline.prepare.records import ROW_DOCUMENT, ROW_FILE, ROW_SCHEMA, process_warc, steps_for

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_smoke_flag(parser)
    args = parser.parse_args()
    work, cases = WORK, CASES
    if args.smoke:  # the WARC container's first ten cases, and the files that cannot be read at all
        announce()
        work, cases = scratch_directory(), CASES[:10] + [case for case in CASES[10:] if case.data is None]
    work.mkdir(parents=True, exist_ok=True)
    config = resolved_prepare_config(load_config(None, {"prepare.extract_timeout_s": TIMEOUT_S}))
    bound = TIMEOUT_S + KILL_GRACE_S + SLACK_S
    print(f"| case | hostile pages became | file wall s (bound {bound:g}) | worker / extraction peak RSS MiB |")
    print("|---|---|---:|---:|")
    slowest, worker_peak, child_peak = 0.0, 0, 0
    for case in cases:
        if case.data is None:
            path = f"memory://hostile/{case.file_name}"
        else:
            path = str(work / case.file_name)
            Path(path).write_bytes(case.data())
        started = time.perf_counter()
        rows = [dict(zip(ROW_SCHEMA.names, row, strict=True)) for row in process_warc(path, config)]
        wall = time.perf_counter() - started
        by_url = {r["url"]: "document" if r["row_kind"] == ROW_DOCUMENT else r["rule"] for r in rows if r["url"]}
        outcome = Counter(by_url.get(url, "missing") for url in case.pages) if case.pages else Counter(
            r["rule"] or "file only" for r in rows if r["row_kind"] != ROW_FILE) or Counter({"no rows (file counted)": 1})
        worker_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        child_peak = steps_for(config).extractor.max_rss_kb // 1024
        slowest = max(slowest, wall)
        shown = ", ".join(f"{rule} x{n}" if n > 1 else rule for rule, n in sorted(outcome.items()))
        print(f"| {case.kind} | {shown} | {wall:.2f} | {worker_peak} / {child_peak} |")
    print(f"slowest file {slowest:.2f}s (bound {bound:g}s); peak RSS worker {worker_peak} MiB, extraction process "
          f"{child_peak} MiB (suite limit 1500)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
