"""The run report: pipeline.report.data gathers its figures from the stage directories,
pipeline.report.html renders them; `write_report` writes both beside the run, on local disk or any
fsspec URL (each file written whole: one PUT on an object store, nothing renamed there)."""

from __future__ import annotations

import json
import os
from typing import Any

from thresher.pipeline.report.data import build_report
from thresher.pipeline.report.html import render_html
from thresher.pipeline.stagedir import storage, write_whole


def write_report(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Build the report and write run_dir/report.json (keys in the report's order: stages in pipeline
    order) and run_dir/report.html, `run_dir` a local path or any fsspec URL; returns the report."""
    report = build_report(run_dir)
    fs, root = storage(run_dir)
    fs.makedirs(root, exist_ok=True)  # a local directory; nothing on an object store
    write_whole(fs, f"{root}/report.json", (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode())
    write_whole(fs, f"{root}/report.html", render_html(report).encode("utf-8"))
    return report
