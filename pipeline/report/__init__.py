"""The run report: pipeline.report.data gathers its figures from the stage directories,
pipeline.report.html renders them; `write_report` writes both beside the run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from thresher.pipeline.report.data import build_report
from thresher.pipeline.report.html import render_html


def write_report(run_dir: str | Path) -> dict[str, Any]:
    """Build the report and write run_dir/report.json (keys in the report's order: stages in pipeline
    order) and run_dir/report.html; returns the report."""
    run_dir = Path(run_dir)
    report = build_report(run_dir)
    (run_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (run_dir / "report.html").write_text(render_html(report), encoding="utf-8")
    return report
