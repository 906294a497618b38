"""The real documents the stage 2 cost benches time (bench_filter_overhead, bench_decontam, bench_pii)."""

from __future__ import annotations

import json
from pathlib import Path


def stage2_documents(data: Path) -> list[tuple[str, str, str | None]]:
    """(text, lang, url) of DCLM's agreement_data and majority_data (English) and ChineseWebText's
    cleared1 and clean (Chinese) under `data`/quality."""
    documents = []
    for name in ("agreement_data", "majority_data"):
        documents += [(json.loads(line)["text"], "en", None) for line in (data / "quality/dclm" / f"{name}.jsonl").open()]
    for name in ("cleared1", "clean"):
        rows = [json.loads(line) for line in (data / "quality/chinesewebtext" / f"{name}.jsonl").open()]
        documents += [(r.get("raw_content") or r.get("text"), "zh", r.get("url")) for r in rows]
    return documents
